//! The candle store: OHLCV candles in the host database's `candles` table in
//! three tiers (5m, 1h, 1d). CSV files are imported whole or not at all and
//! idempotently; coarser tiers are aggregated from finer ones and old candles
//! pruned per tier, both as plain functions the nightly job calls. Gaps stay
//! gaps: a bucket without a finer candle never gets a coarse one.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use trading_core::csv::{parse_candles, CsvError};
use trading_core::{Candle, Interval};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CandleError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {error}")]
    Csv { path: PathBuf, error: CsvError },
    #[error("{path}: line {line}: timestamp {ts} is not aligned to the {interval} interval")]
    Unaligned {
        path: PathBuf,
        line: usize,
        ts: i64,
        interval: &'static str,
    },
    #[error("{path}: cannot tell the symbol; pass --symbol")]
    NoSymbol { path: PathBuf },
    #[error(
        "{path}: cannot tell the interval; pass --interval or name the file like BTCUSD-1h.csv"
    )]
    NoInterval { path: PathBuf },
    #[error("{0:?} is not a symbol (letters, digits, '-', '_', '/', at most 32)")]
    BadSymbol(String),
    #[error("no {interval} candles stored for {symbol} (see `host data list`)")]
    NotStored {
        symbol: String,
        interval: &'static str,
    },
    #[error("the store holds a bad candle for {symbol} {interval} at {ts}")]
    BadRow {
        symbol: String,
        interval: String,
        ts: i64,
    },
    #[error("retention {0:?}: expected a number of days or `forever`")]
    BadRetention(String),
    #[error("candle store: {0}")]
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for CandleError {
    fn from(e: rusqlite::Error) -> Self {
        CandleError::Db(e)
    }
}

/// What an import or aggregation did to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriteStats {
    /// Candles that were not stored before.
    pub inserted: u64,
    /// Candles stored before with other values, now replaced.
    pub updated: u64,
    /// Candles stored before with the same values.
    pub unchanged: u64,
}

impl WriteStats {
    fn add(&mut self, o: WriteStats) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
    }
}

/// The result of importing one file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImportReport {
    pub symbol: String,
    pub interval: Interval,
    pub rows: u64,
    pub stats: WriteStats,
}

/// One stored series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesInfo {
    pub symbol: String,
    pub interval: String,
    pub count: u64,
    pub first: i64,
    pub last: i64,
}

/// How long each tier is kept, in seconds; `None` keeps it forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub m5: Option<i64>,
    pub h1: Option<i64>,
    pub d1: Option<i64>,
}

impl Default for Retention {
    /// 5m for 30 days, 1h for 730 days (two years), 1d forever.
    fn default() -> Self {
        Retention {
            m5: Some(30 * 86_400),
            h1: Some(730 * 86_400),
            d1: None,
        }
    }
}

impl Retention {
    pub fn get(&self, interval: Interval) -> Option<i64> {
        match interval {
            Interval::M5 => self.m5,
            Interval::H1 => self.h1,
            Interval::D1 => self.d1,
        }
    }
}

/// A retention in days (`30`) or `forever`, as seconds.
pub fn parse_keep(s: &str) -> Result<Option<i64>, CandleError> {
    match s.trim() {
        "forever" => Ok(None),
        d => d
            .parse::<u32>()
            .map(|d| Some(i64::from(d) * 86_400))
            .map_err(|_| CandleError::BadRetention(s.to_string())),
    }
}

/// Candles deleted per tier by [`prune`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneStats {
    pub m5: u64,
    pub h1: u64,
    pub d1: u64,
}

/// Checks a symbol name before it goes into the store.
pub fn check_symbol(s: &str) -> Result<(), CandleError> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
    if ok {
        Ok(())
    } else {
        Err(CandleError::BadSymbol(s.to_string()))
    }
}

/// The interval whose length equals the smallest spacing of `candles`.
pub fn infer_interval(candles: &[Candle]) -> Option<Interval> {
    let gap = candles.windows(2).map(|w| w[1].ts - w[0].ts).min()?;
    Interval::ALL.into_iter().find(|i| i.secs() == gap)
}

/// Reads and checks a candle CSV for import: symbol and interval come from
/// the arguments, else from the file name (`BTCUSD-1h.csv`), the interval
/// else from the candles' spacing. Every `ts` must be a multiple of the
/// interval (errors name the file and the line).
pub fn read_csv(
    path: &Path,
    symbol: Option<&str>,
    interval: Option<Interval>,
) -> Result<(String, Interval, Vec<Candle>), CandleError> {
    let text = std::fs::read_to_string(path).map_err(|error| CandleError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let candles = parse_candles(&text).map_err(|error| CandleError::Csv {
        path: path.to_path_buf(),
        error,
    })?;
    let (name_sym, name_iv) = trading_core::name_parts(path);
    let symbol = symbol
        .map(str::to_string)
        .or(name_sym)
        .ok_or_else(|| CandleError::NoSymbol {
            path: path.to_path_buf(),
        })?;
    check_symbol(&symbol)?;
    let interval = interval
        .or(name_iv)
        .or_else(|| infer_interval(&candles))
        .ok_or_else(|| CandleError::NoInterval {
            path: path.to_path_buf(),
        })?;
    if let Some(bad) = candles.iter().position(|c| c.ts % interval.secs() != 0) {
        return Err(CandleError::Unaligned {
            path: path.to_path_buf(),
            line: data_line(&text, bad),
            ts: candles[bad].ts,
            interval: interval.name(),
        });
    }
    Ok((symbol, interval, candles))
}

/// The 1-based file line of the `k`-th data row (header and blank lines skipped).
fn data_line(text: &str, k: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .nth(k + 1)
        .map_or(0, |(i, _)| i + 1)
}

/// Upserts `candles` within the caller's transaction, counting what changed.
fn write(
    conn: &Connection,
    symbol: &str,
    interval: Interval,
    candles: &[Candle],
) -> Result<WriteStats, rusqlite::Error> {
    let mut get = conn.prepare_cached(
        "SELECT open, high, low, close, volume FROM candles
         WHERE symbol = ?1 AND interval = ?2 AND ts = ?3",
    )?;
    let mut st = WriteStats::default();
    for c in candles {
        let old: Option<[f64; 5]> = get
            .query_row(params![symbol, interval.name(), c.ts], |r| {
                Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?])
            })
            .optional()?;
        let new = [c.open, c.high, c.low, c.close, c.volume];
        match old {
            Some(o) if o.iter().zip(new).all(|(a, b)| a.to_bits() == b.to_bits()) => {
                st.unchanged += 1;
                continue;
            }
            Some(_) => st.updated += 1,
            None => st.inserted += 1,
        }
        put(conn, symbol, interval, c)?;
    }
    Ok(st)
}

/// Stores one candle (replacing the stored one of its time) within the
/// caller's transaction: the running host's per-bar write.
pub fn put(
    conn: &Connection,
    symbol: &str,
    interval: Interval,
    c: &Candle,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO candles (symbol, interval, ts, open, high, low, close, volume)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        symbol,
        interval.name(),
        c.ts,
        c.open,
        c.high,
        c.low,
        c.close,
        c.volume
    ])?;
    Ok(())
}

/// Stores `candles` in one transaction: all land or none do. Re-storing the
/// same candles changes nothing (they count as unchanged).
pub fn store(
    conn: &mut Connection,
    symbol: &str,
    interval: Interval,
    candles: &[Candle],
) -> Result<WriteStats, CandleError> {
    check_symbol(symbol)?;
    let tx = conn.transaction()?;
    let st = write(&tx, symbol, interval, candles)?;
    tx.commit()?;
    Ok(st)
}

/// Imports a candle CSV (see [`read_csv`]) in one transaction.
pub fn import_file(
    conn: &mut Connection,
    path: &Path,
    symbol: Option<&str>,
    interval: Option<Interval>,
) -> Result<ImportReport, CandleError> {
    let (symbol, interval, candles) = read_csv(path, symbol, interval)?;
    let stats = store(conn, &symbol, interval, &candles)?;
    Ok(ImportReport {
        symbol,
        interval,
        rows: candles.len() as u64,
        stats,
    })
}

/// Stored candles of one series with `from <= ts < to`, oldest first.
pub fn load(
    conn: &Connection,
    symbol: &str,
    interval: Interval,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<Candle>, CandleError> {
    let mut q = conn.prepare_cached(
        "SELECT ts, open, high, low, close, volume FROM candles
         WHERE symbol = ?1 AND interval = ?2 AND ts >= ?3 AND ts < ?4 ORDER BY ts",
    )?;
    let rows = q.query_map(
        params![
            symbol,
            interval.name(),
            from.unwrap_or(i64::MIN),
            to.unwrap_or(i64::MAX)
        ],
        |r| {
            Ok(Candle {
                ts: r.get(0)?,
                open: r.get(1)?,
                high: r.get(2)?,
                low: r.get(3)?,
                close: r.get(4)?,
                volume: r.get(5)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Every stored series with its candle count and first/last `ts`.
pub fn list(conn: &Connection) -> Result<Vec<SeriesInfo>, CandleError> {
    let mut q = conn.prepare(
        "SELECT symbol, interval, COUNT(*), MIN(ts), MAX(ts) FROM candles
         GROUP BY symbol, interval ORDER BY symbol, interval",
    )?;
    let rows = q.query_map([], |r| {
        Ok(SeriesInfo {
            symbol: r.get(0)?,
            interval: r.get(1)?,
            count: r.get::<_, i64>(2)? as u64,
            first: r.get(3)?,
            last: r.get(4)?,
        })
    })?;
    let mut out: Vec<SeriesInfo> = rows.collect::<Result<_, _>>()?;
    // tiers in 5m, 1h, 1d order within a symbol
    out.sort_by_key(|s| {
        (
            s.symbol.clone(),
            Interval::parse(&s.interval).map_or(usize::MAX, Interval::index),
        )
    });
    Ok(out)
}

/// The `host data list` table.
pub fn list_table(list: &[SeriesInfo]) -> String {
    use trading_core::format_ts;
    let mut out = format!(
        "{:<12} {:<8} {:>9}  {:<16}  {:<16}\n",
        "symbol", "interval", "candles", "first", "last"
    );
    for s in list {
        out.push_str(&format!(
            "{:<12} {:<8} {:>9}  {:<16}  {:<16}\n",
            s.symbol,
            s.interval,
            s.count,
            format_ts(s.first),
            format_ts(s.last)
        ));
    }
    if list.is_empty() {
        out.push_str("(no candles stored; see `host data import`)\n");
    }
    out
}

/// Symbols with at least one stored candle.
pub fn symbols(conn: &Connection) -> Result<Vec<String>, CandleError> {
    let mut q = conn.prepare("SELECT DISTINCT symbol FROM candles ORDER BY symbol")?;
    let rows = q.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The tiering rule, shared with the live feed's in-process roll-up and the backtest.
pub use trading_core::roll_up;

/// Aggregates `symbol`'s 5m candles into 1h and then its 1h candles into 1d,
/// in one transaction, and returns what was written per coarse tier.
///
/// The rule: a coarse candle covers the bucket `[B, B + len)` aligned to
/// Unix time (days start at 00:00 UTC). It is built when the bucket holds at
/// least one finer candle and has ended by the close of the newest candle
/// stored in any finer tier (a bucket still in progress waits for the next
/// run). Open is
/// the first finer candle's open, close the last one's close, high/low the
/// extremes, volume the sum. A missing finer candle is an interval without
/// trades (as the exchanges and the shared data leave them out), so it adds
/// nothing; a bucket without any finer candle gets no coarse candle: gaps
/// stay gaps. Existing coarse candles in a rebuilt bucket are replaced, others
/// are left alone, so running it twice changes nothing.
///
/// `since` limits the work to the buckets from the UTC day holding it on
/// (the nightly job passes two days back, so its cost does not grow with the
/// stored history); `None` rebuilds everything.
pub fn aggregate(
    conn: &mut Connection,
    symbol: &str,
    since: Option<i64>,
) -> Result<(WriteStats, WriteStats), CandleError> {
    let from = since.map(|t| t.div_euclid(Interval::D1.secs()) * Interval::D1.secs());
    let tx = conn.transaction()?;
    let mut st = [WriteStats::default(); 2];
    let mut horizon = i64::MIN;
    for (k, (fine, coarse)) in [(Interval::M5, Interval::H1), (Interval::H1, Interval::D1)]
        .into_iter()
        .enumerate()
    {
        let candles = load(&tx, symbol, fine, from, None)?;
        if let Some(last) = candles.last() {
            horizon = horizon.max(last.ts + fine.secs());
        }
        let built = roll_up(&candles, coarse, horizon);
        st[k].add(write(&tx, symbol, coarse, &built)?);
    }
    tx.commit()?;
    Ok((st[0], st[1]))
}

/// Deletes candles older than each tier's retention before `now`. The cut is
/// rounded down to a day boundary so a pruned tier never leaves a partial
/// hour or day behind for [`aggregate`] to rebuild from.
pub fn prune(
    conn: &mut Connection,
    now: i64,
    retention: &Retention,
) -> Result<PruneStats, CandleError> {
    let tx = conn.transaction()?;
    let mut out = PruneStats::default();
    // per symbol, so each delete is a range of the primary key (symbol,
    // interval, ts): the daily job costs what it deletes, not the whole table
    // (a replay of years pruned every day and spent half its time here)
    let symbols = stored_symbols(&tx)?;
    for iv in Interval::ALL {
        let Some(keep) = retention.get(iv) else {
            continue;
        };
        let cut = now.saturating_sub(keep.max(0)).div_euclid(86_400) * 86_400;
        let mut n = 0u64;
        for sym in &symbols {
            n += tx
                .prepare_cached(
                    "DELETE FROM candles WHERE symbol = ?1 AND interval = ?2 AND ts < ?3",
                )?
                .execute(params![sym, iv.name(), cut])? as u64;
        }
        match iv {
            Interval::M5 => out.m5 = n,
            Interval::H1 => out.h1 = n,
            Interval::D1 => out.d1 = n,
        }
    }
    tx.commit()?;
    Ok(out)
}

/// The symbols with stored candles, found by skipping along the primary
/// key (one index seek per symbol, not a scan of every candle).
fn stored_symbols(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE s(sym) AS (
             SELECT MIN(symbol) FROM candles
             UNION ALL
             SELECT (SELECT MIN(symbol) FROM candles WHERE symbol > s.sym) FROM s WHERE s.sym IS NOT NULL
         )
         SELECT sym FROM s WHERE sym IS NOT NULL",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// A stored series as backtest input; refuses a series with no candles.
pub fn series(
    conn: &Connection,
    symbol: &str,
    interval: Interval,
) -> Result<trading_core::Series, CandleError> {
    let candles = load(conn, symbol, interval, None, None)?;
    if candles.is_empty() {
        return Err(CandleError::NotStored {
            symbol: symbol.to_string(),
            interval: interval.name(),
        });
    }
    Ok(trading_core::Series {
        symbol: symbol.to_string(),
        interval,
        candles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ts: i64, o: f64, h: f64, l: f64, cl: f64, v: f64) -> Candle {
        Candle {
            ts,
            open: o,
            high: h,
            low: l,
            close: cl,
            volume: v,
        }
    }

    /// Regression (a replay of years spent half its time pruning): the
    /// prune walks every stored symbol's key range and deletes exactly the
    /// candles past each tier's retention.
    #[test]
    fn prune_deletes_per_symbol_and_tier_past_the_retention() {
        let mut conn = crate::db::open_in_memory().unwrap();
        let day = 86_400;
        for sym in ["AAA", "BBB", "CCC"] {
            let hours: Vec<Candle> = (0..48)
                .map(|i| c(i * 3_600, 1.0, 1.0, 1.0, 1.0, 1.0))
                .collect();
            store(&mut conn, sym, Interval::H1, &hours).unwrap();
            let days: Vec<Candle> = (0..2)
                .map(|i| c(i * day, 1.0, 1.0, 1.0, 1.0, 1.0))
                .collect();
            store(&mut conn, sym, Interval::D1, &days).unwrap();
        }
        assert_eq!(stored_symbols(&conn).unwrap(), ["AAA", "BBB", "CCC"]);
        let keep_a_day = Retention {
            m5: Some(day),
            h1: Some(day),
            d1: None,
        };
        // at 2 days + 1 h: the cut is day 1 (rounded down), so each symbol's first 24 hours go
        let p = prune(&mut conn, 2 * day + 3_600, &keep_a_day).unwrap();
        assert_eq!((p.m5, p.h1, p.d1), (0, 3 * 24, 0));
        for sym in ["AAA", "BBB", "CCC"] {
            let h = load(&conn, sym, Interval::H1, None, None).unwrap();
            assert_eq!((h.len(), h[0].ts), (24, day), "{sym}");
            assert_eq!(load(&conn, sym, Interval::D1, None, None).unwrap().len(), 2);
        }
        let empty = crate::db::open_in_memory().unwrap();
        assert!(stored_symbols(&empty).unwrap().is_empty());
    }

    #[test]
    fn roll_up_keeps_gaps_and_waits_for_the_bucket_to_end() {
        let fine = vec![
            c(0, 10.0, 12.0, 9.0, 11.0, 1.0),
            c(300, 11.0, 15.0, 10.0, 14.0, 2.0),
            // hour 1 empty: no candle
            c(7_200, 20.0, 21.0, 19.0, 20.5, 3.0),
            c(10_500, 30.0, 31.0, 29.0, 30.0, 1.0), // last bar of hour 2: it has ended
            c(10_800, 5.0, 5.0, 5.0, 5.0, 1.0),     // hour 3 in progress
        ];
        let h = roll_up(&fine, Interval::H1, 11_100);
        assert_eq!(
            h,
            vec![
                c(0, 10.0, 15.0, 9.0, 14.0, 3.0),
                c(7_200, 20.0, 31.0, 19.0, 30.0, 4.0)
            ]
        );
    }

    #[test]
    fn aggregate_since_rebuilds_only_the_recent_days() {
        let mut conn = crate::db::open_in_memory().unwrap();
        // five days of hourly candles at a constant price
        let hours: Vec<Candle> = (0..5 * 24)
            .map(|h| c(h * 3_600, 10.0, 10.0, 10.0, 10.0, 1.0))
            .collect();
        store(&mut conn, "BTCUSD", Interval::H1, &hours).unwrap();
        let (_, d) = aggregate(&mut conn, "BTCUSD", None).unwrap();
        assert_eq!(d.inserted, 5);
        // change one hour on day 0 and one on day 3, then aggregate from day 3
        let changed = [
            c(3_600, 10.0, 50.0, 10.0, 10.0, 1.0),
            c(3 * 86_400 + 3_600, 10.0, 70.0, 10.0, 10.0, 1.0),
        ];
        store(&mut conn, "BTCUSD", Interval::H1, &changed).unwrap();
        let (_, d) = aggregate(&mut conn, "BTCUSD", Some(3 * 86_400 + 7_000)).unwrap();
        assert_eq!((d.inserted, d.updated, d.unchanged), (0, 1, 1));
        let days = load(&conn, "BTCUSD", Interval::D1, None, None).unwrap();
        let highs: Vec<f64> = days.iter().map(|d| d.high).collect();
        // day 0 was not reloaded; day 3 was
        assert_eq!(highs, vec![10.0, 10.0, 10.0, 70.0, 10.0]);
        // a full run catches day 0 up
        aggregate(&mut conn, "BTCUSD", None).unwrap();
        let days = load(&conn, "BTCUSD", Interval::D1, None, None).unwrap();
        assert_eq!(days[0].high, 50.0);
    }

    #[test]
    fn store_is_idempotent_and_counts_changes() {
        let mut conn = crate::db::open_in_memory().unwrap();
        let a = [
            c(0, 1.0, 2.0, 0.5, 1.5, 3.0),
            c(3600, 1.5, 2.0, 1.0, 1.2, 1.0),
        ];
        let s = store(&mut conn, "BTCUSD", Interval::H1, &a).unwrap();
        assert_eq!((s.inserted, s.updated, s.unchanged), (2, 0, 0));
        let s = store(&mut conn, "BTCUSD", Interval::H1, &a).unwrap();
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 0, 2));
        let b = [c(3600, 1.5, 2.0, 1.0, 1.3, 1.0)];
        let s = store(&mut conn, "BTCUSD", Interval::H1, &b).unwrap();
        assert_eq!((s.inserted, s.updated, s.unchanged), (0, 1, 0));
        assert_eq!(
            load(&conn, "BTCUSD", Interval::H1, None, None).unwrap()[1].close,
            1.3
        );
        assert!(matches!(
            store(&mut conn, "bad symbol", Interval::H1, &a),
            Err(CandleError::BadSymbol(_))
        ));
    }
}
