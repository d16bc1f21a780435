//! Benchmarks (`locus bench`), each reporting a ratio to a baseline measured in the same run:
//! echo round trips against raw UDP ([`ping`]), TDX quote verification against bare dcap-qvl
//! ([`tdx`]), evidence bundles against a bare TPM2_Quote and, with many requesters and quotes
//! at cloud speed, coalesced bundles against a bare serialized quoter ([`evidence`]), one
//! prober daemon probing many targets against a plain UDP ping loop ([`fleet`]), and a
//! responder under attack against the same responder idle ([`overload`]).
//!
//! Each `run` returns the report as the command prints it; the CLI prints it. The options are
//! clap `Args` here so that their help text lives next to what they set.

mod coalesce;
pub mod evidence;
pub mod fleet;
pub mod overload;
pub mod ping;
mod smokeping;
pub mod tdx;

/// A report as JSON (`pretty` or one line) with `json`, else as the text `text` writes.
fn render<R: serde::Serialize>(
    r: &R,
    json: bool,
    pretty: bool,
    text: impl FnOnce(&mut String),
) -> anyhow::Result<String> {
    if json {
        let mut s = if pretty {
            serde_json::to_string_pretty(r)?
        } else {
            serde_json::to_string(r)?
        };
        s.push('\n');
        return Ok(s);
    }
    let mut out = String::new();
    text(&mut out);
    Ok(out)
}
