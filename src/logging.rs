//! Logging set-up: `tracing` to stderr. The filter is `--log-level` (a level or a `RUST_LOG`-style
//! directive list), else `RUST_LOG`, else `info` for daemons and `warn` for one-shot commands.
//! Text or JSON lines (`--log-format`, `--log-json`); ANSI colours only when stderr is a
//! terminal, never in files or the journal.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// tss-esapi logs an ERROR of its own when a TPM context cannot be flushed while it is
/// dropped, which happens when a process ends after its (lab) TPM emulator stopped; the
/// responder reports real TPM failures itself. Unless asked for, those lines are off.
const QUIET: &str = "tss_esapi::context=off";

pub(crate) fn init(level: Option<&str>, format: LogFormat, daemon: bool) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| anyhow::anyhow!("--log-level {l:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new(format!("{},{QUIET}", if daemon { "info" } else { "warn" }))
        }),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
