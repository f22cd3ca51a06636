//! A run whose failures come from a full disk or an exceeded quota says so once, with what frees
//! space, rather than leaving the user to read the same OS error on every failed instance.

use std::path::Path;

/// What tells a full file system (`ENOSPC`) or an exceeded disk quota (`EDQUOT`) on Linux: the end
/// of Rust's `io::Error` text, which does not depend on the call, and the C library's words, which
/// a `command` stage's error carries when only its program's stderr says so.
const SPACE_ERRORS: &[&str] = &["(os error 28)", "(os error 122)", "No space left on device", "Disk quota exceeded"];

/// The hint to print after a run when any of `errors` is a full disk or quota; `cache` is where
/// the run staged and published its files.
pub(super) fn hint<'a>(errors: impl IntoIterator<Item = &'a str>, cache: &Path) -> Option<String> {
    let full = errors.into_iter().filter(|e| SPACE_ERRORS.iter().any(|s| e.contains(s))).count();
    (full > 0).then(|| {
        format!(
            "hint: {full} failure(s) above ran out of disk space or quota. Every instance writes into \
             the cache ({}); `cfrun gc EXPERIMENT...` removes the cached results none of the named \
             experiments uses, or `--cache DIR` (CFRUN_CACHE) puts the cache on a disk with room. \
             What finished is cached: run again to go on.",
            cache.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Failures from a full disk or an exceeded quota are counted, a command's among them; other
    /// failures, and an error number that only starts with 28, are not.
    #[test]
    fn only_space_errors_give_the_hint() {
        let cache = Path::new("/data/cache");
        let errors = [
            "writing /data/cache/tmp/stage-1/labels.safetensors: No space left on device (os error 28)",
            "command `sh` exited with status 3 (stderr was empty)",
            "cache: /data/cache/tmp/stage-2/manifest.json: Disk quota exceeded (os error 122)",
            "command `python3` exited with status 1; stderr: OSError: [Errno 28] No space left on device",
        ];
        let text = hint(errors, cache).expect("a hint");
        assert!(text.starts_with("hint: 3 failure(s) above ran out of disk space or quota."), "{text}");
        assert!(text.contains("(/data/cache)"), "{text}");
        assert_eq!(hint(["no such file (os error 2)", "x (os error 281)"], cache), None);
        assert_eq!(hint([], cache), None);
    }
}
