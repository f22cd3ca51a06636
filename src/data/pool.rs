//! Pooled data sets: several data sets of one image shape as one, with every class kept apart
//! (`fashion-mnist+animal-mnist` has 20 classes). A larger label space that contains a
//! pre-training vocabulary plays the role ImageNet-9K plays for ImageNet-1K in the paper.

use std::time::Instant;

use super::{load, subset, DataError, Dataset, DatasetName, LoadOptions};
use crate::artifact::ImagesMeta;

/// The members of a `+`-joined name, or `None` for a plain name.
pub fn members(name: &str) -> Option<Result<Vec<DatasetName>, String>> {
    if !name.contains('+') {
        return None;
    }
    let parsed: Result<Vec<DatasetName>, String> =
        name.split('+').map(|m| m.trim().parse::<DatasetName>().map_err(|_| m.trim().to_string())).collect();
    Some(parsed.and_then(|names| {
        let mut seen = names.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != names.len() {
            Err("a data set named twice".to_string())
        } else if names.contains(&DatasetName::Synthetic) {
            Err("synthetic (generated shapes have their own size options)".to_string())
        } else {
            Ok(names)
        }
    }))
}

/// Loads every member whole, joins them (classes of member `i` offset past those of members
/// before it, names prefixed with the member's name), then takes the seeded stratified subsets.
pub fn load_pool(names: &[DatasetName], opts: &LoadOptions) -> Result<Dataset, DataError> {
    let start = Instant::now();
    let whole = LoadOptions { train_size: None, test_size: None, ..opts.clone() };
    let mut pooled: Option<Dataset> = None;
    for &name in names {
        let ds = load(name, &whole)?;
        pooled = Some(match pooled {
            None => {
                let class_names = ds.meta.class_names.iter().map(|c| format!("{name}/{c}")).collect();
                Dataset { meta: ImagesMeta { class_names, dataset: name.to_string(), ..ds.meta }, ..ds }
            }
            Some(mut acc) => {
                if (acc.meta.channels, acc.meta.height, acc.meta.width)
                    != (ds.meta.channels, ds.meta.height, ds.meta.width)
                {
                    return Err(DataError::InvalidOption {
                        option: "name".into(),
                        reason: format!(
                            "{} has {}x{}x{} images but {name} has {}x{}x{}; pooled data sets must share one shape",
                            acc.meta.dataset,
                            acc.meta.channels,
                            acc.meta.height,
                            acc.meta.width,
                            ds.meta.channels,
                            ds.meta.height,
                            ds.meta.width
                        ),
                    });
                }
                let offset = acc.meta.num_classes as u32;
                for (into, from) in [(&mut acc.train, ds.train), (&mut acc.test, ds.test)] {
                    into.pixels.extend(from.pixels);
                    into.labels.extend(from.labels.iter().map(|&l| l + offset));
                }
                acc.meta.class_names.extend(ds.meta.class_names.iter().map(|c| format!("{name}/{c}")));
                acc.meta.num_classes += ds.meta.num_classes;
                acc.meta.hflip_ok &= ds.meta.hflip_ok;
                acc.meta.dataset = format!("{}+{name}", acc.meta.dataset);
                acc
            }
        });
    }
    let mut ds = pooled.ok_or_else(|| DataError::InvalidOption {
        option: "name".into(),
        reason: "a pooled data set needs at least one member".into(),
    })?;
    let (item, seed, k) = (ds.image_len(), opts.subset_seed, ds.meta.num_classes);
    ds.train = subset::subset(ds.train, opts.train_size, k, item, seed, subset::STREAM_TRAIN, "train")?;
    ds.test = subset::subset(ds.test, opts.test_size, k, item, seed, subset::STREAM_TEST, "test")?;
    tracing::info!(dataset = %ds.meta.dataset, train = ds.train.len(), test = ds.test.len(),
        ms = start.elapsed().as_millis() as u64, "pooled data set");
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_names_parse_into_distinct_real_members() {
        assert!(members("mnist").is_none());
        assert_eq!(
            members("fashion-mnist+animal-mnist").unwrap().unwrap(),
            vec![DatasetName::FashionMnist, DatasetName::AnimalMnist]
        );
        assert_eq!(members("mnist+cifar").unwrap().unwrap_err(), "cifar");
        assert!(members("mnist+mnist").unwrap().is_err());
        assert!(members("mnist+synthetic").unwrap().is_err());
    }
}
