use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::tdx::configfs::fake::{FakeKernel, Faults};
use crate::tdx::lab::LabTdx;

const EXAMPLE: &str = include_str!("../../../config/responder.example.toml");

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("responder.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn open_err(dir: &Path, text: &str) -> ConfigError {
    ResponderConfig::load(&write_config(dir, text))
        .unwrap()
        .open()
        .unwrap_err()
}

#[test]
fn the_example_parses_with_every_documented_key() {
    let c = ResponderConfig::parse(EXAMPLE).unwrap();
    assert_eq!(c.tdx.backend, TdxBackendKind::Configfs);
    assert_eq!(c.tdx.configfs_root, Path::new(configfs::DEFAULT_ROOT));
    assert_eq!(c.tdx.coalesce_max_batch, 128);
    let tpm = c.tpm.as_ref().unwrap();
    assert_eq!(tpm.ak, AkChoice::Auto);
    assert_eq!(c.tcti().unwrap(), Some(Tcti::Device("/dev/tpmrm0".into())));
    let linux = EventLogPaths::linux();
    assert_eq!(c.event_logs.tcg, linux.tcg);
    assert_eq!(c.event_logs.ccel_data, linux.ccel_data);
    assert_eq!(c.listen, Some("0.0.0.0:4433".parse().unwrap()));
}

#[test]
fn a_stray_key_in_any_table_is_refused() {
    for table in ["[tdx]", "[tpm]", "[event_logs]", "[limits]", "[access]"] {
        let bad = EXAMPLE.replacen(table, &format!("{table}\nsurprise = 1"), 1);
        assert!(
            ResponderConfig::parse(&bad).is_err(),
            "{table} took a stray key"
        );
    }
    assert!(ResponderConfig::parse(&format!("surprise = 1\n{EXAMPLE}")).is_err());
    assert!(ResponderConfig::parse("[anchors]\nfile = \"a.toml\"\nsurprise = 1\n").is_err());
    // Enums escape deny_unknown_fields: their values are checked too.
    assert!(ResponderConfig::parse("[tdx]\nbackend = \"sev\"\n").is_err());
    assert!(ResponderConfig::parse("[tpm]\nak = \"aws\"\n").is_err());
    assert!(ResponderConfig::parse("[access]\nevidence = \"some\"\n").is_err());
}

#[test]
fn limits_and_access_are_checked_once() {
    let c = ResponderConfig::parse(EXAMPLE).unwrap();
    assert_eq!(c.limits().unwrap(), Limits::default());
    assert_eq!(c.access().unwrap(), EvidenceAccess::Any);
    let c = ResponderConfig::parse("[limits]\necho_per_ip_per_sec = 0\n").unwrap();
    assert_eq!(c.limits().unwrap().echo_per_ip_per_sec, None);
    let c = ResponderConfig::parse("[limits]\nevidence_queue = 0\n").unwrap();
    assert_eq!(c.limits().unwrap_err().key(), Some("limits.evidence_queue"));
    let c = ResponderConfig::parse("[limits]\nrequests_per_ip_per_sec = -1.0\n").unwrap();
    assert_eq!(
        c.limits().unwrap_err().key(),
        Some("limits.requests_per_ip_per_sec")
    );
    let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let c = ResponderConfig::parse(&format!(
        "[access]\nevidence = \"pinned\"\nprobers = [\"{key}\"]\n"
    ))
    .unwrap();
    assert_eq!(c.access().unwrap(), EvidenceAccess::Pinned(vec![[1; 32]]));
    let c = ResponderConfig::parse("[access]\nevidence = \"pinned\"\n").unwrap();
    assert_eq!(c.access().unwrap_err().key(), Some("access.probers"));
    let c = ResponderConfig::parse("[access]\nprobers = [\"AQID\"]\n").unwrap();
    assert_eq!(c.access().unwrap_err().key(), Some("access.probers"));
    // REVIEW3 H: valid keys under `any` would pin nothing: refused, naming the fix.
    let c = ResponderConfig::parse(&format!("[access]\nprobers = [\"{key}\"]\n")).unwrap();
    let e = c.access().unwrap_err();
    assert_eq!(e.key(), Some("access.probers"));
    assert!(e.to_string().contains("evidence = \"pinned\""), "{e}");
}

#[test]
fn tcti_strings_parse_like_tpm2_tools() {
    assert_eq!(
        "device:/dev/tpm0".parse::<Tcti>().unwrap(),
        Tcti::Device("/dev/tpm0".into())
    );
    assert_eq!(
        "device".parse::<Tcti>().unwrap(),
        Tcti::Device("/dev/tpmrm0".into())
    );
    assert_eq!(
        "swtpm:host=127.0.0.2,port=2400".parse::<Tcti>().unwrap(),
        Tcti::Swtpm {
            host: "127.0.0.2".into(),
            port: 2400
        }
    );
    for bad in ["mssim:port=1", "swtpm:port=x", "swtpm:hots=a", ""] {
        assert!(bad.parse::<Tcti>().is_err(), "{bad:?} parsed");
    }
    let t: Tcti = "swtpm:host=127.0.0.1,port=9".parse().unwrap();
    assert_eq!(t.to_string().parse::<Tcti>().unwrap(), t);
}

#[test]
fn an_empty_config_opens_no_backend() {
    let b = ResponderConfig::parse("").unwrap().open().unwrap();
    assert!(b.tdx.is_none() && b.vtpm.is_none() && b.anchors.is_none());
}

#[test]
fn each_broken_backend_names_its_key_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        (
            "[tdx]\nbackend = \"configfs\"\nconfigfs_root = \"no-such-tsm\"\n",
            "tdx.configfs_root",
            "no-such-tsm",
        ),
        (
            "[tdx]\nbackend = \"lab\"\nlab_dir = \"no-such-lab\"\n",
            "tdx.lab_dir",
            "no-such-lab",
        ),
        (
            "[event_logs]\ntcg = \"no-such-log\"\n",
            "event_logs.tcg",
            "no-such-log",
        ),
        (
            "[event_logs]\nccel_data = \"no-ccel\"\n",
            "event_logs.ccel_data",
            "no-ccel",
        ),
        (
            "[anchors]\nfile = \"no-anchors.toml\"\n",
            "anchors.file",
            "no-anchors.toml",
        ),
        (
            "[tpm]\ntcti = \"device:/no/such/tpm\"\n",
            "tpm.tcti",
            "/no/such/tpm",
        ),
        (
            "[tpm]\ntcti = \"device:/no/such/tpm\"\nek_ca_certs = [\"no-ca.pem\"]\n",
            "tpm.ek_ca_certs",
            "no-ca.pem",
        ),
    ];
    for (text, key, path) in cases {
        let e = open_err(d, text);
        assert_eq!(e.key(), Some(key), "{text}: {e}");
        assert!(e.to_string().contains(path), "{text}: {e}");
    }
    let e = open_err(d, "[tdx]\nbackend = \"lab\"\n");
    assert_eq!(e.key(), Some("tdx.lab_dir"), "{e}");
    let e = open_err(d, "[tpm]\ntcti = \"serial:/dev/ttyS0\"\n");
    assert_eq!(e.key(), Some("tpm.tcti"), "{e}");
    let e = open_err(d, "[tdx]\ncoalesce_max_batch = 0\n");
    assert_eq!(e.key(), Some("tdx.coalesce_max_batch"), "{e}");
    let e = open_err(d, "[tdx]\nbackend = \"configfs\"\nquote_delay_ms = 40\n");
    assert_eq!(e.key(), Some("tdx.quote_delay_ms"), "{e}");
}

/// `quote_delay_ms` slows the lab quoter down: the start-up check and a quote each take it.
#[test]
fn a_lab_quote_delay_is_reachable_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let lab = LabTdx::generate().unwrap();
    lab.save(&dir.path().join("lab")).unwrap();
    let cfg = ResponderConfig::load(&write_config(
        dir.path(),
        "[tdx]\nbackend = \"lab\"\nlab_dir = \"lab\"\nquote_delay_ms = 25\n",
    ))
    .unwrap();
    assert_eq!(cfg.tdx.quote_delay_ms, 25);
    let b = cfg.open().unwrap();
    let t = std::time::Instant::now();
    let quote = b.tdx.as_ref().unwrap().quote([3; 64]).unwrap();
    assert!(t.elapsed() >= std::time::Duration::from_millis(25));
    assert_eq!(&quote[568..632], &[3; 64][..]);
}

#[test]
fn a_lab_directory_and_a_configfs_tree_give_tdx_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let lab = LabTdx::generate().unwrap();
    lab.save(&dir.path().join("lab")).unwrap();
    let cfg = ResponderConfig::load(&write_config(
        dir.path(),
        "[tdx]\nbackend = \"lab\"\nlab_dir = \"lab\"\ncoalesce_max_batch = 1\n",
    ))
    .unwrap();
    let b = cfg.open().unwrap();
    let quote = b.tdx.as_ref().unwrap().quote([7; 64]).unwrap();
    assert!(b.lab.is_some());
    // REPORTDATA sits at 48 + 520 in a v4 quote.
    assert_eq!(&quote[568..632], &[7; 64][..]);

    let tsm = dir.path().join("tsm");
    std::fs::create_dir(&tsm).unwrap();
    let cfg = ResponderConfig::load(&write_config(
        dir.path(),
        "[tdx]\nbackend = \"configfs\"\nconfigfs_root = \"tsm\"\n",
    ))
    .unwrap();
    let kernel = Arc::new(FakeKernel::new(lab.quoter(), Faults::default()));
    let b = cfg.open_with(kernel.clone()).unwrap();
    assert_eq!(b.tdx_kind, TdxBackendKind::Configfs);
    assert_eq!(
        &b.tdx.as_ref().unwrap().quote([9; 64]).unwrap()[568..632],
        &[9; 64][..]
    );
    // The start-up quote and this one.
    assert_eq!(kernel.stats().quotes, 2);

    // A TSM provider that is not TDX fails at start, naming the key.
    let sev = Arc::new(FakeKernel::new(
        lab.quoter(),
        Faults {
            provider: Some("sev_guest"),
            ..Faults::default()
        },
    ));
    let e = cfg.open_with(sev).unwrap_err();
    assert_eq!(e.key(), Some("tdx.configfs_root"), "{e}");
    assert!(e.to_string().contains("sev_guest"), "{e}");
}

/// The configfs backend end to end on the kernel emulation the configfs tests drive: config →
/// backends → a bundle → a policy captured from it → the bundle verifies; another MRTD fails
/// `td_reference`. (A child `locus responder` cannot be given the emulation: it lives in this
/// process, behind `TsmFs`.)
#[tokio::test]
async fn a_configfs_bundle_verifies_under_the_policy_captured_from_it() {
    use locus_analysis::policy_init::{init_policy, InitOptions, NamedFile};
    use locus_analysis::verify::bundle::{verify_bundle, CheckId, NonceRecord, VerifyInputs};
    use locus_proto::messages::Include;
    use locus_proto::transcript::Transcript;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tsm")).unwrap();
    let lab = LabTdx::generate().unwrap();
    let cfg = ResponderConfig::load(&write_config(
        dir.path(),
        "[tdx]\nbackend = \"configfs\"\nconfigfs_root = \"tsm\"\n",
    ))
    .unwrap();
    let kernel = Arc::new(FakeKernel::new(lab.quoter(), Faults::default()));
    let source = cfg.open_with(kernel.clone()).unwrap().into_source();
    let key = crate::session_key::SessionKey::generate().unwrap();
    let nonce = [0x42; 32];
    let include = Include {
        tdx: true,
        ..Include::default()
    };
    let transcript = Transcript::new().sign(key.signing_key());
    let bundle = source
        .collect(&nonce, key.spki_der(), transcript, &include)
        .await
        .unwrap();
    assert_eq!(kernel.stats().quotes, 2, "start-up quote and the bundle's");

    let now = lab.validity().0 + 7200;
    let opts = InitOptions {
        tdx_collateral: Some(NamedFile {
            path: "collateral.json".into(),
            bytes: serde_json::to_vec(lab.collateral()).unwrap(),
        }),
        tdx_root: Some(NamedFile {
            path: "root.der".into(),
            bytes: lab.root_ca_der().to_vec(),
        }),
        ek_roots_path: "ek.pem".into(),
        bundle_name: "configfs.cbor".into(),
        nonce_issuer: "locus".into(),
        now_unix: now,
    };
    let init = init_policy(&bundle, &opts).unwrap();
    assert!(init.file.reference.mrtd.is_some());
    let files = [
        (
            "collateral.json",
            serde_json::to_vec(lab.collateral()).unwrap(),
        ),
        ("root.der", lab.root_ca_der().to_vec()),
    ];
    let load = |p: &str| {
        files
            .iter()
            .find(|(n, _)| *n == p)
            .map(|(_, b)| b.clone())
            .ok_or_else(|| p.to_string())
    };
    let inputs = VerifyInputs {
        now_unix: now,
        nonce_record: Some(NonceRecord {
            nonce: nonce.to_vec(),
            issuer: "locus".into(),
            issued_at: now - 1,
            used: false,
        }),
        peer_spki: None,
    };
    let policy = init.file.resolve(&load).unwrap();
    let report = verify_bundle(&bundle, &policy, &inputs);
    assert!(report.valid(), "{:?}", report.failed());

    // Another MRTD, debug TD attributes or other XFAM each fail td_reference, naming it.
    type Edit = fn(&mut locus_analysis::verify::bundle::PolicyFile);
    let edits: [(&str, Edit); 3] = [
        ("MRTD", |p| p.reference.mrtd = Some("ab".repeat(48))),
        ("TD attributes", |p| {
            p.reference.td_attributes = Some("0100001000000000".into())
        }),
        ("XFAM", |p| p.reference.xfam = Some("ff".repeat(8))),
    ];
    for (register, edit) in edits {
        let mut other = init.file.clone();
        edit(&mut other);
        let report = verify_bundle(&bundle, &other.resolve(&load).unwrap(), &inputs);
        assert_eq!(report.failed(), [CheckId::TdReference], "{register}");
        let detail = report
            .checks
            .iter()
            .find(|c| c.check == CheckId::TdReference)
            .map(|c| format!("{:?}", c.outcome))
            .unwrap();
        assert!(detail.contains(register), "{register}: {detail}");
    }
}

#[test]
fn the_anchor_clock_is_tsc_unless_configured_and_its_path_resolves_here() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pin = "1".repeat(64);
    std::fs::write(
        d.join("anchors.toml"),
        format!(
            "[[anchor]]\nname = \"a\"\ntarget = \"a.example:443\"\n\
             trust = {{ spki_sha256 = \"{pin}\" }}\n"
        ),
    )
    .unwrap();
    let load = |text: &str| {
        ResponderConfig::load(&write_config(d, text))
            .unwrap()
            .anchors()
            .unwrap()
            .unwrap()
            .options
            .clock
    };
    let strict = load("[anchors]\nfile = \"anchors.toml\"\n");
    assert_eq!(strict, locus_anchors::ClockOptions::default());
    assert_eq!(strict.allow, vec!["tsc".to_string()]);
    let lab = load(
        "[anchors]\nfile = \"anchors.toml\"\nclocksource_path = \"clock\"\n\
         allow_clocksource = [\"tsc\", \"kvm-clock\"]\n",
    );
    assert_eq!(lab.clocksource_path, d.join("clock"));
    std::fs::write(d.join("clock"), "kvm-clock\n").unwrap();
    assert!(lab.allows(&lab.current()));
    assert!(!strict.allows("kvm-clock"));
}

/// The shedding keys of issue 20 part 2: each bad value is refused naming its key and what
/// was wrong; zero switches the echo budget and the penalty off.
#[test]
fn handshake_budget_penalty_and_echo_budget_are_checked() {
    let limits = |toml: &str| {
        ResponderConfig::parse(&format!("[limits]\n{toml}\n"))
            .unwrap()
            .limits()
    };
    let l = limits("handshakes_per_sec = 50.0\nflood_penalty_ms = 250\nflood_penalty_max_ms = 4000\necho_per_sec = 3000").unwrap();
    assert_eq!(l.handshakes_per_sec, 50.0);
    assert_eq!(l.flood_penalty, Duration::from_millis(250));
    assert_eq!(l.flood_penalty_max, Duration::from_millis(4000));
    assert_eq!(l.echo_per_sec, Some(3000.0));
    let off = limits("echo_per_sec = 0\nflood_penalty_ms = 0").unwrap();
    assert_eq!(off.echo_per_sec, None);
    assert!(off.flood_penalty.is_zero());
    for (toml, key, says) in [
        (
            "handshakes_per_sec = 0.0",
            "limits.handshakes_per_sec",
            "positive",
        ),
        (
            "handshakes_per_sec = -3.0",
            "limits.handshakes_per_sec",
            "-3",
        ),
        ("echo_per_sec = -1.0", "limits.echo_per_sec", "positive"),
        ("echo_per_sec = nan", "limits.echo_per_sec", "NaN"),
        (
            "flood_penalty_ms = 5000\nflood_penalty_max_ms = 1000",
            "limits.flood_penalty_max_ms",
            "at least limits.flood_penalty_ms (5000), not 1000",
        ),
    ] {
        let e = limits(toml).unwrap_err();
        assert_eq!(e.key(), Some(key), "{toml}: {e}");
        assert!(e.to_string().contains(says), "{toml}: {e}");
    }
    // A negative count is no number of milliseconds at all: refused while parsing.
    assert!(ResponderConfig::parse("[limits]\nflood_penalty_ms = -1\n").is_err());
}
