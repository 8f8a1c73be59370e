//! Backtest data helpers: parsing OHLCV CSV text (`ts,open,high,low,close,volume`,
//! a header line, Unix seconds) into checked candles with errors that name the
//! line, and walk-forward splitting of a time range into rolling folds, each
//! cut into an in-sample head (the first 70%) and an out-of-sample tail.

use crate::types::Candle;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use thiserror::Error;

/// The header a candle CSV must start with.
pub const HEADER: &str = "ts,open,high,low,close,volume";

const COLUMNS: [&str; 6] = ["ts", "open", "high", "low", "close", "volume"];

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CsvProblem {
    #[error("no header: expected `{HEADER}`")]
    Empty,
    #[error("bad header {0:?}: expected `{HEADER}`")]
    BadHeader(String),
    #[error("expected 6 columns, found {0}")]
    ColumnCount(usize),
    #[error("bad timestamp {0:?}: expected whole Unix seconds")]
    BadTimestamp(String),
    #[error("bad number {value:?} in column {column}")]
    BadNumber { column: &'static str, value: String },
    #[error("{column} is not finite")]
    NonFinite { column: &'static str },
    #[error("{column} must be positive")]
    NonPositive { column: &'static str },
    #[error("volume must not be negative")]
    NegativeVolume,
    #[error("high {high} is below low {low}")]
    HighBelowLow { high: f64, low: f64 },
    #[error("{column} is outside [low, high]")]
    OutsideRange { column: &'static str },
    #[error("timestamp {ts} is not after the previous row's {prev}")]
    NonIncreasingTs { ts: i64, prev: i64 },
}

/// A refused CSV: the 1-based line number and the problem.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("line {line}: {problem}")]
pub struct CsvError {
    pub line: usize,
    pub problem: CsvProblem,
}

fn parse_row(fields: &[&str]) -> Result<Candle, CsvProblem> {
    if fields.len() != COLUMNS.len() {
        return Err(CsvProblem::ColumnCount(fields.len()));
    }
    let ts: i64 = fields[0].parse().map_err(|_| CsvProblem::BadTimestamp(fields[0].to_string()))?;
    let mut v = [0f64; 5];
    for (i, slot) in v.iter_mut().enumerate() {
        let column = COLUMNS[i + 1];
        let raw = fields[i + 1];
        let x: f64 = raw.parse().map_err(|_| CsvProblem::BadNumber { column, value: raw.to_string() })?;
        if !x.is_finite() {
            return Err(CsvProblem::NonFinite { column });
        }
        *slot = x;
    }
    let [open, high, low, close, volume] = v;
    for (column, x) in [("open", open), ("high", high), ("low", low), ("close", close)] {
        if x <= 0.0 {
            return Err(CsvProblem::NonPositive { column });
        }
    }
    if volume < 0.0 {
        return Err(CsvProblem::NegativeVolume);
    }
    if high < low {
        return Err(CsvProblem::HighBelowLow { high, low });
    }
    for (column, x) in [("open", open), ("close", close)] {
        if x < low || x > high {
            return Err(CsvProblem::OutsideRange { column });
        }
    }
    Ok(Candle { ts, open, high, low, close, volume })
}

/// Parses candle CSV text. The first non-blank line must be [`HEADER`]
/// (case and spaces around fields ignored); blank lines are skipped; every
/// row needs 6 columns, an integer `ts` strictly above the previous row's,
/// finite positive prices with `low ≤ open, close ≤ high`, and a finite
/// volume ≥ 0.
pub fn parse_candles(text: &str) -> Result<Vec<Candle>, CsvError> {
    let mut out = Vec::new();
    let mut header_seen = false;
    let mut last_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        last_line = line;
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.split(',').map(str::trim).collect();
        if !header_seen {
            let ok =
                fields.len() == COLUMNS.len() && fields.iter().zip(COLUMNS).all(|(f, c)| f.eq_ignore_ascii_case(c));
            if !ok {
                return Err(CsvError { line, problem: CsvProblem::BadHeader(raw.to_string()) });
            }
            header_seen = true;
            continue;
        }
        let candle = parse_row(&fields).map_err(|problem| CsvError { line, problem })?;
        if let Some(prev) = out.last().map(|c: &Candle| c.ts) {
            if candle.ts <= prev {
                return Err(CsvError { line, problem: CsvProblem::NonIncreasingTs { ts: candle.ts, prev } });
            }
        }
        out.push(candle);
    }
    if !header_seen {
        return Err(CsvError { line: last_line.max(1), problem: CsvProblem::Empty });
    }
    Ok(out)
}

/// Writes candles as CSV with [`HEADER`]; floats print in their shortest
/// round-trip form, so `parse_candles(&to_csv(c)) == c` for valid candles.
pub fn to_csv(candles: &[Candle]) -> String {
    let mut s = String::with_capacity(HEADER.len() + 1 + candles.len() * 48);
    s.push_str(HEADER);
    s.push('\n');
    for c in candles {
        s.push_str(&format!("{},{},{},{},{},{}\n", c.ts, c.open, c.high, c.low, c.close, c.volume));
    }
    s
}

/// Percent of each fold used as in-sample.
pub const IN_SAMPLE_PCT: i128 = 70;

/// Most folds [`walk_forward`] will make.
pub const MAX_FOLDS: usize = 10_000;

/// One walk-forward fold: `in_sample` then `out_of_sample`, adjacent and
/// together covering `range` (all half-open, Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub index: usize,
    pub range: Range<i64>,
    pub in_sample: Range<i64>,
    pub out_of_sample: Range<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WalkForwardError {
    #[error("need at least one fold")]
    ZeroFolds,
    #[error("at most {MAX_FOLDS} folds, asked for {0}")]
    TooManyFolds(usize),
    #[error("empty range: end {end} is not after start {start}")]
    EmptyRange { start: i64, end: i64 },
    #[error("range of {len} s is too short for {k} folds (each needs at least 2 s)")]
    TooShort { len: i128, k: usize },
}

/// Rolling walk-forward: splits `[start, end)` into `k` consecutive folds of
/// equal length (boundary `i` at `start + ⌊(end − start) · i / k⌋`, so the
/// folds tile the range exactly), and cuts each fold into in-sample
/// `[fold_start, fold_start + ⌊len · 70 / 100⌋)` and out-of-sample the rest.
/// Optimise on a fold's in-sample part, evaluate on its out-of-sample part.
pub fn walk_forward(start: i64, end: i64, k: usize) -> Result<Vec<Fold>, WalkForwardError> {
    if k == 0 {
        return Err(WalkForwardError::ZeroFolds);
    }
    if k > MAX_FOLDS {
        return Err(WalkForwardError::TooManyFolds(k));
    }
    if end <= start {
        return Err(WalkForwardError::EmptyRange { start, end });
    }
    let len = end as i128 - start as i128;
    let kk = k as i128;
    if kk * 2 > len {
        return Err(WalkForwardError::TooShort { len, k });
    }
    // every value below lies in [start, end], so the casts back to i64 are exact
    let at = |i: i128| (start as i128 + len * i / kk) as i64;
    Ok((0..k)
        .map(|i| {
            let (a, b) = (at(i as i128), at(i as i128 + 1));
            let split = (a as i128 + (b as i128 - a as i128) * IN_SAMPLE_PCT / 100) as i64;
            Fold { index: i, range: a..b, in_sample: a..split, out_of_sample: split..b }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "ts,open,high,low,close,volume\n0,1.5,2,1,1.25,10\n3600,1.25,1.5,1.0,1.5,0\n";

    fn err(text: &str) -> CsvError {
        parse_candles(text).unwrap_err()
    }

    #[test]
    fn parses_good_csv() {
        let c = parse_candles(GOOD).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], Candle { ts: 0, open: 1.5, high: 2.0, low: 1.0, close: 1.25, volume: 10.0 });
        assert_eq!(c[1].ts, 3600);
        // CRLF, spaces, upper-case header and blank lines are fine
        let c2 = parse_candles(
            "\r\nTS, Open ,HIGH,low,close,volume\r\n0, 1.5,2,1,1.25,10\r\n\r\n3600,1.25,1.5,1.0,1.5,0\r\n\n",
        )
        .unwrap();
        assert_eq!(c2, c);
        assert_eq!(parse_candles(HEADER).unwrap(), vec![]);
        assert_eq!(parse_candles(&to_csv(&c)).unwrap(), c);
    }

    #[test]
    fn errors_name_the_line() {
        let row = |r: &str| format!("ts,open,high,low,close,volume\n0,1,1,1,1,1\n{r}\n");
        assert_eq!(err("").problem, CsvProblem::Empty);
        assert_eq!(err("\n\n").line, 2);
        assert_eq!(
            err("time,o,h,l,c,v\n"),
            CsvError { line: 1, problem: CsvProblem::BadHeader("time,o,h,l,c,v".into()) }
        );
        assert_eq!(err(&row("60,1,1,1,1")), CsvError { line: 3, problem: CsvProblem::ColumnCount(5) });
        assert_eq!(err(&row("60,1,1,1,1,1,1")).problem, CsvProblem::ColumnCount(7));
        assert_eq!(err(&row("6e1,1,1,1,1,1")).problem, CsvProblem::BadTimestamp("6e1".into()));
        assert_eq!(err(&row("60,1,x,1,1,1")).problem, CsvProblem::BadNumber { column: "high", value: "x".into() });
        assert_eq!(err(&row("60,1,1,1,1,")).problem, CsvProblem::BadNumber { column: "volume", value: String::new() });
        assert_eq!(err(&row("60,NaN,1,1,1,1")).problem, CsvProblem::NonFinite { column: "open" });
        assert_eq!(err(&row("60,1,inf,1,1,1")).problem, CsvProblem::NonFinite { column: "high" });
        assert_eq!(err(&row("60,1,1,0,1,1")).problem, CsvProblem::NonPositive { column: "low" });
        assert_eq!(err(&row("60,1,1,1,1,-1")).problem, CsvProblem::NegativeVolume);
        assert_eq!(err(&row("60,1,1,2,1,1")).problem, CsvProblem::HighBelowLow { high: 1.0, low: 2.0 });
        assert_eq!(err(&row("60,3,2,1,1,1")).problem, CsvProblem::OutsideRange { column: "open" });
        assert_eq!(err(&row("60,1,2,1,0.5,1")).problem, CsvProblem::OutsideRange { column: "close" });
        assert_eq!(
            err(&row("0,1,1,1,1,1")),
            CsvError { line: 3, problem: CsvProblem::NonIncreasingTs { ts: 0, prev: 0 } }
        );
        assert_eq!(err(&row("-5,1,1,1,1,1")).problem, CsvProblem::NonIncreasingTs { ts: -5, prev: 0 });
        assert_eq!(err(&row("60,1,1,1,1,x")).to_string(), "line 3: bad number \"x\" in column volume");
    }

    #[test]
    fn walk_forward_even_split() {
        let f = walk_forward(0, 1000, 4).unwrap();
        let spans: Vec<_> = f.iter().map(|f| (f.range.clone(), f.in_sample.clone(), f.out_of_sample.clone())).collect();
        // folds of 250 s; in-sample 175 s (70%), out-of-sample 75 s
        assert_eq!(
            spans,
            vec![
                (0..250, 0..175, 175..250),
                (250..500, 250..425, 425..500),
                (500..750, 500..675, 675..750),
                (750..1000, 750..925, 925..1000),
            ]
        );
        assert_eq!(f.iter().map(|f| f.index).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn walk_forward_uneven_split_tiles_exactly() {
        // boundaries ⌊10·i/3⌋ = 0, 3, 6, 10; splits 0+⌊2.1⌋, 3+⌊2.1⌋, 6+⌊2.8⌋
        let f = walk_forward(100, 110, 3).unwrap();
        let spans: Vec<_> = f.iter().map(|f| (f.in_sample.clone(), f.out_of_sample.clone())).collect();
        assert_eq!(spans, vec![(100..102, 102..103), (103..105, 105..106), (106..108, 108..110)]);
        // a single fold over a whole year in seconds
        let y = walk_forward(1_600_000_000, 1_600_000_000 + 365 * 86_400, 1).unwrap();
        assert_eq!(y[0].in_sample, 1_600_000_000..1_600_000_000 + 22_075_200);
        assert_eq!(y[0].out_of_sample.end, 1_600_000_000 + 365 * 86_400);
        // extreme bounds do not overflow
        let x = walk_forward(i64::MIN, i64::MAX, 2).unwrap();
        assert_eq!((x[0].range.start, x[1].range.end), (i64::MIN, i64::MAX));
        assert_eq!(x[0].range.end, x[1].range.start);
    }

    #[test]
    fn walk_forward_refuses_bad_input() {
        assert_eq!(walk_forward(0, 10, 0), Err(WalkForwardError::ZeroFolds));
        assert_eq!(walk_forward(10, 10, 1), Err(WalkForwardError::EmptyRange { start: 10, end: 10 }));
        assert_eq!(walk_forward(0, 10, 6), Err(WalkForwardError::TooShort { len: 10, k: 6 }));
        assert!(walk_forward(0, 10, 5).is_ok());
        assert_eq!(walk_forward(0, i64::MAX, MAX_FOLDS + 1), Err(WalkForwardError::TooManyFolds(MAX_FOLDS + 1)));
        for f in walk_forward(0, 10, 5).unwrap() {
            assert!(!f.in_sample.is_empty() && !f.out_of_sample.is_empty());
        }
    }
}
