//! `cfrun data`: list, fetch and verify data sets.

use std::process::ExitCode;

use serde_json::json;

use super::failure::Failure;
use super::open::{open_store, open_store_to_read};
use super::{DataAction, Global};

pub(super) fn data(action: DataAction, g: &Global) -> Result<ExitCode, Failure> {
    match action {
        DataAction::List => {
            let store = open_store_to_read(g)?;
            let listing = crate::data::describe_sources(&store.data_dir());
            if g.json {
                outln!("{}", serde_json::to_string(&listing).unwrap_or_default());
            } else {
                for d in listing {
                    outln!("{d}");
                }
            }
        }
        DataAction::Fetch { name } => {
            let parsed: crate::data::DatasetName = name.parse().map_err(|_| {
                Failure::argument(
                    "data set argument",
                    format!("unknown data set `{name}`; valid: {}", crate::data::DatasetName::valid_names().join(", ")),
                )
            })?;
            // Only a valid name creates the cache.
            let store = open_store(g)?;
            let opts = crate::ops::dataset::DatasetParams {
                name: name.clone(),
                path: None,
                train_size: None,
                test_size: None,
                classes: None,
                size: None,
                seed: 0,
            }
            .load_options(store.data_dir());
            let files = crate::data::fetch(parsed, &opts).map_err(Failure::runtime)?;
            if g.json {
                outln!("{}", json!({"dataset": name, "files": files}));
            } else {
                for f in files {
                    outln!("{}", crate::human::printable_path(&f));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
