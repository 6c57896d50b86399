//! Where the library's tracing events go: notices for the person running
//! the job (target [`NOTICE`]) as plain `streamjob: <message>` lines, always;
//! every other event through `STREAMJOB_LOG`'s filter (default `warn`), as
//! log lines with time, level and module.

use std::fmt;

use streamjob_api::flags;
use streamjob_runtime::NOTICE;
use tracing::{Event, Subscriber};
use tracing_log::AsLog;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the subscriber; both layers write to stderr.
pub fn init() {
    let env = EnvFilter::try_from_env(flags::LOG_ENV).unwrap_or_else(|_| "warn".into());
    // Notices are info events; nothing finer than this is ever written.
    let finest = env
        .max_level_hint()
        .unwrap_or(LevelFilter::TRACE)
        .max(LevelFilter::INFO);
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a pod's log or a file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(env.and(filter_fn(|m| m.target() != NOTICE)));
    let notices = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Notice)
        .with_filter(filter_fn(|m| m.target() == NOTICE));
    tracing_subscriber::registry()
        .with(logs)
        .with(notices)
        .init();
    // Records of the `log` crate (rdkafka logs a trace record for every
    // message it polls) are turned away at the macro unless some layer
    // would write them; otherwise each one went through tracing's filters,
    // about 4% of a worker reading Kafka.
    log::set_max_level(finest.as_log());
}

/// `streamjob: <message>`.
struct Notice;

impl<S, N> FormatEvent<S, N> for Notice
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
        write!(writer, "streamjob: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    /// With the default filter (`warn`, and notices at info), `log` records
    /// finer than info stop at the macro: rdkafka logs a trace record for
    /// every message it polls.
    #[test]
    fn log_records_no_layer_writes_stop_at_the_macro() {
        std::env::remove_var(streamjob_api::flags::LOG_ENV);
        super::init();
        assert_eq!(log::max_level(), log::LevelFilter::Info);
        assert!(!log::log_enabled!(target: "rdkafka::consumer", log::Level::Trace));
    }
}
