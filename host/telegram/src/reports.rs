//! The bot's read-only reports beside the account ones in `commands`:
//! `/weekly` and `/monthly` (the daily equity snapshots summed per ISO week
//! or month), `/count`, `/show_config`, `/health`, `/version`, `/karma`
//! (the scorecard of seed 002) and `/shadow` (what the refused entries of
//! seed 004 would have made). Each is a plain function of what it reads, so
//! it is tested without a bot. Money is printed exact (2 places); a stored
//! value that does not parse is an error shown to the user, never a zero.

use super::format::{esc, time};
use host_store::shadow_db::ShadowReport;
use rust_decimal::Decimal;
use trading_core::karma::{Score, Scorecard};

fn money(d: Decimal) -> String {
    esc(&d.round_dp(2).to_string())
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), |v| format!("{:.1}%", v * 100.0))
}

/// A calendar period the equity snapshots are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Week,
    Month,
}

/// The period a snapshot day (`YYYY-MM-DD`) falls in: `2024-W09` or `2024-03`.
pub fn period_of(day: &str, p: Period) -> Result<String, String> {
    let d = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|e| format!("stored snapshot day {day:?}: {e}"))?;
    Ok(match p {
        Period::Week => {
            let w = chrono::Datelike::iso_week(&d);
            format!("{}-W{:02}", w.year(), w.week())
        }
        Period::Month => d.format("%Y-%m").to_string(),
    })
}

/// (period, closing equity, P&L over the period) from the daily snapshots
/// (day, equity), oldest first; the first period's P&L is measured from
/// `starting_capital`.
pub fn by_period(
    days: &[(String, Decimal)],
    starting_capital: Decimal,
    p: Period,
) -> Result<Vec<(String, Decimal, Decimal)>, String> {
    let mut out: Vec<(String, Decimal, Decimal)> = Vec::new();
    let mut before = starting_capital;
    for (day, value) in days {
        let key = period_of(day, p)?;
        match out.last_mut() {
            Some(last) if last.0 == key => {
                last.2 += *value - last.1;
                last.1 = *value;
            }
            _ => out.push((key, *value, *value - before)),
        }
        before = *value;
    }
    Ok(out)
}

/// The `/weekly` and `/monthly` text: the last `n` periods.
pub fn period_text(rows: &[(String, Decimal, Decimal)], n: usize, p: Period) -> String {
    let title = match p {
        Period::Week => "Weekly",
        Period::Month => "Monthly",
    };
    if rows.is_empty() {
        return format!("<b>{title}</b>: no daily snapshots yet.");
    }
    let mut m = format!("<b>{title} equity (P&amp;L)</b>");
    for (k, v, pnl) in &rows[rows.len().saturating_sub(n)..] {
        m.push_str(&format!("\n{} {} ({})", esc(k), money(*v), money(*pnl)));
    }
    m
}

fn score_line(name: &str, s: &Score) -> String {
    format!(
        "{}: {} trades, hit {}, P&amp;L {} (avg {}), Brier {}",
        esc(name),
        s.trades,
        pct(s.hit_rate),
        money(s.total_pnl),
        s.avg_pnl.map(money).unwrap_or_else(|| "-".into()),
        s.brier
            .map_or_else(|| "-".to_string(), |b| format!("{b:.3}"))
    )
}

/// The `/karma` text: overall, then per version, tag, symbol and intent.
pub fn karma_text(c: &Scorecard) -> String {
    if c.overall.trades == 0 {
        return "<b>Karma</b>: no closed trades yet.".into();
    }
    let mut m = format!("<b>Karma</b>\n{}", score_line("all", &c.overall));
    let cal: Vec<String> = c
        .overall
        .bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| {
            format!(
                "{:.1}–{:.1}: {} ({})",
                b.from,
                b.to,
                pct(b.hit_rate),
                b.count
            )
        })
        .collect();
    if !cal.is_empty() {
        m.push_str(&format!(
            "\nCalibration (confidence: hit rate): {}",
            esc(&cal.join("; "))
        ));
    }
    for (title, group) in [
        ("Versions", &c.by_version),
        ("Tags", &c.by_tag),
        ("Symbols", &c.by_symbol),
        ("Intents", &c.by_intent),
    ] {
        m.push_str(&format!("\n<b>{title}</b>"));
        for (k, s) in group.iter().take(10) {
            let name = if title == "Versions" && k != "unknown" {
                format!("v{k}")
            } else {
                k.clone()
            };
            m.push_str(&format!("\n{}", score_line(&name, s)));
        }
    }
    m
}

/// The `/shadow` text: what the refused entries would have made.
pub fn shadow_text(r: &ShadowReport, recent: &[host_store::shadow_db::ShadowRow]) -> String {
    if r.total.closed == 0 && r.open == 0 {
        return "<b>Shadow book</b>: no entry has been refused yet.".into();
    }
    let mut m = format!(
        "<b>Shadow book</b> (refused entries followed to their would-be exits)\n{} closed ({} would have won), {} still followed\nWould-be P&amp;L: {} — {}",
        r.total.closed,
        r.total.wins,
        r.open,
        money(r.total.pnl),
        esc(&r.verdict())
    );
    for (k, t) in &r.by_refusal {
        m.push_str(&format!(
            "\n{}: {} closed, P&amp;L {}",
            esc(k),
            t.closed,
            money(t.pnl)
        ));
    }
    for row in recent.iter().take(5) {
        m.push_str(&format!(
            "\n#{} {} {} refused ({}) at {}: {}",
            row.id,
            time(row.decided_at),
            esc(&row.symbol),
            esc(&row.refusal_kind),
            money(row.decision_price),
            match (&row.exit_reason, row.pnl) {
                (Some(x), Some(p)) => format!("{} → {}", esc(x.name()), money(p)),
                _ => "open".into(),
            }
        ));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn days_are_summed_per_iso_week_and_month() {
        let days: Vec<(String, Decimal)> = [
            ("2024-02-28", dec!(1010)), // Wed, W09
            ("2024-03-03", dec!(1030)), // Sun, W09
            ("2024-03-04", dec!(1000)), // Mon, W10
        ]
        .into_iter()
        .map(|(d, v)| (d.to_string(), v))
        .collect();
        let w = by_period(&days, dec!(1000), Period::Week).unwrap();
        assert_eq!(
            w,
            vec![
                ("2024-W09".to_string(), dec!(1030), dec!(30)),
                ("2024-W10".to_string(), dec!(1000), dec!(-30))
            ]
        );
        let m = by_period(&days, dec!(1000), Period::Month).unwrap();
        assert_eq!(
            m,
            vec![
                ("2024-02".to_string(), dec!(1010), dec!(10)),
                ("2024-03".to_string(), dec!(1000), dec!(-10))
            ]
        );
        assert!(period_text(&m, 1, Period::Month).contains("2024-03 1000 (-10)"));
        assert!(by_period(&[("03/04/2024".into(), dec!(1))], dec!(1), Period::Week).is_err());
    }
}
