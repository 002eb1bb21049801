//! Acceptance: the legacy `POST /ingest` endpoint takes every format the
//! Pyroscope SDKs send (folded, lines, speedscope, pprof raw and multipart as
//! the Go SDK shapes it), names the profile types as Pyroscope does, and
//! answers every bad upload with its documented status and a message, after
//! which the server still ingests and answers and earlier data is unchanged.

use std::io::Write;

use ember_tests::checks::{assert_still_serving, service_selector};
use ember_tests::client::gzip;
use ember_tests::{
    Client, Codec, EmberProcess, MULTITENANCY, TimeRange, flame, now_nanos, pprof, testdata,
};

const TENANT: &str = "ingest-formats";

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ingest(
    client: &Client,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> ember_tests::HttpResponse {
    client.request(
        "POST",
        &format!("/ingest?{query}"),
        &[("Content-Type", content_type), ("X-Scope-OrgID", TENANT)],
        Some(body),
    )
}

fn times() -> (i64, String) {
    let now = now_nanos();
    let s = now / 1_000_000_000;
    (now, format!("from={}&until={}", s - 10, s))
}

fn type_ids(client: &Client, range: TimeRange) -> Vec<String> {
    let mut ids: Vec<String> = client
        .profile_types(Some(TENANT), range)
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    ids
}

fn graph(client: &Client, id: &str, service: &str, range: TimeRange) -> Vec<flame::Node> {
    let fg = client.flame_graph(
        Some(TENANT),
        id,
        &service_selector(service),
        range,
        None,
        Codec::Json,
    );
    flame::checked_nodes(&fg, id)
}

fn self_of(nodes: &[flame::Node], name: &str) -> i64 {
    nodes
        .iter()
        .filter(|n| n.name == name)
        .map(|n| n.self_value)
        .sum()
}

#[test]
fn text_and_speedscope_formats_become_pyroscope_profile_types() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let (now, t) = times();
    let range = TimeRange::around_nanos(now, 600_000);

    // Folded is the default format; .cpu at 100 Hz is nanoseconds of CPU.
    let r = ingest(
        &client,
        &format!(
            "name={}&{t}&sampleRate=100&spyName=rbspy",
            enc("folded-app.cpu{env=prod}")
        ),
        "text/plain",
        b"main;work;hot 30\nmain;work 10\nmain;idle 5\n",
    );
    assert!(r.is_success(), "folded: {} {}", r.status, r.text());
    // Lines: one sample per line, here as wall samples without a rate.
    let r = ingest(
        &client,
        &format!("name={}&{t}&format=lines", enc("lines-app.inuse_space")),
        "text/plain",
        b"main;alloc\nmain;alloc\nmain;other\n",
    );
    assert!(r.is_success(), "lines: {} {}", r.status, r.text());
    let speedscope = br#"{"$schema":"https://www.speedscope.app/file-format-schema.json",
      "shared":{"frames":[{"name":"main"},{"name":"render"},{"name":"parse"}]},
      "profiles":[{"type":"sampled","name":"p","unit":"none","startValue":0,"endValue":3,
        "samples":[[0,1],[0,2],[0,1]],"weights":[4,1,4]}]}"#;
    let r = ingest(
        &client,
        &format!("name={}&{t}&format=speedscope", enc("speedscope-app.cpu")),
        "application/json",
        speedscope,
    );
    assert!(r.is_success(), "speedscope: {} {}", r.status, r.text());

    let ids = type_ids(&client, range);
    for want in [
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "memory:inuse_space:bytes::",
    ] {
        assert!(
            ids.iter().any(|id| id == want),
            "{want} missing from {ids:?}"
        );
    }
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let folded = graph(&client, cpu, "folded-app", range);
    assert_eq!(self_of(&folded, "hot"), 30 * 10_000_000, "{folded:?}");
    assert_eq!(self_of(&folded, "idle"), 5 * 10_000_000);
    let speed = graph(&client, cpu, "speedscope-app", range);
    assert_eq!(self_of(&speed, "render"), 8 * 10_000_000, "{speed:?}");
    let lines = graph(&client, "memory:inuse_space:bytes::", "lines-app", range);
    assert_eq!(self_of(&lines, "alloc"), 2);

    // spyName and name labels are queryable.
    let spies = client.label_values(Some(TENANT), "pyroscope_spy", &[], range);
    assert!(spies.iter().any(|s| s == "rbspy"), "{spies:?}");
    let envs = client.label_values(Some(TENANT), "env", &[], range);
    assert!(envs.iter().any(|s| s == "prod"), "{envs:?}");
}

/// The multipart body the Go SDK (pyroscope-go) sends for a heap profile.
fn go_multipart(profile_gz: &[u8], config: &str) -> (String, Vec<u8>) {
    let boundary = "d2f1c9e0a7b34c5e8f6a1b2c3d4e5f60";
    let mut body = Vec::new();
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(profile_gz);
    write!(
        body,
        "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"sample_type_config\"; filename=\"sample_type_config.json\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{config}\r\n--{boundary}--\r\n"
    )
    .unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn go_sdk_multipart_heap_upload_gets_configured_units() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let (now, t) = times();
    let range = TimeRange::around_nanos(now, 600_000);
    let heap = gzip(
        &pprof::gunzip_if_needed(&pprof::with_time_nanos(&testdata::read("heap.pb.gz"), now))
            .unwrap(),
    );
    let config = r#"{"alloc_objects":{"units":"objects","cumulative":true},"alloc_space":{"units":"bytes","cumulative":true},"inuse_objects":{"units":"objects","aggregation":"average"},"inuse_space":{"units":"bytes","aggregation":"average"}}"#;
    let (content_type, body) = go_multipart(&heap, config);
    let r = ingest(
        &client,
        &format!(
            "name={}&{t}&spyName=gospy&sampleRate=100&units=&aggregationType=",
            enc("go-heap-app{env=test}")
        ),
        &content_type,
        &body,
    );
    assert!(r.is_success(), "multipart: {} {}", r.status, r.text());
    let ids = type_ids(&client, range);
    assert!(
        ids.iter()
            .any(|id| id == "memory:inuse_objects:objects:space:bytes"),
        "inuse_objects must carry the configured unit \"objects\": {ids:?}"
    );
    assert!(
        ids.iter()
            .any(|id| id == "memory:inuse_space:bytes:space:bytes"),
        "{ids:?}"
    );
    assert!(
        !ids.iter().any(|id| id.contains(":count:")),
        "no memory type may keep the unit \"count\": {ids:?}"
    );
    let expected = pprof::expectations(&pprof::decode(&heap).unwrap());
    let inuse = expected
        .iter()
        .find(|e| e.sample_type == "inuse_objects")
        .unwrap();
    let nodes = graph(
        &client,
        "memory:inuse_objects:objects:space:bytes",
        "go-heap-app",
        range,
    );
    assert_eq!(nodes[0].total, inuse.sum, "inuse_objects total");
}

#[test]
fn bad_uploads_get_their_status_and_the_server_keeps_its_data() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let (now, t) = times();
    let range = TimeRange::around_nanos(now, 600_000);
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let r = ingest(
        &client,
        &format!("name=keep.cpu&{t}"),
        "text/plain",
        b"main;keep 7\n",
    );
    assert!(r.is_success(), "{}", r.text());
    let before = graph(&client, cpu, "keep", range);
    assert_eq!(self_of(&before, "keep"), 70_000_000);

    let raw_cpu = pprof::gunzip_if_needed(&testdata::read("cpu.pb.gz")).unwrap();
    // 512 MiB of zeros as concatenated gzip members, about 500 KB on the wire.
    let mut member = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    member.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = member.finish().unwrap();
    let bomb: Vec<u8> = member.repeat(512);
    let ten_mb: Vec<u8> = "main;a;b;c;d 1\n".repeat(10 << 20 >> 4).into_bytes();
    let deep = format!("{} 1\n", vec!["f"; 2000].join(";"));
    let forty: Vec<String> = (0..40).map(|i| format!("l{i}=v")).collect();
    let forty = format!(
        "name={}&{t}",
        enc(&format!("many.cpu{{{}}}", forty.join(",")))
    );
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "truncated pprof",
            format!("name=p&{t}&format=pprof"),
            raw_cpu[..raw_cpu.len() / 2].to_vec(),
            400,
            "pprof",
        ),
        (
            "garbage pprof",
            format!("name=p&{t}&format=pprof"),
            b"\xff\xfe garbage \x07\x08".to_vec(),
            400,
            "pprof",
        ),
        (
            "invalid UTF-8 folded",
            format!("name=u.cpu&{t}"),
            b"main;\xff\xfe 1\n".to_vec(),
            400,
            "UTF-8",
        ),
        (
            "gzip bomb",
            format!("name=p&{t}&format=pprof"),
            bomb.clone(),
            413,
            "limit",
        ),
        (
            "gzip bomb folded",
            format!("name=p.cpu&{t}"),
            bomb,
            413,
            "limit",
        ),
        (
            "10 MB of folded lines",
            format!("name=big.cpu&{t}"),
            ten_mb,
            413,
            "limit",
        ),
        (
            "2,000-frame stack",
            format!("name=deep.cpu&{t}"),
            deep.into_bytes(),
            422,
            "frames",
        ),
        ("40 labels", forty, b"main 1\n".to_vec(), 422, "labels"),
        (
            "name without braces closed",
            format!("name={}&{t}", enc("app.cpu{env=prod")),
            b"main 1\n".to_vec(),
            400,
            "not closed",
        ),
        (
            "from after until",
            "name=app.cpu&from=1700000100&until=1700000000".to_owned(),
            b"main 1\n".to_vec(),
            400,
            "after until",
        ),
        (
            "unknown format",
            format!("name=app&{t}&format=trie"),
            b"main 1\n".to_vec(),
            400,
            "speedscope",
        ),
        ("no name", t.clone(), b"main 1\n".to_vec(), 400, "name"),
        (
            "bad speedscope",
            format!("name=s&{t}&format=speedscope"),
            b"{\"shared\":".to_vec(),
            400,
            "speedscope",
        ),
        (
            "bad jfr",
            format!("name=j&{t}&format=jfr"),
            b"not a recording".to_vec(),
            400,
            "JFR",
        ),
    ];
    for (what, query, body, status, needle) in cases {
        let r = ingest(&client, &query, "application/octet-stream", &body);
        let err = r
            .connect_error()
            .unwrap_or_else(|| panic!("{what}: accepted, expected {status}"));
        err.assert_actionable_4xx(what);
        assert_eq!(err.status, status, "{what}: {err}");
        assert!(
            err.message.contains(needle),
            "{what}: the message should mention {needle:?}: {err}"
        );
    }

    assert_still_serving(&client, Some(TENANT));
    let after = graph(&client, cpu, "keep", range);
    assert_eq!(
        flame::tree(&before),
        flame::tree(&after),
        "earlier data changed after the bad uploads"
    );
}
