//! Acceptance: what Grafana's Pyroscope datasource needs first. Its health check
//! is `ProfileTypes{start:1000,end:4000}` and must answer 200, with or without
//! data, whatever the codec.

use ember_proto::querier::v1::{ProfileTypesRequest, ProfileTypesResponse};
use ember_tests::pprof::PprofBuilder;
use ember_tests::{Codec, EmberProcess, MULTITENANCY, now_nanos, querier_path};
use serde_json::json;

fn health_check_answers_200(client: &ember_tests::Client, tenant: Option<&str>) {
    let path = querier_path("ProfileTypes");
    // protojson as Grafana's frontend sends it: int64 as JSON numbers and as strings.
    for body in [
        json!({"start": 1000, "end": 4000}),
        json!({"start": "1000", "end": "4000"}),
    ] {
        let (status, answer) = client.connect_json(tenant, &path, &body);
        assert_eq!(
            status, 200,
            "ProfileTypes {body} answered {status}: {answer}"
        );
        assert!(
            answer.is_object(),
            "ProfileTypes {body} must answer a JSON object: {answer}"
        );
    }
    // Protobuf, as Grafana's backend (connect-go) sends it.
    let req = ProfileTypesRequest {
        start: 1000,
        end: 4000,
    };
    let resp: Result<ProfileTypesResponse, _> = client.call(tenant, &path, &req, Codec::Proto);
    if let Err(e) = resp {
        panic!("ProfileTypes{{start:1000,end:4000}} over protobuf failed: {e}");
    }
}

#[test]
fn grafana_health_check_answers_200_single_tenant() {
    let ember = EmberProcess::start(&[]);
    let client = ember.client();
    health_check_answers_200(&client, None);

    // Still 200 once data exists (outside the health check's 1970 range).
    let now = now_nanos();
    let profile = PprofBuilder::go_cpu()
        .time(now, 10_000_000_000)
        .sample(&["main", "work"], &[1, 10_000_000])
        .encode();
    client.push_pprof(None, &[("service_name", "grafana-health")], &profile);
    health_check_answers_200(&client, None);
}

#[test]
fn grafana_health_check_answers_200_with_multitenancy() {
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    health_check_answers_200(&client, Some("grafana-tenant"));
}
