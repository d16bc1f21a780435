//! A `locus responder` child process for end-to-end tests: started with the given arguments,
//! its announce line read, killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub(crate) struct Responder {
    child: Child,
    pub(crate) addr: String,
    pub(crate) spki: String,
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Responder {
    /// `locus responder ARGS`; stderr goes to `stderr`.
    pub(crate) fn start(args: &[&str], stderr: Stdio) -> Responder {
        let mut child = Command::new(env!("CARGO_BIN_EXE_locus"))
            .arg("responder")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let announce: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("announce line {line:?}: {e}"));
        Responder {
            child,
            addr: announce["listen"].as_str().unwrap().to_string(),
            spki: announce["spki"].as_str().unwrap().to_string(),
        }
    }
}
