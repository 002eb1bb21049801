//! Finding the shared test profiles (`shared/testdata/profiles`); the
//! functions live in `ember_testkit::testdata`, shared with the crates' tests.

pub use ember_testkit::testdata::{
    TESTDATA_VAR, all_profiles, bad_inputs, decode_all, find_profiles_dir, is_bad_input, path,
    profiles_dir, profiles_in, read, valid_profiles, workspace_root,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof;

    #[test]
    fn finds_and_classifies_the_shared_profiles() {
        let all = all_profiles();
        assert!(all.len() >= 40, "{all:?}");
        assert_eq!(
            bad_inputs(),
            vec![
                "invalid_utf8.pb.gz".to_string(),
                "malformed/no_addr_no_line.pb.gz".to_string()
            ]
        );
        let valid = valid_profiles();
        assert!(valid.contains(&"more/cpu_go_truncated_1.pb.gz".to_string()));
        assert!(valid.contains(&"more/heap_go_truncated_3.pb.gz".to_string()));
        // Only the crafted invalid-UTF-8 profile fails to decode.
        assert_eq!(valid.len() + 2, all.len());
        assert!(pprof::decode(&read("invalid_utf8.pb.gz")).is_err());
        assert_eq!(
            pprof::lossy_sums(&read("invalid_utf8.pb.gz")).unwrap(),
            vec![(("cpu".to_string(), "nanoseconds".to_string()), 1)]
        );
    }

    #[test]
    fn expectations_of_a_go_cpu_profile() {
        let p = pprof::decode(&read("cpu.pb.gz")).unwrap();
        let exp = pprof::expectations(&p);
        assert_eq!(exp.len(), 2);
        assert_eq!((exp[0].sample_type.as_str(), exp[0].sum), ("samples", 47));
        assert_eq!(
            (exp[1].sample_type.as_str(), exp[1].sum),
            ("cpu", 470_000_000)
        );
        assert_eq!(exp[1].leaves.len(), 5);
        assert!(
            exp[1].leaves.contains("runtime.kevent"),
            "{:?}",
            exp[1].leaves
        );
        assert_eq!(exp[1].unnamed_leaves, 0);
    }

    #[test]
    fn functions_with_id_zero_are_indexed_by_position() {
        // .NET leaves every function ID at 0; lines refer to them by position.
        let p = pprof::decode(&read("more/dotnet-pprof-3.pb.gz")).unwrap();
        assert!(p.function.iter().all(|f| f.id == 0));
        let exp = pprof::expectations(&p);
        assert_eq!(
            (exp[0].sample_type.as_str(), exp[0].sum),
            ("cpu", 5_653_000_000)
        );
        assert_eq!(exp[0].unnamed_leaves, 0, "{exp:?}");
        assert!(!exp[0].leaves.is_empty());
    }
}
