//! `locus prober --config FILE`: the continuous prober daemon until SIGTERM or SIGINT; SIGHUP
//! reloads the target list (as does `POST /-/reload`).

use std::path::PathBuf;
use std::process::ExitCode;

use tracing::{info, warn};

pub(crate) fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    // Probing runs on one thread: thousands of targets at 1 Hz need well under a core, and
    // on one thread no task wakes another thread (measured with `locus bench fleet`). The
    // database and /metrics encoding run on blocking threads; those only wait for the one
    // database connection or encode a scrape, so a few are enough (each costs a stack and a
    // malloc arena).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()?;
    rt.block_on(async {
        let handle = locus_prober::daemon::start(config).await?;
        announce(handle.http_addr());
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let stop = crate::responder_cmd::shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = hup.recv() => match handle.reload().await {
                    Ok(summary) => info!("SIGHUP: {summary}"),
                    Err(e) => warn!("SIGHUP: reload rejected: {e}"),
                },
            }
        }
        handle.shutdown().await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// One JSON line on stdout with the HTTP address, for scripts and tests.
#[expect(clippy::print_stdout, reason = "the CLI announces its address")]
fn announce(addr: std::net::SocketAddr) {
    println!("{}", serde_json::json!({ "listen": addr.to_string() }));
}
