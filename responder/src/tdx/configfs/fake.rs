//! A kernel emulation for tests: real directories and files under a temp dir, with the side
//! effects configfs-tsm has in the kernel, and injectable faults.
//!
//! - mkdir populates `provider`, `generation`, `inblob`, `outblob`;
//! - a write to `inblob` bumps `generation` (the kernel's race detector);
//! - reading `outblob` produces the quote for the current `inblob` (from a [`TdxQuoter`],
//!   e.g. the lab backend, standing in for the TDX module);
//! - rmdir removes the object with its attributes.
//!
//! Faults: provider missing or wrong, permission denied on mkdir (tests run as root, where mode
//! bits would not stop us, so it is injected), EBUSY on `outblob`, and a racing writer that
//! bumps `generation` between our write and read. A missing root is just a missing directory.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::TsmFs;
use crate::tdx::TdxQuoter;

#[derive(Debug, Clone)]
pub(crate) struct Faults {
    /// `None`: no provider attribute.
    pub(crate) provider: Option<&'static str>,
    pub(crate) deny_mkdir: bool,
    /// Reads of `outblob` that fail with EBUSY before one succeeds.
    pub(crate) busy: u32,
    /// Reads of `outblob` preceded by another writer's `inblob` write.
    pub(crate) races: u32,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            provider: Some("tdx_guest"),
            deny_mkdir: false,
            busy: 0,
            races: 0,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Stats {
    pub(crate) dirs_created: u32,
    pub(crate) dirs_removed: u32,
    pub(crate) quotes: u32,
    /// Most report directories alive at once.
    pub(crate) max_open: u32,
    open: u32,
}

pub(crate) struct FakeKernel {
    quoter: Arc<dyn TdxQuoter>,
    state: Mutex<(Faults, Stats)>,
}

fn name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn dir_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl FakeKernel {
    pub(crate) fn new(quoter: Arc<dyn TdxQuoter>, faults: Faults) -> Self {
        Self {
            quoter,
            state: Mutex::new((faults, Stats::default())),
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.state.lock().unwrap().1.clone()
    }

    fn bump_generation(dir: &Path) -> io::Result<()> {
        let g: u64 = std::fs::read_to_string(dir.join("generation"))?
            .trim()
            .parse()
            .map_err(|_| io::Error::other("generation"))?;
        std::fs::write(dir.join("generation"), format!("{}\n", g + 1))
    }
}

impl TsmFs for FakeKernel {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock().unwrap();
        if st.0.deny_mkdir {
            return Err(io::ErrorKind::PermissionDenied.into());
        }
        std::fs::create_dir(path)?;
        if let Some(p) = st.0.provider {
            std::fs::write(path.join("provider"), format!("{p}\n"))?;
        }
        std::fs::write(path.join("generation"), "0\n")?;
        std::fs::write(path.join("inblob"), b"")?;
        std::fs::write(path.join("outblob"), b"")?;
        st.1.dirs_created += 1;
        st.1.open += 1;
        st.1.max_open = st.1.max_open.max(st.1.open);
        Ok(())
    }

    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        match name(path) {
            "inblob" => {
                // The kernel caps inblob at 64 bytes (TSM_INBLOB_MAX).
                if data.len() > 64 {
                    return Err(io::ErrorKind::InvalidInput.into());
                }
                std::fs::write(path, data)?;
                Self::bump_generation(&dir_of(path))
            }
            _ => Err(io::ErrorKind::PermissionDenied.into()),
        }
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        if name(path) != "outblob" {
            return std::fs::read(path);
        }
        let dir = dir_of(path);
        let mut st = self.state.lock().unwrap();
        if st.0.busy > 0 {
            st.0.busy -= 1;
            return Err(io::ErrorKind::ResourceBusy.into());
        }
        if st.0.races > 0 {
            st.0.races -= 1;
            // Another process writes its own REPORTDATA into our report object.
            std::fs::write(dir.join("inblob"), [0xEE; 64])?;
            Self::bump_generation(&dir)?;
        }
        let inblob = std::fs::read(dir.join("inblob"))?;
        let mut report_data = [0u8; 64];
        report_data[..inblob.len().min(64)].copy_from_slice(&inblob[..inblob.len().min(64)]);
        let quote = self
            .quoter
            .quote(report_data)
            .map_err(|e| io::Error::other(e.to_string()))?;
        std::fs::write(path, &quote)?;
        st.1.quotes += 1;
        Ok(quote)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)?;
        let mut st = self.state.lock().unwrap();
        st.1.dirs_removed += 1;
        st.1.open -= 1;
        Ok(())
    }
}
