use ember_model::{Labels, ingest::series_for};
use ember_proto::google::v1::Profile;
use ember_testkit::pprof::PprofBuilder;

use super::*;

/// A Go-like heap profile: alloc_objects, alloc_space, inuse_space, with
/// stacks given as function names (leaf first) and pprof IDs from
/// `id_offset + 1` on, so that each profile can number them afresh.
fn heap(stacks: &[(&[&str], [i64; 3])], id_offset: u64) -> Profile {
    let builder = PprofBuilder::new(&[
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_space", "bytes"),
    ])
    .period_type("space", "bytes", 0)
    .id_offset(id_offset);
    stacks
        .iter()
        .fold(builder, |b, (leaf_first, values)| {
            let root_first: Vec<&str> = leaf_first.iter().rev().copied().collect();
            b.sample(&root_first, values)
        })
        .build()
}

/// Returns (profile type's sample type, sum) of what would be stored.
fn stored(profile: &FlatProfile, series: &[SeriesSpec]) -> Vec<(String, i64)> {
    series
        .iter()
        .map(|s| {
            let sum = match &s.samples {
                Some(idx) => idx
                    .iter()
                    .map(|&i| profile.samples.values(i as usize)[s.sample_type])
                    .sum(),
                None => profile
                    .samples
                    .iter()
                    .map(|x| x.values[s.sample_type])
                    .sum(),
            };
            (s.profile_type.sample_type.clone(), sum)
        })
        .collect()
}

fn push(t: &DeltaTracker, p: Profile, at_secs: u64) -> (FlatProfile, Vec<(String, i64)>) {
    let mut p = FlatProfile::from(p);
    let mut series = series_for(&p, &Labels::default());
    t.apply("t", &mut p, &mut series, Duration::from_secs(at_secs));
    let s = stored(&p, &series);
    (p, s)
}

#[test]
fn first_profile_is_a_baseline_and_later_ones_are_deltas() {
    let t = DeltaTracker::default();
    let (_, s) = push(&t, heap(&[(&["malloc", "main"], [10, 1000, 500])], 0), 1);
    assert_eq!(
        s,
        vec![("inuse_space".to_string(), 500)],
        "alloc_* are a baseline only"
    );
    let (_, s) = push(
        &t,
        heap(
            &[
                (&["malloc", "main"], [15, 1600, 400]),
                (&["new", "main"], [2, 64, 64]),
            ],
            100,
        ),
        2,
    );
    assert_eq!(
        s,
        vec![
            ("alloc_objects".to_string(), 5 + 2),
            ("alloc_space".to_string(), 600 + 64),
            ("inuse_space".to_string(), 464),
        ]
    );
}

#[test]
fn duplicate_stacks_are_summed_and_a_decrease_is_a_reset() {
    let t = DeltaTracker::default();
    push(
        &t,
        heap(&[(&["a"], [4, 40, 0]), (&["a"], [6, 60, 0])], 0),
        1,
    );
    let (p, s) = push(
        &t,
        heap(&[(&["a"], [5, 50, 0]), (&["a"], [7, 70, 0])], 7),
        2,
    );
    assert_eq!(s[0], ("alloc_objects".to_string(), 2));
    assert_eq!(
        p.samples.values(1)[0],
        0,
        "the delta goes to the first sample"
    );
    // The process restarted: values went down, so this is a new baseline.
    let (_, s) = push(&t, heap(&[(&["a"], [1, 10, 0])], 0), 3);
    assert!(s.iter().all(|(ty, _)| !ty.starts_with("alloc")), "{s:?}");
    let (_, s) = push(&t, heap(&[(&["a"], [3, 30, 0])], 0), 4);
    assert_eq!(s[0], ("alloc_objects".to_string(), 2));
}

#[test]
fn state_is_bounded_by_series_count_and_idle_time() {
    let apply = |t: &DeltaTracker, service: &str, at: u64| {
        let mut p = FlatProfile::from(heap(&[(&["a"], [1, 1, 0])], 0));
        let labels = ember_model::ingest::labels_of(&[("service_name", service)]);
        let mut series = series_for(&p, &labels);
        t.apply("t", &mut p, &mut series, Duration::from_secs(at));
    };
    // Each profile has two cumulative series (alloc_objects, alloc_space).
    let capped = DeltaTracker::new(3, Duration::from_secs(60));
    apply(&capped, "one", 1);
    assert_eq!(capped.tracked("t"), 2);
    apply(&capped, "two", 2);
    assert_eq!(
        capped.tracked("t"),
        3,
        "the least recently seen series go first"
    );

    let idle = DeltaTracker::new(100, Duration::from_secs(60));
    apply(&idle, "one", 1);
    apply(&idle, "two", 1000);
    assert_eq!(
        idle.tracked("t"),
        2,
        "series idle for longer than 60s are forgotten"
    );
}

#[test]
fn names_cumulative_types() {
    assert!(is_cumulative("memory", "alloc_space"));
    assert!(!is_cumulative("memory", "inuse_space"));
    assert!(is_cumulative("block", "delay"));
    assert!(is_cumulative("mutex", "contentions"));
    assert!(!is_cumulative("process_cpu", "cpu"));
}

/// Series split by a pprof label keep their own totals of a stack they
/// share, and each delta lands on a sample of its own series.
#[test]
fn series_split_by_labels_are_deltas_of_their_own_samples() {
    let labelled = |values: [[i64; 3]; 2]| {
        PprofBuilder::new(&[
            ("alloc_objects", "count"),
            ("alloc_space", "bytes"),
            ("inuse_space", "bytes"),
        ])
        .period_type("space", "bytes", 0)
        .sample_with_labels(&["main", "a"], &values[0], &[("worker", "1")])
        .sample_with_labels(&["main", "a"], &values[1], &[("worker", "2")])
        .build()
    };
    let t = DeltaTracker::default();
    push(&t, labelled([[1, 10, 0], [100, 1000, 0]]), 1);
    let (p, s) = push(&t, labelled([[3, 30, 0], [105, 1050, 0]]), 2);
    let objects: Vec<i64> = s
        .iter()
        .filter(|(ty, _)| ty == "alloc_objects")
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(objects, [2, 5], "{s:?}");
    assert_eq!(p.samples.values(0)[0], 2);
    assert_eq!(p.samples.values(1)[0], 5);
}
