//! Acceptance: the calls Grafana's Profiles Drilldown, the Pyroscope
//! datasource and profilecli make beside the flame-graph basics, as they make
//! them (Connect JSON with fields and enum values Ember does not know, and
//! protobuf): settings that survive a restart, ad hoc profiles, the tree
//! format, AnalyzeQuery, status, feature flags, Cloud-only services answering
//! `unimplemented`, the legacy render API's formats and times, and UTF-8 label
//! names in selectors, and client annotations on time-series points.

use base64::Engine;
use ember_proto::{
    querier::v1::{
        AnalyzeQueryRequest, AnalyzeQueryResponse, ProfileFormat, SelectMergeStacktracesRequest,
        SelectMergeStacktracesResponse, SelectSeriesRequest,
    },
    settings::v1::{GetSettingsRequest, GetSettingsResponse, SetSettingsRequest, Setting},
    types::v1::ProfileAnnotation,
};
use ember_tests::pprof::PprofBuilder;
use ember_tests::{
    Client, Codec, EmberProcess, MULTITENANCY, PushEncoding, now_nanos, querier_path,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SEC: i64 = 1_000_000_000;

/// Pushes one Go CPU profile: `main;work` 30 ms and `main;idle` 10 ms.
fn push_cpu(client: &Client, tenant: Option<&str>, service: &str, at: i64) {
    let profile = PprofBuilder::go_cpu()
        .time(at, 10 * SEC)
        .sample(&["main", "work"], &[3, 30_000_000])
        .sample(&["main", "idle"], &[1, 10_000_000])
        .encode();
    client.push_pprof(tenant, &[("service_name", service)], &profile);
}

fn settings(client: &Client, tenant: &str) -> BTreeMap<String, String> {
    let (status, answer) = client.connect_json(
        Some(tenant),
        "/settings.v1.SettingsService/Get",
        &json!({"unknownField": true}),
    );
    assert_eq!(status, 200, "{answer}");
    answer["settings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn settings_survive_a_restart_and_stay_per_tenant() {
    let mut ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    assert!(settings(&client, "drill").is_empty());
    // Drilldown's shape: the plugin settings as a JSON string, plus a field Ember does not know.
    let value = r#"{"collapsedFlamegraphs":true,"maxNodes":16384,"enableFunctionDetails":true}"#;
    let (status, answer) = client.connect_json(
        Some("drill"),
        "/settings.v1.SettingsService/Set",
        &json!({"setting": {"name": "pluginSettings", "value": value, "modifiedAt": "1700000000000", "scope": "user"}}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["setting"]["value"], value);
    // Protobuf, as a Go client sends it, for another tenant.
    let stored: ember_proto::settings::v1::SetSettingsResponse = client
        .call(
            Some("other"),
            "/settings.v1.SettingsService/Set",
            &SetSettingsRequest {
                setting: Some(Setting {
                    name: "pluginSettings".into(),
                    value: "{}".into(),
                    modified_at: 0,
                }),
            },
            Codec::Proto,
        )
        .unwrap();
    assert!(
        stored.setting.unwrap().modified_at > 1_700_000_000_000,
        "stamped now"
    );
    // An older change than the stored one is refused, not silently applied.
    let (status, answer) = client.connect_json(
        Some("drill"),
        "/settings.v1.SettingsService/Set",
        &json!({"setting": {"name": "pluginSettings", "value": "{}", "modifiedAt": 1}}),
    );
    assert_eq!(status, 400, "{answer}");

    ember.stop();
    ember.restart();
    let client = ember.client();
    assert_eq!(
        settings(&client, "drill"),
        BTreeMap::from([("pluginSettings".to_owned(), value.to_owned())])
    );
    let other: GetSettingsResponse = client
        .call(
            Some("other"),
            "/settings.v1.SettingsService/Get",
            &GetSettingsRequest {},
            Codec::Proto,
        )
        .unwrap();
    assert_eq!(other.settings.len(), 1);
    assert_eq!(other.settings[0].value, "{}");
}

/// Decodes Pyroscope's tree bytes (written independently of the server's
/// encoder) into stack → self value.
fn decode_tree(bytes: &[u8]) -> BTreeMap<Vec<String>, i64> {
    fn uvarint(b: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*pos];
            *pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    fn node(
        b: &[u8],
        pos: &mut usize,
        path: &mut Vec<String>,
        out: &mut BTreeMap<Vec<String>, i64>,
    ) {
        let len = uvarint(b, pos) as usize;
        let name = String::from_utf8(b[*pos..*pos + len].to_vec()).unwrap();
        *pos += len;
        let self_value = uvarint(b, pos) as i64;
        let children = uvarint(b, pos);
        let root = path.is_empty() && name.is_empty();
        if !root {
            path.push(name);
            if self_value > 0 {
                *out.entry(path.clone()).or_default() += self_value;
            }
        }
        for _ in 0..children {
            node(b, pos, path, out);
        }
        if !root {
            path.pop();
        }
    }
    let mut out = BTreeMap::new();
    if bytes.is_empty() {
        return out;
    }
    let mut pos = 0;
    node(bytes, &mut pos, &mut Vec::new(), &mut out);
    assert_eq!(pos, bytes.len(), "bytes after the tree");
    out
}

#[test]
fn query_api_accepts_newer_client_shapes_and_answers_tree_and_analysis() {
    let ember = EmberProcess::start(&[]);
    let client = ember.client();
    let now = now_nanos();
    push_cpu(&client, None, "shapes", now - 5 * SEC);
    let (start, end) = ((now - 60 * SEC) / 1_000_000, (now + 60 * SEC) / 1_000_000);
    let path = querier_path("SelectMergeStacktraces");

    // Newer Drilldown shapes: unknown enum values and fields fall back to a flame graph.
    for extra in [
        json!({"format": "PROFILE_FORMAT_FUNCTIONS", "frameFilter": {"functionName": "work"}}),
        json!({"format": "PROFILE_FORMAT_SANDWICH", "sandwich": "work"}),
        json!({"format": 42}),
        json!({"format": "PROFILE_FORMAT_PPROF"}),
    ] {
        let mut body = json!({
            "profileTypeID": CPU,
            "labelSelector": "{service_name=\"shapes\"}",
            "start": start.to_string(),
            "end": end,
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = client.connect_json(None, &path, &body);
        assert_eq!(status, 200, "{body}: {answer}");
        assert_eq!(
            answer["flamegraph"]["total"], "40000000",
            "{body}: {answer}"
        );
    }

    // profilecli's tree format, over protobuf.
    let tree: SelectMergeStacktracesResponse = client
        .call(
            None,
            &path,
            &SelectMergeStacktracesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{service_name=\"shapes\"}".into(),
                start,
                end,
                format: ProfileFormat::Tree as i32,
                ..Default::default()
            },
            Codec::Proto,
        )
        .unwrap();
    assert!(tree.flamegraph.is_none());
    let stacks = decode_tree(&tree.tree);
    let want: BTreeMap<Vec<String>, i64> = BTreeMap::from([
        (vec!["main".to_owned(), "idle".to_owned()], 10_000_000),
        (vec!["main".to_owned(), "work".to_owned()], 30_000_000),
    ]);
    assert_eq!(stacks, want);

    // profilecli `query merge --async`: answered at once with the merged pprof.
    let (status, merged) = client.connect_json(
        None,
        "/querier.v1.AsyncQuerierService/SelectMergeProfileAsync",
        &json!({"request": {"profileTypeID": CPU, "labelSelector": "{service_name=\"shapes\"}", "start": start, "end": end}}),
    );
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["status"], "ASYNC_QUERY_STATUS_SUCCESS", "{merged}");
    let values: i64 = merged["profile"]["sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][0].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(values, 40_000_000, "{merged}");
    let (status, poll) = client.connect_json(
        None,
        "/querier.v1.AsyncQuerierService/SelectMergeProfileAsync",
        &json!({"requestId": "01J0000000000000000000000"}),
    );
    assert_eq!(status, 404, "{poll}");

    // AnalyzeQuery: what the query would read, from the head now.
    let analysis: AnalyzeQueryResponse = client
        .call(
            None,
            &querier_path("AnalyzeQuery"),
            &AnalyzeQueryRequest {
                start,
                end,
                query: format!("{CPU}{{service_name=\"shapes\"}}"),
            },
            Codec::Proto,
        )
        .unwrap();
    let impact = analysis.query_impact.unwrap();
    assert_eq!(impact.total_queried_series, 1, "{analysis:?}");
    let short = &analysis.query_scopes[0];
    assert_eq!(short.component_type, "short term storage");
    assert_eq!((short.series_count, short.profile_count), (1, 1));
    let (status, none) = client.connect_json(
        None,
        &querier_path("AnalyzeQuery"),
        &json!({"start": start, "end": end, "query": "{service_name=\"absent\"}"}),
    );
    assert_eq!(status, 200, "{none}");
    assert!(
        none["queryImpact"]["totalQueriedSeries"].is_null()
            || none["queryImpact"]["totalQueriedSeries"] == "0",
        "{none}"
    );
}

#[test]
fn ad_hoc_profiles_upload_list_get_and_survive_a_restart() {
    let mut ember = EmberProcess::start(&[]);
    let client = ember.client();
    let profile = PprofBuilder::go_cpu()
        .time(now_nanos(), 10 * SEC)
        .sample(&["main", "work"], &[3, 30_000_000])
        .sample(&["main", "idle"], &[1, 10_000_000])
        .encode();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&profile);
    let upload = "/adhocprofiles.v1.AdHocProfileService/Upload";
    let (status, answer) = client.connect_json(
        None,
        upload,
        &json!({"name": "cpu.pprof", "profile": b64, "maxNodes": 100, "newField": 1}),
    );
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(answer["profileTypes"], json!(["samples", "cpu"]));
    assert_eq!(answer["profileType"], "samples");
    let fb: Value = serde_json::from_str(answer["flamebearerProfile"].as_str().unwrap()).unwrap();
    assert_eq!(fb["flamebearer"]["numTicks"], 4, "{fb}");

    let (status, bad) = client.connect_json(None, upload, &json!({"name": "x", "profile": "!!"}));
    assert_eq!(status, 400, "{bad}");
    let garbage = base64::engine::general_purpose::STANDARD.encode(b"\x00\x01 not a profile");
    let (status, bad) =
        client.connect_json(None, upload, &json!({"name": "x", "profile": garbage}));
    assert!((400..500).contains(&status), "{status} {bad}");

    ember.stop();
    ember.restart();
    let client = ember.client();
    let (status, list) = client.connect_json(
        None,
        "/adhocprofiles.v1.AdHocProfileService/List",
        &json!({}),
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["profiles"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["profiles"][0]["name"], "cpu.pprof");
    let (status, got) = client.connect_json(
        None,
        "/adhocprofiles.v1.AdHocProfileService/Get",
        &json!({"id": id, "profileType": "cpu"}),
    );
    assert_eq!(status, 200, "{got}");
    let fb: Value = serde_json::from_str(got["flamebearerProfile"].as_str().unwrap()).unwrap();
    assert_eq!(fb["flamebearer"]["numTicks"], 40_000_000, "{fb}");
    assert_eq!(fb["metadata"]["units"], "samples");
    let (status, missing) = client.connect_json(
        None,
        "/adhocprofiles.v1.AdHocProfileService/Get",
        &json!({"id": "01HZZZZZZZZZZZZZZZZZZZZZZZ"}),
    );
    assert_eq!(status, 404, "{missing}");
}

#[test]
fn status_feature_flags_and_cloud_only_services() {
    let ember = EmberProcess::start(&[]);
    let client = ember.client();
    let (status, info) =
        client.connect_json(None, "/status.v1.StatusService/GetBuildInfo", &json!({}));
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["status"], "success");
    assert!(
        info["data"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{info}"
    );
    let http = client.get("/api/v1/status/buildinfo");
    assert_eq!(http.status, 200);
    assert_eq!(http.json()["data"]["version"], info["data"]["version"]);
    let config = client.get("/api/v1/status/config");
    assert_eq!(config.status, 200);
    assert!(
        config.text().contains("http_listen_port"),
        "{}",
        config.text()
    );
    let (status, body) =
        client.connect_json(None, "/status.v1.StatusService/GetConfig", &json!({}));
    assert_eq!(status, 200, "{body}");
    assert!(
        body["contentType"]
            .as_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let (status, flags) = client.connect_json(
        None,
        "/capabilities.v1.FeatureFlagsService/GetFeatureFlags",
        &json!({}),
    );
    assert_eq!(status, 200, "{flags}");
    assert!(
        flags["featureFlags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "utf8LabelNames" && f["enabled"] == true),
        "{flags}"
    );
    for path in [
        "/vcs.v1.VCSService/GetFile",
        "/vcs.v1.VCSService/GithubApp",
        "/settings.v1.RecordingRulesService/ListRecordingRules",
    ] {
        let (status, err) = client.connect_json(None, path, &json!({}));
        assert_eq!(status, 501, "{path}: {err}");
        assert_eq!(err["code"], "unimplemented", "{path}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains("Grafana Cloud"),
            "{err}"
        );
    }
}

#[test]
fn utf8_label_names_filter_and_are_negotiated() {
    let ember = EmberProcess::start(&[]);
    let client = ember.client();
    let now = now_nanos();
    for (ns, pod, work) in [("ns1", "p-1", 30_000_000), ("ns2", "p-2", 70_000_000)] {
        let profile = PprofBuilder::go_cpu()
            .time(now - 5 * SEC, 10 * SEC)
            .sample(&["main", "work"], &[1, work])
            .encode();
        client.push_pprof(
            None,
            &[
                ("service_name", "utf8"),
                ("k8s.namespace.name", ns),
                ("pod/name", pod),
            ],
            &profile,
        );
    }
    let (start, end) = ((now - 60 * SEC) / 1_000_000, (now + 60 * SEC) / 1_000_000);
    for (selector, total) in [
        (r#"{"k8s.namespace.name"="ns1"}"#, "30000000"),
        (r#"{service_name="utf8", "pod/name"=~"p-2"}"#, "70000000"),
        (
            r#"{"utf8_unused"="", "k8s.namespace.name"!="ns1"}"#,
            "70000000",
        ),
        (r#"{k8s.namespace.name=~"ns.*"}"#, "100000000"),
    ] {
        let (status, answer) = client.connect_json(
            None,
            &querier_path("SelectMergeStacktraces"),
            &json!({"profileTypeID": CPU, "labelSelector": selector, "start": start, "end": end}),
        );
        assert_eq!(status, 200, "{selector}: {answer}");
        assert_eq!(answer["flamegraph"]["total"], total, "{selector}: {answer}");
    }
    // Names an unquoted selector cannot spell are listed only to clients that say they quote.
    let names = |accept: Option<&str>| -> Vec<String> {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = accept {
            headers.push(("Accept", a));
        }
        let body = serde_json::to_vec(&json!({"start": start, "end": end})).unwrap();
        let resp = client.request("POST", &querier_path("LabelNames"), &headers, Some(&body));
        assert_eq!(resp.status, 200, "{}", resp.text());
        serde_json::from_value(resp.json()["names"].clone()).unwrap()
    };
    let plain = names(None);
    assert!(
        plain.contains(&"k8s.namespace.name".to_owned()),
        "{plain:?}"
    );
    assert!(!plain.contains(&"pod/name".to_owned()), "{plain:?}");
    let utf8 = names(Some("application/json; allow-utf8-labelnames=true"));
    assert!(utf8.contains(&"pod/name".to_owned()), "{utf8:?}");
}

#[test]
fn render_answers_dot_groups_dates_and_labels() {
    let ember = EmberProcess::start(&[]);
    let client = ember.client();
    let now = now_nanos();
    for (env, work) in [("prod", 30_000_000), ("dev", 10_000_000)] {
        let profile = PprofBuilder::go_cpu()
            .time(now - 5 * SEC, 10 * SEC)
            .sample(&["main", "work"], &[1, work])
            .encode();
        client.push_pprof(None, &[("service_name", "render"), ("env", env)], &profile);
    }
    let q = |s: &str| {
        s.replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace('=', "%3D")
    };
    let query = q(&format!("{CPU}{{service_name=\"render\"}}"));

    let dot = client.get(&format!(
        "/pyroscope/render?query={query}&from=now-1h&until=now%2B1h&format=dot"
    ));
    assert_eq!(dot.status, 200, "{}", dot.text());
    let text = dot.text();
    assert!(text.starts_with("digraph"), "{text}");
    assert!(text.contains("label=\"work\\n40000000 (100.00%)"), "{text}");
    assert!(text.contains("N1 -> N2"), "{text}");

    // A day's date as `from` (UTC midnight of today) finds today's data.
    let secs = now / SEC;
    let days = secs / 86_400;
    let (y, m, d) = civil(days);
    let from = format!("{y:04}{m:02}{d:02}");
    let grouped = client.get(&format!(
        "/pyroscope/render?query={query}&from={from}&until=now%2B1h&groupBy=env&aggregation=sum"
    ));
    assert_eq!(grouped.status, 200, "{}", grouped.text());
    let body = grouped.json();
    assert_eq!(body["flamebearer"]["numTicks"], 40_000_000, "{body}");
    let sum = |v: &Value| -> f64 {
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .sum()
    };
    assert_eq!(sum(&body["groups"]["prod"]), 30_000_000.0, "{body}");
    assert_eq!(sum(&body["groups"]["dev"]), 10_000_000.0, "{body}");
    assert_eq!(sum(&body["timeline"]), 40_000_000.0);
    let bad = client.get(&format!("/pyroscope/render?query={query}&aggregation=p99"));
    assert_eq!(bad.status, 400, "{}", bad.text());

    let labels = client.get(&format!("/pyroscope/labels?query={query}"));
    assert_eq!(labels.status, 200, "{}", labels.text());
    let labels: Vec<String> = serde_json::from_value(labels.json()).unwrap();
    assert!(
        labels.contains(&"env".to_owned()) && !labels.iter().any(|l| l.starts_with("__")),
        "{labels:?}"
    );
    let values = client.get(&format!("/pyroscope/label-values?label=env&query={query}"));
    assert_eq!(values.status, 200, "{}", values.text());
    assert_eq!(values.json(), json!(["dev", "prod"]));
    assert_eq!(client.get("/pyroscope/label-values").status, 400);
}

/// Returns the (year, month, day) of a day number since 1970-01-01.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[test]
fn analyze_query_estimates_blocks_after_a_restart() {
    let mut ember = EmberProcess::start(&[]);
    let client = ember.client();
    let now = now_nanos();
    push_cpu(&client, None, "analyzed", now - 5 * SEC);
    push_cpu(&client, None, "other", now - 5 * SEC);
    // Stopping flushes the heads into a block.
    ember.stop();
    ember.restart();
    let client = ember.client();
    let (start, end) = ((now - 60 * SEC) / 1_000_000, (now + 60 * SEC) / 1_000_000);
    let analyze = |query: &str| -> AnalyzeQueryResponse {
        client
            .call(
                None,
                &querier_path("AnalyzeQuery"),
                &AnalyzeQueryRequest {
                    start,
                    end,
                    query: query.into(),
                },
                Codec::Proto,
            )
            .unwrap()
    };
    let one = analyze(&format!("{CPU}{{service_name=\"analyzed\"}}"));
    let long = one
        .query_scopes
        .iter()
        .find(|s| s.component_type == "long term storage")
        .unwrap();
    assert_eq!((long.block_count, long.series_count), (1, 1), "{one:?}");
    assert_eq!(long.profile_count, 1, "{one:?}");
    assert!(long.profile_bytes > 0, "{one:?}");
    let impact = one.query_impact.unwrap();
    assert_eq!(impact.total_queried_series, 1);
    assert!(impact.total_bytes_in_time_range >= long.profile_bytes);
    // Both services, every type: more series; outside the range: nothing.
    let all = analyze("{}");
    assert!(
        all.query_impact.unwrap().total_queried_series >= 4,
        "cpu and samples of two services"
    );
    let before: AnalyzeQueryResponse = client
        .call(
            None,
            &querier_path("AnalyzeQuery"),
            &AnalyzeQueryRequest {
                start: 1000,
                end: 2000,
                query: "{}".into(),
            },
            Codec::Proto,
        )
        .unwrap();
    assert_eq!(before.query_impact.unwrap().total_queried_series, 0);
}

/// The `(timestamp, annotations)` of every point of `service`'s CPU series.
fn annotated_points(client: &Client, service: &str, now: i64) -> Vec<(i64, Vec<(String, String)>)> {
    let series = client
        .select_series(
            None,
            &SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: format!("{{service_name=\"{service}\"}}"),
                start: (now - 60 * SEC) / 1_000_000,
                end: (now + 60 * SEC) / 1_000_000,
                step: 10.0,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(series.len(), 1, "{series:?}");
    series[0]
        .points
        .iter()
        .map(|p| {
            let a = p.annotations.iter();
            (
                p.timestamp,
                a.map(|a| (a.key.clone(), a.value.clone())).collect(),
            )
        })
        .collect()
}

#[test]
fn point_annotations_survive_a_crash_and_a_flush() {
    let mut ember = EmberProcess::start(&[]);
    let client = ember.client();
    let now = now_nanos();
    let throttled = r#"{"body":{"periodType":"day","periodLimitMb":10}}"#;
    let push = |client: &Client, at: i64, annotations: &[(&str, &str)]| {
        let profile = PprofBuilder::go_cpu()
            .time(at, 10 * SEC)
            .sample(&["main", "work"], &[3, 30_000_000])
            .encode();
        let mut req = ember_tests::client::push_request(&[("service_name", "noted")], &profile);
        req.series[0].annotations = annotations
            .iter()
            .map(|(k, v)| ProfileAnnotation {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect();
        client.push(None, &req, PushEncoding::PROTO)
    };
    // Two points apart: one profile annotated (twice the same key and
    // value, kept once), one not.
    let annotated = [
        ("pyroscope.ingest.throttled", throttled),
        ("pyroscope.ingest.throttled", throttled),
        ("deploy", "v2"),
    ];
    assert!(push(&client, now - 40 * SEC, &annotated).is_success());
    assert!(push(&client, now - 5 * SEC, &[]).is_success());
    // An annotation over the bounds is refused, and says which.
    let long = "k".repeat(300);
    let refused = push(&client, now, &[(long.as_str(), "v")]);
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("annotation key"),
        "{}",
        refused.text()
    );

    let expected = vec![
        ("deploy".to_owned(), "v2".to_owned()),
        (
            "pyroscope.ingest.throttled".to_owned(),
            throttled.to_owned(),
        ),
    ];
    let check = |client: &Client, when: &str| {
        let points = annotated_points(client, "noted", now);
        assert_eq!(points.len(), 2, "{when}: {points:?}");
        assert_eq!(points[0].1, expected, "{when}: the annotated point");
        assert!(points[1].1.is_empty(), "{when}: {points:?}");
    };
    check(&client, "from the head");
    // SIGKILL: the write-ahead log brings them back; SIGTERM: the block has them.
    ember.kill();
    ember.restart();
    check(&ember.client(), "after a crash");
    ember.stop();
    ember.restart();
    check(&ember.client(), "from a block");
}
