//! `locus monitor` and `locus export` on a database written through the store API, and the
//! `locus prober --config` daemon as a process: SIGHUP reloads, SIGTERM stops cleanly.

mod evidence_lab;
mod fixtures;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use locus_analysis::judge::geo::{distance_km, LatLon};
use locus_fleet::integrity::{seal_evidence, seal_landmark, seal_round};
use locus_fleet::store::{
    Database, EvidenceRecord, LandmarkRoundRecord, RoundRecord, SampleRecord, SiteRecord, Store,
    VerdictRecord,
};
use locus_prober::identity::ProberIdentity;
use locus_test_support::pg_server;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SITES: &[(&str, f64, f64)] = &[
    ("fra", 50.11, 8.68),
    ("ams", 52.37, 4.90),
    ("par", 48.86, 2.35),
    ("waw", 52.23, 21.01),
];
const PROBERS: &[&str] = &["ams", "par", "waw"];
const S: i64 = 1_000_000_000;

fn locus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_locus"))
}

fn pos(site: &str) -> LatLon {
    let (_, lat, lon) = SITES.iter().find(|s| s.0 == site).unwrap();
    LatLon::new(*lat, *lon)
}

/// RTT from a prober's site to a node at `at`, inflation 1.5, in ns.
fn rtt_ns(prober: &str, at: &str, i: u64) -> u64 {
    let ms = 2.0 * distance_km(pos(prober), pos(at)) * 1.5 / 200.0;
    ((ms + 0.05 + (i % 7) as f64 * 0.01) * 1e6) as u64
}

fn round(prober: &str, node: &str, started: i64, min_eff: Option<u64>, error: bool) -> RoundRecord {
    RoundRecord {
        prober: prober.into(),
        target: node.into(),
        claim: "fra".into(),
        address: "127.0.0.1:1".into(),
        spki: None,
        started_unix_ns: started,
        duration_ns: 10 * S,
        sent: if error { 0 } else { 100 },
        answered: if error { 0 } else { 100 },
        lost: 0,
        late: 0,
        out_of_order: 0,
        violations: 0,
        min_rtt_ns: min_eff,
        p50_rtt_ns: min_eff,
        p99_rtt_ns: min_eff,
        min_eff_rtt_ns: min_eff,
        inside_p50_ns: Some(20_000),
        error: error.then(|| "unreachable".to_string()),
        seal: None,
    }
}

/// The identity key of `fill`'s prober `p` (a fixed seed per prober).
fn key(prober: &str) -> ProberIdentity {
    let mut seed = [7u8; 32];
    for (i, b) in prober.bytes().enumerate() {
        seed[i % 32] ^= b;
    }
    ProberIdentity::from_seed(seed)
}

/// `r` and its samples as prober `r.prober` signs them.
fn signed(mut r: RoundRecord, samples: &[SampleRecord]) -> RoundRecord {
    seal_round(&key(&r.prober), &mut r, samples);
    r
}

/// A monitor config (in `dir`) for `fill`'s world: its sites, its probers with their keys (or
/// `keys` instead), the nodes claiming fra.
fn fill_config(dir: &Path, keys: Option<&[(&str, String)]>) -> PathBuf {
    let mut s = String::new();
    for (n, lat, lon) in SITES {
        s.push_str(&format!(
            "[[sites]]\nname = \"{n}\"\nlat = {lat}\nlon = {lon}\n"
        ));
    }
    let own: Vec<(&str, String)> = PROBERS
        .iter()
        .map(|p| (*p, key(p).public_key().to_string()))
        .collect();
    for (p, k) in keys.unwrap_or(&own) {
        s.push_str(&format!(
            "[[probers]]\nid = \"{p}\"\nsite = \"{p}\"\npublic_key = \"{k}\"\n"
        ));
    }
    for n in ["honest", "moved", "dark"] {
        s.push_str(&format!("[[nodes]]\nname = \"{n}\"\nclaim = \"fra\"\n"));
    }
    let path = dir.join("monitor.toml");
    std::fs::write(&path, s).unwrap();
    path
}

/// Three probers; `honest` at fra, `moved` was at fra and is now at waw, `dark` never answers.
/// Window rounds start at `t - 50 s`, history rounds at `t - 1000 s`.
fn fill(db: &Database, t: i64) {
    fill_keyed(db, t, None);
}

/// Stores a round of `prober` against `node` from `start`: `n` samples, 10 per second, as
/// from a node at `at`, under session key `key` (hex).
fn window_round(
    s: &mut Store,
    (prober, node): (&str, &str),
    start: i64,
    (at, n): (&str, u64),
    key: Option<&str>,
) {
    let samples: Vec<SampleRecord> = (0..n)
        .map(|i| SampleRecord {
            sent_unix_ns: start + i as i64 * S / 10,
            rtt_ns: rtt_ns(prober, at, i),
            inside_ns: 20_000,
        })
        .collect();
    let min = samples.iter().map(|x| x.rtt_ns - x.inside_ns).min();
    let mut r = round(prober, node, start, min, false);
    r.spki = key.map(str::to_owned);
    s.insert_round(&signed(r, &samples), &samples).unwrap();
}

/// [`SITES`] as the store records them.
fn site_records() -> Vec<SiteRecord> {
    SITES
        .iter()
        .map(|(n, lat, lon)| SiteRecord {
            name: n.to_string(),
            lat: *lat,
            lon: *lon,
        })
        .collect()
}

/// [`fill`], the window rounds of `honest` under session key `key` (hex) when given.
fn fill_keyed(db: &Database, t: i64, key: Option<&str>) {
    let mut s = Store::connect(db, Duration::from_secs(5)).unwrap();
    let sites = site_records();
    for p in PROBERS {
        s.upsert_world(p, p, &sites).unwrap();
    }
    for p in PROBERS {
        for (node, now_at) in [("honest", "fra"), ("moved", "waw")] {
            for k in 0..5 {
                let hist = rtt_ns(p, "fra", 0) - 20_000;
                let r = round(p, node, t - 1000 * S + k * 10 * S, Some(hist), false);
                s.insert_round(&signed(r, &[]), &[]).unwrap();
            }
            let key = key.filter(|_| node == "honest");
            window_round(&mut s, (p, node), t - 50 * S, (now_at, 100), key);
        }
        let dark = signed(round(p, "dark", t - 50 * S, None, true), &[]);
        s.insert_round(&dark, &[]).unwrap();
    }
}

/// The daemon stores no verified evidence yet: judge on timing alone.
fn policy() -> PathBuf {
    fixtures::path("policy/timing-only.toml")
}

/// `locus monitor --db DB --config CONFIG --policy` the timing-only policy.
fn monitor_on(db: &Path, config: &Path) -> Command {
    let mut c = locus();
    c.arg("monitor")
        .arg("--db")
        .arg(db)
        .arg("--config")
        .arg(config)
        .arg("--policy")
        .arg(policy());
    c
}

#[test]
fn monitor_once_judges_stores_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    judge_once_and_export(&Database::Sqlite(db));
    let missing = locus()
        .args(["export", "--db"])
        .arg(dir.path().join("nope.db"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn monitor_once_judges_stores_and_exports_on_postgres() {
    let url = pg_server::shared().unwrap().fresh_database().unwrap();
    judge_once_and_export(&Database::Postgres(url));
}

/// `locus export --db DB`: its stdout, after checking it succeeded.
fn export(db: &str, table: &str, format: &str) -> String {
    export_args(db, &["--table", table, "--format", format])
}

/// `locus export --db DB ARGS...`: its stdout, after checking it succeeded.
fn export_args(db: &str, args: &[&str]) -> String {
    let out = locus()
        .args(["export", "--db", db])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `locus monitor --once --json --db DB --at AT ARGS...` on a database where some node is not
/// located: checks exit code 1 and returns the judgements (and the raw text for messages).
fn monitor_once(
    db: &str,
    at: &str,
    args: &[&dyn AsRef<std::ffi::OsStr>],
) -> (serde_json::Value, String) {
    let out = locus()
        .args(["monitor", "--once", "--json", "--db", db, "--at", at])
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (v, stdout)
}

/// [`monitor_once`] at `at` under a verdict policy and an evidence policy.
fn monitor_verifying(
    db: &Path,
    at: u64,
    verdict_policy: &Path,
    evidence_policy: &Path,
) -> (serde_json::Value, String) {
    monitor_once(
        db.to_str().unwrap(),
        &at.to_string(),
        &[
            &"--policy",
            &verdict_policy,
            &"--evidence-policy",
            &evidence_policy,
            // Bundles stored unsigned: these tests are about evidence, not rows.
            &"--allow-unsigned",
        ],
    )
}

/// Fills `db`, judges it once with `locus monitor --db` and exports it with `locus export`.
fn judge_once_and_export(db: &Database) {
    let arg = match db {
        Database::Sqlite(p) => p.to_str().unwrap().to_owned(),
        Database::Postgres(url) => url.clone(),
    };
    let t = 1_800_000_000 * S;
    fill(db, t);
    let dir = tempfile::tempdir().unwrap();
    let config = fill_config(dir.path(), None);
    let (v, stdout) = monitor_once(
        &arg,
        "1800000000",
        &[&"--policy", &policy(), &"--config", &config],
    );
    let verdict = |name: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap_or_else(|| panic!("{name} not judged: {stdout}"))["verdict"]
            .clone()
    };
    assert_eq!(verdict("honest"), "located", "{stdout}");
    assert_eq!(verdict("moved"), "relocated", "{stdout}");
    assert_eq!(verdict("dark"), "unreachable", "{stdout}");

    let store = Store::connect_existing(db, Duration::from_secs(5)).unwrap();
    let moved = store.latest_verdict("moved").unwrap().unwrap();
    assert_eq!(moved.verdict, "relocated");
    assert!(!moved.reasons.is_empty());
    assert_eq!(moved.at_unix_ns, t);
    drop(store);

    let csv = export(&arg, "verdicts", "csv");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    // One node, a time span (RFC 3339 or Unix seconds; until is exclusive).
    let only = |extra: &[&str]| {
        let args = [&["--table", "rounds", "--format", "csv"], extra].concat();
        export_args(&arg, &args).lines().count() - 1
    };
    // moved: 3 probers × 6 rounds; its window rounds start 50 s before t = 2027-01-15T08:00:00Z.
    assert_eq!(only(&["--node", "moved"]), 18);
    assert_eq!(
        only(&["--node", "moved", "--since", "2027-01-15T07:59:10Z"]),
        3
    );
    assert_eq!(only(&["--node", "moved", "--until", "1799999950"]), 15);
    assert_eq!(only(&["--node", "nobody"]), 0);
    assert!(csv.starts_with("id,node,claim,at_unix_ns,"), "{csv}");
    let rounds = export(&arg, "rounds", "jsonl");
    // 3 probers × (2 nodes × 6 rounds + 1 failed round)
    assert_eq!(rounds.lines().count(), 39);
    let first: serde_json::Value = serde_json::from_str(rounds.lines().next().unwrap()).unwrap();
    assert_eq!(first["prober"], "ams");
    assert_eq!(
        export(&arg, "samples", "csv").lines().count(),
        1 + 3 * 2 * 100
    );
}

/// Two prober daemons (two sites) write into one PostgreSQL database at the same time; the
/// monitor judges the node with both probers' rounds and the export holds both.
#[test]
fn two_probers_write_one_postgres_database_that_monitor_and_export_read() {
    let dir = tempfile::tempdir().unwrap();
    let url = pg_server::shared().unwrap().fresh_database().unwrap();
    let (responder, raddr) = start_responder();
    let mut keys = Vec::new();
    let probers: Vec<Proc> = [("p-ams", "ams"), ("p-par", "par")]
        .iter()
        .map(|(id, site)| {
            let (cfg, key) = keyed_daemon(dir.path(), &url, (id, site), raddr, &["n"]);
            keys.push((*id, *site, key));
            Proc(prober(&cfg).stderr(Stdio::null()).spawn().unwrap())
        })
        .collect();
    let config = daemon_monitor_config(dir.path(), &keys, &["n"]);
    for (mut p, id) in probers.into_iter().zip(["p-ams", "p-par"]) {
        let addr = p.listen();
        wait_for(addr, "three rounds", |t| {
            t.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("locus_rounds_total{{prober=\"{id}\",target=\"n\""))
                        .and_then(|r| r.rsplit(' ').next()?.parse::<f64>().ok())
                })
                .is_some_and(|v| v >= 3.0)
        });
        p.signal(Signal::SIGTERM);
        assert_eq!(p.exit_code(), Some(0), "{id}");
    }
    responder.signal(Signal::SIGTERM);

    let rounds = export(&url, "rounds", "jsonl");
    for id in ["p-ams", "p-par"] {
        assert!(
            rounds.contains(&format!("\"prober\":\"{id}\"")),
            "no round of {id}:\n{rounds}"
        );
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // One node near both probers at once, 430 km apart: not located, whatever the verdict.
    let (v, stdout) = monitor_once(
        &url,
        &(now + 1.0).to_string(),
        &[&"--policy", &policy(), &"--config", &config],
    );
    let mut seen: Vec<&str> = v["nodes"][0]["distances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["prober"].as_str().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, ["p-ams", "p-par"], "{stdout}");
    assert_eq!(export(&url, "verdicts", "csv").lines().count(), 2);
}

/// Unreachable servers, refused credentials and newer schemas end the CLI with exit code 2
/// and a message that names the problem, never the password.
#[test]
fn cli_names_postgres_problems_clearly() {
    let server = pg_server::shared().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let newer = server.fresh_database().unwrap();
    Store::connect(&Database::Postgres(newer.clone()), Duration::from_secs(5)).unwrap();
    let dbname = newer.rsplit('/').next().unwrap();
    server
        .sql(dbname, "UPDATE locus_schema SET version = 99")
        .unwrap();
    for (url, expected) in [
        (
            format!("postgres://locus:hunter2@127.0.0.1:{port}/x"),
            "cannot connect to PostgreSQL",
        ),
        (
            server.url_as(pg_server::USER, "hunter2", "postgres"),
            "password authentication failed",
        ),
        (newer, "newer than this locus supports"),
    ] {
        for cmd in [
            &["export"][..],
            &["monitor", "--once", "--allow-unsigned", "--timing-only"][..],
        ] {
            let out = locus().args(cmd).args(["--db", &url]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {stderr}");
            assert!(stderr.contains(expected), "{cmd:?}: {stderr}");
            assert!(!stderr.contains("hunter2"), "{cmd:?}: {stderr}");
        }
    }
}

/// A PostgreSQL password read from a file (`--db-password-file`, `LOCUS_DB_PASSWORD_FILE`,
/// the monitor config's `db_password_file`): the URL and the command line carry none, and a
/// wrong one is named without being shown.
#[test]
fn postgres_password_from_a_file() {
    let server = pg_server::shared().unwrap();
    let url = server.fresh_database().unwrap();
    Store::connect(&Database::Postgres(url.clone()), Duration::from_secs(5)).unwrap();
    let bare = url.replacen(
        &format!("{}:{}@", pg_server::USER, pg_server::PASSWORD),
        &format!("{}@", pg_server::USER),
        1,
    );
    assert!(!bare.contains(pg_server::PASSWORD), "{bare}");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("db.password");
    std::fs::write(&pw, format!("{}\n", pg_server::PASSWORD)).unwrap();

    let flag = locus()
        .args(["export", "--db", &bare, "--db-password-file"])
        .arg(&pw)
        .output()
        .unwrap();
    assert!(
        flag.status.success(),
        "{}",
        String::from_utf8_lossy(&flag.stderr)
    );
    let env = locus()
        .arg("export")
        .env("LOCUS_DB", &bare)
        .env("LOCUS_DB_PASSWORD_FILE", &pw)
        .output()
        .unwrap();
    assert!(
        env.status.success(),
        "{}",
        String::from_utf8_lossy(&env.stderr)
    );
    // Without it the server refuses.
    let none = locus().args(["export", "--db", &bare]).output().unwrap();
    assert_eq!(none.status.code(), Some(2));

    // The monitor's config names the file, relative to itself.
    let config = fill_config(dir.path(), None);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("db_password_file = \"db.password\"\n{text}"),
    )
    .unwrap();
    let out = locus()
        .args([
            "monitor",
            "--once",
            "--timing-only",
            "--db",
            &bare,
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    // No rows: nothing located (exit 1), but connected and judged.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no node has rounds"));

    std::fs::write(&pw, "hunter2\n").unwrap();
    let wrong = locus()
        .args(["export", "--db", &bare, "--db-password-file"])
        .arg(&pw)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Reads the announce line and returns the HTTP address.
    fn listen(&mut self) -> SocketAddr {
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).expect("announce line");
        v["listen"].as_str().unwrap().parse().unwrap()
    }

    fn signal(&self, s: Signal) {
        kill(Pid::from_raw(self.0.id() as i32), s).unwrap();
    }

    /// Waits (bounded) for the process to exit and returns its code.
    fn exit_code(mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st.code();
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `locus responder` on a free loopback port, and its address.
fn start_responder() -> (Proc, SocketAddr) {
    let mut responder = Proc(
        locus()
            .args(["responder", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = responder.listen();
    (responder, addr)
}

/// A prober daemon config: prober `(id, site)` probes `targets` (all served at `raddr`,
/// claiming ams) 100 times a second in 0.1 s rounds, without evidence, into `db`.
fn daemon_config(
    db: &str,
    (id, site): (&str, &str),
    raddr: SocketAddr,
    targets: &[&str],
) -> String {
    let mut s = format!(
        "db = \"{db}\"\nlisten = \"127.0.0.1:0\"\nbind = \"127.0.0.1:0\"\n\
         [prober]\nid = \"{id}\"\nsite = \"{site}\"\n\
         [probe]\nrate_hz = 100.0\nround_s = 0.1\nevidence_interval_s = 0\n\
         [[sites]]\nname = \"ams\"\nlat = 52.37\nlon = 4.9\n\
         [[sites]]\nname = \"par\"\nlat = 48.86\nlon = 2.35\n"
    );
    for t in targets {
        s.push_str(&format!(
            "[[targets]]\nname = \"{t}\"\naddress = \"{raddr}\"\nclaim = \"ams\"\n"
        ));
    }
    s
}

/// Like [`daemon_config`], written to `dir/ID.toml` with a new identity key `dir/ID.key`;
/// returns the config's path and the key's public half.
fn keyed_daemon(
    dir: &Path,
    db: &str,
    (id, site): (&str, &str),
    raddr: SocketAddr,
    targets: &[&str],
) -> (PathBuf, String) {
    let key_file = dir.join(format!("{id}.key"));
    let identity = ProberIdentity::generate();
    identity.write_new(&key_file).unwrap();
    let text = daemon_config(db, (id, site), raddr, targets).replacen(
        "[probe]",
        &format!("key_file = \"{}\"\n[probe]", key_file.display()),
        1,
    );
    let cfg = dir.join(format!("{id}.toml"));
    std::fs::write(&cfg, text).unwrap();
    (cfg, identity.public_key().to_string())
}

/// A monitor config (`dir/monitor.toml`) for daemons of [`daemon_config`]'s world: probers
/// `(id, site, public key)`, `nodes` claiming ams.
fn daemon_monitor_config(dir: &Path, probers: &[(&str, &str, String)], nodes: &[&str]) -> PathBuf {
    let mut s = String::from(
        "[[sites]]\nname = \"ams\"\nlat = 52.37\nlon = 4.9\n\
         [[sites]]\nname = \"par\"\nlat = 48.86\nlon = 2.35\n",
    );
    for (id, site, key) in probers {
        s.push_str(&format!(
            "[[probers]]\nid = \"{id}\"\nsite = \"{site}\"\npublic_key = \"{key}\"\n"
        ));
    }
    for n in nodes {
        s.push_str(&format!("[[nodes]]\nname = \"{n}\"\nclaim = \"ams\"\n"));
    }
    let path = dir.join("monitor.toml");
    std::fs::write(&path, s).unwrap();
    path
}

/// `locus prober --config cfg` with its announce line on a pipe.
fn prober(cfg: &Path) -> Command {
    let mut c = locus();
    c.arg("prober")
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::piped());
    c
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_owned())
}

fn wait_for(addr: SocketAddr, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, text) = get(addr, "/metrics");
        if pred(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn promtool_check(text: &str) {
    let promtool = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .expect("promtool not found on PATH: run scripts/setup.sh (Debian package `prometheus`)");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `locus monitor --evidence-policy`: a node's stored bundle is verified into its verdict; a
/// wrong nonce, a tampered quote and undecodable bytes each give `evidence-invalid` naming the
/// check that failed.
#[test]
fn monitor_verifies_stored_bundles_by_named_check() {
    let lab = evidence_lab::lab();
    let dir = tempfile::tempdir().unwrap();
    let evidence_policy = lab.write_policy(dir.path());
    let verdict_policy = fixtures::path("policy/no-anchors.toml");
    let t = lab.now as i64 * S;
    let mut tampered = lab.bundle.clone();
    let tpm = tampered.tpm.as_mut().unwrap();
    let last = tpm.signature.len() - 1;
    tpm.signature[last] ^= 1;
    let (nonce, key) = (lab.bundle.nonce.clone(), lab.peer_spki.clone());
    let valid = lab.bundle.to_cbor();
    // (case, stored bundle, nonce the prober asked, session key it saw, failed check)
    type Case<'a> = (&'a str, &'a [u8], &'a [u8], &'a [u8], Option<&'a str>);
    let cases: [Case<'_>; 5] = [
        ("valid", &valid, &nonce, &key, None),
        ("wrong nonce", &valid, &[7; 32], &key, Some("nonce")),
        ("other key", &valid, &nonce, &[1; 91], Some("session_spki")),
        (
            "tampered",
            &tampered.to_cbor(),
            &nonce,
            &key,
            Some("tpm_signature"),
        ),
        ("garbage", b"not cbor", &nonce, &key, Some("bundle_format")),
    ];
    for (case, bundle, nonce, seen_key, failed) in cases {
        let db = dir.path().join(format!("{case}.db"));
        // Every prober's samples are under the session key it saw, and each asked for
        // evidence over that connection (ams last: its bundle is the one judged).
        fill_keyed(
            &Database::Sqlite(db.clone()),
            t,
            Some(&hex::encode(seen_key)),
        );
        let mut store = Store::open(&db).unwrap();
        for (k, p) in PROBERS.iter().rev().enumerate() {
            store
                .insert_evidence(&EvidenceRecord {
                    prober: p.to_string(),
                    target: "honest".into(),
                    // all in the second before `lab.now`: the lab's certificates are dated only
                    // seconds earlier
                    at_unix_ns: t - S + k as i64,
                    rtt_ns: Some(5_000_000),
                    ok: true,
                    error: None,
                    nonce: Some(nonce.to_vec()),
                    bundle: Some(bundle.to_vec()),
                    peer_spki: Some(hex::encode(seen_key)),
                    seal: None,
                })
                .unwrap();
        }
        // `moved` is relocated in every case: never all located.
        let (v, stdout) = monitor_verifying(&db, lab.now, &verdict_policy, &evidence_policy);
        let honest = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "honest")
            .unwrap_or_else(|| panic!("{case}: {stdout}"));
        let evidence = honest["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "evidence")
            .unwrap();
        match failed {
            None => {
                assert_eq!(honest["verdict"], "located", "{case}: {honest}");
                assert_eq!(evidence["status"], "pass", "{case}: {evidence}");
            }
            Some(check) => {
                assert_eq!(honest["verdict"], "evidence-invalid", "{case}: {honest}");
                let detail = evidence["detail"].as_str().unwrap();
                assert!(detail.contains(check), "{case}: {evidence}");
            }
        }
        // A node without a stored bundle has no evidence summary.
        let moved = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "moved")
            .unwrap();
        assert!(
            moved["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "evidence" && c["status"] == "skip"),
            "{case}: {moved}"
        );
    }
}

/// Issue 18, item 6: prober `ams` reaches the far TD and gets a valid bundle; probers `fra`,
/// `par` and `waw` reach a near box that is no TD, under its own key, and get fast answers.
/// The near box's samples must not borrow the TD's evidence: not `located`, and the reason
/// names the session key mismatch.
#[test]
fn samples_under_a_key_no_verified_bundle_binds_do_not_locate() {
    let lab = evidence_lab::lab();
    let dir = tempfile::tempdir().unwrap();
    let evidence_policy = lab.write_policy(dir.path());
    let verdict_policy = fixtures::path("policy/no-anchors.toml");
    let t = lab.now as i64 * S;
    let db = dir.path().join("split.db");
    let td_key = hex::encode(&lab.peer_spki);
    let near_key = hex::encode([9u8; 91]);
    let mut s = Store::open(&db).unwrap();
    let sites = site_records();
    let start = t - 50 * S;
    for p in ["ams", "fra", "par", "waw"] {
        s.upsert_world(p, p, &sites).unwrap();
        // ams: a few slow answers from the far TD (at waw); the others: fast answers, as
        // from fra, from the near box
        let (at, n, key) = if p == "ams" {
            ("waw", 10u64, &td_key)
        } else {
            ("fra", 100, &near_key)
        };
        window_round(&mut s, (p, "split"), start, (at, n), Some(key));
    }
    s.insert_evidence(&EvidenceRecord {
        prober: "ams".into(),
        target: "split".into(),
        at_unix_ns: t - S,
        rtt_ns: Some(30_000_000),
        ok: true,
        error: None,
        nonce: Some(lab.bundle.nonce.clone()),
        bundle: Some(lab.bundle.to_cbor()),
        peer_spki: Some(td_key.clone()),
        seal: None,
    })
    .unwrap();
    drop(s);
    let (v, stdout) = monitor_verifying(&db, lab.now, &verdict_policy, &evidence_policy);
    let node = &v["nodes"][0];
    assert_eq!(node["name"], "split", "{stdout}");
    assert_eq!(node["verdict"], "inconclusive", "{node}");
    let checks = node["checks"].as_array().unwrap();
    let check = |name: &str| checks.iter().find(|c| c["name"] == name).cloned();
    assert_eq!(check("evidence").unwrap()["status"], "pass", "{node}");
    assert_eq!(check("session-key").unwrap()["status"], "fail", "{node}");
    let reasons = node["reasons"].to_string();
    assert!(reasons.contains("session key mismatch"), "{reasons}");
    for p in ["fra", "par", "waw"] {
        assert!(
            reasons.contains(&format!("{p}: its 100 samples came from session key")),
            "{reasons}"
        );
    }
}

#[test]
fn monitor_serves_verdicts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    fill(&Database::Sqlite(db.clone()), now);
    let mut p = Proc(
        monitor_on(&db, &fill_config(dir.path(), None))
            .args(["--listen", "127.0.0.1:0", "--interval-s", "0.2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = p.listen();
    assert_eq!(get(addr, "/-/healthy").0, 200);
    let text = wait_for(addr, "the verdict of moved", |t| {
        t.contains(r#"locus_node_verdict{node="moved",claim="fra",verdict="relocated"} 1"#)
    });
    assert!(
        text.contains(r#"locus_node_verdict{node="honest",claim="fra",verdict="located"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("locus_region_radius_meters{node=\"honest\""),
        "{text}"
    );
    assert_eq!(get(addr, "/-/ready").0, 200);
    promtool_check(&text);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(), Some(0));
}

#[test]
fn prober_daemon_process_reloads_on_sighup_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (responder, raddr) = start_responder();
    let cfg = dir.path().join("prober.toml");
    let write_cfg = |targets: &[&str]| {
        std::fs::write(&cfg, daemon_config("d.db", ("p1", "ams"), raddr, targets)).unwrap();
    };
    write_cfg(&["a"]);
    let mut p = Proc(prober(&cfg).stderr(Stdio::null()).spawn().unwrap());
    let addr = p.listen();
    wait_for(addr, "rounds of a", |t| {
        t.contains("locus_rounds_total{prober=\"p1\",target=\"a\"")
    });
    write_cfg(&["a", "b"]);
    p.signal(Signal::SIGHUP);
    wait_for(addr, "rounds of b after SIGHUP", |t| {
        t.contains("locus_rounds_total{prober=\"p1\",target=\"b\"")
    });
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(), Some(0));
    let store = Store::open(&dir.path().join("d.db")).unwrap();
    assert!(!store.rounds_between("b", 0, i64::MAX).unwrap().is_empty());

    // --config and --target exclude each other.
    let both = locus()
        .args(["prober", "--target", "127.0.0.1:1", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    responder.signal(Signal::SIGTERM);
}

/// Issue 19: `[[landmark]]` in the daemon's config is probed like a target (pinned or
/// learned key), its rounds stored, exported and shown per landmark on `/metrics`; a landmark
/// whose pin does not match never counts. The monitor judges with them (its world's landmark
/// minima are checked in `fleet/src/monitor/input.rs`).
#[test]
fn prober_daemon_probes_stores_and_exports_landmarks() {
    let dir = tempfile::tempdir().unwrap();
    let (responder, raddr) = start_responder();
    let cfg = dir.path().join("prober.toml");
    let config = format!(
        "{}[[landmark]]\nname = \"ref-par\"\nsite = \"par\"\naddress = \"{raddr}\"\n\
         [[landmark]]\nname = \"ref-ams\"\nsite = \"ams\"\naddress = \"{raddr}\"\n\
         spki = \"3059301306072a8648ce3d020106082a8648ce3d03010703420004\"\n",
        daemon_config("d.db", ("p1", "ams"), raddr, &["a"])
    );
    std::fs::write(&cfg, config).unwrap();
    let mut p = Proc(prober(&cfg).stderr(Stdio::null()).spawn().unwrap());
    let addr = p.listen();
    let text = wait_for(addr, "a landmark RTT and a failed pinned landmark", |t| {
        t.contains(r#"locus_landmark_rtt_seconds{prober="p1",landmark="ref-par",site="par"}"#)
            && t.contains(
                r#"locus_landmark_probe_success{prober="p1",landmark="ref-ams",site="ams"} 0"#,
            )
            && t.contains("locus_rounds_total{prober=\"p1\",target=\"a\"")
    });
    assert!(
        text.contains(
            r#"locus_landmark_probe_success{prober="p1",landmark="ref-par",site="par"} 1"#
        ),
        "{text}"
    );
    // Landmarks are not targets.
    assert!(text.contains("locus_targets 1"), "{text}");
    assert!(!text.contains("target=\"ref-par\""), "{text}");
    promtool_check(&text);
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(), Some(0));
    responder.signal(Signal::SIGTERM);

    let db = dir.path().join("d.db");
    let store = Store::open(&db).unwrap();
    let minima = store.landmark_minima_between(0, i64::MAX).unwrap();
    assert_eq!(
        minima.len(),
        1,
        "only the reachable landmark counts: {minima:?}"
    );
    assert_eq!(
        (minima[0].prober.as_str(), minima[0].site.as_str()),
        ("p1", "par")
    );
    // A loopback round trip: more than nothing, far less than a second.
    assert!(
        (1_000..1_000_000_000).contains(&minima[0].min_rtt_ns),
        "{minima:?}"
    );
    assert!(store
        .nodes_between(0, i64::MAX)
        .unwrap()
        .iter()
        .all(|(n, _)| n == "a"));
    drop(store);

    let rows: Vec<serde_json::Value> = export(db.to_str().unwrap(), "landmarks", "jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows
        .iter()
        .any(|r| r["landmark"] == "ref-par" && r["min_eff_rtt_ns"].is_u64()));
    let pinned: Vec<_> = rows.iter().filter(|r| r["landmark"] == "ref-ams").collect();
    assert!(!pinned.is_empty());
    assert!(
        pinned
            .iter()
            .all(|r| r["min_rtt_ns"].is_null() && r["error"].is_string()),
        "{pinned:?}"
    );

    // `locus judge --db` judges the daemon's store as the monitor's dry run does, at one
    // instant, and stores nothing.
    let at = (locus_fleet::monitor::unix_now_ns() / S + 1).to_string();
    let db_arg = db.to_str().unwrap();
    let unsigned: [&dyn AsRef<std::ffi::OsStr>; 1] = [&"--allow-unsigned"];
    let judged_db = judge_db(db_arg, &at, &unsigned);
    let dry = monitor_dry_run(db_arg, &at, &unsigned);
    assert_eq!(judged_db["nodes"], dry["nodes"]);
    assert_eq!(judged_db["nodes"][0]["name"], "a", "{judged_db}");
    assert_eq!(export(db_arg, "verdicts", "csv").lines().count(), 1);

    // The monitor judges node a with the landmark in its world (a consistent one: the
    // landmark's prober and site are known).
    let out = locus()
        .args(["monitor", "--once", "--json", "--allow-unsigned", "--db"])
        .arg(&db)
        .arg("--policy")
        .arg(policy())
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["nodes"][0]["name"], "a", "{v}");
}

fn on_path(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} not found on PATH: run scripts/setup.sh (Debian package \
                 prometheus-alertmanager)",
                names.join(" / ")
            )
        })
}

/// GET with HTTP/1.0, so that Go servers answer without chunked encoding.
fn get10(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_owned()))
}

/// A real Alertmanager on a free loopback port, ready; it stops when the handle drops.
fn start_alertmanager(dir: &Path) -> (Proc, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let am_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let am_cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &am_cfg,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let am = Proc(
        Command::new(on_path(&["prometheus-alertmanager", "alertmanager"]))
            .arg(format!("--config.file={}", am_cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while get10(am_addr, "/-/ready").map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "Alertmanager did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (am, am_addr)
}

/// The alerts Alertmanager holds, and the raw body for messages.
fn alerts_in(am_addr: SocketAddr) -> (Vec<serde_json::Value>, String) {
    let (status, body) = get10(am_addr, "/api/v2/alerts").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (v.as_array().unwrap().clone(), body)
}

fn find_alert<'a>(
    alerts: &'a [serde_json::Value],
    name: &str,
    node: &str,
) -> Option<&'a serde_json::Value> {
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == name && a["labels"]["node"] == node)
}

#[test]
fn relocation_alert_reaches_a_real_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let (_am, am_addr) = start_alertmanager(dir.path());

    let db = dir.path().join("m.db");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    fill(&Database::Sqlite(db.clone()), now_s * S);
    // `dark` was already unreachable 400 s ago (and 200 s ago): past the rule's `for: 5m`, so
    // the monitor alerts too, starting when the verdict began.
    let mut store = Store::open(&db).unwrap();
    for ago in [400, 200] {
        store
            .insert_verdict(&VerdictRecord {
                node: "dark".into(),
                claim: "fra".into(),
                at_unix_ns: (now_s - ago) * S,
                window_start_unix_ns: (now_s - ago - 600) * S,
                verdict: "unreachable".into(),
                reasons: vec!["no answer".into()],
                radius_km: None,
                judgement: "{}".into(),
            })
            .unwrap();
    }
    drop(store);
    let config = fill_config(dir.path(), None);
    let monitor_at = |at: i64, extra: &[&str]| {
        monitor_on(&db, &config)
            .args(["--once", "--at", &at.to_string()])
            .args(extra)
            .output()
            .unwrap()
    };
    let monitor = |extra: &[&str]| monitor_at(now_s, extra);
    // A dry run posts nothing and stores nothing.
    let am_url = format!("http://{am_addr}");
    let dry = monitor(&["--alertmanager", &am_url, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(1));
    assert!(alerts_in(am_addr).0.is_empty(), "a dry run alerted");
    let store = Store::open(&db).unwrap();
    assert_eq!(store.latest_verdict("moved").unwrap(), None);
    drop(store);

    // The Alertmanager from the environment, as a unit file would give it.
    let out = monitor_on(&db, &config)
        .args(["--once", "--at", &now_s.to_string()])
        .args(["--external-url", "http://monitor.example:19465/"])
        .env("LOCUS_ALERTMANAGER", &am_url)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (alerts, body) = alerts_in(am_addr);
    let find = |name: &str, node: &str| {
        find_alert(&alerts, name, node)
            .unwrap_or_else(|| panic!("no {name} for {node}: {body}"))
            .clone()
    };
    let moved = find("LocusNodeRelocated", "moved");
    assert_eq!(moved["status"]["state"], "active", "{moved}");
    assert_eq!(moved["labels"]["claim"], "fra");
    assert_eq!(moved["labels"]["severity"], "critical");
    assert_eq!(
        moved["generatorURL"], "http://monitor.example:19465/metrics",
        "{moved}"
    );
    let ann = &moved["annotations"];
    assert!(ann["reasons"].as_str().unwrap().len() > 10, "{ann}");
    assert!(
        ann["description"]
            .as_str()
            .unwrap()
            .starts_with("locus judged moved relocated"),
        "{ann}"
    );
    assert_eq!(ann["runbook_url"], "docs/runbook.md#locusnoderelocated");
    assert_eq!(ann["old_region"], "claimed site fra", "{ann}");
    assert!(ann["new_region"].as_str().unwrap().contains("km"), "{ann}");
    // The alert starts when the verdict changed: now, for moved; 400 s ago for dark.
    let starts = |a: &serde_json::Value| a["startsAt"].as_str().unwrap().to_owned();
    assert!(
        starts(&moved).starts_with(&rfc3339_prefix(now_s)),
        "{moved}"
    );
    let dark = find("LocusNodeUnreachable", "dark");
    assert!(
        starts(&dark).starts_with(&rfc3339_prefix(now_s - 400)),
        "{dark}"
    );
    assert!(
        !body.contains("\"node\":\"honest\""),
        "a located node must not alert: {body}"
    );

    // Judged again 60 s later: the same alerts, the same start.
    let out = monitor_at(now_s + 60, &["--alertmanager", &am_url]);
    assert_eq!(out.status.code(), Some(1));
    let (again, body) = alerts_in(am_addr);
    let moved_again = find_alert(&again, "LocusNodeRelocated", "moved").unwrap();
    assert_eq!(starts(moved_again), starts(&moved), "{body}");
    assert_eq!(
        again
            .iter()
            .filter(|a| a["labels"]["node"] == "moved")
            .count(),
        1,
        "one alert per event: {body}"
    );
}

/// `YYYY-MM-DDTHH:MM:SS` of Unix seconds (Alertmanager adds fractions and a zone).
fn rfc3339_prefix(unix_s: i64) -> String {
    locus_fleet::time::rfc3339(unix_s)
        .trim_end_matches('Z')
        .to_owned()
}

/// The whole operator path on a lab world: `locus lab --serve` runs the TDs behind the delay
/// relay, one `locus prober --config` daemon per prober site probes them into one database,
/// `locus monitor` judges it every second and posts to a real Alertmanager, which must hold a
/// firing relocation alert for the node that moved (with its old and new region and the
/// reasons) and none for the honest node. The daemons also probe the scenario's landmark.
#[test]
fn lab_relocation_through_daemons_fires_a_real_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (_am, am_addr) = start_alertmanager(dir.path());
    let scenario = dir.path().join("fleet.toml");
    std::fs::write(&scenario, fixtures::scenario("fleet")).unwrap();
    let mut lab = Proc(
        locus()
            .args(["lab", "--serve", "--prober-port", "0", "--scenario"])
            .arg(&scenario)
            .arg("--out")
            .arg(dir.path().join("lab"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(lab.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let serving: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    let configs = serving["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 4, "{serving}");
    let daemons: Vec<Proc> = configs
        .iter()
        .map(|c| {
            Proc(
                locus()
                    .args(["prober", "--config", c.as_str().unwrap()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let db = serving["db"].as_str().unwrap();
    // Everything the walk-through needs exists once the lab announces itself.
    assert!(Path::new(db).exists(), "{serving}");
    assert!(
        serving["duration_s"].is_null(),
        "runs until interrupted: {serving}"
    );
    for key in ["prometheus_config", "alertmanager_config"] {
        assert!(
            Path::new(serving[key].as_str().unwrap()).exists(),
            "{key}: {serving}"
        );
    }
    let prom = serving["prometheus_config"].as_str().unwrap();
    let check = Command::new(on_path(&["promtool"]))
        .args(["check", "config", prom])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let mut monitor = Proc(
        locus()
            .args(["monitor", "--db", db, "--policy"])
            .arg(serving["policy"].as_str().unwrap())
            .arg("--config")
            .arg(serving["monitor_config"].as_str().unwrap())
            .arg("--evidence-policy")
            .arg(serving["evidence_policy"].as_str().unwrap())
            .args(["--listen", "127.0.0.1:0", "--interval-s", "1"])
            .args(["--window-s", "4", "--baseline-rounds", "5"])
            .args(["--alertmanager", &format!("http://{am_addr}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics = monitor.listen();

    // The mover moves 25 s after the world started. Its alert fires once the CUSUM sees the
    // change; the monitor re-sends it every judgement, and once the window holds only rounds
    // after the move its new region is around Paris.
    let near_paris = |region: &str| {
        // "(lat, lon) ± r km"
        let Some((lat, lon)) = region
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .and_then(|(p, _)| p.split_once(", "))
        else {
            return false;
        };
        let (Ok(lat), Ok(lon)) = (lat.parse(), lon.parse()) else {
            return false;
        };
        distance_km(LatLon::new(lat, lon), pos("par")) < 150.0
    };
    // Generous: a loaded machine delays the first rounds; a pass breaks out early.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (alert, body) = loop {
        let (alerts, body) = alerts_in(am_addr);
        if let Some(a) = find_alert(&alerts, "LocusNodeRelocated", "mover") {
            if near_paris(a["annotations"]["new_region"].as_str().unwrap_or("")) {
                break (a.clone(), body);
            }
        }
        if Instant::now() > deadline {
            let once = locus()
                .args(["monitor", "--db", db, "--once", "--json", "--policy"])
                .arg(serving["policy"].as_str().unwrap())
                .arg("--config")
                .arg(serving["monitor_config"].as_str().unwrap())
                .arg("--evidence-policy")
                .arg(serving["evidence_policy"].as_str().unwrap())
                .args(["--window-s", "4", "--baseline-rounds", "5"])
                .output()
                .unwrap();
            panic!(
                "no relocation alert for mover with its new region: {body}\n{}",
                String::from_utf8_lossy(&once.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    assert_eq!(alert["labels"]["claim"], "fra");
    let ann = &alert["annotations"];
    assert!(ann["reasons"].as_str().unwrap().contains("claim"), "{ann}");
    // Where it was last located: around Frankfurt, its claim.
    let old = ann["old_region"].as_str().unwrap();
    assert!(old.ends_with("(verdict located)"), "{ann}");
    assert!(!near_paris(old), "{ann}");
    assert!(
        !body.contains("\"node\":\"honest\""),
        "the honest node must not alert: {body}"
    );
    // The honest node is located (not frozen, never accused); on a loaded host one judgement
    // may hold it `inconclusive` (a slow loopback anchor), so it is given a few judgements.
    let honest_located = r#"locus_node_verdict{node="honest",claim="fra",verdict="located"} 1"#;
    let until = Instant::now() + Duration::from_secs(30);
    let mut text = get(metrics, "/metrics").1;
    while !text.contains(honest_located) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        text = get(metrics, "/metrics").1;
    }
    assert!(text.contains(honest_located), "{text}");
    let (_, body) = alerts_in(am_addr);
    assert!(
        !body.contains("\"node\":\"honest\""),
        "the honest node must not alert: {body}"
    );
    monitor.signal(Signal::SIGTERM);
    assert_eq!(monitor.exit_code(), Some(0));
    for d in &daemons {
        d.signal(Signal::SIGTERM);
    }
    for d in daemons {
        assert_eq!(d.exit_code(), Some(0));
    }
    lab.signal(Signal::SIGTERM);
    assert_eq!(lab.exit_code(), Some(0));
    // Every daemon probed the served landmark (pinned, through the relay from its site).
    let store = Store::open(Path::new(db)).unwrap();
    let minima = store.landmark_minima_between(0, i64::MAX).unwrap();
    let at_fra: Vec<&str> = (minima.iter())
        .filter(|m| m.site == "fra")
        .map(|m| m.prober.as_str())
        .collect();
    let probers = [
        ("p0-ams", "ams"),
        ("p1-lon", "lon"),
        ("p2-par", "par"),
        ("p3-waw", "waw"),
    ];
    assert_eq!(at_fra, probers.map(|p| p.0), "{minima:?}");
    // And each other's echo (`[echo]`), through the relay: the other three probers' sites,
    // each far slower than loopback.
    for (id, site) in probers {
        let mut peers: Vec<&str> = (minima.iter())
            .filter(|m| m.prober == id && m.site != "fra")
            .map(|m| m.site.as_str())
            .collect();
        peers.sort_unstable();
        let others: Vec<&str> = (probers.iter())
            .map(|p| p.1)
            .filter(|s| *s != site)
            .collect();
        assert_eq!(peers, others, "{id}: {minima:?}");
    }
    assert!(
        minima.iter().all(|m| m.min_rtt_ns > 1_000_000),
        "{minima:?}"
    );
}

#[test]
fn sigkill_loses_at_most_the_round_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let (responder, raddr) = start_responder();
    let cfg = dir.path().join("prober.toml");
    std::fs::write(&cfg, daemon_config("d.db", ("p1", "ams"), raddr, &["a"])).unwrap();
    let mut p = Proc(prober(&cfg).stderr(Stdio::null()).spawn().unwrap());
    let addr = p.listen();
    let text = wait_for(addr, "three rounds", |t| {
        t.lines()
            .find_map(|l| {
                l.strip_prefix("locus_rounds_total{prober=\"p1\",target=\"a\"")
                    .and_then(|r| r.rsplit(' ').next()?.parse::<f64>().ok())
            })
            .is_some_and(|v| v >= 3.0)
    });
    let counted: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("locus_rounds_total{prober=\"p1\",target=\"a\"")
                .and_then(|r| r.rsplit(' ').next()?.parse().ok())
        })
        .unwrap();
    p.signal(Signal::SIGKILL);
    let _ = p.exit_code();
    // Each round is committed when it ends: all rounds counted before the kill are there, and
    // the database (WAL never checkpointed by a clean shutdown) opens and checks out.
    let store = Store::open(&dir.path().join("d.db")).unwrap();
    let stored = store.rounds_between("a", 0, i64::MAX).unwrap().len() as f64;
    assert!(
        stored >= counted,
        "{stored} rounds stored, {counted} counted before SIGKILL"
    );
    drop(store);
    let conn = integrity(&dir.path().join("d.db"));
    assert_eq!(conn, "ok");
    responder.signal(Signal::SIGTERM);
}

/// `locus export` still reads the database, and SQLite's `PRAGMA integrity_check` answers.
fn integrity(db: &Path) -> String {
    let out = locus()
        .args(["export", "--table", "rounds", "--format", "csv", "--db"])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Store::open(db).unwrap().integrity_check().unwrap()
}

/// The value of the first series line that starts with `prefix` (name and first labels).
fn series(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The disk fills up under the prober: the database refuses writes, rounds go on and wait in
/// memory, and once space returns every one of them is stored. "Full" is the running daemon's
/// `RLIMIT_FSIZE` lowered to one byte with `prlimit` (no root tricks, nothing filled on a
/// shared disk): every database write then fails with EFBIG, as writes do with ENOSPC on a full
/// disk; the daemon catches SIGXFSZ, which would otherwise kill it.
#[test]
fn full_disk_keeps_rounds_in_memory_until_space_returns() {
    let prlimit = on_path(&["prlimit"]);
    let dir = tempfile::tempdir().unwrap();
    let (responder, raddr) = start_responder();
    let cfg = dir.path().join("prober.toml");
    std::fs::write(&cfg, daemon_config("d.db", ("p1", "ams"), raddr, &["a"])).unwrap();
    let mut p = Proc(
        prober(&cfg)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Drain the log (a full pipe would stall the daemon); keep it for the checks below.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let log = log.clone();
        let stderr = p.0.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    let addr = p.listen();
    let pid = p.0.id().to_string();
    let rounds =
        |t: &str| series(t, "locus_rounds_total{prober=\"p1\",target=\"a\"").unwrap_or(0.0);
    let sent = |t: &str| {
        series(t, "locus_challenges_sent_total{prober=\"p1\",target=\"a\"").unwrap_or(0.0)
    };
    let errors = |t: &str| series(t, "locus_store_errors_total ").unwrap_or(0.0);
    wait_for(addr, "three stored rounds", |t| rounds(t) >= 3.0);

    let limit = |soft: &str| {
        let out = Command::new(&prlimit)
            .args(["--pid", &pid, &format!("--fsize={soft}:unlimited")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    limit("1");
    let full = wait_for(addr, "refused writes", |t| errors(t) >= 3.0);
    let (stored_when_full, sent_when_full) = (rounds(&full), sent(&full));
    let still_full = wait_for(addr, "rounds probed while the disk is full", |t| {
        sent(t) >= sent_when_full + 100.0
    });
    assert_eq!(rounds(&still_full), stored_when_full, "stored while full?");

    limit("unlimited");
    let backlog = sent(&still_full) / 10.0;
    let recovered = wait_for(addr, "the backlog stored", |t| rounds(t) >= backlog);
    let sent_total = sent(&recovered);
    assert_eq!(series(&recovered, "locus_rounds_dropped_total "), Some(0.0));
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(), Some(0), "{}", log.lock().unwrap());

    // No round lost: every challenge counted is in a stored round, the database checks out.
    let store = Store::open(&dir.path().join("d.db")).unwrap();
    let stored = store.rounds_between("a", i64::MIN, i64::MAX).unwrap();
    let stored_sent: u64 = stored.iter().map(|r| r.sent).sum();
    assert!(
        stored_sent as f64 >= sent_total,
        "{stored_sent} challenges stored of {sent_total}"
    );
    assert!(stored.iter().all(|r| r.error.is_none()), "{stored:?}");
    drop(store);
    assert_eq!(integrity(&dir.path().join("d.db")), "ok");
    let log = log.lock().unwrap();
    assert!(log.contains("the database refused"), "{log}");
    assert!(log.contains("file size limit"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    responder.signal(Signal::SIGTERM);
}

/// `locus bench fleet` end to end on a tiny fleet: the JSON keys of the contract, and values
/// that follow from the run (20 targets at 1 Hz send about 20 challenges a second).
#[test]
fn bench_fleet_reports_its_contract_keys() {
    let out = locus()
        .args([
            "bench",
            "fleet",
            "--targets",
            "20",
            "--duration-s",
            "2",
            "--round-s",
            "1",
            "--responders",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let num = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("no number {k:?} in {v}"))
    };
    assert_eq!(num("targets"), 20.0, "{v}");
    // Counters move when rounds end: allow a round's worth either way.
    let pps = num("probes_per_s");
    assert!((10.0..=30.0).contains(&pps), "{v}");
    assert!(num("answered_ratio") >= 0.9, "{v}");
    let cpu = num("prober_cpu_cores");
    assert!(cpu > 0.0 && cpu < 2.0, "{v}");
    let rss = num("prober_rss_mib");
    assert!(rss > 1.0 && rss < 4096.0, "{v}");
    let kib = num("prober_kib_per_target");
    assert!(
        kib > 0.0 && kib * 20.0 <= num("prober_rss_end_mib") * 1024.0 + 1.0,
        "{v}"
    );
    let late = num("lateness_p99_ms");
    assert!((0.0..1000.0).contains(&late), "{v}");
    let ratio = num("cpu_ratio_vs_udp_loop");
    assert!(ratio.is_finite() && ratio > 0.0, "{v}");
}

/// `locus monitor --once --json --config CONFIG` as of `at`: the judged nodes, whatever the
/// exit code (0 or 1).
fn judged(db: &str, at: &str, config: &Path) -> Vec<serde_json::Value> {
    let v = judgement_json(
        &["monitor", "--once", "--json", "--db", db, "--at", at],
        &[&"--config", &config],
    );
    v["nodes"].as_array().unwrap().clone()
}

/// [`fill`] into `dir/m.db` with its [`fill_config`], judged once at `t` (whole seconds):
/// (database, config, nodes).
fn fill_and_judge(dir: &Path, t: i64) -> (PathBuf, PathBuf, Vec<serde_json::Value>) {
    let db = dir.join("m.db");
    fill(&Database::Sqlite(db.clone()), t);
    let config = fill_config(dir, None);
    let before = judged(db.to_str().unwrap(), &(t / S).to_string(), &config);
    (db, config, before)
}

fn node<'a>(nodes: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    nodes
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} not judged: {nodes:?}"))
}

fn reasons(n: &serde_json::Value) -> String {
    n["reasons"].to_string()
}

/// After a signed daemon run, `UPDATE samples SET rtt_ns = rtt_ns / 10` on the database: the
/// monitor judges none of the altered rounds (the node becomes `inconclusive`, naming
/// `samples_mismatch`) and counts them in `locus_rows_rejected_total`.
#[test]
fn altered_samples_are_rejected_counted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = pg_server::shared().unwrap();
    let url = server.fresh_database().unwrap();
    let dbname = url.rsplit('/').next().unwrap().to_owned();
    let (responder, raddr) = start_responder();
    let (cfg, key) = keyed_daemon(dir.path(), &url, ("p-ams", "ams"), raddr, &["n"]);
    let mut p = Proc(prober(&cfg).stderr(Stdio::null()).spawn().unwrap());
    let addr = p.listen();
    wait_for(addr, "five rounds", |t| {
        series(t, "locus_rounds_total{prober=\"p-ams\",target=\"n\"").is_some_and(|v| v >= 5.0)
    });
    p.signal(Signal::SIGTERM);
    assert_eq!(p.exit_code(), Some(0));
    responder.signal(Signal::SIGTERM);
    let config = daemon_monitor_config(dir.path(), &[("p-ams", "ams", key)], &["n"]);
    let at = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.0)
        .to_string();

    let before = judged(&url, &at, &config);
    let n = node(&before, "n");
    // One prober is too few for a positive verdict; what matters is that its samples count.
    assert!(n["distances"][0]["samples"].as_u64().unwrap() > 0, "{n}");
    assert!(!reasons(n).contains("rejected"), "{n}");

    server
        .sql(&dbname, "UPDATE samples SET rtt_ns = rtt_ns / 10")
        .unwrap();
    let after = judged(&url, &at, &config);
    let n = node(&after, "n");
    assert_eq!(n["verdict"], "inconclusive", "{n}");
    assert!(reasons(n).contains("every stored row"), "{n}");
    assert!(reasons(n).contains("(samples_mismatch)"), "{n}");
    assert!(n["distances"].as_array().unwrap().is_empty(), "{n}");

    // Served, the rejections are counted.
    let mut m = Proc(
        locus()
            .args(["monitor", "--db", &url, "--policy"])
            .arg(policy())
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0", "--interval-s", "0.2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let maddr = m.listen();
    let text = wait_for(maddr, "rejected rounds counted", |t| {
        series(
            t,
            "locus_rows_rejected_total{table=\"rounds\",reason=\"samples_mismatch\"}",
        )
        .is_some_and(|v| v >= 5.0)
    });
    promtool_check(&text);
    m.signal(Signal::SIGTERM);
    assert_eq!(m.exit_code(), Some(0));
}

/// A second prober writes the database too: it moves the claimed site's coordinates, moves an
/// honest prober's site and stores rounds that would place the moved node at its claim. The
/// monitor takes sites, probers and claims from its own config and only its probers' signed
/// rows: nothing it judges changes.
#[test]
fn a_rogue_prober_changes_nothing_the_monitor_judges() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_800_000_000 * S;
    let (db, config, before) = fill_and_judge(dir.path(), t);
    let arg = db.to_str().unwrap();
    assert_eq!(node(&before, "moved")["verdict"], "relocated");

    let mut store = Store::open(&db).unwrap();
    let fake: Vec<SiteRecord> = SITES
        .iter()
        .map(|(n, lat, lon)| match *n {
            // fra moved onto waw, where `moved` now answers from.
            "fra" => SiteRecord {
                name: "fra".into(),
                lat: 52.23,
                lon: 21.01,
            },
            n => SiteRecord {
                name: n.into(),
                lat: *lat,
                lon: *lon,
            },
        })
        .collect();
    store.upsert_world("rogue", "waw", &fake).unwrap();
    store.upsert_world("ams", "fra", &fake).unwrap();
    assert_eq!(judged(arg, "1800000000", &config), before);

    // Its own rounds, signed with its own key: fra-like round trips for `moved`.
    let rogue = ProberIdentity::from_seed([99; 32]);
    let start = t - 40 * S;
    let samples: Vec<SampleRecord> = (0..50u64)
        .map(|i| SampleRecord {
            sent_unix_ns: start + i as i64 * S / 10,
            rtt_ns: rtt_ns("waw", "waw", i),
            inside_ns: 20_000,
        })
        .collect();
    let mut r = round(
        "rogue",
        "moved",
        start,
        samples.iter().map(|s| s.rtt_ns).min(),
        false,
    );
    seal_round(&rogue, &mut r, &samples);
    store.insert_round(&r, &samples).unwrap();
    let after = judged(arg, "1800000000", &config);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b["verdict"], a["verdict"], "{a}");
        assert_eq!(b["region"], a["region"], "{a}");
        assert_eq!(b["distances"], a["distances"], "{a}");
    }
    assert!(
        reasons(node(&after, "moved")).contains("1 rounds (unknown_prober)"),
        "{after:?}"
    );
}

/// Rows signed by a key the monitor's config does not give their prober are not judged; a
/// monitor without a config refuses to judge unless told to take unsigned rows.
#[test]
fn a_prober_key_not_in_the_monitor_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    fill(&Database::Sqlite(db.clone()), 1_800_000_000 * S);
    let arg = db.to_str().unwrap();
    let stranger = ProberIdentity::from_seed([42; 32]).public_key().to_string();
    let keys: Vec<(&str, String)> = PROBERS
        .iter()
        .map(|p| match *p {
            "ams" => (*p, stranger.clone()),
            p => (p, key(p).public_key().to_string()),
        })
        .collect();
    let config = fill_config(dir.path(), Some(&keys));
    let nodes = judged(arg, "1800000000", &config);
    let honest = node(&nodes, "honest");
    assert!(reasons(honest).contains("(unknown_key)"), "{honest}");
    let probers: Vec<&str> = honest["distances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["prober"].as_str().unwrap())
        .collect();
    assert!(!probers.contains(&"ams"), "{honest}");
    assert!(!probers.is_empty(), "{honest}");

    let out = locus()
        .args(["monitor", "--once", "--db", arg])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--config"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// REVIEW2 F2 and F10: unsigned rounds inserted just before the window (60 per prober, the
/// baseline's length) no longer push the node's signed history out of its baseline: rows are
/// checked before the latest are taken, so every verdict stays as it was, naming the rejected
/// rows. A copied signed round counts once (`duplicate`). A flood deeper than the monitor looks
/// leaves no verified baseline: the node is then `inconclusive` with "baseline missing", never
/// silently `located`.
#[test]
fn junk_rounds_before_the_window_do_not_evict_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_800_000_000 * S;
    let (db, config, before) = fill_and_judge(dir.path(), t);
    let arg = db.to_str().unwrap();
    assert_eq!(node(&before, "honest")["verdict"], "located", "{before:?}");
    assert_eq!(node(&before, "moved")["verdict"], "relocated", "{before:?}");

    let mut store = Store::open(&db).unwrap();
    let junk = |store: &mut Store, node: &str, n: i64| {
        for p in PROBERS {
            for k in 0..n {
                // Ended before the window (600 s): history only. Round trips as at waw.
                let start = t - 700 * S + k * S / 10;
                let r = round(p, node, start, Some(rtt_ns(p, "waw", 0)), false);
                store.insert_round(&r, &[]).unwrap();
            }
        }
    };
    junk(&mut store, "honest", 60);
    junk(&mut store, "moved", 60);
    // A copy of a signed window round (samples included) of honest from ams.
    window_round(
        &mut store,
        ("ams", "honest"),
        t - 50 * S,
        ("fra", 100),
        None,
    );
    let after = judged(arg, "1800000000", &config);
    for name in ["honest", "moved"] {
        let (b, a) = (node(&before, name), node(&after, name));
        assert_eq!(b["verdict"], a["verdict"], "{a}");
        assert_eq!(b["relocation"], a["relocation"], "{a}");
        assert_eq!(b["distances"], a["distances"], "{a}");
        assert!(reasons(a).contains("180 rounds (unsigned)"), "{a}");
    }
    assert!(
        reasons(node(&after, "honest")).contains("1 rounds (duplicate)"),
        "{after:?}"
    );

    // Deeper than the monitor looks for verified history (4 baselines): no baseline left.
    junk(&mut store, "honest", 200);
    let flooded = judged(arg, "1800000000", &config);
    let honest = node(&flooded, "honest");
    assert_eq!(honest["verdict"], "inconclusive", "{honest}");
    assert!(
        reasons(honest).contains(
            "baseline missing: prober ams's rounds before the window were rejected (unsigned)"
        ),
        "{honest}"
    );
    assert_eq!(node(&flooded, "moved")["verdict"], "relocated");
}

/// `locus monitor --once` on `db` at `now_s` with a verdict policy, an evidence policy and a
/// config (`paths`, in that order): the judged `honest` node.
fn honest_with_evidence(db: &Path, now_s: u64, paths: [&Path; 3], case: &str) -> serde_json::Value {
    let [verdict_policy, evidence_policy, config] = paths;
    let (v, stdout) = monitor_once(
        db.to_str().unwrap(),
        &now_s.to_string(),
        &[
            &"--policy",
            &verdict_policy,
            &"--evidence-policy",
            &evidence_policy,
            &"--config",
            &config,
        ],
    );
    let nodes = v["nodes"].as_array().unwrap();
    nodes
        .iter()
        .find(|n| n["name"] == "honest")
        .unwrap_or_else(|| panic!("{case}: {stdout}"))
        .clone()
}

/// REVIEW2 F3 and F6: each prober's latest verified bundle is chosen after every record was
/// checked. A listed prober storing a bundle that fails (signed with its own key) after the
/// others' valid ones no longer makes the honest node `evidence-invalid`: it is `inconclusive`
/// naming that prober. A bundle removed from a newer signed record (UPDATE evidence SET
/// bundle = NULL) does not let an older bundle stand in: `inconclusive`, "evidence missing".
#[test]
fn a_failed_or_withheld_bundle_holds_the_node_back_naming_the_prober() {
    let lab = evidence_lab::lab();
    let dir = tempfile::tempdir().unwrap();
    let evidence_policy = lab.write_policy(dir.path());
    let verdict_policy = fixtures::path("policy/no-anchors.toml");
    let config = fill_config(dir.path(), None);
    let t = lab.now as i64 * S;
    let (nonce, spki) = (lab.bundle.nonce.clone(), lab.peer_spki.clone());
    let valid = lab.bundle.to_cbor();
    let run = |case: &str, newest_of_ams: Option<&[u8]>| -> serde_json::Value {
        let db = dir.path().join(format!("{case}.db"));
        fill_keyed(&Database::Sqlite(db.clone()), t, Some(&hex::encode(&spki)));
        let mut store = Store::open(&db).unwrap();
        let record = |p: &str, at: i64, bundle: &[u8]| {
            let mut rec = EvidenceRecord {
                prober: p.to_string(),
                target: "honest".into(),
                at_unix_ns: at,
                rtt_ns: Some(5_000_000),
                ok: true,
                error: None,
                nonce: Some(nonce.clone()),
                bundle: Some(bundle.to_vec()),
                peer_spki: Some(hex::encode(&spki)),
                seal: None,
            };
            seal_evidence(&key(p), &mut rec);
            rec
        };
        // all in the second before `lab.now`: the lab's certificates are only seconds older
        for (k, p) in PROBERS.iter().enumerate() {
            store
                .insert_evidence(&record(p, t - S + k as i64, &valid))
                .unwrap();
        }
        match newest_of_ams {
            Some(bundle) => store.insert_evidence(&record("ams", t - S / 2, bundle)),
            None => {
                // Signed with the bundle, stored without it.
                let mut rec = record("ams", t - S / 2, &valid);
                rec.bundle = None;
                store.insert_evidence(&rec)
            }
        }
        .unwrap();
        honest_with_evidence(
            &db,
            lab.now,
            [&verdict_policy, &evidence_policy, &config],
            case,
        )
    };
    let honest = run("valid", Some(&valid));
    assert_eq!(honest["verdict"], "located", "{honest}");

    let honest = run("garbage", Some(b"not cbor"));
    assert_eq!(honest["verdict"], "inconclusive", "{honest}");
    assert!(
        reasons(&honest).contains("prober ams's bundle failed (bundle_format"),
        "{honest}"
    );

    let honest = run("withheld", None);
    assert_eq!(honest["verdict"], "inconclusive", "{honest}");
    let missing = format!(
        "evidence missing: prober ams's evidence record at {} s was signed with a bundle that is \
         not stored",
        lab.now - 1
    );
    assert!(reasons(&honest).contains(&missing), "{honest}");
}

/// Stores a `located` verdict of node `honest` a minute before `t`, as a monitor that judged
/// it leaves (REVIEW3 B, E; REVIEW4 M1).
fn judged_a_minute_before(store: &mut Store, t: i64) {
    store
        .insert_verdict(&VerdictRecord {
            node: "honest".into(),
            claim: "fra".into(),
            at_unix_ns: t - 60 * S,
            window_start_unix_ns: t - 660 * S,
            verdict: "located".into(),
            reasons: Vec::new(),
            radius_km: None,
            judgement: "{}".into(),
        })
        .unwrap();
}

/// REVIEW3 B's database in `dir/name`: node `honest` (claiming fra) moved ~65 km east before
/// the window ending at `t`; 30 history rounds at fra of the probers in `history_of`, one
/// signed round of each prober at the new place at `t` - 50 s.
fn review3_b_db(dir: &Path, name: &str, history_of: &[&str], t: i64) -> PathBuf {
    let db = dir.join(name);
    let mut s = Store::open(&db).unwrap();
    let sites = site_records();
    for p in PROBERS {
        s.upsert_world(p, p, &sites).unwrap();
    }
    for p in PROBERS {
        if history_of.contains(p) {
            for k in 0..30 {
                let hist = review3_b_rtt(p, pos("fra"), 0) - 20_000;
                let r = round(p, "honest", t - 1000 * S + k * 10 * S, Some(hist), false);
                s.insert_round(&signed(r, &[]), &[]).unwrap();
            }
        }
        review3_b_moved_round(&mut s, p, t - 50 * S);
    }
    db
}

/// REVIEW3 B's round trip from prober `p` to `at`, in ns.
fn review3_b_rtt(p: &str, at: LatLon, i: u64) -> u64 {
    let ms = 2.0 * distance_km(pos(p), at) * 1.5 / 200.0;
    ((ms + 0.05 + (i % 7) as f64 * 0.01) * 1e6) as u64
}

/// One signed round of `p` starting at `start`, probing node `honest` at its new place
/// (~65 km east of fra).
fn review3_b_moved_round(s: &mut Store, p: &str, start: i64) {
    let new_at = LatLon::new(50.11, 9.59);
    let samples: Vec<SampleRecord> = (0..100)
        .map(|i| SampleRecord {
            sent_unix_ns: start + i as i64 * S / 10,
            rtt_ns: review3_b_rtt(p, new_at, i),
            inside_ns: 20_000,
        })
        .collect();
    let min = samples.iter().map(|x| x.rtt_ns - x.inside_ns).min();
    let r = round(p, "honest", start, min, false);
    s.insert_round(&signed(r, &samples), &samples).unwrap();
}

/// REVIEW3 B (was a PoC of the attack): deleting (here: not storing) the history rounds of all
/// but one prober must not hide a 65 km relocation. Judged once (no verdict before), the node is
/// `relocated`; once a verdict precedes (the monitor restarted, or it remembers which probers
/// had a baseline), probers answering without verified history hold it back as "baseline
/// missing", naming them. B2: 4096 unsigned junk rounds of par and waw pushing their real
/// rounds past the per-prober cap hold the node too, naming them.
#[test]
fn review3_b_deleting_some_probers_history_holds_the_node_back() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_800_000_000 * S;
    let build = |name: &str, history_of: &[&str]| review3_b_db(dir.path(), name, history_of, t);
    let config = fill_config(dir.path(), None);
    let full = build("full.db", PROBERS);
    let cut = build("cut.db", &["ams"]);
    // Variant: no deletion, 4096 unsigned junk rounds of par and waw at the window's start
    // push their real window rounds past the per-prober cap (`too_many`).
    let flooded = build("flood.db", PROBERS);
    {
        let mut s = Store::open(&flooded).unwrap();
        for p in ["par", "waw"] {
            for k in 0..4096 {
                let r = round(p, "honest", t - 600 * S + k, Some(1), false);
                s.insert_round(&r, &[]).unwrap();
            }
        }
    }
    let fl = judged(flooded.to_str().unwrap(), "1800000000", &config);
    let f = node(&fl, "honest");
    assert_ne!(f["verdict"], "located", "{f}");
    assert!(
        reasons(f).contains("rounds unread: prober(s) par, waw"),
        "{f}"
    );
    let before = judged(full.to_str().unwrap(), "1800000000", &config);
    let b = node(&before, "honest");
    assert_eq!(b["verdict"], "relocated", "{b}");
    // Judged before: a verdict a minute earlier, as a monitor that judged it leaves.
    judged_a_minute_before(&mut Store::open(&cut).unwrap(), t);
    let after = judged(cut.to_str().unwrap(), "1800000000", &config);
    let a = node(&after, "honest");
    assert_eq!(a["verdict"], "inconclusive", "{a}");
    assert!(reasons(a).contains("baseline missing: prober par"), "{a}");
    assert!(reasons(a).contains("prober waw"), "{a}");
}

/// One monitor judging a store again and again (its memory kept between judgements), as
/// `locus monitor` runs, over ten-minute windows with the filled config.
struct RunningMonitor {
    judging: locus_fleet::monitor::Judging,
    sinks: locus_fleet::monitor::Sinks<'static>,
}

impl RunningMonitor {
    fn new(dir: &Path, baseline_rounds: usize) -> Self {
        Self::with_config(&fill_config(dir, None), baseline_rounds)
    }

    fn with_config(config: &Path, baseline_rounds: usize) -> Self {
        use locus_fleet::monitor::{Fleet, Judging, MonitorConfig, Sinks};
        Self {
            judging: Judging {
                policy: locus_fleet::verifier::load_verdict_policy(Some(&policy()))
                    .unwrap()
                    .calibrated_vtpm(None),
                window: Duration::from_secs(600),
                baseline_rounds,
                evidence: None,
                fleet: Fleet::Configured(MonitorConfig::load(config, false).unwrap()),
                memory: Default::default(),
            },
            sinks: Sinks {
                metrics: None,
                alertmanagers: None,
                alert_ttl: Duration::from_secs(180),
                store: true,
            },
        }
    }

    /// The node "honest"'s verdict and reasons at `at`.
    fn judge_honest(&self, store: &mut Store, at: i64) -> (String, String) {
        let (js, _) =
            locus_fleet::monitor::judge_all(store, &self.judging, at, &self.sinks).unwrap();
        let j = js.into_iter().find(|j| j.name == "honest").unwrap();
        (j.verdict.as_str().to_owned(), j.reasons.join("; "))
    }
}

/// REVIEW4 M1: REVIEW3 B's deletion, judged twice by one running monitor with the window
/// advanced (a new round of every prober at the new place): the probers expected to have a
/// baseline at the first judgement still are at the second (the remembered set is sticky, not
/// rebuilt from what history is left), so the node is still not `located`. The relocation
/// seen by the history left (ams) keeps its remembered minimum as well.
#[test]
fn review4_m1_a_deletion_is_not_forgotten_at_the_next_judgement() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_800_000_000 * S;
    let db = review3_b_db(dir.path(), "cut.db", &["ams"], t);
    let mut store = Store::open(&db).unwrap();
    // Judged before, as in REVIEW3 B: a verdict a minute earlier.
    judged_a_minute_before(&mut store, t);
    let monitor = RunningMonitor::new(dir.path(), 60);
    let judge_at = |store: &mut Store, at: i64| monitor.judge_honest(store, at);
    let (first, why) = judge_at(&mut store, t);
    assert_eq!(first, "inconclusive", "{why}");
    assert!(why.contains("baseline missing: prober par"), "{why}");
    // A minute later, with a new round of each prober at the new place.
    for p in PROBERS {
        review3_b_moved_round(&mut store, p, t + 5 * S);
    }
    let (second, why) = judge_at(&mut store, t + 60 * S);
    assert_ne!(second, "located", "{why}");
    assert!(
        why.contains("prober par") && why.contains("prober waw"),
        "{why}"
    );
}

/// REVIEW3 C (was a PoC of the attack): one listed prober (stolen key) stores its own evidence
/// record, with the valid bundle it fetched, under an inflated evidence round trip. While the
/// two others' own bundles pass, its word alone does not make the honest node `proxied`: the
/// node is held back (inconclusive) with a reason naming it.
#[test]
fn review3_c_one_prober_evidence_rtt_does_not_accuse_alone() {
    let lab = evidence_lab::lab();
    let dir = tempfile::tempdir().unwrap();
    let evidence_policy = lab.write_policy(dir.path());
    let verdict_policy = fixtures::path("policy/no-anchors.toml");
    let config = fill_config(dir.path(), None);
    let t = lab.now as i64 * S;
    let (nonce, spki) = (lab.bundle.nonce.clone(), lab.peer_spki.clone());
    let valid = lab.bundle.to_cbor();
    let run = |case: &str, ams_rtt_ns: u64| -> serde_json::Value {
        let db = dir.path().join(format!("{case}.db"));
        fill_keyed(&Database::Sqlite(db.clone()), t, Some(&hex::encode(&spki)));
        let mut store = Store::open(&db).unwrap();
        for (k, p) in PROBERS.iter().enumerate() {
            let mut rec = EvidenceRecord {
                prober: p.to_string(),
                target: "honest".into(),
                at_unix_ns: t - S + k as i64,
                rtt_ns: Some(if *p == "ams" { ams_rtt_ns } else { 5_000_000 }),
                ok: true,
                error: None,
                nonce: Some(nonce.clone()),
                bundle: Some(valid.clone()),
                peer_spki: Some(hex::encode(&spki)),
                seal: None,
            };
            seal_evidence(&key(p), &mut rec);
            store.insert_evidence(&rec).unwrap();
        }
        honest_with_evidence(
            &db,
            lab.now,
            [&verdict_policy, &evidence_policy, &config],
            case,
        )
    };
    let honest = run("valid", 5_000_000);
    assert_eq!(honest["verdict"], "located", "{honest}");
    let held = run("inflated", 80_000_000);
    assert_eq!(held["verdict"], "inconclusive", "{held}");
    assert!(
        reasons(&held).contains("only prober ams saw its evidence round trip exceed"),
        "{held}"
    );
}

/// REVIEW3 E: one unsigned history round under a prober name the config does not know spoils
/// no baseline: the honest node stays `located`, naming the rejected row. With a verdict before
/// it (REVIEW3 B after a restart), probers that all have verified history hold nothing back.
#[test]
fn review3_e_a_history_row_of_an_unknown_prober_spoils_no_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let t = 1_800_000_000 * S;
    fill(&Database::Sqlite(db.clone()), t);
    let config = fill_config(dir.path(), None);
    let mut store = Store::open(&db).unwrap();
    let junk = round("nobody", "honest", t - 900 * S, Some(1), false);
    store.insert_round(&junk, &[]).unwrap();
    judged_a_minute_before(&mut store, t);
    drop(store);
    let v = judged(db.to_str().unwrap(), "1800000000", &config);
    let honest = node(&v, "honest");
    assert_eq!(honest["verdict"], "located", "{honest}");
    assert!(
        reasons(honest).contains("1 rounds (unknown_prober)"),
        "{honest}"
    );
    assert!(!reasons(honest).contains("baseline missing"), "{honest}");
}

/// `locus judge --db DB --at AT --json --policy` the timing-only policy, then ARGS: its JSON,
/// after checking it exited 0 or 1.
fn judge_db(db: &str, at: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> serde_json::Value {
    judgement_json(&["judge", "--json", "--db", db, "--at", at], args)
}

/// `locus monitor --once --dry-run --json --db DB --at AT --policy` the timing-only policy,
/// then ARGS: its JSON.
fn monitor_dry_run(db: &str, at: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> serde_json::Value {
    let cmd = [
        "monitor",
        "--once",
        "--dry-run",
        "--json",
        "--db",
        db,
        "--at",
        at,
    ];
    judgement_json(&cmd, args)
}

/// `locus CMD... --policy` the timing-only policy, then ARGS: the JSON it printed, after
/// checking it exited 0 or 1.
fn judgement_json(cmd: &[&str], args: &[&dyn AsRef<std::ffi::OsStr>]) -> serde_json::Value {
    let out = locus()
        .args(cmd)
        .arg("--policy")
        .arg(policy())
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Signed landmark rounds of every prober of [`fill`] to landmark `ref-fra` at fra (inflation
/// 1.5, as the nodes' paths), 30 s before `t`.
fn fill_landmarks(db: &Path, t: i64) {
    let mut store = Store::open(db).unwrap();
    for p in PROBERS {
        let rtt = rtt_ns(p, "fra", 0);
        let mut r = LandmarkRoundRecord {
            prober: p.to_string(),
            landmark: "ref-fra".into(),
            site: "fra".into(),
            address: "127.0.0.1:2".into(),
            spki: None,
            started_unix_ns: t - 30 * S,
            sent: 10,
            answered: 10,
            min_rtt_ns: Some(rtt),
            min_eff_rtt_ns: Some(rtt - 20_000),
            error: None,
            seal: None,
        };
        seal_landmark(&key(p), &mut r);
        store.insert_landmark_round(&r).unwrap();
    }
}

/// Issue 19: `locus judge --db` judges a store exactly as `locus monitor --once` does (same
/// config, policy and instant), read-only: no verdict is stored. The store's signed landmark
/// rounds, once the config lists the landmark, change the reasons from "calibration: none" to
/// a landmark at the claim for every prober. `--node` and the text output as for --samples.
#[test]
fn judge_db_judges_a_store_as_monitor_once_without_storing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let t = 1_800_000_000 * S;
    fill(&Database::Sqlite(db.clone()), t);
    let config = fill_config(dir.path(), None);
    let db_arg = db.to_str().unwrap();
    let at = "1800000000";
    let with_config: [&dyn AsRef<std::ffi::OsStr>; 2] = [&"--config", &config];
    let v = judge_db(db_arg, at, &with_config);
    assert_eq!(v["all_located"], false, "{v}");
    assert_eq!(v["version"], 1, "{v}");
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(node(nodes, "honest")["verdict"], "located", "{v}");
    assert_eq!(node(nodes, "moved")["verdict"], "relocated", "{v}");
    assert_eq!(node(nodes, "dark")["verdict"], "unreachable", "{v}");
    assert!(
        reasons(node(nodes, "honest")).contains("calibration: none"),
        "{v}"
    );
    assert_eq!(
        v["nodes"],
        monitor_dry_run(db_arg, at, &with_config)["nodes"]
    );
    assert_eq!(
        export(db_arg, "verdicts", "csv").lines().count(),
        1,
        "judge --db stored verdicts"
    );

    // The landmark rounds count once the config names the landmark.
    fill_landmarks(&db, t);
    let unlisted = judge_db(db_arg, at, &with_config);
    assert!(
        reasons(node(unlisted["nodes"].as_array().unwrap(), "honest"))
            .contains("calibration: none"),
        "{unlisted}"
    );
    let listed = dir.path().join("monitor-landmark.toml");
    std::fs::write(
        &listed,
        std::fs::read_to_string(&config).unwrap()
            + "[[landmark]]\nname = \"ref-fra\"\nsite = \"fra\"\n",
    )
    .unwrap();
    let with_landmark: [&dyn AsRef<std::ffi::OsStr>; 2] = [&"--config", &listed];
    let v = judge_db(db_arg, at, &with_landmark);
    let honest = node(v["nodes"].as_array().unwrap(), "honest");
    assert_eq!(honest["verdict"], "located", "{honest}");
    assert!(
        reasons(honest).contains("calibration: landmark at the claim for 3/3 probers"),
        "{honest}"
    );
    assert_eq!(
        v["nodes"],
        monitor_dry_run(db_arg, at, &with_landmark)["nodes"]
    );
    assert_eq!(export(db_arg, "verdicts", "csv").lines().count(), 1);

    // One node, as a table: exit 0 when it is located.
    let out = locus()
        .args([
            "judge", "--db", db_arg, "--at", at, "--node", "honest", "--policy",
        ])
        .arg(policy())
        .arg("--config")
        .arg(&listed)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("honest") && text.contains("located"),
        "{text}"
    );
    assert!(!text.contains("moved"), "{text}");
    let out = locus()
        .args([
            "judge", "--db", db_arg, "--at", at, "--node", "nobody", "--policy",
        ])
        .arg(policy())
        .arg("--config")
        .arg(&listed)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no node named nobody"),
        "{out:?}"
    );
}

/// `locus judge --db` reads PostgreSQL through the same store code, read-only.
#[test]
fn judge_db_reads_postgres_without_storing() {
    let url = pg_server::shared().unwrap().fresh_database().unwrap();
    let db = Database::Postgres(url.clone());
    fill(&db, 1_800_000_000 * S);
    let dir = tempfile::tempdir().unwrap();
    let config = fill_config(dir.path(), None);
    let v = judge_db(&url, "1800000000", &[&"--config", &config]);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(node(nodes, "honest")["verdict"], "located", "{v}");
    assert_eq!(node(nodes, "moved")["verdict"], "relocated", "{v}");
    let store = Store::connect_existing(&db, Duration::from_secs(5)).unwrap();
    assert_eq!(store.latest_verdict("honest").unwrap(), None);
}

/// `locus judge --db` names what it cannot read (exit 2) and creates or changes no file: a
/// missing file, a file that is not a database, an empty database; and its flags do not mix
/// with --samples.
#[test]
fn judge_db_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        let out = locus()
            .arg("judge")
            .args(args.iter().map(|a| a.as_ref()))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = dir.path().join("nope.db");
    let e = run(&[&"--db", &missing, &"--allow-unsigned", &"--timing-only"]);
    assert!(e.contains("nope.db does not exist"), "{e}");
    assert!(!missing.exists());
    let text = dir.path().join("samples.json");
    std::fs::write(&text, "{\"version\": 1, \"nodes\": []}\n".repeat(40)).unwrap();
    let e = run(&[&"--db", &text, &"--allow-unsigned", &"--timing-only"]);
    assert!(
        e.contains("is not a locus store") && e.contains("not an SQLite"),
        "{e}"
    );
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let e = run(&[&"--db", &empty, &"--allow-unsigned", &"--timing-only"]);
    assert!(
        e.contains("is not a locus store") && e.contains("no locus tables"),
        "{e}"
    );
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    // The monitor's rule: a policy that needs evidence wants --evidence-policy or --timing-only.
    let e = run(&[&"--db", &empty, &"--allow-unsigned"]);
    assert!(e.contains("--timing-only"), "{e}");
    run(&[&"--db", &empty, &"--samples", &text]);
    run(&[&"--samples", &text, &"--config", &text]);
}

/// A free UDP port on 127.0.0.1 (free when asked; the daemon binds it right after).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Issue 19, probers measure each other: two daemons answer each other's echoes (`[echo]
/// listen`) and list each other as `[[landmark]]`s; the monitor's config names them by prober
/// (`prober = "ID"`, the site resolved from `[[probers]]`), so the prober at par has a landmark
/// at the claim (the prober at ams) and its prediction comes from it, as `locus judge --db` and
/// the monitor judge it.
#[test]
fn probers_answer_each_others_echoes_and_calibrate_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (responder, raddr) = start_responder();
    let db = dir.path().join("d.db");
    let db_arg = db.to_str().unwrap();
    let sites = [("p1", "ams"), ("p2", "par")];
    let ports = sites.map(|_| free_udp_port());
    let mut keys = Vec::new();
    let mut daemons = Vec::new();
    for (i, (id, site)) in sites.into_iter().enumerate() {
        let (cfg, key) = keyed_daemon(dir.path(), db_arg, (id, site), raddr, &["a"]);
        let (peer, peer_site) = sites[1 - i];
        let text = std::fs::read_to_string(&cfg).unwrap()
            + &format!(
                "[echo]\nlisten = \"127.0.0.1:{}\"\n\
                 [[landmark]]\nname = \"{peer}\"\nsite = \"{peer_site}\"\n\
                 address = \"127.0.0.1:{}\"\n",
                ports[i],
                ports[1 - i]
            );
        std::fs::write(&cfg, text).unwrap();
        keys.push((id, site, key));
        let mut p = Proc(prober(&cfg).stderr(Stdio::null()).spawn().unwrap());
        let addr = p.listen();
        daemons.push((p, addr, peer));
    }
    for (p, addr, peer) in &daemons {
        let id = if *peer == "p1" { "p2" } else { "p1" };
        wait_for(*addr, "the peer's echo as a landmark", |t| {
            t.contains(&format!(
                "locus_landmark_probe_success{{prober=\"{id}\",landmark=\"{peer}\""
            )) && t.contains(&format!("locus_rounds_total{{prober=\"{id}\",target=\"a\""))
        });
        p.signal(Signal::SIGTERM);
    }
    for (p, _, _) in daemons {
        assert_eq!(p.exit_code(), Some(0));
    }
    responder.signal(Signal::SIGTERM);
    let minima = Store::open(&db)
        .unwrap()
        .landmark_minima_between(0, i64::MAX)
        .unwrap();
    let pairs: Vec<(&str, &str)> = (minima.iter())
        .map(|m| (m.prober.as_str(), m.site.as_str()))
        .collect();
    assert_eq!(pairs, [("p1", "par"), ("p2", "ams")], "{minima:?}");

    let config = daemon_monitor_config(dir.path(), &keys, &["a"]);
    let text = std::fs::read_to_string(&config).unwrap()
        + "[[landmark]]\nprober = \"p1\"\n[[landmark]]\nprober = \"p2\"\n";
    std::fs::write(&config, text).unwrap();
    let at = (locus_fleet::monitor::unix_now_ns() / S + 1).to_string();
    let args: [&dyn AsRef<std::ffi::OsStr>; 2] = [&"--config", &config];
    let v = judge_db(db_arg, &at, &args);
    let a = node(v["nodes"].as_array().unwrap(), "a");
    // Two probers are too few for a verdict; each prober's calibration is in the judgement.
    let distance = |p: &str| {
        (a["distances"].as_array().unwrap().iter())
            .find(|d| d["prober"] == p)
            .unwrap_or_else(|| panic!("{p}: {a}"))
            .clone()
    };
    let (p1, p2) = (distance("p1"), distance("p2"));
    assert_eq!(p2["calibrated"], true, "{a}");
    assert!(
        p2["reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("landmark ams at the claim")),
        "{a}"
    );
    // p1's only landmark (p2's echo, at par) is not at the claim: no bestline from one.
    assert_eq!(p1["calibrated"], false, "{a}");
    assert_eq!(v["nodes"], monitor_dry_run(db_arg, &at, &args)["nodes"]);
}

// REVIEW6 PoCs (M5): one running monitor, four probers (lon added), node "honest" at fra,
// one signed round of each prober every 10 s without gaps, judged every five minutes over
// ten-minute windows with a baseline of six rounds.

const REVIEW6_PROBERS: [(&str, f64, f64); 4] = [
    ("ams", 52.37, 4.90),
    ("par", 48.86, 2.35),
    ("waw", 52.23, 21.01),
    ("lon", 51.51, -0.13),
];

/// The verdicts of "honest" judged every five minutes from `t` to `t + minutes`, each prober's
/// round trip from `at(start)` plus `extra(prober, start)` ns.
fn review6_verdicts(
    t: i64,
    minutes: i64,
    at: impl Fn(i64) -> LatLon,
    extra: impl Fn(&str, i64) -> u64,
) -> Vec<(i64, String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, config) = review6_fleet(dir.path());
    let monitor = RunningMonitor::with_config(&config, 6);
    let node = Review6Node {
        at: &at,
        extra: &extra,
        stored: &|_, _| true,
    };
    node.rounds(&mut store, t - 1200 * S, t);
    review6_judged(&monitor, &mut store, &node, t, (0, minutes))
}

/// The store and monitor config of the REVIEW6 monitor tests in `dir`.
fn review6_fleet(dir: &Path) -> (Store, PathBuf) {
    let mut store = Store::open(&dir.join("r6.db")).unwrap();
    let mut sites = site_records();
    sites.push(SiteRecord {
        name: "lon".into(),
        lat: 51.51,
        lon: -0.13,
    });
    let mut config = String::new();
    for s in &sites {
        config.push_str(&format!(
            "[[sites]]\nname = \"{}\"\nlat = {}\nlon = {}\n",
            s.name, s.lat, s.lon
        ));
    }
    for (p, _, _) in REVIEW6_PROBERS {
        store.upsert_world(p, p, &sites).unwrap();
        let k = key(p).public_key().to_string();
        config.push_str(&format!(
            "[[probers]]\nid = \"{p}\"\nsite = \"{p}\"\npublic_key = \"{k}\"\n"
        ));
    }
    config.push_str("[[nodes]]\nname = \"honest\"\nclaim = \"fra\"\n");
    let path = dir.join("r6.toml");
    std::fs::write(&path, config).unwrap();
    (store, path)
}

/// Node "honest" as the REVIEW6 probers see it: where it is and each prober's extra round trip
/// (ns) per round start; rounds for which `stored` is false are not in the store (deleted).
struct Review6Node<'a> {
    at: &'a dyn Fn(i64) -> LatLon,
    extra: &'a dyn Fn(&str, i64) -> u64,
    stored: &'a dyn Fn(&str, i64) -> bool,
}

impl Review6Node<'_> {
    /// One signed round of each prober every 10 s from `from` to `to`.
    fn rounds(&self, store: &mut Store, from: i64, to: i64) {
        for start in (from..to).step_by(10 * S as usize) {
            for (p, lat, lon) in REVIEW6_PROBERS {
                if !(self.stored)(p, start) {
                    continue;
                }
                let km = distance_km(LatLon::new(lat, lon), (self.at)(start));
                let ms = 2.0 * km * 1.5 / 200.0;
                let samples: Vec<SampleRecord> = (0..100)
                    .map(|i| SampleRecord {
                        sent_unix_ns: start + i as i64 * S / 10,
                        rtt_ns: ((ms + 0.05 + (i % 7) as f64 * 0.01) * 1e6) as u64
                            + (self.extra)(p, start),
                        inside_ns: 20_000,
                    })
                    .collect();
                let min = samples.iter().map(|x| x.rtt_ns - x.inside_ns).min();
                let r = round(p, "honest", start, min, false);
                store.insert_round(&signed(r, &samples), &samples).unwrap();
            }
        }
    }
}

/// `node`'s verdicts and reasons judged by `monitor` every five minutes from `t + minutes.0`
/// to `t + minutes.1`, its rounds stored up to each judgement.
fn review6_judged(
    monitor: &RunningMonitor,
    store: &mut Store,
    node: &Review6Node<'_>,
    t: i64,
    (first, last_minute): (i64, i64),
) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    let mut last = t + first * 60 * S;
    for minute in (first..=last_minute).step_by(5) {
        let now = t + minute * 60 * S;
        node.rounds(store, last, now);
        last = now;
        let (verdict, reasons) = monitor.judge_honest(store, now);
        out.push((minute, verdict, reasons));
    }
    out
}

/// REVIEW6 (review 5 M5's reproducer): three lasting honest route changes 20 minutes apart
/// (ams +1.4 ms, then lon +1.0 ms, then par +0.35 ms: what a move 100 km south-south-east
/// would add). A monitor whose remembered minimum never rises (2e8d71d) sees them all "from
/// round 0" and relocates the node; one that adopts a gap-free history does not.
#[test]
fn review6_m5_three_lasting_route_changes_apart_do_not_accumulate_into_a_move() {
    let t = 1_800_000_000 * S;
    let min = 60 * S;
    let extra = |p: &str, start: i64| match p {
        "ams" if start >= t => 1_400_000,
        "lon" if start >= t + 20 * min => 1_000_000,
        "par" if start >= t + 40 * min => 350_000,
        _ => 0,
    };
    let v = review6_verdicts(t, 70, |_| pos("fra"), extra);
    let bad: Vec<_> = v.iter().filter(|x| x.1 == "relocated").collect();
    assert!(bad.is_empty(), "{bad:?}");
}

/// REVIEW6 B in the monitor: every path of the node 0.6 ms slower from one instant on (its
/// datacentre's egress moved); three of four probers lie west of fra.
#[test]
fn review6_m5_a_uniform_route_change_does_not_relocate() {
    let t = 1_800_000_000 * S;
    let v = review6_verdicts(
        t + 150 * S,
        20,
        |_| pos("fra"),
        |_, s| {
            if s >= t + 5 * 60 * S {
                600_000
            } else {
                0
            }
        },
    );
    let bad: Vec<_> = v.iter().filter(|x| x.1 == "relocated").collect();
    assert!(bad.is_empty(), "{bad:?}");
}

/// REVIEW6: a real 150 km move east stays relocated: it must not be "adopted" like a route
/// change once the new place fills a gap-free history (the alert would resolve itself).
#[test]
fn review6_m5_a_real_move_is_not_adopted() {
    let t = 1_800_000_000 * S;
    let to = LatLon::new(49.857, 10.741);
    let v = review6_verdicts(
        t,
        40,
        |s| if s >= t + 150 * S { to } else { pos("fra") },
        |_, _| 0,
    );
    let first = v.iter().position(|x| x.1 == "relocated");
    assert!(first.is_some(), "never relocated: {v:?}");
    let after: Vec<_> = v[first.unwrap()..]
        .iter()
        .filter(|x| x.1 == "located")
        .collect();
    assert!(after.is_empty(), "{after:?}");
}

/// REVIEW6 R5: a node judged `relocated` stays frozen, also across a restart of the monitor
/// (its latest stored `relocated` is newer than its latest `located`), until the operator
/// re-baselines it (`locus monitor --rebaseline NODE`): then its verified history is its
/// baseline again and the hold is gone.
#[test]
fn review6_r5_a_relocated_node_stays_frozen_until_rebaselined() {
    let t = 1_800_000_000 * S;
    let dir = tempfile::tempdir().unwrap();
    let (mut store, config) = review6_fleet(dir.path());
    let to = LatLon::new(49.857, 10.741);
    let node = Review6Node {
        at: &|s| if s >= t + 150 * S { to } else { pos("fra") },
        extra: &|_, _| 0,
        stored: &|_, _| true,
    };
    node.rounds(&mut store, t - 1200 * S, t);
    let monitor = RunningMonitor::with_config(&config, 6);
    let v = review6_judged(&monitor, &mut store, &node, t, (0, 30));
    let first = v.iter().position(|x| x.1 == "relocated");
    assert!(first.is_some(), "never relocated: {v:?}");
    let frozen = "not re-baselined since";
    for x in &v[first.unwrap() + 1..] {
        assert_ne!(x.1, "located", "{x:?}");
        assert!(x.2.contains(frozen), "{x:?}");
    }
    // restarted: the stored verdicts keep it frozen
    let restarted = RunningMonitor::with_config(&config, 6);
    let v = review6_judged(&restarted, &mut store, &node, t, (35, 40));
    for x in &v {
        assert_ne!(x.1, "located", "{x:?}");
        assert!(x.2.contains("--rebaseline honest"), "{x:?}");
    }
    // re-baselined by the operator: judged on its history at the new place, no hold
    let mut thawed = RunningMonitor::with_config(&config, 6);
    thawed.judging.memory =
        locus_fleet::monitor::VerdictMemory::rebaselining(["honest".to_owned()]);
    let v = review6_judged(&thawed, &mut store, &node, t, (45, 55));
    for x in &v {
        assert!(!x.2.contains(frozen), "{x:?}");
        assert_ne!(x.1, "relocated", "{x:?}");
    }
}

/// REVIEW6 R6: review 5 M5's reproducer while whoever writes the database deletes three rounds
/// of every prober just before each window's start, so the newest baseline rounds always have a
/// gap and the remembered minimum is never replaced. The shifts "from round 0" against that
/// minimum are held inconclusive naming the gap, not relocated.
#[test]
fn review6_r6_deleted_baseline_rounds_do_not_accumulate_route_changes_into_a_move() {
    let t = 1_800_000_000 * S;
    let min = 60 * S;
    let dir = tempfile::tempdir().unwrap();
    let (mut store, config) = review6_fleet(dir.path());
    let node = Review6Node {
        at: &|_| pos("fra"),
        extra: &|p, start| match p {
            "ams" if start >= t => 1_400_000,
            "lon" if start >= t + 20 * min => 1_000_000,
            "par" if start >= t + 40 * min => 350_000,
            _ => 0,
        },
        stored: &|_, start| {
            let offset = (start - t).rem_euclid(5 * min);
            !(t..t + 80 * min).contains(&start) || offset < 270 * S
        },
    };
    node.rounds(&mut store, t - 1200 * S, t);
    let monitor = RunningMonitor::with_config(&config, 6);
    let v = review6_judged(&monitor, &mut store, &node, t, (0, 70));
    let bad: Vec<_> = v.iter().filter(|x| x.1 == "relocated").collect();
    assert!(bad.is_empty(), "{bad:?}");
    assert!(
        v.iter()
            .any(|x| x.2.contains("gap in the newest baseline rounds")),
        "{v:?}"
    );
}
