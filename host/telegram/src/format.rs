//! Message formatting for Telegram's HTML parse mode: escaping, splitting
//! long answers under the 4096-character limit (at line boundaries where it
//! can, never inside a tag, an entity or a character), and the text of
//! notifications built from host events.

use host_store::events::{Event, Payload};
use host_store::payloads::{ConfigFile, ErrorSite};
use trading_core::{CloseReason, FillKind};

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

/// A tag longer than this (in characters) is not taken for one: its `<` is a plain character.
const MAX_TAG_CHARS: usize = 512;
/// Likewise for an entity such as `&amp;` or `&#128512;`.
const MAX_ENTITY_CHARS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtomKind {
    Newline,
    Space,
    /// An opening tag (`<b>`, `<a href="...">`).
    Open,
    /// A closing tag (`</b>`).
    Close,
    /// A character, an entity, or a tag that opens nothing (`<br/>`).
    Other,
}

/// A piece of HTML text that is never cut: a character, an entity or a tag.
#[derive(Debug, Clone, Copy)]
struct Atom<'a> {
    text: &'a str,
    chars: usize,
    kind: AtomKind,
    /// The tag's name (Open and Close).
    name: &'a str,
}

fn tag_name(inner: &str) -> &str {
    let end = inner
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(inner.len());
    &inner[..end]
}

/// The atom starting at byte `i` of `text`.
fn atom_at(text: &str, i: usize) -> Atom<'_> {
    let rest = &text[i..];
    let c = rest.chars().next().unwrap_or(' ');
    let single = |kind| Atom {
        text: &rest[..c.len_utf8()],
        chars: 1,
        kind,
        name: "",
    };
    match c {
        '\n' => single(AtomKind::Newline),
        ' ' => single(AtomKind::Space),
        '<' => {
            let end = rest
                .char_indices()
                .skip(1)
                .take(MAX_TAG_CHARS)
                .find(|(_, c)| matches!(c, '>' | '<' | '\n'));
            match end {
                Some((e, '>')) => {
                    let t = &rest[..=e];
                    let inner = &t[1..t.len() - 1];
                    let (kind, name) = if let Some(n) = inner.strip_prefix('/') {
                        (AtomKind::Close, tag_name(n))
                    } else if inner.ends_with('/') || tag_name(inner).is_empty() {
                        (AtomKind::Other, "")
                    } else {
                        (AtomKind::Open, tag_name(inner))
                    };
                    Atom {
                        text: t,
                        chars: t.chars().count(),
                        kind,
                        name,
                    }
                }
                _ => single(AtomKind::Other),
            }
        }
        '&' => {
            let end = rest
                .char_indices()
                .skip(1)
                .take(MAX_ENTITY_CHARS)
                .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '#'));
            match end {
                Some((e, ';')) if e > 1 => Atom {
                    text: &rest[..=e],
                    chars: e + 1,
                    kind: AtomKind::Other,
                    name: "",
                },
                _ => single(AtomKind::Other),
            }
        }
        _ => single(AtomKind::Other),
    }
}

fn atoms(text: &str) -> Vec<Atom<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let a = atom_at(text, i);
        i += a.text.len();
        out.push(a);
    }
    out
}

/// The characters of `</name>`.
fn closer_chars(name: &str) -> usize {
    name.chars().count() + 3
}

/// Applies a tag to the stack of open tags (name, opening tag).
fn apply<'a>(stack: &mut Vec<(&'a str, &'a str)>, a: &Atom<'a>) {
    match a.kind {
        AtomKind::Open => stack.push((a.name, a.text)),
        AtomKind::Close => {
            if let Some(p) = stack.iter().rposition(|(n, _)| *n == a.name) {
                stack.truncate(p);
            }
        }
        _ => {}
    }
}

fn closers_of(stack: &[(&str, &str)]) -> usize {
    stack.iter().map(|(n, _)| closer_chars(n)).sum()
}

/// Splits HTML `text` into messages of at most `max` characters. Breaks at
/// a line end where one fits, else after a space, else between two
/// characters, but never inside a tag, an entity (`&amp;`) or a UTF-8
/// character; a tag still open at a break is closed at the end of its part
/// and opened again at the start of the next, so every part parses alone.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let atoms = atoms(text.trim_end_matches(['\n', '\r']));
    let mut out = Vec::new();
    let mut open: Vec<(&str, &str)> = Vec::new();
    let mut i = 0;
    while i < atoms.len() {
        let prefix: String = open.iter().map(|(_, t)| *t).collect();
        let mut len = prefix.chars().count();
        let mut stack = open.clone();
        let mut closers = closers_of(&stack);
        let mut last_newline: Option<(usize, Vec<(&str, &str)>)> = None;
        let mut last_space: Option<(usize, Vec<(&str, &str)>)> = None;
        let mut j = i;
        while let Some(a) = atoms.get(j) {
            let after = match a.kind {
                AtomKind::Open => closers + closer_chars(a.name),
                AtomKind::Close => {
                    let mut s = stack.clone();
                    apply(&mut s, a);
                    closers_of(&s)
                }
                _ => closers,
            };
            if len + a.chars + after > max {
                break;
            }
            match a.kind {
                AtomKind::Newline if j > i => last_newline = Some((j, stack.clone())),
                AtomKind::Space => last_space = Some((j + 1, stack.clone())),
                _ => {}
            }
            len += a.chars;
            apply(&mut stack, a);
            closers = after;
            j += 1;
        }
        // (end of this part's atoms, where the next part starts, tags open at the end)
        let (end, next, end_stack) = if j == atoms.len() {
            (j, j, stack)
        } else if let Some((k, st)) = last_newline {
            (k, k + 1, st)
        } else if let Some((k, st)) = last_space.filter(|(k, _)| *k > i) {
            (k, k, st)
        } else if j > i {
            (j, j, stack)
        } else if !open.is_empty() {
            // the reopened tags leave no room: start this part without them
            open.clear();
            continue;
        } else {
            // one atom longer than `max` (only when max < MAX_TAG_CHARS): alone
            let mut st = Vec::new();
            apply(&mut st, &atoms[i]);
            (i + 1, i + 1, st)
        };
        let content = &atoms[i..end];
        if content
            .iter()
            .any(|a| !matches!(a.kind, AtomKind::Newline | AtomKind::Space))
        {
            let mut part = prefix;
            for a in content {
                part.push_str(a.text);
            }
            for (n, _) in end_stack.iter().rev() {
                part.push_str("</");
                part.push_str(n);
                part.push('>');
            }
            out.push(part);
        }
        open = end_stack;
        i = next;
    }
    out
}

/// A UTC time like `2024-03-01 14:00`.
pub fn time(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| ts.to_string())
}

/// Whether `ev` is a routine notification (a fill, a closed position, a
/// heartbeat): a burst of those is shortened, never the other kinds.
pub fn is_routine(ev: &Event) -> bool {
    matches!(
        ev.payload,
        Payload::Fill(_) | Payload::PositionClosed(_) | Payload::Heartbeat(_)
    )
}

/// The notification for an event, or None for kinds that are not pushed.
pub fn notification(ev: &Event) -> Option<String> {
    let sym = esc(ev.symbol.as_deref().unwrap_or(""));
    let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let line = match &ev.payload {
        Payload::Fill(r) => {
            let f = &r.fill;
            let (side, why) = match &f.kind {
                FillKind::Buy { .. } => ("BUY", String::new()),
                FillKind::Sell { reason } => ("SELL", format!(" ({})", esc(reason.name()))),
            };
            format!(
                "💱 <b>{side}</b> {sym} {} @ {}{why}",
                esc(&f.qty.to_string()),
                esc(&f.price.to_string())
            )
        }
        Payload::PositionClosed(t) => {
            let icon = match t.close_reason {
                CloseReason::StopLoss => "🛑 <b>Stop-loss</b>",
                CloseReason::TakeProfit => "🎯 <b>Take-profit</b>",
                CloseReason::Kill => "☠️ <b>Closed by kill</b>",
                _ => "✅ <b>Closed</b>",
            };
            format!(
                "{icon} {sym}: P&amp;L {} ({}%), exit {}",
                esc(&t.pnl.to_string()),
                esc(&t.pnl_pct.to_string()),
                esc(&t.exit_price.to_string())
            )
        }
        Payload::Halted(h) => format!("⛔ <b>Risk halt</b>: {}", esc(&h.message)),
        Payload::Halt(h) => format!("⏸ <b>Halted</b> by {}", esc(&h.by)),
        Payload::Resume(r) => format!("▶️ <b>Resumed</b> by {}", esc(&r.by)),
        Payload::Kill(k) => format!(
            "☠️ <b>Kill switch</b> by {}: {} orders cancelled, closing {}",
            esc(&k.by),
            k.outcome.cancelled_orders,
            esc(&k.outcome.closing.join(", "))
        ),
        Payload::Deploy(d) => format!(
            "{} <b>v{}</b> (was v{}) from {}",
            if d.is_rollback() {
                "↩️ <b>Rolled back</b> to"
            } else {
                "🚀 <b>Deployed</b>"
            },
            d.version,
            opt(d.previous),
            esc(d
                .origin
                .as_deref()
                .unwrap_or(if d.offline { "host deploy" } else { "-" }))
        ),
        Payload::DeployFailed(d) => format!("⚠️ <b>Deploy failed</b>: {}", esc(&d.reason)),
        Payload::ModuleError(m) => format!("⚠️ <b>Strategy error</b>: {}", esc(&m.error)),
        Payload::StrategyPaused(p) => {
            format!("⏸ <b>Strategy paused</b>: {}", esc(&p.reason))
        }
        Payload::Alert(a) => format!("🔔 <b>Alert</b>: {}", esc(&a.message)),
        Payload::Error(e) => format!(
            "⚠️ <b>Error</b> in {}: {}",
            match e.site {
                ErrorSite::Account => "account",
                ErrorSite::Engine => "engine",
            },
            esc(&e.error)
        ),
        Payload::OrchestratorRun(r) => format!(
            "🤖 <b>Nightly review</b> {}: {} → {} (see /report)",
            esc(&r.run_id),
            esc(&r.decision),
            esc(&r.outcome)
        ),
        Payload::Reconcile(r) => format!(
            "🔁 <b>Reconciliation</b>: {} fills, cash {}{}{}",
            r.fills,
            esc(&r.cash.to_string()),
            if r.mismatch {
                " — the snapshot disagreed, rebuilt from the fills"
            } else {
                ""
            },
            if r.stale_orders.is_empty() {
                String::new()
            } else {
                format!(", {} stale orders cancelled", r.stale_orders.len())
            }
        ),
        Payload::RegimeChange(r) => format!(
            "🌦 <b>Regime</b> {sym}: {} → {}",
            esc(r.from.as_deref().unwrap_or("-")),
            esc(&r.to)
        ),
        Payload::ConfigChange(c) => format!(
            "⚙️ <b>Configuration changed</b>: {}{}",
            match c.file {
                ConfigFile::Settings => "settings.toml",
                ConfigFile::RiskLimits => "risk_limits.toml",
            },
            if c.changed.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&c.changed.join(", ")))
            }
        ),
        Payload::PauseSymbol(t) => {
            format!("⏸ <b>{sym} paused</b> by {} (exits still run)", esc(&t.by))
        }
        Payload::ForceExit(f) => format!(
            "🚪 <b>Force exit</b> {sym} by {}: closing {} at market",
            esc(&f.by),
            esc(&f.qty.to_string())
        ),
        Payload::ResumeSymbol(t) => format!("▶️ <b>{sym} resumed</b> by {}", esc(&t.by)),
        Payload::Heartbeat(h) => format!(
            "💓 <b>Heartbeat</b>: {} scans, equity {}, {} positions, {} open orders{}",
            h.scans,
            esc(&h.equity.round_dp(2).to_string()),
            h.positions,
            h.open_orders,
            if h.paused_symbols.is_empty() {
                String::new()
            } else {
                format!(", paused: {}", esc(&h.paused_symbols.join(", ")))
            }
        ),
        Payload::ShadowStarted(s) => format!(
            "🕶 <b>In shadow</b>: candidate #{} runs beside the incumbent ({})",
            s.shadow_id,
            esc(&s.origin)
        ),
        Payload::ShadowPromoted(s) => format!(
            "🚀 <b>Shadow promoted</b>: #{} is v{}: {}",
            s.shadow_id,
            s.version,
            esc(&s.detail)
        ),
        Payload::ShadowRefused(s) => format!(
            "🚫 <b>Shadow refused</b>: #{}: {}",
            s.shadow_id,
            esc(&s.detail)
        ),
        Payload::AutoRollback(r) => {
            format!("↩️ <b>Automatic rollback</b>: {}", esc(&r.message))
        }
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

    fn closed(reason: CloseReason) -> trading_core::ClosedTrade {
        use rust_decimal_macros::dec;
        trading_core::ClosedTrade {
            symbol: "BTC<USD".into(),
            side: trading_core::Side::Long,
            qty: dec!(1),
            entry_price: dec!(100),
            exit_price: dec!(99),
            pnl: dec!(-1.5),
            pnl_pct: dec!(-2),
            fees: dec!(0.5),
            intent: trading_core::Intent::Swing,
            opened_at: 0,
            closed_at: 60,
            close_reason: reason,
            tag: "t".into(),
        }
    }

    #[test]
    fn notifications_escape_and_name_stops() {
        let ev = Event {
            seq: 1,
            ts: 0,
            symbol: Some("BTC<USD".into()),
            payload: Payload::PositionClosed(closed(CloseReason::StopLoss)),
        };
        let n = notification(&ev).unwrap();
        assert!(
            n.contains("Stop-loss") && n.contains("BTC&lt;USD") && n.contains("-1.5"),
            "{n}"
        );
        let ev = Event {
            payload: Payload::RiskDecision(host_store::payloads::RiskDecision {
                scan: 1,
                signal: trading_core::Signal {
                    symbol: "BTCUSD".into(),
                    action: trading_core::Action::Buy,
                    size_pct: 1.0,
                    order_type: trading_core::OrderType::Market,
                    limit_price: None,
                    stop_loss: None,
                    take_profit: None,
                    intent: trading_core::Intent::Swing,
                    confidence: 0.5,
                    reasoning: String::new(),
                    tag: String::new(),
                    slippage_tolerance: None,
                },
                decision: "approved".into(),
                reason: None,
            }),
            ..ev
        };
        assert!(notification(&ev).is_none());
    }

    #[test]
    fn the_seeds_events_are_pushed() {
        let ev = |payload| Event {
            seq: 1,
            ts: 0,
            symbol: Some("ETHUSD".into()),
            payload,
        };
        let n = notification(&ev(Payload::PauseSymbol(
            host_store::payloads::SymbolToggle {
                by: "telegram".into(),
                changed: true,
            },
        )))
        .unwrap();
        assert!(n.contains("ETHUSD paused"), "{n}");
        let n = notification(&ev(Payload::RegimeChange(
            host_store::payloads::RegimeChange {
                from: Some("ranging".into()),
                to: "trending_up".into(),
            },
        )))
        .unwrap();
        assert!(n.contains("ranging → trending_up"), "{n}");
    }
}
