//! cfrun: reproducible ClusterFit experiments as TOML DAGs of content-hashed, cached stages.
//!
//! The folders follow the architecture: [`config`] (the TOML schema and its validation), [`graph`]
//! (the expanded DAG), [`cache`] (the content-addressed store), [`exec`] (scheduling and running),
//! [`ops`] (one file per stage kind), [`artifact`] (on-disk formats), and the ML parts: [`data`],
//! [`nn`], [`cluster`], [`eval`], [`report`], and [`video`] (generated action clips).

pub mod artifact;
pub mod cache;
pub mod candle_error;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod data;
pub mod eval;
pub mod exec;
pub mod graph;
pub mod html;
pub mod linalg;
pub mod nn;
pub mod ops;
pub mod panics;
pub mod process_setup;
pub mod report;
pub mod rng;
pub mod selfsup;
pub mod stats;
pub mod video;
