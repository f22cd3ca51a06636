//! The processes executor: each job runs as `cfrun exec KEY` in a child process, `jobs` at a
//! time, computing on the driver's device; the tiny ops kept in the driver
//! ([`crate::ops::JobShape::IN_DRIVER`]) run on its threads.
//!
//! Why it exists beside the threads of [`super::local`]: a child has its own memory, so a stage
//! that leaks or fragments it gives it all back when it ends and one that is killed for it takes
//! only itself down; and on a GPU each child has its own CUDA context, so the host-side work of
//! issuing kernels (driver calls, allocations, event bookkeeping) is not serialised by one
//! context's locks. On the first H200 run, 2, 4 and 8 jobs as threads trained no faster in sum
//! than one (`docs/gpu-2026-12-04/`); jobs as processes are the A/B that tells whether this
//! process was the bottleneck.
//!
//! A child finds its job in the cache (the spec the driver writes, as for Slurm), so it computes
//! exactly what a thread would, and publishes the same bytes. The cache is the truth: a child
//! that exits 0 counts only once its key is found published and verified. Its log lines come
//! back through the driver (above the progress bars on a terminal); its last lines are the
//! error of a child that dies without saying why.
//!
//! A child leads a process group of its own, so a terminal's Ctrl-C reaches only the driver,
//! which then kills each child's group ([`Executor::cancel`]: the child and what it started, such
//! as a data set's downloader; a command stage's watcher stops its command) and reports the jobs
//! interrupted, not failed. Its stdin is a pipe the driver never writes: when the driver dies,
//! however, the pipe closes and the child kills its own group (`cfrun exec --from-driver`).
//! What a child cannot share: the memo of `extract` siblings' forward passes lives in one process,
//! so in a child each tap of a layer-wise study runs its own pass (the same bytes, more time).

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::MultiProgress;

use super::backlog::Backlog;
use super::compute::cached;
use super::executor::{Executor, Finished, RunOptions, StartError};
use super::interrupt::interrupted;
use super::job::{write_spec, Job};
use super::job_pool::widths;
use super::local::LocalExecutor;
use super::outcome::Outcome;
use crate::cache::verify::Check;
use crate::cache::{KeyRecord, RecipeKey, Store};
use crate::proc_stat;

/// How often a wait looks at the children (and for Ctrl-C): a stage runs for seconds at least.
const POLL: Duration = Duration::from_millis(20);
/// A child's last stderr lines kept for the error of one that dies without a word.
const TAIL_LINES: usize = 20;
/// The most of a child's stdout read: one JSON line is expected, anything near this is damage.
const MAX_STDOUT: u64 = 4 << 20;
/// The longest piece of a child's stderr passed on as one line.
const MAX_LINE: usize = 64 << 10;

/// How a child is started: this binary, `exec --cache CACHE --device DEVICE --json --from-driver KEY`.
#[derive(Debug, Clone)]
struct ChildCommand {
    /// `/proc/self/exe` where it is this binary, so that a run never mixes two builds even when
    /// the file is rebuilt meanwhile; else the binary's path (`/proc` missing, or a loader that
    /// started this one).
    exe: PathBuf,
    cache: PathBuf,
    device: String,
    quiet: bool,
}

impl ChildCommand {
    fn command(&self, key: &RecipeKey, threads: usize) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(&self.exe);
        c.arg0("cfrun");
        c.arg("exec").arg("--cache").arg(&self.cache).arg("--device").arg(&self.device);
        c.args(["--json", "--from-driver"]);
        if self.quiet {
            c.arg("--quiet");
        }
        c.arg(key.to_string());
        // The child's pools take this process's share of the cores, as a thread's job would.
        c.env("RAYON_NUM_THREADS", threads.to_string());
        c.process_group(0);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }
}

/// A job's child process and what reads its output.
struct Running {
    job: Job,
    /// Its stdin stays open (in `child`) until it is reaped: closed early, the child would end.
    child: Child,
    threads: usize,
    started: Instant,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<VecDeque<String>>,
    /// Whether it was last seen stopped (and said so): a stopped child is silent otherwise.
    seen_stopped: bool,
}

/// Runs jobs as child processes on this machine.
pub struct ProcessExecutor {
    store: Store,
    command: ChildCommand,
    jobs: usize,
    /// The threads shared out between CPU children; 0 on a GPU.
    threads: usize,
    /// On a GPU, each child's threads for its host-side work (an even share of the cores).
    gpu_child_threads: usize,
    held: usize,
    local: LocalExecutor,
    bars: Option<MultiProgress>,
    backlog: Backlog,
    running: Vec<Running>,
    /// Jobs that ended without a child: found cached, or their child could not be started.
    ended: Vec<Finished>,
}

impl ProcessExecutor {
    /// Children of this binary computing on the run's device, at most `opts.jobs` at once.
    pub fn new(opts: &RunOptions) -> Result<ProcessExecutor, StartError> {
        let store = opts.env.store.clone();
        let exe = match crate::ops::command::watcher::binary() {
            Some(own) => own.to_path_buf(),
            None => std::env::current_exe().map_err(StartError::OwnBinary)?,
        };
        let cache = std::fs::canonicalize(store.root()).map_err(StartError::folder(store.root()))?;
        let device = if opts.env.device.is_cpu() { "cpu" } else { "cuda" }.to_string();
        let cores = rayon::current_num_threads().max(1);
        let jobs = opts.jobs.max(1);
        Ok(ProcessExecutor {
            store,
            command: ChildCommand { exe, cache, device, quiet: opts.quiet },
            jobs,
            threads: if opts.env.device.is_cpu() { cores } else { 0 },
            gpu_child_threads: (cores / jobs).max(1),
            held: 0,
            local: LocalExecutor::new(opts.env.clone(), opts.jobs),
            bars: opts.env.bars.clone(),
            backlog: Backlog::default(),
            running: Vec::new(),
            ended: Vec::new(),
        })
    }

    /// Starts children for the backlog's first jobs while slots are free; a job whose recipe a
    /// running one has waits (it will find its result cached).
    fn fill(&mut self) {
        let slots = self.jobs.saturating_sub(self.running.len());
        let starting = self.backlog.take_startable(slots, &self.running_keys());
        let widths = widths(self.threads, self.jobs, self.held, starting.len());
        let mut starting = starting.into_iter();
        for threads in widths {
            let Some(job) = starting.next() else { break };
            self.start(job, threads);
        }
        self.backlog.put_back(starting);
    }

    fn running_keys(&self) -> HashSet<RecipeKey> {
        self.running.iter().map(|r| r.job.key).collect()
    }

    fn start(&mut self, job: Job, threads: usize) {
        let started = Instant::now();
        // A twin that ran meanwhile published it: no child needed.
        // An unreadable record goes to the child, which fails naming it.
        if let Ok(Some(record)) = cached(&self.store, &job.instance.name, &job.key) {
            let seconds = started.elapsed().as_secs_f64();
            return self.ended.push(Finished { index: job.index, result: Ok((record, Outcome::Cached)), seconds });
        }
        if let Err(e) = write_spec(&self.store, &job) {
            let why = format!("could not write its job spec into the cache: {e}");
            return self.fail_now(job, why, started);
        }
        let child_threads = if self.threads == 0 { self.gpu_child_threads } else { threads };
        let mut child = match self.command.command(&job.key, child_threads).spawn() {
            Ok(c) => c,
            Err(e) => return self.fail_now(job, format!("could not start `cfrun exec`: {e}"), started),
        };
        let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
            unreachable!("both pipes were asked for")
        };
        tracing::debug!("{} runs in process {} on {child_threads} threads", job.instance.name, child.id());
        self.held += threads;
        let stdout = std::thread::spawn(move || read_stdout(out));
        let bars = self.bars.clone();
        let stderr = std::thread::spawn(move || forward_stderr(err, bars));
        self.running.push(Running { job, child, threads, started, stdout, stderr, seen_stopped: false });
    }

    /// A job that never got a child: reported on the next wait.
    fn fail_now(&mut self, job: Job, why: String, started: Instant) {
        self.ended.push(Finished { index: job.index, result: Err(why), seconds: started.elapsed().as_secs_f64() });
    }

    /// The children that have exited, as finished jobs.
    fn reap(&mut self) -> Vec<Finished> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            match self.running[i].child.try_wait() {
                Ok(None) => {
                    say_if_stopped(&mut self.running[i]);
                    i += 1;
                }
                Ok(Some(status)) => {
                    let r = self.running.swap_remove(i);
                    if interrupted() && stopped_by_a_signal_to_all(status) {
                        // Signalled with the driver (`pkill cfrun`, a job's whole cgroup): it
                        // was interrupted, not failed, and is reported so with the rest.
                        self.abandon(r);
                    } else {
                        out.push(self.finish(r, Ok(status)));
                    }
                }
                Err(e) => {
                    let mut r = self.running.swap_remove(i);
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    out.push(self.finish(r, Err(e.to_string())));
                }
            }
        }
        out
    }

    /// Forgets an ended child without a report: the scheduler calls it interrupted.
    fn abandon(&mut self, r: Running) {
        self.held -= r.threads;
        let _ = (r.stdout.join(), r.stderr.join());
    }

    /// The report of an exited child: its published record, or why there is none.
    fn finish(&mut self, r: Running, status: Result<ExitStatus, String>) -> Finished {
        self.held -= r.threads;
        let said = r.stdout.join().unwrap_or_default();
        let tail = r.stderr.join().unwrap_or_default();
        let seconds = r.started.elapsed().as_secs_f64();
        let report = said.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        // A child that did not exit 0 may still have published (killed in between): looked up once.
        let exited_0 = status.as_ref().is_ok_and(|s| s.success());
        let published_anyway = if exited_0 { None } else { self.published(&r.job.key) };
        let result = match status {
            Ok(s) if s.success() => {
                let outcome = match report.as_ref().and_then(|v| v["outcome"].as_str()) {
                    Some("cached") => Outcome::Cached,
                    _ => Outcome::Ran,
                };
                match self.published(&r.job.key) {
                    Some(record) => Ok((record, outcome)),
                    None => Err(format!(
                        "`cfrun exec` exited 0 but key {} is not published (or its files are not all there){}",
                        r.job.key.short(),
                        last_lines(&tail)
                    )),
                }
            }
            // Killed (by the OOM killer, say) after its result was published: the cache is the
            // truth, and what depends on it goes on.
            ended if published_anyway.is_some() => {
                let how = match &ended {
                    Ok(s) => crate::exit_status::describe(*s),
                    Err(e) => format!("was lost track of ({e})"),
                };
                tracing::warn!("{}: its `cfrun exec` {how} after publishing; the result is used", r.job.instance.name);
                Ok((published_anyway.expect("the guard"), Outcome::Ran))
            }
            // The stage's own error, or what `exec` refused before it ran anything.
            Ok(s) => match report.as_ref().and_then(|v| v["error"].as_str().or(v["errors"][0]["message"].as_str())) {
                Some(error) => Err(error.to_string()),
                None => Err(format!("`cfrun exec` {}{}", crate::exit_status::describe(s), last_lines(&tail))),
            },
            Err(e) => Err(format!("lost track of its `cfrun exec` process: {e}{}", last_lines(&tail))),
        };
        Finished { index: r.job.index, result, seconds }
    }

    /// The record a child published: checked quickly (files present, sizes), as a thread's own
    /// publish is not re-read; every reader re-hashes its inputs before it computes.
    fn published(&self, key: &RecipeKey) -> Option<KeyRecord> {
        self.store.lookup(key).filter(|r| self.store.check(r, Check::Quick).is_ok())
    }
}

/// Says once when a child is stopped (a SIGSTOP sent to it alone: a terminal's Ctrl-Z reaches
/// only the driver's group), and again if it stops anew after going on: the run waits on it
/// with nothing else to show.
fn say_if_stopped(r: &mut Running) {
    let pid = r.child.id() as i32;
    let stopped = proc_stat::is_stopped(pid);
    if stopped && !r.seen_stopped {
        tracing::warn!(
            "{}: its `cfrun exec` process {pid} is stopped; the run waits for it (`kill -CONT {pid}` lets it go on)",
            r.job.instance.name
        );
    }
    r.seen_stopped = stopped;
}

/// Whether a child died of a signal that stops a whole session (Ctrl-C, SIGTERM, hang-up).
fn stopped_by_a_signal_to_all(s: ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(s.signal(), Some(libc::SIGINT | libc::SIGTERM | libc::SIGHUP))
}

fn last_lines(tail: &VecDeque<String>) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its last lines:\n{}", tail.iter().cloned().collect::<Vec<_>>().join("\n"))
    }
}

/// The child's stdout, up to a bound (the rest is drained so that the child never blocks).
fn read_stdout(out: ChildStdout) -> String {
    let mut text = String::new();
    let mut bounded = out.take(MAX_STDOUT);
    let _ = bounded.read_to_string(&mut text);
    let _ = std::io::copy(&mut bounded.into_inner(), &mut std::io::sink());
    text
}

/// Passes the child's log lines on to this process's stderr (above the bars when drawn) and
/// keeps its last few.
fn forward_stderr(err: ChildStderr, bars: Option<MultiProgress>) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    log_lines(err, MAX_LINE, |line| {
        let write = || {
            let mut e = std::io::stderr().lock();
            let _ = writeln!(e, "{line}");
        };
        match &bars {
            Some(b) => b.suspend(write),
            None => write(),
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    });
    tail
}

/// Hands `each` the lines read from `from`, without their ends. A line longer than `most` bytes
/// (and the 3 a character may need) comes in pieces of about `most` bytes, so memory stays
/// bounded whatever is printed; a piece never ends inside a UTF-8 character (its last bytes go to
/// the next piece), so a long line of text is never garbled where it was cut.
fn log_lines(from: impl Read, most: usize, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(from);
    // What the last piece left over: the start of a character it would have cut.
    let mut buf = Vec::new();
    loop {
        let room = (most + 3).saturating_sub(buf.len()) as u64;
        let read = (&mut reader).take(room).read_until(b'\n', &mut buf);
        if buf.is_empty() {
            break;
        }
        if let Some(line) = buf.strip_suffix(b"\n") {
            each(String::from_utf8_lossy(line).into_owned());
            buf.clear();
            continue;
        }
        // No line end: either the piece is as long as allowed, or the child's output ended.
        let full = matches!(read, Ok(n) if n as u64 == room);
        let cut = if full { whole_characters(&buf[..most.min(buf.len())]).max(1) } else { buf.len() };
        each(String::from_utf8_lossy(&buf[..cut]).into_owned());
        buf.drain(..cut);
        if !full && buf.is_empty() {
            break;
        }
    }
}

/// The length of the longest start of `bytes` that does not end inside a UTF-8 character (all
/// of it when its last character is whole, or when its end is no character's start at all).
fn whole_characters(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(4) {
        let b = bytes[n - back];
        if b & 0xC0 != 0x80 {
            // A character starts here: how many bytes it takes.
            let takes = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                _ => 1,
            };
            return if takes > back { n - back } else { n };
        }
    }
    n
}

impl Executor for ProcessExecutor {
    /// A job whose key is published (and verifies) is reported cached without a child.
    fn submit(&mut self, job: Job) {
        if job.resources.in_driver {
            self.local.submit(job);
        } else if let Ok(Some(record)) = cached(&self.store, &job.instance.name, &job.key) {
            self.ended.push(Finished { index: job.index, result: Ok((record, Outcome::Cached)), seconds: 0.0 });
        } else {
            self.backlog.push_back(job);
        }
    }

    /// Like the local executor's: a job waiting for its twin takes no room.
    fn has_room(&self) -> bool {
        self.running.len() + self.backlog.needing_slots(&self.running_keys()) < self.jobs
    }

    fn wait(&mut self) -> Vec<Finished> {
        loop {
            if interrupted() {
                return Vec::new();
            }
            self.fill();
            let mut out = std::mem::take(&mut self.ended);
            out.extend(self.reap());
            if !out.is_empty() {
                return out;
            }
            if self.running.is_empty() && self.backlog.is_empty() && self.local.in_flight() == 0 {
                return Vec::new();
            }
            let local = if self.local.in_flight() > 0 { self.local.wait_timeout(POLL) } else { Vec::new() };
            if !local.is_empty() {
                return local;
            }
            if self.local.in_flight() == 0 {
                std::thread::sleep(POLL);
            }
        }
    }

    /// Stops the children still running (a stage killed mid-way publishes nothing; a training
    /// keeps its last sealed checkpoint) and reports those that had ended, and those that had
    /// published just before they were stopped.
    fn cancel(&mut self) -> Vec<Finished> {
        self.backlog.clear();
        let mut out = std::mem::take(&mut self.ended);
        out.extend(self.reap());
        out.extend(self.local.cancel());
        if !self.running.is_empty() {
            // Logged, not printed: above the bars on a terminal, and no panic where stderr is
            // closed (a log line that cannot be written is dropped).
            tracing::warn!("interrupted: stopping {} running instance process(es)", self.running.len());
        }
        let running = std::mem::take(&mut self.running);
        // Each child's whole group: the child and what it started without a watcher of its own
        // (a data set's downloader). Killed all first, then waited for, so the last to stop does
        // not keep computing while the first ones tear down.
        for r in &running {
            // SAFETY: a plain signal to a group this process made; the child, its leader, is not
            // reaped yet, so the group id cannot have been reused.
            unsafe { libc::killpg(r.child.id() as libc::pid_t, libc::SIGKILL) };
        }
        for mut r in running {
            let _ = r.child.wait();
            // Their last lines before the summary, not after it.
            let _ = (r.stdout.join(), r.stderr.join());
            if let Some(record) = self.published(&r.job.key) {
                let seconds = r.started.elapsed().as_secs_f64();
                out.push(Finished { index: r.job.index, result: Ok((record, Outcome::Ran)), seconds });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], most: usize) -> Vec<String> {
        let mut got = Vec::new();
        log_lines(text, most, |l| got.push(l));
        got
    }

    #[test]
    fn long_lines_come_in_pieces_that_never_cut_a_character() {
        assert_eq!(lines(b"one\ntwo\n", 64), ["one", "two"]);
        assert_eq!(lines(b"no end", 64), ["no end"]);
        assert_eq!(lines(b"", 64), Vec::<String>::new());
        // 'é' is 2 bytes, '€' 3, '𝄞' 4: pieces of at most 4 bytes, each whole.
        let text = "aé€𝄞b€\nok\n";
        let got = lines(text.as_bytes(), 4);
        assert!(got.iter().all(|l| !l.contains('\u{FFFD}')), "{got:?}");
        assert_eq!(got.concat(), "aé€𝄞b€ok");
        assert!(got.iter().all(|l| l.len() <= 4 + 3), "{got:?}");
        assert_eq!(got.last().unwrap(), "ok");
        // Bytes that are no UTF-8 at all still pass, replaced, and nothing loops.
        assert_eq!(lines(&[0xFF, 0xFE, 0xFD, 0xFC, 0xFB, b'\n'], 2).concat(), "\u{FFFD}".repeat(5));
        assert_eq!(lines(&[b'a', 0xE2, 0x82], 8), ["a\u{FFFD}"]);
        // Pieces shorter than a character still move on (a byte at a time), and end.
        let tiny = lines("€€\n".as_bytes(), 1);
        assert_eq!(tiny, ["\u{FFFD}", "\u{FFFD}", "\u{FFFD}", "€"]);
    }

    #[test]
    fn a_cut_goes_before_the_character_it_would_split() {
        assert_eq!(whole_characters("ab".as_bytes()), 2);
        assert_eq!(whole_characters(&"a€".as_bytes()[..3]), 1);
        assert_eq!(whole_characters("a€".as_bytes()), 4);
        assert_eq!(whole_characters(&"𝄞".as_bytes()[..3]), 0);
        assert_eq!(whole_characters(&[0x80, 0x80, 0x80, 0x80, 0x80]), 5);
    }
}
