//! A real `swtpm` TPM 2.0 emulator process on loopback, for tests and the lab.
//!
//! `swtpm socket` listens on a free port P (TPM commands) and P+1 (control channel), keeps its
//! state in a temporary directory and is killed when the [`Swtpm`] is dropped. With
//! [`SwtpmOptions::create_ek_cert`], `swtpm_setup --create-ek-cert` first manufactures the TPM
//! with an EK certificate signed by a per-instance `swtpm-localca` CA, the way a cloud provider
//! endorses its vTPMs; [`Swtpm::ek_ca_certs`] returns that CA's chain.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::Tcti;

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct SwtpmOptions {
    /// Manufacture the TPM with EK certificates (RSA-2048 at NV 0x01c00002) from a local CA.
    pub create_ek_cert: bool,
    /// Also create an ECC EK certificate (swtpm 0.7 stores it at NV 0x01c00016).
    pub ecc_ek_cert: bool,
    /// Reuse this state directory (e.g. to restart a crashed emulator with its identity).
    pub state_dir: Option<PathBuf>,
    /// Listen on this TPM port (and port + 1 for control); a free pair is chosen when `None`.
    pub port: Option<u16>,
    /// How long to wait for the emulator to accept connections.
    pub start_timeout: Duration,
}

impl Default for SwtpmOptions {
    fn default() -> Self {
        Self {
            create_ek_cert: false,
            ecc_ek_cert: false,
            state_dir: None,
            port: None,
            start_timeout: Duration::from_secs(10),
        }
    }
}

/// Why an emulator could not be started.
#[derive(Debug, Error)]
pub enum SwtpmError {
    /// `swtpm` or `swtpm_setup` is not installed (Debian: `swtpm`, `swtpm-tools`).
    #[error("could not run {program}: {source} (install the swtpm and swtpm-tools packages)")]
    Spawn {
        program: &'static str,
        source: io::Error,
    },
    #[error("swtpm_setup failed ({status}): {stderr}")]
    Setup { status: String, stderr: String },
    #[error("swtpm did not accept connections on port {port} within {after:?}")]
    NotListening { port: u16, after: Duration },
    #[error("swtpm exited at start ({status})")]
    Exited { status: String },
    #[error("no free loopback port pair found")]
    NoFreePorts,
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

/// A running `swtpm` process; killed on drop.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    port: u16,
    state_dir: PathBuf,
    ca_dir: Option<PathBuf>,
    // Keeps the temporary directories alive as long as any handle to this emulator's state.
    _tmp: Arc<tempfile::TempDir>,
}

impl Swtpm {
    /// Manufactures (optionally) and starts an emulator.
    pub fn start(opts: SwtpmOptions) -> Result<Swtpm, SwtpmError> {
        let tmp = Arc::new(tempfile::Builder::new().prefix("locus-swtpm").tempdir()?);
        let state_dir = match &opts.state_dir {
            Some(d) => d.clone(),
            None => {
                let d = tmp.path().join("state");
                std::fs::create_dir_all(&d)?;
                d
            }
        };
        let ca_dir = if opts.create_ek_cert {
            Some(manufacture(tmp.path(), &state_dir, opts.ecc_ek_cert)?)
        } else {
            None
        };
        Self::spawn(&opts, tmp, state_dir, ca_dir)
    }

    /// Starts a new process on the same port and state as this (killed) one: the TPM keeps its
    /// seeds, NV and thus its EK and AK, like a restarted vTPM.
    pub fn restart(&mut self, timeout: Duration) -> Result<(), SwtpmError> {
        self.kill();
        let opts = SwtpmOptions {
            state_dir: Some(self.state_dir.clone()),
            port: Some(self.port),
            start_timeout: timeout,
            ..SwtpmOptions::default()
        };
        let new = Self::spawn(
            &opts,
            self._tmp.clone(),
            self.state_dir.clone(),
            self.ca_dir.clone(),
        )?;
        let mut new = new;
        self.child = new.child.take();
        Ok(())
    }

    fn spawn(
        opts: &SwtpmOptions,
        tmp: Arc<tempfile::TempDir>,
        state_dir: PathBuf,
        ca_dir: Option<PathBuf>,
    ) -> Result<Swtpm, SwtpmError> {
        // Emulators started from several threads at once would find the same free pair, and
        // the one that loses the bind would pass for listening on the winner's port: one start
        // at a time in this process (manufacturing, the slow part, still runs in parallel).
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|p| p.into_inner());
        // A port found free can be taken before swtpm binds it: retry with another pair.
        let attempts = if opts.port.is_some() { 1 } else { 5 };
        let mut last = SwtpmError::NoFreePorts;
        for _ in 0..attempts {
            let port = match opts.port {
                Some(p) => p,
                None => free_port_pair()?,
            };
            let mut child = Command::new("swtpm")
                .arg("socket")
                .arg("--tpm2")
                .args([
                    "--server",
                    &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                ])
                .args([
                    "--ctrl",
                    &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
                ])
                .args(["--tpmstate", &format!("dir={}", state_dir.display())])
                .args(["--flags", "not-need-init,startup-clear"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|source| SwtpmError::Spawn {
                    program: "swtpm",
                    source,
                })?;
            match wait_listening(&mut child, port, opts.start_timeout) {
                Ok(()) => {
                    return Ok(Swtpm {
                        child: Some(child),
                        port,
                        state_dir,
                        ca_dir,
                        _tmp: tmp,
                    })
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The TPM command port (the control port is `port() + 1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCTI to reach this emulator.
    pub fn tcti(&self) -> Tcti {
        Tcti::Swtpm {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port: self.port,
        }
    }

    /// The state directory (seeds, NV, PCRs).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The local CA's certificates (PEM), issuing CA first, then its root; empty without
    /// [`SwtpmOptions::create_ek_cert`].
    pub fn ek_ca_certs(&self) -> Result<Vec<String>, SwtpmError> {
        let Some(dir) = &self.ca_dir else {
            return Ok(Vec::new());
        };
        Ok(vec![
            std::fs::read_to_string(dir.join("issuercert.pem"))?,
            std::fs::read_to_string(dir.join("swtpm-localca-rootca-cert.pem"))?,
        ])
    }

    /// Kills the process at once (crash tests); the state directory stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id while running (e.g. to stop it with SIGSTOP in a hang test).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `swtpm_setup` with a CA of our own, so parallel tests never share `/var/lib/swtpm-localca`.
fn manufacture(tmp: &Path, state_dir: &Path, ecc: bool) -> Result<PathBuf, SwtpmError> {
    let ca = tmp.join("ca");
    std::fs::create_dir_all(&ca)?;
    let localca_conf = tmp.join("swtpm-localca.conf");
    std::fs::write(
        &localca_conf,
        format!(
            "statedir = {d}\nsigningkey = {d}/signkey.pem\nissuercert = {d}/issuercert.pem\ncertserial = {d}/certserial\n",
            d = ca.display()
        ),
    )?;
    let localca_opts = tmp.join("swtpm-localca.options");
    std::fs::write(
        &localca_opts,
        "--platform-manufacturer locus\n--platform-version 2.1\n--platform-model lab\n",
    )?;
    let setup_conf = tmp.join("swtpm_setup.conf");
    std::fs::write(
        &setup_conf,
        format!(
            "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
            localca_conf.display(),
            localca_opts.display()
        ),
    )?;
    let mut cmd = Command::new("swtpm_setup");
    cmd.arg("--tpm2")
        .arg("--tpmstate")
        .arg(state_dir)
        .arg("--create-ek-cert")
        .arg("--config")
        .arg(&setup_conf)
        .arg("--overwrite");
    if ecc {
        cmd.arg("--ecc");
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SwtpmError::Spawn {
            program: "swtpm_setup",
            source,
        })?;
    if !out.status.success() {
        return Err(SwtpmError::Setup {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(ca)
}

fn free_port_pair() -> Result<u16, SwtpmError> {
    for _ in 0..50 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = l.local_addr()?.port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(SwtpmError::NoFreePorts)
}

fn wait_listening(child: &mut Child, port: u16, timeout: Duration) -> Result<(), SwtpmError> {
    let start = Instant::now();
    let ctrl = SocketAddr::from((Ipv4Addr::LOCALHOST, port + 1));
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(SwtpmError::Exited {
                status: status.to_string(),
            });
        }
        // Connecting to the control port does not disturb the TPM command channel.
        if TcpStream::connect_timeout(&ctrl, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(SwtpmError::NotListening {
                port,
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
