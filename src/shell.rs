//! Words written for a POSIX shell: what cfrun prints as a command a person may paste, and what
//! it writes into job scripts, must read back as the same words; and the programs a bare name
//! starts, found on PATH as the shell finds them.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// `s` in single quotes, each `'` inside written `'\''`: one word whatever it holds.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as it stands where a shell would read it as that one word, else [`quote`]d: a printed
/// `--set stages.probe.epochs=4` stays readable, while `--set 'experiment.title="a b"'` pastes
/// back as the value given.
pub fn word(s: &str) -> Cow<'_, str> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,/:=+@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(quote(s))
    }
}

/// Finds an executable called `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

/// Whether `p` is a file its owner, group or others may execute.
#[cfg(unix)]
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `p` is a file (no execute bit to check here).
#[cfg(not(unix))]
pub fn is_executable(p: &Path) -> bool {
    p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_a_shell_would_split_or_expand_are_quoted() {
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(word("stages.probe.epochs=4"), "stages.probe.epochs=4");
        assert_eq!(word("experiment.title=\"a b\""), r#"'experiment.title="a b"'"#);
        for s in ["", "a b", "$HOME", "x;y", "a*", "~", "it's", "[1,2]", "a\nb", "é"] {
            assert!(word(s).starts_with('\''), "{s:?} left bare");
        }
        // What the shell reads back is the word given.
        for s in ["it's", "a b", "'", "\"'\""] {
            let out =
                std::process::Command::new("sh").arg("-c").arg(format!("printf %s {}", word(s))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
