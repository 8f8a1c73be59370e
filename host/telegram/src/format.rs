//! Message formatting for Telegram's HTML parse mode: escaping, splitting
//! long answers under the 4096-character limit at line boundaries, and the
//! text of notifications built from host events.

use host_store::events::Event;
use serde_json::Value;

/// Telegram's limit on one message's text.
pub const MAX_MESSAGE: usize = 4096;

/// Escapes `<`, `>` and `&` (all HTML mode needs outside tags).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            c => o.push(c),
        }
    }
    o
}

/// Splits `text` into messages of at most `max` characters, breaking at
/// line ends; a single longer line is cut at character boundaries. Tags are
/// kept per line by the formatters, so a break never splits one.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0;
    for line in text.lines() {
        let n = line.chars().count();
        if n > max {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
                cur_len = 0;
            }
            let chars: Vec<char> = line.chars().collect();
            for chunk in chars.chunks(max) {
                out.push(chunk.iter().collect());
            }
            continue;
        }
        let extra = if cur.is_empty() { n } else { n + 1 };
        if cur_len + extra > max {
            out.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        if !cur.is_empty() {
            cur.push('\n');
            cur_len += 1;
        }
        cur.push_str(line);
        cur_len += n;
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out.retain(|m| !m.trim().is_empty());
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A UTC time like `2024-03-01 14:00`.
pub fn time(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| ts.to_string())
}

/// The notification for an event, or None for kinds that are not pushed.
pub fn notification(ev: &Event) -> Option<String> {
    let d = &ev.detail;
    let sym = esc(ev.symbol.as_deref().unwrap_or(""));
    let line = match ev.kind.as_str() {
        "fill" => {
            let f = &d["fill"];
            let side = f["kind"]["side"].as_str().unwrap_or("?");
            let why = f["kind"]["reason"]
                .as_str()
                .map(|r| format!(" ({})", esc(r)))
                .unwrap_or_default();
            format!(
                "💱 <b>{}</b> {sym} {} @ {}{why}",
                esc(&side.to_uppercase()),
                esc(&s(&f["qty"])),
                esc(&s(&f["price"]))
            )
        }
        "position_closed" => {
            let reason = d["close_reason"].as_str().unwrap_or("signal");
            let icon = match reason {
                "stop_loss" => "🛑 <b>Stop-loss</b>",
                "take_profit" => "🎯 <b>Take-profit</b>",
                "kill" => "☠️ <b>Closed by kill</b>",
                _ => "✅ <b>Closed</b>",
            };
            format!(
                "{icon} {sym}: P&amp;L {} ({}%), exit {}",
                esc(&s(&d["pnl"])),
                esc(&s(&d["pnl_pct"])),
                esc(&s(&d["exit_price"]))
            )
        }
        "halted" => format!(
            "⛔ <b>Risk halt</b>: {}",
            esc(d["message"].as_str().unwrap_or("entries halted"))
        ),
        "halt" => format!("⏸ <b>Halted</b> by {}", esc(&s(&d["by"]))),
        "resume" => format!("▶️ <b>Resumed</b> by {}", esc(&s(&d["by"]))),
        "kill" => format!(
            "☠️ <b>Kill switch</b> by {}: {} orders cancelled, closing {}",
            esc(&s(&d["by"])),
            esc(&s(&d["outcome"]["cancelled_orders"])),
            esc(&s(&d["outcome"]["closing"]))
        ),
        "deploy" => {
            let rollback = d["origin"].as_str().is_some_and(|o| o.contains("rollback"));
            format!(
                "{} <b>v{}</b> (was v{}) from {}",
                if rollback {
                    "↩️ <b>Rolled back</b> to"
                } else {
                    "🚀 <b>Deployed</b>"
                },
                esc(&s(&d["version"])),
                esc(&s(&d["previous"])),
                esc(&s(&d["origin"]))
            )
        }
        "rollback" => format!("↩️ <b>Rolled back</b> to v{}", esc(&s(&d["version"]))),
        "deploy_failed" => format!("⚠️ <b>Deploy failed</b>: {}", esc(&s(&d["reason"]))),
        "module_error" => format!(
            "⚠️ <b>Strategy error</b>: {}",
            esc(&s(d.get("error").unwrap_or(d)))
        ),
        "strategy_paused" => format!("⏸ <b>Strategy paused</b>: {}", esc(&s(&d["reason"]))),
        "alert" => format!(
            "🔔 <b>Alert</b>: {}",
            esc(&s(d.get("message").unwrap_or(d)))
        ),
        "error" => format!(
            "⚠️ <b>Error</b> in {}: {}",
            esc(&s(&d["where"])),
            esc(&s(&d["error"]))
        ),
        "orchestrator_run" => format!(
            "🤖 <b>Nightly review</b> {}: {} → {} (see /report)",
            esc(&s(&d["run_id"])),
            esc(&s(&d["decision"])),
            esc(&s(&d["outcome"]))
        ),
        "reconcile" => format!("🔁 <b>Reconciliation</b>: {}", esc(&s(d))),
        _ => return None,
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(esc("a<b>&c"), "a&lt;b&gt;&amp;c");
    }

    #[test]
    fn splits_at_lines_under_the_limit() {
        let text: String = (0..100)
            .map(|i| format!("line {i:03} {}\n", "x".repeat(40)))
            .collect();
        let parts = split(&text, 1000);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| p.chars().count() <= 1000));
        assert_eq!(parts.join("\n"), text.trim_end());
        let long = "é".repeat(2500);
        let parts = split(&long, 1000);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        assert!(split("", 10).is_empty());
    }

    #[test]
    fn notifications_escape_and_name_stops() {
        let ev = Event {
            seq: 1,
            ts: 0,
            kind: "position_closed".into(),
            symbol: Some("BTC<USD".into()),
            detail: serde_json::json!({ "close_reason": "stop_loss", "pnl": "-1.5", "pnl_pct": "-2", "exit_price": "99" }),
        };
        let n = notification(&ev).unwrap();
        assert!(
            n.contains("Stop-loss") && n.contains("BTC&lt;USD") && n.contains("-1.5"),
            "{n}"
        );
        let ev = Event {
            kind: "scan".into(),
            ..ev
        };
        assert!(notification(&ev).is_none());
    }
}
