//! The PostgreSQL backend, for fleets: many probers write to one database, one monitor judges.
//!
//! One synchronous client per store. A connection the server dropped (restart, network) is
//! opened again on the next use, at most once per [`RECONNECT_EVERY`]; until then each use
//! fails fast, so the daemon keeps its unstored rounds and retries them as it does when SQLite
//! is locked. With `sslmode=verify-full&sslrootcert=CA.pem` the connection is TLS and the
//! server's certificate is checked (`pg_tls`); otherwise it is plain TCP.

use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls};

use tokio_postgres_rustls::MakeRustlsConnect;

use super::location::redact;
use super::pg_tls::{self, TlsMode};
use super::sql::Sql;
use super::value::{Param, Row, Value};
use super::{schema, StoreError};

/// Least time between two connection attempts while the server is unreachable.
pub(crate) const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// A PostgreSQL database the store writes to, reconnecting when the server comes back.
pub(crate) struct Pg {
    url: String,
    config: postgres::Config,
    /// With `sslmode=verify-full`: the connector that checks the server against the CA file.
    tls: Option<MakeRustlsConnect>,
    client: Option<Client>,
    /// While the server is unreachable: when to try again, and why the last attempt failed.
    down: Option<(Instant, String)>,
    /// Sessions only read: no migration, `default_transaction_read_only` on.
    read_only: bool,
}

impl Pg {
    /// Connects and migrates. `wait` bounds the connection attempt and how long a statement
    /// waits for another session's lock (unless the URL sets them).
    pub(crate) fn connect(url: &str, wait: Duration) -> Result<Self, StoreError> {
        Self::connect_as(url, wait, false)
    }

    /// Connects for reading only: the schema must be the current one (nothing is migrated)
    /// and every session refuses writes.
    pub(crate) fn connect_read_only(url: &str, wait: Duration) -> Result<Self, StoreError> {
        Self::connect_as(url, wait, true)
    }

    fn connect_as(url: &str, wait: Duration, read_only: bool) -> Result<Self, StoreError> {
        let bad = |reason: String| StoreError::BadUrl {
            url: redact(url),
            reason,
        };
        let (plain_url, mode) = pg_tls::split_url(url).map_err(bad)?;
        let tls = match &mode {
            TlsMode::Plain => None,
            TlsMode::VerifyFull { root } => Some(pg_tls::connector(root).map_err(bad)?),
        };
        let mut config: postgres::Config = plain_url
            .parse()
            .map_err(|e: postgres::Error| bad(describe(&e)))?;
        if config.get_password().is_none() {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
            if let Some(pw) = credential_password(dir.as_deref()) {
                config.password(pw);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(wait.max(Duration::from_secs(1)));
        }
        if config.get_options().is_none() {
            let ms = wait.as_millis().max(1);
            config.options(&format!("-c lock_timeout={ms}"));
        }
        if config.get_application_name().is_none() {
            config.application_name("locus");
        }
        // A peer that vanished without closing the connection is noticed.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        let mut pg = Self {
            url: url.to_owned(),
            config,
            tls,
            client: None,
            down: None,
            read_only,
        };
        pg.client()?;
        Ok(pg)
    }

    /// The live client, connecting (and checking the schema) first when there is none.
    pub(crate) fn client(&mut self) -> Result<&mut Client, StoreError> {
        let c = match self.client.take() {
            Some(c) if !c.is_closed() => c,
            stale => {
                if stale.is_some() {
                    tracing::warn!(db = %redact(&self.url), "lost the PostgreSQL connection");
                }
                self.reconnect()?
            }
        };
        Ok(self.client.insert(c))
    }

    fn reconnect(&mut self) -> Result<Client, StoreError> {
        if let Some((retry_at, last)) = &self.down {
            if Instant::now() < *retry_at {
                return Err(StoreError::PgDown {
                    url: redact(&self.url),
                    last: last.clone(),
                });
            }
        }
        match self.open() {
            Ok(c) => {
                if self.down.take().is_some() {
                    tracing::info!(db = %redact(&self.url), "reconnected to PostgreSQL");
                }
                Ok(c)
            }
            Err(e) => {
                self.down = Some((Instant::now() + RECONNECT_EVERY, e.to_string()));
                Err(e)
            }
        }
    }

    fn open(&self) -> Result<Client, StoreError> {
        let connected = match &self.tls {
            None => self.config.connect(NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        };
        let mut c = connected.map_err(|e| connect_error(&self.url, &self.config, e))?;
        if self.read_only {
            c.batch_execute("SET default_transaction_read_only = on")?;
            let found = schema::postgres_version(&mut c)?;
            schema::check_readable(&redact(&self.url), found)?;
        } else {
            schema::migrate_postgres(&mut c)?;
        }
        Ok(c)
    }
}

/// The error with its causes: the client's own text says only "db error" or "error
/// connecting to server" and keeps the server's message or the I/O error as its source.
pub(crate) fn describe(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Sorts a failed connection into a wrong user or password, or anything else.
/// The file systemd's `LoadCredential=db-password:...` puts in `$CREDENTIALS_DIRECTORY`.
pub(crate) const CREDENTIAL_DB_PASSWORD: &str = "db-password";

/// The password of a URL without one: the `db-password` credential systemd passed the
/// service (`LoadCredential=`), so it is in neither the command line nor the config. One
/// trailing newline is not part of it.
fn credential_password(dir: Option<&std::path::Path>) -> Option<String> {
    let text = std::fs::read_to_string(dir?.join(CREDENTIAL_DB_PASSWORD)).ok()?;
    let pw = text.strip_suffix('\n').unwrap_or(&text);
    Some(pw.strip_suffix('\r').unwrap_or(pw).to_owned())
}

fn connect_error(url: &str, config: &postgres::Config, e: postgres::Error) -> StoreError {
    // SQLSTATE class 28: invalid authorization specification (28000), invalid password (28P01).
    if e.code().is_some_and(|c| c.code().starts_with("28")) {
        return StoreError::PgAuth {
            url: redact(url),
            user: config.get_user().unwrap_or("").to_owned(),
            error: e,
        };
    }
    // rustls names a failed certificate check "invalid peer certificate: ..." (unknown
    // issuer, name mismatch, expired).
    if describe(&e).contains("invalid peer certificate") {
        return StoreError::PgCertificate {
            url: redact(url),
            error: e,
        };
    }
    StoreError::PgConnect {
        url: redact(url),
        error: e,
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // The synchronous client owns a runtime, which must not be dropped (nor block) on an
        // async task's thread: close it on a thread of its own there.
        if let Some(c) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("locus-pg-close".into())
                    .spawn(move || drop(c));
            }
        }
    }
}

/// `?1` placeholders as PostgreSQL's `$1` (the store's SQL has no `?` in literals).
fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn refs<'a>(params: &'a [Param<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl<C: GenericClient> Sql for C {
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        Ok(<C as GenericClient>::execute(
            self,
            dollars(sql).as_str(),
            &refs(params),
        )?)
    }

    fn columns(&mut self, sql: &str) -> Result<Vec<String>, StoreError> {
        let stmt = self.prepare(&dollars(sql))?;
        Ok(stmt.columns().iter().map(|c| c.name().to_owned()).collect())
    }

    fn each(
        &mut self,
        sql: &str,
        params: &[Param<'_>],
        f: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let stmt = self.prepare(&dollars(sql))?;
        let mut rows = self.query_raw(&stmt, refs(params))?;
        while let Some(r) = rows.next()? {
            let values = (0..r.len())
                .map(|i| Value::from_postgres(&r, i))
                .collect::<Result<_, _>>()?;
            f(Row(values))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_db_password_credential_is_read_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(credential_password(None), None);
        assert_eq!(credential_password(Some(dir.path())), None);
        std::fs::write(dir.path().join(CREDENTIAL_DB_PASSWORD), "s3cret pw\n").unwrap();
        assert_eq!(
            credential_password(Some(dir.path())).as_deref(),
            Some("s3cret pw")
        );
    }

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            dollars("SELECT a FROM t WHERE b = ?1 AND c < ?12 AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c < $12 AND d = '?'"
        );
    }

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let e = Pg::connect("postgres://u:pw@h:notaport/db", Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(
            matches!(&e, StoreError::BadUrl { reason, .. } if reason.contains("invalid value for option `port`")),
            "{e}"
        );
        assert!(!e.to_string().contains("pw@"), "{e}");
    }

    #[test]
    fn unverified_tls_is_refused_before_connecting() {
        let e = Pg::connect(
            "postgres://u:pw@127.0.0.1:1/db?sslmode=require",
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(
            matches!(&e, StoreError::BadUrl { reason, .. } if reason.contains("verify-full")),
            "{e}"
        );
    }
}
