//! The Telegram bot of the real `host` binary against a loopback server
//! speaking the Bot API (`getUpdates` long polling and `sendMessage`, with
//! the documented Update / Message JSON): commands answered, /halt halts,
//! an unauthorized chat ignored, malformed updates survived, a 429 with
//! `retry_after` honoured, long answers split at line boundaries, the kill
//! confirmation, notifications pushed, and the token never logged.

use crate::people_host;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Json;
use people_host::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const BOT_TOKEN: &str = "123456:TEST-bot-token-9f8e";
const CHAT: i64 = 4242;
const STRANGER: i64 = 999;

#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    chat_id: i64,
    text: String,
    parse_mode: String,
    /// Answered with a 429.
    refused: bool,
}

#[derive(Default)]
struct Fake {
    updates: Mutex<Vec<Value>>,
    next_id: Mutex<i64>,
    arrived: Notify,
    sent: Mutex<Vec<Sent>>,
    refuse_next: Mutex<u32>,
    bad_token_calls: Mutex<u32>,
}

impl Fake {
    fn push(&self, update: Value) {
        self.updates.lock().unwrap().push(update);
        self.arrived.notify_waiters();
    }

    fn next_id(&self) -> i64 {
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        *n
    }

    /// A text message from `chat` (the documented Update/Message shape).
    fn message(&self, chat: i64, text: &str) -> i64 {
        let id = self.next_id();
        self.push(json!({
            "update_id": id,
            "message": {
                "message_id": id * 10,
                "from": { "id": chat, "is_bot": false, "first_name": "Test", "username": "tester" },
                "chat": { "id": chat, "type": "private", "first_name": "Test" },
                "date": 1_700_000_000 + id,
                "text": text,
                "entities": [{ "offset": 0, "length": text.split(' ').next().unwrap().len(), "type": "bot_command" }]
            }
        }));
        id
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

async fn bot_api(
    State(f): State<Arc<Fake>>,
    uri: Uri,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let path = uri.path().to_string();
    let Some(rest) = path.strip_prefix(&format!("/bot{BOT_TOKEN}/")) else {
        *f.bad_token_calls.lock().unwrap() += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "ok": false, "error_code": 401, "description": "Unauthorized" })),
        );
    };
    let req: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    match rest {
        "getUpdates" => {
            let offset = req["offset"].as_i64().unwrap_or(0);
            let timeout = Duration::from_secs(req["timeout"].as_u64().unwrap_or(0));
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let wake = f.arrived.notified();
                {
                    let mut q = f.updates.lock().unwrap();
                    // Confirmed updates (id < offset) are forgotten, as Telegram does.
                    q.retain(|u| u["update_id"].as_i64().is_none_or(|id| id >= offset));
                    if !q.is_empty() {
                        return (
                            StatusCode::OK,
                            Json(json!({ "ok": true, "result": q.clone() })),
                        );
                    }
                }
                if tokio::time::timeout_at(deadline, wake).await.is_err() {
                    return (StatusCode::OK, Json(json!({ "ok": true, "result": [] })));
                }
            }
        }
        "sendMessage" => {
            let refuse = {
                let mut n = f.refuse_next.lock().unwrap();
                let r = *n > 0;
                *n = n.saturating_sub(1);
                r
            };
            f.sent.lock().unwrap().push(Sent {
                at: Instant::now(),
                chat_id: req["chat_id"].as_i64().unwrap_or(0),
                text: req["text"].as_str().unwrap_or("").to_string(),
                parse_mode: req["parse_mode"].as_str().unwrap_or("").to_string(),
                refused: refuse,
            });
            if refuse {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(
                        json!({ "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1", "parameters": { "retry_after": 1 } }),
                    ),
                );
            }
            let text_len = req["text"].as_str().map_or(0, |t| t.chars().count());
            if text_len > 4096 {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(
                        json!({ "ok": false, "error_code": 400, "description": "Bad Request: message is too long" }),
                    ),
                );
            }
            (
                StatusCode::OK,
                Json(
                    json!({ "ok": true, "result": { "message_id": 1, "date": 1_700_000_000, "chat": { "id": req["chat_id"], "type": "private" }, "text": req["text"] } }),
                ),
            )
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({ "ok": false, "error_code": 404, "description": "Not Found" })),
        ),
    }
}

/// Waits until a message to CHAT sent after `from` satisfies `pred`.
async fn reply(
    host: &RunningHost,
    f: &Fake,
    from: usize,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> (usize, Sent) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent = f.sent();
        if let Some((i, s)) = sent
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, s)| !s.refused && s.chat_id == CHAT && pred(&s.text))
        {
            return (i, s.clone());
        }
        assert!(
            Instant::now() < deadline,
            "no reply {what}; sent: {:#?}\nhost log:\n{}",
            sent.iter().map(|s| &s.text).collect::<Vec<_>>(),
            host.stderr()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn api_get(host: &RunningHost, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", host.api))
        .bearer_auth(host.token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_answers_obeys_only_its_chat_and_survives_bad_input() {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(bot_api)
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let settings = format!(
        "[telegram]\napi_url = \"http://127.0.0.1:{port}\"\nchat_id = {CHAT}\npoll_timeout_s = 5\n"
    );
    let host = tokio::task::spawn_blocking(move || {
        start("max", &settings, &[("TELEGRAM_BOT_TOKEN", BOT_TOKEN)])
    })
    .await
    .unwrap();

    // /status is answered in HTML.
    fake.message(CHAT, "/status");
    let (_, s) = reply(&host, &fake, 0, "to /status", |t| {
        t.contains("<b>Status</b>")
    })
    .await;
    assert_eq!(s.parse_mode, "HTML");
    assert!(
        s.text.contains("Equity") && s.text.contains("P&amp;L"),
        "{}",
        s.text
    );

    // Malformed updates (wrong types, no message, not even an object) are skipped.
    let n = fake.sent().len();
    let a = fake.next_id();
    fake.push(json!({ "update_id": a, "message": { "message_id": "x", "chat": "nope" } }));
    let b = fake.next_id();
    fake.push(json!({ "update_id": b, "edited_channel_post": { "weird": true } }));
    let c = fake.next_id();
    fake.push(json!({ "update_id": c, "message": { "message_id": 1, "chat": { "id": CHAT }, "text": 7 } }));
    fake.message(CHAT, "/help");
    reply(&host, &fake, n, "to /help after malformed updates", |t| {
        t.contains("<b>Commands</b>") && t.contains("&lt;version&gt;")
    })
    .await;

    // A stranger's /halt is ignored; the chat's own /halt halts.
    let n = fake.sent().len();
    fake.message(STRANGER, "/halt");
    fake.message(CHAT, "/risk");
    let (_, r) = reply(&host, &fake, n, "to /risk", |t| t.contains("<b>Risk</b>")).await;
    assert!(r.text.contains("Kill switch: off"), "{}", r.text);
    let halts = api_get(&host, "/api/v1/events?kind=halt").await;
    assert_eq!(
        halts["events"],
        json!([]),
        "the stranger's /halt must not act"
    );
    assert!(
        fake.sent().iter().all(|s| s.chat_id == CHAT),
        "nothing is ever sent to another chat"
    );
    let strangers = api_get(&host, "/api/v1/events?kind=telegram_unauthorized").await;
    assert_eq!(
        strangers["events"][0]["detail"]["chat"],
        json!(STRANGER),
        "the ignored stranger is recorded in the event log"
    );

    fake.message(CHAT, "/halt");
    reply(&host, &fake, n, "to /halt", |t| {
        t.contains("Halted") || t.contains("Already halted")
    })
    .await;
    let halts = api_get(&host, "/api/v1/events?kind=halt").await;
    assert_eq!(halts["events"][0]["detail"]["by"], "telegram", "{halts}");
    let st = tokio::task::block_in_place(|| host.status_json());
    assert!(
        st["account"]["halt"].is_string(),
        "host status shows the halt: {st}"
    );

    // A 429 with retry_after: the same message is sent again after waiting.
    let n = fake.sent().len();
    *fake.refuse_next.lock().unwrap() = 1;
    fake.message(CHAT, "/balance");
    reply(&host, &fake, n, "to /balance after a 429", |t| {
        t.contains("<b>Balance</b>")
    })
    .await;
    let sent = fake.sent();
    let (i, refused) = sent
        .iter()
        .enumerate()
        .skip(n)
        .find(|(_, s)| s.refused)
        .expect("a 429 was served");
    let retry = sent[i + 1..].iter().find(|s| !s.refused).expect("a retry");
    assert_eq!(
        retry.text, refused.text,
        "the refused message is the one retried"
    );
    assert!(
        retry.at.duration_since(refused.at) >= Duration::from_millis(950),
        "retry_after was not honoured"
    );

    // Long answers are split under 4096 characters at line boundaries.
    let n = fake.sent().len();
    fake.message(CHAT, "/logs 1000");
    let (first, head) = reply(&host, &fake, n, "to /logs", |t| t.starts_with("<b>Last ")).await;
    let count: usize = head.text["<b>Last ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let parts: Vec<Sent> = fake.sent()[first..]
        .iter()
        .filter(|s| !s.refused)
        .take_while(|s| s.text.starts_with("<b>Last") || s.text.starts_with('#'))
        .cloned()
        .collect();
    assert!(
        parts.len() >= 2,
        "{count} log lines fit one message? {}",
        head.text.len()
    );
    for p in &parts {
        assert!(p.text.chars().count() <= 4096);
        assert!(
            p.text
                .lines()
                .all(|l| l.starts_with('#') || l.starts_with("<b>Last")),
            "split inside a line: {}",
            p.text
        );
    }
    let lines: usize = parts.iter().map(|p| p.text.lines().count()).sum();
    assert_eq!(lines, count + 1, "every event line arrives once");

    // Kill asks for confirmation first.
    let n = fake.sent().len();
    fake.message(CHAT, "/kill");
    reply(&host, &fake, n, "to /kill", |t| t.contains("/kill confirm")).await;
    fake.message(CHAT, "/kill confirm");
    reply(&host, &fake, n, "to /kill confirm", |t| {
        t.contains("Kill switch engaged")
    })
    .await;
    let st = api_get(&host, "/api/v1/status").await;
    assert_eq!(st["killed"], true);

    // A nightly run recorded by another process (`host orchestrate`): notified
    // from the database, and /report shows it.
    {
        let conn = host_store::db::open(&host.path().join("data/host.db")).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.execute(
            "INSERT INTO orchestrator_runs (run_id, ts, trigger, proposer, decision, template, params, outcome, report)
             VALUES ('run-42', 1700000000, 'nightly', 'offline', 'retune', 'sma', '[]', 'rejected', '{\"summary\":\"kept <v1> & waited\"}')",
            [],
        )
        .unwrap();
        host_store::events::append(
            &conn,
            1_700_000_000,
            "orchestrator_run",
            None,
            &json!({ "run_id": "run-42", "outcome": "rejected", "decision": "retune" }),
        )
        .unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    reply(&host, &fake, n, "the nightly run notification", |t| {
        t.contains("🤖 <b>Nightly review</b> run-42: retune → rejected")
    })
    .await;
    fake.message(CHAT, "/report");
    let (_, r) = reply(&host, &fake, n, "to /report", |t| {
        t.contains("<b>Report run-42</b>")
    })
    .await;
    assert!(
        r.text.contains("kept &lt;v1&gt; &amp; waited"),
        "{}",
        r.text
    );

    // Notifications from the event bus: replayed fills and the halt.
    let all: Vec<String> = fake.sent().into_iter().map(|s| s.text).collect();
    assert!(
        all.iter().any(|t| t.contains("💱 <b>BUY</b> BTCUSD")),
        "fill notifications"
    );
    assert!(
        all.iter()
            .any(|t| t.contains("⏸ <b>Halted</b> by telegram")),
        "halt notification"
    );

    assert_eq!(*fake.bad_token_calls.lock().unwrap(), 0);
    let log = host.stderr();
    assert!(
        !log.contains(BOT_TOKEN) && !log.contains("TEST-bot-token"),
        "the bot token must never be logged"
    );
    assert!(log.contains("unauthorized chat"), "the stranger is logged");
}
