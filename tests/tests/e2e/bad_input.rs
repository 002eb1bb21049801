//! Acceptance: malformed input gets a 4xx with a Connect JSON error that says
//! what is wrong (or, for the crafted shared profiles, is accepted with repaired
//! strings), never a crash; the server keeps serving afterwards.

use ember_tests::checks::{
    assert_still_serving, candidate_type_ids, ids_with_data, service_selector,
};
use ember_tests::client::{gzip, push_request};
use ember_tests::{
    Codec, EmberProcess, MULTITENANCY, PUSH_PATH, TimeRange, eventually, flame, now_nanos, pprof,
    testdata,
};
use prost::Message;

const TENANT: Option<&str> = Some("bad-input");

#[test]
fn crafted_bad_profiles_are_refused_with_a_message_or_repaired() {
    // The crafted ones, plus any shared file that does not decode as pprof.
    let valid = testdata::valid_profiles();
    let files: Vec<String> = testdata::all_profiles()
        .into_iter()
        .filter(|f| testdata::is_bad_input(f) || !valid.contains(f))
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("invalid_utf8.pb.gz"))
            && files.iter().any(|f| f.starts_with("malformed/")),
        "the crafted bad inputs are missing from the shared test data: {files:?}"
    );

    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 600_000);
    let mut outcomes = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let raw = testdata::read(file);
        let service = format!("bad-{i}");
        let body = pprof::with_time_nanos(&raw, now);
        let resp = client
            .try_request(
                "POST",
                PUSH_PATH,
                &[
                    ("Content-Type", "application/proto"),
                    ("X-Scope-OrgID", TENANT.unwrap()),
                ],
                Some(
                    &push_request(&[("service_name", &service), ("__delta__", "false")], &body)
                        .encode_to_vec(),
                ),
            )
            .unwrap_or_else(|e| panic!("{file}: no answer to the push (crashed?): {e}"));
        if let Some(err) = resp.connect_error() {
            err.assert_actionable_4xx(file);
            outcomes.push(format!("{file}: refused, {} {:?}", err.status, err.message));
        } else {
            // Accepted: what was stored must add up, with valid (repaired) names.
            let sums = pprof::lossy_sums(&raw).expect("bad inputs still decode leniently");
            for ((sample_type, unit), sum) in sums.into_iter().filter(|(_, s)| *s != 0) {
                let selector = service_selector(&service);
                let (id, fg) = eventually(
                    &format!("{file} is queryable after being accepted"),
                    std::time::Duration::from_secs(20),
                    || {
                        let candidates =
                            candidate_type_ids(&client, TENANT, range, &sample_type, &unit);
                        let mut found = ids_with_data(
                            &client,
                            TENANT,
                            range,
                            &selector,
                            &candidates,
                            None,
                            Codec::Json,
                        );
                        if found.len() == 1 {
                            Ok(found.remove(0))
                        } else {
                            Err(format!(
                                "types with data among {candidates:?}: {}",
                                found.len()
                            ))
                        }
                    },
                );
                assert_eq!(
                    fg.total, sum,
                    "{file} {id}: accepted, so the total must match"
                );
                let nodes = flame::checked_nodes(&fg, file);
                assert!(
                    nodes.iter().all(|n| !n.name.contains('\0')),
                    "{file}: names must be repaired text"
                );
            }
            outcomes.push(format!("{file}: accepted"));
        }
        assert_still_serving(&client, TENANT);
    }
    eprintln!("bad inputs: {outcomes:#?}");
}

/// Requests that are wrong at every level get a 4xx with a message, and the
/// server keeps serving after each.
#[test]
fn garbage_requests_get_an_actionable_4xx() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let cpu = testdata::read("cpu.pb.gz");
    let not_pprof = b"this is not a pprof profile, just text".to_vec();
    let truncated_gzip = cpu[..cpu.len() / 2].to_vec();
    let labels: &[(&str, &str)] = &[("service_name", "garbage")];

    let proto = |raw: &[u8]| push_request(labels, raw).encode_to_vec();
    let cases: Vec<(&str, &str, Option<&str>, Vec<u8>)> = vec![
        (
            "raw_profile that is not pprof",
            "application/proto",
            None,
            proto(&not_pprof),
        ),
        (
            "raw_profile that is a truncated gzip stream",
            "application/proto",
            None,
            proto(&truncated_gzip),
        ),
        (
            "raw_profile of random-looking bytes",
            "application/proto",
            None,
            proto(&[0xff; 64]),
        ),
        (
            "body that is not a PushRequest",
            "application/proto",
            None,
            vec![0xff, 0xff, 0xff, 0xff, 0x0f],
        ),
        (
            "body that is not JSON",
            "application/json",
            None,
            br#"{"series": [ {"labels": "#.to_vec(),
        ),
        (
            "Content-Encoding gzip on a body that is not gzipped",
            "application/proto",
            Some("gzip"),
            proto(&cpu),
        ),
        (
            "JSON whose rawProfile is not base64",
            "application/json",
            None,
            br#"{"series":[{"labels":[{"name":"service_name","value":"garbage"}],"samples":[{"rawProfile":"%%% not base64 %%%"}]}]}"#.to_vec(),
        ),
    ];
    for (what, content_type, encoding, body) in cases {
        let resp = client.connect_raw(TENANT, PUSH_PATH, content_type, encoding, &body);
        let err = resp
            .connect_error()
            .unwrap_or_else(|| panic!("{what}: accepted with {}, expected a 4xx", resp.status));
        err.assert_actionable_4xx(what);
        assert_still_serving(&client, TENANT);
    }

    // A query that is wrong gets the same treatment.
    let (status, body) = client.connect_json(
        TENANT,
        &ember_tests::querier_path("SelectMergeStacktraces"),
        &serde_json::json!({
            "profileTypeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
            "labelSelector": "{service_name=~\"(unclosed\"}",
            "start": "0",
            "end": "1"
        }),
    );
    assert!(
        (400..500).contains(&status),
        "an invalid selector must be a 4xx, got {status} {body}"
    );
    assert!(
        body.get("message")
            .and_then(|m| m.as_str())
            .is_some_and(|m| !m.is_empty()),
        "an invalid selector must be explained: {body}"
    );
    let gz_ok = gzip(&push_request(labels, &cpu).encode_to_vec());
    let resp = client.connect_raw(TENANT, PUSH_PATH, "application/proto", Some("gzip"), &gz_ok);
    assert!(
        resp.is_success(),
        "a good gzip push after the bad ones: {}",
        resp.status
    );
    assert_still_serving(&client, TENANT);
}
