//! Message formatting for Telegram's HTML parse mode: escaping, splitting
//! long answers under the 4096-character limit (at line boundaries where it
//! can, never inside a tag, an entity or a character), and the text of
//! notifications built from host events.

use host_store::events::Event;
use host_store::selection as sel;
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
        sel::EVENT_SHADOW_STARTED => format!(
            "🕶 <b>In shadow</b>: candidate #{} runs beside the incumbent ({})",
            esc(&s(&d["shadow_id"])),
            esc(&s(&d["origin"]))
        ),
        sel::EVENT_SHADOW_PROMOTED => format!(
            "🚀 <b>Shadow promoted</b>: #{} is v{}: {}",
            esc(&s(&d["shadow_id"])),
            esc(&s(&d["version"])),
            esc(&s(&d["detail"]))
        ),
        sel::EVENT_SHADOW_REFUSED => format!(
            "🚫 <b>Shadow refused</b>: #{}: {}",
            esc(&s(&d["shadow_id"])),
            esc(&s(&d["detail"]))
        ),
        sel::EVENT_AUTO_ROLLBACK => {
            format!("↩️ <b>Automatic rollback</b>: {}", esc(&s(&d["message"])))
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
