//! Statistics for reading results: summaries over replicates with confidence intervals
//! (Student t), and claims checked against them, one by one or as a family (Holm). A leaf module:
//! it knows nothing of ops or reports.

pub mod claim;
pub mod family;
pub mod select;
pub mod student_t;
pub mod summary;

#[cfg(test)]
mod tests;

pub use claim::{evaluate, Claim, ClaimError, Expect, Outcome, Shape, Verdict};
pub use select::{Condition, Observation, Selector, REPLICATE, SOURCE};
pub use summary::{Summary, INTERVAL_METHOD};
