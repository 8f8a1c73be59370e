//! The WebSocket stream at `/api/v1/ws`: clients subscribe to channels
//! (`{"op":"subscribe","channels":["fills","positions","risk","strategy",
//! "orders","events"],"since":SEQ}`), get the stored events after `since`
//! replayed from the database, then every new event live (from the bus, and
//! from the database for other processes' events), each once, in order.

use super::routes::{query_events, EventFilter, Fail, Query};
use super::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use host_store::events::{Event, EventKind};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// The channels and the event kinds each carries (`events` carries all).
pub const CHANNELS: &[(&str, &[EventKind])] = &[
    ("fills", &[EventKind::Fill]),
    (
        "positions",
        &[
            EventKind::Fill,
            EventKind::PositionClosed,
            EventKind::Kill,
            EventKind::Reconcile,
        ],
    ),
    (
        "orders",
        &[
            EventKind::Order,
            EventKind::OrderCancelled,
            EventKind::OrderExpired,
        ],
    ),
    (
        "risk",
        &[
            EventKind::RiskDecision,
            EventKind::Counterfactual,
            EventKind::Halted,
            EventKind::Halt,
            EventKind::Resume,
            EventKind::Kill,
            EventKind::Alert,
            EventKind::StaleData,
            EventKind::PauseSymbol,
            EventKind::ResumeSymbol,
            EventKind::RegimeChange,
        ],
    ),
    (
        "strategy",
        &[
            EventKind::Deploy,
            EventKind::DeployFailed,
            EventKind::ModuleError,
            EventKind::StrategyPaused,
            EventKind::TuningTrigger,
            EventKind::OrchestratorRun,
            EventKind::ReviewStarted,
            EventKind::ConfigChange,
        ],
    ),
    ("events", &[]),
];

/// The subscribed channel an event is delivered on, if any.
pub fn channel_of(ev: &Event, subs: &BTreeSet<String>) -> Option<&'static str> {
    CHANNELS.iter().find_map(|(name, kinds)| {
        let hit = subs.contains(*name)
            && (kinds.is_empty() || ev.kind().is_some_and(|k| kinds.contains(&k)));
        hit.then_some(*name)
    })
}

pub(crate) async fn upgrade(
    State(s): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, Fail> {
    let q = Query::parse(q.as_deref(), &["token", "since", "channels"])?;
    let since = q.int("since", 0, i64::MAX)?;
    let initial = match q_channels(&q) {
        Ok(c) => c,
        Err(m) => return Err(Fail(axum::http::StatusCode::BAD_REQUEST, m)),
    };
    Ok(ws.on_upgrade(move |socket| session(s, socket, initial, since)))
}

fn q_channels(q: &Query) -> Result<Vec<String>, String> {
    // Re-parse through the same validation as a subscribe message.
    match q.raw("channels") {
        None => Ok(Vec::new()),
        Some(c) => parse_channels(&Value::Array(
            c.split(',').map(|s| Value::String(s.to_string())).collect(),
        )),
    }
}

fn parse_channels(v: &Value) -> Result<Vec<String>, String> {
    let Some(list) = v.as_array() else {
        return Err("channels: expected a list of channel names".into());
    };
    list.iter()
        .map(|c| match c.as_str() {
            Some(n) if CHANNELS.iter().any(|(name, _)| *name == n) => Ok(n.to_string()),
            _ => Err(format!(
                "channels: {c} is not one of {}",
                CHANNELS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        })
        .collect()
}

async fn send(socket: &mut WebSocket, v: Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn deliver(
    socket: &mut WebSocket,
    ev: &Event,
    subs: &BTreeSet<String>,
    last: &mut i64,
) -> bool {
    if ev.seq <= *last {
        return true;
    }
    *last = ev.seq;
    match channel_of(ev, subs) {
        Some(ch) => {
            send(
                socket,
                json!({ "type": "event", "channel": ch, "data": ev }),
            )
            .await
        }
        None => true,
    }
}

/// Replays stored events after `since` (in pages) to the subscribed channels.
async fn replay(
    s: &Arc<AppState>,
    socket: &mut WebSocket,
    since: i64,
    subs: &BTreeSet<String>,
    last: &mut i64,
) -> bool {
    let mut from = since;
    loop {
        let h = s.handle.clone();
        let f = EventFilter {
            since: Some(from),
            ..Default::default()
        };
        let page = tokio::task::spawn_blocking(move || {
            h.read_db().and_then(|c| query_events(&c, &f, 500))
        })
        .await;
        let page = match page {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                return send(
                    socket,
                    json!({ "type": "error", "error": format!("replay: database: {e}") }),
                )
                .await
            }
            Err(e) => {
                return send(
                    socket,
                    json!({ "type": "error", "error": format!("replay: {e}") }),
                )
                .await
            }
        };
        let Some(end) = page.last().map(|e| e.seq) else {
            return true;
        };
        for ev in &page {
            if !deliver(socket, ev, subs, last).await {
                return false;
            }
        }
        from = end;
    }
}

async fn session(
    s: Arc<AppState>,
    mut socket: WebSocket,
    initial: Vec<String>,
    since: Option<i64>,
) {
    // Subscribe to the bus first so nothing falls between the replay and the live stream.
    let mut rx = s.handle.subscribe();
    let mut subs: BTreeSet<String> = initial.into_iter().collect();
    let mut last = -1i64;
    if !send(&mut socket, json!({ "type": "hello", "channels": CHANNELS.iter().map(|(n, _)| *n).collect::<Vec<_>>(), "subscribed": subs })).await {
        return;
    }
    match since {
        Some(since) => {
            if !replay(&s, &mut socket, since, &subs, &mut last).await {
                return;
            }
        }
        None => {
            // Live from now on: start after the newest stored event.
            let h = s.handle.clone();
            let max = tokio::task::spawn_blocking(move || {
                h.read_db().and_then(|c| {
                    c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
                })
            })
            .await;
            last = max.ok().and_then(Result::ok).unwrap_or(0);
        }
    }
    // Events appended by other processes (`host orchestrate`) never reach this
    // process's bus: the database is tailed too, delivering each event once, in order.
    let mut tail = tokio::time::interval(std::time::Duration::from_secs(5));
    tail.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tail.tick() => {
                if !replay(&s, &mut socket, last, &subs.clone(), &mut last).await { return }
            }
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let reply = handle_op(&s, &mut socket, &text, &mut subs, &mut last).await;
                match reply {
                    Some(v) => if !send(&mut socket, v).await { return },
                    None => return,
                }
            }
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    // A gap in the sequence: events appended by another process, read from the database first.
                    if ev.seq > last + 1 && !replay(&s, &mut socket, last, &subs.clone(), &mut last).await { return }
                    if !deliver(&mut socket, &ev, &subs, &mut last).await { return }
                }
                Err(RecvError::Lagged(n)) => {
                    // Catch up from the database, which holds every event.
                    if !send(&mut socket, json!({ "type": "lagged", "missed": n })).await { return }
                    if !replay(&s, &mut socket, last, &subs.clone(), &mut last).await { return }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }
}

/// One client message, parsed.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Subscribe {
        channels: Vec<String>,
        since: Option<i64>,
    },
    Unsubscribe {
        channels: Vec<String>,
        since: Option<i64>,
    },
    Ping,
}

/// Parses a client message (`{"op": "subscribe", "channels": [...], "since": n}`,
/// `unsubscribe`, `ping`; `type` is accepted for `op`); the error is the reply's text.
fn parse_op(text: &str) -> Result<Op, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let op = v
        .get("op")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match op {
        "subscribe" | "unsubscribe" => {
            let channels = parse_channels(v.get("channels").unwrap_or(&Value::Null))?;
            let since = match v.get("since") {
                None | Some(Value::Null) => None,
                Some(x) => Some(
                    x.as_i64()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| format!("since: {x} is not an event sequence number"))?,
                ),
            };
            Ok(if op == "subscribe" {
                Op::Subscribe { channels, since }
            } else {
                Op::Unsubscribe { channels, since }
            })
        }
        "ping" => Ok(Op::Ping),
        other => Err(format!(
            "unknown op {other:?}: expected subscribe, unsubscribe or ping"
        )),
    }
}

/// Applies one client message; the reply to send (None: the socket failed).
async fn handle_op(
    s: &Arc<AppState>,
    socket: &mut WebSocket,
    text: &str,
    subs: &mut BTreeSet<String>,
    last: &mut i64,
) -> Option<Value> {
    let (since, subscribe, channels) = match parse_op(text) {
        Err(e) => return Some(json!({ "type": "error", "error": e })),
        Ok(Op::Ping) => return Some(json!({ "type": "pong" })),
        Ok(Op::Subscribe { channels, since }) => (since, true, channels),
        Ok(Op::Unsubscribe { channels, since }) => (since, false, channels),
    };
    if subscribe {
        subs.extend(channels);
    } else {
        for c in channels {
            subs.remove(&c);
        }
    }
    if let Some(since) = since {
        // A fresh replay for the new subscription set.
        *last = since;
        if !replay(s, socket, since, &subs.clone(), last).await {
            return None;
        }
    }
    Some(
        json!({ "type": "subscribed", "channels": subs.clone(), "last_seq": (*last >= 0).then_some(*last) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_store::events::Payload;

    #[test]
    fn channels_route_event_kinds() {
        let ev = |kind: &str| {
            let detail = match kind {
                "fill" => {
                    r#"{"order_id":1,"fill":{"symbol":"X","qty":"1","price":"1","fee":"0","time":0,"kind":{"side":"sell","reason":"signal"}},"clipped_from":null}"#
                }
                "halt" => r#"{"by":"api","reason":"manual","newly":true}"#,
                _ => r#"{"version":1,"previous":null}"#,
            };
            let payload = Payload::decode(kind, detail);
            assert!(payload.kind().is_some(), "{kind}: {payload:?}");
            Event {
                seq: 1,
                ts: 0,
                symbol: None,
                payload,
            }
        };
        let subs: BTreeSet<String> = ["fills".to_string(), "risk".to_string()].into();
        assert_eq!(channel_of(&ev("fill"), &subs), Some("fills"));
        assert_eq!(channel_of(&ev("halt"), &subs), Some("risk"));
        assert_eq!(channel_of(&ev("deploy"), &subs), None);
        let all: BTreeSet<String> = ["events".to_string()].into();
        assert_eq!(channel_of(&ev("deploy"), &all), Some("events"));
        assert!(parse_channels(&json!(["fills", "nope"])).is_err());
        assert!(parse_channels(&json!("fills")).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json_text() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| json!(f)),
                prop_oneof![
                    Just("fills".to_string()),
                    Just("events".to_string()),
                    Just("subscribe".to_string()),
                    Just("ping".to_string()),
                    "[ -~]{0,12}"
                ]
                .prop_map(Value::from),
            ];
            let v = leaf.prop_recursive(3, 32, 5, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map(
                        prop_oneof![
                            Just("op".to_string()),
                            Just("type".to_string()),
                            Just("channels".to_string()),
                            Just("since".to_string()),
                            "[a-z]{1,6}"
                        ],
                        inner,
                        0..5
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            });
            prop_oneof![v.prop_map(|v| v.to_string()), "(?s).{0,200}"]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn any_client_message_parses_without_a_panic(text in json_text()) {
                match parse_op(&text) {
                    Ok(Op::Subscribe { channels, since } | Op::Unsubscribe { channels, since }) => {
                        prop_assert!(channels.iter().all(|c| CHANNELS.iter().any(|(n, _)| n == c)));
                        prop_assert!(since.is_none_or(|n| n >= 0));
                    }
                    Ok(Op::Ping) | Err(_) => {}
                }
            }
        }
    }
}
