//! `dataset`: a named data set's train and test splits, fetched and verified on first use, with
//! optional seeded, stratified subsets so that experiments can be sized to the machine.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Examples, Facts, InputFacts, Kind, OpError, OpSpec, OutputFacts, OutputSpec, StageCtx, StageKind};
use crate::artifact::{Images, Labels, LabelsMeta};
use crate::config::params::{ParamError, Params};
use crate::data::{self, catalog, DatasetName, LoadOptions, SyntheticOptions};

/// Parameters of `dataset`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetParams {
    /// `mnist`, `fashion-mnist`, `animal-mnist` or `synthetic`; real ones may be pooled with `+`.
    pub name: String,
    /// A folder holding the raw files, read (and checked against their digests) unless the cache
    /// already holds a verified copy, which has the same bytes; it must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Keep this many training images (seeded, stratified); unset, the whole split (synthetic:
    /// 2,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub train_size: Option<usize>,
    /// Keep this many test images (seeded, stratified); unset, the whole split (synthetic: 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub test_size: Option<usize>,
    /// Synthetic only: number of classes (10 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 20))]
    pub classes: Option<usize>,
    /// Synthetic only: image side in pixels (28 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 64))]
    pub size: Option<usize>,
    /// Seed of the subsets (and of the synthetic generator).
    pub seed: u64,
}

impl Params for DatasetParams {
    fn validate(&self) -> Result<(), ParamError> {
        self.check_path_applies()?;
        if let Some(members) = data::pool_members(&self.name) {
            members.map_err(|bad| {
                ParamError::field(
                    "name",
                    format!("cannot pool `{bad}` in `{}`", self.name),
                    Some(format!(
                        "pool distinct real data sets with `+`, e.g. \"fashion-mnist+animal-mnist\"; valid: {}",
                        DatasetName::valid_names().join(", ")
                    )),
                )
            })?;
            for (field, v) in [("classes", self.classes), ("size", self.size)] {
                if v.is_some() {
                    return Err(ParamError::field(
                        field,
                        format!("`{field}` only applies to the synthetic data set"),
                        Some("remove it".to_string()),
                    ));
                }
            }
            return self.check_sizes();
        }
        let name: DatasetName = self
            .name
            .parse()
            .map_err(|_| ParamError::unknown_name("name", "data set", &self.name, &DatasetName::valid_names()))?;
        if name != DatasetName::Synthetic {
            for (field, v) in [("classes", self.classes), ("size", self.size)] {
                if v.is_some() {
                    return Err(ParamError::field(
                        field,
                        format!("`{field}` only applies to the synthetic data set"),
                        Some("remove it, or use name = \"synthetic\"".to_string()),
                    ));
                }
            }
        }
        if let Some(c) = self.classes {
            if !(2..=20).contains(&c) {
                return Err(ParamError::range("classes", c, "between 2 and 20"));
            }
        }
        if let Some(s) = self.size {
            if !(8..=64).contains(&s) {
                return Err(ParamError::range("size", s, "between 8 and 64"));
            }
        }
        // After `size`: the memory the splits need is judged by a side known to be in range.
        self.check_sizes()
    }
}

/// A `path` that names no folder is a typo, not a source to skip: the resolver would fall back to
/// the cache or the registries without a word, and the user would never learn that their files
/// were not the ones read. Checked where the stage runs, not where the file is read; `name` is
/// the data set the folder should hold.
pub(super) fn check_source_folder(path: Option<&Path>, name: &str) -> Result<(), ParamError> {
    let Some(path) = path else { return Ok(()) };
    if !path.is_dir() {
        let relative = if path.is_relative() { " (relative to the directory cfrun runs in)" } else { "" };
        return Err(ParamError::field(
            "path",
            format!("`path` = \"{}\" is not a folder{relative}", path.display()),
            Some(format!("name the folder that holds {name}'s raw files, or remove `path` to fetch them")),
        ));
    }
    Ok(())
}

/// What a data set stage loads, known from the catalog before anything is fetched.
struct DatasetShape {
    /// Examples in the train and test splits.
    rows: [usize; 2],
    classes: usize,
    /// Channels, height, width.
    shape: [usize; 3],
    hflip_ok: bool,
}

impl DatasetParams {
    /// `path` names where real files are; the synthetic set is generated.
    fn check_path_applies(&self) -> Result<(), ParamError> {
        if self.path.is_some() && matches!(self.name.parse(), Ok(DatasetName::Synthetic)) {
            return Err(ParamError::field(
                "path",
                "`path` does not apply to the synthetic data set, which is generated",
                Some("remove it".to_string()),
            ));
        }
        Ok(())
    }

    fn check_sizes(&self) -> Result<(), ParamError> {
        // Images are held as bytes and, while training, as f32: 3 channels at most.
        let side = self.size.unwrap_or(64).min(64) as u64;
        for (field, v) in [("train_size", self.train_size), ("test_size", self.test_size)] {
            if v == Some(0) {
                return Err(ParamError::range(field, 0, "at least 1"));
            }
            if let Some(n) = v {
                crate::config::limits::fits_in_memory(field, n as u64, side * side * 3 * 5, "images")?;
            }
        }
        Ok(())
    }

    /// What these parameters load, refusing a subset larger than its split; `None` for a name
    /// `validate` refuses.
    fn shape(&self) -> Result<Option<DatasetShape>, ParamError> {
        let members = match data::pool_members(&self.name) {
            Some(Ok(members)) => members,
            Some(Err(_)) => return Ok(None),
            None => match self.name.parse::<DatasetName>() {
                Ok(name) => vec![name],
                Err(_) => return Ok(None),
            },
        };
        let Some(infos) = members.iter().map(|&m| catalog::info(m)).collect::<Option<Vec<_>>>() else {
            // Generated: the sizes are what was asked for (the defaults are the ones the
            // parameters' help names; `unset_synthetic_sizes_are_the_documented_ones` holds them).
            let d = SyntheticOptions::default();
            let rows = [self.train_size.unwrap_or(d.n_train), self.test_size.unwrap_or(d.n_test)];
            let classes = self.classes.unwrap_or(d.classes);
            let side = self.size.unwrap_or(d.size);
            let hflip_ok = data::synthetic_hflip_ok(classes);
            return Ok(Some(DatasetShape { rows, classes, shape: [1, side, side], hflip_ok }));
        };
        // Pooled sets share one image shape (`load_pool` refuses others).
        let Some(&(c, h, w)) = infos.first().map(|i| &i.shape) else { return Ok(None) };
        let whole = infos.iter().fold([0, 0], |n, i| [n[0] + i.n_train, n[1] + i.n_test]);
        let classes = infos.iter().map(|i| i.class_names.len()).sum();
        let (shape, hflip_ok) = ([c, h, w], infos.iter().all(|i| i.hflip_ok));
        let mut rows = whole;
        for (i, (field, split, size)) in
            [("train_size", "train", self.train_size), ("test_size", "test", self.test_size)].into_iter().enumerate()
        {
            if let Some(n) = size {
                if n > whole[i] {
                    return Err(ParamError::field(
                        field,
                        format!("`{field}` is {n}, but the {split} split of {} has {} examples", self.name, whole[i]),
                        Some(format!("ask for at most {}, or leave `{field}` unset for all of them", whole[i])),
                    ));
                }
                rows[i] = n;
            }
        }
        Ok(Some(DatasetShape { rows, classes, shape, hflip_ok }))
    }

    /// Which examples the stage loads into each split: where they are read from (`path`) does
    /// not count, since the files are verified, nor the seed where nothing is drawn (a whole
    /// split of a real set). A generated set's splits depend on all its parameters.
    fn examples(&self) -> [Examples; 2] {
        if matches!(self.name.parse(), Ok(DatasetName::Synthetic)) {
            let all = Examples::made_by("dataset", self);
            return [all, all];
        }
        let split = |name: &str, size: Option<usize>| {
            Examples::made_by("dataset", &(&self.name, name, size, size.map(|_| self.seed)))
        };
        [split("train", self.train_size), split("test", self.test_size)]
    }

    /// Loader options for these parameters.
    pub fn load_options(&self, data_dir: PathBuf) -> LoadOptions {
        let mut synthetic = SyntheticOptions { seed: self.seed, ..SyntheticOptions::default() };
        if let Some(c) = self.classes {
            synthetic.classes = c;
        }
        if let Some(s) = self.size {
            synthetic.size = s;
        }
        if let Some(n) = self.train_size {
            synthetic.n_train = n;
        }
        if let Some(n) = self.test_size {
            synthetic.n_test = n;
        }
        LoadOptions {
            path: self.path.clone(),
            data_dir,
            train_size: self.train_size,
            test_size: self.test_size,
            subset_seed: self.seed,
            synthetic,
        }
    }
}

/// The `dataset` op.
pub struct Dataset;

impl StageKind for Dataset {
    type Params = DatasetParams;
    const JOB: super::JobShape = super::JobShape::job(1, 4, 0, 60);
    const SPEC: &'static OpSpec = &OpSpec {
        name: "dataset",
        version: 1,
        summary: "a named data set (mnist, fashion-mnist, animal-mnist, synthetic), verified, optionally subset",
        inputs: &[],
        outputs: &[
            OutputSpec { name: "images", kind: Kind::Images, doc: "u8 pixels of both splits" },
            OutputSpec { name: "labels", kind: Kind::Labels, doc: "the data set's class labels" },
        ],
        metrics: &[],
    };

    fn replicated(&self, _raw: &serde_json::Map<String, serde_json::Value>) -> bool {
        false
    }

    fn preflight(&self, p: &DatasetParams, _fed: &InputFacts, _site: &crate::ops::Site) -> Result<(), ParamError> {
        check_source_folder(p.path.as_deref(), &p.name)
    }

    fn facts(&self, p: &DatasetParams, _inputs: &InputFacts) -> Result<OutputFacts, ParamError> {
        let Some(d) = p.shape()? else { return Ok(OutputFacts::new()) };
        let examples = Some(p.examples());
        Ok(OutputFacts::from([
            ("images".to_string(), Facts::images(d.rows, d.shape, 1, d.hflip_ok).of(examples)),
            ("labels".to_string(), Facts::labels(Some(d.rows), Some(d.classes)).of(examples)),
        ]))
    }

    fn run(&self, p: DatasetParams, ctx: &mut StageCtx<'_>) -> Result<(), OpError> {
        // Again here: a cluster job runs on a node that may not see the folder `cfrun run` saw.
        check_source_folder(p.path.as_deref(), &p.name).map_err(|e| OpError::Invalid(e.message))?;
        let opts = p.load_options(ctx.data_dir.clone());
        let ds = match data::pool_members(&p.name) {
            Some(members) => data::load_pool(&members.map_err(OpError::Invalid)?, &opts)?,
            None => {
                let name: DatasetName =
                    p.name.parse().map_err(|_| OpError::Invalid(format!("unknown data set {}", p.name)))?;
                data::load(name, &opts)?
            }
        };
        tracing::info!("{}: {} train / {} test images", ctx.name, ds.train.labels.len(), ds.test.labels.len());
        let meta = ds.meta;
        let labels = Labels {
            meta: LabelsMeta {
                num_classes: meta.num_classes,
                class_names: meta.class_names.clone(),
                source: meta.dataset.clone(),
                tag_classes: Vec::new(),
            },
            train: ds.train.labels,
            test: ds.test.labels,
            tags: None,
        };
        labels.save(&ctx.output_dir("labels"))?;
        Images { meta, train: ds.train.pixels, test: ds.test.pixels }
            .save(&ctx.output_dir("images"))
            .map_err(OpError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::catalog;

    /// A data set's key does not read its files' checksums: new files (a new version of the data)
    /// are only accepted once the catalog pins them, and the `dataset` op's version must move with
    /// the catalog so that every key built on the old files changes. This pins both together.
    #[test]
    fn a_new_data_set_version_moves_the_op_version() {
        let mut hasher = blake3::Hasher::new();
        for name in [DatasetName::Mnist, DatasetName::FashionMnist, DatasetName::AnimalMnist] {
            for file in catalog::spec(name).expect("a real data set").files {
                hasher.update(format!("{name} {} {} {}\n", file.name, file.sha256, file.size).as_bytes());
            }
        }
        // `video` loads its source images itself, not through an input, so its key holds no
        // digest of them: its version must move with the catalog too.
        let video = crate::ops::video::Video::SPEC.version;
        let pinned = (Dataset::SPEC.version, video, hasher.finalize().to_hex().to_string());
        assert_eq!(
            pinned,
            (1, 2, "92793cfb96e54da106b7a18e562e78201ba8e74c442444b52e755d1f1bb27724".to_string()),
            "the catalog's files changed: bump the versions of the `dataset` and `video` ops (they are in \
             every key) and pin them here"
        );
    }

    /// `cfrun ops dataset` names what an unset size gives; the generator must agree.
    #[test]
    fn unset_synthetic_sizes_are_the_documented_ones() {
        let d = SyntheticOptions::default();
        assert_eq!((d.n_train, d.n_test, d.classes, d.size), (2000, 500, 10, 28));
    }
}
