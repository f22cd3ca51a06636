//! Which ready instance starts first: the one at the head of the longest chain of work still to
//! come (its own estimate plus its longest line of dependants), ties in plan order.
//!
//! Why: started in plan order, a study's last long chain (features, k-means, then N_cf's
//! training) could start after the independent trainings and run alone at the end, one job slot
//! idle. Simulated on the studies' recorded stage times with 2 slots, starting the longest
//! chain first cut capacity from 427 to 416 s and per_label from 334 to 322 s
//! (`benches/profiles/scheduling.md`). The order changes no artifact: every key and seed is
//! fixed by the plan.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::graph::Plan;

/// For each instance, its [`crate::ops::Op::work_estimate`] plus the longest chain of estimates
/// among the instances that read it, directly or not.
pub fn chain_estimates(plan: &Plan, dependants: &[Vec<usize>]) -> Vec<f64> {
    let mut chain = vec![0.0; plan.instances.len()];
    // Plan order is topological, so every dependant's chain is known before its input's.
    for (i, inst) in plan.instances.iter().enumerate().rev() {
        let after = dependants[i].iter().map(|&d| chain[d]).fold(0.0, f64::max);
        chain[i] = inst.op.work_estimate(&inst.params).max(0.0) + after;
    }
    chain
}

/// Ready instances, popped longest chain first, except that promoted ones go before all others.
pub struct ReadyQueue {
    chain: Vec<f64>,
    promoted: Vec<bool>,
    queued: Vec<bool>,
    heap: BinaryHeap<(bool, u64, Reverse<usize>)>,
}

impl ReadyQueue {
    /// An empty queue ranking instances by `chain` ([`chain_estimates`]).
    pub fn new(chain: Vec<f64>) -> ReadyQueue {
        let n = chain.len();
        ReadyQueue { chain, promoted: vec![false; n], queued: vec![false; n], heap: BinaryHeap::new() }
    }

    fn entry(&self, i: usize) -> (bool, u64, Reverse<usize>) {
        // Milliseconds as an integer: a total order, and finer than any estimate means.
        (self.promoted[i], (self.chain[i] * 1000.0).round() as u64, Reverse(i))
    }

    /// Adds instance `i`.
    pub fn push(&mut self, i: usize) {
        self.queued[i] = true;
        self.heap.push(self.entry(i));
    }

    /// Puts `i` ahead of every instance not promoted, now if it is queued, else once it is.
    /// For siblings whose work a finished instance left in memory: they take a moment now, and
    /// the memory is freed before other work pushes it out.
    pub fn promote(&mut self, i: usize) {
        if !self.promoted[i] {
            self.promoted[i] = true;
            if self.queued[i] {
                // The entry without the promotion stays in the heap; `pop` skips it.
                self.heap.push(self.entry(i));
            }
        }
    }

    /// The next instance: promoted ones first, then the longest chain (the earliest in plan
    /// order among equals).
    pub fn pop(&mut self) -> Option<usize> {
        while let Some((_, _, Reverse(i))) = self.heap.pop() {
            if std::mem::take(&mut self.queued[i]) {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Experiment, SourceFile};

    fn queue_order(chain: &[f64], ready: &[usize]) -> Vec<usize> {
        let mut q = ReadyQueue::new(chain.to_vec());
        ready.iter().for_each(|&i| q.push(i));
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn promoted_instances_go_first_once() {
        let mut q = ReadyQueue::new(vec![5.0, 1.0, 3.0, 2.0]);
        [0, 1, 2].iter().for_each(|&i| q.push(i));
        q.promote(1);
        q.promote(3); // not queued yet: promoted when it is
        assert_eq!(q.pop(), Some(1));
        q.push(3);
        assert_eq!(std::iter::from_fn(|| q.pop()).collect::<Vec<_>>(), vec![3, 0, 2]);
    }

    #[test]
    fn longest_chain_first_and_ties_in_plan_order() {
        assert_eq!(queue_order(&[1.0, 40.0, 1.0, 40.0, 5.0], &[0, 1, 2, 3, 4]), vec![1, 3, 4, 0, 2]);
        assert_eq!(queue_order(&[2.0, 2.0, 2.0], &[2, 0, 1]), vec![0, 1, 2]);
    }

    /// A training stage heads a longer chain than a cheap stage, and a cheap stage feeding a
    /// training run outranks one that feeds nothing.
    #[test]
    fn chains_add_the_longest_line_of_dependants() {
        let text = r#"
[experiment]
name = "chains"
[stages.data]
op = "dataset"
name = "synthetic"
train_size = 40
test_size = 20
[stages.net]
op = "train"
images = "data.images"
labels = "data.labels"
arch = "resnet_tiny"
epochs = 10
[stages.short]
op = "train"
images = "data.images"
labels = "data.labels"
arch = "resnet_tiny"
epochs = 2
[stages.feats]
op = "extract"
model = "net.model"
images = "data.images"
"#;
        let file = SourceFile::from_text(std::path::Path::new("t.toml"), text.to_string());
        let plan = Plan::build(Experiment::parse(file, &[]).unwrap()).unwrap();
        let n = plan.instances.len();
        let mut dependants = vec![Vec::new(); n];
        for (i, inst) in plan.instances.iter().enumerate() {
            for r in inst.inputs.values().flatten() {
                dependants[r.instance.0].push(i);
            }
        }
        let chain = chain_estimates(&plan, &dependants);
        let at = |name: &str| chain[plan.instances.iter().position(|i| i.name == name).unwrap()];
        assert_eq!(at("feats"), 1.0);
        assert_eq!(at("net"), 40.0 + 1.0);
        assert_eq!(at("short"), 8.0);
        assert_eq!(at("data"), 1.0 + 41.0);
    }
}
