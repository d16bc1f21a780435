//! A real headless browser for the tests: Debian's Chromium, run once per page with
//! `--dump-dom` (the DOM after parsing and running the page) and its console captured from
//! `--enable-logging=stderr`.

// Each test binary that includes this module uses only some of it.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one page may take to load and dump.
const PAGE_TIMEOUT: Duration = Duration::from_secs(90);

/// Set by scripts/test.sh (after scripts/setup.sh installed the test tools): a missing
/// browser fails.
pub const REQUIRE_ENV: &str = "LOCUS_REQUIRE_TOOLS";

/// `chromium` on PATH, or `None` with the reason printed. Under scripts/test.sh (or wherever
/// [`REQUIRE_ENV`] or `CI` is set) a missing browser fails instead: the check must not
/// silently vanish.
#[expect(
    clippy::print_stderr,
    reason = "a skipped check must say so in the test output"
)]
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("chromium"))
            .find(|c| c.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os(REQUIRE_ENV).is_none(),
            "chromium is not installed ({REQUIRE_ENV} or CI is set): run scripts/setup.sh"
        );
        eprintln!(
            "SKIPPED the browser check: chromium is not installed (scripts/setup.sh installs \
             the Debian package `chromium`)"
        );
    }
    found
}

/// What the browser made of one page.
pub struct Page {
    /// The serialised DOM after loading.
    pub dom: String,
    /// Console messages the page logged (any level), as Chromium reports them.
    pub console: Vec<String>,
}

/// Loads `file` (opened straight from disk) in headless Chromium.
pub fn load(chromium: &Path, file: &Path) -> Page {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", file.canonicalize().unwrap().display());
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    // Drain both pipes while waiting, so that a full pipe cannot stall the browser.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > PAGE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took over {PAGE_TIMEOUT:?} on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "chromium failed on {url}: {stderr}");
    // Lines look like `[pid:tid:time:INFO:CONSOLE:1] "message", source: URL (line)`.
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    Page { dom, console }
}
