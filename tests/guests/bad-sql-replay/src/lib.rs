//! Test guest: an analysis module driven by a `hostile (id, kind, arg)` table
//! the test puts in the database, so the corpus in `hostile/sql/` grows
//! without rebuilding the guest. Rows are replayed in `id` order:
//! - `sql`: runs `arg` as a query; section `sql:<id>` gets `ok` (flag),
//!   `rows` and `bytes` (numbers) or `error` (text, at most 300 bytes);
//! - `pad-summary`: the summary grows by `arg` bytes;
//! - `metrics`: `arg` more metrics in section `pad`.
//!
//! The summary is `replayed <n>` followed by any padding.

use guest_sdk::{Analysis, Database, DbValue, Report};
use std::hint::black_box;

pub const CORPUS: &str = "SELECT id, kind, arg FROM hostile ORDER BY id";

#[derive(Default)]
pub struct Replay;

fn payload(rows: &guest_sdk::Rows) -> usize {
    rows.rows
        .iter()
        .flatten()
        .map(|v| match v {
            DbValue::Text(s) => s.len(),
            DbValue::Blob(b) => b.len(),
            _ => 8,
        })
        .sum()
}

fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Analysis for Replay {
    fn analyze(&mut self, _now: i64, db: &dyn Database) -> Result<Report, String> {
        let corpus = db.query(CORPUS, &[]).map_err(|e| format!("reading the corpus: {e}"))?;
        let mut r = Report::new("bad-sql-replay", "");
        let mut n = 0;
        let mut pad = String::new();
        for row in &corpus.rows {
            let (Some(DbValue::Integer(id)), Some(DbValue::Text(kind))) = (row.first(), row.get(1)) else {
                continue;
            };
            let arg = row.get(2);
            match (kind.as_str(), arg) {
                ("sql", Some(DbValue::Text(sql))) => {
                    n += 1;
                    let section = format!("sql:{id}");
                    match db.query(sql, &[]) {
                        Ok(rows) => {
                            r.flag(&section, "ok", true);
                            r.number(&section, "rows", rows.rows.len() as f64);
                            r.number(&section, "bytes", payload(&rows) as f64);
                            black_box(rows);
                        }
                        Err(e) => {
                            r.flag(&section, "ok", false);
                            r.text(&section, "error", clip(&e, 300));
                        }
                    }
                }
                ("pad-summary", Some(DbValue::Integer(b))) => pad.push_str(&"p".repeat(*b as usize)),
                ("metrics", Some(DbValue::Integer(m))) => {
                    for i in 0..*m {
                        r.number("pad", &format!("m{i}"), i as f64);
                    }
                }
                _ => {}
            }
        }
        r.summary = format!("replayed {n}{pad}");
        Ok(r)
    }
}

guest_sdk::export_analysis!(Replay);
