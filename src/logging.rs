//! Logging set-up: `tracing` to stderr, filter from `RUST_LOG` (default `info`), optional JSON.

use tracing_subscriber::EnvFilter;

pub(crate) fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
