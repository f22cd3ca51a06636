//! The experiment file as text, and where in it (or in which `--set`) a value was written.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::limits::MAX_FILE_BYTES;

/// An experiment file (or the user configuration) that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what} {}: {source}", path.display())]
pub struct ReadError {
    /// What the file is to cfrun: "experiment file", or the user configuration and how it was found.
    pub what: &'static str,
    /// The path given.
    pub path: PathBuf,
    /// Why.
    pub source: ReadFailure,
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFailure {
    /// The OS refused.
    #[error(transparent)]
    Io(std::io::Error),
    /// A folder, device or pipe.
    #[error("not a regular file (experiment files are plain TOML files)")]
    NotAFile,
    /// Larger than an experiment file may be (its size, when known before reading).
    #[error("{} more than the {MAX_FILE_BYTES} bytes an experiment file may have", match .0 { Some(n) => format!("{n} bytes is"), None => "it has".to_string() })]
    TooLarge(Option<u64>),
    /// Not UTF-8: the first bad byte's line and column (of the valid text before it) and offset.
    #[error("not UTF-8 text (invalid byte at line {line}, column {column}, offset {offset}); TOML files are UTF-8")]
    NotUtf8 {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// Byte offset.
        offset: usize,
    },
}

/// A loaded experiment file: its path (as the user named it) and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as given on the command line.
    pub path: PathBuf,
    /// The whole file.
    pub text: Arc<str>,
}

impl SourceFile {
    /// Reads a file. Only a regular file of at most [`MAX_FILE_BYTES`] is read: a device
    /// (`/dev/zero`) or a pipe would fill memory or block, and a larger file is not an experiment.
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        Self::read_as(path, "experiment file")
    }

    /// [`SourceFile::read`] of a file that is `what` to cfrun, which its errors name.
    pub fn read_as(path: &Path, what: &'static str) -> Result<Self, ReadError> {
        let fail = |source: ReadFailure| ReadError { what, path: path.to_path_buf(), source };
        let meta = std::fs::metadata(path).map_err(|e| fail(ReadFailure::Io(e)))?;
        if !meta.is_file() {
            return Err(fail(ReadFailure::NotAFile));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(fail(ReadFailure::TooLarge(Some(meta.len()))));
        }
        let file = std::fs::File::open(path).map_err(|e| fail(ReadFailure::Io(e)))?;
        let mut bytes = Vec::new();
        // The file may grow between the check and the read.
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| fail(ReadFailure::Io(e)))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(fail(ReadFailure::TooLarge(None)));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            // The text before the bad byte is valid, so its lines are counted as the file's.
            let before = String::from_utf8_lossy(&e.as_bytes()[..offset]).into_owned();
            let (line, column) = Self::from_text(path, before).line_col(offset);
            fail(ReadFailure::NotUtf8 { line, column, offset })
        })?;
        Ok(Self::from_text(path, text))
    }

    /// Wraps text that did not come from disk (tests, `--set` snippets).
    pub fn from_text(path: &Path, text: String) -> Self {
        Self { path: path.to_path_buf(), text: text.into() }
    }

    /// 1-based line and column of a byte offset. The column counts characters, as editors do
    /// (`é` is one column, not two), and leaves out a byte-order mark, which editors do not show.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let start = before.rfind('\n').map_or(0, |nl| nl + 1);
        let col = before[start..].chars().filter(|&c| c != '\u{feff}').count() + 1;
        (line, col)
    }
}

/// Where a value came from: a span of the experiment file, or a `--set` override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Byte range in the experiment file.
    File(Range<usize>),
    /// The n-th `--set` argument.
    Override(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte that is not UTF-8 is placed by line and column, as an editor shows it, beside its
    /// offset (only the offset was given: a fuzzing review had to count lines by hand).
    #[test]
    fn a_byte_that_is_not_utf8_is_placed_by_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, b"[experiment]\nname = \"\xc3\xa9t\xe9\"\n").unwrap();
        let err = SourceFile::read(&path).unwrap_err().to_string();
        assert!(err.contains("invalid byte at line 2, column 11, offset 24"), "{err}");
    }

    /// Columns count characters after the line's start, not bytes, and not a byte-order mark: an
    /// error after `"ééé"` is reported where an editor shows it.
    #[test]
    fn columns_count_characters_not_bytes() {
        let file = SourceFile::from_text(Path::new("x.toml"), "\u{feff}a = 1\nd = \"ééé\" junk\n".into());
        let junk = file.text.find("junk").unwrap();
        assert_eq!(file.line_col(junk), (2, 11));
        let a = file.text.find('a').unwrap();
        assert_eq!(file.line_col(a), (1, 1));
    }
}
