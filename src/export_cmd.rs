//! `locus export`: stored measurements and verdicts as JSON Lines or CSV, for researchers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use locus_fleet::store::{export_filtered, Database, ExportFilter, ExportFormat, ExportTable};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
enum Table {
    Rounds,
    Samples,
    Evidence,
    Verdicts,
    Landmarks,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// The database `locus prober --config` and `locus monitor` write: an SQLite file or a
    /// `postgres://user:password@host:port/dbname` URL.
    #[arg(long, env = "LOCUS_DB", hide_env_values = true)]
    db: Database,
    /// A file holding the PostgreSQL password, so that neither --db nor LOCUS_DB carries it.
    #[arg(long, env = "LOCUS_DB_PASSWORD_FILE", value_name = "FILE")]
    db_password_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Which table: per-round aggregates, raw samples, evidence requests, verdicts or landmark
    /// rounds.
    #[arg(long, value_enum, default_value = "rounds")]
    table: Table,
    /// Only this node's rows (the `target` of rounds, samples and evidence, the `node` of
    /// verdicts).
    #[arg(long)]
    node: Option<String>,
    /// Only rows from this time on (RFC 3339 or Unix seconds): rounds by start, samples by
    /// send time, evidence requests and verdicts by their time.
    #[arg(long, value_parser = parse_time_ns)]
    since: Option<i64>,
    /// Only rows before this time (RFC 3339 or Unix seconds).
    #[arg(long, value_parser = parse_time_ns)]
    until: Option<i64>,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `--at`, `--since`, `--until` as clap parses them: RFC 3339 or Unix seconds (fractions
/// kept), as Unix ns ([`locus_fleet::time::parse_time_ns`], the one time parser).
pub(crate) fn parse_time_ns(s: &str) -> Result<i64, String> {
    locus_fleet::time::parse_time_ns(s).map_err(|e| e.to_string())
}

pub(crate) fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let db = crate::monitor::with_password(args.db, args.db_password_file.as_deref())?;
    let store = crate::monitor::open_store(&db)?;
    let format = match args.format {
        Format::Jsonl => ExportFormat::Jsonl,
        Format::Csv => ExportFormat::Csv,
    };
    let table = match args.table {
        Table::Rounds => ExportTable::Rounds,
        Table::Samples => ExportTable::Samples,
        Table::Evidence => ExportTable::Evidence,
        Table::Verdicts => ExportTable::Verdicts,
        Table::Landmarks => ExportTable::Landmarks,
    };
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let filter = ExportFilter {
        node: args.node,
        since_unix_ns: args.since.unwrap_or(i64::MIN),
        until_unix_ns: args.until.unwrap_or(i64::MAX),
    };
    export_filtered(&store, table, &filter, format, &mut out)?;
    Ok(ExitCode::SUCCESS)
}
