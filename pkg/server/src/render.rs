//! The legacy Pyroscope HTTP query API: `GET /pyroscope/render` answers
//! flamebearer JSON for `query=<profile type ID>{selector}`, and
//! `/pyroscope/render-diff` the diff of two such queries.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Extension, Query},
    response::{IntoResponse, Response},
    routing::get,
};
use ember_model::{ProfileType, Selector, flamegraph};
use ember_proto::{
    Tenant,
    error::Code,
    querier::v1::{
        DiffRequest, SelectMergeStacktracesRequest, SelectSeriesRequest,
        querier_service_server::QuerierService,
    },
};
use ember_querier::Querier;
use serde_json::json;
use tonic::Status;

use ember_model::time::parse as parse_time;
use ember_time::{Clock, SystemClock};

use crate::connect::error_response;

pub(crate) fn routes(querier: Option<Arc<Querier>>) -> Router {
    let Some(querier) = querier else {
        return Router::new();
    };
    let q = querier.clone();
    let render = get(
        move |tenant: Extension<Tenant>, Query(params): Query<HashMap<String, String>>| {
            let q = q.clone();
            async move { into_response(render(&q, tenant.0, params).await) }
        },
    );
    let diff = get(
        move |tenant: Extension<Tenant>, Query(params): Query<HashMap<String, String>>| {
            let q = querier.clone();
            async move { into_response(render_diff(&q, tenant.0, params).await) }
        },
    );
    Router::new()
        .route("/pyroscope/render", render.clone())
        .route("/render", render)
        .route("/pyroscope/render-diff", diff.clone())
        .route("/render-diff", diff)
}

fn into_response(result: Result<serde_json::Value, Status>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(status) => error_response(&status),
    }
}

fn request<T>(tenant: &Tenant, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.extensions_mut().insert(tenant.clone());
    r
}

/// A parsed `query`, `from`, `until` triple.
struct RangeQuery {
    profile_type: ProfileType,
    selector: String,
    from_ms: i64,
    until_ms: i64,
    query: String,
}

fn range_query(
    params: &HashMap<String, String>,
    query: &str,
    from: &str,
    until: &str,
) -> Result<RangeQuery, Status> {
    let bad = |m: String| Code::BadRequest.status(m);
    let q = params.get(query).ok_or_else(|| {
        bad(format!(
            "missing {query}: use {query}=<profile type ID>{{selector}}"
        ))
    })?;
    let (profile_type, _) = Selector::parse_profile_query(q).map_err(|e| bad(e.to_string()))?;
    let selector = q.find('{').map(|i| q[i..].to_owned()).unwrap_or_default();
    let now_ms = SystemClock.now_millis();
    let from_ms = parse_time(params.get(from).map_or("now-1h", String::as_str), now_ms)?;
    let until_ms = parse_time(params.get(until).map_or("now", String::as_str), now_ms)?;
    if until_ms < from_ms {
        return Err(bad(format!("{until} is before {from}")));
    }
    Ok(RangeQuery {
        profile_type,
        selector,
        from_ms,
        until_ms,
        query: q.clone(),
    })
}

fn max_nodes(params: &HashMap<String, String>) -> Option<i64> {
    params
        .get("maxNodes")
        .or_else(|| params.get("max-nodes"))
        .and_then(|v| v.parse().ok())
}

/// Returns the flamebearer `units` and `sampleRate` of a profile type, as
/// Pyroscope's UI expects them.
fn units(t: &ProfileType) -> (&'static str, i64) {
    match (t.sample_type.as_str(), t.sample_unit.as_str()) {
        (_, "nanoseconds") => ("samples", 1_000_000_000),
        (_, "microseconds") => ("samples", 1_000_000),
        (_, "bytes") => ("bytes", 100),
        ("goroutine" | "goroutines", _) => ("goroutines", 100),
        (t, _) if t.contains("objects") => ("objects", 100),
        ("contentions", _) => ("lock_samples", 100),
        _ => ("samples", 100),
    }
}

fn metadata(q: &RangeQuery, format: &str) -> serde_json::Value {
    let (units, sample_rate) = units(&q.profile_type);
    json!({
        "format": format,
        "spyName": "",
        "sampleRate": sample_rate,
        "units": units,
        "name": q.query,
    })
}

fn stacktraces_request(q: &RangeQuery, max_nodes: Option<i64>) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: q.profile_type.id(),
        label_selector: q.selector.clone(),
        start: q.from_ms,
        end: q.until_ms,
        max_nodes,
        ..Default::default()
    }
}

/// Returns the timeline: totals per step, zero-filled, with at most ~1000 points.
async fn timeline(
    querier: &Querier,
    tenant: &Tenant,
    q: &RangeQuery,
) -> Result<serde_json::Value, Status> {
    let span_s = ((q.until_ms - q.from_ms) / 1000).max(1);
    let step_s = (span_s / 1000).max(10);
    let response = querier
        .select_series(request(
            tenant,
            SelectSeriesRequest {
                profile_type_id: q.profile_type.id(),
                label_selector: q.selector.clone(),
                start: q.from_ms,
                end: q.until_ms,
                step: step_s as f64,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let start_s = q.from_ms / 1000;
    let n = (span_s / step_s + 1) as usize;
    let mut samples = vec![0f64; n];
    for point in response.series.iter().flat_map(|s| &s.points) {
        let i = ((point.timestamp / 1000 - start_s) / step_s) as usize;
        if let Some(slot) = samples.get_mut(i) {
            *slot += point.value;
        }
    }
    Ok(json!({ "startTime": start_s, "samples": samples, "durationDelta": step_s }))
}

async fn render(
    querier: &Querier,
    tenant: Tenant,
    params: HashMap<String, String>,
) -> Result<serde_json::Value, Status> {
    let q = range_query(&params, "query", "from", "until")?;
    let fg = querier
        .select_merge_stacktraces(request(
            &tenant,
            stacktraces_request(&q, max_nodes(&params)),
        ))
        .await?
        .into_inner()
        .flamegraph
        .unwrap_or_default();
    Ok(json!({
        "flamebearer": flamegraph::flamebearer_json(&fg),
        "metadata": metadata(&q, "single"),
        "timeline": timeline(querier, &tenant, &q).await?,
    }))
}

async fn render_diff(
    querier: &Querier,
    tenant: Tenant,
    params: HashMap<String, String>,
) -> Result<serde_json::Value, Status> {
    let left = range_query(&params, "leftQuery", "leftFrom", "leftUntil")?;
    let right = range_query(&params, "rightQuery", "rightFrom", "rightUntil")?;
    let max_nodes = max_nodes(&params);
    let diff = querier
        .diff(request(
            &tenant,
            DiffRequest {
                left: Some(stacktraces_request(&left, max_nodes)),
                right: Some(stacktraces_request(&right, max_nodes)),
            },
        ))
        .await?
        .into_inner()
        .flamegraph
        .unwrap_or_default();
    Ok(json!({
        "flamebearer": flamegraph::flamebearer_diff_json(&diff),
        "metadata": metadata(&left, "double"),
        "leftTicks": diff.left_ticks,
        "rightTicks": diff.right_ticks,
    }))
}
