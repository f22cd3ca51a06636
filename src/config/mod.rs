//! Experiment files: TOML parsing with spans, structural checks, `--set` overrides, and the
//! machinery each op uses to type and validate its own parameters.

pub mod error;
pub mod executor;
pub mod experiment;
pub mod file;
pub mod limits;
pub mod messages;
pub mod overrides;
pub mod param_docs;
pub mod params;
pub mod resources;
pub mod source;
pub mod suggest;

pub use error::ConfigError;
pub use executor::{ExecutorKind, ExecutorSettings};
pub use experiment::{Axis, Experiment, StageDecl};
pub use overrides::Override;
pub use params::{ParamError, Params};
pub use resources::ResourceOverrides;
pub use source::{Node, NodeValue, Origin, SourceFile};
