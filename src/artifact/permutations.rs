//! Permutation-set artifacts: Jigsaw's P tile orders (`[P, 9]` u8, row `r` is class `r`), with
//! how they were chosen and their minimum pairwise Hamming distance.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::tensors;
use super::ArtifactError;
use crate::selfsup::permutations::{Perm, TILES};

/// How the set was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermutationsMeta {
    /// Number of permutations (the Jigsaw classes).
    pub count: usize,
    /// Smallest Hamming distance between two members.
    pub min_hamming: u32,
    /// The procedure, for people.
    pub source: String,
}

/// The set.
#[derive(Debug, Clone, PartialEq)]
pub struct Permutations {
    /// Description.
    pub meta: PermutationsMeta,
    /// The orders; slot `j` of class `r` shows original tile `perms[r][j]`.
    pub perms: Vec<Perm>,
}

impl Permutations {
    /// Writes `permutations.safetensors` and `meta.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ArtifactError> {
        std::fs::create_dir_all(dir).map_err(ArtifactError::io(format!("creating {}", dir.display())))?;
        let flat: Vec<u8> = self.perms.iter().flatten().copied().collect();
        let t = Tensor::from_vec(flat, (self.perms.len(), TILES), &Device::Cpu)?;
        tensors::save(&dir.join("permutations.safetensors"), vec![("perms", t)])?;
        tensors::save_json(&dir.join("meta.json"), &self.meta)
    }

    /// Reads what [`Permutations::save`] wrote, checking every row is a permutation of 0..9.
    pub fn load(dir: &Path) -> Result<Permutations, ArtifactError> {
        let meta: PermutationsMeta = tensors::load_json(&dir.join("meta.json"))?;
        let path = dir.join("permutations.safetensors");
        let mut map = tensors::load(&path)?;
        let flat = tensors::take(&mut map, "perms", &path)?.flatten_all()?.to_vec1::<u8>()?;
        if flat.len() % TILES != 0 {
            return Err(ArtifactError::Malformed(format!(
                "{}: {} values are no whole number of {TILES}-tile orders",
                path.display(),
                flat.len()
            )));
        }
        let mut perms = Vec::with_capacity(flat.len() / TILES);
        for row in flat.chunks_exact(TILES) {
            let p: Perm = row.try_into().expect("chunks of 9");
            let mut sorted = p;
            sorted.sort_unstable();
            if sorted != std::array::from_fn(|i| i as u8) {
                return Err(ArtifactError::Malformed(format!(
                    "{}: {p:?} is not an order of the tiles 0 to 8 (each once)",
                    path.display()
                )));
            }
            perms.push(p);
        }
        Ok(Permutations { meta, perms })
    }
}
