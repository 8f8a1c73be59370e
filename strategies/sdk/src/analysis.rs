//! Analysis modules: a read-only [`Database`] in, a [`Report`] out.

pub use crate::analysis_bindings::exports::trading::contract::analysis::{Metric, MetricValue, Report};
pub use crate::analysis_bindings::trading::contract::database::{Rows, Value as DbValue};

/// The host's database as an analysis module sees it: one read-only statement
/// at a time (SELECT only, row-limited; anything else comes back as `Err`).
pub trait Database {
    /// Runs `sql` with positional parameters (`?1`, `?2`, … or `?`).
    fn query(&self, sql: &str, params: &[DbValue]) -> Result<Rows, String>;
    /// One `CREATE` statement per table.
    fn schema(&self) -> String;
}

/// An analysis module: reads the database at `now`, returns a report. No
/// I/O but the database, no clock but `now`.
pub trait Analysis: Default + 'static {
    fn analyze(&mut self, now: i64, db: &dyn Database) -> Result<Report, String>;
}

/// The database the host provides inside the sandbox (the
/// `trading:contract/database` import). Outside WASM it has no data: every
/// query fails and the schema is empty.
pub struct HostDatabase;

#[cfg(target_arch = "wasm32")]
impl Database for HostDatabase {
    fn query(&self, sql: &str, params: &[DbValue]) -> Result<Rows, String> {
        crate::analysis_bindings::trading::contract::database::query(sql, params)
    }
    fn schema(&self) -> String {
        crate::analysis_bindings::trading::contract::database::schema()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Database for HostDatabase {
    fn query(&self, _sql: &str, _params: &[DbValue]) -> Result<Rows, String> {
        Err("no database outside the sandbox".into())
    }
    fn schema(&self) -> String {
        String::new()
    }
}

/// A canned database for native unit tests: each known statement (compared
/// after trimming) has a fixed answer; any other statement fails.
#[derive(Default)]
pub struct TestDatabase {
    pub schema: String,
    pub answers: Vec<(String, Result<Rows, String>)>,
}

impl TestDatabase {
    /// Answers `sql` with `answer` from now on.
    pub fn answer(mut self, sql: &str, answer: Result<Rows, String>) -> Self {
        self.answers.push((sql.trim().to_string(), answer));
        self
    }
}

impl Database for TestDatabase {
    fn query(&self, sql: &str, _params: &[DbValue]) -> Result<Rows, String> {
        let sql = sql.trim();
        match self.answers.iter().find(|(q, _)| q == sql) {
            Some((_, answer)) => answer.clone(),
            None => Err(format!("TestDatabase has no answer for {sql:?}")),
        }
    }
    fn schema(&self) -> String {
        self.schema.clone()
    }
}

/// Rows with the given columns and values.
pub fn rows(columns: &[&str], rows: Vec<Vec<DbValue>>) -> Rows {
    Rows { columns: columns.iter().map(|c| c.to_string()).collect(), rows }
}

impl Rows {
    /// The single value of a one-row, one-column result (e.g. `count(*)`).
    pub fn scalar(&self) -> Option<&DbValue> {
        match self.rows.as_slice() {
            [row] if row.len() == 1 => row.first(),
            _ => None,
        }
    }
}

impl DbValue {
    /// The value as a number, if it is an integer or a real.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            DbValue::Integer(i) => Some(*i as f64),
            DbValue::Real(f) => Some(*f),
            _ => None,
        }
    }
}

impl Report {
    /// An empty report from `module`.
    pub fn new(module: &str, summary: &str) -> Report {
        Report { module: module.to_string(), summary: summary.to_string(), metrics: Vec::new() }
    }

    /// Appends a metric.
    pub fn push(&mut self, section: &str, key: &str, value: MetricValue) -> &mut Self {
        self.metrics.push(Metric { section: section.to_string(), key: key.to_string(), value });
        self
    }

    /// Appends a number; a non-finite one is recorded as missing.
    pub fn number(&mut self, section: &str, key: &str, value: f64) -> &mut Self {
        let v = if value.is_finite() { MetricValue::Number(value) } else { MetricValue::Missing };
        self.push(section, key, v)
    }

    /// Appends a flag.
    pub fn flag(&mut self, section: &str, key: &str, value: bool) -> &mut Self {
        self.push(section, key, MetricValue::Flag(value))
    }

    /// Appends a text.
    pub fn text(&mut self, section: &str, key: &str, value: &str) -> &mut Self {
        self.push(section, key, MetricValue::Text(value.to_string()))
    }

    /// The first metric `section`/`key`.
    pub fn get(&self, section: &str, key: &str) -> Option<&MetricValue> {
        self.metrics.iter().find(|m| m.section == section && m.key == key).map(|m| &m.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_builder_and_test_database() {
        let mut r = Report::new("m", "s");
        r.number("a", "n", 2.0).number("a", "bad", f64::NAN).flag("a", "f", true).text("b", "t", "x");
        assert!(matches!(r.get("a", "n"), Some(MetricValue::Number(n)) if *n == 2.0));
        assert!(matches!(r.get("a", "bad"), Some(MetricValue::Missing)));
        assert!(matches!(r.get("a", "f"), Some(MetricValue::Flag(true))));
        assert!(matches!(r.get("b", "t"), Some(MetricValue::Text(t)) if t == "x"));
        assert!(r.get("b", "n").is_none());

        let db = TestDatabase::default().answer("SELECT 1", Ok(rows(&["1"], vec![vec![DbValue::Integer(1)]])));
        let got = db.query(" SELECT 1 ", &[]).unwrap();
        assert_eq!(got.scalar().and_then(DbValue::as_f64), Some(1.0));
        assert!(db.query("SELECT 2", &[]).is_err());
        assert!(HostDatabase.query("SELECT 1", &[]).is_err());
        assert_eq!(rows(&["a", "b"], vec![]).scalar().map(|_| ()), None);
    }
}
