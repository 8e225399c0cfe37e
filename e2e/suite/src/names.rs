//! Names and places: random DNS-label-safe suffixes, unique names for cluster and backend objects,
//! the workspace root (for committed files) and the cargo target directory (for run artefacts).

use std::path::{Path, PathBuf};

use rand::Rng;

/// `length` random characters from `[a-z0-9]`: valid in DNS labels, PostgreSQL role names (after
/// a letter) and every backend path the harness builds.
pub fn random_suffix(length: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut generator = rand::rng();
    (0..length)
        .map(|_| char::from(ALPHABET[generator.random_range(0..ALPHABET.len())]))
        .collect()
}

/// `<prefix>-<random6>` as a valid DNS label (at most 63 characters, lower case, starting and
/// ending with an alphanumeric character); characters a label cannot hold become `-`.
pub fn unique_name(prefix: &str) -> String {
    let mut cleaned: String = prefix
        .chars()
        .map(|character| {
            let lower = character.to_ascii_lowercase();
            if lower.is_ascii_lowercase() || lower.is_ascii_digit() {
                lower
            } else {
                '-'
            }
        })
        .collect();
    // 63 = 56 + "-" + 6 random characters.
    cleaned.truncate(56);
    let cleaned = cleaned.trim_matches('-');
    let prefix = if cleaned.is_empty() { "e2e" } else { cleaned };
    format!("{prefix}-{}", random_suffix(6))
}

/// The workspace root, for committed files such as `crds/` and `examples/`.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // e2e/suite -> the workspace root; canonical so that messages show a readable path.
    let root = manifest_dir.join("..").join("..");
    root.canonicalize().unwrap_or(root)
}

/// The cargo profile directory the running test binary was built into (`<target>/debug` for a
/// test in `<target>/debug/deps/`), if it can be told from the executable's path.
pub(crate) fn profile_dir() -> Option<PathBuf> {
    let executable = std::env::current_exe().ok()?;
    let parent = executable.parent()?;
    if parent.file_name().is_some_and(|name| name == "deps") {
        parent.parent().map(Path::to_path_buf)
    } else {
        Some(parent.to_path_buf())
    }
}

/// Where namespaces keep their operator logs and audit databases: `<target>/e2e-runs`, so that
/// a failed run's files are found next to the build; the system temp dir when that is unknown.
pub(crate) fn runs_dir() -> PathBuf {
    profile_dir()
        .and_then(|profile| profile.parent().map(|target| target.join("e2e-runs")))
        .unwrap_or_else(|| std::env::temp_dir().join("keyturn-e2e-runs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn unique_names_are_dns_labels() {
        for prefix in ["rotation", "Crash_After/Apply", "", "---", &"x".repeat(100)] {
            let name = unique_name(prefix);
            assert!(is_dns_label(&name), "{prefix:?} gave {name:?}");
        }
        assert_ne!(unique_name("a"), unique_name("a"));
        assert!(unique_name("Crash_After").starts_with("crash-after-"));
    }
}
