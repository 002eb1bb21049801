//! The legacy Pyroscope ingest endpoint, `POST /ingest` (and
//! `/pyroscope/ingest`), used by the Go, Node.js, Java, .NET and Ruby SDKs.
//!
//! Query: `name=app.type{k=v,..}` (required), `from`/`until` (unix s, ms, µs
//! or ns; default now), `format` (`pprof`, `folded`/`groups`, `lines`,
//! `speedscope`, `jfr`; default `folded`, or `pprof` for a multipart body),
//! `sampleRate` (Hz, default 100), `spyName` (stored as `pyroscope_spy`),
//! `units` and `aggregationType` (accepted; the profile type decides them).
//! The body is the profile, raw or gzipped, or `multipart/form-data` with
//! `profile` (+ `prev_profile`, ignored) and `sample_type_config`, or `jfr`
//! (+ `labels`, ignored). Non-pprof formats become pprof in `ember-formats`
//! and are stored like pushed profiles.

use std::collections::HashMap;

use axum::{
    Extension, Router,
    body::Bytes,
    extract::{Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use ember_distributor::Distributor;
use ember_formats::{
    FoldedOptions, Limits, ParsedName, jfr::JfrOptions, multipart, sample_type_config,
    speedscope::SpeedscopeOptions, types,
};
use ember_model::{Label, Labels};
use ember_proto::{Tenant, error::Code, google::v1::Profile};
use tonic::Status;
use tracing::debug;

use ember_time::{Clock, SystemClock};

use crate::connect::error_response;

const FORMATS: &str = "pprof, folded, groups, lines, speedscope, jfr";
const DEFAULT_SAMPLE_RATE: u32 = 100;

#[derive(Clone, Debug)]
struct IngestState {
    distributor: Distributor,
    limits: Limits,
}

/// Returns the ingest routes, or none without a distributor.
pub(crate) fn routes(distributor: Option<Distributor>) -> Router {
    let Some(distributor) = distributor else {
        return Router::new();
    };
    let state = IngestState {
        distributor,
        limits: Limits::default(),
    };
    Router::new()
        .route("/ingest", post(ingest))
        .route("/pyroscope/ingest", post(ingest))
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Pprof,
    Folded,
    Lines,
    Speedscope,
    Jfr,
}

/// What the query string says.
#[derive(Debug)]
struct Request {
    name: ParsedName,
    format: Option<Format>,
    from_ms: i64,
    until_ms: i64,
    sample_rate: u32,
    spy_name: Option<String>,
}

fn parse_query(q: &HashMap<String, String>, now_ms: i64) -> Result<Request, Status> {
    let name = q.get("name").ok_or_else(|| {
        Code::BadRequest.status("the name parameter is required: name=app.cpu{label=value}")
    })?;
    let name = ember_formats::name::parse(name)?;
    let format = match q
        .get("format")
        .map(|f| f.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") => None,
        Some("pprof") => Some(Format::Pprof),
        Some("folded" | "groups") => Some(Format::Folded),
        Some("lines") => Some(Format::Lines),
        Some("speedscope") => Some(Format::Speedscope),
        Some("jfr") => Some(Format::Jfr),
        Some(other) => {
            return Err(
                Code::BadRequest.status(format!("unknown format {other:?}: use one of {FORMATS}"))
            );
        }
    };
    let time = |key: &str| -> Result<i64, Status> {
        match q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => Ok(now_ms),
            Some(v) => v.parse::<i64>().map(ember_model::time::unix_to_ms).map_err(|_| {
                Code::BadRequest.status(format!(
                    "invalid {key} {v:?}: use a unix timestamp in seconds, milliseconds, microseconds or nanoseconds"
                ))
            }),
        }
    };
    let from_ms = time("from")?;
    let until_ms = time("until")?;
    if from_ms > until_ms {
        return Err(Code::BadRequest.status(format!(
            "from ({from_ms} ms) is after until ({until_ms} ms)"
        )));
    }
    let sample_rate = match q
        .get("sampleRate")
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    {
        None => DEFAULT_SAMPLE_RATE,
        Some(v) => match v.parse::<u32>() {
            Ok(r) if r > 0 && r <= 1_000_000_000 => r,
            _ => {
                return Err(Code::BadRequest.status(format!(
                    "invalid sampleRate {v:?}: use a whole number of samples per second, 1 to 1e9"
                )));
            }
        },
    };
    Ok(Request {
        name,
        format,
        from_ms,
        until_ms,
        sample_rate,
        spy_name: q.get("spyName").filter(|s| !s.is_empty()).cloned(),
    })
}

/// Builds the client labels of the upload: the name's labels, `service_name`
/// (the application, unless the labels have one; then `app_name`) and
/// `pyroscope_spy`.
fn client_labels(req: &Request) -> Labels {
    let mut labels: Vec<Label> = req
        .name
        .labels
        .iter()
        .map(|(k, v)| Label::new(k.clone(), v.clone()))
        .collect();
    let has_service = req.name.labels.iter().any(|(k, _)| k == "service_name");
    if !has_service {
        labels.push(Label::new("service_name", req.name.app.clone()));
    } else if !req.name.labels.iter().any(|(k, _)| k == "app_name") {
        labels.push(Label::new("app_name", req.name.app.clone()));
    }
    if let Some(spy) = &req.spy_name {
        labels.push(Label::new("pyroscope_spy", spy.clone()));
    }
    Labels::new(labels)
}

/// Gunzips a text or JFR body when it is gzipped, within `max` bytes.
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, Status> {
    Ok(ember_model::pprof::gunzip_bounded(body, max)?.into_owned())
}

async fn ingest(
    State(state): State<IngestState>,
    Extension(tenant): Extension<Tenant>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let distributor = state.distributor.clone();
    let refused_tenant = tenant.0.clone();
    let result = async {
        let Query(query) =
            query.map_err(|e| Code::BadRequest.status(format!("invalid query string: {e}")))?;
        let body = body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Code::TooLarge.status(format!("request body is too large: {}", e.body_text()))
            } else {
                Code::BadRequest.status(format!("cannot read the request body: {}", e.body_text()))
            }
        })?;
        let req = parse_query(&query, SystemClock.now_millis())?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary = multipart::boundary(content_type).transpose()?;
        let labels = client_labels(&req);
        let distributor = state.distributor.clone();
        let limits = state.limits;
        let tenant = tenant.0;
        tokio::task::spawn_blocking(move || {
            ingest_blocking(&distributor, &tenant, &req, labels, &body, boundary, limits)
        })
        .await
        .map_err(|e| Code::Internal.status(e.to_string()))?
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(status) => {
            distributor.rejected(&refused_tenant, &status);
            error_response(&status)
        }
    }
}

fn ingest_blocking(
    distributor: &Distributor,
    tenant: &str,
    req: &Request,
    labels: Labels,
    body: &[u8],
    boundary: Option<String>,
    limits: Limits,
) -> Result<(), Status> {
    let parts = match &boundary {
        Some(b) => Some(multipart::parse(body, b)?),
        None => None,
    };
    let part = |name: &str| {
        parts
            .as_ref()
            .and_then(|p| p.iter().find(|p| p.name == name))
            .map(|p| p.data)
    };
    let format = req.format.unwrap_or(if parts.is_some() {
        if part("jfr").is_some() {
            Format::Jfr
        } else {
            Format::Pprof
        }
    } else {
        Format::Folded
    });
    // The main payload: the named part of a form, else the whole body.
    let payload = match (&parts, format) {
        (None, _) => body,
        (Some(_), Format::Jfr) => part("jfr").ok_or_else(|| {
            Code::BadRequest.status("multipart JFR upload without a \"jfr\" part")
        })?,
        (Some(_), _) => part("profile").ok_or_else(|| {
            Code::BadRequest.status("multipart upload without a \"profile\" part")
        })?,
    };
    let time_nanos = req.from_ms.saturating_mul(1_000_000);
    let duration_nanos = (req.until_ms - req.from_ms).saturating_mul(1_000_000);
    let suffix = req.name.suffix.as_deref();
    // Only a pprof whose sample_type_config says so holds cumulative values;
    // every other upload is already a delta.
    let mut cumulative = false;
    let profiles: Vec<(Option<String>, Profile)> = match format {
        Format::Pprof => {
            let config = part("sample_type_config")
                .map(sample_type_config::parse)
                .transpose()?;
            let Some(config) = config.filter(|c| !c.is_empty()) else {
                debug!(tenant, "ingesting pprof from /ingest");
                return Ok(distributor.ingest_pprof(tenant, &labels, payload)?);
            };
            let raw = gunzip(payload, limits.max_input_bytes)?;
            let mut profile = ember_model::pprof::decode(
                &raw,
                &ember_model::pprof::DecodeLimits {
                    max_decompressed_bytes: limits.max_input_bytes,
                    max_samples: limits.max_samples,
                    max_stack_depth: limits.max_stack_depth,
                },
            )?
            .into_profile();
            sample_type_config::apply(&mut profile, &config);
            cumulative = config.values().any(|c| c.cumulative == Some(true));
            vec![(None, profile)]
        }
        Format::Folded | Format::Lines => {
            let text = gunzip(payload, limits.max_input_bytes)?;
            let options = FoldedOptions {
                limits,
                kind: types::for_optional_suffix(suffix, req.sample_rate),
                time_nanos,
                duration_nanos,
            };
            let profile = if format == Format::Folded {
                ember_formats::folded::parse(&text, &options)
            } else {
                ember_formats::folded::parse_lines(&text, &options)
            }?;
            vec![(Some(options.kind.name), profile)]
        }
        Format::Speedscope => {
            let json = gunzip(payload, limits.max_input_bytes)?;
            let options = SpeedscopeOptions {
                limits,
                suffix: suffix.map(str::to_owned),
                sample_rate: req.sample_rate,
                time_nanos,
                duration_nanos,
            };
            ember_formats::speedscope::parse_named(&json, &options)?
                .into_iter()
                .map(|(n, p)| (Some(n), p))
                .collect()
        }
        Format::Jfr => {
            // JFR recordings hold many kinds of events and are larger than
            // one profile: they may use the whole request body limit.
            let jfr_limits = Limits {
                max_input_bytes: limits.max_input_bytes.max(body.len()),
                ..limits
            };
            let data = gunzip(payload, jfr_limits.max_input_bytes)?;
            let options = JfrOptions {
                limits: jfr_limits,
                sample_rate: req.sample_rate,
                time_nanos,
                duration_nanos,
            };
            ember_formats::jfr::parse(&data, &options)?
                .into_iter()
                .map(|(n, p)| (Some(n), p))
                .collect()
        }
    };
    debug!(
        tenant,
        ?format,
        profiles = profiles.len(),
        "ingesting converted profiles"
    );
    for (name, profile) in profiles {
        if profile.sample.is_empty() {
            continue;
        }
        let mut labels = labels.clone();
        if let Some(name) = name {
            labels.set("__name__", name);
        }
        if !cumulative {
            labels.set("__delta__", "false");
        }
        distributor.ingest_profile(tenant, &labels, profile)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_the_query() {
        let r = parse_query(
            &q(&[
                ("name", "shop.cpu{env=prod}"),
                ("from", "1700000000"),
                ("until", "1700000010000"),
                ("spyName", "gospy"),
            ]),
            0,
        )
        .unwrap();
        assert_eq!(
            (r.from_ms, r.until_ms),
            (1_700_000_000_000, 1_700_000_010_000)
        );
        assert_eq!(r.sample_rate, DEFAULT_SAMPLE_RATE);
        let labels = client_labels(&r);
        assert_eq!(labels.get("service_name"), Some("shop"));
        assert_eq!(labels.get("env"), Some("prod"));
        assert_eq!(labels.get("pyroscope_spy"), Some("gospy"));
    }

    #[test]
    fn refuses_bad_queries() {
        let e = parse_query(&q(&[("name", "a"), ("from", "20"), ("until", "10")]), 0).unwrap_err();
        assert!(e.message().contains("after until"), "{e}");
        let e = parse_query(&q(&[("name", "a"), ("format", "trie")]), 0).unwrap_err();
        assert!(e.message().contains("pprof, folded"), "{e}");
        let e = parse_query(&q(&[]), 0).unwrap_err();
        assert!(e.message().contains("name"), "{e}");
        let e = parse_query(&q(&[("name", "a"), ("sampleRate", "x")]), 0).unwrap_err();
        assert_eq!(Code::of(&e), Code::BadRequest);
    }

    #[test]
    fn a_service_name_label_keeps_the_app_as_app_name() {
        let r = parse_query(&q(&[("name", "shop{service_name=cart}")]), 0).unwrap();
        let labels = client_labels(&r);
        assert_eq!(labels.get("service_name"), Some("cart"));
        assert_eq!(labels.get("app_name"), Some("shop"));
    }
}
