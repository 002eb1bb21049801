//! Acceptance: every valid profile in `shared/testdata/profiles` pushed over
//! Connect gives, for each of its sample types, a flame graph whose total is the
//! sum of that type's values in the file and whose leaf function names are the
//! file's.
//!
//! Pushes rotate through protobuf and JSON, with and without `Content-Encoding:
//! gzip`; queries alternate between both codecs.

use ember_proto::google::v1::Profile;
use ember_tests::checks::{candidate_type_ids, compare_leaves, ids_with_data, service_selector};
use ember_tests::client::push_request;
use ember_tests::{
    Codec, EmberProcess, MULTITENANCY, PushEncoding, TimeRange, eventually, flame, now_nanos,
    pprof, testdata,
};
use serde_json::json;

const TENANT: Option<&str> = Some("shared-profiles");

/// DESIGN.md §2's default limit of samples per profile. A shared profile above it
/// (`more/heap_go_truncated_3.pb.gz`, 41,347 samples) may be refused with an
/// actionable 4xx under the default configuration instead of being ingested.
const DEFAULT_MAX_SAMPLES: usize = 16_000;

struct Pushed {
    file: String,
    service: String,
    profile: Profile,
}

/// Labels for pushing a shared file: `__delta__="false"` keeps cumulative types
/// (Go allocs, mutex, block) as they are, so totals can be compared with the file.
fn labels<'a>(service: &'a str, file: &'a str, profile: &Profile) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![
        ("service_name", service),
        ("__delta__", "false"),
        ("file", file),
    ];
    // Without a period type the profile name comes from `__name__` (what the
    // Python and Ruby SDKs send for their CPU samplers).
    if pprof::period_type(profile).0.is_empty() {
        labels.push(("__name__", "process_cpu"));
    }
    labels
}

fn max_nodes_for(profile: &Profile, index: usize) -> i64 {
    let nodes = pprof::expected_tree(profile, index).len() as i64;
    (2 * nodes + 16).max(8192)
}

#[test]
fn every_valid_shared_profile_gives_matching_flame_graphs() {
    let files = testdata::valid_profiles();
    assert!(
        files.len() >= 30,
        "expected at least 30 valid shared profiles, found {}: {files:?}",
        files.len()
    );
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 3_600_000);

    let mut pushed = Vec::new();
    // Every problem is collected, so one run reports all the files that fail.
    let mut failures = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let raw = testdata::read(file);
        let profile = pprof::decode(&raw).expect("valid profiles decode");
        let service = format!("shared-{i:02}");
        let labels = labels(&service, file, &profile);
        let encoding = PushEncoding::ALL[i % PushEncoding::ALL.len()];
        let body = pprof::with_time_nanos(&raw, now);
        let resp = client.push(TENANT, &push_request(&labels, &body), encoding);
        if profile.sample.len() > DEFAULT_MAX_SAMPLES {
            // Over a default limit: refusing it with an actionable 4xx is right too.
            if let Some(err) = resp.connect_error() {
                err.assert_actionable_4xx(&format!("{file} ({} samples)", profile.sample.len()));
                eprintln!(
                    "{file}: refused over the default sample limit: {}",
                    err.message
                );
                continue;
            }
        }
        if !resp.is_success() {
            failures.push(format!(
                "{file}: push ({encoding:?}) refused: HTTP {} {}",
                resp.status,
                resp.text()
            ));
            continue;
        }
        pushed.push(Pushed {
            file: file.clone(),
            service,
            profile,
        });
    }
    assert!(
        pushed.len() * 2 > files.len(),
        "most valid profiles were refused:\n  {}",
        failures.join("\n  ")
    );

    // Wait for the last push to be visible, then check everything.
    let last = pushed.last().expect("pushed something");
    let last_type = pprof::expectations(&last.profile)
        .into_iter()
        .find(|e| e.sum != 0)
        .expect("a sample type with data");
    eventually(
        "the last pushed profile is queryable",
        std::time::Duration::from_secs(30),
        || {
            let candidates = candidate_type_ids(
                &client,
                TENANT,
                range,
                &last_type.sample_type,
                &last_type.sample_unit,
            );
            let found = ids_with_data(
                &client,
                TENANT,
                range,
                &service_selector(&last.service),
                &candidates,
                None,
                Codec::Json,
            );
            if found.is_empty() {
                Err(format!("no data yet among {candidates:?}"))
            } else {
                Ok(())
            }
        },
    );

    let types = client.profile_types(TENANT, range);
    let mut compared = 0;
    for (i, p) in pushed.iter().enumerate() {
        let codec = Codec::alternate(i / 2);
        let selector = service_selector(&p.service);
        for exp in pprof::expectations(&p.profile) {
            let what = format!(
                "{} [{}/{}] ({codec:?} query)",
                p.file, exp.sample_type, exp.sample_unit
            );
            let candidates: Vec<String> = types
                .iter()
                .filter(|t| t.sample_type == exp.sample_type && t.sample_unit == exp.sample_unit)
                .map(|t| t.id.clone())
                .collect();
            let max_nodes = Some(max_nodes_for(&p.profile, exp.index));
            let mut found = ids_with_data(
                &client,
                TENANT,
                range,
                &selector,
                &candidates,
                max_nodes,
                codec,
            );
            if exp.sum == 0 {
                if !found.is_empty() {
                    failures.push(format!(
                        "{what}: the file's values sum to 0, but {:?} show a total",
                        found
                            .iter()
                            .map(|(id, fg)| (id, fg.total))
                            .collect::<Vec<_>>()
                    ));
                }
                continue;
            }
            if found.len() != 1 {
                failures.push(format!(
                    "{what}: expected exactly one profile type with data among the listed \
                     {candidates:?}, found {:?}",
                    found.iter().map(|(id, _)| id).collect::<Vec<_>>()
                ));
                continue;
            }
            let (id, fg) = found.remove(0);
            compared += 1;
            if fg.total != exp.sum {
                failures.push(format!(
                    "{what} {id}: flame graph total {} != sum in file {}",
                    fg.total, exp.sum
                ));
            }
            match flame::nodes(&fg) {
                Err(e) => failures.push(format!("{what} {id}: malformed flame graph: {e}")),
                Ok(nodes) => {
                    if let Err(e) = compare_leaves(&exp, &flame::leaf_names(&nodes)) {
                        failures.push(format!("{what} {id}: {e}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the shared-profile checks failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    // Guard against a vacuous pass: every file has at least one sample type with data.
    assert!(
        compared >= pushed.len(),
        "only {compared} (file, sample type) pairs compared for {} files",
        files.len()
    );
}

/// Inlined frames (locations with several lines) become frames of their own, and
/// whole stacks, not only leaves, match the file.
#[test]
fn flame_graph_tree_matches_the_file_including_inlined_frames() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 600_000);
    for (i, file) in ["cpu.pb.gz", "heap.pb.gz", "more/parca-fib.pb.gz"]
        .into_iter()
        .enumerate()
    {
        let raw = testdata::read(file);
        let profile = pprof::decode(&raw).unwrap();
        let inlined = profile.location.iter().filter(|l| l.line.len() > 1).count();
        assert!(inlined > 0, "{file} was chosen for its inlined frames");
        let service = format!("tree-{i}");
        client.push_pprof(
            TENANT,
            &labels(&service, file, &profile),
            &pprof::with_time_nanos(&raw, now),
        );
        let selector = service_selector(&service);
        for exp in pprof::expectations(&profile)
            .into_iter()
            .filter(|e| e.sum != 0)
        {
            let (id, _) = ember_tests::checks::the_type_with_data(
                &client,
                TENANT,
                range,
                &selector,
                &exp.sample_type,
                &exp.sample_unit,
            );
            let max_nodes = Some(max_nodes_for(&profile, exp.index));
            let fg = client.flame_graph(TENANT, &id, &selector, range, max_nodes, Codec::Proto);
            let nodes = flame::checked_nodes(&fg, &format!("{file} {id}"));
            let actual = flame::tree(&nodes);
            let expected = pprof::expected_tree(&profile, exp.index);
            if actual != expected {
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|(k, v)| actual.get(*k) != Some(v))
                    .take(5)
                    .collect();
                let unexpected: Vec<_> = actual
                    .iter()
                    .filter(|(k, v)| expected.get(*k) != Some(v))
                    .take(5)
                    .collect();
                panic!(
                    "{file} {id}: flame graph differs from the file's stacks \
                     ({} nodes expected, {} got)\n expected but absent or different: {missing:#?}\n \
                     present but not expected: {unexpected:#?}",
                    expected.len(),
                    actual.len()
                );
            }
        }
    }
}

/// The wire variants a client may use are all accepted: gzip request bodies, and
/// protojson with the original (snake_case) field names.
#[test]
fn push_accepts_gzip_bodies_and_original_json_field_names() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 600_000);
    let raw = testdata::read("cpu.pb.gz");
    let profile = pprof::decode(&raw).unwrap();
    let body = pprof::with_time_nanos(&raw, now);
    let cpu = pprof::expectations(&profile)
        .into_iter()
        .find(|e| e.sample_type == "cpu")
        .unwrap();

    // 1. protobuf, gzip Content-Encoding.
    let resp = client.push(
        TENANT,
        &push_request(&[("service_name", "wire-proto-gzip")], &body),
        PushEncoding::PROTO_GZIP,
    );
    assert!(
        resp.is_success(),
        "gzip proto push refused: {} {}",
        resp.status,
        resp.text()
    );

    // 2. JSON, gzip Content-Encoding.
    let resp = client.push(
        TENANT,
        &push_request(&[("service_name", "wire-json-gzip")], &body),
        PushEncoding::JSON_GZIP,
    );
    assert!(
        resp.is_success(),
        "gzip JSON push refused: {} {}",
        resp.status,
        resp.text()
    );

    // 3. JSON with proto field names (`raw_profile`), written by hand.
    use base64_free::encode as b64;
    let doc = json!({
        "series": [{
            "labels": [{"name": "service_name", "value": "wire-json-proto-names"}],
            "samples": [{"raw_profile": b64(&body)}]
        }]
    });
    let (status, answer) = client.connect_json(TENANT, ember_tests::PUSH_PATH, &doc);
    assert!(
        (200..300).contains(&status),
        "JSON push with original field names refused: {status} {answer}"
    );

    for service in ["wire-proto-gzip", "wire-json-gzip", "wire-json-proto-names"] {
        let (id, fg) = ember_tests::checks::the_type_with_data(
            &client,
            TENANT,
            range,
            &service_selector(service),
            "cpu",
            "nanoseconds",
        );
        assert_eq!(fg.total, cpu.sum, "{service} {id}: total");
        let nodes = flame::checked_nodes(&fg, service);
        assert_eq!(flame::leaf_names(&nodes), cpu.leaves, "{service}: leaves");
    }
}

/// Standard base64, so the test needs no extra dependency.
mod base64_free {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(crate) fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn encodes_like_rfc4648() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg==");
        assert_eq!(encode(b"fo"), "Zm8=");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
    }
}
