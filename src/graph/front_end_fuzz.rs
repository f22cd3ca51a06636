//! A property test of the whole front end (parse, overrides, structure, references, cycles,
//! expansion, every op's parameter checks) on generated experiment files: for every input it
//! must return a plan or errors that each name a place in the file, never panic, and finish
//! each file quickly. Inputs come from a grammar of near-valid experiments (real op, parameter,
//! axis and output names with hostile values) and from byte-level mutations of those and of the
//! repository's own experiment files.
//!
//! It runs for `CFRUN_FUZZ_SECONDS` (default 3) from seed `CFRUN_FUZZ_SEED` (default 0), so CI
//! is deterministic and bounded, and a longer local hunt is `CFRUN_FUZZ_SECONDS=600 cargo test
//! --release --lib front_end_fuzz`. A failure prints the seed and case number that reproduce it.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Plan;
use crate::config::{ConfigError, Experiment, Override, SourceFile};
use crate::ops;

/// Builds random experiment text from a small grammar.
struct Generator {
    rng: ChaCha8Rng,
    stages: Vec<String>,
    axes: Vec<String>,
}

impl Generator {
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.rng.random_range(0..items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn int(&mut self) -> String {
        let edges = [
            "0",
            "1",
            "-1",
            "2",
            "4",
            "10",
            "255",
            "65536",
            "1000000000000",
            "9223372036854775807",
            "-9223372036854775808",
            "100000",
        ];
        if self.chance(0.6) {
            self.pick(&edges).to_string()
        } else {
            self.rng.random_range(-5i64..300).to_string()
        }
    }

    fn string(&mut self) -> String {
        let choice = self.rng.random_range(0..9);
        let text = match choice {
            0 => format!("${{{}}}", self.axis_name()),
            1 => format!("{}.{}", self.stage_name(), self.output_name()),
            2 => self
                .pick(&[
                    "synthetic",
                    "fashion-mnist",
                    "mnist",
                    "cosine",
                    "step",
                    "resnet_tiny",
                    "avg",
                    "adaptive100000",
                    "dim0",
                    "kmeans++",
                    "verb",
                    "rotnet",
                    "jigsaw",
                    "source",
                    "metric",
                ])
                .to_string(),
            3 => "\\u001b[31m\\u0007\\u202e".to_string(),
            4 => "x".repeat(self.rng.random_range(0..400)),
            5 => String::new(),
            6 => "${".to_string(),
            7 => "${a}${b}-${c".to_string(),
            _ => self.ident(),
        };
        format!("\"{text}\"")
    }

    fn value(&mut self, depth: usize) -> String {
        match self.rng.random_range(0..if depth > 2 { 5 } else { 8 }) {
            0 | 1 => self.int(),
            2 => self.pick(&["0.5", "-0.1", "1e308", "inf", "-inf", "nan", "-0.0", "1.5", "100.0"]).to_string(),
            3 => self.pick(&["true", "false"]).to_string(),
            4 => self.string(),
            5 | 6 => {
                let n = self.rng.random_range(0..5);
                let items: Vec<String> = (0..n).map(|_| self.value(depth + 1)).collect();
                format!("[{}]", items.join(", "))
            }
            _ => {
                let n = self.rng.random_range(0..3);
                let items: Vec<String> =
                    (0..n).map(|_| format!("{} = {}", self.ident(), self.value(depth + 1))).collect();
                format!("{{ {} }}", items.join(", "))
            }
        }
    }

    fn ident(&mut self) -> String {
        let fields: Vec<&str> = ops::registry().iter().flat_map(|op| op.param_fields()).collect();
        match self.rng.random_range(0..6) {
            0..=2 => fields[self.rng.random_range(0..fields.len())].to_string(),
            3 => self
                .pick(&["op", "name", "seed", "inputs", "labels", "features", "images", "model", "k", "epochs"])
                .to_string(),
            4 => format!("\"{}\"", self.pick(&["a.b", "", "with space", "\\u0000", "é"])),
            _ => format!("f{}", self.rng.random_range(0..50)),
        }
    }

    fn stage_name(&mut self) -> String {
        if self.stages.is_empty() || self.chance(0.1) {
            return "missing".into();
        }
        self.stages[self.rng.random_range(0..self.stages.len())].clone()
    }

    fn axis_name(&mut self) -> String {
        if self.axes.is_empty() || self.chance(0.1) {
            return "nope".into();
        }
        self.axes[self.rng.random_range(0..self.axes.len())].clone()
    }

    fn output_name(&mut self) -> String {
        let outs: Vec<&str> = ops::registry().iter().flat_map(|op| op.outputs().iter().map(|o| o.name)).collect();
        outs[self.rng.random_range(0..outs.len())].to_string()
    }

    /// A whole experiment file.
    fn document(&mut self) -> String {
        self.stages = (0..self.rng.random_range(1..6)).map(|i| format!("s{i}")).collect();
        self.axes = (0..self.rng.random_range(0..4)).map(|i| ["k", "p", "a", "b"][i].to_string()).collect();
        let mut out = String::new();
        if self.chance(0.95) {
            out.push_str(&format!(
                "[experiment]\nname = {}\n",
                if self.chance(0.8) { "\"fz\"".into() } else { self.string() }
            ));
            if self.chance(0.5) {
                out.push_str(&format!("seed = {}\n", self.int()));
            }
        }
        if !self.axes.is_empty() {
            out.push_str("[sweep]\n");
            for axis in self.axes.clone() {
                let n = self.rng.random_range(0..6);
                let values: Vec<String> = (0..n)
                    .map(|_| match self.rng.random_range(0..4) {
                        0 => self.string(),
                        1 => self.pick(&["1", "\"1\"", "true", "\"true\"", "0.5"]).to_string(),
                        _ => self.int(),
                    })
                    .collect();
                out.push_str(&format!("{axis} = [{}]\n", values.join(", ")));
            }
        }
        let names: Vec<&str> = ops::names();
        for stage in self.stages.clone() {
            let op =
                if self.chance(0.9) { names[self.rng.random_range(0..names.len())].to_string() } else { "nope".into() };
            out.push_str(&format!("[stages.{stage}]\nop = \"{op}\"\n"));
            if let Some(op) = ops::find(&op) {
                for input in op.inputs() {
                    if self.chance(0.85) {
                        let r = format!("\"{}.{}\"", self.stage_name(), self.output_name());
                        let value = if input.gather && self.chance(0.7) { format!("[{r}]") } else { r };
                        out.push_str(&format!("{} = {value}\n", input.name));
                    }
                }
                for field in op.param_fields() {
                    if self.chance(0.35) {
                        out.push_str(&format!("{field} = {}\n", self.value(0)));
                    }
                }
            }
            for _ in 0..self.rng.random_range(0..2) {
                out.push_str(&format!("{} = {}\n", self.ident(), self.value(0)));
            }
        }
        out
    }

    /// A few byte-level edits: deletions, duplications and hostile insertions.
    fn mutate(&mut self, text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        for _ in 0..self.rng.random_range(1..4) {
            let at = self.rng.random_range(0..=bytes.len());
            match self.rng.random_range(0..4) {
                0 if at < bytes.len() => {
                    let end = (at + self.rng.random_range(1..20)).min(bytes.len());
                    bytes.drain(at..end);
                }
                1 if at < bytes.len() => {
                    let end = (at + self.rng.random_range(1..40)).min(bytes.len());
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(at..at, copy);
                }
                _ => {
                    let insert = self.pick(&[
                        "[",
                        "]",
                        "=",
                        "\"",
                        "\n",
                        "{",
                        "}",
                        "${",
                        ".",
                        "\x1b",
                        "\u{202e}",
                        "-",
                        "0",
                        "[stages.x]\n",
                        "[[a]]\n",
                        "'''",
                        "\\",
                    ]);
                    bytes.splice(at..at, insert.bytes());
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Every error names a place in the file or a `--set` argument, and renders.
fn check_error(e: &ConfigError, case: &str) {
    assert!(!e.render().is_empty(), "{case}: empty rendering");
    for one in e.flatten() {
        match one {
            ConfigError::More(_) => {}
            other => {
                let at = other.location().unwrap_or_default();
                assert!(at.starts_with("fuzz.toml:") || at.starts_with("--set"), "{case}: no location in {other}");
            }
        }
    }
}

/// Runs one input through the front end; returns whether it was accepted.
fn front_end(text: String, overrides: &[Override], case: &str) -> bool {
    let started = Instant::now();
    let file = SourceFile::from_text(Path::new("fuzz.toml"), text);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Experiment::parse(file, overrides).and_then(Plan::build).map(|plan| plan.instances.len())
    }));
    let accepted = match outcome {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            check_error(&e, case);
            false
        }
        Err(_) => panic!("{case}: the front end panicked"),
    };
    assert!(started.elapsed() < Duration::from_secs(2), "{case}: took {:?}", started.elapsed());
    accepted
}

#[test]
fn generated_experiment_files_never_panic_and_every_error_is_located() {
    let seconds: u64 = std::env::var("CFRUN_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let seed: u64 = std::env::var("CFRUN_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut corpus: Vec<String> = Vec::new();
    for dir in ["experiments", "tests/fixtures", "tests/bad"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().filter_map(|e| e.ok()) {
            if entry.path().extension().is_some_and(|x| x == "toml") {
                corpus.push(std::fs::read_to_string(entry.path()).unwrap());
            }
        }
    }
    let mut gen = Generator { rng: ChaCha8Rng::seed_from_u64(seed), stages: Vec::new(), axes: Vec::new() };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut cases, mut accepted) = (0usize, 0usize);
    while Instant::now() < deadline {
        let case = format!("seed {seed}, case {cases}");
        let text = match gen.rng.random_range(0..4) {
            0 => gen.document(),
            1 => {
                let doc = gen.document();
                gen.mutate(&doc)
            }
            _ => {
                let base = corpus[gen.rng.random_range(0..corpus.len())].clone();
                gen.mutate(&base)
            }
        };
        let overrides: Vec<Override> = if gen.chance(0.1) {
            let path = match gen.rng.random_range(0..4) {
                0 => format!("sweep.{}", gen.axis_name()),
                1 => "experiment.seed".to_string(),
                _ => format!("stages.{}.{}", gen.stage_name(), gen.ident()),
            };
            let value = gen.value(0);
            format!("{path}={value}").parse().into_iter().collect()
        } else {
            Vec::new()
        };
        accepted += usize::from(front_end(text, &overrides, &case));
        cases += 1;
    }
    assert!(cases > 50, "only {cases} cases in {seconds}s");
    // The generator must reach past the parser: some files are whole valid plans.
    assert!(accepted > 0 || cases < 500, "no generated file was accepted in {cases} cases");
    eprintln!("front-end fuzz: {cases} files, {accepted} accepted, seed {seed}, {seconds}s");
}
