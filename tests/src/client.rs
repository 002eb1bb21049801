//! A small blocking client for Ember's Connect (HTTP/1.1) API.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use ember_proto::google::v1::Profile;
use ember_proto::push::v1::{PushRequest, PushResponse, RawProfileSeries, RawSample};
use ember_proto::querier::v1::{
    FlameGraph, ProfileTypesRequest, ProfileTypesResponse, SelectMergeProfileRequest,
    SelectMergeStacktracesRequest, SelectMergeStacktracesResponse, SelectSeriesRequest,
    SelectSeriesResponse, SeriesRequest, SeriesResponse,
};
use ember_proto::types::v1::{
    LabelNamesRequest, LabelNamesResponse, LabelPair, LabelValuesRequest, LabelValuesResponse,
    Labels, ProfileType, Series,
};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use ember_testkit::pprof::gzip;

/// The Connect path of `push.v1.PusherService/Push`.
pub const PUSH_PATH: &str = "/push.v1.PusherService/Push";

/// Returns the Connect path of a `querier.v1.QuerierService` method.
pub fn querier_path(method: &str) -> String {
    format!("/querier.v1.QuerierService/{method}")
}

/// How a Connect unary message is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `application/json` (protojson: lowerCamel names, int64 as strings).
    Json,
    /// `application/proto` (protobuf binary).
    Proto,
}

impl Codec {
    /// Returns the `Content-Type` of this codec.
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Json => "application/json",
            Codec::Proto => "application/proto",
        }
    }

    /// Returns the other codec, so a suite can alternate between both.
    pub fn alternate(i: usize) -> Codec {
        if i.is_multiple_of(2) {
            Codec::Proto
        } else {
            Codec::Json
        }
    }
}

/// How a push request body is encoded: codec and `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushEncoding {
    /// The message codec.
    pub codec: Codec,
    /// Whether the body is sent with `Content-Encoding: gzip`.
    pub gzip: bool,
}

impl PushEncoding {
    /// Protobuf, uncompressed.
    pub const PROTO: PushEncoding = PushEncoding {
        codec: Codec::Proto,
        gzip: false,
    };
    /// Protobuf with `Content-Encoding: gzip` (what the Python SDK sends).
    pub const PROTO_GZIP: PushEncoding = PushEncoding {
        codec: Codec::Proto,
        gzip: true,
    };
    /// protojson, uncompressed.
    pub const JSON: PushEncoding = PushEncoding {
        codec: Codec::Json,
        gzip: false,
    };
    /// protojson with `Content-Encoding: gzip`.
    pub const JSON_GZIP: PushEncoding = PushEncoding {
        codec: Codec::Json,
        gzip: true,
    };
    /// Every encoding, for suites that rotate through them.
    pub const ALL: [PushEncoding; 4] = [
        PushEncoding::PROTO,
        PushEncoding::JSON,
        PushEncoding::PROTO_GZIP,
        PushEncoding::JSON_GZIP,
    ];
}

/// A query time range in unix milliseconds, as the query API takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start, unix ms.
    pub start: i64,
    /// End, unix ms.
    pub end: i64,
}

impl TimeRange {
    /// Returns the range `[start, end]` in unix ms.
    pub fn new(start: i64, end: i64) -> Self {
        TimeRange { start, end }
    }

    /// Returns the range of `margin_ms` either side of `center_nanos` (unix ns).
    pub fn around_nanos(center_nanos: i64, margin_ms: i64) -> Self {
        let center = center_nanos / 1_000_000;
        TimeRange::new(center - margin_ms, center + margin_ms)
    }
}

/// An HTTP response, whatever its status.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header, empty when absent.
    pub content_type: String,
    /// The body as received.
    pub body: Vec<u8>,
    /// Every `WWW-Authenticate` challenge, in order.
    pub www_authenticate: Vec<String>,
}

impl HttpResponse {
    /// Returns whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Returns the body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Returns the body parsed as JSON, or `Value::Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Returns the Connect error this response carries, if it is a 4xx or 5xx.
    pub fn connect_error(&self) -> Option<ConnectError> {
        (!self.is_success()).then(|| ConnectError::from_response(self))
    }
}

/// A Connect error: HTTP status plus the JSON body `{"code":..,"message":..}`.
#[derive(Debug, Clone)]
pub struct ConnectError {
    /// The HTTP status.
    pub status: u16,
    /// The Connect code (`invalid_argument`, ...), empty when the body had none.
    pub code: String,
    /// The human-readable message, empty when the body had none.
    pub message: String,
    /// The raw body, for diagnostics.
    pub body: String,
}

/// The error codes of the Connect protocol.
pub const CONNECT_CODES: &[&str] = &[
    "canceled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

impl ConnectError {
    fn from_response(resp: &HttpResponse) -> Self {
        let json = resp.json();
        let field = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        ConnectError {
            status: resp.status,
            code: field("code"),
            message: field("message"),
            body: resp.text(),
        }
    }

    /// Asserts that this is a client error (4xx) in Connect's JSON form with a
    /// known code and a non-empty message; `context` names the request.
    pub fn assert_actionable_4xx(&self, context: &str) {
        assert!(
            (400..500).contains(&self.status),
            "{context}: expected a 4xx, got {} with body {:?}",
            self.status,
            self.body
        );
        assert!(
            CONNECT_CODES.contains(&self.code.as_str()),
            "{context}: the error body must be Connect JSON with a known \"code\", got {:?}",
            self.body
        );
        assert!(
            self.message.trim().len() >= 3,
            "{context}: the error must say what is wrong in \"message\", got {:?}",
            self.body
        );
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} {}: {} (body {:?})",
            self.status, self.code, self.message, self.body
        )
    }
}

impl std::error::Error for ConnectError {}

/// A blocking HTTP client bound to one Ember server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    /// Returns a client for the server at `base_url` (`http://host:port`).
    pub fn new(base_url: &str) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build();
        Client {
            base: base_url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// Returns the server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request and returns the response whatever its status; `Err` only
    /// when no HTTP response came back (connection refused or reset).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<HttpResponse, String> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.request(method, &url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let resp = send(req, body).map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status();
        let content_type = resp.header("content-type").unwrap_or("").to_string();
        let www_authenticate = resp
            .all("www-authenticate")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut body = Vec::new();
        resp.into_reader()
            .take(1 << 30)
            .read_to_end(&mut body)
            .map_err(|e| format!("{method} {url}: reading body: {e}"))?;
        Ok(HttpResponse {
            status,
            content_type,
            body,
            www_authenticate,
        })
    }

    /// Sends a request and returns the response whatever its status; panics when
    /// no HTTP response came back.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("no HTTP response (did ember crash?): {e}"))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], None)
    }

    /// Returns whether `GET /ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.try_request("GET", "/ready", &[], None)
            .is_ok_and(|r| r.status == 200)
    }

    /// Posts a Connect unary request with an already encoded body.
    pub fn connect_raw(
        &self,
        tenant: Option<&str>,
        method_path: &str,
        content_type: &str,
        content_encoding: Option<&str>,
        body: &[u8],
    ) -> HttpResponse {
        let mut headers = vec![("Content-Type", content_type)];
        if let Some(tenant) = tenant {
            headers.push(("X-Scope-OrgID", tenant));
        }
        if let Some(enc) = content_encoding {
            headers.push(("Content-Encoding", enc));
        }
        self.request("POST", method_path, &headers, Some(body))
    }

    /// Posts a JSON Connect request and returns the status and the JSON answer
    /// (`Value::Null` when the body is not JSON).
    pub fn connect_json(
        &self,
        tenant: Option<&str>,
        method_path: &str,
        body: &Value,
    ) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("encode JSON");
        let resp = self.connect_raw(tenant, method_path, "application/json", None, &bytes);
        (resp.status, resp.json())
    }

    /// Calls a Connect unary method with typed messages in either codec.
    ///
    /// Returns the Connect error for a non-2xx status; panics when a 2xx body
    /// does not decode as `Resp` (the server broke the wire contract).
    pub fn call<Req, Resp>(
        &self,
        tenant: Option<&str>,
        method_path: &str,
        req: &Req,
        codec: Codec,
    ) -> Result<Resp, ConnectError>
    where
        Req: Message + Serialize,
        Resp: Message + Default + DeserializeOwned,
    {
        let body = match codec {
            Codec::Json => serde_json::to_vec(req).expect("encode protojson"),
            Codec::Proto => req.encode_to_vec(),
        };
        let mut headers = vec![
            ("Content-Type", codec.content_type()),
            ("Connect-Protocol-Version", "1"),
        ];
        if let Some(tenant) = tenant {
            headers.push(("X-Scope-OrgID", tenant));
        }
        let resp = self.request("POST", method_path, &headers, Some(&body));
        if !resp.is_success() {
            return Err(ConnectError::from_response(&resp));
        }
        Ok(decode_response(method_path, codec, &resp))
    }

    /// Pushes one pprof profile (gzipped or not) as one series with `labels`,
    /// over Connect protobuf, and panics unless the server accepts it.
    pub fn push_pprof(&self, tenant: Option<&str>, labels: &[(&str, &str)], pprof: &[u8]) {
        self.push_pprof_with(tenant, labels, pprof, PushEncoding::PROTO);
    }

    /// Like [`push_pprof`](Self::push_pprof) with a chosen encoding.
    pub fn push_pprof_with(
        &self,
        tenant: Option<&str>,
        labels: &[(&str, &str)],
        pprof: &[u8],
        encoding: PushEncoding,
    ) {
        let resp = self.push(tenant, &push_request(labels, pprof), encoding);
        assert!(
            resp.is_success(),
            "push with labels {labels:?} ({encoding:?}) was refused: HTTP {} {}",
            resp.status,
            resp.text()
        );
        if encoding.codec == Codec::Proto {
            // The answer must be a PushResponse (empty message) in the same codec.
            PushResponse::decode(resp.body.as_slice())
                .unwrap_or_else(|e| panic!("push answer is not a PushResponse: {e}"));
        }
    }

    /// Sends a push request in `encoding` and returns the response, whatever its status.
    pub fn push(
        &self,
        tenant: Option<&str>,
        req: &PushRequest,
        encoding: PushEncoding,
    ) -> HttpResponse {
        let mut body = match encoding.codec {
            Codec::Json => serde_json::to_vec(req).expect("encode protojson"),
            Codec::Proto => req.encode_to_vec(),
        };
        if encoding.gzip {
            body = gzip(&body);
        }
        self.connect_raw(
            tenant,
            PUSH_PATH,
            encoding.codec.content_type(),
            encoding.gzip.then_some("gzip"),
            &body,
        )
    }

    /// Returns `ProfileTypes` for `range`.
    pub fn profile_types(&self, tenant: Option<&str>, range: TimeRange) -> Vec<ProfileType> {
        let req = ProfileTypesRequest {
            start: range.start,
            end: range.end,
        };
        let resp: ProfileTypesResponse = self
            .call(tenant, &querier_path("ProfileTypes"), &req, Codec::Json)
            .unwrap_or_else(|e| panic!("ProfileTypes failed: {e}"));
        resp.profile_types
    }

    /// Returns `LabelNames` for the PromQL-style `matchers`.
    pub fn label_names(
        &self,
        tenant: Option<&str>,
        matchers: &[&str],
        range: TimeRange,
    ) -> Vec<String> {
        let req = LabelNamesRequest {
            matchers: matchers.iter().map(|s| s.to_string()).collect(),
            start: range.start,
            end: range.end,
        };
        let resp: LabelNamesResponse = self
            .call(tenant, &querier_path("LabelNames"), &req, Codec::Json)
            .unwrap_or_else(|e| panic!("LabelNames failed: {e}"));
        resp.names
    }

    /// Returns `LabelValues` of label `name` for the PromQL-style `matchers`.
    pub fn label_values(
        &self,
        tenant: Option<&str>,
        name: &str,
        matchers: &[&str],
        range: TimeRange,
    ) -> Vec<String> {
        let req = LabelValuesRequest {
            name: name.to_string(),
            matchers: matchers.iter().map(|s| s.to_string()).collect(),
            start: range.start,
            end: range.end,
        };
        let resp: LabelValuesResponse = self
            .call(tenant, &querier_path("LabelValues"), &req, Codec::Json)
            .unwrap_or_else(|e| panic!("LabelValues failed: {e}"));
        resp.names
    }

    /// Returns the label sets of `Series` matching `matchers`.
    pub fn series(
        &self,
        tenant: Option<&str>,
        matchers: &[&str],
        label_names: &[&str],
        range: TimeRange,
    ) -> Vec<Labels> {
        let req = SeriesRequest {
            matchers: matchers.iter().map(|s| s.to_string()).collect(),
            label_names: label_names.iter().map(|s| s.to_string()).collect(),
            start: range.start,
            end: range.end,
        };
        let resp: SeriesResponse = self
            .call(tenant, &querier_path("Series"), &req, Codec::Json)
            .unwrap_or_else(|e| panic!("Series failed: {e}"));
        resp.labels_set
    }

    /// Calls `SelectMergeStacktraces` and returns its flame graph (an empty one
    /// when the answer holds none).
    pub fn select_merge_stacktraces(
        &self,
        tenant: Option<&str>,
        req: &SelectMergeStacktracesRequest,
        codec: Codec,
    ) -> Result<FlameGraph, ConnectError> {
        let resp: SelectMergeStacktracesResponse =
            self.call(tenant, &querier_path("SelectMergeStacktraces"), req, codec)?;
        Ok(resp.flamegraph.unwrap_or_default())
    }

    /// Returns the flame graph of `profile_type_id` over `selector` and `range`,
    /// with an explicit `max_nodes` when given; panics on an error answer.
    pub fn flame_graph(
        &self,
        tenant: Option<&str>,
        profile_type_id: &str,
        selector: &str,
        range: TimeRange,
        max_nodes: Option<i64>,
        codec: Codec,
    ) -> FlameGraph {
        let req = SelectMergeStacktracesRequest {
            profile_type_id: profile_type_id.to_string(),
            label_selector: selector.to_string(),
            start: range.start,
            end: range.end,
            max_nodes,
            ..Default::default()
        };
        self.select_merge_stacktraces(tenant, &req, codec)
            .unwrap_or_else(|e| {
                panic!("SelectMergeStacktraces {profile_type_id} {selector} failed: {e}")
            })
    }

    /// Calls `SelectMergeProfile` over Connect protobuf and returns the raw
    /// response body (a pprof `Profile`, as `go tool pprof` reads it) and its decoding.
    pub fn select_merge_profile(
        &self,
        tenant: Option<&str>,
        profile_type_id: &str,
        selector: &str,
        range: TimeRange,
    ) -> (Vec<u8>, Profile) {
        let req = SelectMergeProfileRequest {
            profile_type_id: profile_type_id.to_string(),
            label_selector: selector.to_string(),
            start: range.start,
            end: range.end,
            ..Default::default()
        };
        let mut headers = vec![
            ("Content-Type", "application/proto"),
            ("Connect-Protocol-Version", "1"),
        ];
        if let Some(tenant) = tenant {
            headers.push(("X-Scope-OrgID", tenant));
        }
        let path = querier_path("SelectMergeProfile");
        let resp = self.request("POST", &path, &headers, Some(&req.encode_to_vec()));
        assert!(
            resp.is_success(),
            "SelectMergeProfile {profile_type_id} {selector} failed: HTTP {} {}",
            resp.status,
            resp.text()
        );
        let profile = decode_response::<Profile>(&path, Codec::Proto, &resp);
        (resp.body, profile)
    }

    /// Calls `SelectSeries` and returns its series.
    pub fn select_series(
        &self,
        tenant: Option<&str>,
        req: &SelectSeriesRequest,
    ) -> Result<Vec<Series>, ConnectError> {
        let resp: SelectSeriesResponse =
            self.call(tenant, &querier_path("SelectSeries"), req, Codec::Json)?;
        Ok(resp.series)
    }
}

/// Returns a `PushRequest` holding one series with `labels` and one raw profile.
pub fn push_request(labels: &[(&str, &str)], pprof: &[u8]) -> PushRequest {
    PushRequest {
        series: vec![RawProfileSeries {
            labels: labels
                .iter()
                .map(|(name, value)| LabelPair {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            samples: vec![RawSample {
                raw_profile: pprof.to_vec(),
                id: String::new(),
            }],
            ..Default::default()
        }],
    }
}

/// Sends `req` with `body` and returns the response whatever its status; `Err`
/// (what went wrong) only when no HTTP response came back (connection refused
/// or reset).
pub(crate) fn send(req: ureq::Request, body: Option<&[u8]>) -> Result<ureq::Response, String> {
    let result = match body {
        Some(body) => req.send_bytes(body),
        None => req.call(),
    };
    match result {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => Ok(resp),
        Err(ureq::Error::Transport(e)) => Err(e.to_string()),
    }
}

fn decode_response<Resp: Message + Default + DeserializeOwned>(
    method_path: &str,
    codec: Codec,
    resp: &HttpResponse,
) -> Resp {
    let content_type = resp.content_type.to_ascii_lowercase();
    assert!(
        content_type.starts_with(codec.content_type()),
        "{method_path}: a {} request must be answered with Content-Type {}, got {:?}",
        codec.content_type(),
        codec.content_type(),
        resp.content_type
    );
    match codec {
        Codec::Json => serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
            panic!(
                "{method_path}: answer is not valid protojson for the response type: {e}\n{}",
                resp.text()
            )
        }),
        Codec::Proto => Resp::decode(resp.body.as_slice()).unwrap_or_else(|e| {
            panic!("{method_path}: answer does not decode as the response message: {e}")
        }),
    }
}
