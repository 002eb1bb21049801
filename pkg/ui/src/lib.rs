//! The web UI that `ember` serves at `/`, and the server-side SVG flame graph.
//!
//! The UI is plain HTML, CSS and JavaScript ES modules under `ui/` at the root
//! of the repository, with no build step: the files are embedded in the binary
//! with `include_str!`, so `cargo run` serves them and nothing is fetched at run
//! time. The browser talks to the same origin's Connect JSON API
//! (`/querier.v1.QuerierService/*`) like any other client.
//!
//! `GET /render.svg?query=<profile type ID>{selector}&from=..&until=..` renders
//! the merged flame graph of a selection as SVG with `inferno`, for sharing in
//! chats and tickets. It calls the querier in-process.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Extension, Query},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use ember_model::{Selector, flamegraph::FunctionTree, time};
use ember_proto::{
    Tenant,
    error::Code,
    querier::v1::{SelectMergeStacktracesRequest, querier_service_server::QuerierService},
};
use ember_querier::Querier;
use ember_time::{Clock, SystemClock};
use tonic::Status;

/// One embedded file of the UI.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Every file of `ui/`, served under `/ui/<name>` (and `index.html` at `/`).
const ASSETS: &[Asset] = &[
    Asset {
        path: "/ui/index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../../ui/index.html"),
    },
    Asset {
        path: "/ui/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../../ui/style.css"),
    },
    Asset {
        path: "/ui/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../ui/app.js"),
    },
    Asset {
        path: "/ui/api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../ui/api.js"),
    },
    Asset {
        path: "/ui/flamegraph.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../ui/flamegraph.js"),
    },
    Asset {
        path: "/ui/timeline.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../ui/timeline.js"),
    },
    Asset {
        path: "/ui/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../../ui/favicon.svg"),
    },
];

/// The most nodes the SVG asks the querier for: more than a browser shows well.
const SVG_MAX_NODES: i64 = 4096;

/// Returns the UI's routes: `/`, `/ui/*` and, when this process runs a querier,
/// `/render.svg`. Every request must carry an `Extension<Tenant>`.
pub fn routes(querier: Option<Arc<Querier>>) -> Router {
    let mut router = Router::new().route("/", get(|| async { asset("/ui/index.html") }));
    for a in ASSETS {
        router = router.route(a.path, get(move || async move { asset(a.path) }));
    }
    router = router.route("/favicon.ico", get(|| async { asset("/ui/favicon.svg") }));
    if let Some(querier) = querier {
        router = router.route(
            "/render.svg",
            get(
                move |tenant: Extension<Tenant>, Query(params): Query<Vec<(String, String)>>| {
                    let q = querier.clone();
                    async move {
                        match render_svg(&q, tenant.0, &params).await {
                            Ok(svg) => {
                                ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
                            }
                            Err(status) => error(&status),
                        }
                    }
                },
            ),
        );
    }
    router
}

fn asset(path: &str) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Answers a failed query as plain text with the status of its code.
fn error(status: &Status) -> Response {
    let code = StatusCode::from_u16(Code::of(status).http()).unwrap_or(StatusCode::BAD_REQUEST);
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", status.message()),
    )
        .into_response()
}

/// A `query`/`from`/`until` selection read from the URL.
#[derive(Debug, PartialEq)]
struct Selection {
    profile_type_id: String,
    selector: String,
    start_ms: i64,
    end_ms: i64,
}

fn selection(params: &[(String, String)], now_ms: i64) -> ember_model::Result<Selection> {
    let bad = |m: &str| ember_model::Error::Malformed(m.to_owned());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let query =
        get("query").ok_or_else(|| bad("missing query: use query=<profile type ID>{selector}"))?;
    let (profile_type, _) = Selector::parse_profile_query(query)?;
    let selector = query.find('{').map(|i| &query[i..]).unwrap_or("{}");
    let start_ms = time::parse(get("from").unwrap_or("now-1h"), now_ms)?;
    let end_ms = time::parse(get("until").unwrap_or("now"), now_ms)?;
    if end_ms < start_ms {
        return Err(bad("until is before from"));
    }
    Ok(Selection {
        profile_type_id: profile_type.id(),
        selector: selector.to_owned(),
        start_ms,
        end_ms,
    })
}

async fn render_svg(
    querier: &Querier,
    tenant: Tenant,
    params: &[(String, String)],
) -> Result<String, Status> {
    let s = selection(params, SystemClock.now_millis())?;
    let mut request = tonic::Request::new(SelectMergeStacktracesRequest {
        profile_type_id: s.profile_type_id.clone(),
        label_selector: s.selector.clone(),
        start: s.start_ms,
        end: s.end_ms,
        max_nodes: Some(SVG_MAX_NODES),
        ..Default::default()
    });
    request.extensions_mut().insert(tenant);
    let fg = querier
        .select_merge_stacktraces(request)
        .await?
        .into_inner()
        .flamegraph
        .unwrap_or_default();
    let title = format!("{}{}", s.profile_type_id, s.selector);
    let count_name = s.profile_type_id.split(':').nth(2).unwrap_or("samples");
    let count_name = count_name.to_owned();
    // Decoding and laying out thousands of frames is CPU work: off the runtime.
    tokio::task::spawn_blocking(move || {
        let tree =
            FunctionTree::from_flamegraph(&fg).map_err(|e| Code::Internal.status(e.to_string()))?;
        svg(&tree, &title, &count_name).map_err(|e| Code::Internal.status(e))
    })
    .await
    .map_err(|e| Code::Internal.status(e.to_string()))?
}

/// Returns the folded-stack lines (`a;b;c 12`) of a tree, as inferno reads them.
fn folded(tree: &FunctionTree) -> Vec<String> {
    let mut lines = Vec::new();
    tree.for_each_stack(|stack, value| {
        if stack.is_empty() || value <= 0 {
            return;
        }
        let frames: Vec<String> = stack.iter().map(|f| clean_frame(f)).collect();
        lines.push(format!("{} {value}", frames.join(";")));
    });
    lines
}

/// Keeps a frame name from breaking the folded format: `;` separates frames
/// and a line ends at a newline.
fn clean_frame(name: &str) -> String {
    name.replace([';', '\n', '\r'], ":")
}

/// Renders a tree as an SVG flame graph (an icicle: the root on top, as in the
/// UI), or a small SVG that says there is nothing to show.
fn svg(tree: &FunctionTree, title: &str, count_name: &str) -> Result<String, String> {
    let lines = folded(tree);
    if lines.is_empty() {
        return Ok(empty_svg(title));
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = count_name.to_owned();
    options.direction = inferno::flamegraph::Direction::Inverted;
    options.colors =
        inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Hot);
    options.hash = true;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out)
        .map_err(|e| format!("cannot render the flame graph: {e}"))?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn empty_svg(title: &str) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"600\" height=\"60\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"10\" y=\"24\" font-family=\"sans-serif\" font-size=\"14\">{}</text>\
         <text x=\"10\" y=\"46\" font-family=\"sans-serif\" font-size=\"12\">no profiles in this time range</text>\
         </svg>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_a_selection_from_the_url() {
        let s = selection(
            &params(&[
                (
                    "query",
                    r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="x"}"#,
                ),
                ("from", "now-1h"),
                ("until", "1700000000"),
            ]),
            1_700_000_000_000,
        )
        .unwrap();
        assert_eq!(
            s,
            Selection {
                profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
                selector: r#"{service_name="x"}"#.into(),
                start_ms: 1_700_000_000_000 - 3_600_000,
                end_ms: 1_700_000_000_000,
            }
        );
        assert!(
            selection(&params(&[]), 0)
                .unwrap_err()
                .to_string()
                .contains("missing query")
        );
        assert!(
            selection(
                &params(&[
                    ("query", "memory:alloc_space:bytes:space:bytes"),
                    ("from", "now"),
                    ("until", "now-1h")
                ]),
                10_000_000
            )
            .is_err()
        );
    }

    #[test]
    fn renders_folded_stacks_as_svg() {
        let mut tree = FunctionTree::new();
        tree.insert_stack(&["main", "work;er", "compute"], 3);
        tree.insert_stack(&["main", "idle"], 1);
        assert_eq!(folded(&tree), vec!["main;idle 1", "main;work:er;compute 3"]);
        let svg = svg(&tree, "cpu{}", "nanoseconds").unwrap();
        assert!(svg.starts_with("<?xml"), "{svg}");
        assert!(svg.contains("compute"));
        assert!(svg.contains("work:er"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn an_empty_selection_still_gives_svg() {
        let svg = svg(&FunctionTree::new(), "a<b", "samples").unwrap();
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("no profiles"));
    }

    #[tokio::test]
    async fn serves_the_embedded_ui() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let response = routes(None)
                .oneshot(
                    axum::http::Request::get(path)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let ct = response.headers()[header::CONTENT_TYPE].to_str().unwrap();
            assert!(ct.starts_with(kind), "{path}: {ct}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert!(!body.is_empty(), "{path}");
        }
    }
}
