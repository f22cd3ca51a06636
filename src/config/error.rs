//! Configuration errors that point at the file, line and column, rendered with miette.

use std::fmt::Write as _;
use std::path::PathBuf;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan};

use super::source::{Origin, SourceFile};

/// Everything that can be wrong with an experiment before it runs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read experiment file {path}: {message}")]
    Io {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A problem at a place in the file (or in a `--set` argument).
    #[error("{}", .0.message)]
    At(Box<Located>),
    /// Several problems, reported together so one run shows them all.
    #[error("{} problems in the experiment file", .0.len())]
    Many(Vec<ConfigError>),
}

/// A message anchored at a span.
#[derive(Debug)]
pub struct Located {
    /// The file the span refers to.
    pub file: SourceFile,
    /// Where.
    pub origin: Origin,
    /// What is wrong, naming the field.
    pub message: String,
    /// What would be valid.
    pub help: Option<String>,
}

impl ConfigError {
    /// An error at `origin` in `file`.
    pub fn at(file: &SourceFile, origin: Origin, message: String, help: Option<String>) -> Self {
        ConfigError::At(Box::new(Located { file: file.clone(), origin, message, help }))
    }

    /// Collapses a list of errors: none is `Ok`, one is itself, more are `Many`.
    pub fn collect(mut errors: Vec<ConfigError>) -> Result<(), ConfigError> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Many(errors)),
        }
    }

    /// Flattened list of the individual errors.
    pub fn flatten(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Many(list) => list.iter().flat_map(|e| e.flatten()).collect(),
            other => vec![other],
        }
    }

    /// `file:line:col`, or a description of the override, for the first error.
    pub fn location(&self) -> Option<String> {
        match self {
            ConfigError::At(loc) => Some(loc.location()),
            ConfigError::Many(list) => list.first().and_then(|e| e.location()),
            ConfigError::Io { path, .. } => Some(path.display().to_string()),
        }
    }

    /// Human rendering: one block per error with the source line underlined.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in self.flatten() {
            match e {
                ConfigError::At(loc) => out.push_str(&loc.render()),
                other => {
                    let _ = writeln!(out, "error: {other}");
                }
            }
        }
        out
    }
}

impl Located {
    /// `path:line:col` (or `--set #n`).
    pub fn location(&self) -> String {
        match &self.origin {
            Origin::File(span) => {
                let (line, col) = self.file.line_col(span.start);
                format!("{}:{line}:{col}", self.file.path.display())
            }
            Origin::Override(i) => format!("--set argument #{}", i + 1),
        }
    }

    fn render(&self) -> String {
        let mut out = format!("error: {}\n  --> {}\n", self.message, self.location());
        if let Origin::File(span) = &self.origin {
            let diag = Snippet { located: self, span: span.clone(), source: self.file.text.to_string() };
            let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
                .with_context_lines(1)
                .without_cause_chain();
            let mut rendered = String::new();
            if handler.render_report(&mut rendered, &diag).is_ok() {
                // miette repeats the message on its first line; ours is already printed above.
                let body: Vec<&str> = rendered.lines().skip(1).collect();
                out.push_str(&body.join("\n"));
                out.push('\n');
                return out;
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  help: {help}");
        }
        out
    }
}

/// Adapter giving miette the source, label and help of one [`Located`].
struct Snippet<'a> {
    located: &'a Located,
    span: std::ops::Range<usize>,
    source: String,
}

impl std::fmt::Debug for Snippet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.located.message)
    }
}

impl std::fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.located.message)
    }
}

impl std::error::Error for Snippet<'_> {}

impl miette::Diagnostic for Snippet<'_> {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let len = self.span.end.saturating_sub(self.span.start).max(1);
        Some(Box::new(std::iter::once(LabeledSpan::new_primary_with_span(Some("here".into()), (self.span.start, len)))))
    }

    fn help<'b>(&'b self) -> Option<Box<dyn std::fmt::Display + 'b>> {
        self.located.help.as_ref().map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}
