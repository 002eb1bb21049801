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

pub mod clients;
pub mod error;

/// The gRPC crate the services are generated for, for [`impl_into_status!`].
pub use tonic;
