//! Free loopback ports for the servers a test or a benchmark starts.
//!
//! A port is free when it is picked; another process may take it before the
//! server binds it. Servers started on such a port fail loudly when that
//! happens (and `ember_tests::EmberProcess` retries on another port).

use std::net::{Ipv4Addr, TcpListener, UdpSocket};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Returns a port on 127.0.0.1 that was free a moment ago for both TCP and
/// UDP: memberlist (`-memberlist.bind-port`) binds both.
pub fn free_gossip_port() -> u16 {
    for _ in 0..10 {
        let port = free_port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no port on 127.0.0.1 was free for both TCP and UDP after 10 tries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_can_be_bound_once_picked() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        let port = free_gossip_port();
        let _tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }
}
