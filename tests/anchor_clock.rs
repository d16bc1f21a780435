//! Issue 18, item 7: the clock an anchor report was timed with. A report timed on `hpet` or
//! `kvm-clock` (clocks the host can speed up) fails `anchor_clocksource` naming the clock, a
//! version 1 report (no clocksource) fails it under a policy that requires one, and a policy
//! may allow others explicitly. The check reads only the report and the policy: the bundles
//! here do not bind these reports (their `report_data` fails; `tests/lab.rs` shows that a
//! changed clocksource breaks a real binding).

mod evidence_lab;

use evidence_lab::lab;
use locus_analysis::verify::anchor::{AnchorPolicy, AnchorPolicyFile, ClocksourceError};
use locus_analysis::verify::bundle::{
    self as evidence, CheckId, EvidenceError, Outcome, PolicyFile,
};
use locus_proto::anchor::{AnchorReport, ANCHOR_REPORT_V1};

/// The `anchor_clocksource` outcome of the lab bundle carrying `report`, under `policy`.
fn clock_outcome(report: AnchorReport, policy: AnchorPolicy) -> Outcome {
    let l = lab();
    let mut b = l.bundle.clone();
    b.anchors = Some(report);
    let mut p = l.policy.clone();
    p.anchors = Some(policy);
    let r = evidence::verify_bundle(&b, &p, &l.inputs());
    let c = r
        .checks
        .iter()
        .find(|c| c.check == CheckId::AnchorClocksource);
    c.unwrap().outcome.clone()
}

/// The `[anchors]` section of an evidence policy file.
fn anchors_section(text: &str) -> AnchorPolicyFile {
    PolicyFile::from_toml(text).unwrap().anchors.unwrap()
}

fn report(clocksource: &str) -> AnchorReport {
    AnchorReport::new(&lab().bundle.nonce, clocksource)
}

#[test]
fn a_host_controlled_clock_fails_by_name() {
    for clock in ["hpet", "kvm-clock"] {
        let outcome = clock_outcome(report(clock), AnchorPolicy::new(Vec::new()));
        match &outcome {
            Outcome::Fail(EvidenceError::AnchorClocksource(ClocksourceError::NotAllowed {
                found,
                allowed,
            })) => {
                assert_eq!(found, clock);
                assert_eq!(allowed, &["tsc".to_string()]);
            }
            other => panic!("{clock}: {other:?}"),
        }
        let text = match outcome {
            Outcome::Fail(e) => e.to_string(),
            _ => unreachable!(),
        };
        assert!(text.contains(clock), "{text}");
    }
    let tsc = clock_outcome(report("tsc"), AnchorPolicy::new(Vec::new()));
    assert!(matches!(tsc, Outcome::Pass), "{tsc:?}");
}

#[test]
fn a_version_1_report_fails_under_a_policy_requiring_the_clocksource() {
    let v1 = AnchorReport {
        version: ANCHOR_REPORT_V1,
        clocksource: None,
        ..report("tsc")
    };
    let outcome = clock_outcome(v1.clone(), AnchorPolicy::new(Vec::new()));
    assert!(
        matches!(
            &outcome,
            Outcome::Fail(EvidenceError::AnchorClocksource(
                ClocksourceError::NotRecorded { version: 1 }
            ))
        ),
        "{outcome:?}"
    );
    let lenient = AnchorPolicy {
        require_clocksource: false,
        ..AnchorPolicy::new(Vec::new())
    };
    assert!(matches!(clock_outcome(v1, lenient), Outcome::Pass));
}

#[test]
fn a_policy_file_may_allow_another_clock_explicitly() {
    let file = anchors_section("[anchors]\nallow_clocksource = [\"tsc\", \"kvm-clock\"]\n");
    let policy = file.resolve(&|_| Err("no files".into())).unwrap();
    assert!(matches!(
        clock_outcome(report("kvm-clock"), policy.clone()),
        Outcome::Pass
    ));
    assert!(matches!(
        clock_outcome(report("hpet"), policy),
        Outcome::Fail(_)
    ));
    // The default stays strict.
    let strict = anchors_section("[anchors]\n");
    let strict = strict.resolve(&|_| Err("no files".into())).unwrap();
    assert_eq!(strict.allow_clocksource, ["tsc".to_string()]);
    assert!(strict.require_clocksource);
}
