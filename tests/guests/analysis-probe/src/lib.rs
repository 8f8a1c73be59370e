//! Test guest for the analysis sandbox. `analyze` counts the candles, then
//! tries an `INSERT` and a `DELETE` on `candles` and reports (section
//! "probe") `candles` (number, missing if the count failed), `insert_refused`
//! and `delete_refused` (flags), plus the host's error texts.

use guest_sdk::{Analysis, Database, DbValue, MetricValue, Report};

pub const COUNT: &str = "SELECT count(*) FROM candles";
pub const INSERT: &str = "INSERT INTO candles (symbol, interval, ts, open, high, low, close, volume) \
                          VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?4, ?5)";
pub const DELETE: &str = "DELETE FROM candles";

#[derive(Default)]
pub struct Probe;

impl Analysis for Probe {
    fn analyze(&mut self, now: i64, db: &dyn Database) -> Result<Report, String> {
        let mut r = Report::new("analysis-probe", "");
        let count = db.query(COUNT, &[]);
        let n = count.as_ref().ok().and_then(|rows| rows.scalar()).and_then(DbValue::as_f64);
        match n {
            Some(n) => r.number("probe", "candles", n),
            None => r.push("probe", "candles", MetricValue::Missing),
        };
        if let Err(e) = &count {
            r.text("probe", "candles_error", e);
        }
        let params = [
            DbValue::Text("PROBE-USD".into()),
            DbValue::Text("1h".into()),
            DbValue::Integer(now),
            DbValue::Real(1.0),
            DbValue::Real(0.0),
        ];
        let insert = db.query(INSERT, &params);
        let delete = db.query(DELETE, &[]);
        r.flag("probe", "insert_refused", insert.is_err());
        r.flag("probe", "delete_refused", delete.is_err());
        for (key, result) in [("insert_error", &insert), ("delete_error", &delete)] {
            if let Err(e) = result {
                r.text("probe", key, e);
            }
        }
        let verdict = |refused: bool| if refused { "refused" } else { "ALLOWED" };
        r.summary = format!(
            "candles: {}; insert {}; delete {}",
            n.map_or("unknown".to_string(), |n| n.to_string()),
            verdict(insert.is_err()),
            verdict(delete.is_err()),
        );
        Ok(r)
    }
}

guest_sdk::export_analysis!(Probe);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::{rows, TestDatabase};

    #[test]
    fn reports_count_and_refusals() {
        let db = TestDatabase::default().answer(COUNT, Ok(rows(&["count(*)"], vec![vec![DbValue::Integer(42)]])));
        let r = Probe.analyze(1_700_000_000, &db).unwrap();
        assert!(matches!(r.get("probe", "candles"), Some(MetricValue::Number(n)) if *n == 42.0), "{r:?}");
        assert!(matches!(r.get("probe", "insert_refused"), Some(MetricValue::Flag(true))));
        assert!(matches!(r.get("probe", "delete_refused"), Some(MetricValue::Flag(true))));
    }

    #[test]
    fn reports_writes_that_were_allowed() {
        let ok = || Ok(rows(&[], vec![]));
        let db = TestDatabase::default().answer(INSERT, ok()).answer(DELETE, ok());
        let r = Probe.analyze(0, &db).unwrap();
        assert!(matches!(r.get("probe", "candles"), Some(MetricValue::Missing)));
        assert!(matches!(r.get("probe", "candles_error"), Some(MetricValue::Text(_))));
        assert!(matches!(r.get("probe", "insert_refused"), Some(MetricValue::Flag(false))));
        assert!(matches!(r.get("probe", "delete_refused"), Some(MetricValue::Flag(false))));
        assert!(r.summary.contains("ALLOWED"), "{}", r.summary);
    }
}
