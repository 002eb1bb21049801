//! Connect unary calls over plain HTTP: `POST /<package>.<Service>/<Method>`
//! with `application/proto` or `application/json` (protojson) bodies,
//! optionally gzipped. Each call goes to the same service trait that gRPC
//! uses, so both transports answer identically.

use axum::{
    body::Bytes,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use ember_proto::{
    Tenant,
    error::{Code, connect_code},
};
use serde::{Serialize, de::DeserializeOwned};
use tonic::Status;

/// The wire encoding of a Connect call, chosen by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Proto,
    Json,
}

impl Encoding {
    fn of(headers: &HeaderMap) -> Result<Self, Status> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/proto" | "application/protobuf" | "application/x-protobuf" => {
                Ok(Self::Proto)
            }
            "application/json" | "" => Ok(Self::Json),
            other => Err(Code::BadRequest.status(format!(
                "unsupported content type {other:?}: use application/proto or application/json"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Proto => "application/proto",
            Self::Json => "application/json",
        }
    }
}

/// Renders `status` as a Connect error: `{"code": .., "message": ..}` with
/// the HTTP status of its [`Code`].
pub(crate) fn error_response(status: &Status) -> Response {
    let http =
        StatusCode::from_u16(Code::of(status).http()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({
        "code": connect_code(status.code()),
        "message": status.message(),
    });
    (
        http,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Returns the request body, gunzipped when `Content-Encoding: gzip`.
fn decompress(headers: &HeaderMap, body: Bytes, max: usize) -> Result<Bytes, Status> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" | "" => Ok(body),
        "gzip" => {
            let out = ember_model::pprof::gunzip_bounded(&body, max).map_err(|e| match e {
                ember_model::Error::TooLarge(m) => {
                    Code::TooLarge.status(format!("request body {m}"))
                }
                other => Code::BadRequest.status(format!("request body: {other}")),
            })?;
            if !body.starts_with(&[0x1f, 0x8b]) {
                return Err(
                    Code::BadRequest.status("Content-Encoding is gzip but the body is not gzipped")
                );
            }
            Ok(Bytes::from(out.into_owned()))
        }
        other => Err(Code::BadRequest.status(format!(
            "unsupported Content-Encoding {other:?}: use gzip or none"
        ))),
    }
}

/// Decodes a request message from the body.
pub(crate) fn decode<Req>(
    headers: &HeaderMap,
    body: Bytes,
    max: usize,
) -> Result<(Req, Encoding), Status>
where
    Req: prost::Message + Default + DeserializeOwned,
{
    let encoding = Encoding::of(headers)?;
    let body = decompress(headers, body, max)?;
    let message = match encoding {
        Encoding::Proto => Req::decode(body.as_ref())
            .map_err(|e| Code::BadRequest.status(format!("invalid protobuf request body: {e}")))?,
        Encoding::Json if body.iter().all(u8::is_ascii_whitespace) => Req::default(),
        Encoding::Json => serde_json::from_slice(&body)
            .map_err(|e| Code::BadRequest.status(format!("invalid JSON request body: {e}")))?,
    };
    Ok((message, encoding))
}

/// Encodes a response message in the request's encoding.
pub(crate) fn encode<Resp>(message: &Resp, encoding: Encoding) -> Response
where
    Resp: prost::Message + Serialize,
{
    let body = match encoding {
        Encoding::Proto => message.encode_to_vec(),
        Encoding::Json => match serde_json::to_vec(message) {
            Ok(b) => b,
            Err(e) => return error_response(&Code::Internal.status(e.to_string())),
        },
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    response
}

/// Runs one unary call: decode, call the service, encode.
pub(crate) async fn unary<Req, Resp, F, Fut>(
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
    max_body: usize,
    call: F,
) -> Response
where
    Req: prost::Message + Default + DeserializeOwned,
    Resp: prost::Message + Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let (message, encoding) = match decode::<Req>(&headers, body, max_body) {
        Ok(m) => m,
        Err(status) => return error_response(&status),
    };
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(tenant);
    request
        .extensions_mut()
        .insert(ember_proto::ClientCapabilities::from_accept(
            headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        ));
    match call(request).await {
        Ok(response) => encode(response.get_ref(), encoding),
        Err(status) => error_response(&status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_proto::querier::v1::ProfileTypesRequest;
    use prost::Message;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    #[test]
    fn decodes_protojson_with_string_int64() {
        let (req, enc) = decode::<ProfileTypesRequest>(
            &headers("application/json"),
            Bytes::from_static(br#"{"start":"1000","end":4000}"#),
            1 << 20,
        )
        .unwrap();
        assert_eq!((req.start, req.end, enc), (1000, 4000, Encoding::Json));
    }

    /// What newer Grafana Profiles Drilldown and datasource versions send:
    /// fields and enum values this server does not know are ignored, an
    /// unknown enum value reading as the documented default (a flame graph).
    #[test]
    fn ignores_unknown_fields_and_enum_values() {
        use ember_proto::querier::v1::{
            ProfileFormat, SelectMergeStacktracesRequest, SelectSeriesRequest,
        };
        use ember_proto::types::v1::TimeSeriesAggregationType;
        let cases: &[(&str, i32)] = &[
            (
                r#"{"profileTypeID":"process_cpu:cpu:nanoseconds:cpu:nanoseconds","labelSelector":"{service_name=\"a\"}","start":"1000","end":"2000","format":"PROFILE_FORMAT_FUNCTIONS","frameFilter":{"functionName":"main"}}"#,
                ProfileFormat::Unspecified as i32,
            ),
            (
                r#"{"profile_typeID":"process_cpu:cpu:nanoseconds:cpu:nanoseconds","label_selector":"{service_name=\"a\"}","start":1000,"end":2000,"format":"PROFILE_FORMAT_SANDWICH","sandwich":{"function":"f"}}"#,
                ProfileFormat::Unspecified as i32,
            ),
            (
                r#"{"profileTypeID":"process_cpu:cpu:nanoseconds:cpu:nanoseconds","start":1000,"end":2000,"format":"PROFILE_FORMAT_TREE","maxNodes":"16","newField":[1,2]}"#,
                ProfileFormat::Tree as i32,
            ),
            (
                r#"{"profileTypeID":"process_cpu:cpu:nanoseconds:cpu:nanoseconds","start":1000,"end":2000,"format":7}"#,
                ProfileFormat::Unspecified as i32,
            ),
        ];
        for (body, format) in cases {
            let (req, _) = decode::<SelectMergeStacktracesRequest>(
                &headers("application/json"),
                Bytes::from(body.to_string()),
                1 << 20,
            )
            .unwrap_or_else(|e| panic!("{body}: {e}"));
            assert_eq!(
                req.profile_type_id,
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
            );
            assert_eq!((req.start, req.end), (1000, 2000));
            assert_eq!(req.format, *format, "{body}");
        }
        let (req, _) = decode::<SelectSeriesRequest>(
            &headers("application/json"),
            Bytes::from_static(
                br#"{"profileTypeID":"x:y:z:a:b","step":15,"aggregation":"TIME_SERIES_AGGREGATION_TYPE_P99","exemplarType":"EXEMPLAR_TYPE_FUTURE","groupBy":["pod"]}"#,
            ),
            1 << 20,
        )
        .unwrap();
        assert_eq!(req.aggregation, Some(TimeSeriesAggregationType::Sum as i32));
        assert_eq!(req.group_by, vec!["pod".to_owned()]);
        assert_eq!(req.exemplar_type, 0);
        // Protobuf bodies: unknown fields are skipped and unknown enum numbers kept
        // as numbers (the service treats them as the default).
        let mut proto = SelectMergeStacktracesRequest {
            profile_type_id: "a:b:c:d:e".into(),
            format: 9,
            ..Default::default()
        }
        .encode_to_vec();
        proto.extend_from_slice(&[0xfa, 0x06, 0x02, b'h', b'i']); // field 111, "hi"
        let (req, _) = decode::<SelectMergeStacktracesRequest>(
            &headers("application/proto"),
            Bytes::from(proto),
            1 << 20,
        )
        .unwrap();
        assert_eq!((req.profile_type_id.as_str(), req.format), ("a:b:c:d:e", 9));
    }

    #[test]
    fn rejects_unknown_content_type_and_bad_bodies() {
        let err = decode::<ProfileTypesRequest>(&headers("text/plain"), Bytes::new(), 1 << 20)
            .unwrap_err();
        assert!(err.message().contains("application/proto"), "{err}");
        let err = decode::<ProfileTypesRequest>(
            &headers("application/json"),
            Bytes::from_static(b"{"),
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(Code::of(&err), Code::BadRequest);
        let response = error_response(&err);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
