//! Benchmarks (`locus bench`), each reporting a ratio to a baseline measured in the same run:
//! echo round trips against raw UDP ([`ping`]), TDX quote verification against bare dcap-qvl
//! ([`tdx`]), evidence bundles against a bare TPM2_Quote ([`evidence`]), and one prober daemon
//! probing many targets against a plain UDP ping loop ([`fleet`]).
//!
//! Each `run` returns the report as the command prints it; the CLI prints it. The options are
//! clap `Args` here so that their help text lives next to what they set.

pub mod evidence;
pub mod fleet;
pub mod ping;
pub mod tdx;
