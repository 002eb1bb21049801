//! Acceptance: with `-auth.tokens-file`, every API request needs a credential of
//! the file — push, `/ingest`, a query and the UI's render call alike — and
//! `X-Scope-OrgID` picks one of the credential's tenants; `/ready` and `/metrics`
//! stay open; a real Pyroscope SDK pushes with its basic-auth options; tenants
//! read only their own data.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use ember_tests::process::{run_logged, write_file};
use ember_tests::{
    EmberProcess, HttpResponse, PUSH_PATH, TimeRange, client::push_request, eventually, now_nanos,
    querier_path, skip_or_fail_missing_tool, testdata,
};
use prost::Message;
use serde_json::json;

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Starts Ember with three credentials: a token of team-a, a bcrypt basic-auth
/// user of team-a and team-b, and a plain one of team-b.
fn start() -> (tempfile::TempDir, EmberProcess) {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("alloy-pass", 4).unwrap();
    let tokens = write_file(
        dir.path(),
        "tokens.yaml",
        format!(
            "- {{token: tok-a, tenants: [team-a]}}\n\
             - {{username: alloy, password: \"{hash}\", tenants: [team-a, team-b]}}\n\
             - {{username: grafana, password: graf-pass, tenants: [team-b]}}\n"
        )
        .as_bytes(),
    );
    let flag = format!("-auth.tokens-file={}", tokens.display());
    let ember = EmberProcess::start(&[&flag]);
    (dir, ember)
}

/// One kind of request, as its client sends it.
struct Endpoint {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
}

fn endpoints(now: i64) -> Vec<Endpoint> {
    // Stamped now, so that the queries' range holds it.
    let raw = ember_tests::pprof::with_time_nanos(&testdata::read("cpu.pb.gz"), now);
    let push = push_request(&[("service_name", "auth-app")], &raw).encode_to_vec();
    let range = json!({"start": (now / 1_000_000 - 3_600_000).to_string(), "end": (now / 1_000_000 + 60_000).to_string()});
    vec![
        Endpoint {
            name: "push",
            method: "POST",
            path: PUSH_PATH.into(),
            content_type: "application/proto",
            body: push,
        },
        Endpoint {
            name: "/ingest",
            method: "POST",
            path: "/ingest?name=auth-ingest.cpu&format=folded".into(),
            content_type: "text/plain",
            body: b"main;work 10\nmain;idle 1\n".to_vec(),
        },
        Endpoint {
            name: "query",
            method: "POST",
            path: querier_path("ProfileTypes"),
            content_type: "application/json",
            body: serde_json::to_vec(&range).unwrap(),
        },
        Endpoint {
            name: "UI data",
            method: "GET",
            path: "/pyroscope/render?query=process_cpu:cpu:nanoseconds:cpu:nanoseconds%7B%7D&from=now-1h&until=now&format=json".into(),
            content_type: "",
            body: Vec::new(),
        },
    ]
}

fn call(
    ember: &EmberProcess,
    e: &Endpoint,
    authorization: Option<&str>,
    tenant: Option<&str>,
) -> HttpResponse {
    let mut headers = Vec::new();
    if !e.content_type.is_empty() {
        headers.push(("content-type", e.content_type));
    }
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    if let Some(t) = tenant {
        headers.push(("x-scope-orgid", t));
    }
    let body = (e.method == "POST").then_some(e.body.as_slice());
    ember.client().request(e.method, &e.path, &headers, body)
}

#[test]
fn every_credential_case_over_every_kind_of_request() {
    let (_dir, ember) = start();
    let alloy = basic("alloy", "alloy-pass");
    let cases: &[(&str, Option<&str>, Option<&str>, u16)] = &[
        ("no credential", None, None, 401),
        ("wrong token", Some("Bearer nope"), None, 401),
        (
            "wrong password",
            Some(&basic("alloy", "guess")),
            Some("team-a"),
            401,
        ),
        (
            "right token, its one tenant",
            Some("Bearer tok-a"),
            None,
            200,
        ),
        (
            "right token, named tenant",
            Some("Bearer tok-a"),
            Some("team-a"),
            200,
        ),
        ("basic auth, bcrypt", Some(&alloy), Some("team-b"), 200),
        (
            "basic auth, plain, one tenant",
            Some(&basic("grafana", "graf-pass")),
            None,
            200,
        ),
        (
            "tenant outside the credential",
            Some("Bearer tok-a"),
            Some("team-b"),
            403,
        ),
        ("several tenants, none named", Some(&alloy), None, 401),
    ];
    for e in endpoints(now_nanos()) {
        for &(case, authorization, tenant, want) in cases {
            let r = call(&ember, &e, authorization, tenant);
            assert_eq!(r.status, want, "{}, {case}: {}", e.name, r.text());
            match want {
                401 => {
                    let challenges = r.www_authenticate.join(" | ");
                    assert!(
                        challenges.contains("Basic") && challenges.contains("Bearer"),
                        "{}, {case}: challenges {challenges:?}",
                        e.name
                    );
                }
                403 => {
                    let error = r.connect_error().unwrap();
                    assert_eq!(error.code, "permission_denied", "{}", e.name);
                    assert!(
                        error.message.contains("team-b"),
                        "{}: {}",
                        e.name,
                        error.message
                    );
                }
                _ => {}
            }
        }
    }
    for open in ["/ready", "/metrics"] {
        assert_eq!(ember.client().get(open).status, 200, "{open} stays open");
    }
    let log = ember.log();
    for secret in ["tok-a", "alloy-pass", "graf-pass"] {
        assert!(!log.contains(secret), "{secret} appears in the log");
    }
}

#[test]
fn tenants_read_only_their_own_data() {
    let (_dir, ember) = start();
    let now = now_nanos();
    let push = &endpoints(now)[0];
    assert_eq!(call(&ember, push, Some("Bearer tok-a"), None).status, 200);
    let query = &endpoints(now)[2];
    let types = |authorization: &str, tenant: Option<&str>| {
        let r = call(&ember, query, Some(authorization), tenant);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["profileTypes"]
            .as_array()
            .map_or(0, |types| types.len())
    };
    eventually("team-a sees its push", Duration::from_secs(10), || {
        let n = types("Bearer tok-a", None);
        if n > 0 {
            Ok(())
        } else {
            Err("no profile types yet".to_string())
        }
    });
    assert_eq!(
        types(&basic("grafana", "graf-pass"), None),
        0,
        "team-b sees nothing"
    );
    assert_eq!(types(&basic("alloy", "alloy-pass"), Some("team-b")), 0);
    assert!(types(&basic("alloy", "alloy-pass"), Some("team-a")) > 0);
}

#[test]
fn the_python_sdk_pushes_with_basic_auth() {
    let Some(python) = ember_tests::python_with_sdk() else {
        skip_or_fail_missing_tool(
            "the pyroscope-io Python SDK",
            "pip install pyroscope-io (or run scripts/test.sh, which sets EMBER_PYTHON)",
        );
        return;
    };
    let (dir, ember) = start();
    let started = now_nanos();
    let mut command = Command::new(&python);
    command
        .arg(testdata::workspace_root().join("tests/python/busy_app.py"))
        .args(["--server", &ember.base_url(), "--app", "auth-python"])
        .args(["--tenant", "team-b", "--basic-auth", "alloy:alloy-pass"])
        .args(["--seconds", "3"]);
    run_logged(
        command,
        "the Python program",
        &dir.path().join("python.log"),
        Duration::from_secs(90),
    );
    let range = TimeRange::new(
        started / 1_000_000 - 60_000,
        now_nanos() / 1_000_000 + 60_000,
    );
    let alloy = basic("alloy", "alloy-pass");
    let labels = |tenant: &str| {
        let r = ember.client().request(
            "POST",
            &querier_path("LabelValues"),
            &[
                ("content-type", "application/json"),
                ("authorization", &alloy),
                ("x-scope-orgid", tenant),
            ],
            Some(&serde_json::to_vec(&json!({"name": "service_name", "start": range.start.to_string(), "end": range.end.to_string()})).unwrap()),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    eventually("the SDK's profiles arrive", Duration::from_secs(20), || {
        let values = labels("team-b").to_string();
        if values.contains("auth-python") {
            Ok(())
        } else {
            Err(values)
        }
    });
    assert!(!labels("team-a").to_string().contains("auth-python"));
}
