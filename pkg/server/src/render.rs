//! The legacy Pyroscope HTTP query API: `GET /pyroscope/render` answers
//! flamebearer JSON for `query=<profile type ID>{selector}` (or Graphviz
//! text with `format=dot`; `groupBy=<label>` adds one timeline per value under
//! `groups`, `aggregation=sum|avg` chooses how each timeline step
//! aggregates), `/pyroscope/render-diff` the diff of two such queries, and
//! `/pyroscope/labels` and `/pyroscope/label-values?label=` the label names
//! and values of the series a `query` selects, as JSON arrays.
//!
//! `from` and `until` take every form Pyroscope accepts ([`parse_time`]):
//! `now-1h`, unix s/ms/µs/ns, `YYYYMMDD`, `HH:MM_YYYYMMDD`, RFC 3339.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Extension, Query},
    http::header,
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
    types::v1::{LabelNamesRequest, LabelValuesRequest, TimeSeriesAggregationType},
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
            async move {
                match render(&q, tenant.0, params).await {
                    Ok(Rendered::Json(body)) => Json(body).into_response(),
                    Ok(Rendered::Dot(text)) => (
                        [(header::CONTENT_TYPE, "text/vnd.graphviz; charset=utf-8")],
                        text,
                    )
                        .into_response(),
                    Err(status) => error_response(&status),
                }
            }
        },
    );
    let q = querier.clone();
    let diff = get(
        move |tenant: Extension<Tenant>, Query(params): Query<HashMap<String, String>>| {
            let q = q.clone();
            async move { into_response(render_diff(&q, tenant.0, params).await) }
        },
    );
    let q = querier.clone();
    let labels = get(
        move |tenant: Extension<Tenant>, Query(params): Query<HashMap<String, String>>| {
            let q = q.clone();
            async move { into_response(label_answer(&q, tenant.0, params, None).await) }
        },
    );
    let q = querier.clone();
    let label_values = get(
        move |tenant: Extension<Tenant>, Query(params): Query<HashMap<String, String>>| {
            let q = q.clone();
            async move {
                let Some(name) = params.get("label").or_else(|| params.get("name")).cloned() else {
                    return error_response(
                        &Code::BadRequest.status("missing label: use label-values?label=<name>"),
                    );
                };
                into_response(label_answer(&q, tenant.0, params, Some(name)).await)
            }
        },
    );
    Router::new()
        .route("/pyroscope/labels", labels.clone())
        .route("/labels", labels)
        .route("/pyroscope/label-values", label_values.clone())
        .route("/label-values", label_values)
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

/// Returns the `aggregation` parameter: `sum` (default) or `avg`.
fn aggregation(params: &HashMap<String, String>) -> Result<Option<i32>, Status> {
    match params.get("aggregation").map(String::as_str) {
        None | Some("" | "sum") => Ok(None),
        Some("avg" | "average") => Ok(Some(TimeSeriesAggregationType::Average as i32)),
        Some(other) => {
            Err(Code::BadRequest.status(format!("unknown aggregation {other:?}: use sum or avg")))
        }
    }
}

/// Returns the timelines (totals per step, zero-filled, at most ~1000
/// points), one per value of `group_by` or one for everything.
async fn timelines(
    querier: &Querier,
    tenant: &Tenant,
    q: &RangeQuery,
    group_by: Option<&str>,
    aggregation: Option<i32>,
) -> Result<Vec<(String, serde_json::Value)>, Status> {
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
                group_by: group_by.map(|g| vec![g.to_owned()]).unwrap_or_default(),
                aggregation,
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let start_s = q.from_ms / 1000;
    let n = (span_s / step_s + 1) as usize;
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for series in &response.series {
        let key = group_by
            .and_then(|g| series.labels.iter().find(|l| l.name == g))
            .map(|l| l.value.clone())
            .unwrap_or_default();
        let slot = match out.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                out.push((key, vec![0f64; n]));
                out.len() - 1
            }
        };
        for point in &series.points {
            let i = ((point.timestamp / 1000 - start_s) / step_s) as usize;
            if let Some(v) = out[slot].1.get_mut(i) {
                *v += point.value;
            }
        }
    }
    if out.is_empty() && group_by.is_none() {
        out.push((String::new(), vec![0f64; n]));
    }
    Ok(out
        .into_iter()
        .map(|(k, samples)| {
            (
                k,
                json!({ "startTime": start_s, "samples": samples, "durationDelta": step_s }),
            )
        })
        .collect())
}

/// What `/render` answers.
enum Rendered {
    Json(serde_json::Value),
    Dot(String),
}

async fn render(
    querier: &Querier,
    tenant: Tenant,
    params: HashMap<String, String>,
) -> Result<Rendered, Status> {
    let q = range_query(&params, "query", "from", "until")?;
    let format = params.get("format").map_or("json", String::as_str);
    if !matches!(format, "json" | "dot" | "") {
        return Err(Code::BadRequest.status(format!("unknown format {format:?}: use json or dot")));
    }
    let aggregation = aggregation(&params)?;
    let fg = querier
        .select_merge_stacktraces(request(
            &tenant,
            stacktraces_request(&q, max_nodes(&params)),
        ))
        .await?
        .into_inner()
        .flamegraph
        .unwrap_or_default();
    if format == "dot" {
        let tree = flamegraph::FunctionTree::from_flamegraph(&fg)
            .map_err(|e| Code::Internal.status(e.to_string()))?;
        let (units, _) = units(&q.profile_type);
        let nodes = max_nodes(&params).map_or(DOT_NODES, |n| (n.max(1) as usize).min(DOT_NODES));
        return Ok(Rendered::Dot(crate::dot::render(
            &tree, &q.query, units, nodes,
        )));
    }
    let mut timeline = timelines(querier, &tenant, &q, None, aggregation).await?;
    let mut body = json!({
        "flamebearer": flamegraph::flamebearer_json(&fg),
        "metadata": metadata(&q, "single"),
        "timeline": timeline.pop().map(|(_, t)| t),
    });
    if let Some(group_by) = params.get("groupBy").filter(|g| !g.is_empty()) {
        let groups: serde_json::Map<String, serde_json::Value> =
            timelines(querier, &tenant, &q, Some(group_by), aggregation)
                .await?
                .into_iter()
                .collect();
        body["groups"] = serde_json::Value::Object(groups);
    }
    Ok(Rendered::Json(body))
}

/// Most nodes a Graphviz answer draws (pprof's own default is 80).
const DOT_NODES: usize = 200;

/// Answers `/labels` (`name` is `None`) and `/label-values`: the names, or
/// the values of `name`, of the series `query` selects in `from..until`
/// (default: the last hour). Reserved names (`__…`) are not listed.
async fn label_answer(
    querier: &Querier,
    tenant: Tenant,
    params: HashMap<String, String>,
    name: Option<String>,
) -> Result<serde_json::Value, Status> {
    let now_ms = SystemClock.now_millis();
    let from_ms = parse_time(params.get("from").map_or("now-1h", String::as_str), now_ms)?;
    let until_ms = parse_time(params.get("until").map_or("now", String::as_str), now_ms)?;
    let matchers = match params
        .get("query")
        .map(|q| q.trim())
        .filter(|q| !q.is_empty())
    {
        None => Vec::new(),
        Some(q) if q.starts_with('{') => vec![q.to_owned()],
        Some(q) => {
            let (profile_type, _) = Selector::parse_profile_query(q)
                .map_err(|e| Code::BadRequest.status(e.to_string()))?;
            let inner = q
                .find('{')
                .map(|i| q[i + 1..].trim_end().trim_end_matches('}').trim())
                .unwrap_or("");
            let sep = if inner.is_empty() { "" } else { "," };
            vec![format!(
                "{{{}=\"{}\"{sep}{inner}}}",
                ember_model::labels::PROFILE_TYPE,
                profile_type.id()
            )]
        }
    };
    let names = match name {
        None => querier
            .label_names(request(
                &tenant,
                LabelNamesRequest {
                    matchers,
                    start: from_ms,
                    end: until_ms,
                },
            ))
            .await?
            .into_inner()
            .names
            .into_iter()
            .filter(|n| !n.starts_with(ember_model::labels::RESERVED_PREFIX))
            .collect::<Vec<_>>(),
        Some(name) => {
            querier
                .label_values(request(
                    &tenant,
                    LabelValuesRequest {
                        name,
                        matchers,
                        start: from_ms,
                        end: until_ms,
                    },
                ))
                .await?
                .into_inner()
                .names
        }
    };
    Ok(json!(names))
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
