//! What ran under each instance name, and the run log.
//!
//! `records/<experiment>/<instance>.json` keeps the recipe last completed under a name, so that
//! `status` can explain a new key as a field-level diff (`kmeans[k=50]: k 40 -> 50`).
//! `runs.jsonl` gets one line per instance per run: key, outcome, wall time.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsutil::{open_append, read_limited, write_atomic};
use super::ids::RecipeKey;
use super::key::Recipe;
use super::store::Store;

/// The last recipe completed under an instance name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameRecord {
    /// Its key.
    pub key: RecipeKey,
    /// Its recipe.
    pub recipe: Recipe,
}

/// One line of `runs.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunLogLine {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// Experiment name.
    pub experiment: String,
    /// Instance name.
    pub instance: String,
    /// Recipe key.
    pub key: Option<RecipeKey>,
    /// `cached`, `ran`, `failed` or `skipped`.
    pub outcome: String,
    /// Wall time of the instance in seconds.
    pub seconds: f64,
    /// Error message, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run it belongs to, the same in each of its lines (absent from logs before 2026-12-07).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The targets of a run of part of the experiment (empty for the whole), in the run's
    /// first line (before 2026-12-08, in each of its lines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// A file name for `name` that no other name maps to: plain characters kept (so the usual
/// `probe[k=50]` reads as itself), every other byte as `%XX`; a name too long for one file name
/// keeps a readable head and ends in its digest.
pub(super) fn file_name(name: &str) -> String {
    let mut s = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_=,.[]".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    // Leading dots would hide the file or name `.`/`..`.
    if s.starts_with('.') {
        s.replace_range(0..1, "%2E");
    }
    if s.len() > MAX_FILE_NAME {
        let digest = blake3::hash(name.as_bytes()).to_hex();
        let mut head = MAX_FILE_NAME - digest.len() - 1;
        while !s.is_char_boundary(head) {
            head -= 1;
        }
        s = format!("{}~{digest}", &s[..head]);
    }
    s
}

/// Most of the run log read, from its end: what `status` and the report read stays bounded in
/// time however long the cache lives (a line per instance per run: about 3 million lines).
const RUN_LOG_TAIL: u64 = 1 << 30;

/// Longest run-log line read; a longer one (a damaged log) is skipped without being held.
const RUN_LOG_LINE: usize = 1 << 20;

/// The lines of the run log at `path`, oldest first, from at most its last `RUN_LOG_TAIL`
/// bytes; a line that does not parse (one cut by a crash or a full disk, even inside a
/// character) or is longer than `RUN_LOG_LINE` is skipped, and a missing log has none.
pub fn read_run_log(path: &Path) -> impl Iterator<Item = RunLogLine> {
    let lines = std::fs::File::open(path).ok().and_then(|f| BoundedLines::from_tail(f, RUN_LOG_TAIL, RUN_LOG_LINE));
    lines.into_iter().flatten().filter_map(|line| serde_json::from_slice(&line).ok())
}

/// The newline-ended lines of a reader, each at most `max` bytes kept (longer ones skipped as
/// they stream past), so memory stays bounded whatever the file holds.
struct BoundedLines<R> {
    reader: std::io::BufReader<R>,
    max: usize,
}

impl BoundedLines<std::fs::File> {
    /// The lines of `file`'s last `tail` bytes, the first (cut) one dropped when it starts
    /// mid-file.
    fn from_tail(mut file: std::fs::File, tail: u64, max: usize) -> Option<Self> {
        use std::io::Seek;
        let len = file.metadata().ok()?.len();
        let start = len.saturating_sub(tail);
        // From the byte before the window, so that a window starting on a line's first byte
        // drops only the newline before it, not the whole line.
        file.seek(std::io::SeekFrom::Start(start.saturating_sub(1))).ok()?;
        let mut lines = BoundedLines { reader: std::io::BufReader::new(file), max };
        if start > 0 {
            lines.next_line(false);
        }
        Some(lines)
    }
}

impl<R: std::io::Read> BoundedLines<R> {
    /// The next line (without its newline), `None` at the end or on a read error; one over
    /// `max` bytes, or any when `keep` is false, comes back empty.
    fn next_line(&mut self, keep: bool) -> Option<Vec<u8>> {
        use std::io::BufRead;
        let mut line = Vec::new();
        let mut over = !keep;
        loop {
            let buf = self.reader.fill_buf().ok()?;
            if buf.is_empty() {
                // A last line without its newline is one cut by a crash: kept, the parser decides.
                return (!line.is_empty() || over).then(|| if over { Vec::new() } else { line });
            }
            let (chunk, ended) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1),
                None => (buf, buf.len()),
            };
            if !over && line.len() + chunk.len() <= self.max {
                line.extend_from_slice(chunk);
            } else if !over {
                over = true;
                line = Vec::new();
            }
            let newline = ended > chunk.len();
            self.reader.consume(ended);
            if newline {
                return Some(if over { Vec::new() } else { line });
            }
        }
    }
}

impl<R: std::io::Read> Iterator for BoundedLines<R> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.next_line(true)
    }
}

/// Whether the open file `f` is not empty and does not end with a newline.
fn ends_cut(f: &std::fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(len) = f.metadata().map(|m| m.len()) else { return false };
    let mut last = [0u8];
    len > 0 && f.read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n'
}

/// Longest file name the encoding produces, with room for `.json` under the usual 255 bytes.
const MAX_FILE_NAME: usize = 200;

impl Store {
    fn record_path(&self, experiment: &str, instance: &str) -> PathBuf {
        self.root().join("records").join(file_name(experiment)).join(format!("{}.json", file_name(instance)))
    }

    /// The recipe last completed under `instance` in `experiment`.
    pub fn name_record(&self, experiment: &str, instance: &str) -> Option<NameRecord> {
        let bytes = read_limited(&self.record_path(experiment, instance), 64 << 20).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remembers the recipe completed under `instance`.
    pub fn set_name_record(&self, experiment: &str, instance: &str, record: &NameRecord) -> std::io::Result<()> {
        let path = self.record_path(experiment, instance);
        if let Some(dir) = path.parent() {
            super::fsutil::ensure_real_dir(dir)?;
        }
        if self.name_record(experiment, instance).is_some_and(|r| r.key == record.key) {
            return Ok(());
        }
        write_atomic(&path, &serde_json::to_vec_pretty(record).expect("plain data"))
    }

    /// The run log's lines, oldest first.
    pub fn run_log(&self) -> impl Iterator<Item = RunLogLine> {
        read_run_log(&self.root().join("runs.jsonl"))
    }

    /// Appends one line to the run log (see `append_line`).
    pub fn log_run(&self, line: &RunLogLine) -> std::io::Result<()> {
        append_line(&self.root().join("runs.jsonl"), &serde_json::to_string(line).expect("plain data"))
    }
}

/// Appends `line` and a newline to the file at `path`. A single `write` of a short line under
/// O_APPEND keeps concurrent writers from interleaving; a link in place of the file is refused,
/// not followed. A file whose last line was cut (a full disk) gets the newline it lacks first,
/// so that the cut line, not this one, is the one readers skip.
pub(super) fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = open_append(path)?;
    let mut text = if ends_cut(&f) { "\n".to_string() } else { String::new() };
    text.push_str(line);
    text.push('\n');
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_of_different_names_differ() {
        assert_eq!(file_name("probe[k=50,target=mnist]"), "probe[k=50,target=mnist]");
        // These all mapped to `a_b` before: the last completed recipe of one was read for another.
        let names = ["a_b", "a<b", "a b", "a/b", "a%3Cb", "a%b"];
        let files: std::collections::BTreeSet<String> = names.iter().map(|n| file_name(n)).collect();
        assert_eq!(files.len(), names.len(), "{files:?}");
        assert_eq!(file_name(".."), "%2E.");
        let long = |c: &str| file_name(&format!("stage[x={}{c}]", "y".repeat(400)));
        assert!(long("1").len() <= MAX_FILE_NAME && long("1") != long("2"));
    }

    fn line(instance: &str) -> RunLogLine {
        RunLogLine {
            time: 1.0,
            experiment: "e".into(),
            instance: instance.into(),
            key: None,
            outcome: "ran".into(),
            seconds: 0.5,
            error: None,
            run: None,
            targets: Vec::new(),
        }
    }

    /// A line cut by a full disk, even inside a character, costs only itself: the next append
    /// starts on a line of its own, and every line after the cut is still read.
    #[test]
    fn a_cut_line_in_the_run_log_hides_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.log_run(&line("first")).unwrap();
        let log = dir.path().join("runs.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        // "é" is two bytes; the cut keeps only the first.
        f.write_all(&b"{\"time\":2,\"experiment\":\"\xc3"[..]).unwrap();
        store.log_run(&line("second")).unwrap();
        store.log_run(&line("third")).unwrap();
        let read: Vec<String> = store.run_log().map(|l| l.instance).collect();
        assert_eq!(read, ["first", "second", "third"]);
        let text = std::fs::read(&log).unwrap();
        assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 4, "one newline added after the cut line");
    }

    /// A damaged log's endless line (garbage with no newline, a file grown sparse) is skipped as
    /// it streams past, never held: lines around it are read, and past the tail only the end is.
    #[test]
    fn the_run_log_is_read_in_bounded_memory_and_time() {
        let json = |name: &str| serde_json::to_vec(&line(name)).unwrap();
        let mut bytes = [json("before"), b"\n".to_vec(), vec![b'x'; 5000], b"\n".to_vec(), json("after")].concat();
        bytes.extend_from_slice(b"\n");
        let read = |bytes: &[u8], max| -> Vec<Vec<u8>> {
            BoundedLines { reader: std::io::BufReader::with_capacity(64, bytes), max }.collect()
        };
        let lines = read(&bytes, 1000);
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[0].clone(), lines[1].is_empty(), lines[2].clone()), (json("before"), true, json("after")));
        // A long line that fits is whole, however the buffer cuts it.
        assert_eq!(read(&bytes, 5000)[1].len(), 5000);
        // The tail: the line it starts inside is dropped, the rest read.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runs.jsonl");
        std::fs::write(&log, &bytes).unwrap();
        let tail = (json("after").len() + 1 + 100) as u64;
        let file = std::fs::File::open(&log).unwrap();
        let names: Vec<String> = BoundedLines::from_tail(file, tail, RUN_LOG_LINE)
            .unwrap()
            .filter_map(|l| serde_json::from_slice::<RunLogLine>(&l).ok())
            .map(|l| l.instance)
            .collect();
        assert_eq!(names, ["after"]);
        // A window that starts on a line's first byte keeps that line.
        let file = std::fs::File::open(&log).unwrap();
        let exact = (json("after").len() + 1) as u64;
        let first: Vec<Vec<u8>> = BoundedLines::from_tail(file, exact, RUN_LOG_LINE).unwrap().collect();
        assert_eq!(first.iter().filter(|l| !l.is_empty()).cloned().collect::<Vec<_>>(), [json("after")]);
        let all: Vec<String> = read_run_log(&log).map(|l| l.instance).collect();
        assert_eq!(all, ["before", "after"]);
    }
}
