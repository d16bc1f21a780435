//! Trial results: one CSV line per trial keyed by point and repetition, read back on start so
//! a re-run skips finished trials.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context};

use super::config::Kind;
use super::sim::{Point, TrialResult};

pub(crate) const CSV_FILE: &str = "trials.csv";

const HEADER: &str = "key,rep,kind,distance_km,jitter_us,probers,samples_per_round,inflation,\
truth,verdict,caught,min_excess_ms,max_excess_ms,max_anchor_excess_ms,vtpm_cmd_rtt_min_ms,\
cusum_stat_ms,latency_s";

/// One trial, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) point: Point,
    pub(crate) rep: u64,
    pub(crate) verdict: String,
    /// Any verdict other than `located`.
    pub(crate) caught: bool,
    pub(crate) min_excess_ms: Option<f64>,
    pub(crate) max_excess_ms: Option<f64>,
    pub(crate) max_anchor_excess_ms: Option<f64>,
    pub(crate) vtpm_cmd_rtt_min_ms: Option<f64>,
    pub(crate) cusum_stat_ms: Option<f64>,
    pub(crate) latency_s: Option<f64>,
}

impl Row {
    pub(crate) fn new(point: &Point, rep: u64, r: &TrialResult) -> Row {
        let s = &r.judgement.scores;
        // Stored rounded, so the in-memory row equals the one read back.
        let q = |v: Option<f64>| v.map(|x| (x * 1e4).round() / 1e4);
        Row {
            point: point.clone(),
            rep,
            verdict: r.judgement.verdict.as_str().into(),
            caught: !r.judgement.verdict.is_located(),
            min_excess_ms: q(s.min_excess_ms),
            max_excess_ms: q(s.max_excess_ms),
            max_anchor_excess_ms: q(s.max_anchor_excess_ms),
            vtpm_cmd_rtt_min_ms: q(s.vtpm_cmd_rtt_min_ms),
            cusum_stat_ms: q(s.cusum_stat_ms),
            latency_s: q(r.latency_s),
        }
    }

    pub(crate) fn line(&self) -> String {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_default();
        let p = &self.point;
        let mut s = String::new();
        let _ = write!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            p.key(),
            self.rep,
            p.kind.as_str(),
            p.distance_km,
            p.jitter_us,
            p.probers,
            p.samples_per_round,
            p.inflation,
            p.kind.truth(),
            self.verdict,
            u8::from(self.caught),
            f(self.min_excess_ms),
            f(self.max_excess_ms),
            f(self.max_anchor_excess_ms),
            f(self.vtpm_cmd_rtt_min_ms),
            f(self.cusum_stat_ms),
            f(self.latency_s),
        );
        s
    }

    fn parse(line: &str) -> Option<Row> {
        let c: Vec<&str> = line.split(',').collect();
        if c.len() != 17 {
            return None;
        }
        let opt = |s: &str| -> Option<Option<f64>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let point = Point {
            kind: Kind::parse(c[2])?,
            distance_km: c[3].parse().ok()?,
            jitter_us: c[4].parse().ok()?,
            probers: c[5].parse().ok()?,
            samples_per_round: c[6].parse().ok()?,
            inflation: c[7].parse().ok()?,
        };
        if point.key() != c[0] {
            return None;
        }
        Some(Row {
            point,
            rep: c[1].parse().ok()?,
            verdict: c[9].to_string(),
            caught: c[10] == "1",
            min_excess_ms: opt(c[11])?,
            max_excess_ms: opt(c[12])?,
            max_anchor_excess_ms: opt(c[13])?,
            vtpm_cmd_rtt_min_ms: opt(c[14])?,
            cusum_stat_ms: opt(c[15])?,
            latency_s: opt(c[16])?,
        })
    }

    pub(crate) fn id(&self) -> (String, u64) {
        (self.point.key(), self.rep)
    }
}

/// Reads the stored trials of `dir` (none when the file does not exist). A torn last line
/// (an interrupted run) is dropped and the file truncated to the last complete line.
pub(crate) fn load(dir: &Path) -> anyhow::Result<Vec<Row>> {
    let path = dir.join(CSV_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    if complete.len() != text.len() {
        std::fs::write(&path, complete)
            .with_context(|| format!("truncating the torn last line of {}", path.display()))?;
    }
    let mut lines = complete.lines();
    match lines.next() {
        None => return Ok(Vec::new()),
        Some(h) if h == HEADER => {}
        Some(_) => bail!(
            "{} has another header than this version writes: use another --out",
            path.display()
        ),
    }
    let mut rows = Vec::new();
    for (i, l) in lines.enumerate() {
        let row = Row::parse(l)
            .with_context(|| format!("{}, line {}: unreadable trial", path.display(), i + 2))?;
        rows.push(row);
    }
    Ok(rows)
}

/// Appends rows (writing the header first when the file is new).
pub(crate) struct Writer {
    file: std::io::BufWriter<std::fs::File>,
}

impl Writer {
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Writer> {
        let path = dir.join(CSV_FILE);
        let new = std::fs::metadata(&path).map_or(true, |m| m.len() == 0);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut w = Writer {
            file: std::io::BufWriter::new(file),
        };
        if new {
            writeln!(w.file, "{HEADER}")?;
        }
        Ok(w)
    }

    pub(crate) fn append(&mut self, rows: &[Row]) -> anyhow::Result<()> {
        for r in rows {
            writeln!(self.file, "{}", r.line())?;
        }
        // Flushed per batch: an interrupted run loses at most the batch in flight.
        self.file.flush()?;
        Ok(())
    }
}

/// Keys of finished trials.
pub(crate) fn done(rows: &[Row]) -> HashSet<(String, u64)> {
    rows.iter().map(Row::id).collect()
}
