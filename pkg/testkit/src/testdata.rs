//! Finding, listing and reading the shared test profiles
//! (`shared/testdata/profiles`: real profiles from seven runtimes, and a few
//! crafted bad inputs).
//!
//! On a developer's machine `shared/` sits beside the workspace (`<root>/../shared`);
//! CI clones the repository with `shared/` beside the clone, which is the same
//! relation. `<root>/../../shared` is checked too, and `EMBER_TESTDATA` overrides both.
//!
//! Profiles are named by their path relative to that directory, with `/`
//! separators (`more/heap.pb`), and listed in the order of those names.

use std::path::{Path, PathBuf};

/// The variable that names the profiles directory, overriding the search.
pub const TESTDATA_VAR: &str = "EMBER_TESTDATA";

/// Returns the workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // This crate lives in `<root>/pkg/testkit`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("pkg/testkit has a grandparent")
        .to_path_buf()
}

/// Returns the directory of shared test profiles, or every place it looked
/// when there is none.
pub fn find_profiles_dir() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os(TESTDATA_VAR) {
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
            return Ok(dir.canonicalize().unwrap_or_else(|_| dir.clone()));
        }
    }
    Err(format!(
        "shared test profiles not found; looked in {candidates:?} (set {TESTDATA_VAR} to the \
         directory holding cpu.pb.gz)"
    ))
}

/// Returns the directory of shared test profiles, panicking with every place
/// it looked when there is none.
pub fn profiles_dir() -> PathBuf {
    find_profiles_dir().unwrap_or_else(|e| panic!("{e}"))
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

/// Returns every profile file under `dir`, recursively, as sorted paths
/// relative to it. Documentation (`*.md`) and the `sample_type_config` files
/// (`*.json`) are left out.
pub fn profiles_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if !matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("md") | Some("json")
            ) {
                let rel = p.strip_prefix(dir).expect("under the listed directory");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Returns every shared profile file (see [`profiles_in`]).
pub fn all_profiles() -> Vec<String> {
    let dir = profiles_dir();
    profiles_in(&dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
}

/// Returns every shared profile that `decode` accepts, with its name, in
/// name order: each crate decodes with its own decoder and limits.
///
/// Panics when fewer than `at_least` are accepted: a test meant to run over
/// the shared profiles proves little over a few of them (a partial checkout,
/// limits that refuse most).
pub fn decode_all<T, E>(
    at_least: usize,
    mut decode: impl FnMut(&[u8]) -> Result<T, E>,
) -> Vec<(String, T)> {
    let decoded: Vec<(String, T)> = all_profiles()
        .into_iter()
        .filter_map(|name| {
            let value = decode(&read(&name)).ok()?;
            Some((name, value))
        })
        .collect();
    assert!(
        decoded.len() >= at_least,
        "expected at least {at_least} decodable shared profiles in {}, found {}",
        profiles_dir().display(),
        decoded.len()
    );
    decoded
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
    decode_all(0, crate::pprof::decode)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !is_bad_input(name))
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

    #[test]
    fn lists_profiles_by_name_without_documentation() {
        let all = all_profiles();
        assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted: {all:?}");
        assert!(all.contains(&"more/heap.pb".to_string()), "{all:?}");
        assert!(
            !all.iter()
                .any(|p| p.ends_with(".md") || p.ends_with(".json")),
            "{all:?}"
        );
        assert_eq!(path("cpu.pb.gz"), profiles_dir().join("cpu.pb.gz"));
    }

    #[test]
    fn decode_all_keeps_what_the_decoder_accepts() {
        let plain = decode_all(1, |raw| {
            if crate::pprof::is_gzip(raw) {
                Err(())
            } else {
                Ok(raw.len())
            }
        });
        let names: Vec<&str> = plain.iter().map(|(name, _)| name.as_str()).collect();
        assert!(names.contains(&"heap-js.pprof"), "{names:?}");
        assert!(!names.contains(&"cpu.pb.gz"), "{names:?}");
        assert!(plain.iter().all(|(name, len)| read(name).len() == *len));
    }

    #[test]
    #[should_panic(expected = "expected at least 1 decodable shared profiles")]
    fn decode_all_refuses_to_find_too_few() {
        decode_all(1, |_| Err::<(), ()>(()));
    }
}
