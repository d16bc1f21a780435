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
        let handle = locus_fleet::daemon::start(config).await?;
        announce(handle.http_addr());
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // A write past RLIMIT_FSIZE raises SIGXFSZ, which would kill the process: caught, the
        // write fails with EFBIG instead, and the database refuses it like a full disk (rounds
        // wait in memory and are retried).
        let mut xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(
            nix::sys::signal::Signal::SIGXFSZ as i32,
        ))?;
        let mut xfsz_count = 0u64;
        let stop = crate::responder_cmd::shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = xfsz.recv() => {
                    xfsz_count += 1;
                    // One line per hundred: the writer retries several times a second.
                    if xfsz_count % 100 == 1 {
                        warn!(
                            count = xfsz_count,
                            "a write went past the file size limit (RLIMIT_FSIZE, SIGXFSZ): the \
                             database refuses writes until the limit is raised or space is freed"
                        );
                    }
                }
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
