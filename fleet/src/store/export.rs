//! Export of stored tables to JSON Lines or CSV (RFC 4180 quoting), for researchers.

use std::io::Write;

use super::value::{params, Value};
use super::{Store, StoreError};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line, keyed by column name.
    Jsonl,
    /// A header line, then one line per row.
    Csv,
}

/// Which table to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportTable {
    Rounds,
    Samples,
    Evidence,
    Verdicts,
    /// Rounds against landmarks.
    Landmarks,
}

/// Which rows to export: one node's (empty: every node's), from `since` (inclusive) to
/// `until` (exclusive), Unix ns; rounds by start, samples by send time, evidence requests and
/// verdicts by their time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFilter {
    pub node: Option<String>,
    pub since_unix_ns: i64,
    pub until_unix_ns: i64,
}

impl Default for ExportFilter {
    fn default() -> Self {
        Self {
            node: None,
            since_unix_ns: i64::MIN,
            until_unix_ns: i64::MAX,
        }
    }
}

impl ExportTable {
    /// The query, its parameters ?1 (node, '' for any), ?2 and ?3 (time bounds).
    fn query(self) -> &'static str {
        match self {
            ExportTable::Rounds => {
                "SELECT * FROM rounds
                 WHERE (?1 = '' OR target = ?1) AND started_unix_ns >= ?2 AND started_unix_ns < ?3
                 ORDER BY id"
            }
            // Samples carry their round's prober and target, so they stand alone.
            ExportTable::Samples => {
                "SELECT r.prober, r.target, s.round_id, s.sent_unix_ns, s.rtt_ns, s.inside_ns
                 FROM samples s JOIN rounds r ON r.id = s.round_id
                 WHERE (?1 = '' OR r.target = ?1) AND s.sent_unix_ns >= ?2 AND s.sent_unix_ns < ?3
                 ORDER BY s.round_id, s.sent_unix_ns"
            }
            ExportTable::Evidence => {
                "SELECT * FROM evidence
                 WHERE (?1 = '' OR target = ?1) AND at_unix_ns >= ?2 AND at_unix_ns < ?3
                 ORDER BY id"
            }
            ExportTable::Verdicts => {
                "SELECT * FROM verdicts
                 WHERE (?1 = '' OR node = ?1) AND at_unix_ns >= ?2 AND at_unix_ns < ?3
                 ORDER BY id"
            }
            ExportTable::Landmarks => {
                "SELECT * FROM landmark_rounds
                 WHERE (?1 = '' OR landmark = ?1) AND started_unix_ns >= ?2 AND started_unix_ns < ?3
                 ORDER BY id"
            }
        }
    }
}

/// Writes every row of `table` to `out`, streaming; returns the number of rows. Both backends
/// give the same columns in the same order.
pub fn export(
    store: &Store,
    table: ExportTable,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, StoreError> {
    export_filtered(store, table, &ExportFilter::default(), format, out)
}

/// Like [`export`], only the rows `filter` selects.
pub fn export_filtered(
    store: &Store,
    table: ExportTable,
    filter: &ExportFilter,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64, StoreError> {
    let node = filter.node.as_deref().unwrap_or("");
    let params = params![node, filter.since_unix_ns, filter.until_unix_ns];
    let n = store.with(|c| {
        let names = c.columns(table.query())?;
        if format == ExportFormat::Csv {
            let header: Vec<String> = names.iter().map(|n| csv_field(n)).collect();
            writeln!(out, "{}", header.join(","))?;
        }
        let mut n = 0;
        c.each(table.query(), params, &mut |row| {
            match format {
                ExportFormat::Jsonl => {
                    let mut obj = serde_json::Map::new();
                    for (name, v) in names.iter().zip(row.0) {
                        obj.insert(name.clone(), json_value(v));
                    }
                    serde_json::to_writer(&mut *out, &obj)?;
                    writeln!(out)?;
                }
                ExportFormat::Csv => {
                    let fields: Vec<String> = row.0.into_iter().map(csv_value).collect();
                    writeln!(out, "{}", fields.join(","))?;
                }
            }
            n += 1;
            Ok(())
        })?;
        Ok(n)
    })?;
    out.flush()?;
    Ok(n)
}

fn csv_value(v: Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Int(v) => v.to_string(),
        Value::Real(v) => v.to_string(),
        Value::Text(t) => csv_field(&t),
        Value::Blob(b) => hex::encode(b),
    }
}

fn json_value(v: Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Int(i) => i.into(),
        Value::Real(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Text(t) => t.into(),
        Value::Blob(b) => hex::encode(b).into(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VerdictRecord;

    #[test]
    fn csv_quotes_and_jsonl_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("e.db")).unwrap();
        s.insert_verdict(&VerdictRecord {
            node: "n,1".into(),
            claim: "ams".into(),
            at_unix_ns: 7,
            window_start_unix_ns: 1,
            verdict: "proxied".into(),
            reasons: vec!["say \"hi\"".into()],
            radius_km: None,
            judgement: "{}".into(),
        })
        .unwrap();
        let mut csv = Vec::new();
        assert_eq!(
            export(&s, ExportTable::Verdicts, ExportFormat::Csv, &mut csv).unwrap(),
            1
        );
        let csv = String::from_utf8(csv).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "id,node,claim,at_unix_ns,window_start_unix_ns,verdict,reasons,radius_km,judgement"
        );
        assert_eq!(
            lines.next().unwrap(),
            r#"1,"n,1",ams,7,1,proxied,"[""say \""hi\""""]",,{}"#
        );
        let mut jl = Vec::new();
        export(&s, ExportTable::Verdicts, ExportFormat::Jsonl, &mut jl).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&jl).unwrap();
        assert_eq!(v["node"], "n,1");
        assert_eq!(v["radius_km"], serde_json::Value::Null);
        // Filters: by node, and by time (since inclusive, until exclusive).
        let count = |node: Option<&str>, since, until| {
            let f = ExportFilter {
                node: node.map(str::to_owned),
                since_unix_ns: since,
                until_unix_ns: until,
            };
            export_filtered(
                &s,
                ExportTable::Verdicts,
                &f,
                ExportFormat::Jsonl,
                &mut Vec::new(),
            )
            .unwrap()
        };
        assert_eq!(count(Some("n,1"), 7, 8), 1);
        assert_eq!(count(Some("n2"), i64::MIN, i64::MAX), 0);
        assert_eq!(count(None, 8, i64::MAX), 0);
        assert_eq!(count(None, i64::MIN, 7), 0);
    }
}
