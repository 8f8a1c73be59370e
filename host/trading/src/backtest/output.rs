//! What a backtest writes: the text summary, trades.csv, and equity.svg, a
//! hand-written SVG: per traded symbol a price panel (its close, every fill
//! marked: entries ▲, exits ▼, with a legend) above the equity curve and its
//! drawdown, on one time axis.

use super::{format_ts, BacktestError, BacktestReport};
use rust_decimal::Decimal;
use std::fmt::Write as _;
use std::path::Path;
use trading_core::money::to_f64;
use trading_core::OrderSide;

const DASH: &str = "—";

fn opt(x: Option<f64>, dp: usize, suffix: &str) -> String {
    x.map_or_else(|| DASH.to_string(), |v| format!("{v:.dp$}{suffix}"))
}

/// Exact money to 2 places (half away from zero), never through a float.
fn money(d: Decimal) -> String {
    let r = d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    format!("{r:.2}")
}

fn duration(secs: i64) -> String {
    let h = secs as f64 / 3600.0;
    if h >= 48.0 {
        format!("{:.1} d", h / 24.0)
    } else {
        format!("{h:.1} h")
    }
}

/// Pads `s` to `w` characters (chars, not bytes).
fn pad(s: &str, w: usize, right: bool) -> String {
    let n = s.chars().count();
    let fill = " ".repeat(w.saturating_sub(n));
    if right {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    }
}

fn table(title: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| pad(c, w.get(i).copied().unwrap_or(0), i > 0))
            .collect();
        format!("| {} |\n", parts.join(" | "))
    };
    let total: usize = w.iter().sum::<usize>() + 3 * w.len() + 1;
    let rule = format!("{}\n", "=".repeat(total));
    let mut s = String::new();
    let _ = writeln!(s, "{}", pad(title, total, false).trim_end());
    s.push_str(&rule);
    s.push_str(&line(head.iter().map(|h| h.to_string()).collect()));
    s.push_str(&format!("{}\n", "-".repeat(total)));
    for r in rows {
        s.push_str(&line(r.clone()));
    }
    s.push_str(&rule);
    s
}

fn halts(r: &BacktestReport) -> String {
    let all: Vec<&super::Note> = r.notes.iter().filter(|n| n.kind == "halted").collect();
    let resumed = r.notes.iter().filter(|n| n.kind == "resumed").count();
    match all.first() {
        None => "none".into(),
        Some(first) if resumed == 0 => {
            format!(
                "{} (latched from {}: {})",
                all.len(),
                format_ts(first.ts),
                first.detail
            )
        }
        Some(_) => format!("{} ({resumed} resumed)", all.len()),
    }
}

/// A freqtrade-like text summary: per-symbol table, exit reasons, metrics.
pub fn summary(r: &BacktestReport) -> String {
    let mut out = String::new();
    let rows: Vec<Vec<String>> = r
        .symbols
        .iter()
        .map(|s| {
            vec![
                s.symbol.clone(),
                s.interval.name().to_string(),
                s.trades.to_string(),
                format!("{}/{}", s.wins, s.losses),
                opt(s.win_rate.map(|w| w * 100.0), 1, "%"),
                opt(s.avg_pnl_pct, 2, "%"),
                money(s.pnl),
                money(s.fees),
                opt(s.market_change_pct, 2, "%"),
            ]
        })
        .collect();
    let m = &r.metrics;
    let mut rows = rows;
    rows.push(vec![
        "TOTAL".into(),
        String::new(),
        m.trade_count.to_string(),
        format!("{}/{}", m.win_count, m.loss_count),
        opt(m.win_rate.map(|w| w * 100.0), 1, "%"),
        opt(
            (!r.trades.is_empty()).then(|| {
                r.trades.iter().map(|t| to_f64(t.pnl_pct)).sum::<f64>() / r.trades.len() as f64
            }),
            2,
            "%",
        ),
        money(m.net_pnl),
        money(m.total_fees),
        opt(m.market_change_pct, 2, "%"),
    ]);
    out.push_str(&table(
        "BACKTEST RESULTS PER SYMBOL",
        &[
            "Symbol",
            "Int",
            "Trades",
            "Win/Loss",
            "Win %",
            "Avg P&L %",
            "P&L",
            "Fees",
            "Market",
        ],
        &rows,
    ));
    out.push('\n');
    let exits: Vec<Vec<String>> = r
        .exit_reasons
        .iter()
        .map(|e| {
            vec![
                e.reason.name().to_string(),
                e.trades.to_string(),
                e.wins.to_string(),
                opt(
                    (e.trades > 0).then(|| e.wins as f64 / e.trades as f64 * 100.0),
                    1,
                    "%",
                ),
                money(e.pnl),
            ]
        })
        .collect();
    out.push_str(&table(
        "EXIT REASONS",
        &["Reason", "Trades", "Wins", "Win %", "P&L"],
        &exits,
    ));
    out.push('\n');
    let x = &r.extras;
    let metric_rows: Vec<Vec<String>> = [
        (
            "Strategy",
            format!(
                "{}… (scan every {} min)",
                &r.strategy.hash[..12.min(r.strategy.hash.len())],
                r.strategy.scan_interval_minutes
            ),
        ),
        (
            "Period",
            format!("{} → {} UTC", format_ts(r.start), format_ts(r.end)),
        ),
        ("Bars", r.bars.to_string()),
        ("Starting capital", money(r.starting_capital)),
        ("Final value", money(r.final_value)),
        ("Total return", opt(r.return_pct, 2, "%")),
        ("Net P&L (closed)", money(m.net_pnl)),
        ("Fees paid", money(m.total_fees)),
        (
            "Costs",
            format!("fee {} bps, slippage {} bps", r.fee_bps, r.slippage_bps),
        ),
        ("Max drawdown", opt(m.max_drawdown_pct, 2, "%")),
        ("Sharpe", opt(m.sharpe_ratio, 3, "")),
        ("Sortino", opt(m.sortino_ratio, 3, "")),
        ("CAGR", opt(m.cagr.map(|g| g * 100.0), 2, "%")),
        ("Calmar", opt(m.calmar, 3, "")),
        ("Profit factor", opt(m.profit_factor, 3, "")),
        (
            "Expectancy",
            m.expectancy.map_or_else(|| DASH.to_string(), money),
        ),
        (
            "Avg win / loss",
            format!(
                "{} / {}",
                m.avg_win.map_or_else(|| DASH.to_string(), money),
                m.avg_loss.map_or_else(|| DASH.to_string(), money)
            ),
        ),
        (
            "Best / worst trade",
            format!(
                "{} / {}",
                m.best_trade_pnl_pct
                    .map_or_else(|| DASH.to_string(), |d| format!("{:.2}%", to_f64(d))),
                m.worst_trade_pnl_pct
                    .map_or_else(|| DASH.to_string(), |d| format!("{:.2}%", to_f64(d)))
            ),
        ),
        ("Avg duration", opt(m.avg_trade_duration_hours, 1, " h")),
        ("Market change", opt(m.market_change_pct, 2, "%")),
        ("Scans", m.total_scans.to_string()),
        (
            "Signals (acted)",
            format!("{} ({})", m.total_signals, m.acted_signals),
        ),
        ("Halts", halts(r)),
        (
            "Best / worst day",
            format!(
                "{} / {}",
                x.best_day.as_ref().map_or_else(
                    || DASH.to_string(),
                    |d| format!("{} {}", d.period, money(d.pnl))
                ),
                x.worst_day.as_ref().map_or_else(
                    || DASH.to_string(),
                    |d| format!("{} {}", d.period, money(d.pnl))
                )
            ),
        ),
        (
            "Max consecutive wins / losses",
            format!("{} / {}", x.max_consecutive_wins, x.max_consecutive_losses),
        ),
        (
            "Drawdown (deepest)",
            x.drawdown.as_ref().map_or_else(
                || DASH.to_string(),
                |d| {
                    format!(
                        "{:.2}%: {} → {} ({}), {}",
                        d.pct,
                        format_ts(d.peak_at),
                        format_ts(d.trough_at),
                        duration(d.duration_secs),
                        match (d.recovered_at, d.recovery_secs) {
                            (Some(t), Some(s)) =>
                                format!("recovered {} after {}", format_ts(t), duration(s)),
                            _ => "not recovered".to_string(),
                        }
                    )
                },
            ),
        ),
        ("Expectancy ratio", opt(x.expectancy_ratio, 3, "")),
        (
            "Exposure",
            opt(x.exposure.map(|e| e * 100.0), 1, "% of the time"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_string(), v])
    .collect();
    out.push_str(&table(
        "SUMMARY METRICS",
        &["Metric", "Value"],
        &metric_rows,
    ));
    for (b, rows) in &r.breakdown {
        out.push('\n');
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|p| {
                vec![
                    p.period.clone(),
                    p.trades.to_string(),
                    format!("{}/{}/{}", p.wins, p.draws, p.losses),
                    money(p.pnl),
                ]
            })
            .collect();
        out.push_str(&table(
            &format!("{} BREAKDOWN", b.name().to_uppercase()),
            &[
                match b {
                    trading_core::report::Breakdown::Day => "Day",
                    trading_core::report::Breakdown::Week => "Week",
                    trading_core::report::Breakdown::Month => "Month",
                },
                "Trades",
                "Win/Draw/Loss",
                "P&L",
            ],
            &rows,
        ));
    }
    if let Some(folds) = &r.walk_forward {
        out.push('\n');
        let rows: Vec<Vec<String>> = folds
            .iter()
            .map(|f| {
                let (a, b) = (&f.in_sample, &f.out_of_sample);
                vec![
                    f.index.to_string(),
                    format!("{} → {}", &format_ts(a.from)[..10], &format_ts(b.to)[..10]),
                    a.trades.to_string(),
                    opt(a.return_pct, 2, "%"),
                    opt(a.sharpe_ratio, 2, ""),
                    b.trades.to_string(),
                    opt(b.return_pct, 2, "%"),
                    opt(b.sharpe_ratio, 2, ""),
                    opt(b.max_drawdown_pct, 2, "%"),
                    opt(b.market_change_pct, 2, "%"),
                ]
            })
            .collect();
        out.push_str(&table(
            "WALK-FORWARD (in-sample 70% | out-of-sample 30%)",
            &[
                "Fold",
                "Period",
                "IS trades",
                "IS return",
                "IS Sharpe",
                "OOS trades",
                "OOS return",
                "OOS Sharpe",
                "OOS DD",
                "OOS market",
            ],
            &rows,
        ));
    }
    out
}

/// The closed trades as CSV.
pub fn trades_csv(r: &BacktestReport) -> String {
    let mut s = String::from(
        "symbol,side,qty,entry_price,exit_price,pnl,pnl_pct,fees,intent,opened_at,closed_at,close_reason,tag\n",
    );
    for t in &r.trades {
        let side = serde_json::to_value(t.side)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let intent = serde_json::to_value(t.intent)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let tag = t.tag.replace(['"', ',', '\n', '\r'], " ");
        let _ = writeln!(
            s,
            "{},{side},{},{},{},{},{},{},{intent},{},{},{},{tag}",
            t.symbol,
            t.qty,
            t.entry_price,
            t.exit_price,
            t.pnl,
            t.pnl_pct,
            t.fees,
            t.opened_at,
            t.closed_at,
            t.close_reason.name()
        );
    }
    s
}

/// Most price panels in equity.svg (the symbols with the most fills first, ties in report order).
pub const MAX_PRICE_PANELS: usize = 4;

/// Escapes text for SVG.
pub(crate) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The symbols drawn as price panels: those with fills (most fills first,
/// ties in report order), at most [`MAX_PRICE_PANELS`]; with no fill at all,
/// the first symbol alone.
fn panels(r: &BacktestReport) -> Vec<&super::PriceChart> {
    let mut traded: Vec<&super::PriceChart> =
        r.prices.iter().filter(|p| !p.fills.is_empty()).collect();
    traded.sort_by_key(|p| std::cmp::Reverse(p.fills.len()));
    if traded.is_empty() {
        traded.extend(r.prices.iter().filter(|p| !p.closes.is_empty()).take(1));
    }
    traded.truncate(MAX_PRICE_PANELS);
    traded
}

/// Per traded symbol (at most [`MAX_PRICE_PANELS`]) a price panel, its close
/// with every fill marked (entries ▲ green, exits ▼ red, the tip at the
/// fill's time and price), then the equity curve and its drawdown, all on
/// one time axis (the run's start to its end), as a standalone SVG.
pub fn equity_svg(r: &BacktestReport) -> String {
    const W: f64 = 960.0;
    const PRICE_H: f64 = 200.0;
    const TOP_H: f64 = 320.0;
    const DD_H: f64 = 120.0;
    const PAD: f64 = 56.0;
    const GAP: f64 = 36.0;
    let charts = panels(r);
    let price_block = charts.len() as f64 * (PRICE_H + GAP);
    let h = PAD + price_block + TOP_H + GAP + DD_H + PAD;
    let pts: Vec<(i64, f64)> = r
        .equity_curve
        .iter()
        .map(|p| (p.ts, to_f64(p.value)))
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let traded = r.prices.iter().filter(|p| !p.fills.is_empty()).count();
    let _ = writeln!(
        s,
        r#"<text x="{PAD}" y="22" font-size="14">{} → {} UTC: return {}, max drawdown {}, {} trades{}</text>"#,
        format_ts(r.start),
        format_ts(r.end),
        opt(r.return_pct, 2, "%"),
        opt(r.metrics.max_drawdown_pct, 2, "%"),
        r.trades.len(),
        if traded > charts.len() {
            format!(" ({} of {traded} traded symbols drawn)", charts.len())
        } else {
            String::new()
        }
    );
    if pts.len() < 2 {
        let _ = writeln!(
            s,
            r#"<text x="{PAD}" y="{}">not enough points</text></svg>"#,
            PAD + 20.0
        );
        return s;
    }
    let (t0, t1) = (r.start as f64, (r.end as f64).max(r.start as f64 + 1.0));
    let span = t1 - t0;
    let x = |ts: i64| PAD + (ts as f64 - t0) / span * (W - 2.0 * PAD);
    let frame = |s: &mut String, top: f64, height: f64| {
        let _ = writeln!(
            s,
            r##"<rect x="{PAD}" y="{top}" width="{}" height="{height}" fill="none" stroke="#999"/>"##,
            W - 2.0 * PAD
        );
    };

    // price panels
    for (n, c) in charts.iter().enumerate() {
        let top = PAD + n as f64 * (PRICE_H + GAP);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let prices = c
            .closes
            .iter()
            .map(|p| p.close)
            .chain(c.fills.iter().map(|f| to_f64(f.price)));
        for v in prices.filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        let margin = ((hi - lo) * 0.04).max(1e-9);
        let (lo, hi) = (lo - margin, hi + margin);
        let y = |v: f64| top + (hi - v) / (hi - lo) * PRICE_H;
        frame(&mut s, top, PRICE_H);
        let entries = c.fills.iter().filter(|f| f.side == OrderSide::Buy).count();
        let _ = writeln!(
            s,
            r##"<text x="{PAD}" y="{:.1}" fill="#222" font-size="12">{} {} close ({} entries, {} exits)</text>"##,
            top - 6.0,
            xml(&c.symbol),
            c.interval.name(),
            entries,
            c.fills.len() - entries
        );
        if n == 0 {
            // legend
            let lx = W - PAD - 250.0;
            let ly = top - 10.0;
            let _ = writeln!(
                s,
                r##"<g class="legend"><line x1="{lx}" x2="{:.1}" y1="{ly}" y2="{ly}" stroke="#57606a" stroke-width="1.2"/><text x="{:.1}" y="{:.1}" fill="#444">close</text><path d="M{:.1},{:.1}l-4,8h8z" fill="#1a7f37"/><text x="{:.1}" y="{:.1}" fill="#444">entry (buy fill)</text><path d="M{:.1},{:.1}l-4,-8h8z" fill="#cf222e"/><text x="{:.1}" y="{:.1}" fill="#444">exit (sell fill)</text></g>"##,
                lx + 16.0,
                lx + 20.0,
                ly + 4.0,
                lx + 64.0,
                ly - 4.0,
                lx + 72.0,
                ly + 4.0,
                lx + 160.0,
                ly + 4.0,
                lx + 168.0,
                ly + 4.0
            );
        }
        for k in 0..=4 {
            let v = lo + (hi - lo) * k as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
                PAD - 4.0,
                y(v) + 4.0,
                price_label(v, hi - lo)
            );
        }
        let mut line = String::new();
        for p in &c.closes {
            let _ = write!(line, "{:.1},{:.1} ", x(p.ts), y(p.close));
        }
        let _ = writeln!(
            s,
            r##"<polyline class="close" points="{}" fill="none" stroke="#57606a" stroke-width="1"/>"##,
            line.trim_end()
        );
        for f in &c.fills {
            let (class, d, fill) = match f.side {
                OrderSide::Buy => ("entry", "l-4,8h8z", "#1a7f37"),
                OrderSide::Sell => ("exit", "l-4,-8h8z", "#cf222e"),
            };
            let _ = writeln!(
                s,
                r#"<path class="{class}" data-ts="{}" data-price="{}" d="M{:.1},{:.1}{d}" fill="{fill}"/>"#,
                f.ts,
                f.price,
                x(f.ts),
                y(to_f64(f.price))
            );
        }
    }

    // equity and drawdown
    let eq_top = PAD + price_block;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, v) in &pts {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let mut peak = f64::NEG_INFINITY;
    let dd: Vec<f64> = pts
        .iter()
        .map(|&(_, v)| {
            peak = peak.max(v);
            if peak > 0.0 {
                (peak - v) / peak * 100.0
            } else {
                0.0
            }
        })
        .collect();
    let max_dd = dd.iter().copied().fold(0.0, f64::max).max(1e-9);
    let y = |v: f64| eq_top + (hi - v) / (hi - lo) * TOP_H;
    let dd_top = eq_top + TOP_H + GAP;
    let yd = |d: f64| dd_top + d / max_dd * DD_H;
    frame(&mut s, eq_top, TOP_H);
    frame(&mut s, dd_top, DD_H);
    let _ = writeln!(
        s,
        r##"<text x="{PAD}" y="{:.1}" fill="#222" font-size="12">equity</text>"##,
        eq_top - 6.0
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#444">{v:.0}</text>"##,
            PAD - 4.0,
            y(v) + 4.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#444">0%</text><text x="{}" y="{:.1}" text-anchor="end" fill="#444">-{max_dd:.1}%</text>"##,
        PAD - 4.0,
        dd_top + 4.0,
        PAD - 4.0,
        dd_top + DD_H + 4.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{PAD}" y="{:.1}" fill="#444">drawdown</text>"##,
        dd_top - 6.0
    );
    for k in 0..=4 {
        let ts = (t0 + span * k as f64 / 4.0) as i64;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            x(ts),
            h - PAD + 16.0,
            &format_ts(ts)[..10]
        );
    }
    // thin long curves to at most ~2 points per pixel column
    let stride = (pts.len() / 2000).max(1);
    let mut line = String::new();
    let mut area = format!("{:.1},{:.1} ", x(pts[0].0), dd_top);
    for (i, (&(ts, v), d)) in pts.iter().zip(&dd).enumerate() {
        if i % stride != 0 && i != pts.len() - 1 {
            continue;
        }
        let _ = write!(line, "{:.1},{:.1} ", x(ts), y(v));
        let _ = write!(area, "{:.1},{:.1} ", x(ts), yd(*d));
    }
    let _ = write!(area, "{:.1},{:.1}", x(pts[pts.len() - 1].0), dd_top);
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f6feb" stroke-width="1.2"/>"##,
        line.trim_end()
    );
    let _ = writeln!(
        s,
        r##"<polygon points="{area}" fill="#d73a49" fill-opacity="0.35" stroke="#d73a49" stroke-width="0.8"/>"##
    );
    let start = to_f64(r.starting_capital);
    if start >= lo && start <= hi {
        let _ = writeln!(
            s,
            r##"<line x1="{PAD}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="4 3"/>"##,
            W - PAD,
            y(start),
            y(start)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A price axis label with as many decimals as its range needs.
fn price_label(v: f64, range: f64) -> String {
    let dp = if range >= 100.0 {
        0
    } else if range >= 1.0 {
        2
    } else {
        4
    };
    format!("{v:.dp$}")
}

/// Writes report.json, trades.csv and equity.svg into `dir` (created if needed).
pub fn write_outputs(r: &BacktestReport, dir: &Path) -> Result<(), BacktestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error: std::io::Error| BacktestError::Io { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| BacktestError::Config(format!("report: {e}")))?;
    for (name, text) in [
        ("report.json", json + "\n"),
        ("trades.csv", trades_csv(r)),
        ("equity.svg", equity_svg(r)),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(io(&p))?;
    }
    Ok(())
}
