//! What an experiment may expand to, counted before each stage is expanded, so that a
//! generated sweep is refused in milliseconds instead of being materialised first.

use serde_json::Value as Json;

use super::resolve::ResolvedStage;
use crate::config::limits::{MAX_INPUT_EDGES, MAX_INSTANCES, MAX_PARAM_BYTES};
use crate::config::{ConfigError, Experiment};

/// Running totals over the stages expanded so far.
#[derive(Debug, Default)]
pub struct Budget {
    instances: usize,
    param_bytes: usize,
    edges: usize,
    /// The stage whose edges are being counted, and how many it has so far.
    edges_here: (String, usize),
}

impl Budget {
    /// Admits `stage` expanded over `axes`: its instance count, and an upper bound of its
    /// parameters' size (each `${axis}` may grow into the longest value of the axes used).
    pub fn admit_stage(
        &mut self,
        exp: &Experiment,
        stage: &ResolvedStage<'_>,
        axes: &[String],
    ) -> Result<(), ConfigError> {
        let name = &stage.decl.name;
        let count = axes.iter().map(|a| exp.axis(a).map_or(1, |x| x.values.len())).fold(1usize, usize::saturating_mul);
        self.instances = self.instances.saturating_add(count);
        if self.instances > MAX_INSTANCES {
            // The product saturates long before a count that large could be written out.
            let shown = if count == usize::MAX { format!("more than {}", usize::MAX) } else { count.to_string() };
            return Err(exp.error(
                &stage.decl.origin,
                format!(
                    "stage `{name}` expands to {shown} instances (axes {}), which takes the experiment past the \
                     limit of {MAX_INSTANCES} instances",
                    axes.join(" x ")
                ),
                Some("sweep fewer values, or split the study into several experiment files".into()),
            ));
        }
        let raw = Json::Object(stage.params.clone()).to_string();
        let longest =
            axes.iter().filter_map(|a| exp.axis(a)).flat_map(|a| &a.values).map(|v| v.to_string().len()).max();
        let each = raw.len().saturating_add(raw.matches("${").count().saturating_mul(longest.unwrap_or(0)));
        self.param_bytes = self.param_bytes.saturating_add(count.saturating_mul(each));
        if self.param_bytes > MAX_PARAM_BYTES {
            return Err(exp.error(
                &stage.decl.origin,
                format!(
                    "the parameters of stage `{name}` would take up to {} MB once its {count} instances are expanded, \
                     more than the {} MB allowed",
                    each.saturating_mul(count) >> 20,
                    MAX_PARAM_BYTES >> 20
                ),
                Some("shorten its parameter values or use fewer `${...}` placeholders".into()),
            ));
        }
        Ok(())
    }

    /// Admits `n` more input edges into instances of `stage`.
    pub fn admit_edges(&mut self, exp: &Experiment, stage: &ResolvedStage<'_>, n: usize) -> Result<(), ConfigError> {
        self.edges = self.edges.saturating_add(n);
        if self.edges_here.0 != stage.decl.name {
            self.edges_here = (stage.decl.name.clone(), 0);
        }
        self.edges_here.1 = self.edges_here.1.saturating_add(n);
        if self.edges > MAX_INPUT_EDGES {
            // The total is the experiment's: the stage that crosses it may read few itself.
            let here = self.edges_here.1;
            return Err(exp.error(
                &stage.decl.origin,
                format!(
                    "the experiment's instances read more than {MAX_INPUT_EDGES} upstream instances in all: {} \
                     before stage `{}`, and {here} by its instances so far",
                    self.edges - here,
                    stage.decl.name
                ),
                Some("list each stage once in a gathering input; sweep fewer values".into()),
            ));
        }
        Ok(())
    }
}
