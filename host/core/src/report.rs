//! The backtest report figures freqtrade users expect beside the truth
//! metrics: results per day, week or month (`--breakdown`), the best and
//! worst day, the longest runs of wins and losses, the deepest drawdown with
//! its start, trough, duration and recovery, the expectancy ratio and the
//! market exposure. Pure. Conventions (those of `truth`): a win is pnl > 0,
//! a loss pnl < 0, breakeven neither; a trade belongs to the UTC day, ISO
//! week or month it closed in; a day is "best" or "worst" by the summed pnl
//! of the trades closed that day (days without trades do not count);
//! exposure is the share of the run's time with at least one position open
//! (the union of every trade's `[opened_at, closed_at)`). Every figure that is
//! undefined for the input is `None`, never a sentinel.

use crate::money::to_f64;
use crate::portfolio::ClosedTrade;
use crate::truth::EquityPoint;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The period a `--breakdown` groups trades by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Breakdown {
    Day,
    Week,
    Month,
}

impl Breakdown {
    pub fn parse(s: &str) -> Option<Breakdown> {
        match s {
            "day" => Some(Breakdown::Day),
            "week" => Some(Breakdown::Week),
            "month" => Some(Breakdown::Month),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Breakdown::Day => "day",
            Breakdown::Week => "week",
            Breakdown::Month => "month",
        }
    }

    /// The period `ts` falls in: `2024-03-01`, `2024-W09` (ISO week) or `2024-03`.
    pub fn period_of(self, ts: i64) -> String {
        let day = crate::series::format_ts(ts);
        match self {
            Breakdown::Day => day[..10].to_string(),
            Breakdown::Month => day[..7].to_string(),
            Breakdown::Week => {
                let (year, week) = iso_week(ts.div_euclid(86_400));
                format!("{year:04}-W{week:02}")
            }
        }
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The ISO year and week of day number `days` (since 1970-01-01, a Thursday):
/// the week's Thursday decides the year.
fn iso_week(days: i64) -> (i64, i64) {
    let weekday = (days + 3).rem_euclid(7); // Monday 0
    let thursday = days - weekday + 3;
    let year: i64 = crate::series::format_ts(thursday * 86_400)[..4].parse().unwrap_or(1970);
    (year, (thursday - days_from_civil(year, 1, 1)) / 7 + 1)
}

/// The trades closed in one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodRow {
    pub period: String,
    pub trades: u64,
    pub wins: u64,
    pub draws: u64,
    pub losses: u64,
    pub pnl: Decimal,
}

/// The trades grouped by the period they closed in, oldest first.
pub fn breakdown(trades: &[ClosedTrade], b: Breakdown) -> Vec<PeriodRow> {
    let mut m: BTreeMap<String, PeriodRow> = BTreeMap::new();
    for t in trades {
        let key = b.period_of(t.closed_at);
        let row = m.entry(key.clone()).or_insert(PeriodRow {
            period: key,
            trades: 0,
            wins: 0,
            draws: 0,
            losses: 0,
            pnl: Decimal::ZERO,
        });
        row.trades += 1;
        match t.pnl.cmp(&Decimal::ZERO) {
            std::cmp::Ordering::Greater => row.wins += 1,
            std::cmp::Ordering::Less => row.losses += 1,
            std::cmp::Ordering::Equal => row.draws += 1,
        }
        row.pnl += t.pnl;
    }
    m.into_values().collect()
}

/// The deepest fall of the equity curve from a peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drawdown {
    pub pct: f64,
    pub peak_at: i64,
    pub peak_value: Decimal,
    pub trough_at: i64,
    pub trough_value: Decimal,
    /// trough_at − peak_at.
    pub duration_secs: i64,
    /// When the curve first came back to the peak (None: not by the end).
    pub recovered_at: Option<i64>,
    /// recovered_at − trough_at.
    pub recovery_secs: Option<i64>,
}

/// The figures of this module; see the module doc for conventions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportExtras {
    pub best_day: Option<PeriodRow>,
    pub worst_day: Option<PeriodRow>,
    pub max_consecutive_wins: u32,
    pub max_consecutive_losses: u32,
    /// None when the curve never falls below a peak.
    pub drawdown: Option<Drawdown>,
    /// (1 + avg win / |avg loss|) × win rate − 1; None without both wins and losses.
    pub expectancy_ratio: Option<f64>,
    /// Fraction in [0, 1] of [start, end) with a position open; None for an empty run.
    pub exposure: Option<f64>,
}

fn streaks(trades: &[ClosedTrade]) -> (u32, u32) {
    let (mut w, mut l, mut max_w, mut max_l) = (0u32, 0u32, 0u32, 0u32);
    for t in trades {
        if t.pnl > Decimal::ZERO {
            w += 1;
            l = 0;
        } else if t.pnl < Decimal::ZERO {
            l += 1;
            w = 0;
        } else {
            w = 0;
            l = 0;
        }
        max_w = max_w.max(w);
        max_l = max_l.max(l);
    }
    (max_w, max_l)
}

fn drawdown(curve: &[EquityPoint]) -> Option<Drawdown> {
    let mut peak = *curve.first()?;
    let mut worst: Option<Drawdown> = None;
    for p in curve {
        if p.value > peak.value {
            peak = *p;
        }
        if peak.value <= Decimal::ZERO || p.value >= peak.value {
            continue;
        }
        let pct = to_f64(crate::money::pct(peak.value - p.value, peak.value)?);
        if worst.as_ref().is_none_or(|w| pct > w.pct) {
            worst = Some(Drawdown {
                pct,
                peak_at: peak.ts,
                peak_value: peak.value,
                trough_at: p.ts,
                trough_value: p.value,
                duration_secs: p.ts - peak.ts,
                recovered_at: None,
                recovery_secs: None,
            });
        }
    }
    let mut w = worst?;
    w.recovered_at = curve.iter().find(|p| p.ts > w.trough_at && p.value >= w.peak_value).map(|p| p.ts);
    w.recovery_secs = w.recovered_at.map(|t| t - w.trough_at);
    Some(w)
}

fn exposure(trades: &[ClosedTrade], start: i64, end: i64) -> Option<f64> {
    if end <= start {
        return None;
    }
    let mut spans: Vec<(i64, i64)> =
        trades.iter().map(|t| (t.opened_at.max(start), t.closed_at.min(end))).filter(|(a, b)| b > a).collect();
    spans.sort();
    let mut covered = 0i64;
    let mut cur: Option<(i64, i64)> = None;
    for (a, b) in spans {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                covered += cb - ca;
                cur = Some((a, b));
            }
            None => cur = Some((a, b)),
        }
    }
    if let Some((a, b)) = cur {
        covered += b - a;
    }
    Some(covered as f64 / (end - start) as f64)
}

fn expectancy_ratio(trades: &[ClosedTrade]) -> Option<f64> {
    let wins: Vec<f64> = trades.iter().filter(|t| t.pnl > Decimal::ZERO).map(|t| to_f64(t.pnl)).collect();
    let losses: Vec<f64> = trades.iter().filter(|t| t.pnl < Decimal::ZERO).map(|t| to_f64(t.pnl)).collect();
    if wins.is_empty() || losses.is_empty() {
        return None;
    }
    let avg_win = wins.iter().sum::<f64>() / wins.len() as f64;
    let avg_loss = (losses.iter().sum::<f64>() / losses.len() as f64).abs();
    let win_rate = wins.len() as f64 / trades.len() as f64;
    let r = (1.0 + avg_win / avg_loss) * win_rate - 1.0;
    r.is_finite().then_some(r)
}

/// The figures for `trades` (oldest first) over a run of `[start, end)` with `curve`.
pub fn extras(trades: &[ClosedTrade], curve: &[EquityPoint], start: i64, end: i64) -> ReportExtras {
    let days = breakdown(trades, Breakdown::Day);
    let (max_consecutive_wins, max_consecutive_losses) = streaks(trades);
    // ties: the earliest day
    let best_day = days.iter().fold(None::<&PeriodRow>, |b, d| match b {
        Some(b) if b.pnl >= d.pnl => Some(b),
        _ => Some(d),
    });
    let worst_day = days.iter().fold(None::<&PeriodRow>, |b, d| match b {
        Some(b) if b.pnl <= d.pnl => Some(b),
        _ => Some(d),
    });
    ReportExtras {
        best_day: best_day.cloned(),
        worst_day: worst_day.cloned(),
        max_consecutive_wins,
        max_consecutive_losses,
        drawdown: drawdown(curve),
        expectancy_ratio: expectancy_ratio(trades),
        exposure: exposure(trades, start, end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portfolio::CloseReason;
    use crate::types::{Intent, Side};
    use rust_decimal_macros::dec;

    const DAY: i64 = 86_400;
    /// 2024-03-01 00:00 UTC, a Friday (ISO week 9).
    const T0: i64 = 1_709_251_200;

    fn trade(opened_at: i64, closed_at: i64, pnl: Decimal) -> ClosedTrade {
        ClosedTrade {
            symbol: "BTC".into(),
            side: Side::Long,
            qty: dec!(1),
            entry_price: dec!(100),
            exit_price: dec!(100) + pnl,
            pnl,
            pnl_pct: pnl,
            fees: dec!(0),
            intent: Intent::Swing,
            opened_at,
            closed_at,
            close_reason: CloseReason::Signal,
            tag: String::new(),
        }
    }

    fn pt(ts: i64, v: Decimal) -> EquityPoint {
        EquityPoint { ts, value: v }
    }

    /// The fixture, by hand: trades (open, close, pnl) in hours from T0:
    /// A (0, 2, +10), B (1, 5, −4) — overlapping, C (24, 30, −6), D (50, 52, 0),
    /// E (72, 80, +3), F (74, 76, +2).
    /// Days (by close): 03-01: A, B → +6 (1 win, 1 loss); 03-02: C → −6;
    /// 03-03: D → 0 (a draw); 03-04: E, F → +5. Best 03-01 (+6), worst 03-02.
    /// Weeks: W09 (Fri 1st – Sun 3rd): +6 − 6 + 0 = 0, 4 trades; W10: +5, 2.
    /// Streaks in close order A, B, C, D, F, E: wins 1, losses 2 (B, C), then
    /// the draw resets, F E: 2 wins. Max wins 2, max losses 2.
    /// Exposure over [0, 96 h): [0, 5) ∪ [24, 30) ∪ [50, 52) ∪ [72, 80) = 5 + 6 + 2 + 8
    /// = 21 h of 96 = 0.21875.
    /// Expectancy ratio: wins 10, 3, 2 (avg 5), losses −4, −6 (avg |5|), win
    /// rate 3/6: (1 + 1) × 0.5 − 1 = 0.
    #[test]
    fn the_report_extras_match_the_hand_computed_fixture() {
        let h = 3600;
        let mut trades = vec![
            trade(T0, T0 + 2 * h, dec!(10)),
            trade(T0 + h, T0 + 5 * h, dec!(-4)),
            trade(T0 + 24 * h, T0 + 30 * h, dec!(-6)),
            trade(T0 + 50 * h, T0 + 52 * h, dec!(0)),
            trade(T0 + 74 * h, T0 + 76 * h, dec!(2)),
            trade(T0 + 72 * h, T0 + 80 * h, dec!(3)),
        ];
        trades.sort_by_key(|t| t.closed_at);
        let days = breakdown(&trades, Breakdown::Day);
        assert_eq!(
            days.iter().map(|d| d.period.as_str()).collect::<Vec<_>>(),
            ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
        );
        assert_eq!((days[0].trades, days[0].wins, days[0].losses, days[0].pnl), (2, 1, 1, dec!(6)));
        assert_eq!((days[2].draws, days[2].pnl), (1, dec!(0)));
        let weeks = breakdown(&trades, Breakdown::Week);
        assert_eq!(weeks.len(), 2);
        assert_eq!((weeks[0].period.as_str(), weeks[0].trades, weeks[0].pnl), ("2024-W09", 4, dec!(0)));
        assert_eq!((weeks[1].period.as_str(), weeks[1].pnl), ("2024-W10", dec!(5)));
        let months = breakdown(&trades, Breakdown::Month);
        assert_eq!((months.len(), months[0].period.as_str(), months[0].pnl), (1, "2024-03", dec!(5)));
        let curve = [pt(T0, dec!(1000))];
        let x = extras(&trades, &curve, T0, T0 + 96 * h);
        assert_eq!(x.best_day.as_ref().map(|d| (d.period.as_str(), d.pnl)), Some(("2024-03-01", dec!(6))));
        assert_eq!(x.worst_day.as_ref().map(|d| (d.period.as_str(), d.pnl)), Some(("2024-03-02", dec!(-6))));
        assert_eq!((x.max_consecutive_wins, x.max_consecutive_losses), (2, 2));
        assert_eq!(x.exposure, Some(21.0 / 96.0));
        assert!(x.expectancy_ratio.is_some_and(|r| r.abs() < 1e-12), "{:?}", x.expectancy_ratio);
        assert_eq!(x.drawdown, None, "a flat curve has no drawdown");
    }

    #[test]
    fn iso_weeks_at_year_boundaries() {
        let day = |y, m, d| days_from_civil(y, m, d);
        assert_eq!(day(1970, 1, 1), 0);
        assert_eq!(day(2024, 3, 1) * 86_400, T0);
        // 2021-01-03 (Sunday) is in 2020-W53; 2024-12-30 (Monday) in 2025-W01
        assert_eq!(iso_week(day(2021, 1, 3)), (2020, 53));
        assert_eq!(iso_week(day(2021, 1, 4)), (2021, 1));
        assert_eq!(iso_week(day(2024, 12, 30)), (2025, 1));
        assert_eq!(Breakdown::Week.period_of(T0), "2024-W09");
    }

    /// By hand: 1000 → 1100 (peak, day 1) → 990 (day 3: −10%) → 1050 → 1100
    /// (day 6: recovered) → 1045 (−5%, not deeper). Deepest: 10% from day 1 to
    /// day 3 (2 days), recovered 3 days later.
    #[test]
    fn the_deepest_drawdown_has_its_start_trough_duration_and_recovery() {
        let curve = [
            pt(0, dec!(1000)),
            pt(DAY, dec!(1100)),
            pt(2 * DAY, dec!(1000)),
            pt(3 * DAY, dec!(990)),
            pt(5 * DAY, dec!(1050)),
            pt(6 * DAY, dec!(1100)),
            pt(7 * DAY, dec!(1045)),
        ];
        let d = drawdown(&curve).unwrap();
        assert_eq!((d.peak_at, d.peak_value, d.trough_at, d.trough_value), (DAY, dec!(1100), 3 * DAY, dec!(990)));
        assert!((d.pct - 10.0).abs() < 1e-9);
        assert_eq!(d.duration_secs, 2 * DAY);
        assert_eq!((d.recovered_at, d.recovery_secs), (Some(6 * DAY), Some(3 * DAY)));
        let never = drawdown(&curve[..5]).unwrap();
        assert_eq!((never.recovered_at, never.recovery_secs), (None, None));
        let x = extras(&[], &curve, 0, 0);
        assert_eq!((x.exposure, x.expectancy_ratio, x.best_day), (None, None, None));
    }
}
