//! Software TPM2_MakeCredential (`locus_proto::credential`) against swtpm's real
//! TPM2_ActivateCredential: the honest vTPM recovers the secret, for an RSA EK read from its
//! certificate and for an ECC P-256 EK; a second swtpm carrying the first one's genuine EK
//! certificate (the copied-EK attack) and a credential made for another AK's name are refused
//! by the TPM itself.

use std::time::Duration;

use locus_proto::credential::{make_credential, object_name, EkPublic};
use locus_responder::tpm::swtpm::{Swtpm, SwtpmOptions};
use locus_responder::tpm::{EkKind, Vtpm, VtpmConfig, VtpmError, EK_CERT_NV_RSA};
use rand::SeedableRng;

fn open(tpm: &Swtpm) -> Vtpm {
    let mut c = VtpmConfig::new(tpm.tcti());
    c.command_timeout = Duration::from_secs(10);
    Vtpm::open(c).unwrap()
}

fn with_ek_cert() -> Swtpm {
    Swtpm::start(SwtpmOptions {
        create_ek_cert: true,
        ..SwtpmOptions::default()
    })
    .unwrap()
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// The EK from the certificate at the RSA EK index, as a verifier sees it.
fn ek_from_cert(vtpm: &Vtpm) -> EkPublic {
    let certs = vtpm.ek_certs().unwrap();
    let cert = certs.iter().find(|c| c.nv_index == EK_CERT_NV_RSA).unwrap();
    EkPublic::from_certificate_der(&cert.der).unwrap()
}

/// The ECC P-256 EK's point from its TPM2B_PUBLIC (default template L-2: 32-byte policy,
/// AES-128-CFB, null scheme and KDF, so x and y sit at fixed offsets).
fn ecc_ek(vtpm: &Vtpm) -> EkPublic {
    let p = vtpm.ek_public(EkKind::EccP256).unwrap();
    assert_eq!(p.len(), 124, "TPM2B_PUBLIC of the low-range ECC EK");
    assert_eq!(&p[56..58], &[0, 32]);
    assert_eq!(&p[90..92], &[0, 32]);
    EkPublic::ecc_p256(&p[58..90], &p[92..124]).unwrap()
}

/// `vtpm` refuses to activate a credential made under the RSA EK `ek` for `name`.
fn assert_refused(vtpm: &Vtpm, ek: &EkPublic, name: &[u8]) {
    let c = make_credential(ek, name, &[1; 32], &mut rng(3)).unwrap();
    let e = vtpm
        .activate_credential(EkKind::Rsa2048, &c.id_object, &c.encrypted_secret)
        .unwrap_err();
    assert!(
        matches!(
            e,
            VtpmError::Refused {
                op: "activate_credential",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn the_honest_vtpm_activates_a_credential_for_its_ak_under_its_certified_rsa_ek() {
    let tpm = with_ek_cert();
    let vtpm = open(&tpm);
    let name = object_name(&vtpm.ak_public().unwrap()).unwrap();
    let secret = [0x5a; 32];
    let c = make_credential(&ek_from_cert(&vtpm), &name, &secret, &mut rng(1)).unwrap();
    let got = vtpm
        .activate_credential(EkKind::Rsa2048, &c.id_object, &c.encrypted_secret)
        .unwrap();
    assert_eq!(got, secret);
}

#[test]
fn the_honest_vtpm_activates_a_credential_under_its_ecc_ek() {
    let tpm = Swtpm::start(SwtpmOptions::default()).unwrap();
    let vtpm = open(&tpm);
    let name = object_name(&vtpm.ak_public().unwrap()).unwrap();
    let c = make_credential(&ecc_ek(&vtpm), &name, b"sixteen byte sec", &mut rng(2)).unwrap();
    let got = vtpm
        .activate_credential(EkKind::EccP256, &c.id_object, &c.encrypted_secret)
        .unwrap();
    assert_eq!(got, b"sixteen byte sec");
}

#[test]
fn a_software_tpm_with_a_copied_ek_certificate_cannot_activate() {
    let genuine = with_ek_cert();
    let genuine = open(&genuine);
    let copier = Swtpm::start(SwtpmOptions::default()).unwrap();
    let copier = open(&copier);
    // The verifier encrypts to the EK in the (genuine) certificate the copier presents, for
    // the copier's AK.
    let name = object_name(&copier.ak_public().unwrap()).unwrap();
    assert_refused(&copier, &ek_from_cert(&genuine), &name);
    // The same credential made for the genuine TPM's own AK works there: the refusal above is
    // the EK, not the encoding.
    let name = object_name(&genuine.ak_public().unwrap()).unwrap();
    let c = make_credential(&ek_from_cert(&genuine), &name, &[1; 32], &mut rng(3)).unwrap();
    assert_eq!(
        genuine
            .activate_credential(EkKind::Rsa2048, &c.id_object, &c.encrypted_secret)
            .unwrap(),
        [1; 32]
    );
}

#[test]
fn a_credential_for_another_ak_name_is_refused_by_the_tpm() {
    let tpm = with_ek_cert();
    let vtpm = open(&tpm);
    let other = Swtpm::start(SwtpmOptions::default()).unwrap();
    let other_name = object_name(&open(&other).ak_public().unwrap()).unwrap();
    assert_ne!(other_name, object_name(&vtpm.ak_public().unwrap()).unwrap());
    assert_refused(&vtpm, &ek_from_cert(&vtpm), &other_name);
}

/// Repeated activations reuse the EK's saved context, and it never stays loaded: two
/// connections without a resource manager (a responder and its doctor, each with its AK)
/// activate in turn within swtpm's three transient object slots.
#[test]
fn repeated_activations_on_two_connections_fit_the_transient_slots() {
    let tpm = with_ek_cert();
    let (a, b) = (open(&tpm), open(&tpm));
    let ek = ek_from_cert(&a);
    let names = [&a, &b].map(|v| object_name(&v.ak_public().unwrap()).unwrap());
    for round in 0..3u8 {
        for (i, v) in [&a, &b].into_iter().enumerate() {
            let secret = [round * 2 + i as u8; 32];
            let c = make_credential(&ek, &names[i], &secret, &mut rng(u64::from(round))).unwrap();
            let got = v
                .activate_credential(EkKind::Rsa2048, &c.id_object, &c.encrypted_secret)
                .unwrap_or_else(|e| panic!("round {round}, connection {i}: {e}"));
            assert_eq!(got, secret, "round {round}, connection {i}");
        }
    }
    // The ECC EK on the same connections, after the RSA one: one loaded at a time.
    assert_eq!(
        a.ek_public(EkKind::EccP256).unwrap(),
        b.ek_public(EkKind::EccP256).unwrap()
    );
    let secret = [0x77; 32];
    let c = make_credential(&ek, &names[0], &secret, &mut rng(9)).unwrap();
    assert_eq!(
        a.activate_credential(EkKind::Rsa2048, &c.id_object, &c.encrypted_secret)
            .unwrap(),
        secret
    );
}

/// A bad sealed credential is an error for its request only: the vTPM connection and its AK
/// stay (a reconnect would create a new AK, so hostile requests could churn every honest
/// bundle's AK), and the next honest activation works.
#[test]
fn a_refused_credential_keeps_the_connection_and_the_ak() {
    let tpm = with_ek_cert();
    let vtpm = open(&tpm);
    let ak = vtpm.ak_public().unwrap();
    let name = object_name(&ak).unwrap();
    let ek = ek_from_cert(&vtpm);
    assert_refused(&vtpm, &ek, &[0; 34]);
    assert_eq!(
        vtpm.ak_public().unwrap(),
        ak,
        "the AK changed: the vTPM reconnected"
    );
    let garbage = vtpm
        .activate_credential(EkKind::Rsa2048, &[0xff; 7], &[0xee; 256])
        .unwrap_err();
    assert!(matches!(garbage, VtpmError::Refused { .. }), "{garbage:?}");
    assert_eq!(
        vtpm.ak_public().unwrap(),
        ak,
        "the AK changed: the vTPM reconnected"
    );
    let c = make_credential(&ek, &name, &[9; 32], &mut rng(4)).unwrap();
    assert_eq!(
        vtpm.activate_credential(EkKind::Rsa2048, &c.id_object, &c.encrypted_secret)
            .unwrap(),
        [9; 32]
    );
}
