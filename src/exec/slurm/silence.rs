//! Waiting out a queue that does not answer. While `squeue` fails the driver cannot tell a job
//! that died from one still running, so it keeps every job and asks again; after `patience` of
//! nothing but failures it gives up instead of waiting forever on a job that may be gone.

use std::time::{Duration, Instant};

/// How long the queue may fail to answer before the driver gives up, by default.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(1800);

/// The run of failed looks at the queue under way, if any.
#[derive(Debug)]
pub struct Silence {
    patience: Duration,
    /// When the looks began to fail, and the last failure's message.
    since: Option<(Instant, String)>,
}

impl Silence {
    /// No failure yet; gives up after `patience` of them.
    pub fn new(patience: Duration) -> Silence {
        Silence { patience, since: None }
    }

    /// The queue answered: the count starts again.
    pub fn answered(&mut self) {
        self.since = None;
    }

    /// A look begun at `now` failed with `error`.
    pub fn failed(&mut self, now: Instant, error: &str) {
        self.since.get_or_insert_with(|| (now, String::new())).1 = error.to_string();
    }

    /// Why the driver gives up at `now`: the queue has failed every look for `patience`.
    pub fn exhausted(&self, now: Instant) -> Option<String> {
        let (since, error) = self.since.as_ref()?;
        let silent = now.saturating_duration_since(*since);
        (silent >= self.patience).then(|| {
            format!(
                "the Slurm queue has not answered for {} s ({error}; queue_patience {} s)",
                silent.as_secs(),
                self.patience.as_secs()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_only_after_patience_of_nothing_but_failures() {
        let t0 = Instant::now();
        let mut s = Silence::new(Duration::from_secs(60));
        assert_eq!(s.exhausted(t0 + Duration::from_secs(3600)), None, "no failure, no giving up");
        s.failed(t0, "squeue failed: timeout");
        s.failed(t0 + Duration::from_secs(30), "squeue failed: refused");
        assert_eq!(s.exhausted(t0 + Duration::from_secs(59)), None);
        let why = s.exhausted(t0 + Duration::from_secs(61)).unwrap();
        assert!(why.contains("61 s") && why.contains("refused") && why.contains("60 s"), "{why}");
        s.answered();
        assert_eq!(s.exhausted(t0 + Duration::from_secs(61)), None, "an answer starts the count again");
        s.failed(t0 + Duration::from_secs(70), "x");
        assert_eq!(s.exhausted(t0 + Duration::from_secs(129)), None);
        assert!(s.exhausted(t0 + Duration::from_secs(130)).is_some());
    }
}
