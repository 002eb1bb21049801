//! `GET /ring`: the members as this process sees them, for operators (HTML)
//! and scripts (JSON), like Pyroscope's ring status page.

use std::{collections::HashMap, fmt::Write, sync::Arc, time::SystemTime};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, header::ACCEPT},
    response::{Html, IntoResponse, Response},
    routing::get,
};

use crate::{Member, Ring};

/// How many of a member's tokens the HTML page lists.
const TOKENS_SHOWN: usize = 5;

impl Ring {
    /// Returns the router serving `GET /ring`: an HTML table of the members,
    /// or `{"members": [...]}` when the request's `Accept` header contains
    /// `application/json` or the query has `format=json`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/ring", get(ring_page))
            .with_state(self.clone())
    }
}

#[derive(serde::Serialize)]
struct RingJson {
    members: Vec<Member>,
}

async fn ring_page(
    State(ring): State<Arc<Ring>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let members = ring.members();
    let wants_json = params.get("format").is_some_and(|f| f == "json")
        || headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/json"));
    if wants_json {
        Json(RingJson { members }).into_response()
    } else {
        Html(render(&ring.local().name, &members, ring.now())).into_response()
    }
}

/// Returns the HTML page listing `members`; `local` is this process.
fn render(local: &str, members: &[Member], now: SystemTime) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Ember ring</title>\
         <style>body{font-family:sans-serif}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}\
         .unhealthy{background:#fdd}</style></head><body>\n<h1>Ring</h1>\n",
    );
    let _ = writeln!(
        html,
        "<p>{} members as seen by <b>{}</b>. <a href=\"?format=json\">JSON</a></p>",
        members.len(),
        escape(local)
    );
    html.push_str(
        "<table>\n<tr><th>Name</th><th>Address</th><th>Zone</th><th>Roles</th><th>State</th>\
         <th>Tokens</th><th>Last heartbeat</th><th>Healthy</th></tr>\n",
    );
    for m in members {
        let shown: Vec<String> = m
            .tokens
            .iter()
            .take(TOKENS_SHOWN)
            .map(u32::to_string)
            .collect();
        let more = if m.tokens.len() > TOKENS_SHOWN {
            ", …"
        } else {
            ""
        };
        let age = match now.duration_since(m.last_heartbeat) {
            Ok(age) => format!("{:.1}s ago", age.as_secs_f64()),
            Err(_) => "in the future (clock skew)".to_owned(),
        };
        let _ = writeln!(
            html,
            "<tr{}><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            if m.healthy {
                ""
            } else {
                " class=\"unhealthy\""
            },
            escape(&m.name),
            if m.name == local {
                " (this process)"
            } else {
                ""
            },
            escape(&m.addr),
            escape(&m.zone),
            m.roles,
            m.state,
            if m.tokens.is_empty() {
                "0".to_owned()
            } else {
                format!("{}: {}", m.tokens.len(), shown.join(", "))
            },
            more,
            age,
            if m.healthy { "yes" } else { "no" },
        );
    }
    html.push_str("</table>\n</body></html>\n");
    html
}

/// Returns `s` safe to place in HTML text: member names come from the network.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::{Roles, State as MemberState};

    fn ring() -> Arc<Ring> {
        Ring::single(
            Member {
                name: "node-<1>".to_owned(),
                addr: "127.0.0.1:4040".to_owned(),
                zone: "zone-<a>".to_owned(),
                roles: Roles {
                    ingester: true,
                    distributor: true,
                    ..Roles::default()
                },
                state: MemberState::Active,
                tokens: Vec::new(),
                last_heartbeat: SystemTime::UNIX_EPOCH,
                healthy: true,
            },
            ember_time::SystemClock::shared(),
        )
    }

    async fn get(ring: &Arc<Ring>, uri: &str, accept: Option<&str>) -> (String, String) {
        let mut request = Request::get(uri);
        if let Some(accept) = accept {
            request = request.header(ACCEPT, accept);
        }
        let response = ring
            .router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (content_type, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_html_by_default() {
        let ring = ring();
        let (content_type, body) = get(&ring, "/ring", Some("text/html,*/*")).await;
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(body.contains("node-&lt;1&gt; (this process)"), "{body}");
        assert!(body.contains("127.0.0.1:4040"));
        assert!(body.contains("<th>Zone</th>"), "{body}");
        assert!(body.contains("<td>zone-&lt;a&gt;</td>"), "{body}");
        assert!(body.contains("ingester,distributor"));
        assert!(body.contains("ACTIVE"));
        assert!(body.contains("128: "), "token count and the first tokens");
    }

    #[tokio::test]
    async fn serves_json_on_request() {
        let ring = ring();
        for (uri, accept) in [
            ("/ring?format=json", None),
            ("/ring", Some("application/json")),
            ("/ring", Some("text/plain, application/json;q=0.9")),
        ] {
            let (content_type, body) = get(&ring, uri, accept).await;
            assert_eq!(content_type, "application/json");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let members = json["members"].as_array().unwrap();
            assert_eq!(members.len(), 1);
            let m = &members[0];
            assert_eq!(m["name"], "node-<1>");
            assert_eq!(m["addr"], "127.0.0.1:4040");
            assert_eq!(m["zone"], "zone-<a>");
            assert_eq!(m["state"], "ACTIVE");
            assert_eq!(m["roles"]["ingester"], true);
            assert_eq!(m["roles"]["querier"], false);
            assert_eq!(m["tokens"].as_array().unwrap().len(), 128);
            assert_eq!(m["healthy"], true);
            assert!(m["last_heartbeat"].as_str().unwrap().ends_with('Z'));
        }
    }

    #[test]
    fn html_marks_unhealthy_members() {
        let now = SystemTime::now();
        let member = Member {
            name: "gone".to_owned(),
            addr: "10.0.0.2:4040".to_owned(),
            zone: String::new(),
            roles: Roles::default(),
            state: MemberState::Leaving,
            tokens: Vec::new(),
            last_heartbeat: now - Duration::from_secs(90),
            healthy: false,
        };
        let html = render("me", &[member], now);
        assert!(html.contains("class=\"unhealthy\""));
        assert!(html.contains("90.0s ago"));
        assert!(html.contains("LEAVING"));
    }
}
