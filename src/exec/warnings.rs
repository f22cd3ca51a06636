//! The warnings a stage gives while it computes, kept with its result: a rerun that finds the
//! result cached runs nothing and so would say nothing, and the caveat ("batch_size is capped",
//! "the network barely fits its labels") would be lost with the terminal it was printed on.
//!
//! A tracing layer ([`layer`]) hands every WARN event to the collector of the thread it is on,
//! where [`collect`] started one; `compute` starts it around an op's run and records what it
//! took in the provenance. Warnings from a stage's worker threads (rayon) are not seen: the ops
//! warn from the thread that runs them.

use std::cell::RefCell;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::error::printable_cut;

thread_local! {
    static COLLECTED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Most warnings kept per stage, each cut to [`LONGEST`] characters: a stage warning in a loop
/// must not grow its record without end.
const MOST: usize = 20;
/// Longest warning kept, in characters.
const LONGEST: usize = 1000;

/// Collects this thread's warnings until [`Collector::take`] (or its drop).
pub struct Collector(());

/// Starts collecting this thread's warnings.
pub fn collect() -> Collector {
    COLLECTED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    Collector(())
}

impl Collector {
    /// The warnings given since [`collect`], in order; collecting stops.
    pub fn take(self) -> Vec<String> {
        COLLECTED.with(|c| c.borrow_mut().take()).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        COLLECTED.with(|c| c.borrow_mut().take());
    }
}

/// The layer that feeds collectors; cfrun's subscriber carries it whatever the log filter, so
/// `-q` or `CFRUN_LOG=error` still keep the warnings with the results.
pub fn layer<S: Subscriber + for<'span> LookupSpan<'span>>() -> impl Layer<S> {
    // Its own filter: without one, every debug and trace event would be built for it.
    WarningLayer.with_filter(tracing_subscriber::filter::LevelFilter::WARN)
}

struct WarningLayer;

impl<S: Subscriber> Layer<S> for WarningLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::WARN {
            return;
        }
        COLLECTED.with(|c| {
            let mut c = c.borrow_mut();
            let Some(list) = c.as_mut().filter(|l| l.len() < MOST) else { return };
            let mut text = Message(String::new());
            event.record(&mut text);
            // Printed again on later runs: cut, and no control characters to drive a terminal.
            list.push(printable_cut(&text.0, LONGEST));
        });
    }
}

/// An event's message, then its other fields as `name=value`.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let sep = if self.0.is_empty() { "" } else { " " };
        let _ = if field.name() == "message" {
            write!(self.0, "{sep}{value:?}")
        } else {
            write!(self.0, "{sep}{}={value:?}", field.name())
        };
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    /// Warnings on the collecting thread are kept in order, with their fields; infos and other
    /// threads' warnings are not; after `take` nothing more is collected.
    #[test]
    fn a_collector_keeps_its_threads_warnings() {
        let subscriber = tracing_subscriber::registry().with(super::layer());
        tracing::subscriber::with_default(subscriber, || {
            let c = super::collect();
            tracing::warn!("first {}", 1);
            tracing::info!("not a warning");
            std::thread::scope(|s| {
                s.spawn(|| tracing::warn!("another thread's"));
            });
            tracing::warn!(k = 4, "second");
            assert_eq!(c.take(), ["first 1", "second k=4"]);
            tracing::warn!("after");
            assert!(super::collect().take().is_empty());
        });
    }
}
