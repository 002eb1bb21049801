//! Acceptance: `go tool pprof -top` reads `SelectMergeProfile` output and reports
//! the same total as what was pushed.

use std::process::Command;

use ember_tests::checks::{service_selector, the_type_with_data};
use ember_tests::{
    EmberProcess, MULTITENANCY, TimeRange, go_binary, now_nanos, pprof, process::write_file,
    skip_or_fail_missing_tool, testdata,
};

const TENANT: Option<&str> = Some("go-pprof");

/// Returns pprof's `-unit` for a sample unit, so that `-top` prints exact
/// integers in the profile's own unit ("" for counts).
fn pprof_unit(sample_unit: &str) -> &'static str {
    match sample_unit {
        "nanoseconds" => "ns",
        "microseconds" => "us",
        "milliseconds" => "ms",
        "seconds" => "s",
        "bytes" => "B",
        _ => "",
    }
}

/// Parses the total out of `Showing nodes accounting for X, P% of TOTAL total`.
fn parse_total(output: &str, unit: &str) -> Option<i64> {
    let line = output
        .lines()
        .find(|l| l.starts_with("Showing nodes accounting for"))?;
    let before = line.strip_suffix(" total")?;
    let token = before.rsplit(' ').next()?;
    token.strip_suffix(unit)?.parse().ok()
}

#[test]
fn go_tool_pprof_reports_the_pushed_total() {
    let Some(go) = go_binary() else {
        skip_or_fail_missing_tool("Go (`go tool pprof`)", "apt-get install golang-go");
        return;
    };
    let ember = EmberProcess::start(&[MULTITENANCY]);
    let client = ember.client();
    let now = now_nanos();
    let range = TimeRange::around_nanos(now, 600_000);
    let work = tempfile::tempdir().unwrap();

    let mut checked = 0;
    for (i, file) in ["cpu.pb.gz", "heap.pb.gz", "req_3.pprof"]
        .into_iter()
        .enumerate()
    {
        let raw = testdata::read(file);
        let profile = pprof::decode(&raw).unwrap();
        let service = format!("go-pprof-{i}");
        client.push_pprof(
            TENANT,
            &[("service_name", &service), ("__delta__", "false")],
            &pprof::with_time_nanos(&raw, now),
        );
        let selector = service_selector(&service);
        for exp in pprof::expectations(&profile)
            .into_iter()
            .filter(|e| e.sum != 0)
        {
            let (id, _) = the_type_with_data(
                &client,
                TENANT,
                range,
                &selector,
                &exp.sample_type,
                &exp.sample_unit,
            );
            let (body, merged) = client.select_merge_profile(TENANT, &id, &selector, range);
            let what = format!("{file} {id}");

            // The answer itself: one sample type, the pushed sum.
            let types = pprof::sample_types(&merged);
            assert_eq!(
                types,
                vec![(exp.sample_type.clone(), exp.sample_unit.clone())],
                "{what}: SelectMergeProfile's sample types"
            );
            let sum: i64 = merged.sample.iter().map(|s| s.value[0]).sum();
            assert_eq!(sum, exp.sum, "{what}: SelectMergeProfile's total");

            // And what `go tool pprof` makes of it.
            let path = write_file(work.path(), &format!("merged-{checked}.pb"), &body);
            let unit = pprof_unit(&exp.sample_unit);
            let mut cmd = Command::new(&go);
            cmd.args([
                "tool",
                "pprof",
                "-top",
                "-symbolize=none",
                "-nodecount=100000",
                "-nodefraction=0",
                "-edgefraction=0",
            ]);
            if !unit.is_empty() {
                cmd.arg(format!("-unit={unit}"));
            }
            let out = cmd
                .arg(&path)
                .env("HOME", work.path())
                .env("PPROF_TMPDIR", work.path())
                .output()
                .expect("run go tool pprof");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{what}: go tool pprof failed ({}):\n{stderr}\n{stdout}",
                out.status
            );
            let total = parse_total(&stdout, unit).unwrap_or_else(|| {
                panic!("{what}: no total in go tool pprof's output:\n{stdout}\n{stderr}")
            });
            assert_eq!(total, exp.sum, "{what}: go tool pprof -top total\n{stdout}");
            // Every leaf function of the file is among pprof's rows.
            for leaf in &exp.leaves {
                assert!(
                    stdout.contains(leaf.as_str()),
                    "{what}: {leaf} is missing from go tool pprof -top:\n{stdout}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        2 + 4 + 2,
        "every sample type of the three files was checked"
    );
}

#[test]
fn parse_total_reads_pprof_headers() {
    let out = "Type: cpu\nShowing nodes accounting for 450000000ns, 95.74% of 470000000ns total\n";
    assert_eq!(parse_total(out, "ns"), Some(470_000_000));
    let out = "Showing nodes accounting for 10, 100% of 10 total\n";
    assert_eq!(parse_total(out, ""), Some(10));
    assert_eq!(parse_total("nothing", ""), None);
}
