//! The command line: argument parsing, logging set-up and exit codes.
//!
//! Exit codes: 0 success; 1 some stage failed (everything else finished and is cached) or the
//! output could not be written; 2 the experiment file or the command line is invalid (nothing
//! ran).

/// `println!` through [`console::out`]: a failed write is kept, not a panic.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::console::out(&format!("{}\n", format_args!($($arg)*))) };
}
/// `print!` through [`console::out`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::console::out(&format!($($arg)*)) };
}
/// `eprintln!` through [`console::err`]: a failed write is dropped, not a panic.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::console::err(&format!("{}\n", format_args!($($arg)*))) };
}
/// `eprint!` through [`console::err`].
macro_rules! errout {
    ($($arg:tt)*) => { $crate::cli::console::err(&format!($($arg)*)) };
}

mod bar_terminal;
mod check_device;
mod cluster;
mod commands;
mod console;
mod data;
mod disk_full;
mod exit;
mod failure;
mod gc;
mod logging;
mod open;
mod ops_help;
mod run;
mod show;
mod show_text;
mod signals;
mod status;
mod targets;
mod terminal;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Override;
use crate::exec::device::DeviceChoice;
use crate::graph::render::DagFormat;

/// cfrun: reproducible ClusterFit experiments as TOML DAGs of cached stages.
#[derive(Debug, Parser)]
#[command(name = "cfrun", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// The cache directory.
    #[arg(long, global = true, env = "CFRUN_CACHE", default_value = "cache")]
    pub cache: PathBuf,
    /// Machine-readable output on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Override a field: stages.NAME.PARAM=VALUE (hashed exactly like the same edit in the file).
    #[arg(long = "set", global = true, value_name = "PATH=VALUE")]
    pub set: Vec<Override>,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl Global {
    /// The `--set` list as written (`PATH=VALUE` each): what a run records for `gc`.
    fn settings(&self) -> Vec<String> {
        self.set.iter().map(ToString::to_string).collect()
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an experiment (what is cached is reused), or part of it. `cfrun FILE [TARGET...]` is
    /// short for `cfrun run FILE [TARGET...]`.
    Run {
        /// The experiment file.
        file: PathBuf,
        /// Run only these and what they read: stage names, instance names like `kmeans[k=50]`, or
        /// `stage[axis=value]` for every instance of the stage with those values. Default: all.
        targets: Vec<String>,
        /// Instances run side by side at most. Default: the CPU cores this process may use for
        /// `--device cpu` (a lone training leaves cores idle between its parallel kernels), else 1.
        #[arg(long, short = 'j', value_parser = at_least_one)]
        jobs: Option<usize>,
        /// Where tensors live.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
        device: DeviceChoice,
        #[command(flatten)]
        executor: cluster::ExecutorArgs,
    },
    /// Compute one instance from the cache, as a cluster job does: KEY names the job a driver
    /// wrote into CACHE/jobs; or FILE INSTANCE, whose inputs must be cached.
    Exec {
        /// A recipe key, or an experiment file when INSTANCE follows.
        target: String,
        /// An instance of the experiment file.
        instance: Option<String>,
        /// Where tensors live.
        #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
        device: DeviceChoice,
        /// Started by a driver on this machine (`--executor processes`): the cache's locks need
        /// not hold across nodes, and the job ends when stdin, the driver's pipe, closes.
        #[arg(long, hide = true)]
        from_driver: bool,
    },
    /// What would run, and why (the field or input that changed). Cached results get a quick
    /// check (manifest, file list and sizes); `--verify` re-hashes every file.
    Status {
        /// The experiment file.
        file: PathBuf,
        /// Only these and what they read (as `run` takes them). Default: all.
        targets: Vec<String>,
        /// Re-hash every file of every cached result instead of the quick check.
        #[arg(long)]
        verify: bool,
    },
    /// The expanded DAG of instances.
    Dag {
        /// The experiment file.
        file: PathBuf,
        /// Only these and what they read (as `run` takes them). Default: all.
        targets: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
    },
    /// An instance's artifact: metrics, provenance, files.
    Show {
        /// The experiment file.
        file: PathBuf,
        /// A stage name (all its instances), an instance name like `kmeans[k=50]`, or some of a
        /// stage's axes like `probe[p=25]` (each instance with those values).
        stage: String,
    },
    /// Write one self-contained HTML page of an experiment (DAG and states, tables, figures,
    /// training curves, provenance, run history) from what is cached; nothing runs.
    Report {
        /// The experiment file.
        file: PathBuf,
        /// Folder the page is written to, as `<experiment name>.html`.
        #[arg(long, short = 'o', default_value = "reports")]
        out: PathBuf,
    },
    /// Remove cached objects that none of the given experiments uses.
    Gc {
        /// Experiments whose artifacts are kept (at least one: an empty list, say from an empty
        /// shell glob, would remove everything).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// List what would be removed, with sizes, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep only what the files compute as given here (their text and this command's
        /// `--set`), not also what they computed under the `--set` of earlier runs.
        #[arg(long)]
        as_given: bool,
    },
    /// Data sets: list them, or fetch and verify one.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// The stage kinds, their inputs, outputs and parameters; with OP, each parameter's type,
    /// range, default and meaning.
    Ops {
        /// One stage kind to describe in full (e.g. `train`).
        op: Option<String>,
    },
    /// Compare a device against the CPU: every network preset (forward and backward), k-means
    /// and the linear probe, within float-rounding tolerances. Exit 1 if any differs.
    CheckDevice {
        /// The device to check (on `cpu`, candle's generic ops are checked against cfrun's kernels).
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        /// Network presets to check.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "resnet_tiny,resnet_small,resnet_cpu,resnet_gpu,r2plus1d_tiny,r2plus1d_small,r2plus1d_large,r2plus1d_gpu"
        )]
        presets: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DataAction {
    /// Every data set cfrun knows and whether it is present.
    List,
    /// Fetch and verify a data set into the cache.
    Fetch {
        /// e.g. fashion-mnist.
        name: String,
    },
}

const SUBCOMMANDS: &[&str] =
    &["run", "exec", "status", "dag", "show", "report", "gc", "data", "ops", "check-device", "help"];

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `--json=true` is refused by clap (the flag takes no value), but its caller reads stdout too.
    let json = args.iter().any(|a| a == "--json" || a.to_string_lossy().starts_with("--json="));
    // `cfrun FILE` means `cfrun run FILE`: insert `run` before the first positional argument
    // when it is not a subcommand.
    // Values of options (`--set X`, `--cache DIR`) are not positional: skip past them. `run` goes
    // first, so that options written before the file are read as `run`'s.
    let first_positional = (1..args.len())
        .find(|&i| !args[i].to_string_lossy().starts_with('-') && previous_is_not_option_value(&args, i));
    // A subcommand written after global options (`cfrun --cache DIR run FILE`) moves first too:
    // the top-level parser refuses options beside a subcommand.
    if let Some(i) = first_positional {
        let word = args[i].to_string_lossy().into_owned();
        if !SUBCOMMANDS.contains(&word.as_str()) {
            if let Some(message) = mistyped_command(&word) {
                if json {
                    outln!("{}", serde_json::json!({"ok": false, "errors": [{"location": null, "message": message}]}));
                }
                errln!("error: {message}");
                return ExitCode::from(exit::INVALID);
            }
            args.insert(1, "run".into());
        } else if i > 1 {
            let command = args.remove(i);
            args.insert(1, command);
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::INVALID } else { 0 };
            if json && e.use_stderr() {
                // A script reading stdout gets its one object here too.
                let message = e.render().to_string();
                let message = message.trim().trim_start_matches("error: ");
                outln!("{}", serde_json::json!({"ok": false, "errors": [{"location": null, "message": message}]}));
            }
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let switches = crate::nn::switches_from_env()
        .and_then(|()| crate::exec::device::cuda_switches_from_env())
        .and_then(|()| crate::exec::job_pool::threads_from_env());
    if let Err(e) = switches {
        if json {
            outln!("{}", serde_json::json!({"ok": false, "errors": [{"location": null, "message": e.to_string()}]}));
        }
        errln!("error: {e}");
        return ExitCode::from(exit::INVALID);
    }
    let bars = logging::init(cli.global.quiet);
    let code = commands::dispatch(cli.command, &cli.global, bars);
    match console::lost() {
        // The results themselves are cached; what failed is telling the caller about them. A
        // failure's own code stands (invalid input stays 2, a hang-up 129).
        Some(why) if code == ExitCode::SUCCESS => {
            errln!("error: cfrun's output could not be written to stdout ({why}); it is incomplete");
            ExitCode::from(exit::FAILED)
        }
        _ => code,
    }
}

/// A first word that is no file and reads like a misspelt subcommand (`cfrun gcc FILE`): without
/// this, `cfrun FILE`'s shorthand takes it for an experiment file and clap then complains about
/// the next argument, naming neither.
fn mistyped_command(word: &str) -> Option<String> {
    if word.contains(['.', '/']) || Path::new(word).exists() {
        return None;
    }
    let near = crate::config::suggest::did_you_mean(word, SUBCOMMANDS)?;
    Some(format!("unknown command `{word}` (did you mean `{near}`?); `cfrun FILE` runs the experiment file FILE"))
}

/// `--cache DIR` takes a value; do not mistake DIR for the experiment file.
fn previous_is_not_option_value(args: &[std::ffi::OsString], i: usize) -> bool {
    let prev = args[i - 1].to_string_lossy();
    !matches!(
        prev.as_ref(),
        "--cache"
            | "--set"
            | "--jobs"
            | "-j"
            | "--device"
            | "--format"
            | "--presets"
            | "--out"
            | "-o"
            | "--executor"
            | "--max-jobs"
            | "--partition"
            | "--account"
            | "--qos"
            | "--sbatch-arg"
            | "--retries"
            | "--in-driver"
            | "--poll-max"
            | "--queue-patience"
    )
}

/// A count of at least 1 (`--jobs 0` would run nothing, so it is refused rather than read as 1).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number (at least 1)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "every network preset", as the help says: a preset added to `nn::PRESETS` must join it.
    #[test]
    fn check_device_checks_every_preset_by_default() {
        let cli = Cli::try_parse_from(["cfrun", "check-device"]).expect("parses");
        let Command::CheckDevice { presets, .. } = cli.command else { panic!("check-device") };
        assert_eq!(presets, crate::nn::PRESETS);
    }
}
