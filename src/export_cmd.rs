//! `locus export`: stored measurements and verdicts as JSON Lines or CSV, for researchers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use locus_fleet::store::{export, Database, ExportFormat, ExportTable};

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
    #[arg(long)]
    db: Database,
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Which table: per-round aggregates, raw samples, evidence requests, verdicts or landmark
    /// rounds.
    #[arg(long, value_enum, default_value = "rounds")]
    table: Table,
    /// Write here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = crate::monitor::open_store(&args.db)?;
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
    export(&store, table, format, &mut out)?;
    Ok(ExitCode::SUCCESS)
}
