//! Admission under load, end to end over loopback QUIC: a full evidence queue and a second
//! request on one connection are answered `busy` at once, connection caps and request rates
//! refuse and count, anchors are deduplicated and capped, and echoes are answered throughout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use locus_prober::requests::{request_evidence, request_transcript, RequestError};
use locus_prober::{connect, run_round, RoundConfig, SpkiPolicy, Target};
use locus_proto::messages::{codes, Include};
use locus_responder::admission::Limits;
use locus_responder::evidence::EvidenceSource;
use locus_responder::server::{Server, ServerConfig};
use locus_responder::session_key::SessionKey;
use locus_responder::tdx::{QuoteError, TdxQuoter};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A TDX quoter that holds every quote until the gate opens, then fails it: evidence
/// requests stay in flight as long as a test needs.
#[derive(Default)]
struct GatedQuoter {
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicUsize,
}

impl GatedQuoter {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl TdxQuoter for GatedQuoter {
    fn quote(&self, _report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        Err(QuoteError::Busy { attempts: 1 })
    }
}

fn start(limits: Limits, quoter: Option<Arc<GatedQuoter>>) -> Server {
    let source = EvidenceSource::new(quoter.map(|q| q as Arc<dyn TdxQuoter>), None);
    Server::start(
        ServerConfig {
            limits,
            ..ServerConfig::new(loopback())
        },
        SessionKey::generate().unwrap(),
        source,
    )
    .unwrap()
}

async fn prober(server: &Server) -> Target {
    connect(
        server.local_addr().unwrap(),
        loopback(),
        SpkiPolicy::Pinned(server.session_key().spki_der().to_vec()),
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

fn tdx() -> Include {
    Include {
        tdx: true,
        ..Include::default()
    }
}

/// Waits (bounded) until `done` holds: the responder's worker runs on its own thread.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..5000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting until {what}");
}

fn is_busy(r: &Result<impl std::fmt::Debug, RequestError>, code: u16) -> bool {
    matches!(r, Err(RequestError::Busy { code: c, .. }) if *c == code)
}

fn is_unavailable(r: &Result<impl std::fmt::Debug, RequestError>) -> bool {
    matches!(
        r,
        Err(RequestError::Refused {
            code: codes::UNAVAILABLE,
            ..
        })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_evidence_request_on_a_connection_is_busy() {
    let quoter = Arc::new(GatedQuoter::default());
    let server = start(Limits::default(), Some(quoter.clone()));
    let target = prober(&server).await;
    let first = {
        let target = target.clone();
        tokio::spawn(async move { request_evidence(&target, &[1; 32], tdx()).await })
    };
    until("the first request quotes", || {
        quoter.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = request_evidence(&target, &[2; 32], tdx()).await;
    assert!(is_busy(&second, codes::BUSY), "{second:?}");
    quoter.open();
    let first = first.await.unwrap();
    assert!(is_unavailable(&first), "{first:?}");
    assert_eq!(server.shed_counts().evidence_in_flight, 1);
    // Once the first is answered the connection may ask again.
    let third = request_evidence(&target, &[3; 32], tdx()).await;
    assert!(is_unavailable(&third), "{third:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_evidence_queue_answers_busy_and_echoes_go_on() {
    let quoter = Arc::new(GatedQuoter::default());
    let limits = Limits {
        evidence_concurrency: 1,
        evidence_queue: 1,
        ..Limits::default()
    };
    let server = start(limits, Some(quoter.clone()));
    let mut asks = Vec::new();
    let mut targets = Vec::new();
    for i in 0..6u8 {
        let target = prober(&server).await;
        targets.push(target.clone());
        asks.push(tokio::spawn(async move {
            request_evidence(&target, &[i; 32], tdx()).await
        }));
    }
    // One collection runs, one waits for its slot, one is queued: at least three are busy.
    until("three requests are refused", || {
        server.shed_counts().evidence_queue_full >= 3
    })
    .await;
    // The echo path does not wait for evidence work.
    let round = run_round(
        &targets[0],
        &RoundConfig {
            rate_hz: 0.0,
            count: 200,
            window: 8,
            timeout: Duration::from_secs(2),
            keep_samples: false,
            spin: Duration::ZERO,
        },
    )
    .await;
    assert_eq!(round.answered, 200, "{round:?}");
    quoter.open();
    let mut busy = 0;
    for ask in asks {
        let r = ask.await.unwrap();
        if is_busy(&r, codes::BUSY) {
            busy += 1;
        } else {
            assert!(is_unavailable(&r), "{r:?}");
        }
    }
    let counts = server.shed_counts();
    assert_eq!(busy, counts.evidence_queue_full);
    assert!((3..=5).contains(&busy), "{counts:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_counted() {
    let server = start(
        Limits {
            max_connections: 2,
            ..Limits::default()
        },
        None,
    );
    let _a = prober(&server).await;
    let _b = prober(&server).await;
    let refused = connect(
        server.local_addr().unwrap(),
        loopback(),
        SpkiPolicy::Pinned(server.session_key().spki_der().to_vec()),
        Duration::from_secs(5),
    )
    .await;
    assert!(refused.is_err());
    assert_eq!(server.shed_counts().connections_over_cap, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn requests_over_the_peer_rate_are_rate_limited() {
    let server = start(
        Limits {
            requests_per_ip_per_sec: 1.0,
            ..Limits::default()
        },
        None,
    );
    let target = prober(&server).await;
    // A burst of twice the rate, then refused.
    request_transcript(&target).await.unwrap();
    request_transcript(&target).await.unwrap();
    let third = request_transcript(&target).await;
    assert!(is_busy(&third, codes::RATE_LIMITED), "{third:?}");
    assert_eq!(server.shed_counts().requests_rate_limited, 1);
    // Still asking after a rate's worth of refusals: the connection is closed, not answered.
    let fourth = request_transcript(&target).await;
    assert!(fourth.is_err(), "{fourth:?}");
    assert_eq!(server.shed_counts().request_flood_closed, 1);
    let reason = format!("{:?}", target.conn.close_reason());
    assert!(reason.contains("request rate exceeded"), "{reason}");
    server.shutdown().await;
}

#[tokio::test]
async fn anchors_are_deduplicated_and_capped() {
    let server = start(
        Limits {
            max_anchors: 2,
            ..Limits::default()
        },
        None,
    );
    let target = prober(&server).await;
    let names = |n: &[&str]| Include {
        anchors: n.iter().map(|s| s.to_string()).collect(),
        ..Include::default()
    };
    let many = request_evidence(&target, &[1; 32], names(&["a", "b", "c"])).await;
    assert!(
        matches!(
            many,
            Err(RequestError::Refused {
                code: codes::TOO_LARGE,
                ..
            })
        ),
        "{many:?}"
    );
    // Repeats count once: past the cap, refused only because this responder has no anchors.
    let repeated = request_evidence(&target, &[2; 32], names(&["a", "a", "a", "a", "b"])).await;
    assert!(is_unavailable(&repeated), "{repeated:?}");
    assert_eq!(server.shed_counts().too_many_anchors, 1);
    server.shutdown().await;
}

/// `[access] evidence = "pinned"`: a pinned prober's signed request is served; an unsigned one,
/// one signed by an unknown key, and one signed on another connection (a replay) are refused
/// with `unauthorized` and counted. Echo stays open to all.
#[tokio::test]
async fn pinned_access_serves_signed_requests_only() {
    use locus_prober::identity::ProberIdentity;
    use locus_prober::requests::{exchange_raw, sign_request};
    use locus_proto::frame::{self, MessageKind, MAX_BODY_LEN};
    use locus_proto::messages::{ErrorMessage, EvidenceRequest};
    use locus_responder::access::EvidenceAccess;

    let honest = Arc::new(ProberIdentity::from_seed([1; 32]));
    let stranger = Arc::new(ProberIdentity::from_seed([2; 32]));
    let server = Server::start(
        ServerConfig {
            access: EvidenceAccess::Pinned(vec![honest.public_key().to_bytes()]),
            ..ServerConfig::new(loopback())
        },
        SessionKey::generate().unwrap(),
        EvidenceSource::default(),
    )
    .unwrap();
    let signed = prober(&server).await.with_signer(honest.clone());
    let bundle = request_evidence(&signed, &[1; 32], Include::default())
        .await
        .unwrap();
    assert_eq!(bundle.nonce, [1; 32]);

    let unauthorized =
        |r: &Result<_, RequestError>| matches!(r, Err(RequestError::Unauthorized { .. }));
    let unsigned = prober(&server).await;
    let r = request_evidence(&unsigned, &[2; 32], Include::default()).await;
    assert!(unauthorized(&r), "{r:?}");
    let unknown = prober(&server).await.with_signer(stranger);
    let r = request_evidence(&unknown, &[3; 32], Include::default()).await;
    assert!(unauthorized(&r), "{r:?}");

    // Signed by the pinned key, but on the first connection, sent on another.
    let req = EvidenceRequest {
        nonce: vec![4; 32],
        include: Include::default(),
        issuer: None,
        sealed: None,
        auth: None,
    };
    let lifted = sign_request(&signed, honest.as_ref(), &req).unwrap();
    let other = prober(&server).await;
    let reply = exchange_raw(
        &other,
        &frame::encode(MessageKind::EvidenceRequest, &lifted),
    )
    .await
    .unwrap();
    let e: ErrorMessage = frame::decode(&reply, MessageKind::Error, MAX_BODY_LEN).unwrap();
    assert_eq!(e.code, codes::UNAUTHORIZED, "{e:?}");
    assert!(e.message.contains("does not verify"), "{e:?}");
    // On its own connection the same signed request is served.
    let reply = exchange_raw(
        &signed,
        &frame::encode(MessageKind::EvidenceRequest, &lifted),
    )
    .await
    .unwrap();
    assert_eq!(reply[1], MessageKind::EvidenceResponse as u8);

    assert_eq!(server.shed_counts().unauthorized, 3);
    let round = run_round(
        &unsigned,
        &RoundConfig {
            rate_hz: 0.0,
            count: 20,
            window: 4,
            timeout: Duration::from_secs(2),
            keep_samples: false,
            spin: Duration::ZERO,
        },
    )
    .await;
    assert_eq!(round.answered, 20, "echo is open to all");
    server.shutdown().await;
}

/// A prober whose connection the responder closes for flooding echoes (a full window of
/// challenges in flight, none to be answered) ends its round at once instead of waiting for
/// room in the window forever.
#[tokio::test]
async fn a_round_ends_when_the_responder_closes_a_flooding_connection() {
    let server = start(
        Limits {
            echo_per_ip_per_sec: Some(100.0),
            ..Limits::default()
        },
        None,
    );
    let target = prober(&server).await;
    let round = tokio::time::timeout(
        Duration::from_secs(10),
        run_round(
            &target,
            &RoundConfig {
                rate_hz: 0.0,
                count: 100_000,
                window: 64,
                timeout: Duration::from_secs(60),
                keep_samples: false,
                spin: Duration::ZERO,
            },
        ),
    )
    .await
    .expect("the round hung on a closed connection");
    assert!(target.conn.close_reason().is_some(), "not closed");
    assert!(round.answered < 100, "answered {}", round.answered);
    assert_eq!(server.shed_counts().echo_flood_closed, 1);
    server.shutdown().await;
}

/// A small `locus bench overload` runs to the end and reports every key (timings are not
/// asserted: this machine's load decides them), pooled over its interleaved pairs; hostile
/// evidence requests get no bundle under pinned access.
#[test]
fn bench_overload_small_instance_reports_its_keys() {
    let out = bounded_output(
        std::process::Command::new(env!("CARGO_BIN_EXE_locus")).args([
            "bench",
            "overload",
            "--attack-connections",
            "6",
            "--phase-ms",
            "400",
            "--repetitions",
            "2",
            "--evidence-requests",
            "3",
            "--json",
        ]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "honest_echo_p50_us",
        "honest_echo_p50_us_idle",
        "honest_echo_ratio",
        "honest_evidence_p99_ms_idle",
        "responder_rss_mib_peak",
        "echo_capacity_per_s",
    ] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x} in {v}");
    }
    // Present even when every honest request under attack failed (then null).
    assert!(v.get("honest_evidence_p99_ms").is_some(), "{v}");
    assert_eq!(v["attack_connections"], 6, "{v}");
    assert_eq!(v["attack_evidence_answered"], 0, "{v}");
    assert!(v["attack_unauthorized"].as_u64().unwrap() > 0, "{v}");
    assert!(v["busy_answers"].as_u64().is_some(), "{v}");
    assert_eq!(v["responder_alive"], true, "{v}");
    // The responder's own counts, read from its log at shutdown: its hostile evidence
    // requests were refused as unauthorized there too.
    let shed = &v["responder_shed"];
    assert!(shed["unauthorized"].as_u64().unwrap() > 0, "{v}");
    assert!(shed["connections_penalized"].as_u64().is_some(), "{v}");
    assert!(v["responder_cpu_s_attack"].as_f64().unwrap() > 0.0, "{v}");
    // The attackers ran in their own process, and what they reached is reported.
    assert!(v["attacker_cpu_s_attack"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["flood_sent_per_s"].as_f64().unwrap() > 0.0, "{v}");
    // Rates of a 0.4 s phase may be 0 (a round of hostile echoes may not end in it).
    for key in [
        "attack_connect_attempts_per_s",
        "attack_echo_sent_per_s",
        "attack_evidence_requests_per_s",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x >= 0.0), "{key} in {v}");
    }
    assert!(v["honest_prober_nice"].as_i64().is_some(), "{v}");
    on_cpus_of_their_own(&v);
    pooled_over_the_pairs(&v);
}

/// By default, on two CPUs or more, the attack process runs on CPUs of its own and the
/// responder on the others (as read back from each process); on one, both on that one.
fn on_cpus_of_their_own(v: &serde_json::Value) {
    let cpus = |key: &str| -> Vec<u64> {
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {v}"))
            .iter()
            .map(|c| c.as_u64().expect("a CPU number"))
            .collect()
    };
    let (attacker, bench) = (cpus("attacker_cpus"), cpus("bench_cpus"));
    assert!(!attacker.is_empty() && !bench.is_empty(), "{v}");
    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    if online >= 2 {
        assert!(attacker.iter().all(|c| !bench.contains(c)), "{v}");
    } else {
        assert_eq!(attacker, bench, "{v}");
    }
}

/// The pooled figures of a `bench overload` report agree with its pairs': a pooled quantile
/// lies between the pairs' smallest and largest (pooled ratios need not lie between the pairs'
/// ratios), and the spread keys are those of the pairs' ratios.
fn pooled_over_the_pairs(v: &serde_json::Value) {
    assert_eq!(v["repetitions"], 2, "{v}");
    assert_eq!(v["evidence_samples_per_side"], 6, "{v}");
    let pairs = v["per_repetition"].as_array().expect("per_repetition");
    assert_eq!(pairs.len(), 2, "{v}");
    let of_pairs = |key: &str| -> Vec<f64> {
        pairs
            .iter()
            .filter_map(|p| p[key].as_f64())
            .filter(|x| x.is_finite())
            .collect()
    };
    let within = |pooled: &str, key: &str| {
        let x = &of_pairs(key);
        if x.is_empty() {
            // Every request under attack failed: nothing pooled either.
            assert!(v[pooled].is_null(), "{pooled} in {v}");
            return;
        }
        let (lo, hi) = (
            x.iter().copied().fold(f64::INFINITY, f64::min),
            x.iter().copied().fold(0.0, f64::max),
        );
        let p = v[pooled]
            .as_f64()
            .unwrap_or_else(|| panic!("no {pooled} in {v}"));
        assert!(
            lo <= p && p <= hi,
            "{pooled} = {p} outside the pairs' {key} {lo}..={hi} in {v}"
        );
    };
    within("honest_echo_p50_us", "honest_echo_p50_us");
    within("honest_echo_p50_us_idle", "honest_echo_p50_us_idle");
    within("honest_evidence_p99_ms", "honest_evidence_p99_ms");
    within("honest_evidence_p99_ms_idle", "honest_evidence_p99_ms_idle");
    for (spread, key) in [
        ("honest_echo_ratio", "honest_echo_ratio"),
        ("honest_evidence_p99_ratio", "honest_evidence_ratio"),
    ] {
        let mut x = of_pairs(key);
        x.sort_by(f64::total_cmp);
        let get = |s: &str| v[format!("{spread}_{s}")].as_f64();
        if x.is_empty() {
            assert_eq!(get("min"), None, "{v}");
            continue;
        }
        let median = (x[(x.len() - 1) / 2] + x[x.len() / 2]) / 2.0;
        let close =
            |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0));
        assert!(close(get("min"), x[0]), "{spread}_min in {v}");
        assert!(close(get("median"), median), "{spread}_median in {v}");
        assert!(close(get("max"), x[x.len() - 1]), "{spread}_max in {v}");
    }
    let ratio =
        v["honest_echo_p50_us"].as_f64().unwrap() / v["honest_echo_p50_us_idle"].as_f64().unwrap();
    assert!(
        (v["honest_echo_ratio"].as_f64().unwrap() - ratio).abs() < 1e-9,
        "{v}"
    );
    assert!(
        v["idle_settle_ms_max"].as_f64().is_some_and(|x| x >= 0.0),
        "{v}"
    );
}

/// Runs `cmd` to its end, killing it after two minutes (the bench bounds itself well within
/// that; this catches a bench that does not).
fn bounded_output(cmd: &mut std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hung: killed after 120 s; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

/// A responder with these limits answering evidence only to `key` (`pinned`).
fn pinned_server(limits: Limits, key: &locus_prober::identity::ProberIdentity) -> Server {
    use locus_responder::access::EvidenceAccess;
    Server::start(
        ServerConfig {
            limits,
            access: EvidenceAccess::Pinned(vec![key.public_key().to_bytes()]),
            ..ServerConfig::new(loopback())
        },
        SessionKey::generate().unwrap(),
        EvidenceSource::default(),
    )
    .unwrap()
}

/// At most three connections.
fn cap_of_3() -> Limits {
    Limits {
        max_connections: 3,
        ..Limits::default()
    }
}

/// REVIEW2 F7: under `pinned`, connections that proved no key cannot lock probers out. At the
/// cap (3, all unsigned and idle) a pinned prober still connects and gets evidence; a fourth
/// unsigned connection evicts the oldest unsigned one, never the pinned one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_pinned_prober_evicts_the_oldest_unsigned_connection() {
    use locus_prober::identity::ProberIdentity;

    let honest = Arc::new(ProberIdentity::from_seed([1; 32]));
    let server = pinned_server(cap_of_3(), &honest);
    let idle = [
        prober(&server).await,
        prober(&server).await,
        prober(&server).await,
    ];
    let closed = |t: &Target| t.conn.close_reason().is_some();
    let pinned = prober(&server).await.with_signer(honest.clone());
    let bundle = request_evidence(&pinned, &[1; 32], Include::default())
        .await
        .unwrap();
    assert_eq!(bundle.nonce, [1; 32]);
    until("the oldest idle connection is closed", || closed(&idle[0])).await;
    let reason = format!("{:?}", idle[0].conn.close_reason());
    assert!(reason.contains("evicted"), "{reason}");
    assert!(!closed(&idle[1]) && !closed(&idle[2]));

    let fourth = prober(&server).await;
    until("the next oldest idle connection is closed", || {
        closed(&idle[1])
    })
    .await;
    assert!(!closed(&idle[2]) && !closed(&fourth) && !closed(&pinned));
    // The pinned connection is older than the fourth, yet the fourth goes first.
    let _fifth = prober(&server).await;
    let _sixth = prober(&server).await;
    until("the fourth is closed", || {
        closed(&idle[2]) && closed(&fourth)
    })
    .await;
    assert!(!closed(&pinned));
    let again = request_evidence(&pinned, &[2; 32], Include::default())
        .await
        .unwrap();
    assert_eq!(again.nonce, [2; 32]);
    let counts = server.shed_counts();
    assert_eq!(counts.connections_evicted, 4, "{counts:?}");
    assert_eq!(counts.connections_over_cap, 0, "{counts:?}");
    server.shutdown().await;
}

/// REVIEW3 A (was a PoC of the attack): a pinned prober proves its key right after the
/// handshake (`prove_key`, as the daemon and `locus prober` now do), before any evidence
/// request, so unsigned newcomers at the cap evict each other, never it; over half the cap
/// their handshakes are answered with a Retry first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review3_a_pinned_prober_proves_its_key_at_once_and_is_not_evicted() {
    use locus_prober::identity::ProberIdentity;
    use locus_prober::requests::prove_key;

    let honest = Arc::new(ProberIdentity::from_seed([1; 32]));
    let server = pinned_server(cap_of_3(), &honest);
    let closed = |t: &Target| t.conn.close_reason().is_some();
    // The honest pinned prober connects first, proves its key and probes (echo only, as in
    // its first round: no evidence request yet).
    let pinned = prober(&server).await.with_signer(honest.clone());
    prove_key(&pinned).await.unwrap();
    let cfg = RoundConfig {
        count: 5,
        ..RoundConfig::default()
    };
    let _report = run_round(&pinned, &cfg).await;
    // Three unsigned attacker connections at the cap of 3: the third evicts the first.
    let a = [
        prober(&server).await,
        prober(&server).await,
        prober(&server).await,
    ];
    until("the oldest unsigned connection is evicted", || {
        closed(&a[0])
    })
    .await;
    assert!(!closed(&pinned), "{:?}", pinned.conn.close_reason());
    let bundle = request_evidence(&pinned, &[1; 32], Include::default())
        .await
        .unwrap();
    assert_eq!(bundle.nonce, [1; 32]);
    let counts = server.shed_counts();
    assert_eq!(counts.connections_evicted, 1, "{counts:?}");
    assert!(counts.connections_retried >= 2, "{counts:?}");
    // A hello signed by a key the responder does not pin proves nothing.
    let stranger = prober(&server)
        .await
        .with_signer(Arc::new(ProberIdentity::from_seed([2; 32])));
    let refused = prove_key(&stranger).await;
    assert!(
        matches!(refused, Err(RequestError::Unauthorized { .. })),
        "{refused:?}"
    );
    server.shutdown().await;
}

/// A responder with pinned access and these limits, and a pinned prober (127.0.0.2) whose
/// connection proved its key with a first signed evidence request.
async fn pinned_setup(limits: Limits, seed: u8) -> (Server, Target) {
    let honest = Arc::new(locus_prober::identity::ProberIdentity::from_seed(
        [seed; 32],
    ));
    let server = pinned_server(limits, &honest);
    let pinned = attempt(&server, "127.0.0.2")
        .await
        .unwrap()
        .with_signer(honest);
    let bundle = request_evidence(&pinned, &[1; 32], Include::default())
        .await
        .unwrap();
    assert_eq!(bundle.nonce, [1; 32], "the prober proved its key");
    (server, pinned)
}

/// Connects from `from` with a short timeout (under QUIC's first retransmission, ~1 s, so an
/// ignored attempt sends one Initial).
async fn attempt(server: &Server, from: &str) -> Result<Target, locus_prober::ConnectError> {
    connect(
        server.local_addr().unwrap(),
        format!("{from}:0").parse().unwrap(),
        SpkiPolicy::Pinned(server.session_key().spki_der().to_vec()),
        Duration::from_millis(500),
    )
    .await
}

/// The pinned prober's connection still has every echo answered and evidence served.
async fn still_served(pinned: &Target, nonce: u8) {
    let round = run_round(pinned, &honest_round()).await;
    assert_eq!(round.answered, 200, "honest echoes");
    let bundle = request_evidence(pinned, &[nonce; 32], Include::default())
        .await
        .unwrap();
    assert_eq!(bundle.nonce, [nonce; 32]);
}

/// An attempt the responder ignored: no refusal came back, the client timed out.
fn ignored(r: &Result<Target, locus_prober::ConnectError>) -> bool {
    matches!(r, Err(locus_prober::ConnectError::Timeout { .. }))
}

fn flood() -> RoundConfig {
    RoundConfig {
        rate_hz: 0.0,
        count: 100_000,
        window: 256,
        timeout: Duration::from_secs(5),
        keep_samples: false,
        spin: Duration::ZERO,
    }
}

fn honest_round() -> RoundConfig {
    RoundConfig {
        rate_hz: 1000.0,
        count: 200,
        window: 16,
        timeout: Duration::from_secs(2),
        keep_samples: false,
        spin: Duration::ZERO,
    }
}

/// Issue 20 part 2: attackers from several 127.x addresses that flood echoes and reconnect at
/// once are closed, then their new connections are ignored (no packet back: the client times
/// out) by the penalty, and an IP past its own handshake rate by that; the counters say which
/// limit spoke. Meanwhile the honest pinned prober's connection, opened before, keeps its
/// echoes (exempt from the total echo budget the floods exhaust) and evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_flooders_are_ignored_while_a_pinned_prober_is_served() {
    let (server, pinned) = pinned_setup(
        Limits {
            // One handshake per IP within the test (burst 1, refilling every 10 s).
            connections_per_ip_per_sec: 0.1,
            // Floods are closed by their IP's own rate (the share of the total budget only
            // drops echoes, REVIEW4 R1): a flood's first window of 256 is past its burst and
            // refusals (120 + 120); the honest prober's 1 kHz is within it.
            echo_per_ip_per_sec: Some(1200.0),
            echo_per_sec: Some(400.0),
            flood_penalty: Duration::from_secs(60),
            ..Limits::default()
        },
        7,
    )
    .await;

    let attackers = ["127.0.3.1", "127.0.3.2", "127.0.3.3"];
    let mut floods = Vec::new();
    for from in attackers {
        let target = attempt(&server, from).await.unwrap();
        floods.push(tokio::spawn(async move {
            let round = run_round(&target, &flood()).await;
            (target.conn.close_reason().is_some(), round.answered)
        }));
    }
    // The honest prober probes while the floods run.
    let during = run_round(&pinned, &honest_round()).await;
    for f in floods {
        let (closed, answered) = f.await.unwrap();
        assert!(closed && answered < 100_000, "a flood was not closed");
    }
    assert_eq!(during.answered, 200, "honest echoes during the floods");

    // Reconnecting at once: ignored, each IP penalized.
    for from in attackers {
        let r = attempt(&server, from).await;
        assert!(ignored(&r), "{from}: {:?}", r.err());
    }
    // An IP that never flooded, past its own handshake rate: ignored too.
    let _first = attempt(&server, "127.0.3.9").await.unwrap();
    let r = attempt(&server, "127.0.3.9").await;
    assert!(ignored(&r), "{:?}", r.err());

    let c = server.shed_counts();
    assert_eq!(c.echo_flood_closed, 3, "{c:?}");
    assert_eq!(c.flood_penalties, 3, "{c:?}");
    assert!(c.echo_over_share > 0, "{c:?}");
    // At least once per ignored attempt (a late retransmitted Initial is ignored again).
    assert!(c.connections_penalized >= 3, "{c:?}");
    assert!(c.connections_per_ip >= 1, "{c:?}");
    assert_eq!(c.handshakes_over_budget, 0, "{c:?}");
    assert_eq!(c.connections_over_cap, 0, "{c:?}");

    still_served(&pinned, 2).await;
    server.shutdown().await;
}

/// The total handshake budget: once it is spent, attempts from any number of addresses, each
/// within its own rate, are ignored without a handshake (`handshakes_over_budget`), while the
/// connection admitted before keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ips_cannot_buy_handshakes_past_the_total_budget() {
    let (server, pinned) = pinned_setup(
        Limits {
            // A burst of one handshake, the next in ten seconds: the pinned prober's.
            handshakes_per_sec: 0.1,
            ..Limits::default()
        },
        8,
    )
    .await;
    for i in 1..=4 {
        let from = format!("127.0.4.{i}");
        let r = attempt(&server, &from).await;
        assert!(ignored(&r), "{from}: {:?}", r.err());
    }
    let c = server.shed_counts();
    assert!(c.handshakes_over_budget >= 4, "{c:?}");
    assert_eq!(c.connections_per_ip, 0, "{c:?}");
    still_served(&pinned, 3).await;
    server.shutdown().await;
}

/// A certificate check that refuses everything: the handshakes it is used for never get that far.
#[derive(Debug)]
struct NeverReached;

impl locus_net::ServerKeyCheck for NeverReached {
    fn check_server_cert(
        &self,
        _cert: locus_net::ServerCert<'_>,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General("never reached".into()))
    }
}

/// Sends `n` first Initial packets to `to` from `socket` and never answers: what an attacker
/// spoofing `socket`'s address can do.
fn send_bare_initials(socket: &std::net::UdpSocket, to: SocketAddr, n: usize) {
    let verifier = Arc::new(locus_net::Tls13Verifier::new(
        NeverReached,
        locus_net::crypto_provider().signature_verification_algorithms,
    ));
    let client = locus_net::client_config(verifier).unwrap();
    let mut ep = quinn_proto::Endpoint::new(Default::default(), None, true, None);
    let now = std::time::Instant::now();
    let mut buf = Vec::new();
    for _ in 0..n {
        let (_, mut conn) = ep
            .connect(now, client.clone(), to, "locus-responder")
            .unwrap();
        buf.clear();
        let t = conn.poll_transmit(now, 1, &mut buf).expect("an Initial");
        socket.send_to(&buf[..t.size], to).unwrap();
    }
}

/// REVIEW4 R3: Initials from an address QUIC has not validated (spoofed with a prober's
/// source, never answered) take no place and spend no allowance of that IP: 64 of them (the
/// per-IP connection limit) are all answered with a Retry, and the prober behind that
/// address still connects at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review4_r3_spoofed_initials_take_no_place_of_the_ip_they_claim() {
    let server = start(
        Limits {
            connections_per_ip_per_sec: 1000.0,
            ..Limits::default()
        },
        None,
    );
    let to = server.local_addr().unwrap();
    let spoofed = std::net::UdpSocket::bind(loopback()).unwrap();
    let per_ip = Limits::default().max_connections_per_ip;
    send_bare_initials(&spoofed, to, per_ip);
    until("every bare Initial is retried", || {
        server.shed_counts().connections_retried >= per_ip as u64
    })
    .await;
    let honest = prober(&server).await;
    let _report = run_round(
        &honest,
        &RoundConfig {
            count: 5,
            ..RoundConfig::default()
        },
    )
    .await;
    let counts = server.shed_counts();
    assert_eq!(counts.connections_per_ip, 0, "{counts:?}");
    assert_eq!(counts.connections_over_cap, 0, "{counts:?}");
    server.shutdown().await;
}

/// A pinned server answering evidence to `keys`, with `quoter` for TDX quotes.
fn pinned_with(limits: Limits, keys: &[[u8; 32]], quoter: Option<Arc<GatedQuoter>>) -> Server {
    use locus_responder::access::EvidenceAccess;
    Server::start(
        ServerConfig {
            limits,
            access: EvidenceAccess::Pinned(keys.to_vec()),
            ..ServerConfig::new(loopback())
        },
        SessionKey::generate().unwrap(),
        EvidenceSource::new(quoter.map(|q| q as Arc<dyn TdxQuoter>), None),
    )
    .unwrap()
}

/// Spends the request answers of 127.0.0.2 from a fresh unsigned connection: transcripts
/// until one is refused.
async fn spend_requests_of_127_0_0_2(server: &Server) {
    let neighbour = attempt(server, "127.0.0.2").await.unwrap();
    for _ in 0..100 {
        if is_busy(&request_transcript(&neighbour).await, codes::RATE_LIMITED) {
            return;
        }
    }
    panic!("the neighbour's transcripts were never rate-limited");
}

/// REVIEW6 R8: a NAT neighbour spent the IP's request answers; a pinned prober's new
/// connection still proves its key (its first request over the rate is read and its
/// signature checked before it is refused) and is then answered from its key's allowance.
/// What a flooder can make the responder verify this way is bounded: one signature check
/// per connection, so a connection whose one check was spent (on a key the responder does
/// not pin) is refused `rate-limited` even for a good signature later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review6_a_pinned_prober_proves_its_key_over_its_neighbours_spent_request_rate() {
    use locus_prober::identity::ProberIdentity;
    use locus_prober::requests::prove_key;

    let honest = Arc::new(ProberIdentity::from_seed([1; 32]));
    let stranger = Arc::new(ProberIdentity::from_seed([2; 32]));
    let limits = Limits {
        // A token every half second: each check below runs right after the answers are spent.
        requests_per_ip_per_sec: 2.0,
        ..Limits::default()
    };
    let server = pinned_with(limits, &[honest.public_key().to_bytes()], None);

    // The one early check of a connection, spent on a key the responder does not pin.
    let spent = attempt(&server, "127.0.0.2").await.unwrap();
    spend_requests_of_127_0_0_2(&server).await;
    let r = prove_key(&spent.clone().with_signer(stranger)).await;
    assert!(is_busy(&r, codes::RATE_LIMITED), "{r:?}");
    spend_requests_of_127_0_0_2(&server).await;
    let r = prove_key(&spent.with_signer(honest.clone())).await;
    assert!(is_busy(&r, codes::RATE_LIMITED), "{r:?}");

    let prober = attempt(&server, "127.0.0.2")
        .await
        .unwrap()
        .with_signer(honest);
    spend_requests_of_127_0_0_2(&server).await;
    prove_key(&prober)
        .await
        .expect("the pinned prober proves its key over the spent rate");
    spend_requests_of_127_0_0_2(&server).await;
    let bundle = request_evidence(&prober, &[1; 32], Include::default())
        .await
        .expect("answered from its key's allowance");
    assert_eq!(bundle.nonce, [1; 32]);
    let c = server.shed_counts();
    assert_eq!(c.request_flood_closed, 0, "{c:?}");
    server.shutdown().await;
}

/// REVIEW6 R9: a hostile pinned key on several connections holds at most its share of the
/// evidence work (half the collection slots, queued and running): while its first quote is
/// held, its second request is `busy` at once, and another pinned prober's request is taken
/// and quoted meanwhile, not queued behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review6_a_hostile_pinned_key_holds_only_its_share_of_the_evidence_queue() {
    use locus_prober::identity::ProberIdentity;

    let hostile = Arc::new(ProberIdentity::from_seed([3; 32]));
    let honest = Arc::new(ProberIdentity::from_seed([4; 32]));
    let quoter = Arc::new(GatedQuoter::default());
    let keys = [
        hostile.public_key().to_bytes(),
        honest.public_key().to_bytes(),
    ];
    let server = pinned_with(Limits::default(), &keys, Some(quoter.clone()));

    let first = prober(&server).await.with_signer(hostile.clone());
    let held = tokio::spawn(async move { request_evidence(&first, &[1; 32], tdx()).await });
    until("the hostile key's first request quotes", || {
        quoter.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    for i in 2..5u8 {
        let more = prober(&server).await.with_signer(hostile.clone());
        let r = request_evidence(&more, &[i; 32], tdx()).await;
        match &r {
            Err(RequestError::Busy { code, message }) => {
                assert_eq!(*code, codes::BUSY);
                assert!(message.contains("share"), "{message}");
            }
            other => panic!("expected busy, got {other:?}"),
        }
    }
    let other = prober(&server).await.with_signer(honest);
    let served = tokio::spawn(async move { request_evidence(&other, &[9; 32], tdx()).await });
    until("the other key's request quotes too", || {
        quoter.entered.load(Ordering::SeqCst) == 2
    })
    .await;
    quoter.open();
    assert!(is_unavailable(&held.await.unwrap()));
    assert!(is_unavailable(&served.await.unwrap()));
    let c = server.shed_counts();
    assert_eq!(c.evidence_over_key_share, 3, "{c:?}");
    assert_eq!(c.evidence_queue_full, 0, "{c:?}");
    server.shutdown().await;
}
