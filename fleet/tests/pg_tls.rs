//! PostgreSQL over TLS against a real server started with a test CA's certificate:
//! `sslmode=verify-full&sslrootcert=CA` connects (and the server sees TLS); another CA, or a
//! certificate for another name, fails with a message that says so.

use std::time::Duration;

use locus_fleet::store::{Database, Store, StoreError};
use locus_test_support::pg_server::PgServer;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// A CA: its certificate (PEM), its signing parameters and key.
struct Ca {
    pem: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        cert,
        key,
    }
}

/// A server certificate for `names` signed by `ca`: (certificate PEM, key PEM).
fn server_cert(ca: &Ca, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn connect(url: &str) -> Result<Store, StoreError> {
    Store::connect(&Database::Postgres(url.to_owned()), Duration::from_secs(5))
}

#[test]
fn verify_full_connects_and_a_wrong_ca_or_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = ca("locus test CA");
    let (cert, key) = server_cert(&good, &["127.0.0.1", "localhost"]);
    let server = PgServer::start_tls(&cert, &key).unwrap();
    let good_pem = dir.path().join("ca.pem");
    std::fs::write(&good_pem, &good.pem).unwrap();
    let url = |db: &str, root: &std::path::Path| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}&application_name=locus-tls-test",
            server.url(db),
            root.display()
        )
    };

    let store = connect(&url("postgres", &good_pem)).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        locus_fleet::store::SCHEMA_VERSION
    );
    // The server agrees the session is encrypted.
    let ssl = server
        .sql(
            "postgres",
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'locus-tls-test'",
        )
        .unwrap();
    assert_eq!(ssl, "t");
    drop(store);

    let other = ca("some other CA");
    let other_pem = dir.path().join("other.pem");
    std::fs::write(&other_pem, &other.pem).unwrap();
    let e = connect(&url("postgres", &other_pem)).err().unwrap();
    let text = e.to_string();
    assert!(matches!(e, StoreError::PgCertificate { .. }), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains("sslrootcert"), "{text}");
    assert!(
        !text.contains(locus_test_support::pg_server::PASSWORD),
        "{text}"
    );

    // The right CA, but the certificate names another host.
    let (cert, key) = server_cert(&good, &["db.example"]);
    let misnamed = PgServer::start_tls(&cert, &key).unwrap();
    let e = connect(&format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        misnamed.url("postgres"),
        good_pem.display()
    ))
    .err()
    .unwrap();
    assert!(matches!(e, StoreError::PgCertificate { .. }), "{e}");
    assert!(
        e.to_string().contains("certificate not valid for name"),
        "{e}"
    );

    // Encryption without verification is refused before connecting.
    let e = connect(&format!("{}?sslmode=require", server.url("postgres")))
        .err()
        .unwrap();
    assert!(matches!(e, StoreError::BadUrl { .. }), "{e}");
    assert!(e.to_string().contains("verify-full"), "{e}");
}
