//! The `counterfactuals` table: every entry the risk manager refused, kept
//! open while it is followed bar by bar (`trading_core::shadow`) and closed
//! with its would-be exit and P&L, and the report of what the limits cost or
//! saved. Invariants: a row is written inside the caller's (bar's)
//! transaction; money is stored as exact decimal text and a stored value that
//! does not parse is an error, never zero.

use crate::db::decimal;
use rusqlite::{params, Connection};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trading_core::shadow::{horizon_secs, Shadow, ShadowExit, ShadowExitReason};
use trading_core::{Bar, Counterfactual, FillConfig};

/// One open shadow with its row id.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenShadow {
    pub id: i64,
    pub shadow: Shadow,
    pub refusal_kind: String,
}

fn opt_dec(s: Option<String>) -> rusqlite::Result<Option<Decimal>> {
    s.as_deref().map(decimal).transpose()
}

/// Starts following a refused entry; returns its row id.
pub fn open(
    conn: &Connection,
    mode: &str,
    cf: &Counterfactual,
    refusal_kind: &str,
    strategy_version: Option<i64>,
) -> rusqlite::Result<i64> {
    let s = |d: Option<Decimal>| d.map(|d| d.to_string());
    conn.prepare_cached("INSERT INTO counterfactuals (mode, symbol, decided_at, decision_price, qty, stop_loss, take_profit, tag, intent, confidence, refusal_kind, refusal, strategy_version, horizon_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)").and_then(|mut st| st.execute(params![
            mode,
            cf.symbol,
            cf.time,
            cf.price.to_string(),
            cf.qty.to_string(),
            s(cf.stop_loss),
            s(cf.take_profit),
            cf.tag,
            format!("{:?}", cf.intent).to_lowercase(),
            s(cf.confidence),
            refusal_kind,
            cf.refusal.to_string(),
            strategy_version,
            cf.time + horizon_secs(cf.intent),
        ]))?;
    Ok(conn.last_insert_rowid())
}

/// The shadows of `symbol` still open.
pub fn open_shadows(
    conn: &Connection,
    mode: &str,
    symbol: &str,
) -> rusqlite::Result<Vec<OpenShadow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, decided_at, qty, stop_loss, take_profit, horizon_at, entry_at, entry_price, close_requested_at, refusal_kind
         FROM counterfactuals WHERE mode = ?1 AND symbol = ?2 AND exit_at IS NULL ORDER BY id",
    )?;
    let rows = stmt.query_map(params![mode, symbol], |r| {
        let entry_at: Option<i64> = r.get(6)?;
        let entry_price = opt_dec(r.get(7)?)?;
        Ok(OpenShadow {
            id: r.get(0)?,
            shadow: Shadow {
                symbol: symbol.to_string(),
                decided_at: r.get(1)?,
                qty: decimal(&r.get::<_, String>(2)?)?,
                stop_loss: opt_dec(r.get(3)?)?,
                take_profit: opt_dec(r.get(4)?)?,
                horizon_at: r.get(5)?,
                entry: entry_at.zip(entry_price),
                close_requested_at: r.get(8)?,
            },
            refusal_kind: r.get(9)?,
        })
    })?;
    rows.collect()
}

fn save(conn: &Connection, o: &OpenShadow, exit: Option<&ShadowExit>) -> rusqlite::Result<()> {
    let (entry_at, entry_price) = match o.shadow.entry {
        Some((t, p)) => (Some(t), Some(p.to_string())),
        None => (None, None),
    };
    conn.prepare_cached(
        "UPDATE counterfactuals SET entry_at = ?2, entry_price = ?3, close_requested_at = ?4,
         exit_at = ?5, exit_price = ?6, exit_reason = ?7, pnl = ?8, pnl_pct = ?9 WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            o.id,
            entry_at,
            entry_price,
            o.shadow.close_requested_at,
            exit.map(|x| x.at),
            exit.map(|x| x.price.to_string()),
            exit.map(|x| x.reason.name()),
            exit.map(|x| x.pnl.to_string()),
            exit.and_then(|x| x.pnl_pct).map(|p| p.to_string()),
        ])
    })?;
    Ok(())
}

/// Feeds one bar of `symbol` to its open shadows; returns the ones it closed.
pub fn on_bar(
    conn: &Connection,
    mode: &str,
    symbol: &str,
    bar: &Bar,
    cfg: &FillConfig,
) -> rusqlite::Result<Vec<(OpenShadow, ShadowExit)>> {
    let mut closed = Vec::new();
    for mut o in open_shadows(conn, mode, symbol)? {
        let before = o.shadow.clone();
        let exit = o.shadow.on_bar(cfg, bar);
        if exit.is_some() || o.shadow != before {
            save(conn, &o, exit.as_ref())?;
        }
        if let Some(x) = exit {
            closed.push((o, x));
        }
    }
    Ok(closed)
}

/// The strategy asked to close `symbol` at `at`: its open shadows sell on the next bar.
pub fn close_signal(
    conn: &Connection,
    mode: &str,
    symbol: &str,
    at: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached("UPDATE counterfactuals SET close_requested_at = ?3
         WHERE mode = ?1 AND symbol = ?2 AND exit_at IS NULL AND close_requested_at IS NULL AND decided_at <= ?3").and_then(|mut st| st.execute(params![mode, symbol, at]))
}

/// The would-be results of one group of refused entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowTotals {
    pub closed: u64,
    pub wins: u64,
    /// Σ would-be P&L of the closed ones: > 0 the limits cost this much, < 0 they saved it.
    pub pnl: Decimal,
}

/// What the limits cost or saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    pub open: u64,
    pub total: ShadowTotals,
    /// Per refusal kind (`max_positions`, `halted`, ...).
    pub by_refusal: BTreeMap<String, ShadowTotals>,
    /// Per exit reason of the closed ones.
    pub by_exit: BTreeMap<String, ShadowTotals>,
}

impl ShadowReport {
    /// One line: what the refused entries would have made.
    pub fn verdict(&self) -> String {
        let p = self.total.pnl.round_dp(2);
        match p.cmp(&Decimal::ZERO) {
            std::cmp::Ordering::Greater => {
                format!("the limits cost {p}: the refused entries would have made it")
            }
            std::cmp::Ordering::Less => format!(
                "the limits saved {}: the refused entries would have lost it",
                -p
            ),
            std::cmp::Ordering::Equal => "the refused entries would have broken even".to_string(),
        }
    }
}

/// One followed entry as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRow {
    pub id: i64,
    pub symbol: String,
    pub decided_at: i64,
    pub decision_price: Decimal,
    pub qty: Decimal,
    pub refusal_kind: String,
    pub refusal: String,
    pub tag: String,
    pub strategy_version: Option<i64>,
    pub entry_at: Option<i64>,
    pub entry_price: Option<Decimal>,
    pub exit_at: Option<i64>,
    pub exit_price: Option<Decimal>,
    pub exit_reason: Option<ShadowExitReason>,
    pub pnl: Option<Decimal>,
    pub pnl_pct: Option<Decimal>,
}

/// The newest `limit` followed entries of `mode`, newest first.
pub fn rows(conn: &Connection, mode: &str, limit: i64) -> rusqlite::Result<Vec<ShadowRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, symbol, decided_at, decision_price, qty, refusal_kind, refusal, tag, strategy_version,
                entry_at, entry_price, exit_at, exit_price, exit_reason, pnl, pnl_pct
         FROM counterfactuals WHERE mode = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![mode, limit], |r| {
        let reason: Option<String> = r.get(13)?;
        let exit_reason = reason
            .map(|s| {
                ShadowExitReason::parse(&s).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        13,
                        rusqlite::types::Type::Text,
                        format!("stored exit reason {s:?} is not one").into(),
                    )
                })
            })
            .transpose()?;
        Ok(ShadowRow {
            id: r.get(0)?,
            symbol: r.get(1)?,
            decided_at: r.get(2)?,
            decision_price: decimal(&r.get::<_, String>(3)?)?,
            qty: decimal(&r.get::<_, String>(4)?)?,
            refusal_kind: r.get(5)?,
            refusal: r.get(6)?,
            tag: r.get(7)?,
            strategy_version: r.get(8)?,
            entry_at: r.get(9)?,
            entry_price: opt_dec(r.get(10)?)?,
            exit_at: r.get(11)?,
            exit_price: opt_dec(r.get(12)?)?,
            exit_reason,
            pnl: opt_dec(r.get(14)?)?,
            pnl_pct: opt_dec(r.get(15)?)?,
        })
    })?;
    rows.collect()
}

/// What the limits cost or saved in `mode`, over every followed entry.
pub fn report(conn: &Connection, mode: &str) -> rusqlite::Result<ShadowReport> {
    let mut stmt = conn.prepare_cached(
        "SELECT refusal_kind, exit_reason, pnl FROM counterfactuals WHERE mode = ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![mode])?;
    let mut out = ShadowReport::default();
    while let Some(r) = rows.next()? {
        let kind: String = r.get(0)?;
        let reason: Option<String> = r.get(1)?;
        let pnl = opt_dec(r.get(2)?)?;
        let (Some(reason), Some(pnl)) = (reason, pnl) else {
            out.open += 1;
            continue;
        };
        for t in [
            &mut out.total,
            out.by_refusal.entry(kind.clone()).or_default(),
            out.by_exit.entry(reason).or_default(),
        ] {
            t.closed += 1;
            t.wins += u64::from(pnl > Decimal::ZERO);
            t.pnl += pnl;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use trading_core::risk::Refusal;
    use trading_core::Intent;

    fn cf(symbol: &str, time: i64, refusal: Refusal) -> Counterfactual {
        Counterfactual {
            symbol: symbol.into(),
            time,
            price: dec!(100),
            qty: dec!(2),
            refusal,
            stop_loss: Some(dec!(95)),
            take_profit: Some(dec!(110)),
            tag: "cross".into(),
            intent: Intent::Swing,
            confidence: Some(dec!(0.7)),
        }
    }

    fn bar(ts: i64, open: Decimal, high: Decimal, low: Decimal) -> Bar {
        Bar {
            ts,
            open,
            high,
            low,
            close: open,
        }
    }

    /// The fixture, by hand (10 bps fee, 50 bps slippage; qty 2):
    /// - #1 BTC refused `max_positions` at 3600: enters at 100 × 1.005 =
    ///   100.5 (cost 201.201), take-profit 110 on the bar at 7200: proceeds
    ///   219.78, pnl +18.579;
    /// - #2 ETH refused `max_positions` at 3600: enters 100.5, stop 95 at
    ///   7200: 95 × 0.995 = 94.525, proceeds 188.86095, pnl −12.34005;
    /// - #3 BTC refused `insufficient_cash` at 7200: enters on the bar at
    ///   7200 at 104 × 1.005 = 104.52, no target, its stop untouched: still open.
    ///
    /// Total closed 2, 1 win, pnl 18.579 − 12.34005 = 6.23895: the limits
    /// cost 6.24. By refusal: max_positions 2 closed, 6.23895; by exit:
    /// take_profit +18.579, stop_loss −12.34005.
    #[test]
    fn the_counterfactual_report_matches_the_hand_computed_fixture() {
        let c = crate::db::open_in_memory().unwrap();
        let cfg = FillConfig {
            fee_bps: dec!(10),
            slippage_bps: dec!(50),
        };
        let mp = Refusal::MaxPositions { open: 1, max: 1 };
        let id1 = open(
            &c,
            "paper",
            &cf("BTC", 3600, mp.clone()),
            "max_positions",
            Some(1),
        )
        .unwrap();
        open(&c, "paper", &cf("ETH", 3600, mp), "max_positions", Some(1)).unwrap();
        assert!(on_bar(
            &c,
            "paper",
            "BTC",
            &bar(3600, dec!(100), dec!(101), dec!(99)),
            &cfg
        )
        .unwrap()
        .is_empty());
        assert!(on_bar(
            &c,
            "paper",
            "ETH",
            &bar(3600, dec!(100), dec!(101), dec!(99)),
            &cfg
        )
        .unwrap()
        .is_empty());
        let no_target = Counterfactual {
            take_profit: None,
            ..cf(
                "BTC",
                7200,
                Refusal::InsufficientCash { available: dec!(1) },
            )
        };
        open(&c, "paper", &no_target, "insufficient_cash", Some(1)).unwrap();
        let closed = on_bar(
            &c,
            "paper",
            "BTC",
            &bar(7200, dec!(104), dec!(111), dec!(103)),
            &cfg,
        )
        .unwrap();
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].0.id, id1);
        assert_eq!(
            (closed[0].1.reason, closed[0].1.pnl),
            (ShadowExitReason::TakeProfit, dec!(18.579))
        );
        let closed = on_bar(
            &c,
            "paper",
            "ETH",
            &bar(7200, dec!(100), dec!(101), dec!(90)),
            &cfg,
        )
        .unwrap();
        assert_eq!(closed[0].1.pnl, dec!(-12.34005));
        let r = report(&c, "paper").unwrap();
        assert_eq!(r.open, 1);
        assert_eq!(
            (r.total.closed, r.total.wins, r.total.pnl),
            (2, 1, dec!(6.23895))
        );
        assert_eq!(r.by_refusal["max_positions"].pnl, dec!(6.23895));
        assert!(!r.by_refusal.contains_key("insufficient_cash"));
        assert_eq!(r.by_exit["take_profit"].pnl, dec!(18.579));
        assert_eq!(r.by_exit["stop_loss"].pnl, dec!(-12.34005));
        assert!(r.verdict().contains("cost 6.24"), "{}", r.verdict());
        let listed = rows(&c, "paper", 10).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].entry_price, Some(dec!(104.52)));
        assert_eq!(listed[0].exit_at, None);
        assert_eq!(listed[2].exit_reason, Some(ShadowExitReason::TakeProfit));
        // another mode's book is apart
        assert_eq!(report(&c, "live").unwrap(), ShadowReport::default());
    }

    #[test]
    fn a_close_signal_sells_the_open_shadows_on_the_next_bar() {
        let c = crate::db::open_in_memory().unwrap();
        let cfg = FillConfig {
            fee_bps: dec!(10),
            slippage_bps: dec!(50),
        };
        open(
            &c,
            "paper",
            &cf("BTC", 3600, Refusal::Killed),
            "killed",
            None,
        )
        .unwrap();
        on_bar(
            &c,
            "paper",
            "BTC",
            &bar(3600, dec!(100), dec!(101), dec!(99)),
            &cfg,
        )
        .unwrap();
        assert_eq!(close_signal(&c, "paper", "BTC", 7200).unwrap(), 1);
        let closed = on_bar(
            &c,
            "paper",
            "BTC",
            &bar(7200, dec!(102), dec!(103), dec!(101)),
            &cfg,
        )
        .unwrap();
        assert_eq!(
            (closed[0].1.reason, closed[0].1.pnl),
            (ShadowExitReason::Signal, dec!(1.57602))
        );
    }

    /// Money that does not parse is an error, never a zero.
    #[test]
    fn an_unparsable_stored_pnl_is_an_error() {
        let c = crate::db::open_in_memory().unwrap();
        open(
            &c,
            "paper",
            &cf("BTC", 3600, Refusal::Killed),
            "killed",
            None,
        )
        .unwrap();
        c.execute(
            "UPDATE counterfactuals SET exit_reason = 'horizon', pnl = 'x1'",
            [],
        )
        .unwrap();
        assert!(report(&c, "paper").is_err());
    }
}
