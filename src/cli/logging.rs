//! Logs go to stderr through tracing; when stderr is a terminal that can draw, progress bars are
//! drawn and log lines are printed above them.

use std::io::{IsTerminal, Write};

use indicatif::MultiProgress;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::bar_terminal::BarTerminal;

/// Installs the subscriber; returns the bar container when stderr is a terminal that can draw
/// them and `quiet` is off (with `-q` stderr holds warnings and errors only).
pub fn init(quiet: bool) -> Option<MultiProgress> {
    let terminal = std::io::stderr().is_terminal() && !dumb_terminal();
    // Without bars each long step is logged every 10 s instead (`exec::progress`).
    let bars = (terminal && !quiet).then(|| MultiProgress::with_draw_target(BarTerminal::stderr_target()));
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let default = if quiet { "warn" } else { "info" };
    let (filter, refused) = match std::env::var("CFRUN_LOG") {
        // An empty filter would log errors only, hiding every warning: read it as unset.
        Ok(text) if text.trim().is_empty() => (EnvFilter::new(default), None),
        Ok(text) => match EnvFilter::try_new(&text) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(default), Some((text, e.to_string()))),
        },
        Err(std::env::VarError::NotUnicode(text)) => {
            let text = text.to_string_lossy().into_owned();
            (EnvFilter::new(default), Some((text, "it is not UTF-8".to_string())))
        }
        Err(std::env::VarError::NotPresent) => (EnvFilter::new(default), None),
    };
    let printed = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(colour)
        .with_writer(BarWriter(bars.clone()))
        // A log line that cannot be written (stderr closed under a running study) is dropped:
        // reporting it would be one more write to stderr, which panics where this one failed.
        .log_internal_errors(false)
        .with_filter(filter);
    // Warnings are kept with the results whatever is printed.
    let _ = tracing_subscriber::registry().with(printed).with(crate::exec::warnings::layer()).try_init();
    if let Some((text, e)) = refused {
        let text = crate::config::error::printable(&text);
        tracing::warn!("CFRUN_LOG={text:?} is not a log filter ({e}); logging at `{default}` (e.g. CFRUN_LOG=debug)");
    }
    bars
}

/// A terminal that moves no cursor: `TERM` unset or `dumb` (where indicatif draws nothing, so
/// bars would hide every step's progress).
fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_none_or(|t| t == "dumb")
}

/// Writes log lines to stderr, suspending the bars while it does.
#[derive(Clone)]
struct BarWriter(Option<MultiProgress>);

impl Write for BarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(bars) => bars.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for BarWriter {
    type Writer = BarWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
