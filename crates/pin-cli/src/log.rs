//! Logs on stderr: `-v`/`-q` choose how much, `--log-format` how it looks; `RUST_LOG`, when
//! set, replaces the level `-v`/`-q` choose (e.g. `RUST_LOG=pin_core=debug`).
//!
//! Standard output is never written here: with `--json` it stays exactly one object.
//!
//! | flags | level | shows |
//! |---|---|---|
//! | `-q` | error | errors only (no warnings) |
//! | (none) | warn | warnings: a database or outbox others can read, fast hashes, deliveries deferred or given up, receipts not recorded |
//! | `-v` | info | one line per command and verify: outcome, masked tax code, serial, duration |
//! | `-vv` | debug | retries after concurrent changes, store re-runs |
//! | `-vvv` | trace | everything |
//!
//! The text format is one line per event, `pin: LEVEL: message field=value … [span field=value …]`
//! (warnings read `pin: warning: …`, as they always have); the JSON format is one object per
//! line with `timestamp`, `level`, `fields`, `target` and `spans`.

use std::fmt;

use clap::ValueEnum;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The level `-v` and `-q` select.
pub(crate) fn level(verbose: u8, quiet: u8) -> &'static str {
    match (quiet, verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    }
}

/// Installs the stderr subscriber for this process.
pub(crate) fn init(verbose: u8, quiet: u8, format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(level(verbose, quiet)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).event_format(Human).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
}

/// `pin: LEVEL: message fields [span fields] …`.
struct Human;

impl<S, N> FormatEvent<S, N> for Human
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(writer, "pin: {level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, " [{}", span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>().filter(|f| !f.is_empty()) {
                    write!(writer, " {fields}")?;
                }
                write!(writer, "]")?;
            }
        }
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::level;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level(0, 0), "warn");
        assert_eq!(level(1, 0), "info");
        assert_eq!(level(2, 0), "debug");
        assert_eq!(level(5, 0), "trace");
        assert_eq!(level(0, 1), "error");
        assert_eq!(level(3, 1), "error");
    }
}
