//! A real PostgreSQL server on loopback, in a temporary directory, for tests.
//!
//! `initdb` makes a cluster with one superuser ([`USER`], password [`PASSWORD`], SCRAM
//! authentication); `pg_ctl` starts it listening on 127.0.0.1 only, on a free port, with its
//! unix socket in the temporary directory. It is stopped (`pg_ctl stop -m immediate`) when the
//! [`PgServer`] is dropped, a failing test's unwinding included. PostgreSQL refuses to run as
//! root: as root, the cluster belongs to the `postgres` user (Debian's package makes it; else
//! `nobody`) and every server command runs as that user through `setpriv`.
//!
//! A server kept for a whole test binary ([`shared`]) is never dropped: a watchdog shell, started
//! with each server, stops it and removes its directory once the test process is gone.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The superuser `initdb` creates.
pub const USER: &str = "locus";
/// Its password (the server accepts loopback connections only).
pub const PASSWORD: &str = "locus-test";

/// Why a server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum PgServerError {
    /// No `pg_ctl`/`initdb` found (Debian: the `postgresql` package).
    #[error(
        "PostgreSQL's server programs are not installed: no pg_ctl in /usr/lib/postgresql/*/bin \
         or on PATH (install the postgresql package, or set LOCUS_PG_BIN to their directory)"
    )]
    NotInstalled,
    #[error("could not run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{program} failed ({status}): {output}")]
    Failed {
        program: String,
        status: String,
        output: String,
    },
    #[error("no unprivileged user to run PostgreSQL as (tried postgres, nobody)")]
    NoUser,
    #[error("the shared test server did not start: {0}")]
    Shared(String),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

/// Who runs the server's programs when this process is root.
#[derive(Debug, Clone)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// A running PostgreSQL server; stopped on drop.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    run_as: Option<RunAs>,
    dir: PathBuf,
    port: u16,
    running: bool,
    /// Serves TLS (`ssl=on`) with `server.crt`/`server.key` in its directory.
    tls: bool,
    watchdog: Option<Child>,
    // Removed last, after the server stopped.
    _tmp: tempfile::TempDir,
}

impl PgServer {
    /// Makes a cluster and starts it (about a second).
    pub fn start() -> Result<Self, PgServerError> {
        Self::start_with(None)
    }

    /// Like [`PgServer::start`], serving TLS (`ssl=on`, plain connections still allowed) with
    /// this certificate chain and key (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Result<Self, PgServerError> {
        Self::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Result<Self, PgServerError> {
        let bin = find_bin()?;
        let tmp = tempfile::Builder::new().prefix("locus-pg-").tempdir()?;
        let dir = tmp.path().to_owned();
        let run_as = if is_root()? {
            Some(unprivileged()?)
        } else {
            None
        };
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, PASSWORD)?;
        if let Some(u) = &run_as {
            for p in [&dir, &pwfile] {
                std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))?;
            }
        }
        let mut server = Self {
            bin,
            run_as,
            dir,
            port: 0,
            running: false,
            tls: tls.is_some(),
            watchdog: None,
            _tmp: tmp,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "-U",
                USER,
                "--pwfile",
                path_str(&pwfile)?,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        std::fs::remove_file(&pwfile)?;
        if let Some((cert, key)) = tls {
            // The server refuses a key others may read, and reads both as its own user.
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let p = server.dir.join(name);
                std::fs::write(&p, pem)?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
                if let Some(u) = &server.run_as {
                    std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid))?;
                }
            }
        }
        server.watchdog = Some(server.spawn_watchdog()?);
        // A port found free can be taken before the server binds it: try another.
        let mut last = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.start_again() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(PgServerError::NotInstalled))
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://locus:locus-test@127.0.0.1:PORT/dbname`.
    pub fn url(&self, dbname: &str) -> String {
        self.url_as(USER, PASSWORD, dbname)
    }

    /// A URL for another user or password.
    pub fn url_as(&self, user: &str, password: &str, dbname: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{dbname}",
            Ipv4Addr::LOCALHOST,
            self.port
        )
    }

    /// Creates a database with a name no other call in this process used; returns its URL.
    pub fn fresh_database(&self) -> Result<String, PgServerError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.sql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs SQL with `psql` as the superuser in `dbname`; returns its unaligned output.
    pub fn sql(&self, dbname: &str, sql: &str) -> Result<String, PgServerError> {
        let psql = self.bin.join("psql");
        let out = Command::new(&psql)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", USER, "-d", dbname, "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PgServerError::Spawn {
                program: psql.display().to_string(),
                source,
            })?;
        checked("psql", out).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop(&mut self) -> Result<(), PgServerError> {
        if self.running {
            self.running = false;
            let data = self.data();
            self.run(
                "pg_ctl",
                &["-D", path_str(&data)?, "-m", "immediate", "-w", "stop"],
            )?;
        }
        Ok(())
    }

    /// Starts the stopped server again, on the same port and data. Without fsync (the machine
    /// does not crash under a test) but with synchronous commits: a commit is in the OS's
    /// cache before it returns, so it survives [`PgServer::stop`].
    pub fn start_again(&mut self) -> Result<(), PgServerError> {
        let data = self.data();
        let log = self.dir.join("server.log");
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={} \
             -c fsync=off -c full_page_writes=off",
            self.port,
            path_str(&self.dir)?
        );
        if self.tls {
            let dir = path_str(&self.dir)?;
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key"
            ));
        }
        let res = self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data)?,
                "-l",
                path_str(&log)?,
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        if let Err(PgServerError::Failed {
            program,
            status,
            output,
        }) = res
        {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(PgServerError::Failed {
                program,
                status,
                output: format!("{output}\nserver log:\n{log}"),
            });
        }
        res?;
        self.running = true;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server program's command, as the unprivileged user when root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            None => Command::new(path),
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={}", u.uid))
                    .arg(format!("--regid={}", u.gid))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(path);
                c
            }
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, PgServerError> {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PgServerError::Spawn {
                program: program.to_owned(),
                source,
            })?;
        checked(program, out)
    }

    /// Stops the server and removes its directory once this process has exited.
    fn spawn_watchdog(&self) -> Result<Child, PgServerError> {
        let data = self.data();
        let stop = self.command("pg_ctl");
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(
                r#"p=$1; d=$2; shift 2
                   while kill -0 "$p" 2>/dev/null; do sleep 0.5; done
                   "$@" >/dev/null 2>&1; rm -rf "$d""#,
            )
            .arg("locus-pg-watchdog")
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(stop.get_program())
            .args(stop.get_args())
            .args(["-D", path_str(&data)?, "-m", "immediate", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c.spawn().map_err(|source| PgServerError::Spawn {
            program: "sh".into(),
            source,
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        if let Err(e) = self.stop() {
            tracing::warn!("stopping the test PostgreSQL server: {e}");
        }
    }
}

/// One server for the whole test binary, started on first use; each test takes its own
/// [`PgServer::fresh_database`].
pub fn shared() -> Result<&'static PgServer, PgServerError> {
    static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| PgServer::start().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| PgServerError::Shared(e.clone()))
}

fn checked(program: &str, out: Output) -> Result<Output, PgServerError> {
    if out.status.success() {
        return Ok(out);
    }
    Err(PgServerError::Failed {
        program: program.to_owned(),
        status: out.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

fn path_str(p: &Path) -> Result<&str, PgServerError> {
    p.to_str().ok_or_else(|| {
        PgServerError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not UTF-8", p.display()),
        ))
    })
}

/// `LOCUS_PG_BIN`, else the newest `/usr/lib/postgresql/N/bin` (Debian), else `PATH`.
fn find_bin() -> Result<PathBuf, PgServerError> {
    if let Some(dir) = std::env::var_os("LOCUS_PG_BIN") {
        return Ok(dir.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("pg_ctl").is_file() && d.join("initdb").is_file())
        .ok_or(PgServerError::NotInstalled)
}

/// `/proc/self` belongs to the process's effective user.
fn is_root() -> Result<bool, PgServerError> {
    Ok(std::fs::metadata("/proc/self")?.uid() == 0)
}

fn unprivileged() -> Result<RunAs, PgServerError> {
    let id = |flag: &str, user: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    ["postgres", "nobody"]
        .iter()
        .find_map(|u| {
            Some(RunAs {
                uid: id("-u", u)?,
                gid: id("-g", u)?,
            })
        })
        .ok_or(PgServerError::NoUser)
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
