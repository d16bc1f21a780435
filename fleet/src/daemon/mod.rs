//! The continuous prober (`locus prober --config FILE`): probes every configured target in its
//! own task, stores rounds in SQLite, serves metrics and health endpoints, reloads its target
//! list on request without losing the state of unchanged targets, and stops cleanly.

pub mod address;
mod clock;
pub mod config;
pub mod http;
mod target;
mod writer;

pub use clock::{SystemClock, WallClock};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use self::clock::StepDetector;
use self::config::{Config, ConfigError, TargetConfig};
use self::http::{Endpoints, ReloadRequest};
use self::target::{Role, Shared};
use self::writer::{linger_for, Writer};
use crate::metrics::ProberMetrics;
use crate::store::{SiteRecord, Store, StoreError};
use locus_prober::client::{client_endpoint, ConnectError};
use locus_prober::identity::{IdentityError, ProberIdentity};

/// How often old raw samples are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How often the wall clock is compared with the monotonic clock.
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Most QUIC handshakes in progress at once.
const MAX_HANDSHAKES: usize = 32;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("opening the database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A task of the daemon panicked or was cancelled.
    #[error("a daemon task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot open the probing socket: {0}")]
    Endpoint(#[from] ConnectError),
    /// The prober's identity key (`[prober] key_file`) could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// `[echo] listen` could not be served (address in use, or not local).
    #[error("[echo] listen: {0}")]
    Echo(#[from] locus_responder::server::ServerError),
    /// The echo's session key could not be made.
    #[error("[echo]: {0}")]
    EchoKey(#[from] locus_responder::session_key::SessionKeyError),
}

/// Why a reload was rejected; the previous configuration stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new configuration file does not load (fix it and reload again).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Recording the new configuration's sites in the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database task panicked or was cancelled.
    #[error("a daemon task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The daemon is shutting down or has stopped.
    #[error("the daemon has stopped")]
    Stopped,
}

/// What a reload changed. Settings that need a restart (`listen`, `db`, ...) are kept as
/// they were and named in `need_restart`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: usize,
    pub removed: usize,
    pub restarted: usize,
    pub unchanged: usize,
    pub need_restart: Vec<&'static str>,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} removed, {} restarted, {} unchanged",
            self.added, self.removed, self.restarted, self.unchanged
        )?;
        if !self.need_restart.is_empty() {
            write!(
                f,
                "; {} changed but need a restart (kept as they were)",
                self.need_restart.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A running daemon.
pub struct DaemonHandle {
    http_addr: SocketAddr,
    reload: mpsc::Sender<ReloadRequest>,
    shutdown: watch::Sender<bool>,
    main: JoinHandle<Result<(), DaemonError>>,
}

impl DaemonHandle {
    /// The address the HTTP endpoints listen on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Re-reads the configuration file and applies its target list (like SIGHUP).
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.reload
            .send(tx)
            .await
            .map_err(|_| ReloadError::Stopped)?;
        rx.await.map_err(|_| ReloadError::Stopped)?
    }

    /// Stops probing (a round in progress is dropped), flushes the database and returns.
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        let _ = self.shutdown.send(true);
        self.main.await?
    }
}

struct Running {
    spec: TargetConfig,
    role: Role,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Targets and landmarks are probed alike; a landmark may share a target's name.
type Key = (Role, String);

/// Everything `config` probes: its targets, then its landmarks (as targets whose claim is
/// their site).
fn probed(config: &Config) -> Vec<(Role, TargetConfig)> {
    let targets = config.targets.iter().map(|t| (Role::Node, t.clone()));
    let landmarks = config.landmarks.iter().map(|l| {
        (
            Role::Landmark,
            TargetConfig {
                name: l.name.clone(),
                address: l.address.clone(),
                claim: l.site.clone(),
                spki: l.spki.clone(),
                module: None,
                echo: None,
            },
        )
    });
    targets.chain(landmarks).collect()
}

/// Loads `config_path`, opens the database, binds the HTTP endpoints and starts probing.
pub async fn start(config_path: PathBuf) -> Result<DaemonHandle, DaemonError> {
    start_with_clock(config_path, Arc::new(SystemClock)).await
}

/// Like [`start`], with stored timestamps taken from `clock` (tests make it jump).
pub async fn start_with_clock(
    config_path: PathBuf,
    clock: Arc<dyn WallClock>,
) -> Result<DaemonHandle, DaemonError> {
    let config = Config::load(&config_path)?;
    let identity = match &config.key_file {
        Some(path) => {
            let id = ProberIdentity::load(path)?;
            info!(key_id = %id.public_key().key_id(), "rounds and evidence records are signed");
            Some(Arc::new(id))
        }
        None => {
            warn!(
                "no [prober] key_file: rounds and evidence records are stored unsigned, and a \
                 monitor that knows this prober's key rejects them (locus prober keygen)"
            );
            None
        }
    };
    let store = {
        let (db, busy, id, site, sites) = (
            config.db.clone(),
            config.db_busy_timeout,
            config.prober_id.clone(),
            config.prober_site.clone(),
            site_records(&config),
        );
        tokio::task::spawn_blocking(move || -> Result<Store, StoreError> {
            let mut s = Store::connect(&db, busy)?;
            s.upsert_world(&id, &site, &sites)?;
            Ok(s)
        })
        .await??
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: config.listen,
            source,
        })?;
    let http_addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: config.listen,
            source,
        })?;
    let mut registry = Registry::default();
    let metrics = ProberMetrics::with_rtt_buckets(
        &mut registry,
        crate::metrics::RttBuckets::new(&config.rtt_buckets),
    );
    crate::self_metrics::register(&mut registry);
    metrics.config_applied(clock.unix_now_ns() as f64 / 1e9);
    let ready = Arc::new(AtomicBool::new(false));
    let (reload_tx, reload_rx) = mpsc::channel(4);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (http_stop_tx, mut http_stop_rx) = watch::channel(false);
    let endpoints = Endpoints {
        registry: Arc::new(registry),
        ready: ready.clone(),
        reload: Some(reload_tx.clone()),
    };
    let echo = config.echo.map(start_echo).transpose()?;
    let http = tokio::spawn(http::serve(listener, endpoints, async move {
        let _ = http_stop_rx.wait_for(|s| *s).await;
    }));
    let store = Arc::new(Mutex::new(store));
    let writer = Writer::start(
        store.clone(),
        metrics.clone(),
        linger_for(config.probe.round),
        config.db_max_pending_rounds,
        identity.clone(),
    );
    let shared = Arc::new(Shared {
        prober_id: config.prober_id.clone(),
        endpoint: client_endpoint(config.bind)?,
        bind: config.bind,
        udp: tokio::sync::OnceCell::new(),
        handshakes: tokio::sync::Semaphore::new(MAX_HANDSHAKES),
        store,
        writer: writer.sender(),
        metrics,
        clock,
        identity,
    });
    info!(
        listen = %http_addr,
        targets = config.targets.len(),
        landmarks = config.landmarks.len(),
        "prober daemon started"
    );
    let main = tokio::spawn(main_loop(
        config_path,
        config,
        shared,
        writer,
        ready,
        reload_rx,
        shutdown_rx,
        (http, echo),
        http_stop_tx,
    ));
    Ok(DaemonHandle {
        http_addr,
        reload: reload_tx,
        shutdown: shutdown_tx,
        main,
    })
}

/// Answers echo challenges on `listen` for peer probers, which list this prober as a
/// `[[landmark]]` at its site: prober<->prober round trips then calibrate the verdicts. A
/// responder without evidence backends and without spinning (a daemon does not burn a core for
/// its peers; a wake-up adds tens of µs, far below what calibration resolves).
fn start_echo(listen: SocketAddr) -> Result<locus_responder::server::Server, DaemonError> {
    use locus_responder::evidence::EvidenceSource;
    use locus_responder::server::{Server, ServerConfig};
    use locus_responder::session_key::SessionKey;
    let config = ServerConfig {
        spin_after_answer: Duration::ZERO,
        ..ServerConfig::new(listen)
    };
    let key = SessionKey::generate()?;
    let server = Server::start(config, key, EvidenceSource::new(None, None))?;
    info!(
        listen = %server.local_addr().map_or(listen, |a| a),
        spki = %hex::encode(server.session_key().spki_der()),
        "answering peer probers' echoes (a new session key each start: peers learn it)"
    );
    Ok(server)
}

fn site_records(c: &Config) -> Vec<SiteRecord> {
    c.sites
        .iter()
        .map(|s| SiteRecord {
            name: s.name.clone(),
            lat: s.lat,
            lon: s.lon,
        })
        .collect()
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site, all parts of the daemon"
)]
async fn main_loop(
    config_path: PathBuf,
    mut config: Config,
    shared: Arc<Shared>,
    writer: Writer,
    ready: Arc<AtomicBool>,
    mut reload_rx: mpsc::Receiver<ReloadRequest>,
    mut shutdown_rx: watch::Receiver<bool>,
    (http, echo): (
        JoinHandle<std::io::Result<()>>,
        Option<locus_responder::server::Server>,
    ),
    http_stop: watch::Sender<bool>,
) -> Result<(), DaemonError> {
    let mut running: BTreeMap<Key, Running> = BTreeMap::new();
    for (role, t) in probed(&config) {
        spawn_target(&shared, &config, role, t, &mut running);
    }
    set_target_count(&shared, &running);
    ready.store(true, Ordering::Release);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let steps = StepDetector::new(shared.clock.as_ref());
    let mut clock_check = tokio::time::interval(CLOCK_CHECK_EVERY);
    loop {
        tokio::select! {
            // `wait_for` returns a guard that is not Send: drop it inside the branch future.
            _ = async { let _ = shutdown_rx.wait_for(|s| *s).await; } => break,
            req = reload_rx.recv() => {
                let Some(req) = req else { break };
                let result = reload(&config_path, &mut config, &shared, &mut running).await;
                writer.set_linger(linger_for(config.probe.round));
                match &result {
                    Ok(summary) => {
                        shared.metrics.reloads.inc();
                        shared.metrics.config_applied(shared.unix_now_ns() as f64 / 1e9);
                        info!("configuration reloaded: {summary}");
                    }
                    Err(e) => {
                        shared.metrics.config_rejected();
                        warn!("configuration reload rejected, keeping the previous one: {e}");
                    }
                }
                let _ = req.send(result);
            }
            _ = clock_check.tick() => {
                if let Some(step) = steps.check(shared.clock.as_ref()) {
                    shared.metrics.wall_clock_steps.inc();
                    warn!(
                        "the wall clock stepped by {:+.3} s: stored timestamps follow it; \
                         round trips and probe schedules use the monotonic clock",
                        step as f64 / 1e9
                    );
                }
            }
            _ = prune.tick() => {
                if let Some(keep) = config.retention.samples {
                    let before = shared.unix_now_ns()
                        - i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX);
                    let s = shared.clone();
                    let res = tokio::task::spawn_blocking(move || {
                        s.store.lock().unwrap_or_else(|p| p.into_inner()).prune_raw(before)
                    })
                    .await;
                    match res {
                        Ok(Ok(p)) => debug!(
                            samples = p.samples,
                            bundles = p.bundles,
                            landmark_rounds = p.landmark_rounds,
                            "pruned"
                        ),
                        _ => warn!("pruning old samples and bundles failed: {res:?}"),
                    }
                }
            }
        }
    }
    info!("prober daemon stopping");
    shared.endpoint.close(0u32.into(), b"prober stopping");
    ready.store(false, Ordering::Release);
    for r in running.values() {
        let _ = r.stop.send(true);
    }
    for (_, r) in std::mem::take(&mut running) {
        let _ = r.task.await;
    }
    if let Some(echo) = echo {
        echo.shutdown().await;
    }
    // Every target has stopped: store what waits.
    writer.finish().await;
    let _ = http_stop.send(true);
    let _ = http.await;
    let s = shared.clone();
    tokio::task::spawn_blocking(move || {
        s.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint()
    })
    .await??;
    info!("prober daemon stopped");
    Ok(())
}

/// `locus_targets` counts nodes, not landmarks.
fn set_target_count(shared: &Shared, running: &BTreeMap<Key, Running>) {
    let nodes = running.keys().filter(|k| k.0 == Role::Node).count();
    shared.metrics.targets.set(nodes as i64);
}

fn spawn_target(
    shared: &Arc<Shared>,
    config: &Config,
    role: Role,
    spec: TargetConfig,
    running: &mut BTreeMap<Key, Running>,
) {
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(target::run(
        shared.clone(),
        spec.clone(),
        role,
        config.settings_for(&spec).clone(),
        stop_rx,
    ));
    running.insert(
        (role, spec.name.clone()),
        Running {
            spec,
            role,
            stop,
            task,
        },
    );
}

async fn stop_target(shared: &Shared, r: Running) {
    let _ = r.stop.send(true);
    let _ = r.task.await;
    match r.role {
        Role::Node => shared
            .metrics
            .remove_target(&target::labels(&shared.prober_id, &r.spec)),
        Role::Landmark => shared
            .metrics
            .remove_landmark(&target::landmark_labels(&shared.prober_id, &r.spec)),
    }
}

/// Applies a new configuration's targets: unchanged targets keep running (and their state);
/// changed ones restart; removed ones stop. A change of `[probe]` or `[modules]` restarts every
/// target.
/// `listen`, `db`, `db_busy_timeout_ms`, `db_max_pending_rounds`, `bind`, `[echo] listen`, the
/// prober's id and key file need a restart and are left as they were.
async fn reload(
    path: &std::path::Path,
    config: &mut Config,
    shared: &Arc<Shared>,
    running: &mut BTreeMap<Key, Running>,
) -> Result<ReloadSummary, ReloadError> {
    let new = Config::load(path)?;
    let mut fixed = Vec::new();
    if new.listen != config.listen {
        fixed.push("listen");
    }
    if new.db != config.db {
        fixed.push("db");
    }
    if new.db_busy_timeout != config.db_busy_timeout {
        fixed.push("db_busy_timeout_ms");
    }
    if new.db_max_pending_rounds != config.db_max_pending_rounds {
        fixed.push("db_max_pending_rounds");
    }
    if new.bind != config.bind {
        fixed.push("bind");
    }
    if new.prober_id != config.prober_id {
        fixed.push("prober.id");
    }
    if new.key_file != config.key_file {
        fixed.push("prober.key_file");
    }
    if new.echo != config.echo {
        fixed.push("echo.listen");
    }
    if new.rtt_buckets != config.rtt_buckets {
        // Every target's histogram was made with the old buckets.
        fixed.push("probe.rtt_buckets");
    }
    {
        let (s, id, site, sites) = (
            shared.clone(),
            config.prober_id.clone(),
            new.prober_site.clone(),
            site_records(&new),
        );
        tokio::task::spawn_blocking(move || {
            s.store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .upsert_world(&id, &site, &sites)
        })
        .await??;
    }
    let settings_changed = new.probe != config.probe || new.modules != config.modules;
    let mut summary = ReloadSummary {
        need_restart: fixed,
        ..ReloadSummary::default()
    };
    let wanted_all = probed(&new);
    let keys: Vec<Key> = running.keys().cloned().collect();
    for key in keys {
        let wanted = wanted_all
            .iter()
            .find(|(role, t)| (*role, &t.name) == (key.0, &key.1))
            .map(|(_, t)| t);
        let same = wanted.is_some_and(|t| Some(t) == running.get(&key).map(|r| &r.spec));
        if !same || settings_changed {
            if let Some(r) = running.remove(&key) {
                stop_target(shared, r).await;
            }
            if wanted.is_some() {
                summary.restarted += 1;
            } else {
                summary.removed += 1;
            }
        } else {
            summary.unchanged += 1;
        }
    }
    let previous: Vec<Key> = probed(config)
        .into_iter()
        .map(|(role, t)| (role, t.name))
        .collect();
    let (prober_id, key_file, listen, db, busy, max_pending, bind, buckets) = (
        config.prober_id.clone(),
        config.key_file.clone(),
        config.listen,
        config.db.clone(),
        config.db_busy_timeout,
        config.db_max_pending_rounds,
        config.bind,
        std::mem::take(&mut config.rtt_buckets),
    );
    *config = new;
    config.rtt_buckets = buckets;
    config.db_busy_timeout = busy;
    config.db_max_pending_rounds = max_pending;
    config.prober_id = prober_id;
    config.key_file = key_file;
    config.listen = listen;
    config.db = db;
    config.bind = bind;
    for (role, t) in probed(config) {
        let key = (role, t.name.clone());
        if !running.contains_key(&key) {
            if !previous.contains(&key) {
                summary.added += 1;
            }
            spawn_target(shared, config, role, t, running);
        }
    }
    set_target_count(shared, running);
    Ok(summary)
}
