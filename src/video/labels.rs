//! Label spaces over generated clips: the same clips can be described by several vocabularies,
//! standing in for the paper's video data sets.
//!
//! | space | paper role | classes |
//! |---|---|---|
//! | `verb` | IG-Verb hashtags (the pre-training labels, before noise) | the verbs in use |
//! | `kinetics` | Kinetics: fine-grained, appearance and motion | verb x object group |
//! | `sports` | Sports1M: another vocabulary over the same kind of clips | trajectory family x speed |
//! | `temporal` | Something-Something: temporal order matters | the reversible verbs only |
//!
//! Object groups are Fashion-MNIST's four coarse groups (tops, trousers and dresses, footwear,
//! bags) for `fashion-mnist` and the source's own classes otherwise.

use std::str::FromStr;

use super::verbs::{Family, Verb};

/// Which vocabulary the `labels` output uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelSpace {
    /// The verb.
    Verb,
    /// Verb x object group.
    Kinetics,
    /// Trajectory family x speed (slow/fast).
    Sports,
    /// The verb, with clips drawn from reversible verbs only, so that every class has its time
    /// reversal among the classes.
    Temporal,
}

impl LabelSpace {
    /// Names as written in experiment files.
    pub const NAMES: [&'static str; 4] = ["verb", "kinetics", "sports", "temporal"];
}

impl FromStr for LabelSpace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "verb" => Ok(LabelSpace::Verb),
            "kinetics" => Ok(LabelSpace::Kinetics),
            "sports" => Ok(LabelSpace::Sports),
            "temporal" => Ok(LabelSpace::Temporal),
            _ => Err(format!("unknown label space `{s}`")),
        }
    }
}

/// What a generated clip shows, before it is named in a label space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClipFacts {
    /// Index of the verb in the generator's verb list.
    pub verb: usize,
    /// Class of the moving object in its source data set.
    pub object: u32,
    /// Whether the motion was drawn from the fast range.
    pub fast: bool,
}

/// Maps source classes onto object groups.
#[derive(Clone, Debug)]
pub struct ObjectGroups {
    /// Group of each source class.
    pub of_class: Vec<u32>,
    /// Group names.
    pub names: Vec<String>,
}

impl ObjectGroups {
    /// Groups for a source data set with `class_names`.
    pub fn for_source(dataset: &str, class_names: &[String]) -> Self {
        if dataset == "fashion-mnist" && class_names.len() == 10 {
            // T-shirt, pullover, coat, shirt -> tops; trouser, dress; sandal, sneaker, boot; bag.
            let of_class = vec![0, 1, 0, 1, 0, 2, 0, 2, 3, 2];
            let names = ["tops", "trousers+dresses", "footwear", "bags"].map(String::from).to_vec();
            return ObjectGroups { of_class, names };
        }
        ObjectGroups { of_class: (0..class_names.len() as u32).collect(), names: class_names.to_vec() }
    }
}

/// A label space bound to a verb list and object groups.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    /// The space.
    pub space: LabelSpace,
    /// The verbs clips are drawn from, in label order.
    pub verbs: Vec<Verb>,
    /// Object groups (used by `kinetics`).
    pub groups: ObjectGroups,
}

impl Vocabulary {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        match self.space {
            LabelSpace::Verb | LabelSpace::Temporal => self.verbs.len(),
            LabelSpace::Kinetics => self.verbs.len() * self.groups.names.len(),
            LabelSpace::Sports => sports_families(&self.verbs).len() * 2,
        }
    }

    /// Class names in id order.
    pub fn class_names(&self) -> Vec<String> {
        match self.space {
            LabelSpace::Verb | LabelSpace::Temporal => self.verbs.iter().map(|v| v.name().to_string()).collect(),
            LabelSpace::Kinetics => self
                .verbs
                .iter()
                .flat_map(|v| self.groups.names.iter().map(move |g| format!("{} {g}", v.name())))
                .collect(),
            LabelSpace::Sports => sports_families(&self.verbs)
                .iter()
                .flat_map(|f| ["slow", "fast"].map(|s| format!("{} {s}", f.name())))
                .collect(),
        }
    }

    /// The class of a clip.
    pub fn label(&self, facts: &ClipFacts) -> u32 {
        match self.space {
            LabelSpace::Verb | LabelSpace::Temporal => facts.verb as u32,
            LabelSpace::Kinetics => {
                let g = self.groups.of_class.get(facts.object as usize).copied().unwrap_or(0);
                (facts.verb * self.groups.names.len()) as u32 + g
            }
            LabelSpace::Sports => {
                // Its family's rank among those the verbs move in (`sports_families`' order),
                // counted without building that list for every clip.
                let family = self.verbs[facts.verb].family();
                let id =
                    Family::ALL.iter().take_while(|&&f| f != family).filter(|&&f| moves_in(&self.verbs, f)).count();
                let id = id as u32;
                id * 2 + u32::from(facts.fast)
            }
        }
    }
}

/// The trajectory families `verbs` move in, in label order: `sports`' classes are these, each
/// slow and fast (with fewer verbs than all, families no clip shows would be classes no clip has).
pub fn sports_families(verbs: &[Verb]) -> Vec<Family> {
    Family::ALL.into_iter().filter(|&f| moves_in(verbs, f)).collect()
}

/// Whether any of `verbs` moves in `family`.
fn moves_in(verbs: &[Verb], family: Family) -> bool {
    verbs.iter().any(|v| v.family() == family)
}

/// The top-`m` verbs of [`Verb::RANKED`]; for the temporal space, only those whose reversal is a
/// different verb.
pub fn verb_list(space: LabelSpace, m: usize) -> Vec<Verb> {
    let top = Verb::RANKED.iter().copied().take(m);
    match space {
        LabelSpace::Temporal => top.filter(|v| v.reverse() != *v).collect(),
        _ => top.collect(),
    }
}
