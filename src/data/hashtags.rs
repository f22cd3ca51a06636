//! Weak "hashtag" labels made from clean class labels, going wrong the ways web tags do (the
//! ClusterFit paper's list, §1: label noise, polysemy, linguistic ambiguity, non-visual tags,
//! missing tags).
//!
//! The vocabulary, in id order:
//! - `synonyms` tags per class (`#sneaker`, `#sneaker2`, ...): linguistic ambiguity, one concept
//!   under several names; an image shows one of them, uniformly;
//! - `polysemous` tags, each shared by two classes drawn apart by a seeded pairing (`#jaguar` for
//!   the animal and the car): with probability `polysemy` an image's class tag is its class's
//!   polysemous tag instead of a synonym;
//! - `nonvisual` tags (`#love`), attached to random images with probability `nonvisual_rate`.
//!
//! Per image, in this order (every draw from one ChaCha8 stream per split):
//! 1. the tagged class is the true one, or with probability `noise` a uniformly drawn other class;
//! 2. its tag is a synonym or, with probability `polysemy`, the polysemous tag of that class;
//! 3. with probability `extra`, a second, different synonym of the same class is added;
//! 4. each of those visual tags goes missing with probability `drop`;
//! 5. with probability `nonvisual_rate`, a uniformly drawn non-visual tag is added;
//! 6. an image left with no tag at all gets a non-visual one: on the web, an image whose tags are
//!    all missing is either absent or carries only tags like these.

use crate::artifact::validate::MAX_CLASSES;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the tags go wrong; every rate is a probability in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagModel {
    /// Tags naming each class.
    pub synonyms: usize,
    /// Tags shared by two classes (at most half the classes).
    pub polysemous: usize,
    /// Tags that name no visual concept.
    pub nonvisual: usize,
    /// Probability that the tagged class is a wrong one.
    pub noise: f64,
    /// Probability that a class is tagged with its polysemous tag (when it has one).
    pub polysemy: f64,
    /// Probability of a second synonym.
    pub extra: f64,
    /// Probability that each visual tag is missing.
    pub drop: f64,
    /// Probability of a non-visual tag.
    pub nonvisual_rate: f64,
}

/// What a tag stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagMeaning {
    /// A name of one class.
    Synonym(u32),
    /// A name shared by two classes.
    Polysemous(u32, u32),
    /// A tag that names nothing visible.
    NonVisual,
}

/// The tag vocabulary of a class set under a [`TagModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    /// Tag names, by id.
    pub names: Vec<String>,
    /// What each tag stands for, by id.
    pub meanings: Vec<TagMeaning>,
    /// Per class: its synonym ids.
    synonyms_of: Vec<Vec<u32>>,
    /// Per class: its polysemous tag id, if it has one.
    polysemous_of: Vec<Option<u32>>,
    /// Ids of the non-visual tags.
    nonvisual_ids: Vec<u32>,
}

/// Counts of what happened, for the stage's metrics and for checking the rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TagStats {
    /// Images tagged.
    pub images: usize,
    /// Images whose tagged class was a wrong one.
    pub noisy: usize,
    /// Images tagged with a polysemous tag (before drops).
    pub polysemous: usize,
    /// Images given a second synonym (before drops).
    pub extra: usize,
    /// Visual tags drawn.
    pub visual_drawn: usize,
    /// Visual tags that went missing.
    pub dropped: usize,
    /// Images given a non-visual tag by the `nonvisual_rate` draw.
    pub nonvisual: usize,
    /// Images that lost every tag and were given a non-visual one.
    pub refilled: usize,
    /// Tags over all images.
    pub tags: usize,
}

const NONVISUAL_NAMES: &[&str] =
    &["#love", "#instagood", "#photooftheday", "#tbt", "#nofilter", "#happy", "#follow", "#weekend"];

/// `#` plus the lower-case alphanumerics of a class name (`T-shirt/top` -> `#tshirttop`).
fn hashtag(name: &str) -> String {
    let s: String = name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
    format!("#{s}")
}

impl TagModel {
    /// Checks the counts and rates against `classes`; on failure, the field at fault, its value and
    /// what would be valid.
    pub fn check(&self, classes: usize) -> Result<(), (&'static str, String, String)> {
        if self.synonyms == 0 {
            return Err(("synonyms", "0".into(), "at least 1".into()));
        }
        if self.polysemous > classes / 2 {
            let valid = format!("at most half the classes ({})", classes / 2);
            return Err(("polysemous", self.polysemous.to_string(), valid));
        }
        if self.nonvisual == 0 && (self.nonvisual_rate > 0.0 || self.drop > 0.0) {
            return Err(("nonvisual", "0".into(), "at least 1 when nonvisual_rate or drop is above 0".into()));
        }
        for (field, v) in [
            ("noise", self.noise),
            ("polysemy", self.polysemy),
            ("extra", self.extra),
            ("drop", self.drop),
            ("nonvisual_rate", self.nonvisual_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err((field, v.to_string(), "a probability in [0, 1]".into()));
            }
        }
        if self.extra > 0.0 && self.synonyms < 2 {
            let valid = "0 unless synonyms >= 2 (a second synonym must differ)".into();
            return Err(("extra", self.extra.to_string(), valid));
        }
        Ok(())
    }

    /// [`Self::check`] for a known class count, and the vocabulary's size: counted, not built, as
    /// one past what a label file may name would be refused by every reader, and building it
    /// first could take more memory than the machine has.
    pub fn check_for(&self, classes: usize) -> Result<(), (&'static str, String, String)> {
        self.check(classes)?;
        let tags = self.vocabulary_len(classes);
        if tags > MAX_CLASSES {
            let most = MAX_CLASSES.saturating_sub(self.polysemous + self.nonvisual) / classes.max(1);
            let valid = if most == 0 {
                format!("at least 1, and no value fits {classes} classes: one synonym each is past the {MAX_CLASSES} tags a label file names")
            } else {
                format!("at most {most} for {classes} classes (the vocabulary would hold {tags} tags; a label file names at most {MAX_CLASSES})")
            };
            return Err(("synonyms", self.synonyms.to_string(), valid));
        }
        Ok(())
    }

    /// How many tags [`Self::vocabulary`] makes for `classes` classes (saturating).
    pub fn vocabulary_len(&self, classes: usize) -> usize {
        let polysemous = self.polysemous.min(classes / 2);
        classes.saturating_mul(self.synonyms).saturating_add(polysemous).saturating_add(self.nonvisual)
    }

    /// At least the bytes of the tag names [`Self::vocabulary`] makes for `class_names`
    /// (saturating), so that names too long to publish are refused before they are built: each
    /// synonym repeats its class's name.
    pub fn names_len(&self, class_names: &[String]) -> usize {
        class_names
            .iter()
            .map(|name| name.chars().filter(|c| c.is_alphanumeric()).count().saturating_add(1))
            .fold(0usize, |sum, len| sum.saturating_add(len.saturating_mul(self.synonyms)))
    }

    /// The vocabulary for classes named `class_names`; the polysemous pairing is drawn from `seed`.
    pub fn vocabulary(&self, class_names: &[String], seed: u64) -> Vocabulary {
        let classes = class_names.len();
        let mut v = Vocabulary {
            names: Vec::new(),
            meanings: Vec::new(),
            synonyms_of: vec![Vec::new(); classes],
            polysemous_of: vec![None; classes],
            nonvisual_ids: Vec::new(),
        };
        for (c, name) in class_names.iter().enumerate() {
            for s in 0..self.synonyms {
                let base = hashtag(name);
                v.synonyms_of[c].push(v.names.len() as u32);
                v.names.push(if s == 0 { base } else { format!("{base}{}", s + 1) });
                v.meanings.push(TagMeaning::Synonym(c as u32));
            }
        }
        let mut order: Vec<u32> = (0..classes as u32).collect();
        order.shuffle(&mut crate::rng::seeded(seed ^ 0x706f_6c79));
        for pair in order.chunks_exact(2).take(self.polysemous) {
            let (a, b) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
            let id = v.names.len() as u32;
            v.polysemous_of[a as usize] = Some(id);
            v.polysemous_of[b as usize] = Some(id);
            let tail = |s: String| s.trim_start_matches('#').to_string();
            v.names.push(format!(
                "#{}_or_{}",
                tail(hashtag(&class_names[a as usize])),
                tail(hashtag(&class_names[b as usize]))
            ));
            v.meanings.push(TagMeaning::Polysemous(a, b));
        }
        for i in 0..self.nonvisual {
            v.nonvisual_ids.push(v.names.len() as u32);
            v.names.push(NONVISUAL_NAMES.get(i).map_or_else(|| format!("#nonvisual{}", i + 1), |s| s.to_string()));
            v.meanings.push(TagMeaning::NonVisual);
        }
        v
    }

    /// Tags every image of `labels` (classes `0..vocab classes`) with one seeded stream.
    pub fn tag(&self, vocab: &Vocabulary, labels: &[u32], seed: u64) -> (Vec<Vec<u32>>, TagStats) {
        let classes = vocab.synonyms_of.len() as u32;
        let mut rng = crate::rng::seeded(seed);
        let mut stats = TagStats { images: labels.len(), ..TagStats::default() };
        let mut out = Vec::with_capacity(labels.len());
        for &label in labels {
            let mut class = label;
            if classes > 1 && rng.random::<f64>() < self.noise {
                let draw = rng.random_range(0..classes - 1);
                class = if draw >= label { draw + 1 } else { draw };
                stats.noisy += 1;
            }
            let syn = &vocab.synonyms_of[class as usize];
            let first = rng.random_range(0..syn.len());
            let mut visual = Vec::with_capacity(2);
            match vocab.polysemous_of[class as usize] {
                Some(p) if rng.random::<f64>() < self.polysemy => {
                    visual.push(p);
                    stats.polysemous += 1;
                }
                _ => visual.push(syn[first]),
            }
            if syn.len() > 1 && rng.random::<f64>() < self.extra {
                let second = (first + rng.random_range(1..syn.len())) % syn.len();
                visual.push(syn[second]);
                stats.extra += 1;
            }
            stats.visual_drawn += visual.len();
            let mut tags: Vec<u32> = Vec::with_capacity(3);
            for t in visual {
                if rng.random::<f64>() < self.drop {
                    stats.dropped += 1;
                } else {
                    tags.push(t);
                }
            }
            let nv = &vocab.nonvisual_ids;
            if !nv.is_empty() && rng.random::<f64>() < self.nonvisual_rate {
                tags.push(nv[rng.random_range(0..nv.len())]);
                stats.nonvisual += 1;
            }
            if tags.is_empty() && !nv.is_empty() {
                tags.push(nv[rng.random_range(0..nv.len())]);
                stats.refilled += 1;
            }
            tags.sort_unstable();
            tags.dedup();
            stats.tags += tags.len();
            out.push(tags);
        }
        (out, stats)
    }
}

impl Vocabulary {
    /// Tags in the vocabulary.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True for an empty vocabulary.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Per tag, the classes it denotes (none for non-visual tags).
    pub fn tag_classes(&self) -> Vec<Vec<u32>> {
        self.meanings
            .iter()
            .map(|m| match *m {
                TagMeaning::Synonym(c) => vec![c],
                TagMeaning::Polysemous(a, b) => vec![a, b],
                TagMeaning::NonVisual => Vec::new(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("Class {i}")).collect()
    }

    fn model() -> TagModel {
        TagModel {
            synonyms: 3,
            polysemous: 2,
            nonvisual: 4,
            noise: 0.2,
            polysemy: 0.3,
            extra: 0.25,
            drop: 0.1,
            nonvisual_rate: 0.4,
        }
    }

    #[test]
    fn vocabulary_has_synonyms_polysemous_and_nonvisual_tags() {
        let v = model().vocabulary(&names(6), 3);
        assert_eq!(v.len(), 6 * 3 + 2 + 4);
        assert_eq!(v.names[0], "#class0");
        assert_eq!(v.names[1], "#class02");
        assert_eq!(v.names[20], "#love");
        let poly: Vec<_> = v.meanings.iter().filter(|m| matches!(m, TagMeaning::Polysemous(..))).collect();
        assert_eq!(poly.len(), 2);
        for m in poly {
            let TagMeaning::Polysemous(a, b) = *m else { unreachable!() };
            assert_ne!(a, b, "a polysemous tag joins two different classes");
        }
        // No class carries two polysemous tags.
        assert_eq!(v.polysemous_of.iter().filter(|p| p.is_some()).count(), 4);
        assert_eq!(v.tag_classes()[0], vec![0]);
        assert!(v.tag_classes()[23].is_empty());
    }

    #[test]
    fn tag_statistics_match_the_rates_asked_for() {
        let m = model();
        let v = m.vocabulary(&names(10), 1);
        let labels: Vec<u32> = (0..40_000).map(|i| i % 10).collect();
        let (tags, s) = m.tag(&v, &labels, 9);
        let n = labels.len() as f64;
        let near = |got: usize, of: f64, p: f64| {
            let rate = got as f64 / of;
            assert!((rate - p).abs() < 4.0 * (p * (1.0 - p) / of).sqrt() + 1e-9, "rate {rate} vs {p}");
        };
        near(s.noisy, n, m.noise);
        near(s.extra, n, m.extra);
        near(s.dropped, s.visual_drawn as f64, m.drop);
        near(s.nonvisual, n, m.nonvisual_rate);
        // Polysemy applies to the classes that have a polysemous tag (4 of 10).
        let with_poly = labels.len() as f64 * 0.4;
        near(s.polysemous, with_poly, m.polysemy);
        assert!(tags.iter().all(|t| !t.is_empty() && t.windows(2).all(|w| w[0] < w[1])));
        assert_eq!(s.tags, tags.iter().map(Vec::len).sum::<usize>());
        // An image's visual tags name its class, or a wrong class for the noisy ones.
        let wrong = tags
            .iter()
            .zip(&labels)
            .filter(|(t, &l)| {
                t.iter().any(|&id| match v.meanings[id as usize] {
                    TagMeaning::Synonym(c) => c != l,
                    TagMeaning::Polysemous(a, b) => a != l && b != l,
                    TagMeaning::NonVisual => false,
                })
            })
            .count();
        assert!(wrong <= s.noisy, "{wrong} images with a wrong tag, {} noisy draws", s.noisy);
        assert!(wrong as f64 > 0.7 * s.noisy as f64);
    }

    #[test]
    fn clean_model_gives_one_true_synonym_per_image_and_is_seeded() {
        let m = TagModel {
            synonyms: 2,
            polysemous: 0,
            nonvisual: 1,
            noise: 0.0,
            polysemy: 0.0,
            extra: 0.0,
            drop: 0.0,
            nonvisual_rate: 0.0,
        };
        let v = m.vocabulary(&names(3), 0);
        let labels = vec![0, 1, 2, 2, 1, 0];
        let (tags, s) = m.tag(&v, &labels, 5);
        for (t, &l) in tags.iter().zip(&labels) {
            assert_eq!(t.len(), 1);
            assert_eq!(v.meanings[t[0] as usize], TagMeaning::Synonym(l));
        }
        assert_eq!((s.noisy, s.dropped, s.refilled), (0, 0, 0));
        assert_eq!(m.tag(&v, &labels, 5).0, tags);
    }

    #[test]
    fn an_image_that_loses_every_tag_gets_a_nonvisual_one() {
        let m = TagModel { drop: 1.0, nonvisual_rate: 0.0, ..model() };
        let v = m.vocabulary(&names(4), 0);
        let (tags, s) = m.tag(&v, &[0, 1, 2, 3], 1);
        assert_eq!(s.refilled, 4);
        assert!(tags.iter().all(|t| t.len() == 1 && v.meanings[t[0] as usize] == TagMeaning::NonVisual));
    }

    #[test]
    fn bad_settings_name_their_field() {
        assert_eq!(TagModel { polysemous: 6, ..model() }.check(10).unwrap_err().0, "polysemous");
        assert_eq!(TagModel { drop: 1.5, ..model() }.check(10).unwrap_err().0, "drop");
        assert_eq!(TagModel { synonyms: 1, ..model() }.check(10).unwrap_err().0, "extra");
        assert!(model().check(10).is_ok());
    }

    /// The vocabulary is counted before it is built, and one past what a label file may name is
    /// refused at `synonyms` (50,000 clusters x 1,000 synonyms once took gigabytes to count).
    #[test]
    fn a_vocabulary_is_counted_and_bounded_before_it_is_built() {
        for (classes, m) in [(6, model()), (7, TagModel { polysemous: 3, nonvisual: 0, ..model() })] {
            assert_eq!(m.vocabulary_len(classes), m.vocabulary(&names(classes), 0).len());
        }
        let huge = TagModel { synonyms: 1_000, polysemous: 0, ..model() };
        let (field, got, valid) = huge.check_for(50_000).unwrap_err();
        assert_eq!((field, got.as_str()), ("synonyms", "1000"));
        assert!(valid.starts_with("at most 19 for 50000 classes"), "{valid}");
        assert!(TagModel { synonyms: 19, ..huge.clone() }.check_for(50_000).is_ok());
        assert!(huge.check(50_000).is_ok(), "the rates alone are fine");
        assert_eq!(huge.vocabulary_len(usize::MAX), usize::MAX);
        let long = vec!["Ab-c".to_string(), "é".repeat(3)];
        let built: usize = huge.vocabulary(&long, 0).names.iter().map(|n| n.len()).sum();
        assert!(huge.names_len(&long) <= built, "a bound from below: {} > {built}", huge.names_len(&long));
        assert_eq!(huge.names_len(&long), 1_000 * (4 + 4));
    }
}
