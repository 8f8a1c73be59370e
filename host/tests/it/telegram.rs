//! The Telegram bot of the real `host` binary against a loopback server
//! speaking the Bot API (`getUpdates` long polling and `sendMessage`, with
//! the documented Update / Message JSON): commands answered, /halt halts,
//! an unauthorized chat ignored, malformed updates survived, a 429 with
//! `retry_after` honoured, long answers split at line boundaries, the kill
//! confirmation, notifications pushed, and the token never logged. And the
//! bot's door: group members who may not steer are refused, a kill is
//! confirmed only by the user who asked and only in time (on a manual
//! clock), strangers are recorded at a limited rate, the hostile update
//! corpus in `hostile/telegram/` is replayed, and splitting never cuts a
//! tag or an entity (property test).

use crate::people_host;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::Json;
use host_telegram::access::{Admission, Gate};
use host_telegram::api::{parse_update, Incoming};
use host_telegram::commands::{is_steering, KillStep, Session, KILL_CONFIRM_WINDOW};
use people_host::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use trading_core::clock::{Clock, ManualClock};

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
    /// Every `setMyCommands` body received.
    my_commands: Mutex<Vec<Value>>,
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

    /// A text message in `chat` (of Telegram type `kind`) from user `from`.
    fn message_as(&self, chat: i64, kind: &str, from: i64, text: &str) -> i64 {
        let id = self.next_id();
        self.push(json!({
            "update_id": id,
            "message": {
                "message_id": id * 10,
                "from": { "id": from, "is_bot": false, "first_name": format!("U{from}") },
                "chat": { "id": chat, "type": kind, "title": "Trading desk" },
                "date": 1_700_000_000 + id,
                "text": text
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
        "setMyCommands" => {
            f.my_commands.lock().unwrap().push(req.clone());
            (StatusCode::OK, Json(json!({ "ok": true, "result": true })))
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

/// Issue 17: freqtrade's command set. Every command of
/// [`host_telegram::commands::COMMANDS`] is registered with `setMyCommands`
/// at start, listed by /help, and answered against the real host: the
/// reports read the account, /pause and /resume with a symbol toggle its
/// entries (recorded as `pause_symbol` / `resume_symbol`, shown in the
/// status), /stopentry halts, a symbol that is not configured is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_is_registered_listed_and_answered() {
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
    // some history first, so the reports have trades to read
    for _ in 0..1200 {
        let st = api_get(&host, "/api/v1/status").await;
        if st["closed_trades"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // setMyCommands: exactly the listed commands, each described
    let names: Vec<&str> = host_telegram::commands::COMMANDS
        .iter()
        .map(|c| c.0)
        .collect();
    for want in [
        "profit",
        "balance",
        "daily",
        "weekly",
        "monthly",
        "performance",
        "trades",
        "count",
        "stopentry",
        "forceexit",
        "show_config",
        "logs",
        "health",
        "version",
        "karma",
        "shadow",
        "pause",
        "resume",
    ] {
        assert!(names.contains(&want), "{want} is not a command");
    }
    let registered = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(b) = fake.my_commands.lock().unwrap().first().cloned() {
                break b;
            }
            assert!(
                Instant::now() < deadline,
                "setMyCommands never called:\n{}",
                host.stderr()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    };
    let listed: Vec<&str> = registered["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(!c["description"].as_str().unwrap().is_empty(), "{c}");
            c["command"].as_str().unwrap()
        })
        .collect();
    assert_eq!(listed, names);

    // /help lists every one
    let n = fake.sent().len();
    fake.message(CHAT, "/help");
    let (_, help) = reply(&host, &fake, n, "to /help", |t| {
        t.contains("<b>Commands</b>")
    })
    .await;
    for c in &names {
        assert!(
            help.text.contains(&format!("/{c}")),
            "/{c} missing from /help:\n{}",
            help.text
        );
    }

    // each read-only command, and what its answer must hold
    let reads: &[(&str, &[&str])] = &[
        ("/profit", &["<b>Profit</b>", "Expectancy"]),
        ("/balance", &["<b>Balance</b>", "Equity"]),
        ("/daily 3", &["Today"]),
        ("/weekly", &["Weekly"]),
        ("/monthly 2", &["Monthly"]),
        ("/performance", &["BTCUSD"]),
        ("/trades 2", &["trades</b>"]),
        ("/count", &["<b>Count</b>", "of 3 allowed"]),
        (
            "/show_config",
            &["<b>Configuration</b>", "max_open_positions", "BTCUSD"],
        ),
        ("/logs 5", &["<b>Last 5 events</b>"]),
        ("/health", &["<b>Health</b>", "events verified"]),
        ("/version", &["<b>Version</b>", env!("CARGO_PKG_VERSION")]),
        ("/karma", &["<b>Karma</b>", "hit"]),
        ("/shadow", &["Shadow book"]),
    ];
    for (cmd, parts) in reads {
        let n = fake.sent().len();
        fake.message(CHAT, cmd);
        let (_, r) = reply(&host, &fake, n, &format!("to {cmd}"), |t| {
            t.contains(parts[0]) || t.contains("Unknown command")
        })
        .await;
        for p in *parts {
            assert!(r.text.contains(p), "{cmd}: {p:?} missing in\n{}", r.text);
        }
    }

    // /pause BTCUSD: no new entries on it, recorded and shown
    let n = fake.sent().len();
    fake.message(CHAT, "/pause btcusd");
    reply(&host, &fake, n, "to /pause", |t| {
        t.contains("BTCUSD: no new entries")
    })
    .await;
    let paused = api_get(&host, "/api/v1/events?kind=pause_symbol").await;
    assert_eq!(paused["events"][0]["symbol"], "BTCUSD", "{paused}");
    assert_eq!(paused["events"][0]["detail"]["by"], "telegram", "{paused}");
    let st = api_get(&host, "/api/v1/status").await;
    assert_eq!(st["paused_symbols"], json!(["BTCUSD"]), "{st}");
    let n = fake.sent().len();
    fake.message(CHAT, "/count");
    reply(&host, &fake, n, "to /count while paused", |t| {
        t.contains("Paused symbols: BTCUSD")
    })
    .await;
    // the same through the CLI (control socket): already paused
    let out = tokio::task::block_in_place(|| host.cli(&["pause", "BTCUSD"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("paused already"));
    // a symbol the host does not trade is refused
    let n = fake.sent().len();
    fake.message(CHAT, "/pause DOGEUSD");
    reply(&host, &fake, n, "to /pause DOGEUSD", |t| {
        t.contains("not a configured symbol")
    })
    .await;
    let n = fake.sent().len();
    fake.message(CHAT, "/resume BTCUSD");
    reply(&host, &fake, n, "to /resume BTCUSD", |t| {
        t.contains("entries allowed again")
    })
    .await;
    let resumed = api_get(&host, "/api/v1/events?kind=resume_symbol").await;
    assert_eq!(resumed["events"][0]["detail"]["changed"], true, "{resumed}");
    let st = api_get(&host, "/api/v1/status").await;
    assert_eq!(st["paused_symbols"], json!([]), "{st}");

    // /forceexit: a position is closed at market, or there is none
    let n = fake.sent().len();
    fake.message(CHAT, "/forceexit BTCUSD");
    let (_, r) = reply(&host, &fake, n, "to /forceexit", |t| {
        t.contains("closing") || t.contains("no open position")
    })
    .await;
    if r.text.contains("closing") {
        let ev = api_get(&host, "/api/v1/events?kind=force_exit").await;
        assert_eq!(ev["events"][0]["symbol"], "BTCUSD", "{ev}");
    }
    let n = fake.sent().len();
    fake.message(CHAT, "/forceexit");
    reply(&host, &fake, n, "to /forceexit without a symbol", |t| {
        t.contains("Usage")
    })
    .await;

    // /stopentry halts like /halt
    let n = fake.sent().len();
    fake.message(CHAT, "/stopentry");
    reply(&host, &fake, n, "to /stopentry", |t| t.contains("Halted")).await;
    let halts = api_get(&host, "/api/v1/events?kind=halt").await;
    assert_eq!(halts["events"][0]["detail"]["by"], "telegram", "{halts}");
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
    // the parts are sent one after another: wait for all of them (a
    // condition poll; reading at once raced the sender under load)
    let answer = || -> Vec<Sent> {
        fake.sent()[first..]
            .iter()
            .filter(|s| !s.refused)
            .take_while(|s| s.text.starts_with("<b>Last") || s.text.starts_with('#'))
            .cloned()
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut parts = answer();
    while parts.iter().map(|p| p.text.lines().count()).sum::<usize>() < count + 1
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        parts = answer();
    }
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
            None,
            &host_store::events::Payload::OrchestratorRun(host_store::payloads::OrchestratorRun {
                run_id: "run-42".into(),
                outcome: "rejected".into(),
                decision: "retune".into(),
            }),
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

    // Notifications from the event bus: replayed fills and the halt (sent
    // as the bus delivers them: waited for, not read at one instant)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let all: Vec<String> = loop {
        let all: Vec<String> = fake.sent().into_iter().map(|s| s.text).collect();
        let done = all.iter().any(|t| t.contains("💱 <b>BUY</b> BTCUSD"))
            && all
                .iter()
                .any(|t| t.contains("⏸ <b>Halted</b> by telegram"));
        if done || std::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
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

/// Starts a loopback Bot API server and a host whose `[telegram]` has `extra` appended.
async fn bot_and_host(extra: &str) -> (Arc<Fake>, RunningHost) {
    let fake = Arc::new(Fake::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(bot_api)
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let settings = format!(
        "[telegram]\napi_url = \"http://127.0.0.1:{port}\"\nchat_id = {CHAT}\npoll_timeout_s = 5\n{extra}\n"
    );
    let host = tokio::task::spawn_blocking(move || {
        start("max", &settings, &[("TELEGRAM_BOT_TOKEN", BOT_TOKEN)])
    })
    .await
    .unwrap();
    (fake, host)
}

const ALICE: i64 = 111;
const BOB: i64 = 222;
const MALLORY: i64 = 555;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_group_only_listed_users_steer_and_each_confirms_only_their_own_kill() {
    let (fake, host) = bot_and_host(&format!("user_ids = [{ALICE}, {BOB}]")).await;
    let killed = || async { api_get(&host, "/api/v1/status").await["killed"].clone() };

    // A group member who is not listed: /kill refused (once answered), the
    // confirm does nothing, /deploy and /resume refused too; /status is answered.
    let n = fake.sent().len();
    fake.message_as(CHAT, "supergroup", MALLORY, "/kill");
    reply(&host, &fake, n, "the refusal of a stranger's /kill", |t| {
        t.contains("⛔ /kill refused") && t.contains(&MALLORY.to_string())
    })
    .await;
    fake.message_as(CHAT, "supergroup", MALLORY, "/kill confirm");
    fake.message_as(CHAT, "supergroup", MALLORY, "/deploy 1");
    fake.message_as(CHAT, "supergroup", MALLORY, "/resume");
    fake.message_as(CHAT, "supergroup", MALLORY, "/status");
    reply(&host, &fake, n, "to the stranger's /status", |t| {
        t.contains("<b>Status</b>")
    })
    .await;
    assert_eq!(
        killed().await,
        json!(false),
        "a stranger's /kill confirm killed"
    );
    let deploys = api_get(&host, "/api/v1/events?kind=deploy").await;
    assert!(
        deploys["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["detail"]["origin"] != json!("telegram")),
        "{deploys}"
    );

    // Alice asks, Bob confirms: Bob's confirm is only Bob's own ask.
    let n = fake.sent().len();
    fake.message_as(CHAT, "supergroup", ALICE, "/kill");
    let (i, _) = reply(&host, &fake, n, "to Alice's /kill", |t| {
        t.contains("/kill confirm")
    })
    .await;
    fake.message_as(CHAT, "supergroup", BOB, "/kill confirm");
    reply(&host, &fake, i + 1, "to Bob's /kill confirm", |t| {
        t.contains("/kill confirm") || t.contains("Kill switch engaged")
    })
    .await;
    assert_eq!(
        killed().await,
        json!(false),
        "Bob confirmed Alice's kill: {:#?}",
        fake.sent()
            .iter()
            .skip(n)
            .map(|s| &s.text)
            .collect::<Vec<_>>()
    );
    // Alice's own confirmation still goes ahead.
    fake.message_as(CHAT, "supergroup", ALICE, "/kill confirm");
    reply(&host, &fake, n, "to Alice's /kill confirm", |t| {
        t.contains("Kill switch engaged")
    })
    .await;
    assert_eq!(killed().await, json!(true));

    // A stranger chat floods the bot: one record, not forty.
    for _ in 0..40 {
        fake.message(STRANGER, "/halt");
    }
    let n = fake.sent().len();
    fake.message_as(CHAT, "supergroup", BOB, "/risk");
    reply(&host, &fake, n, "to /risk after the flood", |t| {
        t.contains("<b>Risk</b>")
    })
    .await;
    let evs = api_get(
        &host,
        "/api/v1/events?kind=telegram_unauthorized&limit=1000",
    )
    .await;
    let evs = evs["events"].as_array().unwrap();
    let from_chat = |c: i64| {
        evs.iter()
            .filter(|e| e["detail"]["chat"] == json!(c))
            .count()
    };
    assert_eq!(from_chat(STRANGER), 1, "the stranger's flood: {evs:#?}");
    assert_eq!(
        evs.iter()
            .filter(|e| e["detail"]["from"] == json!(MALLORY))
            .count(),
        1,
        "the refused group member, recorded once: {evs:#?}"
    );
    assert!(fake.sent().iter().all(|s| s.chat_id == CHAT));
}

/// What the bot does with one update, in the corpus's words.
fn outcome(gate: &mut Gate, session: &mut Session, update: Value) -> &'static str {
    let u = match parse_update(update) {
        Incoming::Malformed { .. } => return "malformed",
        Incoming::Update(u) => u,
    };
    let Some(msg) = u.message else { return "skip" };
    match gate.admit(&msg) {
        Admission::Skip => "skip",
        Admission::Stranger { record: Some(_) } => "stranger_recorded",
        Admission::Stranger { record: None } => "stranger_ignored",
        Admission::Refused {
            record: Some(_), ..
        } => "refused_recorded",
        Admission::Refused { record: None, .. } => "refused_silent",
        Admission::Command { cmd, args, user } if cmd == "kill" => {
            match session.kill_step(user, &args) {
                KillStep::Ask => "kill_asked",
                KillStep::Confirmed => "kill_confirmed",
            }
        }
        Admission::Command { cmd, user, .. } => {
            session.other_command(user);
            if is_steering(&cmd) {
                "steer"
            } else {
                "read"
            }
        }
    }
}

/// Adds `d` to the chat id and the sender id of an update.
fn shift_ids(u: &mut Value, d: i64) {
    for ptr in ["/message/chat/id", "/message/from/id"] {
        if let Some(v) = u.pointer_mut(ptr) {
            *v = json!(v.as_i64().unwrap() + d);
        }
    }
}

#[test]
fn the_hostile_update_corpus_is_refused() {
    let dir = repo_root().join("hostile/telegram");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the corpus in {}", dir.display());
    let mut checked = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let e: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let user_ids: Vec<i64> = serde_json::from_value(e["user_ids"].clone()).unwrap();
        let clock = Arc::new(ManualClock::at(1_700_000_000));
        let mut gate = Gate::new(e["chat_id"].as_i64().unwrap(), &user_ids, clock.clone());
        let mut session = Session::new(clock.clone());
        for (k, step) in e["steps"].as_array().unwrap().iter().enumerate() {
            clock.advance(step["advance_s"].as_i64().unwrap_or(0));
            for r in 0..step["repeat"].as_i64().unwrap_or(1) {
                let mut u = step["update"].clone();
                if let Some(d) = step["chat_step"].as_i64() {
                    shift_ids(&mut u, d * r);
                }
                let got = outcome(&mut gate, &mut session, u);
                assert_eq!(
                    json!(got),
                    step["expect"],
                    "{name}, step {k}, repetition {r}: {}",
                    e["about"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 100, "{checked} updates replayed");
}

#[test]
fn a_kill_confirmation_expires_after_its_window() {
    let clock = Arc::new(ManualClock::at(1_700_000_000));
    let mut s = Session::new(clock.clone());
    let window = KILL_CONFIRM_WINDOW.as_secs() as i64;
    assert_eq!(s.kill_step(Some(ALICE), ""), KillStep::Ask);
    clock.advance(window + 1);
    assert_eq!(
        s.kill_step(Some(ALICE), "confirm"),
        KillStep::Ask,
        "a confirmation {}s after /kill went ahead",
        window + 1
    );
    // that late confirm asked again: one in time goes ahead, once
    clock.advance(window);
    assert_eq!(s.kill_step(Some(ALICE), "confirm"), KillStep::Confirmed);
    assert_eq!(s.kill_step(Some(ALICE), "confirm"), KillStep::Ask);
    // a clock stepped back does not make an old ask fresh
    assert_eq!(s.kill_step(Some(BOB), ""), KillStep::Ask);
    clock.advance(-3600);
    assert_eq!(s.kill_step(Some(BOB), "confirm"), KillStep::Ask);
    // nobody can confirm for a message without a sender
    assert_eq!(s.kill_step(None, ""), KillStep::Ask);
    assert_eq!(s.kill_step(None, "confirm"), KillStep::Ask);
    assert!(clock.now() > 0);
}

/// Checks one sent part: whole tags and entities, tags balanced.
fn check_part(p: &str, max: usize) -> Result<(), String> {
    if p.chars().count() > max {
        return Err(format!("{} chars > {max}", p.chars().count()));
    }
    let mut stack: Vec<String> = Vec::new();
    let mut rest = p;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest.find('>').ok_or("a cut tag")?;
                let tag = &rest[1..end];
                if tag.contains('<') || tag.contains('\n') {
                    return Err(format!("a cut tag: {tag:?}"));
                }
                let name = |t: &str| t.split([' ', '/']).next().unwrap_or("").to_string();
                if let Some(closing) = tag.strip_prefix('/') {
                    if stack.pop().as_deref() != Some(closing) {
                        return Err(format!("</{closing}> closes nothing"));
                    }
                } else {
                    stack.push(name(tag));
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest.find(';').ok_or("a cut entity")?;
                let body = &rest[1..end];
                if body.is_empty() || !body.chars().all(|c| c.is_ascii_alphanumeric() || c == '#') {
                    return Err(format!("a cut entity: {:?}", &rest[..end + 1]));
                }
                rest = &rest[end + 1..];
            }
            _ => rest = &rest[c.len_utf8()..],
        }
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("left open: {stack:?}"))
    }
}

/// The text without tags or whitespace (what the reader sees, in order).
fn visible(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag && !c.is_whitespace() => out.push(c),
            _ => {}
        }
    }
    out
}

mod splitting {
    use super::*;
    use host_telegram::format::{esc, split, MAX_MESSAGE};
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        let raw = proptest::string::string_regex("[a-z &<>;#é😀\n\"]{0,300}").unwrap();
        (raw, 0..6u8).prop_map(|(t, wrap)| {
            let t = esc(&t);
            match wrap {
                0 => format!("<b>{t}</b>"),
                1 => format!("<code>{t}</code>"),
                2 => format!("<a href=\"https://example.org/?a=1&amp;b=2\">{t}</a>"),
                3 => format!("<b>x<i>{t}</i></b>"),
                _ => t,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn split_never_cuts_an_entity_or_tag_and_keeps_every_part_under_the_limit(
            segs in proptest::collection::vec(segment(), 0..60),
            max in prop_oneof![Just(MAX_MESSAGE), 64usize..600],
        ) {
            let text = segs.concat();
            let parts = split(&text, max);
            for p in &parts {
                if let Err(e) = check_part(p, max) {
                    return Err(TestCaseError::fail(format!("{e} in part {p:?} (max {max})")));
                }
            }
            let joined: String = parts.iter().map(|p| visible(p)).collect();
            prop_assert_eq!(joined, visible(&text), "text lost or repeated");
        }
    }

    #[test]
    fn a_long_escaped_line_is_cut_between_entities() {
        // 5000 escaped ampersands on one line: each part must end on a whole `&amp;`
        let text = esc(&"&".repeat(5000));
        let parts = split(&text, MAX_MESSAGE);
        assert!(parts.len() >= 2);
        for p in &parts {
            check_part(p, MAX_MESSAGE).unwrap();
        }
        // a bold line longer than a message: each part is bold on its own
        let text = format!("<b>{}</b>", "é".repeat(9000));
        for p in split(&text, MAX_MESSAGE) {
            assert!(p.starts_with("<b>") && p.ends_with("</b>"), "{p:.40}");
            check_part(&p, MAX_MESSAGE).unwrap();
        }
    }
}

mod updates_never_panic {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[/a-z0-9 @]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("update_id".to_string()),
                        Just("message".to_string()),
                        Just("chat".to_string()),
                        Just("from".to_string()),
                        Just("id".to_string()),
                        Just("type".to_string()),
                        Just("text".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn any_update_json_is_parsed_and_judged_without_a_panic(
            v in json_value(),
            chat in prop_oneof![Just(CHAT), any::<i64>()],
            from in any::<i64>(),
            kind in prop_oneof![Just("private"), Just("group"), Just("channel")],
            text in "[/a-z @]{0,20}",
        ) {
            let clock = Arc::new(ManualClock::at(0));
            let mut gate = Gate::new(CHAT, &[], clock.clone());
            let mut session = Session::new(clock);
            outcome(&mut gate, &mut session, v);
            let u = json!({ "update_id": 1, "message": { "message_id": 1, "chat": { "id": chat, "type": kind }, "from": { "id": from }, "text": text } });
            outcome(&mut gate, &mut session, u);
        }
    }
}

/// Issue 14: alerts raised while the host starts (here: a missing analysis
/// module) were published before the bot subscribed, and lost. They reach
/// the chat now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_raised_during_startup_reach_the_chat() {
    let (fake, host) =
        bot_and_host("\n[orchestrator]\nmarket_analysis = \"/nonexistent/market-analysis.wasm\"")
            .await;
    reply(&host, &fake, 0, "the startup alert", |t| {
        t.contains("🔔 <b>Alert</b>") && t.contains("market-analysis.wasm") && t.contains("missing")
    })
    .await;
}
