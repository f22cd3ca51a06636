//! The jobs a local executor holds until a slot is free, in the order they were handed over. A
//! job whose recipe a running job has waits behind it (then finds its result cached) instead of
//! holding a slot blocked on the key's lock, and takes no room meanwhile.

use std::collections::{HashSet, VecDeque};

use super::job::Job;
use crate::cache::RecipeKey;

/// Jobs waiting for a slot.
#[derive(Default)]
pub struct Backlog(VecDeque<Job>);

impl Backlog {
    /// Adds a job behind the others.
    pub fn push_back(&mut self, job: Job) {
        self.0.push_back(job);
    }

    /// Puts jobs taken but not started back at the head, in their order.
    pub fn put_back(&mut self, jobs: impl DoubleEndedIterator<Item = Job>) {
        for job in jobs.rev() {
            self.0.push_front(job);
        }
    }

    /// Jobs waiting.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets every waiting job.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Takes, first come first, up to `slots` jobs whose recipe no running (`running`) or taken
    /// job has.
    pub fn take_startable(&mut self, slots: usize, running: &HashSet<RecipeKey>) -> Vec<Job> {
        let mut taken: Vec<Job> = Vec::new();
        let mut i = 0;
        while taken.len() < slots && i < self.0.len() {
            let key = self.0[i].key;
            if running.contains(&key) || taken.iter().any(|j| j.key == key) {
                i += 1;
            } else {
                taken.extend(self.0.remove(i));
            }
        }
        taken
    }

    /// The slots the waiting jobs will need: one per recipe that no running job has.
    pub fn needing_slots(&self, running: &HashSet<RecipeKey>) -> usize {
        let mut keys: HashSet<RecipeKey> = HashSet::new();
        self.0.iter().filter(|j| !running.contains(&j.key) && keys.insert(j.key)).count()
    }
}
