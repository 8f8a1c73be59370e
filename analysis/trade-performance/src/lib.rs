//! Trade performance ("how well are we playing"): from the `trades` and
//! `signals` tables up to `now` — results per symbol and per intent,
//! confidence vs outcome, fee drag, rolling 7/30/90-day metrics, and the
//! depth and duration of drawdowns of the realised equity curve.

use guest_sdk::indicators::correlation;
use guest_sdk::{Analysis, Database, DbValue, Report};

pub const TRADES: &str =
    "SELECT symbol, COALESCE(intent, 'unknown'), CAST(pnl AS REAL), pnl_pct, CAST(fees AS REAL), opened_at, closed_at \
                          FROM trades WHERE closed_at <= ?1 ORDER BY closed_at, id";
pub const CONFIDENCE: &str = "SELECT s.confidence, t.pnl_pct FROM trades t JOIN signals s ON s.id = (SELECT id FROM signals \
                              WHERE symbol = t.symbol AND lower(action) = 'buy' AND ts <= t.opened_at ORDER BY ts DESC LIMIT 1) \
                              WHERE t.closed_at <= ?1 AND s.confidence IS NOT NULL";

/// One closed trade as the module reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: String,
    pub intent: String,
    pub pnl: f64,
    pub pnl_pct: f64,
    pub fees: f64,
    pub opened_at: i64,
    pub closed_at: i64,
}

/// Count, wins, win rate, net, average percent and fees of a set of trades.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub trades: usize,
    pub wins: usize,
    pub win_rate: Option<f64>,
    pub net_pnl: f64,
    pub avg_pnl_pct: Option<f64>,
    pub fees: f64,
}

pub fn summarize<'a>(trades: impl IntoIterator<Item = &'a Trade>) -> Summary {
    let (mut n, mut wins, mut net, mut pct, mut fees) = (0usize, 0usize, 0.0, 0.0, 0.0);
    for t in trades {
        n += 1;
        wins += usize::from(t.pnl > 0.0);
        net += t.pnl;
        pct += t.pnl_pct;
        fees += t.fees;
    }
    Summary {
        trades: n,
        wins,
        win_rate: (n > 0).then(|| wins as f64 / n as f64),
        net_pnl: net,
        avg_pnl_pct: (n > 0).then(|| pct / n as f64),
        fees,
    }
}

/// Fees as a percentage of the gross (pre-fee) profit of winning trades.
pub fn fee_drag_pct(trades: &[Trade]) -> Option<f64> {
    let gross: f64 = trades.iter().map(|t| t.pnl + t.fees).filter(|g| *g > 0.0).sum();
    let fees: f64 = trades.iter().map(|t| t.fees).sum();
    (gross > 0.0).then(|| fees / gross * 100.0)
}

/// Drawdowns of the realised equity (cumulative pnl at each close):
/// (deepest drop in quote currency, longest drawdown in days, current drawdown in days).
pub fn drawdowns(trades: &[Trade], now: i64) -> (f64, f64, f64) {
    let Some(first) = trades.first() else { return (0.0, 0.0, 0.0) };
    // the equity curve starts at 0 when the first trade opens
    let (mut equity, mut peak, mut peak_at) = (0.0f64, 0.0f64, first.opened_at);
    let (mut deepest, mut longest, mut under) = (0.0f64, 0i64, false);
    for t in trades {
        equity += t.pnl;
        if equity >= peak {
            if under {
                longest = longest.max(t.closed_at - peak_at);
            }
            (peak, peak_at, under) = (equity, t.closed_at, false);
        } else {
            under = true;
            deepest = deepest.max(peak - equity);
        }
    }
    let current = if under { now - peak_at } else { 0 };
    longest = longest.max(current);
    (deepest, longest as f64 / 86_400.0, current as f64 / 86_400.0)
}

fn num(v: Option<&DbValue>) -> Option<f64> {
    v.and_then(DbValue::as_f64)
}

fn text(v: Option<&DbValue>) -> String {
    match v {
        Some(DbValue::Text(s)) => s.clone(),
        _ => "unknown".into(),
    }
}

fn put(report: &mut Report, section: &str, s: &Summary) {
    report.number(section, "trades", s.trades as f64);
    report.number(section, "win_rate", s.win_rate.unwrap_or(f64::NAN));
    report.number(section, "net_pnl", s.net_pnl);
    report.number(section, "avg_pnl_pct", s.avg_pnl_pct.unwrap_or(f64::NAN));
    report.number(section, "fees", s.fees);
}

#[derive(Default)]
pub struct TradePerformance;

impl Analysis for TradePerformance {
    fn analyze(&mut self, now: i64, db: &dyn Database) -> Result<Report, String> {
        let rows = db.query(TRADES, &[DbValue::Integer(now)])?;
        let trades: Vec<Trade> = rows
            .rows
            .iter()
            .filter_map(|r| {
                Some(Trade {
                    symbol: text(r.first()),
                    intent: text(r.get(1)),
                    pnl: num(r.get(2))?,
                    pnl_pct: num(r.get(3))?,
                    fees: num(r.get(4)).unwrap_or(0.0),
                    opened_at: num(r.get(5))? as i64,
                    closed_at: num(r.get(6))? as i64,
                })
            })
            .collect();
        let mut report = Report::new("trade-performance", "");
        let all = summarize(&trades);
        put(&mut report, "all", &all);
        let mut symbols: Vec<&str> = trades.iter().map(|t| t.symbol.as_str()).collect();
        symbols.sort_unstable();
        symbols.dedup();
        for s in &symbols {
            put(&mut report, &format!("symbol:{s}"), &summarize(trades.iter().filter(|t| t.symbol == *s)));
        }
        let mut intents: Vec<&str> = trades.iter().map(|t| t.intent.as_str()).collect();
        intents.sort_unstable();
        intents.dedup();
        for i in &intents {
            put(&mut report, &format!("intent:{i}"), &summarize(trades.iter().filter(|t| t.intent == *i)));
        }
        for days in [7i64, 30, 90] {
            let s = summarize(trades.iter().filter(|t| t.closed_at > now - days * 86_400));
            put(&mut report, &format!("rolling_{days}d"), &s);
        }
        report.number("fees", "fee_drag_pct", fee_drag_pct(&trades).unwrap_or(f64::NAN));
        report.number(
            "fees",
            "avg_fee_per_trade",
            if trades.is_empty() { f64::NAN } else { all.fees / trades.len() as f64 },
        );
        let (deepest, longest, current) = drawdowns(&trades, now);
        report.number("drawdown", "max_drawdown", deepest);
        report.number("drawdown", "longest_days", longest);
        report.number("drawdown", "current_days", current);
        let conf = db.query(CONFIDENCE, &[DbValue::Integer(now)])?;
        let pairs: Vec<(f64, f64)> = conf.rows.iter().filter_map(|r| Some((num(r.first())?, num(r.get(1))?))).collect();
        let (c, o): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        report.number("confidence", "pairs", pairs.len() as f64);
        report.number("confidence", "correlation_with_pnl_pct", correlation(&c, &o).unwrap_or(f64::NAN));
        for (name, lo, hi) in [("low", f64::MIN, 0.4), ("mid", 0.4, 0.7), ("high", 0.7, f64::MAX)] {
            let b: Vec<&(f64, f64)> = pairs.iter().filter(|(c, _)| *c >= lo && *c < hi).collect();
            let wr = (!b.is_empty()).then(|| b.iter().filter(|(_, o)| *o > 0.0).count() as f64 / b.len() as f64);
            report.number("confidence", &format!("win_rate_{name}"), wr.unwrap_or(f64::NAN));
        }
        report.summary = match all.win_rate {
            None => "no closed trades yet".into(),
            Some(wr) => format!(
                "{} trades, win rate {:.0}%, net {:.2}, fees {:.2} ({} drag), max drawdown {:.2} lasting up to {:.1} days",
                all.trades,
                wr * 100.0,
                all.net_pnl,
                all.fees,
                fee_drag_pct(&trades).map_or("no".to_string(), |d| format!("{d:.0}%")),
                deepest,
                longest
            ),
        };
        Ok(report)
    }
}

guest_sdk::export_analysis!(TradePerformance);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::{rows, MetricValue, TestDatabase};

    const DAY: i64 = 86_400;

    fn t(pnl: f64, fees: f64, closed_day: i64) -> Trade {
        Trade {
            symbol: "BTCUSD".into(),
            intent: "swing".into(),
            pnl,
            pnl_pct: pnl / 10.0,
            fees,
            opened_at: closed_day * DAY - DAY / 2,
            closed_at: closed_day * DAY,
        }
    }

    #[test]
    fn summaries_fee_drag_and_drawdowns_by_hand() {
        let trades = vec![t(10.0, 1.0, 1), t(-5.0, 1.0, 2), t(-3.0, 1.0, 3), t(12.0, 1.0, 5), t(-2.0, 1.0, 6)];
        let s = summarize(&trades);
        assert_eq!((s.trades, s.wins, s.net_pnl, s.fees), (5, 2, 12.0, 5.0));
        assert_eq!(s.win_rate, Some(0.4));
        // gross pre-fee profit of winners 11 + 13 = 24; fees 5 → 20.8 %
        assert!((fee_drag_pct(&trades).unwrap() - 5.0 / 24.0 * 100.0).abs() < 1e-12);
        // equity 10, 5, 2, 14, 12: deepest 8 (10 → 2), peak at day 1 recovered on day 5 (4 days);
        // current: peak 14 on day 5, now day 9 → 4 days
        let (deep, longest, current) = drawdowns(&trades, 9 * DAY);
        assert_eq!(deep, 8.0);
        assert_eq!(longest, 4.0);
        assert_eq!(current, 4.0);
        assert_eq!(drawdowns(&[], 0), (0.0, 0.0, 0.0));
        assert_eq!(summarize(&[]).win_rate, None);
    }

    #[test]
    fn report_from_the_database() {
        let tx = |s: &str| DbValue::Text(s.into());
        let r = DbValue::Real;
        let i = DbValue::Integer;
        let row = |sym: &str, intent: &str, pnl: f64, day: i64| {
            vec![tx(sym), tx(intent), r(pnl), r(pnl / 10.0), r(1.0), i(day * DAY - 100), i(day * DAY)]
        };
        let db = TestDatabase::default()
            .answer(
                TRADES,
                Ok(rows(
                    &["symbol", "intent", "pnl", "pnl_pct", "fees", "opened_at", "closed_at"],
                    vec![
                        row("BTCUSD", "swing", 10.0, 1),
                        row("ETHUSD", "day", -4.0, 95),
                        row("BTCUSD", "day", 6.0, 99),
                    ],
                )),
            )
            .answer(
                CONFIDENCE,
                Ok(rows(
                    &["confidence", "pnl_pct"],
                    vec![vec![r(0.9), r(1.0)], vec![r(0.2), r(-0.4)], vec![r(0.8), r(0.6)]],
                )),
            );
        let rep = TradePerformance.analyze(100 * DAY, &db).unwrap();
        let n = |s: &str, k: &str| match rep.get(s, k) {
            Some(MetricValue::Number(x)) => *x,
            other => panic!("{s}/{k}: {other:?}"),
        };
        assert_eq!(n("all", "trades"), 3.0);
        assert_eq!(n("symbol:BTCUSD", "net_pnl"), 16.0);
        assert_eq!(n("intent:day", "trades"), 2.0);
        assert_eq!(n("rolling_7d", "trades"), 2.0);
        assert_eq!(n("rolling_90d", "trades"), 2.0);
        assert_eq!(n("confidence", "win_rate_high"), 1.0);
        assert_eq!(n("confidence", "win_rate_low"), 0.0);
        assert!(n("confidence", "correlation_with_pnl_pct") > 0.9);
        assert!(matches!(rep.get("confidence", "win_rate_mid"), Some(MetricValue::Missing)));
        assert!(rep.summary.starts_with("3 trades"), "{}", rep.summary);
    }
}
