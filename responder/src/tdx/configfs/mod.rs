//! The Linux configfs-tsm backend (Documentation/ABI/testing/configfs-tsm): one report
//! directory per quote under a configurable root, removed afterwards.
//!
//! Written here rather than taken from the `configfs-tsm` crate: that crate is AGPL-3.0,
//! hard-codes `/sys/kernel/config/tsm/report` and never removes its report directories, so a
//! long-running responder would leak one kernel object per fresh nonce.
//!
//! The filesystem is reached through [`TsmFs`] so tests can put a kernel emulation behind it;
//! [`StdFs`] is the real thing. Machines without TDX have no such directory: quoting then fails
//! with [`QuoteError::ConfigfsUnavailable`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{QuoteError, TdxQuoter};

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

/// Where the kernel mounts TSM reports.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";
/// The `provider` a TDX guest reports.
pub const TDX_PROVIDER: &str = "tdx_guest";
/// Attempts before giving up on a racing writer or a busy provider.
pub const DEFAULT_ATTEMPTS: u32 = 4;

/// The four filesystem operations the ABI needs.
pub trait TsmFs: Send + Sync {
    /// mkdir: the kernel populates the new directory with its attribute files.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Write a whole attribute.
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Read a whole attribute.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// rmdir: removes the report object with its attributes.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl TsmFs for StdFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        // configfs attributes exist already; never create a regular file by mistake.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(data)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
}

/// TDX quotes from configfs-tsm. Requests are serialized: the hardware serializes quote
/// generation anyway, and one report directory at a time keeps the kernel state small.
pub struct ConfigfsQuoter {
    root: PathBuf,
    fs: Arc<dyn TsmFs>,
    lock: Mutex<()>,
    next: AtomicU64,
    attempts: u32,
}

impl std::fmt::Debug for ConfigfsQuoter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigfsQuoter")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// One attempt's outcome when it did not produce a quote.
enum Attempt {
    /// Another writer raced us or the provider was busy: try again in a new directory.
    Retry(QuoteError),
    Fatal(QuoteError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> QuoteError {
    let path = path.to_path_buf();
    move |source| match source.kind() {
        io::ErrorKind::PermissionDenied => QuoteError::PermissionDenied { path },
        _ => QuoteError::Io { op, path, source },
    }
}

fn parse_generation(raw: &[u8], path: &Path) -> Result<u64, QuoteError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| QuoteError::Malformed {
            path: path.to_path_buf(),
            found: String::from_utf8_lossy(raw).into_owned(),
        })
}

impl ConfigfsQuoter {
    /// The real backend under `root` (usually [`DEFAULT_ROOT`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_fs(root, Arc::new(StdFs))
    }

    /// A backend on another [`TsmFs`] (tests: a kernel emulation).
    pub fn with_fs(root: impl Into<PathBuf>, fs: Arc<dyn TsmFs>) -> Self {
        Self {
            root: root.into(),
            fs,
            lock: Mutex::new(()),
            next: AtomicU64::new(0),
            attempts: DEFAULT_ATTEMPTS,
        }
    }

    /// How many report directories to try before giving up on races or EBUSY.
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    fn report_dir(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!("locus-{}-{n}", std::process::id()))
    }

    fn generation(&self, dir: &Path) -> Result<u64, QuoteError> {
        let path = dir.join("generation");
        let raw = self.fs.read(&path).map_err(io_err("read", &path))?;
        parse_generation(&raw, &path)
    }

    fn attempt(&self, dir: &Path, report_data: &[u8; 64]) -> Result<Vec<u8>, Attempt> {
        let provider_path = dir.join("provider");
        let provider = match self.fs.read(&provider_path) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Attempt::Fatal(QuoteError::ProviderMissing {
                    path: provider_path,
                }))
            }
            Err(e) => return Err(Attempt::Fatal(io_err("read", &provider_path)(e))),
        };
        let provider = String::from_utf8_lossy(&provider).trim().to_owned();
        if provider != TDX_PROVIDER {
            return Err(Attempt::Fatal(QuoteError::WrongProvider {
                found: provider,
                expected: TDX_PROVIDER,
            }));
        }
        let before = self.generation(dir).map_err(Attempt::Fatal)?;
        let inblob = dir.join("inblob");
        self.fs
            .write(&inblob, report_data)
            .map_err(|e| Attempt::Fatal(io_err("write", &inblob)(e)))?;
        let outblob = dir.join("outblob");
        let quote = match self.fs.read(&outblob) {
            Ok(q) => q,
            Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                return Err(Attempt::Retry(QuoteError::Busy {
                    attempts: self.attempts,
                }))
            }
            Err(e) => return Err(Attempt::Fatal(io_err("read", &outblob)(e))),
        };
        // The kernel bumps `generation` on every inblob write: exactly one (ours) must have
        // happened, or the outblob may answer someone else's REPORTDATA.
        let after = self.generation(dir).map_err(Attempt::Fatal)?;
        if after != before + 1 {
            return Err(Attempt::Retry(QuoteError::GenerationRaced {
                attempts: self.attempts,
                before,
                after,
            }));
        }
        if quote.is_empty() {
            return Err(Attempt::Fatal(QuoteError::EmptyOutblob { path: outblob }));
        }
        Ok(quote)
    }
}

impl TdxQuoter for ConfigfsQuoter {
    fn quote(&self, report_data: [u8; 64]) -> Result<Vec<u8>, QuoteError> {
        // A poisoned lock only means another request panicked; the ABI state is per directory.
        let _serial = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = None;
        for _ in 0..self.attempts {
            let dir = self.report_dir();
            match self.fs.create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(QuoteError::ConfigfsUnavailable {
                        root: self.root.clone(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // A stale directory of an earlier process with our pid: take the next name.
                    last = Some(io_err("mkdir", &dir)(e));
                    continue;
                }
                Err(e) => return Err(io_err("mkdir", &dir)(e)),
            }
            let outcome = self.attempt(&dir, &report_data);
            if let Err(e) = self.fs.remove_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove TSM report dir");
            }
            match outcome {
                Ok(q) => return Ok(q),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(e)) => {
                    tracing::debug!(error = %e, "TSM report attempt retried");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(QuoteError::Busy {
            attempts: self.attempts,
        }))
    }
}
