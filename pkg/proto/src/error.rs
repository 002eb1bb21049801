//! One error code per failure kind, mapped to a gRPC code, a Connect code and
//! an HTTP status, so every transport reports the same failure the same way.

use tonic::{Code as GrpcCode, Status};

/// The metadata key that carries the [`Code`] of a [`Status`] to the HTTP layer.
const CODE_KEY: &str = "ember-code";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed (400).
    BadRequest,
    /// The request or profile is larger than a limit (413).
    TooLarge,
    /// The request is well-formed but its profile cannot be accepted (422).
    Unprocessable,
    /// The tenant sends faster than its limit (429).
    RateLimited,
    /// No or bad tenant, or no or bad credentials (401).
    Unauthenticated,
    /// Credentials that may not do what was asked, e.g. use a tenant (403).
    Forbidden,
    /// The request ran out of its time limit (408, `deadline_exceeded`).
    ///
    /// A 4xx rather than Connect's usual 504: the limit is the tenant's, and
    /// a narrower query is what passes it, not a retry of the same one.
    Timeout,
    /// The service cannot take the request now, e.g. shutting down (503).
    Unavailable,
    /// A bug or an infrastructure failure (500).
    Internal,
    /// What was asked for does not exist, e.g. an unknown ad hoc profile ID (404).
    NotFound,
    /// A known method this server does not offer on purpose, e.g. a
    /// Grafana Cloud-only feature (501; clients fall back on it).
    Unimplemented,
}

impl Code {
    const ALL: [Code; 11] = [
        Code::BadRequest,
        Code::TooLarge,
        Code::Unprocessable,
        Code::RateLimited,
        Code::Unauthenticated,
        Code::Forbidden,
        Code::Timeout,
        Code::Unavailable,
        Code::Internal,
        Code::NotFound,
        Code::Unimplemented,
    ];

    pub fn grpc(self) -> GrpcCode {
        match self {
            Code::BadRequest | Code::Unprocessable => GrpcCode::InvalidArgument,
            Code::TooLarge | Code::RateLimited => GrpcCode::ResourceExhausted,
            Code::Unauthenticated => GrpcCode::Unauthenticated,
            Code::Forbidden => GrpcCode::PermissionDenied,
            Code::Timeout => GrpcCode::DeadlineExceeded,
            Code::Unavailable => GrpcCode::Unavailable,
            Code::Internal => GrpcCode::Internal,
            Code::NotFound => GrpcCode::NotFound,
            Code::Unimplemented => GrpcCode::Unimplemented,
        }
    }

    pub fn http(self) -> u16 {
        match self {
            Code::BadRequest => 400,
            Code::TooLarge => 413,
            Code::Unprocessable => 422,
            Code::RateLimited => 429,
            Code::Unauthenticated => 401,
            Code::Forbidden => 403,
            Code::Timeout => 408,
            Code::Unavailable => 503,
            Code::Internal => 500,
            Code::NotFound => 404,
            Code::Unimplemented => 501,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::TooLarge => "too_large",
            Code::Unprocessable => "unprocessable",
            Code::RateLimited => "rate_limited",
            Code::Unauthenticated => "unauthenticated",
            Code::Forbidden => "forbidden",
            Code::Timeout => "timeout",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
            Code::NotFound => "not_found",
            Code::Unimplemented => "unimplemented",
        }
    }

    /// Returns a status carrying this code.
    pub fn status(self, message: impl Into<String>) -> Status {
        let mut status = Status::new(self.grpc(), message);
        status
            .metadata_mut()
            .insert(CODE_KEY, self.name().parse().expect("ascii code name"));
        status
    }

    /// Returns the code of `status`: the one it carries, else one derived from its gRPC code.
    pub fn of(status: &Status) -> Code {
        if let Some(name) = status
            .metadata()
            .get(CODE_KEY)
            .and_then(|v| v.to_str().ok())
        {
            if let Some(code) = Code::ALL.into_iter().find(|c| c.name() == name) {
                return code;
            }
        }
        match status.code() {
            GrpcCode::InvalidArgument | GrpcCode::OutOfRange | GrpcCode::FailedPrecondition => {
                Code::BadRequest
            }
            GrpcCode::ResourceExhausted => Code::RateLimited,
            GrpcCode::Unauthenticated => Code::Unauthenticated,
            GrpcCode::PermissionDenied => Code::Forbidden,
            GrpcCode::NotFound => Code::NotFound,
            GrpcCode::Unimplemented => Code::Unimplemented,
            GrpcCode::Unavailable | GrpcCode::Cancelled | GrpcCode::DeadlineExceeded => {
                Code::Unavailable
            }
            _ => Code::Internal,
        }
    }
}

/// An error that knows which [`Code`] it is.
///
/// Every crate's error enum implements it, so a failure has one code wherever it
/// is reported, and [`status`] is the one conversion to the status that gRPC,
/// Connect and HTTP answers are made from.
pub trait ErrorCode: std::error::Error {
    /// Returns the kind of failure.
    fn code(&self) -> Code;
}

/// Returns the status that reports `error`: its code and its message.
pub fn status(error: &(impl ErrorCode + ?Sized)) -> Status {
    error.code().status(error.to_string())
}

/// Implements `From<$error> for tonic::Status` through [`ErrorCode`], so that
/// `?` turns a crate's error into its status at a service boundary.
#[macro_export]
macro_rules! impl_into_status {
    ($error:ty) => {
        impl ::core::convert::From<$error> for $crate::tonic::Status {
            fn from(error: $error) -> Self {
                $crate::error::status(&error)
            }
        }
    };
}

/// Returns the Connect protocol's name of a gRPC code (`invalid_argument`, ...).
pub fn connect_code(code: GrpcCode) -> &'static str {
    match code {
        GrpcCode::Ok => "ok",
        GrpcCode::Cancelled => "canceled",
        GrpcCode::Unknown => "unknown",
        GrpcCode::InvalidArgument => "invalid_argument",
        GrpcCode::DeadlineExceeded => "deadline_exceeded",
        GrpcCode::NotFound => "not_found",
        GrpcCode::AlreadyExists => "already_exists",
        GrpcCode::PermissionDenied => "permission_denied",
        GrpcCode::ResourceExhausted => "resource_exhausted",
        GrpcCode::FailedPrecondition => "failed_precondition",
        GrpcCode::Aborted => "aborted",
        GrpcCode::OutOfRange => "out_of_range",
        GrpcCode::Unimplemented => "unimplemented",
        GrpcCode::Internal => "internal",
        GrpcCode::Unavailable => "unavailable",
        GrpcCode::DataLoss => "data_loss",
        GrpcCode::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_status() {
        for code in Code::ALL {
            assert_eq!(Code::of(&code.status("x")), code);
        }
        assert_eq!(Code::of(&Status::invalid_argument("x")), Code::BadRequest);
        assert_eq!(Code::TooLarge.http(), 413);
        assert_eq!(Code::Timeout.http(), 408);
        assert_eq!(
            connect_code(Code::Timeout.status("x").code()),
            "deadline_exceeded"
        );
    }
}
