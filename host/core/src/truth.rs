//! Ground-truth performance metrics from closed trades, an equity curve and
//! run counters. Conventions: a win is a trade with pnl > 0, a loss pnl < 0
//! (breakeven counts in `trade_count` only); rates are fractions in [0, 1],
//! `_pct` fields are percent; money is exact `Decimal` (serialised as a
//! string), ratios are `f64`. Daily returns use the equity curve's last value
//! per UTC day, days without a point carrying the previous value (a 0 return);
//! the first return is measured from the curve's first value, so
//! `r_1 = close(day_1) / v_first − 1` and `r_k = close(day_k) / close(day_k−1) − 1`.
//! Sharpe = mean(r) / sample std(r) (n − 1) × √365, risk-free 0; Sortino =
//! mean(r) / √(mean(min(r, 0)²)) × √365; both need at least 2 returns. CAGR
//! is a fraction over 365-day years between the curve's first and last point;
//! Calmar = CAGR × 100 / max drawdown %. Every metric that is undefined for
//! the input (no trades, no losses, empty curve, zero deviation, ...) is
//! `None`, serialised as null, never a sentinel.

use crate::money::to_f64;
use crate::portfolio::{utc_day, CloseReason, ClosedTrade};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One point of the equity curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquityPoint {
    pub ts: i64,
    pub value: Decimal,
}

/// Run counters kept by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub total_signals: u64,
    /// Signals that became orders (or modifications).
    pub acted_signals: u64,
    pub total_scans: u64,
    pub first_scan_at: Option<i64>,
    pub last_scan_at: Option<i64>,
    pub current_strategy_version: Option<String>,
    pub strategy_version_count: u32,
}

/// Everything the report is computed from.
#[derive(Debug, Clone, Copy)]
pub struct TruthInput<'a> {
    /// Closed trades, oldest first.
    pub trades: &'a [ClosedTrade],
    pub equity_curve: &'a [EquityPoint],
    pub counters: &'a Counters,
    /// Current value; the curve's last value when `None`.
    pub portfolio_value: Option<Decimal>,
    pub portfolio_cash: Option<Decimal>,
    /// The market's (benchmark's) first and last price over the run.
    pub market_prices: Option<(Decimal, Decimal)>,
}

/// The metrics; see the module doc for conventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthReport {
    pub trade_count: u64,
    pub win_count: u64,
    pub loss_count: u64,
    pub win_rate: Option<f64>,
    /// Σ pnl of closed trades (net of all their fees).
    pub net_pnl: Decimal,
    /// Σ fees of closed trades.
    pub total_fees: Decimal,
    pub avg_win: Option<Decimal>,
    /// Mean pnl of losing trades (negative).
    pub avg_loss: Option<Decimal>,
    /// win_rate × avg_win + loss_rate × avg_loss (= net_pnl / trade_count).
    pub expectancy: Option<Decimal>,
    /// Losing trades at the end of the list.
    pub consecutive_losses: u32,
    pub portfolio_value: Option<Decimal>,
    pub portfolio_cash: Option<Decimal>,
    pub max_drawdown_pct: Option<f64>,
    pub total_signals: u64,
    pub acted_signals: u64,
    pub signal_act_rate: Option<f64>,
    pub total_scans: u64,
    pub first_scan_at: Option<i64>,
    pub last_scan_at: Option<i64>,
    pub current_strategy_version: Option<String>,
    pub strategy_version_count: u32,
    /// Gross wins / |gross losses|.
    pub profit_factor: Option<f64>,
    /// Closed trades per reason (every reason present, possibly 0).
    pub close_reason_breakdown: BTreeMap<CloseReason, u64>,
    pub avg_trade_duration_hours: Option<f64>,
    pub best_trade_pnl_pct: Option<Decimal>,
    pub worst_trade_pnl_pct: Option<Decimal>,
    pub sharpe_ratio: Option<f64>,
    pub sortino_ratio: Option<f64>,
    pub cagr: Option<f64>,
    pub calmar: Option<f64>,
    pub market_change_pct: Option<f64>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn ratio(a: Decimal, b: Decimal) -> Option<f64> {
    if b.is_zero() {
        return None;
    }
    a.checked_div(b).map(to_f64).and_then(finite)
}

/// Daily returns as (non-filled returns, number of filled zero returns).
fn daily_returns(curve: &[EquityPoint]) -> Option<(Vec<f64>, u64)> {
    let first = curve.first()?;
    let mut closes: BTreeMap<i64, Decimal> = BTreeMap::new();
    for p in curve {
        closes.insert(utc_day(p.ts), p.value);
    }
    let mut prev = (utc_day(first.ts) - 1, first.value);
    let mut returns = Vec::with_capacity(closes.len());
    let mut zeros = 0u64;
    for (day, value) in closes {
        if prev.1 <= Decimal::ZERO {
            return None;
        }
        zeros = zeros.saturating_add(u64::try_from(day - prev.0 - 1).unwrap_or(0));
        returns.push(to_f64(value) / to_f64(prev.1) - 1.0);
        prev = (day, value);
    }
    Some((returns, zeros))
}

/// (Sharpe, Sortino) from daily returns, annualised with √365.
fn sharpe_sortino(curve: &[EquityPoint]) -> (Option<f64>, Option<f64>) {
    let Some((returns, zeros)) = daily_returns(curve) else {
        return (None, None);
    };
    let n = returns.len() as f64 + zeros as f64;
    if n < 2.0 {
        return (None, None);
    }
    let mean = returns.iter().sum::<f64>() / n;
    let ss = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() + zeros as f64 * mean * mean;
    let std = (ss / (n - 1.0)).sqrt();
    let down = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
    let annual = 365f64.sqrt();
    let sharpe = (std > 0.0).then(|| mean / std * annual).and_then(finite);
    let sortino = (down > 0.0).then(|| mean / down * annual).and_then(finite);
    (sharpe, sortino)
}

/// Largest peak-to-trough fall of the curve, in percent.
fn max_drawdown_pct(curve: &[EquityPoint]) -> Option<f64> {
    let mut peak: Option<Decimal> = None;
    let mut worst = Decimal::ZERO;
    for p in curve {
        let pk = peak.map_or(p.value, |pk| pk.max(p.value));
        peak = Some(pk);
        if pk > Decimal::ZERO {
            let dd = crate::money::pct(pk.saturating_sub(p.value), pk).unwrap_or(Decimal::ZERO);
            worst = worst.max(dd);
        }
    }
    peak.map(|_| to_f64(worst))
}

fn cagr(curve: &[EquityPoint]) -> Option<f64> {
    let (first, last) = (curve.first()?, curve.last()?);
    let years = (last.ts - first.ts) as f64 / (365.0 * 86_400.0);
    if years <= 0.0 || first.value <= Decimal::ZERO || last.value < Decimal::ZERO {
        return None;
    }
    finite((to_f64(last.value) / to_f64(first.value)).powf(1.0 / years) - 1.0)
}

impl TruthReport {
    /// Computes every metric from `input`.
    pub fn compute(input: &TruthInput) -> TruthReport {
        let trades = input.trades;
        let mut curve = input.equity_curve.to_vec();
        curve.sort_by_key(|p| p.ts);

        let n = trades.len() as u64;
        let wins: Vec<Decimal> = trades.iter().map(|t| t.pnl).filter(|p| *p > Decimal::ZERO).collect();
        let losses: Vec<Decimal> = trades.iter().map(|t| t.pnl).filter(|p| *p < Decimal::ZERO).collect();
        let sum = |v: &[Decimal]| v.iter().fold(Decimal::ZERO, |a, x| a.saturating_add(*x));
        let (gross_win, gross_loss) = (sum(&wins), sum(&losses));
        let net_pnl = trades.iter().fold(Decimal::ZERO, |a, t| a.saturating_add(t.pnl));
        let mean = |total: Decimal, count: usize| {
            (count > 0).then(|| total.checked_div(Decimal::from(count as u64))).flatten()
        };
        let consecutive_losses = trades.iter().rev().take_while(|t| t.pnl < Decimal::ZERO).count();
        let mut breakdown: BTreeMap<CloseReason, u64> = CloseReason::ALL.iter().map(|r| (*r, 0)).collect();
        for t in trades {
            *breakdown.entry(t.close_reason).or_default() += 1;
        }
        let hours: f64 = trades.iter().map(|t| (t.closed_at - t.opened_at) as f64 / 3600.0).sum();
        let max_dd = max_drawdown_pct(&curve);
        let cagr = cagr(&curve);
        let (sharpe_ratio, sortino_ratio) = sharpe_sortino(&curve);
        let c = input.counters;
        TruthReport {
            trade_count: n,
            win_count: wins.len() as u64,
            loss_count: losses.len() as u64,
            win_rate: (n > 0).then(|| wins.len() as f64 / n as f64),
            net_pnl,
            total_fees: trades.iter().fold(Decimal::ZERO, |a, t| a.saturating_add(t.fees)),
            avg_win: mean(gross_win, wins.len()),
            avg_loss: mean(gross_loss, losses.len()),
            expectancy: mean(net_pnl, trades.len()),
            consecutive_losses: u32::try_from(consecutive_losses).unwrap_or(u32::MAX),
            portfolio_value: input.portfolio_value.or(curve.last().map(|p| p.value)),
            portfolio_cash: input.portfolio_cash,
            max_drawdown_pct: max_dd,
            total_signals: c.total_signals,
            acted_signals: c.acted_signals,
            signal_act_rate: (c.total_signals > 0).then(|| c.acted_signals as f64 / c.total_signals as f64),
            total_scans: c.total_scans,
            first_scan_at: c.first_scan_at,
            last_scan_at: c.last_scan_at,
            current_strategy_version: c.current_strategy_version.clone(),
            strategy_version_count: c.strategy_version_count,
            profit_factor: ratio(gross_win, -gross_loss),
            close_reason_breakdown: breakdown,
            avg_trade_duration_hours: (n > 0).then(|| hours / n as f64),
            best_trade_pnl_pct: trades.iter().map(|t| t.pnl_pct).max(),
            worst_trade_pnl_pct: trades.iter().map(|t| t.pnl_pct).min(),
            sharpe_ratio,
            sortino_ratio,
            cagr,
            calmar: match (cagr, max_dd) {
                (Some(g), Some(dd)) if dd > 0.0 => finite(g * 100.0 / dd),
                _ => None,
            },
            market_change_pct: input
                .market_prices
                .and_then(|(first, last)| ratio(last.saturating_sub(first), first).map(|r| r * 100.0).and_then(finite)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Intent, Side};
    use rust_decimal_macros::dec;

    const H: i64 = 3600;
    const D: i64 = 86_400;
    const DAY0: i64 = 19_000 * D; // a UTC midnight

    fn trade(pnl: Decimal, pnl_pct: Decimal, fees: Decimal, open_h: i64, close_h: i64, r: CloseReason) -> ClosedTrade {
        ClosedTrade {
            symbol: "BTC".into(),
            side: Side::Long,
            qty: dec!(1),
            entry_price: dec!(100),
            exit_price: dec!(100),
            pnl,
            pnl_pct,
            fees,
            intent: Intent::Swing,
            opened_at: DAY0 + open_h * H,
            closed_at: DAY0 + close_h * H,
            close_reason: r,
            tag: String::new(),
        }
    }

    fn trades() -> Vec<ClosedTrade> {
        vec![
            trade(dec!(30), dec!(3), dec!(1), 0, 2, CloseReason::Signal),
            trade(dec!(-10), dec!(-1), dec!(1), 2, 3, CloseReason::StopLoss),
            trade(dec!(-20), dec!(-2), dec!(2), 5, 9, CloseReason::StopLoss),
            trade(dec!(50), dec!(5), dec!(1), 10, 16, CloseReason::TakeProfit),
        ]
    }

    fn pt(ts: i64, value: Decimal) -> EquityPoint {
        EquityPoint { ts, value }
    }

    /// day 0: 1000 at 00:00, 1100 at 12:00; day 1: 990; day 2: no point; day 3: 1089 at 23:00
    fn curve() -> Vec<EquityPoint> {
        vec![
            pt(DAY0, dec!(1000)),
            pt(DAY0 + 12 * H, dec!(1100)),
            pt(D + DAY0 + 6 * H, dec!(990)),
            pt(3 * D + DAY0 + 23 * H, dec!(1089)),
        ]
    }

    fn report(trades: &[ClosedTrade], curve: &[EquityPoint], counters: &Counters) -> TruthReport {
        TruthReport::compute(&TruthInput {
            trades,
            equity_curve: curve,
            counters,
            portfolio_value: None,
            portfolio_cash: Some(dec!(500)),
            market_prices: Some((dec!(200), dec!(250))),
        })
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("metric defined");
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} != {b}");
    }

    #[test]
    fn trade_metrics() {
        let r = report(&trades(), &curve(), &Counters::default());
        // 4 trades: wins +30, +50; losses −10, −20
        assert_eq!((r.trade_count, r.win_count, r.loss_count), (4, 2, 2));
        // 2 / 4
        assert_eq!(r.win_rate, Some(0.5));
        // 30 − 10 − 20 + 50
        assert_eq!(r.net_pnl, dec!(50));
        // 1 + 1 + 2 + 1
        assert_eq!(r.total_fees, dec!(5));
        // (30 + 50) / 2 and (−10 − 20) / 2
        assert_eq!((r.avg_win, r.avg_loss), (Some(dec!(40)), Some(dec!(-15))));
        // 0.5 × 40 + 0.5 × (−15) = 12.5 = 50 / 4
        assert_eq!(r.expectancy, Some(dec!(12.5)));
        // last trade won
        assert_eq!(r.consecutive_losses, 0);
        // 80 / 30
        close(r.profit_factor, 80.0 / 30.0);
        // durations 2 h, 1 h, 4 h, 6 h → 13 / 4
        assert_eq!(r.avg_trade_duration_hours, Some(3.25));
        assert_eq!((r.best_trade_pnl_pct, r.worst_trade_pnl_pct), (Some(dec!(5)), Some(dec!(-2))));
        let b = &r.close_reason_breakdown;
        assert_eq!((b[&CloseReason::Signal], b[&CloseReason::StopLoss], b[&CloseReason::TakeProfit]), (1, 2, 1));
        assert_eq!((b[&CloseReason::Kill], b[&CloseReason::Reconcile], b[&CloseReason::EndOfData]), (0, 0, 0));
    }

    #[test]
    fn loss_streak_counts_trailing_losses() {
        let mut t = trades();
        t.push(trade(dec!(0), dec!(0), dec!(0), 20, 21, CloseReason::Signal));
        t.push(trade(dec!(-1), dec!(-0.1), dec!(0), 21, 22, CloseReason::Signal));
        t.push(trade(dec!(-2), dec!(-0.2), dec!(0), 22, 23, CloseReason::Signal));
        let r = report(&t, &[], &Counters::default());
        // the breakeven trade ends the earlier run; −1, −2 follow it
        assert_eq!(r.consecutive_losses, 2);
        // breakeven counts as a trade, not a win or loss: 2 wins of 7
        assert_eq!((r.trade_count, r.win_count, r.loss_count), (7, 2, 4));
        close(r.win_rate, 2.0 / 7.0);
    }

    #[test]
    fn equity_metrics() {
        let r = report(&[], &curve(), &Counters::default());
        // peak 1100 → trough 990: 110 / 1100
        close(r.max_drawdown_pct, 10.0);
        // daily closes from base 1000: day0 1100, day1 990, day2 990 (carried), day3 1089
        // returns 0.1, −0.1, 0, 0.1; mean 0.025
        // deviations 0.075, −0.125, −0.025, 0.075; squares sum 0.0275; sample var 0.0275 / 3
        let std = (0.0275f64 / 3.0).sqrt();
        close(r.sharpe_ratio, 0.025 / std * 365f64.sqrt());
        // downside: only −0.1: sqrt(0.01 / 4) = 0.05
        close(r.sortino_ratio, 0.025 / 0.05 * 365f64.sqrt());
        // portfolio value defaults to the curve's last point; cash passes through
        assert_eq!((r.portfolio_value, r.portfolio_cash), (Some(dec!(1089)), Some(dec!(500))));
        // (250 − 200) / 200
        close(r.market_change_pct, 25.0);
    }

    #[test]
    fn cagr_and_calmar() {
        // two 365-day years from 100 to 121: √1.21 − 1 = 0.1
        let c = vec![
            pt(DAY0, dec!(100)),
            pt(DAY0 + 100 * D, dec!(110)),
            pt(DAY0 + 200 * D, dec!(99)),
            pt(DAY0 + 730 * D, dec!(121)),
        ];
        let r = report(&[], &c, &Counters::default());
        close(r.cagr, 0.1);
        // drawdown 110 → 99 = 10%; calmar = 0.1 × 100 / 10
        close(r.max_drawdown_pct, 10.0);
        close(r.calmar, 1.0);
        // one 365-day year from 100 to 121: 0.21; no drawdown → calmar undefined
        let r = report(&[], &[pt(DAY0, dec!(100)), pt(DAY0 + 365 * D, dec!(121))], &Counters::default());
        close(r.cagr, 0.21);
        assert_eq!(r.max_drawdown_pct, Some(0.0));
        assert_eq!(r.calmar, None);
    }

    #[test]
    fn counters_pass_through() {
        let c = Counters {
            total_signals: 10,
            acted_signals: 4,
            total_scans: 7,
            first_scan_at: Some(DAY0),
            last_scan_at: Some(DAY0 + H),
            current_strategy_version: Some("v3".into()),
            strategy_version_count: 3,
        };
        let r = report(&[], &[], &c);
        // 4 / 10
        assert_eq!(r.signal_act_rate, Some(0.4));
        assert_eq!((r.total_signals, r.acted_signals, r.total_scans), (10, 4, 7));
        assert_eq!((r.first_scan_at, r.last_scan_at), (Some(DAY0), Some(DAY0 + H)));
        assert_eq!((r.current_strategy_version.as_deref(), r.strategy_version_count), (Some("v3"), 3));
    }

    #[test]
    fn undefined_metrics_are_null() {
        let r = TruthReport::compute(&TruthInput {
            trades: &[],
            equity_curve: &[],
            counters: &Counters::default(),
            portfolio_value: None,
            portfolio_cash: None,
            market_prices: None,
        });
        let j = serde_json::to_value(&r).unwrap();
        for key in [
            "win_rate",
            "avg_win",
            "avg_loss",
            "expectancy",
            "portfolio_value",
            "portfolio_cash",
            "max_drawdown_pct",
            "signal_act_rate",
            "first_scan_at",
            "last_scan_at",
            "current_strategy_version",
            "profit_factor",
            "avg_trade_duration_hours",
            "best_trade_pnl_pct",
            "worst_trade_pnl_pct",
            "sharpe_ratio",
            "sortino_ratio",
            "cagr",
            "calmar",
            "market_change_pct",
        ] {
            assert!(j[key].is_null(), "{key} = {}", j[key]);
        }
        assert_eq!(j["trade_count"], 0);
        assert_eq!(j["net_pnl"], "0");
        assert_eq!(j["close_reason_breakdown"]["stop_loss"], 0);
        // only wins: no profit factor, no avg loss
        let r = report(&trades()[..1], &[pt(DAY0, dec!(1000))], &Counters::default());
        assert_eq!((r.profit_factor, r.avg_loss), (None, None));
        // one point: no returns, no CAGR; a flat curve: zero deviation
        assert_eq!((r.sharpe_ratio, r.sortino_ratio, r.cagr), (None, None, None));
        let flat = [pt(DAY0, dec!(1000)), pt(DAY0 + D, dec!(1000)), pt(DAY0 + 2 * D, dec!(1000))];
        let r = report(&[], &flat, &Counters::default());
        assert_eq!((r.sharpe_ratio, r.sortino_ratio), (None, None));
        // a market starting at 0 has no change percent
        let r = TruthReport::compute(&TruthInput {
            trades: &[],
            equity_curve: &[],
            counters: &Counters::default(),
            portfolio_value: Some(dec!(1)),
            portfolio_cash: None,
            market_prices: Some((dec!(0), dec!(5))),
        });
        assert_eq!((r.market_change_pct, r.portfolio_value), (None, Some(dec!(1))));
        let back: TruthReport = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
