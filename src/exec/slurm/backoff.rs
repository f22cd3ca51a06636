//! Waiting out a controller that does not answer. An `sbatch` refused for a reason that passes (a
//! timeout, a controller restarting or too busy) is tried again after a pause that doubles from
//! 2 s up to a minute; after ten minutes of nothing but such refusals the jobs fail.

use std::time::{Duration, Instant};

const FIRST_PAUSE: Duration = Duration::from_secs(2);
const LONGEST_PAUSE: Duration = Duration::from_secs(60);
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// The pauses between submissions while the controller refuses them for a passing reason.
#[derive(Debug, Default)]
pub struct Backoff {
    /// When the current run of refusals began.
    since: Option<Instant>,
    /// The pause after the last refusal.
    pause: Duration,
    /// No submission before this.
    not_before: Option<Instant>,
}

impl Backoff {
    /// Whether a submission may be tried at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// Records a passing refusal at `now`: the pause before the next try, or `None` when the
    /// refusals have gone on too long to keep waiting.
    pub fn refused(&mut self, now: Instant) -> Option<Duration> {
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= GIVE_UP_AFTER {
            return None;
        }
        self.pause = if self.pause.is_zero() { FIRST_PAUSE } else { (self.pause * 2).min(LONGEST_PAUSE) };
        self.not_before = Some(now + self.pause);
        Some(self.pause)
    }

    /// A submission went through: the next refusal starts from the first pause again.
    pub fn accepted(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_minute_and_give_up_after_ten_minutes() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready(t0));
        let mut now = t0;
        let mut pauses = Vec::new();
        while let Some(p) = b.refused(now) {
            assert!(!b.ready(now) && b.ready(now + p));
            pauses.push(p.as_secs());
            now += p;
        }
        assert_eq!(&pauses[..7], &[2, 4, 8, 16, 32, 60, 60]);
        assert!(now.duration_since(t0) >= GIVE_UP_AFTER && now.duration_since(t0) < GIVE_UP_AFTER + LONGEST_PAUSE);
        assert_eq!(b.refused(now + FIRST_PAUSE), None, "after giving up, a refusal fails at once");
        b.accepted();
        assert!(b.ready(now));
        assert_eq!(b.refused(now), Some(FIRST_PAUSE), "an accepted submission starts the count again");
    }
}
