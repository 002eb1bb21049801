use std::io::Read;

use super::*;

/// A 1 s recording of tests/java/EmberBusy.java by OpenJDK 17 with
/// tests/java/ember.jfc (CPU, allocation and monitor events).
fn busy() -> Vec<u8> {
    let gz = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/busy.jfr.gz")).unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn names(p: &Profile) -> impl Iterator<Item = &str> {
    p.function
        .iter()
        .map(|f| p.string_table[f.name as usize].as_str())
}

fn type_ids(p: &Profile) -> Vec<String> {
    let s = |i: i64| p.string_table[i as usize].as_str();
    let pt = p.period_type.unwrap();
    p.sample_type
        .iter()
        .map(|st| {
            format!(
                "{}:{}:{}:{}",
                s(st.r#type),
                s(st.unit),
                s(pt.r#type),
                s(pt.unit)
            )
        })
        .collect()
}

#[test]
fn converts_a_jdk_recording() {
    let profiles = parse(&busy(), &JfrOptions::default()).unwrap();
    let by_name: Vec<(&str, Vec<String>)> = profiles
        .iter()
        .map(|(n, p)| (n.as_str(), type_ids(p)))
        .collect();
    assert!(
        by_name.contains(&(
            "process_cpu",
            vec!["cpu:nanoseconds:cpu:nanoseconds".to_owned()]
        )),
        "{by_name:?}"
    );
    assert!(
        by_name.contains(&(
            "memory",
            vec![
                "alloc_outside_tlab_objects:count:space:bytes".to_owned(),
                "alloc_outside_tlab_bytes:bytes:space:bytes".to_owned()
            ]
        )),
        "{by_name:?}"
    );
    assert!(by_name.iter().any(|(n, _)| *n == "mutex"), "{by_name:?}");

    let (_, cpu) = profiles.iter().find(|(n, _)| n == "process_cpu").unwrap();
    assert!(
        names(cpu).any(|n| n == "EmberBusy.emberHotLoop"),
        "{:?}",
        names(cpu).collect::<Vec<_>>()
    );
    // Each sample is 10 ms at the default 100 Hz.
    let total: i64 = cpu.sample.iter().map(|s| s.value[0]).sum();
    assert!(total > 0 && total % 10_000_000 == 0, "{total}");
    assert!(
        cpu.time_nanos > 1_600_000_000_000_000_000,
        "{}",
        cpu.time_nanos
    );
    let (_, mem) = profiles
        .iter()
        .find(|(n, p)| n == "memory" && type_ids(p)[0].starts_with("alloc_outside"))
        .unwrap();
    assert!(names(mem).any(|n| n == "EmberBusy.emberAllocate"));
    let bytes: i64 = mem.sample.iter().map(|s| s.value[1]).sum();
    assert!(bytes >= 16 * 1024, "{bytes}");
}

#[test]
fn sample_rate_sets_the_cpu_period() {
    let options = JfrOptions {
        sample_rate: 50,
        ..Default::default()
    };
    let profiles = parse(&busy(), &options).unwrap();
    let (_, cpu) = profiles.iter().find(|(n, _)| n == "process_cpu").unwrap();
    assert_eq!(cpu.period, 20_000_000);
    assert!(cpu.sample.iter().all(|s| s.value[0] % 20_000_000 == 0));
}

#[test]
fn refuses_what_is_not_jfr() {
    let e = parse(b"not a recording", &JfrOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("magic"), "{e}");
    let small = JfrOptions {
        limits: Limits {
            max_input_bytes: 1000,
            ..Limits::default()
        },
        ..Default::default()
    };
    assert!(matches!(parse(&busy(), &small), Err(Error::TooLarge(_))));
}

#[test]
fn truncated_and_corrupted_recordings_fail_cleanly() {
    let data = busy();
    for cut in [10, 67, 68, 100, 1000, data.len() / 2, data.len() - 1] {
        let e = parse(&data[..cut], &JfrOptions::default()).unwrap_err();
        assert!(e.to_string().contains("JFR"), "{cut}: {e}");
    }
    // Flip bytes all over the file: never a panic, never an endless loop.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for _ in 0..200 {
        let mut copy = data.clone();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = 4 + (seed as usize) % (copy.len() - 4);
            copy[i] = (seed >> 32) as u8;
        }
        let _ = parse(&copy, &JfrOptions::default());
    }
}
