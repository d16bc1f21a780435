//! Where the store lives: a SQLite file or a PostgreSQL URL (`postgres://` or
//! `postgresql://`). Shown and logged with the password hidden.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A database to open with [`super::Store::connect`].
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (created when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL server, as a `postgres://user:password@host:port/dbname?...` URL.
    Postgres(String),
}

impl Database {
    /// A URL when `s` starts with `postgres://` or `postgresql://`, else a file path;
    /// a relative path is taken relative to `base`.
    pub fn parse(s: &str, base: &Path) -> Self {
        let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Database::Postgres(s.to_owned())
        } else {
            Database::Sqlite(base.join(s))
        }
    }
}

/// Why a database password file could not be used (`db_password_file`,
/// `--db-password-file`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordFileError {
    #[error("reading the database password file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file holds nothing but line ends.
    #[error("the database password file {path} is empty")]
    Empty { path: PathBuf },
    /// SQLite has no password; the file is a mistake (a wrong `db`?).
    #[error(
        "a database password file ({path}) applies to PostgreSQL only, not the SQLite file {db}"
    )]
    NotPostgres { path: PathBuf, db: PathBuf },
    /// The URL names a password too: keep it in one place, the file.
    #[error(
        "{url} already holds a password: with a password file ({path}), leave it out of the URL"
    )]
    TwoPasswords { path: PathBuf, url: String },
}

impl Database {
    /// This PostgreSQL database with the password read from `path` (a trailing line end is not
    /// part of it), so that no password needs to be in a config file's URL or on a command
    /// line. It travels as the URL's `password=` parameter, which is never shown.
    pub fn with_password_file(self, path: &Path) -> Result<Self, PasswordFileError> {
        let url = match self {
            Database::Postgres(url) => url,
            Database::Sqlite(db) => {
                return Err(PasswordFileError::NotPostgres {
                    path: path.to_owned(),
                    db,
                })
            }
        };
        if redact(&url) != url {
            return Err(PasswordFileError::TwoPasswords {
                path: path.to_owned(),
                url: redact(&url),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        let password = text.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(PasswordFileError::Empty {
                path: path.to_owned(),
            });
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(Database::Postgres(format!(
            "{url}{sep}password={}",
            percent_encode(password)
        )))
    }
}

/// Every byte but RFC 3986's unreserved ones as `%XX`, as a URL query value.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl FromStr for Database {
    type Err = std::convert::Infallible;

    /// Like [`Database::parse`], relative paths staying relative (to the working directory).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Database::parse(s, Path::new("")))
    }
}

impl From<&Path> for Database {
    fn from(p: &Path) -> Self {
        Database::Sqlite(p.to_owned())
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

// Configs and errors are logged: never show the password.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Database::Postgres(_) => f.debug_tuple("Postgres").field(&self.to_string()).finish(),
        }
    }
}

/// `url` with the password of its user part and of a `password=` parameter replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let authority = match authority.rsplit_once('@') {
                Some((user, hosts)) => match user.split_once(':') {
                    Some((name, _)) => format!("{name}:***@{hosts}"),
                    None => authority.to_owned(),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_owned(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_goes_into_the_url_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "p@ss w&rd=%\n").unwrap();
        let db = Database::Postgres("postgres://locus@db.internal/fleet".into())
            .with_password_file(&file)
            .unwrap();
        assert_eq!(
            db,
            Database::Postgres(
                "postgres://locus@db.internal/fleet?password=p%40ss%20w%26rd%3D%25".into()
            )
        );
        assert!(!db.to_string().contains("%40"), "{db}");
        assert!(!format!("{db:?}").contains("%40"), "{db:?}");
        let db = Database::Postgres("postgres://locus@h/f?sslmode=disable".into())
            .with_password_file(&file)
            .unwrap();
        assert!(
            db.to_string().ends_with("?sslmode=disable&password=***"),
            "{db}"
        );

        let twice = Database::Postgres("postgres://locus:old@h/f".into()).with_password_file(&file);
        assert!(
            matches!(&twice, Err(PasswordFileError::TwoPasswords { url, .. }) if !url.contains("old")),
            "{twice:?}"
        );
        let sqlite = Database::Sqlite("x.db".into()).with_password_file(&file);
        assert!(matches!(sqlite, Err(PasswordFileError::NotPostgres { .. })));
        std::fs::write(&file, "\n").unwrap();
        let empty = Database::Postgres("postgres://h/f".into()).with_password_file(&file);
        assert!(matches!(empty, Err(PasswordFileError::Empty { .. })));
        let missing = Database::Postgres("postgres://h/f".into())
            .with_password_file(&dir.path().join("none"));
        assert!(matches!(missing, Err(PasswordFileError::Read { .. })));
    }

    #[test]
    fn urls_and_paths() {
        let base = Path::new("/etc/locus");
        assert_eq!(
            Database::parse("probe.db", base),
            Database::Sqlite("/etc/locus/probe.db".into())
        );
        assert_eq!(
            Database::parse("/var/lib/locus.db", base),
            Database::Sqlite("/var/lib/locus.db".into())
        );
        for url in ["postgres://h/db", "postgresql://u@h/db", "POSTGRES://h/db"] {
            assert_eq!(
                Database::parse(url, base),
                Database::Postgres(url.into()),
                "{url}"
            );
        }
        // Not a URL: a file that happens to be named so.
        assert!(matches!(
            Database::parse("postgres.db", base),
            Database::Sqlite(_)
        ));
    }

    #[test]
    fn passwords_never_show() {
        let d = Database::Postgres("postgres://locus:s3cret@127.0.0.1:5432/fleet".into());
        assert_eq!(d.to_string(), "postgres://locus:***@127.0.0.1:5432/fleet");
        assert!(!format!("{d:?}").contains("s3cret"));
        assert_eq!(
            redact("postgresql://u@h/db?sslmode=disable&password=p%40ss&user=u"),
            "postgresql://u@h/db?sslmode=disable&password=***&user=u"
        );
        // A password holding '@' and ':' is hidden whole.
        assert_eq!(
            redact("postgres://u:a@b:c@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
