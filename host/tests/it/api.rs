//! The REST + WebSocket API of the real `host` binary, over loopback:
//! bearer auth (none, wrong, good), every endpoint's answer validated against
//! the OpenAPI document it serves, 400s for bad query values and bodies,
//! halt → status halted, the WebSocket's replay and live stream, the rate
//! limiter's 429 with Retry-After, the token generated at first start (0600,
//! printed only on stdout), and the hostile corpus in `hostile/api/`
//! (cross-site, rebinding, wrong-type and tokenless requests) replayed over
//! raw TCP against a host holding a position, which it must keep.

use crate::people_host;

use futures_util::{SinkExt, StreamExt};
use people_host::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "test-token-5f1c9a";

/// Validates `v` against `schema` (the subset the document uses: $ref,
/// type (one or a list, with "null"), properties, required, items, enum,
/// anyOf, additionalProperties as a schema).
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/components/schemas/")
            .ok_or(format!("{at}: unsupported $ref {r}"))?;
        let target = doc["components"]["schemas"]
            .get(name)
            .ok_or(format!("{at}: dangling $ref {r}"))?;
        return validate(doc, target, v, at);
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let errs: Vec<String> = any
            .iter()
            .filter_map(|s| validate(doc, s, v, at).err())
            .collect();
        if errs.len() == any.len() {
            return Err(format!(
                "{at}: matches no alternative: {}",
                errs.join(" | ")
            ));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(format!("{at}: bad type in schema")),
        };
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !ok {
            return Err(format!("{at}: expected {types:?}, got {v}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{at}: {v} is not one of {e:?}"));
        }
    }
    if let Value::Object(obj) = v {
        if let Some(req) = schema.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    return Err(format!("{at}: missing required property {r:?}"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, x) in obj {
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => validate(doc, s, x, &format!("{at}.{k}"))?,
                (None, Some(s)) if s.is_object() => validate(doc, s, x, &format!("{at}.{k}"))?,
                _ => {}
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, x) in items.iter().enumerate() {
            validate(doc, s, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("websocket: {other:?}"),
    }
}

/// The document's path for `path`: itself, or a template whose `{name}`
/// segments match any segment (`/api/v1/symbols/{symbol}/pause`).
fn doc_path<'a>(doc: &'a Value, path: &str) -> &'a Value {
    if !doc["paths"][path].is_null() {
        return &doc["paths"][path];
    }
    let want: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .and_then(|m| {
            m.iter().find(|(t, _)| {
                let segs: Vec<&str> = t.split('/').collect();
                segs.len() == want.len()
                    && segs
                        .iter()
                        .zip(&want)
                        .all(|(s, w)| s == w || (s.starts_with('{') && s.ends_with('}')))
            })
        })
        .map_or(&Value::Null, |(_, v)| v)
}

fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let s = &doc_path(doc, path)[method]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(
        !s.is_null(),
        "the document has no {status} answer for {method} {path}"
    );
    s
}

struct Client {
    http: reqwest::Client,
    base: String,
    doc: Value,
}

impl Client {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Calls and checks the answer against the document's schema for its status.
    async fn checked(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, v) = match method {
            "get" => self.get(path).await,
            _ => self.post(path, body.unwrap_or(json!({}))).await,
        };
        let bare = path.split('?').next().unwrap();
        let schema = response_schema(&self.doc, bare, method, status);
        if let Err(e) = validate(
            &self.doc,
            schema,
            &v,
            &format!("{method} {path} ({status})"),
        ) {
            panic!("{e}\nanswer: {v}");
        }
        (status, v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_auth_schemas_errors_control_and_websocket() {
    let host = tokio::task::spawn_blocking(|| {
        start(
            "max",
            "[api]\nrate_per_minute = 100000\n",
            &[("HOST_API_TOKEN", TOKEN)],
        )
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let base = host.api.clone();

    // Health and the document need no token; everything else does.
    let r = http
        .get(format!("{base}/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (auth, what) in [(None, "missing"), (Some("wrong-token"), "invalid")] {
        let mut req = http.get(format!("{base}/api/v1/status"));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{what} token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(what), "{v}");
    }
    let r = http
        .post(format!("{base}/api/v1/halt"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a POST with a wrong token");
    // No CORS headers by default.
    let r = http
        .get(format!("{base}/api/v1/status"))
        .bearer_auth(TOKEN)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let c = Client {
        http: http.clone(),
        base: base.clone(),
        doc: doc.clone(),
    };
    // Wait for some trading history so the lists are not empty.
    let mut trades = 0;
    for _ in 0..600 {
        let (_, st) = c.get("/api/v1/status").await;
        trades = st["closed_trades"].as_u64().unwrap_or(0);
        if trades >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(trades >= 3, "no trades were replayed");

    // Every GET endpoint in the document answers data matching its schema.
    let mut gets: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, ops)| ops.get("get").is_some() && p.as_str() != "/api/v1/ws")
        .map(|(p, _)| p.clone())
        .collect();
    gets.sort();
    assert!(gets.len() >= 13, "{gets:?}");
    for p in &gets {
        let (status, v) = c.checked("get", p, None).await;
        assert_eq!(status, 200, "{p}: {v}");
    }
    let (_, t) = c
        .checked("get", "/api/v1/trades?limit=2&offset=1&symbol=btcusd", None)
        .await;
    assert_eq!(t["trades"].as_array().unwrap().len(), 2);
    assert!(t["total"].as_i64().unwrap() >= 3);
    let (_, e) = c
        .checked("get", "/api/v1/events?kind=fill&since=0&limit=3", None)
        .await;
    let evs = e["events"].as_array().unwrap();
    assert_eq!(evs.len(), 3);
    assert!(evs.iter().all(|e| e["kind"] == "fill"));
    assert!(evs
        .windows(2)
        .all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    let (_, e) = c
        .checked(
            "get",
            "/api/v1/events?symbol=BTCUSD&from=2022-09-01T00:00:00Z&to=1700000000&limit=5",
            None,
        )
        .await;
    assert_eq!(e["events"].as_array().unwrap().len(), 5);
    let (_, truth) = c.checked("get", "/api/v1/truth", None).await;
    assert!(truth["trade_count"].as_u64().unwrap() >= 3, "{truth}");

    // Bad query values: 400 with a message naming the parameter.
    for (path, needle) in [
        ("/api/v1/trades?limit=abc", "limit"),
        ("/api/v1/trades?limit=0", "limit"),
        ("/api/v1/trades?offset=-1", "offset"),
        ("/api/v1/trades?symbol=BTC-USD", "symbol"),
        ("/api/v1/trades?color=red", "color"),
        ("/api/v1/events?since=x", "since"),
        ("/api/v1/events?from=yesterday", "from"),
        ("/api/v1/events?from=20&to=10", "after"),
        ("/api/v1/events?kind=DROP%20TABLE", "kind"),
        ("/api/v1/events?limit=100000", "limit"),
        ("/api/v1/performance/daily?limit=1.5", "limit"),
        ("/api/v1/ai/decisions?limit=&limit=2", "limit"),
    ] {
        let (status, v) = c.checked("get", path, None).await;
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["error"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    let (status, v) = c.get("/api/v1/nope").await;
    assert_eq!((status, v["error"].is_string()), (404, true));

    // Bad bodies.
    let (status, v) = c.checked("post", "/api/v1/kill", Some(json!({}))).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("confirm"));
    let (status, v) = c
        .checked("post", "/api/v1/deploy", Some(json!({ "version": "two" })))
        .await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = c.checked("post", "/api/v1/deploy", Some(json!([1]))).await;
    assert_eq!(status, 400);
    let raw = http
        .post(format!("{base}/api/v1/halt"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);

    // The WebSocket: subscribe to risk with a replay from 0, then see a live halt.
    let ws_url = format!("{}/api/v1/ws", base.replace("http://", "ws://"));
    assert!(
        tokio_tungstenite::connect_async(&ws_url).await.is_err(),
        "no token, no socket"
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_url}?token={TOKEN}"))
        .await
        .unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "hello");
    ws.send(Message::Text(
        json!({ "op": "subscribe", "channels": ["nonsense"] })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");
    ws.send(Message::Text(
        json!({ "op": "subscribe", "channels": ["fills"], "since": 0 })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(
        (
            first["type"].as_str(),
            first["channel"].as_str(),
            first["data"]["kind"].as_str()
        ),
        (Some("event"), Some("fills"), Some("fill"))
    );
    // Drain the replay up to the subscription confirmation.
    loop {
        let m = next_json(&mut ws).await;
        if m["type"] == "subscribed" {
            assert_eq!(m["channels"], json!(["fills"]));
            break;
        }
        assert_eq!(m["data"]["kind"], "fill", "{m}");
    }
    ws.send(Message::Text(
        json!({ "op": "subscribe", "channels": ["risk"] })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        // Live fills may stream in before the confirmation.
        let m = next_json(&mut ws).await;
        if m["type"] == "subscribed" {
            assert_eq!(m["channels"], json!(["fills", "risk"]));
            break;
        }
        assert_eq!(m["type"], "event", "{m}");
    }

    // POST halt: the status shows it, the socket streams it.
    let (status, v) = c.checked("post", "/api/v1/halt", Some(json!({}))).await;
    assert_eq!(status, 200, "{v}");
    let (_, st) = c.get("/api/v1/status").await;
    assert!(st["halt"].is_string(), "halted: {st}");
    let ev = loop {
        let m = next_json(&mut ws).await;
        if m["type"] == "event" && m["data"]["kind"] == "halt" {
            break m;
        }
    };
    assert_eq!(ev["channel"], "risk");
    assert_eq!(ev["data"]["detail"]["by"], "api");
    let (status, v) = c.checked("post", "/api/v1/resume", None).await;
    assert_eq!((status, v["changed"].as_bool()), (200, Some(true)));
    // PAUSE_SYMBOL / RESUME_SYMBOL: the status and the symbols show it, the log records it once.
    let (status, v) = c
        .checked("post", "/api/v1/symbols/btcusd/pause", None)
        .await;
    assert_eq!((status, v["changed"].as_bool()), (200, Some(true)), "{v}");
    let (_, v) = c
        .checked("post", "/api/v1/symbols/BTCUSD/pause", None)
        .await;
    assert_eq!(v["changed"], false, "already paused: {v}");
    let (_, st) = c.checked("get", "/api/v1/status", None).await;
    assert_eq!(st["paused_symbols"], json!(["BTCUSD"]), "{st}");
    let (_, sy) = c.checked("get", "/api/v1/symbols", None).await;
    assert_eq!(sy["symbols"][0]["paused"], true, "{sy}");
    let (status, v) = c
        .checked("post", "/api/v1/symbols/ETHUSD/pause", None)
        .await;
    assert_eq!(status, 404, "not configured: {v}");
    let (status, v) = c
        .checked("post", "/api/v1/symbols/BTCUSD/resume", None)
        .await;
    assert_eq!((status, v["changed"].as_bool()), (200, Some(true)), "{v}");
    let (_, st) = c.checked("get", "/api/v1/status", None).await;
    assert_eq!(st["paused_symbols"], json!([]), "{st}");
    let (_, e) = c
        .checked(
            "get",
            "/api/v1/events?kind=pause_symbol,resume_symbol&since=0",
            None,
        )
        .await;
    let kinds: Vec<&str> = e["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["pause_symbol", "resume_symbol"], "{e}");
    // this host runs without --orchestrate: a review is refused with why, not pretended
    let (status, v) = c
        .checked("post", "/api/v1/review", Some(json!({ "reason": "test" })))
        .await;
    assert_eq!(status, 409, "{v}");
    assert!(v.to_string().contains("without the orchestrator"), "{v}");
    // Only one version is archived: rollback is refused with a reason, deploy of v1 re-activates it.
    let (status, v) = c.checked("post", "/api/v1/rollback", None).await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = c
        .checked("post", "/api/v1/deploy", Some(json!({ "version": 99 })))
        .await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = c
        .checked("post", "/api/v1/kill", Some(json!({ "confirm": true })))
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, st) = c.get("/api/v1/status").await;
    assert_eq!(st["killed"], true);

    // An event appended by another process (as `host orchestrate` does) reaches the socket too.
    ws.send(Message::Text(
        json!({ "op": "subscribe", "channels": ["strategy"] })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    {
        let conn = host_store::db::open(&host.path().join("data/host.db")).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        host_store::events::append(
            &conn,
            1_700_000_000,
            None,
            &host_store::events::Payload::OrchestratorRun(host_store::payloads::OrchestratorRun {
                run_id: "r1".into(),
                outcome: "kept".into(),
                decision: "keep".into(),
            }),
        )
        .unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    loop {
        let m = next_json(&mut ws).await;
        if m["type"] == "event" && m["data"]["kind"] == "orchestrator_run" {
            assert_eq!(
                (
                    m["channel"].as_str(),
                    m["data"]["detail"]["run_id"].as_str()
                ),
                (Some("strategy"), Some("r1"))
            );
            break;
        }
    }

    assert!(
        !host.stderr().contains(TOKEN),
        "the token must never be logged"
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let host = tokio::task::spawn_blocking(|| start("max", "[api]\nrate_per_minute = 3\n", &[]))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    // The health probe used one token; two more pass, then the bucket is empty.
    for _ in 0..2 {
        let r = http
            .get(format!("{}/api/v1/health", host.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http
        .get(format!("{}/api/v1/health", host.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "retry after {wait}");
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("rate limit"));
    // Without HOST_API_TOKEN the host generated a token and says so (not what it is) in the log.
    let log = host.stderr();
    assert!(
        log.contains("api token generated (HOST_API_TOKEN is not set)"),
        "{log}"
    );
    assert!(
        !log.contains(&host.token()),
        "the token must never be logged"
    );
}

/// One `host run --exit-at-end` in `dir` on `addr`, without HOST_API_TOKEN.
fn run_once(dir: &std::path::Path, addr: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["run", "--replay"])
        .arg(repo_root().join("data/sample/BTCUSD-1h.csv"))
        .args(["--api-addr", addr, "--exit-at-end"])
        .env("HOST_DATA_DIR", dir.join("data"))
        .env("HOST_ARCHIVE_DIR", dir.join("archive"))
        .env_remove("HOST_API_TOKEN")
        .env("HOST_LOG", "info")
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Every file under `dir` (recursively) except `skip`, as bytes.
fn files_under(
    dir: &std::path::Path,
    skip: &std::path::Path,
) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p != skip {
                if let Ok(b) = std::fs::read(&p) {
                    out.push((p, b));
                }
            }
        }
    }
    out
}

#[test]
fn without_a_token_the_host_generates_one_keeps_it_0600_and_prints_it_only_on_stdout() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Even on every interface: the generated token is required (as Jupyter does).
    let out = run_once(dir.path(), "0.0.0.0:0");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stderr}");
    let file = dir.path().join("data/api.token");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "32 random bytes in hex");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("dashboard: "))
        .unwrap_or_else(|| panic!("no dashboard URL on stdout: {stdout}"));
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with(&format!("/?token={token}")),
        "{url}"
    );
    assert!(!stderr.contains(&token), "the token must never be logged");
    assert!(stderr.contains("api token generated"), "{stderr}");
    // Nothing else the host wrote (database, WAL, event log, archive) holds it.
    for (p, bytes) in files_under(dir.path(), &file) {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{} holds the token",
            p.display()
        );
    }
    // The second start keeps the same token.
    let out = run_once(dir.path(), "127.0.0.1:0");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("?token={token}")));
    assert!(String::from_utf8_lossy(&out.stderr).contains("api token from its file"));
    // A token file others can read is refused, with what to do.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_once(dir.path(), "127.0.0.1:0");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));

    let out = run_once(dir.path(), "nowhere");
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected IP:PORT"));
}

/// Replaces the corpus placeholders.
fn fill(text: &str, host: &str, token: &str) -> String {
    let port = host.rsplit(':').next().unwrap_or_default();
    text.replace("{host}", host)
        .replace("{port}", port)
        .replace("{origin}", &format!("http://{host}"))
        .replace("{token}", token)
}

/// Sends one corpus entry as raw HTTP over TCP; returns the status and body
/// (no body for a 101).
fn send_raw(addr: &str, e: &Value, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let method = e["method"].as_str().unwrap();
    let path = fill(e["path"].as_str().unwrap(), addr, token);
    let version = e["version"].as_str().unwrap_or("HTTP/1.1");
    let body = fill(e["body"].as_str().unwrap_or(""), addr, token);
    let mut req = format!("{method} {path} {version}\r\n");
    let headers = e["headers"].as_object().unwrap();
    for (k, v) in headers {
        req.push_str(&format!(
            "{k}: {}\r\n",
            fill(v.as_str().unwrap(), addr, token)
        ));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if !headers.keys().any(|k| k.eq_ignore_ascii_case("connection")) {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (status, head_end, length) = loop {
        let n = s.read(&mut chunk).unwrap_or(0);
        assert!(
            n > 0,
            "{}: no answer: {:?}",
            e["name"],
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = &text[..end];
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("{}: bad answer {head:?}", e["name"]));
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            });
            break (status, end + 4, length);
        }
    };
    if status == 101 {
        return (status, String::new());
    }
    while length.is_none_or(|l| buf.len() < head_end + l) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    (
        status,
        String::from_utf8_lossy(&buf[head_end..]).to_string(),
    )
}

/// A GET with the token, answered 200 with JSON.
fn get_json(addr: &str, path: &str, token: &str) -> Value {
    let e = json!({
        "name": path, "method": "GET", "path": path, "body": "",
        "headers": { "Host": "{host}", "Authorization": "Bearer {token}" },
    });
    let (status, body) = send_raw(addr, &e, token);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn hostile_requests_are_refused_and_the_host_keeps_its_positions() {
    let corpus: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("hostile/api/requests.json")).unwrap(),
    )
    .unwrap();
    let hostile = corpus["hostile"].as_array().unwrap();
    let controls = corpus["controls"].as_array().unwrap();
    assert!(hostile.len() >= 20, "the corpus only grows");

    // A replay that ends while the second trade of the sample is open.
    const LAST_TS: i64 = 1_662_800_400;
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(repo_root().join("data/sample/BTCUSD-1h.csv")).unwrap();
    let cut: Vec<&str> = sample
        .lines()
        .filter(|l| {
            l.split(',')
                .next()
                .and_then(|t| t.parse::<i64>().ok())
                .is_none_or(|t| t <= LAST_TS)
        })
        .collect();
    let replay = dir.path().join("BTCUSD-1h.csv");
    std::fs::write(&replay, cut.join("\n") + "\n").unwrap();
    // No HOST_API_TOKEN: the generated token guards it.
    let host = start_replay(&replay, "max", "[api]\nrate_per_minute = 100000\n", &[]);
    let token = host.token();
    let addr = host.api.trim_start_matches("http://").to_string();
    let before = eventually(60, "the replay to end holding a position", || {
        let st = get_json(&addr, "/api/v1/status", &token);
        // The clock is the last bar's close.
        (st["clock"].as_i64() == Some(LAST_TS + 3600) && !st["positions"].as_array()?.is_empty())
            .then_some(st)
    });

    let mut wrong = Vec::new();
    for e in hostile {
        let (status, body) = send_raw(&addr, e, &token);
        let expect = e["expect"].as_u64().unwrap() as u16;
        if status != expect {
            wrong.push(format!(
                "{}: expected {expect}, got {status}: {body}",
                e["name"]
            ));
            continue;
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            v["error"].is_string(),
            "{}: a refusal says why: {body}",
            e["name"]
        );
    }
    for e in controls {
        let (status, body) = send_raw(&addr, e, &token);
        assert_eq!(
            status,
            e["expect"].as_u64().unwrap() as u16,
            "control {}: {body}",
            e["name"]
        );
    }

    if !wrong.is_empty() {
        eprintln!("not refused as they must be:\n{}", wrong.join("\n"));
    }
    // The host still holds its position: no kill, no halt, nothing closed
    // (checked first, so a hole that got through shows as what it did).
    let after = get_json(&addr, "/api/v1/status", &token);
    assert_eq!(after["killed"], false, "{after}");
    assert!(after["halt"].is_null(), "{after}");
    let qty = |st: &Value| -> Vec<(Value, Value)> {
        st["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["symbol"].clone(), p["qty"].clone()))
            .collect()
    };
    assert_eq!(qty(&after), qty(&before));
    assert_eq!(after["closed_trades"], before["closed_trades"]);
    let conn = host_store::db::open(&host.path().join("data/host.db")).unwrap();
    let steered: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind IN ('kill', 'halt', 'resume', 'deploy', 'rollback')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(steered, 0, "a hostile request steered the host");
    assert!(
        wrong.is_empty(),
        "hostile requests not refused as they must be:\n{}",
        wrong.join("\n")
    );
    assert!(
        !host.stderr().contains(&token),
        "the token must never be logged"
    );
}
