//! Export of stored tables to JSON Lines or CSV (RFC 4180 quoting), for researchers.

use std::io::Write;

use super::value::Value;
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

impl ExportTable {
    fn query(self) -> &'static str {
        match self {
            ExportTable::Rounds => "SELECT * FROM rounds ORDER BY id",
            // Samples carry their round's prober and target, so they stand alone.
            ExportTable::Samples => {
                "SELECT r.prober, r.target, s.round_id, s.sent_unix_ns, s.rtt_ns, s.inside_ns
                 FROM samples s JOIN rounds r ON r.id = s.round_id
                 ORDER BY s.round_id, s.sent_unix_ns"
            }
            ExportTable::Evidence => "SELECT * FROM evidence ORDER BY id",
            ExportTable::Verdicts => "SELECT * FROM verdicts ORDER BY id",
            ExportTable::Landmarks => "SELECT * FROM landmark_rounds ORDER BY id",
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
    let n = store.with(|c| {
        let names = c.columns(table.query())?;
        if format == ExportFormat::Csv {
            let header: Vec<String> = names.iter().map(|n| csv_field(n)).collect();
            writeln!(out, "{}", header.join(","))?;
        }
        let mut n = 0;
        c.each(table.query(), &[], &mut |row| {
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
    }
}
