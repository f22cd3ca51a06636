//! Progress of long steps: a bar with rate and ETA on a terminal, periodic tracing lines
//! otherwise: the [`StageProgress`] an op reports to.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::ops::StageProgress;

/// Progress of one stage instance.
pub struct Progress {
    instance: String,
    bars: Option<MultiProgress>,
    state: Mutex<State>,
}

struct State {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    last_log: Instant,
}

impl Progress {
    /// Progress for `instance`; `bars` is set when stderr is a terminal.
    pub fn new(instance: &str, bars: Option<MultiProgress>) -> Progress {
        let now = Instant::now();
        Progress {
            instance: instance.to_string(),
            bars,
            state: Mutex::new(State {
                bar: None,
                label: String::new(),
                total: 0,
                done: 0,
                started: now,
                last_log: now,
            }),
        }
    }
}

impl StageProgress for Progress {
    /// Starts a step of `total` units (`label`: "epoch 3/10", "iterations").
    fn begin(&self, label: &str, total: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
        }
        s.label = label.to_string();
        s.total = total;
        s.done = 0;
        s.started = Instant::now();
        s.last_log = Instant::now();
        if let Some(multi) = &self.bars {
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>28} {msg:<16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(self.instance.clone());
            bar.set_message(label.to_string());
            s.bar = Some(bar);
        }
    }

    /// Advances the current step.
    fn inc(&self, n: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.done += n;
        if let Some(bar) = &s.bar {
            bar.inc(n);
        } else if !self.instance.is_empty() && s.last_log.elapsed() >= Duration::from_secs(10) {
            s.last_log = Instant::now();
            let secs = s.started.elapsed().as_secs_f64().max(1e-9);
            let rate = s.done as f64 / secs;
            let eta = if rate > 0.0 { (s.total.saturating_sub(s.done)) as f64 / rate } else { 0.0 };
            let eta = crate::human::duration(eta);
            tracing::info!("{} {}: {}/{} ({rate:.1}/s, eta {eta})", self.instance, s.label, s.done, s.total);
        }
    }

    /// A one-line note about the current step (loss, inertia).
    /// Without a terminal it is logged at most every 10 s, like the counts.
    fn message(&self, text: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = &s.bar {
            bar.set_message(format!("{} {text}", s.label));
        } else if !self.instance.is_empty() && s.last_log.elapsed() >= Duration::from_secs(10) {
            s.last_log = Instant::now();
            tracing::info!("{} {}: {text}", self.instance, s.label);
        }
    }

    /// Clears the bar.
    fn finish(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
