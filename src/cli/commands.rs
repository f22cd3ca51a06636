//! The commands behind the CLI: dispatch, and how a failure is reported.

use std::process::ExitCode;

use indicatif::MultiProgress;
use serde_json::json;

use super::check_device::check_device;
use super::data::data;
use super::failure::Failure;
use super::gc::gc;
use super::run::run;
use super::show::{report, show};
use super::status::status;
use super::targets::load_part;
use super::{Command, Global};
use crate::graph::render;

pub(super) fn dispatch(cmd: Command, g: &Global, bars: Option<MultiProgress>) -> ExitCode {
    let result = match cmd {
        // `--set` is global so that it sits anywhere on the line, but these read no experiment:
        // taken silently, an override the user meant for a run would look applied.
        Command::Data { .. }
        | Command::Ops { .. }
        | Command::CheckDevice { .. }
        | Command::Exec { instance: None, .. }
            if !g.set.is_empty() =>
        {
            let name = match cmd {
                Command::Data { .. } => "data",
                Command::Ops { .. } => "ops",
                Command::Exec { .. } => "exec KEY",
                _ => "check-device",
            };
            Err(Failure::argument(
                "--set",
                format!("--set overrides a field of an experiment file, and `cfrun {name}` reads none"),
            ))
        }
        Command::Run { file, targets, jobs, device, executor } => {
            run(&file, &targets, g, jobs, device, &executor, bars)
        }
        Command::Exec { target, instance, device, from_driver } => {
            super::cluster::exec(&target, instance.as_deref(), device, from_driver, g)
        }
        Command::Status { file, targets, verify } => status(&file, &targets, g, verify),
        Command::Dag { format, .. } if g.json && format != render::DagFormat::Text => Err(Failure::argument(
            "--format",
            "--json prints the DAG as JSON; --format (dot, mermaid) is for text: give one of the two",
        )),
        Command::Dag { file, targets, format } => load_part(&file, g, &targets).map(|plan| {
            if g.json {
                outln!("{}", render::to_json(&plan));
            } else {
                out!("{}", render::render(&plan, format));
            }
            ExitCode::SUCCESS
        }),
        Command::Show { file, stage } => show(&file, g, &stage),
        Command::Report { file, out } => report(&file, g, &out),
        Command::Gc { files, dry_run, as_given } => gc(&files, g, dry_run, as_given),
        Command::Data { action } => data(action, g),
        Command::Ops { op } => super::ops_help::ops(op.as_deref(), g.json).map(|()| ExitCode::SUCCESS),
        Command::CheckDevice { device, presets } => check_device(device, &presets, g),
    };
    result.unwrap_or_else(|e| {
        let code = e.exit_code();
        match e {
            Failure::Config(c) => {
                if g.json {
                    let errors: Vec<_> = c
                        .flatten()
                        .iter()
                        .map(|e| json!({"location": e.location(), "message": e.to_string()}))
                        .collect();
                    outln!("{}", json!({"ok": false, "errors": errors}));
                }
                errout!("{}", c.render());
            }
            Failure::Other(msg) => fail_plainly(g, None, &msg),
            Failure::Argument { location, message } => fail_plainly(g, Some(&location), &message),
            Failure::Runtime(e) => fail_plainly(g, None, &error_chain(e.as_ref())),
        }
        ExitCode::from(code)
    })
}

/// Reports an error that has no place in the file: on stderr, and under `--json` on stdout too,
/// so a script reading stdout always gets one object saying what went wrong (`location`: the
/// argument at fault, where one is).
fn fail_plainly(g: &Global, location: Option<&str>, message: &str) {
    if g.json {
        outln!("{}", json!({"ok": false, "errors": [{"location": location, "message": message}]}));
    }
    errln!("error: {}", crate::config::error::printable(message));
}

/// An error and its sources, one after the other.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}
