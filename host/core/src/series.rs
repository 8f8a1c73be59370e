//! Named candle series and the calendar helpers every room shares: a series
//! of one symbol at one interval, the symbol and interval a file name like
//! `BTCUSD-1h.csv` carries, `YYYY-MM-DD HH:MM` formatting of Unix seconds,
//! and an error's whole cause chain on one line. Pure: no I/O, no clock.

use crate::{Candle, Interval};
use std::path::Path;

/// The candles of one symbol at one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub symbol: String,
    pub interval: Interval,
    pub candles: Vec<Candle>,
}

/// Symbol and interval from a file name like `BTCUSD-1h.csv`.
pub fn name_parts(path: &Path) -> (Option<String>, Option<Interval>) {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((sym, iv)) if Interval::parse(iv).is_some() => (Some(sym.to_string()), Interval::parse(iv)),
        _ if stem.is_empty() => (None, None),
        _ => (Some(stem.to_string()), None),
    }
}

/// `YYYY-MM-DD HH:MM` (UTC) of Unix seconds.
pub fn format_ts(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// An error and its causes on one line, as `anyhow`'s `{:#}` prints them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
