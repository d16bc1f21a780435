//! `locus responder`: runs a responder until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;

#[derive(Args)]
pub(crate) struct ResponderArgs {
    /// Address to listen on (UDP, QUIC).
    #[arg(long, default_value = "127.0.0.1:4433")]
    listen: SocketAddr,
    /// Also write the session key's SPKI (DER) to this file, for probers to pin.
    #[arg(long)]
    spki_out: Option<PathBuf>,
}

pub(crate) fn run(args: ResponderArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let key = SessionKey::generate()?;
        if let Some(path) = &args.spki_out {
            std::fs::write(path, key.spki_der())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let server = Server::start(
            ServerConfig::new(args.listen),
            key.clone(),
            EvidenceSource::default(),
        )?;
        let addr = server.local_addr()?;
        announce(addr, key.spki_der());
        shutdown_signal().await;
        server.shutdown().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// One JSON line on stdout, so that scripts and tests learn the address and the key to pin.
#[expect(clippy::print_stdout, reason = "the CLI announces its address and key")]
fn announce(addr: SocketAddr, spki: &[u8]) {
    println!(
        "{}",
        serde_json::json!({ "listen": addr.to_string(), "spki": hex::encode(spki) })
    );
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
