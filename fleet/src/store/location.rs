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
