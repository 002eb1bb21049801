//! Ember's wire types: the protobuf messages and gRPC services generated from
//! `api/`, wire-identical with Grafana Pyroscope, with protojson (serde) support
//! for Connect's `application/json`.

#![allow(missing_docs, unreachable_pub, clippy::all)]

pub mod types {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/types.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/types.v1.serde.rs"));
    }
}

pub mod google {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/google.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.v1.serde.rs"));
    }
    pub mod api {
        include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.api.serde.rs"));
    }
}

pub mod push {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/push.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/push.v1.serde.rs"));
    }
}

pub mod querier {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/querier.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/querier.v1.serde.rs"));
    }
}

pub mod ingester {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/ingester.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/ingester.v1.serde.rs"));
    }
}

pub mod settings {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/settings.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/settings.v1.serde.rs"));
    }
}

pub mod status {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/status.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/status.v1.serde.rs"));
    }
}

pub mod adhocprofiles {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/adhocprofiles.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/adhocprofiles.v1.serde.rs"));
    }
}

pub mod capabilities {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/capabilities.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/capabilities.v1.serde.rs"));
    }
}

/// The tenant of a request, put into the request's extensions by the server
/// (from `X-Scope-OrgID`, or `anonymous` when multi-tenancy is off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(pub String);

impl Tenant {
    /// The tenant of every request when multi-tenancy is disabled.
    pub const ANONYMOUS: &'static str = "anonymous";

    /// Returns the tenant of a tonic request.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<String, tonic::Status> {
        request
            .extensions()
            .get::<Tenant>()
            .map(|t| t.0.clone())
            .ok_or_else(|| {
                tonic::Status::unauthenticated("no tenant: set the X-Scope-OrgID header")
            })
    }
}

/// What a client says it can handle, from the parameters of its `Accept`
/// header as Pyroscope reads them (`Accept: application/json;
/// allow-utf8-labelnames=true`); put into a request's extensions by the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    /// The client can quote label names (`{"k8s.pod-name"="x"}`): label
    /// names an unquoted selector cannot spell are listed to it.
    pub allow_utf8_label_names: bool,
}

impl ClientCapabilities {
    /// Parses every `Accept` header value; unknown parameters are ignored.
    pub fn from_accept<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::default();
        for value in values {
            for media in value.split(',') {
                for param in media.split(';').skip(1) {
                    let Some((k, v)) = param.split_once('=') else {
                        continue;
                    };
                    let v = v.trim().trim_matches('"');
                    if k.trim().eq_ignore_ascii_case("allow-utf8-labelnames")
                        && v.eq_ignore_ascii_case("true")
                    {
                        out.allow_utf8_label_names = true;
                    }
                }
            }
        }
        out
    }

    /// Returns the capabilities of a tonic request (none when not set).
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        request
            .extensions()
            .get::<ClientCapabilities>()
            .copied()
            .unwrap_or_default()
    }
}

pub mod clients;
pub mod error;

/// The gRPC crate the services are generated for, for [`impl_into_status!`].
pub use tonic;
