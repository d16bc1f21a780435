//! Test support for locus crates (a dev-dependency only): nothing here is part of a library's
//! public API.

pub mod pg_server;
