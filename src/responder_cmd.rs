//! `locus responder`: runs a responder until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use locus_responder::config::ResponderConfig;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ResponderArgs {
    #[command(subcommand)]
    command: Option<ResponderCmd>,
    /// Address to listen on (UDP, QUIC); overrides the config's `listen`
    /// [default: 127.0.0.1:4433].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Also write the session key's SPKI (DER) to this file, for probers to pin; overrides the
    /// config's `spki_out`.
    #[arg(long)]
    spki_out: Option<PathBuf>,
    /// Responder configuration (TOML, see `config/responder.example.toml`): the evidence
    /// backends to switch on. Without it the responder answers echoes only.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum ResponderCmd {
    /// Try each configured backend once and print a row per check (run this first on a new
    /// machine). Exit 0 only when a bundle (the policy's, with --policy) could be produced.
    Doctor(crate::doctor_cmd::DoctorArgs),
}

const DEFAULT_LISTEN: &str = "127.0.0.1:4433";

pub(crate) fn run(args: ResponderArgs) -> anyhow::Result<ExitCode> {
    if let Some(ResponderCmd::Doctor(d)) = args.command {
        return crate::doctor_cmd::run(d);
    }
    let config = match &args.config {
        Some(path) => ResponderConfig::load(path)?,
        None => ResponderConfig::default(),
    };
    let listen = match args.listen.or(config.listen) {
        Some(l) => l,
        None => DEFAULT_LISTEN.parse()?,
    };
    let spki_out = args
        .spki_out
        .or_else(|| config.spki_out.as_ref().map(|p| config.resolve(p)));
    let limits = config.limits()?;
    let access = config.access()?;
    let udp_echo = config.echo.udp_echo()?;
    // Blocking (TPM, a first TDX quote): before the runtime, and fatal when a backend fails.
    let backends = config.open()?;
    tracing::info!(?backends, "evidence backends open");
    let source = backends.into_source();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let key = SessionKey::generate()?;
        if let Some(path) = &spki_out {
            std::fs::write(path, key.spki_der())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let server_config = ServerConfig {
            limits,
            access,
            udp_echo,
            ..ServerConfig::new(listen)
        };
        let server = Server::start(server_config, key.clone(), source)?;
        let addr = server.local_addr()?;
        if let Some(udp) = server.udp_echo_addr() {
            tracing::info!(%udp, "answering UDP echo sessions");
        }
        announce(addr, key.spki_der());
        log_hangups();
        shutdown_signal().await;
        // What was shed, once, in one line that scripts (`locus bench overload`) can read.
        tracing::info!(
            target: SHED_LOG_TARGET,
            counts = %serde_json::to_string(&server.shed_counts())?,
            "shed since start"
        );
        if let Some(udp) = server.udp_echo_counts() {
            tracing::info!(
                target: SHED_LOG_TARGET,
                udp_echo = %serde_json::to_string(&udp)?,
                "UDP echo since start"
            );
        }
        server.shutdown().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The log target of the responder's shed counts at shutdown (`RUST_LOG=warn,locus_shed=info`).
pub(crate) const SHED_LOG_TARGET: &str = "locus_shed";

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

/// systemd's `ExecReload=` sends SIGHUP, whose default action would end the process: note it
/// instead (the backends are opened once, at start).
fn log_hangups() {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::warn!(
                    "SIGHUP: evidence backends are opened once at start; restart to apply a \
                     changed config"
                );
            }
        });
    }
}
