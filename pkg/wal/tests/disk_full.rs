//! A write-ahead log whose disk fills up refuses the appends that do not fit,
//! keeps everything acknowledged before, and takes appends again once there is
//! room. The full disk is a file-size limit (`RLIMIT_FSIZE`, with `SIGXFSZ`
//! ignored, so an oversized write fails with `EFBIG` as `ENOSPC` would): it
//! applies to the whole process, which is why this test has a binary of its own.

use ember_wal::{Error, Wal, WalOptions, replay};

fn set_file_size_limit(bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit for this process.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
}

/// Returns `n` bytes that do not compress (records are stored compressed).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_full_disk_fails_the_appends_that_do_not_fit_and_the_log_recovers() {
    // SAFETY: ignoring a signal is always sound.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(b"before the disk filled").unwrap();

    set_file_size_limit(4096);
    let err = wal.append(&noise(8192, 7)).unwrap_err();
    assert!(matches!(err, Error::Write(_)), "{err}");
    assert!(wal.append(&noise(8192, 8)).is_err(), "still full");
    // A record that fits is taken: the failed ones were cut off again.
    wal.append(b"small").unwrap();

    set_file_size_limit(libc::RLIM_INFINITY);
    wal.append(&noise(8192, 9)).unwrap();
    drop(wal);

    let (records, report) = replay(dir.path()).unwrap();
    let payloads: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload).collect();
    assert_eq!(
        payloads,
        vec![
            b"before the disk filled".to_vec(),
            b"small".to_vec(),
            noise(8192, 9)
        ]
    );
    assert_eq!(report.skipped_count(), 0, "no damage left behind");
}
