//! The profile type of a non-pprof upload, chosen by the suffix of its
//! application name (`app.cpu`, `app.inuse_space`, ...), as Grafana
//! Pyroscope's legacy ingestion maps it.

/// What one converted profile is: its name (`__name__`), sample type and
/// period, and the factor applied to every input value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileKind {
    pub name: String,
    pub sample_type: String,
    pub sample_unit: String,
    pub period_type: String,
    pub period_unit: String,
    pub period: i64,
    /// Multiplies every value (samples → nanoseconds at a sample rate).
    pub scale: i64,
}

/// The suffixes [`for_suffix`] knows, for error messages and the parser.
pub const SUFFIXES: &[&str] = &[
    "cpu",
    "itimer",
    "wall",
    "inuse_objects",
    "inuse_space",
    "alloc_objects",
    "alloc_space",
    "goroutines",
    "mutex_count",
    "mutex_duration",
    "block_count",
    "block_duration",
    "lock_count",
    "lock_duration",
    "alloc_in_new_tlab_objects",
    "alloc_in_new_tlab_bytes",
    "alloc_outside_tlab_objects",
    "alloc_outside_tlab_bytes",
    "live",
    "exceptions",
    "seconds",
    "milliseconds",
    "microseconds",
    "nanoseconds",
    "bytes",
];

/// Returns the profile kind of an application-name suffix, or `None` when the
/// suffix is not a profile type. `sample_rate` (Hz, 0 = unknown) turns
/// `process_cpu` and `wall` sample counts into nanoseconds with period
/// `1e9 / sample_rate`, as Pyroscope does.
pub fn for_suffix(suffix: &str, sample_rate: u32) -> Option<ProfileKind> {
    let (name, sample_type, unit) = match suffix {
        "cpu" | "itimer" => ("process_cpu", "samples", "count"),
        "wall" | "seconds" | "milliseconds" | "microseconds" | "nanoseconds" => {
            ("wall", "samples", "count")
        }
        "inuse_objects" | "alloc_objects" => ("memory", suffix, "count"),
        "inuse_space" | "alloc_space" => ("memory", suffix, "bytes"),
        "goroutines" => ("goroutine", "goroutines", "count"),
        "mutex_count" => ("mutex", "contentions", "count"),
        "mutex_duration" => ("mutex", "delay", "nanoseconds"),
        "block_count" | "lock_count" => ("block", "contentions", "count"),
        "block_duration" | "lock_duration" => ("block", "delay", "nanoseconds"),
        "alloc_in_new_tlab_objects" | "alloc_outside_tlab_objects" | "live" => {
            ("memory", suffix, "count")
        }
        "alloc_in_new_tlab_bytes" | "alloc_outside_tlab_bytes" => ("memory", suffix, "bytes"),
        "exceptions" => ("exceptions", "samples", "count"),
        "bytes" => ("memory", "samples", "bytes"),
        _ => return None,
    };
    let mut kind = ProfileKind {
        name: name.to_owned(),
        sample_type: sample_type.to_owned(),
        sample_unit: unit.to_owned(),
        period_type: String::new(),
        period_unit: String::new(),
        period: 0,
        scale: 1,
    };
    if sample_rate > 0 && (name == "process_cpu" || name == "wall") {
        let period = 1_000_000_000 / i64::from(sample_rate);
        kind.sample_type = if name == "wall" { "wall" } else { "cpu" }.to_owned();
        kind.sample_unit = "nanoseconds".to_owned();
        kind.period_type = "cpu".to_owned();
        kind.period_unit = "nanoseconds".to_owned();
        kind.period = period;
        kind.scale = period;
    }
    Some(kind)
}

/// Returns the kind of an application name's suffix; names without a known
/// suffix are CPU profiles, as in Pyroscope.
pub fn for_optional_suffix(suffix: Option<&str>, sample_rate: u32) -> ProfileKind {
    suffix
        .and_then(|s| for_suffix(s, sample_rate))
        .unwrap_or_else(|| for_suffix("cpu", sample_rate).expect("cpu is a known suffix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(k: &ProfileKind) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            k.name, k.sample_type, k.sample_unit, k.period_type, k.period_unit
        )
    }

    #[test]
    fn every_suffix_has_a_kind() {
        for s in SUFFIXES {
            assert!(for_suffix(s, 0).is_some(), "{s}");
        }
        assert_eq!(for_suffix("nope", 100), None);
    }

    #[test]
    fn cpu_with_sample_rate_is_in_nanoseconds() {
        let k = for_suffix("cpu", 100).unwrap();
        assert_eq!(id(&k), "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!((k.period, k.scale), (10_000_000, 10_000_000));
        let k = for_suffix("wall", 100).unwrap();
        assert_eq!(id(&k), "wall:wall:nanoseconds:cpu:nanoseconds");
        let k = for_suffix("cpu", 0).unwrap();
        assert_eq!(id(&k), "process_cpu:samples:count::");
        assert_eq!(k.scale, 1);
    }

    #[test]
    fn memory_and_contention_types() {
        assert_eq!(
            id(&for_suffix("inuse_space", 100).unwrap()),
            "memory:inuse_space:bytes::"
        );
        assert_eq!(
            id(&for_suffix("mutex_duration", 0).unwrap()),
            "mutex:delay:nanoseconds::"
        );
        assert_eq!(
            id(&for_suffix("lock_count", 0).unwrap()),
            "block:contentions:count::"
        );
        assert_eq!(
            id(&for_suffix("goroutines", 0).unwrap()),
            "goroutine:goroutines:count::"
        );
    }
}
