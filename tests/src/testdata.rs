//! Finding the shared test profiles (`shared/testdata/profiles`).
//!
//! On a developer's machine `shared/` sits beside the workspace (`<root>/../shared`);
//! CI clones the repository with `shared/` beside the clone, which is the same
//! relation. `<root>/../../shared` is checked too, and `EMBER_TESTDATA` overrides both.

use std::path::{Path, PathBuf};

/// Returns the workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Returns the directory of shared test profiles, panicking with every place
/// it looked when there is none.
pub fn profiles_dir() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os("EMBER_TESTDATA") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => {
            let root = workspace_root();
            vec![
                root.join("../shared/testdata/profiles"),
                root.join("../../shared/testdata/profiles"),
            ]
        }
    };
    for dir in &candidates {
        if dir.join("README.md").is_file() || dir.join("cpu.pb.gz").is_file() {
            return dir.canonicalize().unwrap_or_else(|_| dir.clone());
        }
    }
    panic!(
        "shared test profiles not found; looked in {candidates:?} (set EMBER_TESTDATA to the \
         directory holding cpu.pb.gz)"
    )
}

/// Returns the path of a shared profile, relative to the profiles directory.
pub fn path(relative: &str) -> PathBuf {
    profiles_dir().join(relative)
}

/// Returns the bytes of a shared profile, relative to the profiles directory.
pub fn read(relative: &str) -> Vec<u8> {
    let p = path(relative);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Returns every profile file under the profiles directory, recursively, sorted,
/// as paths relative to it. Documentation (`*.md`) and the `sample_type_config`
/// files (`*.json`) are left out.
pub fn all_profiles() -> Vec<String> {
    let root = profiles_dir();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for entry in entries {
            let p = entry.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if !matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("md") | Some("json")
            ) {
                let rel = p.strip_prefix(&root).expect("under root");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// Returns whether a shared profile is one of the crafted bad inputs
/// (`invalid_utf8.pb.gz`, anything under `malformed/`): they must get a 4xx with a
/// message or be accepted (repaired), never crash the server.
pub fn is_bad_input(relative: &str) -> bool {
    relative.starts_with("malformed/") || relative.ends_with("invalid_utf8.pb.gz")
}

/// Returns the shared profiles that are valid pprof (they decode) and are not
/// crafted bad inputs.
pub fn valid_profiles() -> Vec<String> {
    all_profiles()
        .into_iter()
        .filter(|rel| !is_bad_input(rel))
        .filter(|rel| crate::pprof::decode(&read(rel)).is_ok())
        .collect()
}

/// Returns the crafted bad-input profiles.
pub fn bad_inputs() -> Vec<String> {
    all_profiles()
        .into_iter()
        .filter(|rel| is_bad_input(rel))
        .collect()
}

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
