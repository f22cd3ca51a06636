//! Features one `extract` instance computed for its siblings, kept in memory until they run.
//!
//! A layer-wise study extracts every tap of one network on one image set, each tap its own
//! instance, and each of those ran the network again up to its tap: in `selfsup` the five
//! taps of a network cost 3.2 times one pass to `res5`. An instance now also pools the
//! shallower taps its siblings ask for on its way to its own, and leaves them here. The
//! scheduler starts deeper taps first ([`super::extract`]'s work estimate) and, once one ends,
//! its siblings ahead of other ready work (`exec::priority::ReadyQueue::promote`), so they find
//! theirs before other groups push them out. One that does not (it started beside the one
//! computing it, or its entry was evicted) computes its own, with the same bits.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::artifact::Features;

/// At most this many bytes of features wait in the process's memo; the oldest go first.
const CAPACITY_BYTES: usize = 1 << 30;

/// Features waiting for their instance, oldest first.
pub struct Memo {
    waiting: VecDeque<(String, String, Features)>,
    capacity: usize,
}

/// The process's memo.
static MEMO: Mutex<Memo> = Mutex::new(Memo::new(CAPACITY_BYTES));

fn bytes(f: &Features) -> usize {
    (f.train.len() + f.test.len()) * std::mem::size_of::<f32>()
}

impl Memo {
    /// An empty memo holding at most `capacity` bytes.
    pub const fn new(capacity: usize) -> Memo {
        Memo { waiting: VecDeque::new(), capacity }
    }

    /// The features of `tap` left for an instance of `group` (see [`Memo::keep`]), taken out.
    pub fn take(&mut self, group: &str, tap: &str) -> Option<Features> {
        let at = self.waiting.iter().position(|(g, t, _)| g == group && t == tap)?;
        self.waiting.remove(at).map(|(_, _, f)| f)
    }

    /// Leaves `features` of `tap` for the instance of `group` that asks for them. `group` names
    /// everything the features depend on except the tap: the model and image objects, the
    /// model's instance and the other parameters.
    pub fn keep(&mut self, group: &str, tap: &str, features: Features) {
        self.waiting.retain(|(g, t, _)| !(g == group && t == tap));
        self.waiting.push_back((group.to_string(), tap.to_string(), features));
        let mut total: usize = self.waiting.iter().map(|(_, _, f)| bytes(f)).sum();
        while total > self.capacity {
            let Some((_, _, f)) = self.waiting.pop_front() else { break };
            total -= bytes(&f);
        }
    }
}

/// [`Memo::take`] on the process's memo.
pub fn take(group: &str, tap: &str) -> Option<Features> {
    MEMO.lock().ok()?.take(group, tap)
}

/// [`Memo::keep`] on the process's memo.
pub fn keep(group: &str, tap: &str, features: Features) {
    if let Ok(mut memo) = MEMO.lock() {
        memo.keep(group, tap, features);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::FeaturesMeta;

    fn features(n: usize, v: f32) -> Features {
        Features { meta: FeaturesMeta { dim: 1, source: "t".into() }, train: vec![v; n], test: vec![v; n] }
    }

    #[test]
    fn taken_once_by_group_and_tap() {
        let mut memo = Memo::new(1 << 20);
        memo.keep("a", "res2", features(3, 2.0));
        memo.keep("a", "conv1", features(3, 1.0));
        assert!(memo.take("b", "res2").is_none());
        assert_eq!(memo.take("a", "res2").unwrap().train, vec![2.0; 3]);
        assert!(memo.take("a", "res2").is_none());
        assert_eq!(memo.take("a", "conv1").unwrap().test, vec![1.0; 3]);
    }

    #[test]
    fn the_oldest_go_beyond_the_capacity() {
        // 40 bytes each (5 values per split): two fit in 100 bytes, a third pushes the first out.
        let mut memo = Memo::new(100);
        memo.keep("c", "conv1", features(5, 0.0));
        memo.keep("c", "res2", features(5, 0.0));
        memo.keep("c", "res3", features(5, 0.0));
        assert!(memo.take("c", "conv1").is_none());
        assert!(memo.take("c", "res2").is_some());
        assert!(memo.take("c", "res3").is_some());
    }
}
