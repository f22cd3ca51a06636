//! cfrun: reproducible ClusterFit experiments as TOML DAGs of content-hashed, cached stages.
//!
//! The folders follow the architecture (docs/ARCHITECTURE.md, top layer first): [`cli`] (the
//! command) and [`html`] (the study page); [`exec`] (scheduling and running); [`graph`] (the
//! expanded DAG); [`ops`] (one file per stage kind); [`report`] (tables and figures) and [`stats`]
//! (replicate summaries, claims); [`data`] (the data sets) and [`artifact`] (on-disk formats); the
//! ML parts [`eval`], [`nn`], [`cluster`], [`video`] (generated action clips) and [`selfsup`]
//! (pretext data); [`config`] (the TOML schema and its validation) and [`cache`] (the
//! content-addressed store); at the bottom [`linalg`], [`human`], [`rng`], [`panics`], [`candle_error`], [`exit_status`],
//! [`proc_stat`] and [`process_setup`].

pub mod artifact;
pub mod cache;
pub mod candle_error;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod data;
pub mod eval;
pub mod exec;
pub mod exit_status;
pub mod graph;
pub mod html;
pub mod human;
pub mod linalg;
pub mod nn;
pub mod ops;
pub mod panics;
pub mod proc_stat;
pub mod process_setup;
pub mod report;
pub mod rng;
pub mod selfsup;
pub mod shell;
pub mod stats;
pub mod video;
