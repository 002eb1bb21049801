//! `/targets`: each target with its labels, last scrape, duration and last error, as
//! HTML for people or JSON (`?format=json` or `Accept: application/json`) for tools.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Json, Response};
use axum::{Router, routing::get};
use serde_json::{Value, json};

use crate::Agent;

pub(crate) fn routes(agent: Agent) -> Router {
    Router::new()
        .route("/targets", get(targets))
        .with_state(agent)
}

#[derive(Debug, serde::Deserialize)]
struct Params {
    format: Option<String>,
}

fn as_json(agent: &Agent) -> Value {
    let targets: Vec<Value> = agent
        .targets()
        .into_iter()
        .map(|(t, s)| {
            let health = match (&s.last_scrape, &s.last_error) {
                (None, _) => "unknown",
                (Some(_), None) => "up",
                (Some(_), Some(_)) => "down",
            };
            json!({
                "job": t.job,
                "type": t.kind.annotation(),
                "profileName": t.kind.profile_name(),
                "url": t.url(),
                "labels": t.labels,
                "health": health,
                "lastScrape": s.last_scrape.map(|t| t.to_rfc3339()),
                "lastScrapeDurationSeconds": s.last_duration.map(|d| d.as_secs_f64()),
                "lastScrapeBytes": s.last_bytes,
                "lastError": s.last_error.unwrap_or_default(),
            })
        })
        .collect();
    json!({ "activeTargets": targets })
}

async fn targets(
    State(agent): State<Agent>,
    Query(params): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let wants_json = params.format.as_deref() == Some("json")
        || headers
            .get(axum::http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    let data = as_json(&agent);
    if wants_json {
        return Json(data).into_response();
    }
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Ember agent targets</title>\
         <style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px;text-align:left}\
         table{border-collapse:collapse}.down{color:#b00}.up{color:#070}</style></head><body>\
         <h1>Targets</h1><p><a href=\"?format=json\">JSON</a></p><table><tr><th>Job</th><th>Type</th>\
         <th>Endpoint</th><th>State</th><th>Labels</th><th>Last scrape</th><th>Duration</th>\
         <th>Error</th></tr>",
    );
    for t in data["activeTargets"].as_array().into_iter().flatten() {
        let labels: Vec<String> = t["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
            .collect();
        let cell = |v: &Value| {
            escape(&v.as_str().map(str::to_string).unwrap_or_else(|| {
                if v.is_null() {
                    String::new()
                } else {
                    v.to_string()
                }
            }))
        };
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            cell(&t["job"]),
            cell(&t["type"]),
            cell(&t["url"]),
            cell(&t["health"]),
            cell(&t["health"]),
            escape(&labels.join(", ")),
            cell(&t["lastScrape"]),
            cell(&t["lastScrapeDurationSeconds"]),
            cell(&t["lastError"]),
        ));
    }
    html.push_str("</table></body></html>");
    Html(html).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
