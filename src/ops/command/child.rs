//! Running the child process: a cleared environment, its own process group (so a timeout kills
//! whatever it started, too), stdout and stderr drained on threads, only the last lines of stderr
//! kept (bounded memory) for the error message.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lines of stderr kept for the error message.
const TAIL_LINES: usize = 20;
/// Longest stderr line kept, in bytes.
const LINE_BYTES: usize = 400;

/// Variables passed through from cfrun's environment; everything else is cleared so the child
/// depends on as little as possible that the recipe key does not see.
const PASSED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "RAYON_NUM_THREADS",
    "OMP_NUM_THREADS",
];

/// One invocation.
pub struct Spec<'a> {
    /// Program and arguments, placeholders expanded.
    pub argv: &'a [String],
    /// The scratch folder it runs in.
    pub cwd: &'a Path,
    /// Killed after this long.
    pub timeout: Duration,
    /// Extra variables (`CFRUN_SEED`, ...).
    pub env: Vec<(String, String)>,
}

fn command(argv: &[String], cwd: &Path) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(cwd).env_clear().stdin(Stdio::null()).process_group(0);
    for name in PASSED {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.env("PYTHONDONTWRITEBYTECODE", "1").env("PYTHONHASHSEED", "0");
    // Its own process group keeps the terminal's Ctrl-C from reaching it directly, so it must
    // die with the thread that started it when cfrun itself is interrupted or killed.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

fn spawn_error(argv: &[String], e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        let path = std::env::var("PATH").unwrap_or_default();
        if argv[0].contains('/') {
            format!("was not found (`{}` is not in the stage's scratch folder; list it in `code`)", argv[0])
        } else {
            format!("was not found on PATH ({path})")
        }
    } else {
        format!("could not be started: {e}")
    }
}

/// Keeps the last [`TAIL_LINES`] lines of a stream, each cut to [`LINE_BYTES`].
fn tail(stream: impl Read) -> VecDeque<String> {
    let mut lines = VecDeque::new();
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Read at most a bounded chunk per line so a newline-free flood cannot grow memory.
        match (&mut reader).take(64 * 1024).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let mut line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if line.len() > LINE_BYTES {
                    let mut cut = LINE_BYTES;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    line.truncate(cut);
                    line.push_str(" ...");
                }
                tracing::debug!(target: "cfrun::command", "{line}");
                if lines.len() == TAIL_LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        }
    }
    lines
}

fn with_tail(msg: String, lines: &VecDeque<String>) -> String {
    if lines.is_empty() {
        return format!("{msg} (stderr was empty)");
    }
    let body: Vec<&str> = lines.iter().map(String::as_str).collect();
    format!("{msg}; last lines of stderr:\n    {}", body.join("\n    "))
}

/// Runs the command to completion. `Err` says how it failed, with the tail of its stderr.
pub fn run(spec: &Spec<'_>) -> Result<(), String> {
    let mut cmd = command(spec.argv, spec.cwd);
    cmd.env("TMPDIR", spec.cwd.join("tmp")).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in &spec.env {
        cmd.env(k, v);
    }
    let _ = std::fs::create_dir_all(spec.cwd.join("tmp"));
    let mut child = cmd.spawn().map_err(|e| spawn_error(spec.argv, e))?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || tail(out));
    let err_thread = std::thread::spawn(move || tail(err));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= spec.timeout => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
    };
    // Whatever the command left running in its group goes too (it would hold the pipes open).
    // SAFETY: killpg only sends a signal; the group id is the child's pid (process_group(0)).
    unsafe {
        libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = child.wait();
    let _ = out_thread.join();
    let lines = err_thread.join().unwrap_or_default();
    match status {
        None => {
            let msg = format!("timed out after {} s (its `timeout`) and was killed", spec.timeout.as_secs_f64());
            Err(with_tail(msg, &lines))
        }
        Some(s) if s.success() => Ok(()),
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            let how = match (s.code(), s.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                _ => "failed".to_string(),
            };
            Err(with_tail(how, &lines))
        }
    }
}

/// Runs an environment probe in the current directory and returns its stdout (at most 64 KiB).
pub fn probe(argv: &[String]) -> Result<String, String> {
    let tmp = std::env::current_dir().map_err(|e| e.to_string())?;
    let output = command(argv, &tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("`{}` {}", argv[0], spawn_error(argv, e)))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no stderr)").trim();
        return Err(format!("`{}` failed ({}): {last}", argv.join(" "), output.status));
    }
    let mut text = String::from_utf8_lossy(&output.stdout).trim_end().to_string();
    if text.len() > 64 * 1024 {
        return Err(format!("`{}` printed more than 64 KiB; print versions only", argv.join(" ")));
    }
    text.push('\n');
    Ok(text)
}
