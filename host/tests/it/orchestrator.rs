//! The orchestrator end to end: a loopback server speaking the Anthropic
//! Messages API hands the cycle (a) a good strategy, (b) source that does
//! not compile, (c) `include_str!("/etc/passwd")`, (d) a strategy that knows
//! the future, (e) an endless loop, (f) a money loser: only (a) is deployed,
//! every other gets its typed reason. Plus the client's error handling
//! (429 with retry-after, 529, 400, 401, spending cap) with its audit rows,
//! and the offline cycle through the real binary.

use crate::common;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{guest_path, root};
use host::config::{RiskFile, Settings};
use host_control::Paths;
use host_orchestrator::claude::{Claude, ClaudeConfig, ClaudeError, Price, Provider, Turn};
use host_orchestrator::{self as orch, CycleOptions, CycleOutcome, ProposerChoice};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const KEY: &str = "test-key";
pub(crate) const WRITER: &str = "writer-model";
pub(crate) const REVIEWER: &str = "reviewer-model";

/// What the fake API answers: scripted (status, retry-after, body) first,
/// then the writer's scripted replies (text, stop_reason) in order, then the
/// writer's text for the writer model and the reviewer's (APPROVE unless set).
#[derive(Default)]
pub(crate) struct Api {
    pub(crate) script: VecDeque<(u16, Option<&'static str>, String)>,
    pub(crate) writer_script: VecDeque<(String, &'static str)>,
    pub(crate) writer_text: String,
    pub(crate) reviewer_text: Option<String>,
    /// (model, first message's content) of every request
    pub(crate) prompts: Vec<(String, String)>,
    /// every request body, and the path it was posted to
    pub(crate) requests: Vec<(String, serde_json::Value)>,
}

impl Api {
    /// The bodies of the requests made with `model`.
    pub(crate) fn bodies(&self, model: &str) -> Vec<serde_json::Value> {
        self.requests
            .iter()
            .filter(|(_, b)| b["model"] == model)
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn message(model: &str, text: &str) -> serde_json::Value {
    message_stopped(model, text, "end_turn")
}

fn message_stopped(model: &str, text: &str, stop: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "msg_test", "type": "message", "role": "assistant", "model": model,
        "content": [{ "type": "text", "text": text }],
        "stop_reason": stop, "stop_sequence": null,
        "usage": { "input_tokens": 1000, "output_tokens": 500 }
    })
}

fn error(kind: &str, msg: &str) -> String {
    serde_json::json!({ "type": "error", "error": { "type": kind, "message": msg } }).to_string()
}

async fn messages(
    State(api): State<Arc<Mutex<Api>>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if h("x-api-key") != KEY
        || h("anthropic-version") != "2023-06-01"
        || !h("content-type").starts_with("application/json")
    {
        return (
            StatusCode::UNAUTHORIZED,
            error("authentication_error", "invalid x-api-key"),
        )
            .into_response();
    }
    answer(api, "/v1/messages".into(), body)
}

/// Vertex AI's rawPredict: the model in the path, a bearer token, the
/// messages body with `anthropic_version` and without `model`.
async fn raw_predict(
    State(api): State<Arc<Mutex<Api>>>,
    axum::extract::Path((project, region, action)): axum::extract::Path<(String, String, String)>,
    headers: HeaderMap,
    Json(mut body): Json<serde_json::Value>,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some((model, "rawPredict")) = action.split_once(':') else {
        return (
            StatusCode::NOT_FOUND,
            error("not_found_error", "no such method"),
        )
            .into_response();
    };
    if bearer != format!("Bearer {KEY}") || headers.get("x-api-key").is_some() {
        return (
            StatusCode::UNAUTHORIZED,
            error("authentication_error", "bad bearer token"),
        )
            .into_response();
    }
    if body["anthropic_version"] != "vertex-2023-10-16" || body.get("model").is_some() {
        return (
            StatusCode::BAD_REQUEST,
            error("invalid_request_error", "vertex body expected"),
        )
            .into_response();
    }
    let path =
        format!("/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{action}");
    body["model"] = serde_json::json!(model);
    answer(api, path, body)
}

fn answer(api: Arc<Mutex<Api>>, path: String, body: serde_json::Value) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let turns = body["messages"].as_array().cloned().unwrap_or_default();
    // turns alternate, starting with the user's
    let alternating = turns.iter().enumerate().all(|(i, t)| {
        t["role"] == if i % 2 == 0 { "user" } else { "assistant" } && t["content"].is_string()
    });
    let ok = body["max_tokens"].as_u64().is_some()
        && body["system"].is_string()
        && !turns.is_empty()
        && alternating;
    if !ok {
        return (
            StatusCode::BAD_REQUEST,
            error("invalid_request_error", "bad request shape"),
        )
            .into_response();
    }
    let mut api = api.lock().unwrap();
    api.prompts.push((
        model.clone(),
        body["messages"][0]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    ));
    api.requests.push((path, body.clone()));
    if let Some((status, retry, body)) = api.script.pop_front() {
        let mut r = (StatusCode::from_u16(status).unwrap(), body).into_response();
        if let Some(s) = retry {
            r.headers_mut().insert("retry-after", s.parse().unwrap());
        }
        return r;
    }
    if model == REVIEWER {
        let text = api
            .reviewer_text
            .clone()
            .unwrap_or_else(|| "APPROVE\nThe contract is met.".to_string());
        return Json(message(&model, &text)).into_response();
    }
    if let Some((text, stop)) = api.writer_script.pop_front() {
        return Json(message_stopped(&model, &text, stop)).into_response();
    }
    Json(message(&model, &api.writer_text)).into_response()
}

/// Starts the fake API on a loopback port.
pub(crate) fn serve(api: Api) -> (String, Arc<Mutex<Api>>) {
    let state = Arc::new(Mutex::new(api));
    let s2 = state.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = Router::new()
                .route("/v1/messages", post(messages))
                .route(
                    "/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{action}",
                    post(raw_predict),
                )
                .with_state(s2);
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (format!("http://{addr}"), state)
}

/// Candidates of every test share one cargo target directory (warm after the first).
pub(crate) fn candidates_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("orchestrator-candidates")
}

/// 2,000 hourly BTC/USD candles from 2020-10-01 (a rising market), as a CSV.
fn data_file(dir: &Path) -> PathBuf {
    let src = crate::common::shared_data().join("BTCUSD-1h.csv");
    let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines
        .skip_while(|l| !l.starts_with("1601510400,"))
        .take(2_000)
        .collect();
    assert_eq!(rows.len(), 2_000);
    let p = dir.join("BTCUSD-1h.csv");
    std::fs::write(&p, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    p
}

fn options(dir: &Path, base_url: &str, proposer: ProposerChoice) -> CycleOptions {
    let mut settings = Settings::load(None).unwrap();
    settings.symbols = vec!["BTCUSD".into()];
    settings.default_strategy = Some(guest_path("counter"));
    let mut o = settings.orchestrator.clone();
    o.data = vec![data_file(dir)];
    o.history_bars = 2_000;
    o.base_url = base_url.to_string();
    o.writer_model = WRITER.into();
    o.reviewer_model = REVIEWER.into();
    o.retries = 1;
    o.requests_per_minute = 100;
    o.target_dir = Some(candidates_target());
    o.strategy_document = dir.join("strategy_document.md");
    // these scenarios deploy at once; the forward shadow has its own tests (selection.rs)
    o.shadow_days = 0.0;
    o.market_analysis = guest_path("market-analysis");
    o.trade_performance = guest_path("trade-performance");
    settings.orchestrator = o.clone();
    let paths = Paths {
        data_dir: dir.join("data"),
        archive_dir: dir.join("archive"),
    };
    let risk = RiskFile::load(None).unwrap();
    CycleOptions {
        deployer: std::sync::Arc::new(host_control::SocketOrOffline {
            paths: paths.clone(),
            runtime: host_sandbox::Runtime::new(settings.sandbox.clone(), None).unwrap(),
            risk: risk.clone(),
            symbols: settings.symbols.clone(),
        }),
        paths,
        market: settings.market(),
        orchestrator: o,
        risk,
        repo_root: root(),
        proposer,
        seed: 1,
        trigger: "test".into(),
        now: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        api_key: Some(KEY.into()),
    }
}

pub(crate) fn reply(src: &str) -> String {
    format!("DECISION: restructure\nCONFIDENCE: 0.6\nREASON: test scenario\nPARAMS: fast=24, slow=120\nOBSERVATION: trend filters help in rising markets\n\n```rust\n{src}\n```\n")
}

const HEAD: &str = "use guest_sdk::indicators::{closes, sma};\nuse guest_sdk::{signal, Action, Init, Interval, MarketView, Portfolio, Signal, Strategy};\n";

/// (a) trend following: long while SMA24 > SMA120 and the close is above SMA24.
fn good() -> String {
    format!(
        "{HEAD}
#[derive(Default)]
pub struct Trend {{ symbols: Vec<String>, size: f64 }}
impl Strategy for Trend {{
    fn initialize(&mut self, init: &Init) -> Result<(), String> {{
        self.symbols = init.symbols.clone();
        self.size = init.limits.default_trade_pct;
        Ok(())
    }}
    fn scan_interval_minutes(&self) -> u32 {{ 60 }}
    fn analyze(&mut self, _now: i64, p: &Portfolio, m: &dyn MarketView) -> Vec<Signal> {{
        let mut out = Vec::new();
        for s in &self.symbols {{
            let c = closes(&m.candles(s, Interval::H1, 200));
            let (Some(fast), Some(slow), Some(&last)) = (sma(&c, 24), sma(&c, 120), c.last()) else {{ continue }};
            let held = p.position(s).is_some();
            if !held && fast > slow && last > fast {{
                out.push(signal(s, Action::Buy, self.size));
            }} else if held && fast < slow {{
                out.push(signal(s, Action::Close, 100.0));
            }}
        }}
        out
    }}
}}
guest_sdk::export_strategy!(Trend);
"
    )
}

/// A strategy whose `analyze` body is `body` (with `now`, `p`, `m`, `self.symbols` in scope).
fn with_body(body: &str, extra: &str) -> String {
    format!(
        "{HEAD}{extra}
#[derive(Default)]
pub struct S {{ symbols: Vec<String> }}
impl Strategy for S {{
    fn initialize(&mut self, init: &Init) -> Result<(), String> {{ self.symbols = init.symbols.clone(); Ok(()) }}
    fn scan_interval_minutes(&self) -> u32 {{ 60 }}
    #[allow(unused_variables)]
    fn analyze(&mut self, now: i64, p: &Portfolio, m: &dyn MarketView) -> Vec<Signal> {{
        let _ = (closes, sma, Interval::H1);
        {body}
    }}
}}
guest_sdk::export_strategy!(S);
"
    )
}

/// (d) knows the future: the close times after which the price rose 1 % within 12 hours,
/// computed from the very data it is tested on, baked into the source.
fn peeking(data: &Path) -> String {
    let text = std::fs::read_to_string(data).unwrap();
    let c: Vec<(i64, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[4].parse().unwrap())
        })
        .collect();
    let rises: Vec<String> = (0..c.len() - 12)
        .filter(|&i| c[i + 12].1 > c[i].1 * 1.01)
        .map(|i| (c[i].0 + 3_600).to_string())
        .collect();
    with_body(
        "let mut out = Vec::new();
        for s in &self.symbols {
            let rises = RISES.binary_search(&now).is_ok();
            let held = p.position(s).is_some();
            if rises && !held { out.push(signal(s, Action::Buy, 5.0)); }
            if !rises && held { out.push(signal(s, Action::Close, 100.0)); }
        }
        out",
        &format!("const RISES: &[i64] = &[{}];\n", rises.join(", ")),
    )
}

struct Run {
    report: orch::CycleReport,
    api: Arc<Mutex<Api>>,
    opts: CycleOptions,
    _dir: tempfile::TempDir,
}

fn cycle(src: impl FnOnce(&Path) -> String) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (url, api) = serve(Api::default());
    let opts = options(dir.path(), &url, ProposerChoice::Claude);
    api.lock().unwrap().writer_text = reply(&src(&opts.orchestrator.data[0]));
    std::fs::create_dir_all(&opts.paths.data_dir).unwrap();
    let report = orch::run_cycle(&opts).unwrap();
    Run {
        report,
        api,
        opts,
        _dir: dir,
    }
}

fn rejected(run: &Run) -> (&'static str, String) {
    match &run.report.outcome {
        CycleOutcome::Rejected { rejection } => (rejection.code(), rejection.to_string()),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn assert_nothing_deployed(run: &Run) {
    let conn = host_store::db::open(&run.opts.paths.db()).unwrap();
    assert_eq!(host_store::archive::active(&conn).unwrap(), None);
    assert!(!run.opts.paths.archive_dir.join("strategy_v001").exists());
    let (outcome, code): (String, Option<String>) = conn
        .query_row(
            "SELECT outcome, rejection_code FROM orchestrator_runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(outcome, "rejected");
    assert_eq!(code.as_deref(), Some(rejected(run).0));
    // the candidate's source is archived with its reason
    let cand = &run.report.candidate_dir;
    assert!(cand.join("strategy.rs").exists() && cand.join("meta.json").exists());
}

#[test]
fn a_good_strategy_is_deployed_with_archive_audit_and_memory() {
    let run = cycle(|_| good());
    let (version, live) = match &run.report.outcome {
        CycleOutcome::Deployed { version, live } => (*version, *live),
        other => panic!("not deployed: {other:?}\n{:#?}", run.report.figures),
    };
    assert_eq!((version, live), (1, false));
    assert!(run.report.figures.candidate_oos_sharpe.unwrap() > 0.0);
    assert!(
        run.report.figures.fuzz_calls > 0
            && run.report.figures.lookahead_scans > 0
            && run.report.figures.startup_scans > 0
    );
    let v = run.opts.paths.archive_dir.join("strategy_v001");
    for f in ["strategy.wasm", "strategy.rs", "meta.json", "backtest.json"] {
        assert!(v.join(f).exists(), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(v.join("strategy.rs"))
            .unwrap()
            .trim(),
        good().trim()
    );
    let conn = host_store::db::open(&run.opts.paths.db()).unwrap();
    assert_eq!(
        host_store::archive::active(&conn).unwrap().unwrap().version,
        1
    );
    // writer then reviewer, each audited with tokens, latency and cost
    let rows: Vec<(String, i64, i64, f64, Option<i64>, String)> = conn
        .prepare("SELECT model, tokens_in, tokens_out, cost_usd, status, trigger FROM ai_audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        vec![WRITER, REVIEWER]
    );
    assert!(rows
        .iter()
        .all(|r| r.1 == 1000 && r.2 == 500 && r.4 == Some(200) && r.5 == "test"));
    // 1000 in at $3/M + 500 out at $15/M; reviewer at $15/M and $75/M
    assert!((rows[0].3 - 0.0105).abs() < 1e-12 && (rows[1].3 - 0.0525).abs() < 1e-12);
    let prompt = &run.api.lock().unwrap().prompts[0].1;
    for label in [
        "GROUND TRUTH (rigid",
        "YOUR MARKET ANALYSIS",
        "YOUR TRADE ANALYSIS",
        "YOUR STRATEGY",
        "USER CONSTRAINTS (risk limits",
    ] {
        assert!(prompt.contains(label), "{label} missing from the prompt");
    }
    assert!(
        prompt.contains("BTCUSD"),
        "the market report reaches the prompt"
    );
    let obs: i64 = conn
        .query_row("SELECT COUNT(*) FROM observations", [], |r| r.get(0))
        .unwrap();
    assert!(obs >= 4);
    let model_obs: String = conn
        .query_row(
            "SELECT text FROM observations WHERE category = 'proposer'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(model_obs, "trend filters help in rising markets");
    // the parameters of a new template are recorded with no old value, the reason and the confidence
    let history: Vec<(String, Option<String>, String, String, f64)> = conn
        .prepare("SELECT param, old_value, new_value, reason, confidence FROM config_history ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        history,
        vec![
            (
                "fast".into(),
                None,
                "24".into(),
                "test scenario".into(),
                0.6
            ),
            (
                "slow".into(),
                None,
                "120".into(),
                "test scenario".into(),
                0.6
            )
        ]
    );
    let (outcome, deployed): (String, i64) = conn
        .query_row(
            "SELECT outcome, deployed_version FROM orchestrator_runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((outcome.as_str(), deployed), ("deployed", 1));
    let doc = std::fs::read_to_string(&run.opts.orchestrator.strategy_document).unwrap();
    assert!(
        doc.contains("Active: v1") && doc.contains("deployed v1"),
        "{doc}"
    );
    assert!(run.report.report_path.exists());
    assert!(run.report.market_report["sections"]["symbol:BTCUSD"]["regime"].is_string());
}

#[test]
fn source_that_does_not_compile_is_rejected_with_the_compiler_output() {
    let run = cycle(|_| with_body("let n: u32 = \"not a number\"; Vec::new()", ""));
    let (code, why) = rejected(&run);
    assert_eq!(code, "compile_failed");
    assert!(why.contains("mismatched types"), "{why}");
    assert_nothing_deployed(&run);
}

#[test]
fn include_str_of_etc_passwd_is_refused_before_compiling() {
    let run = cycle(|_| {
        with_body(
            "let _ = SECRET.len(); Vec::new()",
            "const SECRET: &str = include_str!(\"/etc/passwd\");\n",
        )
    });
    let (code, why) = rejected(&run);
    assert_eq!(code, "source_refused");
    assert!(why.contains("line 3, column 22: `include_str!`"), "{why}");
    assert_nothing_deployed(&run);
    assert!(
        !run.opts.paths.data_dir.join("orchestrator/build").exists(),
        "nothing was written for cargo"
    );
}

#[test]
fn a_strategy_that_knows_the_future_fails_the_lookahead_check() {
    let run = cycle(peeking);
    let (code, why) = rejected(&run);
    assert_eq!(code, "lookahead", "{why}");
    assert!(why.contains("calendar moved"), "{why}");
    assert_nothing_deployed(&run);
}

#[test]
fn an_endless_loop_is_stopped_and_rejected() {
    let run = cycle(|_| {
        with_body("let mut x = now as u64 | 1; loop { x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); if x == 0 { break; } } let _ = x; Vec::new()", "")
    });
    let (code, why) = rejected(&run);
    assert_eq!(code, "trapped", "{why}");
    match &run.report.outcome {
        CycleOutcome::Rejected {
            rejection: orch::Rejection::Trapped { endless, .. },
        } => assert!(endless),
        other => panic!("{other:?}"),
    }
    assert_nothing_deployed(&run);
}

#[test]
fn a_money_loser_is_rejected_by_the_backtest() {
    // buys when flat and sells when held: every round trip pays fees and slippage twice
    let run = cycle(|_| {
        with_body(
            "self.symbols.iter().map(|s| if p.position(s).is_some() { signal(s, Action::Close, 100.0) } else { signal(s, Action::Buy, 10.0) }).collect()",
            "",
        )
    });
    let (code, why) = rejected(&run);
    assert!(
        code == "underperforms" || code == "drawdown",
        "{code}: {why}"
    );
    assert!(run.report.figures.candidate_return_pct.unwrap() < 0.0);
    assert_nothing_deployed(&run);
}

#[test]
fn a_strategy_whose_signals_depend_on_its_start_fails_the_startup_check() {
    // trades on every 7th scan it has made: the phase depends on when it started
    let run = cycle(|_| {
        with_body(
            "self.scans += 1;
        let mut out = Vec::new();
        for s in &self.symbols {
            if self.scans % 7 == 0 && p.position(s).is_none() { out.push(signal(s, Action::Buy, 5.0)); }
        }
        out",
            "",
        )
        .replace("pub struct S { symbols: Vec<String> }", "pub struct S { symbols: Vec<String>, scans: u64 }")
    });
    let (code, why) = rejected(&run);
    assert_eq!(code, "startup_sensitive", "{why}");
    assert_nothing_deployed(&run);
}

#[test]
fn a_running_host_gets_the_candidate_through_its_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (url, api) = serve(Api::default());
    let opts = options(dir.path(), &url, ProposerChoice::Claude);
    api.lock().unwrap().writer_text = reply(&good());
    let cfg = dir.path().join("settings.toml");
    std::fs::write(
        &cfg,
        format!(
            "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = {:?}\n",
            guest_path("counter")
        ),
    )
    .unwrap();
    let mut host = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .env("HOST_DATA_DIR", &opts.paths.data_dir)
        .env("HOST_ARCHIVE_DIR", &opts.paths.archive_dir)
        .env("HOST_CONFIG", &cfg)
        .env("HOST_LOG", "warn")
        .args([
            "run",
            "--replay",
            &opts.orchestrator.data[0].display().to_string(),
            "--api-addr",
            "off",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = opts.paths.socket();
    let started = std::time::Instant::now();
    while !matches!(
        host_control::socket::request(&socket, &host_control::socket::Request::Status),
        Ok(Some(host_control::socket::Reply::Status(_)))
    ) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the host did not come up"
        );
        std::thread::yield_now();
    }
    // the cycle's data is the host's candle store: wait for the whole replay
    // in it (a cycle started part-way read a window that depended on timing)
    let db = opts.paths.db();
    let stored = || -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM candles WHERE interval = '1h'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    while stored() < 2_000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the replay did not reach the store: {} bars",
            stored()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = orch::run_cycle(&opts);
    let _ = host_control::socket::request(&socket, &host_control::socket::Request::Shutdown);
    let _ = host.wait();
    let report = report.unwrap();
    // v1 is the counter the host started with; the candidate is v2, swapped in live
    assert_eq!(
        report.outcome,
        CycleOutcome::Deployed {
            version: 2,
            live: true
        },
        "{:#?}",
        report.figures
    );
    let conn = host_store::db::open(&opts.paths.db()).unwrap();
    let active = host_store::archive::active(&conn).unwrap().unwrap();
    assert_eq!(active.version, 2);
    assert!(
        active.origin.starts_with("orchestrator "),
        "{}",
        active.origin
    );
}

#[test]
fn an_analysis_module_update_is_compiled_checked_archived_and_used_next_cycle() {
    let src = "use guest_sdk::{Analysis, Database, DbValue, Report};
#[derive(Default)]
pub struct Count;
impl Analysis for Count {
    fn analyze(&mut self, now: i64, db: &dyn Database) -> Result<Report, String> {
        let rows = db.query(\"SELECT COUNT(*) FROM candles WHERE ts <= ?1\", &[DbValue::Integer(now)])?;
        let n = rows.scalar().and_then(DbValue::as_f64).unwrap_or(0.0);
        let mut r = Report::new(\"candle-count\", &format!(\"{n} candles\"));
        r.number(\"all\", \"candles\", n);
        Ok(r)
    }
}
guest_sdk::export_analysis!(Count);
";
    let dir = tempfile::tempdir().unwrap();
    let (url, api) = serve(Api::default());
    let mut opts = options(dir.path(), &url, ProposerChoice::Claude);
    api.lock().unwrap().writer_text =
        format!("DECISION: update_analysis\nMODULE: market-analysis\nCONFIDENCE: 0.5\nREASON: simpler\n```rust\n{src}```\n");
    std::fs::create_dir_all(&opts.paths.data_dir).unwrap();
    let first = orch::run_cycle(&opts).unwrap();
    assert_eq!(
        first.outcome,
        CycleOutcome::AnalysisUpdated {
            module: "market-analysis".into(),
            version: 1
        }
    );
    let v = opts.paths.archive_dir.join("analysis/market-analysis/v001");
    for f in ["module.wasm", "module.rs", "report.json", "meta.json"] {
        assert!(v.join(f).exists(), "{f}");
    }
    // the next cycle reads the market through the new module
    api.lock().unwrap().writer_text = "DECISION: no_change\nREASON: nothing to do\n".into();
    opts.now += chrono::Duration::hours(1);
    let second = orch::run_cycle(&opts).unwrap();
    assert!(matches!(second.outcome, CycleOutcome::NoChange { .. }));
    assert_eq!(second.market_report["module"], "candle-count");
    // as of the development part's end: the 240 held-out bars are not summarised
    assert_eq!(
        second.market_report["sections"]["all"]["candles"],
        (2_000 - 240 + 1) as f64
    );
    // a strategy offered as an analysis module is refused by kind
    api.lock().unwrap().writer_text = format!(
        "DECISION: update_analysis\nMODULE: trade-performance\nREASON: x\n```rust\n{}```\n",
        good()
    );
    opts.now += chrono::Duration::hours(1);
    let third = orch::run_cycle(&opts).unwrap();
    match third.outcome {
        CycleOutcome::Rejected {
            rejection: orch::Rejection::Contract { detail },
        } => {
            assert!(
                detail.contains("expected a analysis module") || detail.contains("analysis"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
}

fn client(url: &str, retries: u32, budget: f64) -> Claude {
    let cfg = ClaudeConfig {
        provider: Provider::Anthropic,
        base_url: url.into(),
        timeout: Duration::from_secs(10),
        retries,
        requests_per_minute: 100,
        rate_window: Duration::from_secs(60),
        budget_usd: budget,
        backoff: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(1),
    };
    Claude::with_key(cfg, KEY.into(), 0.0).unwrap()
}

const PRICE: Price = Price {
    input: 3.0,
    output: 15.0,
};

fn audit_statuses(conn: &rusqlite::Connection) -> Vec<Option<i64>> {
    conn.prepare("SELECT status FROM ai_audit ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn the_client_retries_429_and_529_stops_on_400_and_audits_every_attempt() {
    let conn = host_store::db::open_in_memory().unwrap();
    let mut api = Api {
        writer_text: "hello".into(),
        ..Api::default()
    };
    api.script
        .push_back((429, Some("0"), error("rate_limit_error", "slow down")));
    let (url, state) = serve(api);
    let mut c = client(&url, 2, 10.0);
    let r = c
        .complete(&conn, WRITER, PRICE, 100, "sys", "hi", "manual")
        .unwrap();
    assert_eq!(r.text, "hello");
    assert_eq!((r.input_tokens, r.output_tokens), (1000, 500));
    assert_eq!(audit_statuses(&conn), vec![Some(429), Some(200)]);

    // 400: final at once, its error type and message surface
    state.lock().unwrap().script.push_back((
        400,
        None,
        error("invalid_request_error", "max_tokens: too large"),
    ));
    let e = c
        .complete(&conn, WRITER, PRICE, 100, "sys", "hi", "manual")
        .unwrap_err();
    assert!(
        matches!(&e, ClaudeError::Api { status: 400, kind, message } if kind == "invalid_request_error" && message.contains("max_tokens")),
        "{e}"
    );
    // 529 on every attempt: overloaded after retries + 1 attempts
    for _ in 0..3 {
        state.lock().unwrap().script.push_back((
            529,
            None,
            error("overloaded_error", "Overloaded"),
        ));
    }
    let e = c
        .complete(&conn, WRITER, PRICE, 100, "sys", "hi", "manual")
        .unwrap_err();
    assert!(matches!(e, ClaudeError::Overloaded { attempts: 3 }), "{e}");
    // 429 on every attempt
    for _ in 0..3 {
        state.lock().unwrap().script.push_back((
            429,
            Some("0"),
            error("rate_limit_error", "slow down"),
        ));
    }
    let e = c
        .complete(&conn, WRITER, PRICE, 100, "sys", "hi", "manual")
        .unwrap_err();
    assert!(matches!(e, ClaudeError::RateLimited { attempts: 3 }), "{e}");
    assert_eq!(audit_statuses(&conn).len(), 2 + 1 + 3 + 3);
    let prompts: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM ai_audit WHERE prompt = 'hi'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(prompts, 9);
    // the key is never stored
    let leaked: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM ai_audit WHERE prompt LIKE ?1 OR response LIKE ?1",
            [format!("%{KEY}%")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leaked, 0);
}

#[test]
fn a_wrong_key_and_the_spending_cap_are_reported() {
    let conn = host_store::db::open_in_memory().unwrap();
    let (url, _state) = serve(Api {
        writer_text: "ok".into(),
        ..Api::default()
    });
    let cfg = ClaudeConfig {
        provider: Provider::Anthropic,
        base_url: url.clone(),
        timeout: Duration::from_secs(10),
        retries: 0,
        requests_per_minute: 100,
        rate_window: Duration::from_secs(60),
        budget_usd: 1.0,
        backoff: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(1),
    };
    let mut bad = Claude::with_key(cfg, "wrong".into(), 0.0).unwrap();
    let e = bad
        .complete(&conn, WRITER, PRICE, 100, "s", "p", "t")
        .unwrap_err();
    assert!(
        matches!(&e, ClaudeError::Api { status: 401, kind, .. } if kind == "authentication_error"),
        "{e}"
    );
    // one call costs 0.0105; a 0.01 cap allows it, then refuses the next without sending
    let mut c = client(&url, 0, 0.01);
    c.complete(&conn, WRITER, PRICE, 100, "s", "p", "t")
        .unwrap();
    let e = c
        .complete(&conn, WRITER, PRICE, 100, "s", "p", "t")
        .unwrap_err();
    assert!(matches!(e, ClaudeError::BudgetExhausted { .. }), "{e}");
    assert_eq!(audit_statuses(&conn), vec![Some(401), Some(200)]);
    assert!((host_orchestrator::claude::spent_since(&conn, 0).unwrap() - 0.0105).abs() < 1e-12);
}

#[test]
fn the_rate_limit_holds_requests_beyond_the_window_quota() {
    let conn = host_store::db::open_in_memory().unwrap();
    let (url, _state) = serve(Api {
        writer_text: "ok".into(),
        ..Api::default()
    });
    let cfg = ClaudeConfig {
        provider: Provider::Anthropic,
        base_url: url,
        timeout: Duration::from_secs(10),
        retries: 0,
        requests_per_minute: 2,
        rate_window: Duration::from_millis(400),
        budget_usd: 10.0,
        backoff: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(1),
    };
    let mut c = Claude::with_key(cfg, KEY.into(), 0.0).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..3 {
        c.complete(&conn, WRITER, PRICE, 100, "s", "p", "t")
            .unwrap();
    }
    // two fit in the window, the third waits for the first to leave it
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn the_offline_cycle_runs_through_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_file(dir.path());
    let cfg = dir.path().join("settings.toml");
    std::fs::write(
        &cfg,
        format!(
            "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = {:?}\n[orchestrator]\ndata = [{:?}]\nhistory_bars = 2000\ntarget_dir = {:?}\nstrategy_document = {:?}\nmarket_analysis = {:?}\ntrade_performance = {:?}\n",
            guest_path("sma-crossover"),
            data,
            candidates_target(),
            dir.path().join("doc.md"),
            guest_path("market-analysis"),
            guest_path("trade-performance"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
        .current_dir(root())
        .env_remove("ANTHROPIC_API_KEY")
        .env("HOST_LOG", "warn")
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args([
            "--archive-dir",
            &dir.path().join("archive").display().to_string(),
        ])
        .args(["--config", &cfg.display().to_string()])
        .args(["orchestrate", "--now", "--seed", "11"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("orchestrator run ")
            && (stdout.contains("→ in shadow #1") || stdout.contains("→ rejected (")),
        "{stdout}"
    );
    let conn = host_store::db::open(&dir.path().join("data/host.db")).unwrap();
    let (proposer, outcome): (String, String) = conn
        .query_row("SELECT proposer, outcome FROM orchestrator_runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(proposer, "offline");
    assert!(outcome == "shadow" || outcome == "rejected", "{outcome}");
    let reports: Vec<_> = std::fs::read_dir(dir.path().join("data/orchestrator/reports"))
        .unwrap()
        .collect();
    assert_eq!(reports.len(), 1);
    let candidates: Vec<_> = std::fs::read_dir(dir.path().join("archive/candidates"))
        .unwrap()
        .collect();
    assert_eq!(candidates.len(), 1);
    // the same seed proposes the same template; the archived source carries
    // the parameters the search settled on (the proposal's own when it stopped early)
    let cand = candidates[0].as_ref().unwrap().path();
    let src = std::fs::read_to_string(cand.join("strategy.rs")).unwrap();
    let (template, params): (String, String) = conn
        .query_row("SELECT template, params FROM orchestrator_runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let proposed = orch::proposer::propose(11, Some("sma-crossover"));
    assert_eq!(template, proposed.template);
    let values: Vec<f64> = serde_json::from_str::<Vec<(String, String)>>(&params)
        .unwrap()
        .iter()
        .map(|(_, v)| v.parse().unwrap())
        .collect();
    assert_eq!(src, orch::proposer::render(&template, &values, 11).unwrap());
}

/// A cycle against a fake API prepared by `setup`, with options changed by `tweak`.
fn scripted_cycle(
    setup: impl FnOnce(&mut Api, &Path),
    tweak: impl FnOnce(&mut CycleOptions),
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (url, api) = serve(Api::default());
    let mut opts = options(dir.path(), &url, ProposerChoice::Claude);
    tweak(&mut opts);
    setup(&mut api.lock().unwrap(), &opts.orchestrator.data[0]);
    std::fs::create_dir_all(&opts.paths.data_dir).unwrap();
    let report = orch::run_cycle(&opts).unwrap();
    Run {
        report,
        api,
        opts,
        _dir: dir,
    }
}

fn attempts(run: &Run) -> Vec<(String, i64, String, Option<String>)> {
    let conn = host_store::db::open(&run.opts.paths.db()).unwrap();
    let rows = conn
        .prepare("SELECT subject, attempt, outcome, rejection_code FROM orchestrator_attempts ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows
}

#[test]
fn a_first_answer_that_does_not_compile_is_repaired_and_the_second_is_deployed() {
    let broken = good().replace(
        "self.size = init.limits.default_trade_pct;",
        "self.size = init.limits.default_trade_pct; let n: u32 = \"not a number\";",
    );
    let run = scripted_cycle(
        |api, _| {
            api.writer_script.push_back((reply(&broken), "end_turn"));
            api.writer_script.push_back((
                format!("Fixed: the stray binding is gone.\n{}", reply(&good())),
                "end_turn",
            ));
        },
        |_| {},
    );
    assert_eq!(
        run.report.outcome,
        CycleOutcome::Deployed {
            version: 1,
            live: false
        },
        "{:#?}",
        run.report.figures
    );
    assert_eq!(run.report.attempts, 2);
    let api = run.api.lock().unwrap();
    let writes = api.bodies(WRITER);
    assert_eq!(writes.len(), 2, "one answer, one repair");
    // the second request is the same conversation carrying the compiler's errors
    let turns = writes[1]["messages"].as_array().unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|t| t["role"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["user", "assistant", "user"]
    );
    assert_eq!(turns[0]["content"], writes[0]["messages"][0]["content"]);
    assert!(turns[1]["content"]
        .as_str()
        .unwrap()
        .contains("not a number"));
    let feedback = turns[2]["content"].as_str().unwrap();
    assert!(
        feedback.contains("error[E0308]: mismatched types"),
        "{feedback}"
    );
    assert!(feedback.contains("--> src/lib.rs:"), "{feedback}");
    assert!(
        !feedback.contains("orchestrator/build"),
        "no host paths: {feedback}"
    );
    assert!(!feedback.contains("Compiling"), "{feedback}");
    drop(api);
    // every attempt audited, in order
    assert_eq!(
        attempts(&run),
        vec![
            (
                "strategy".into(),
                1,
                "rejected".into(),
                Some("compile_failed".into())
            ),
            ("strategy".into(), 2, "passed".into(), None),
        ]
    );
    // the deployed version is the repaired source, with its declared parameters
    let conn = host_store::db::open(&run.opts.paths.db()).unwrap();
    let active = host_store::archive::active(&conn).unwrap().unwrap();
    assert_eq!(
        active.params,
        vec![
            ("fast".to_string(), "24".to_string()),
            ("slow".to_string(), "120".to_string())
        ]
    );
    let src = std::fs::read_to_string(run.opts.paths.archive_dir.join("strategy_v001/strategy.rs"))
        .unwrap();
    assert_eq!(src.trim(), good().trim());
}

#[test]
fn the_writer_gets_the_api_reference_and_an_example_strategy() {
    let run = scripted_cycle(
        |api, _| api.writer_text = "DECISION: no_change\nREASON: calm".into(),
        |_| {},
    );
    assert!(matches!(run.report.outcome, CycleOutcome::NoChange { .. }));
    let prompt = run.api.lock().unwrap().prompts[0].1.clone();
    for needle in [
        "API REFERENCE",
        "pub fn sma(values: &[f64], n: usize) -> Option<f64>;",
        "pub fn f64_or(&self, name: &str, default: f64) -> Result<f64, ParamError>;",
        "pub slippage_tolerance: Option<f64>,",
        // the default incumbent has no archived source: the example is sma-crossover's
        "pub struct SmaCrossover",
        // the analysis modules' sources, for update_analysis
        "SOURCE OF YOUR ANALYSIS MODULE market-analysis",
        "SOURCE OF YOUR ANALYSIS MODULE trade-performance",
        "YOUR PAST ATTEMPTS",
        "SUGGESTED DECISION KIND",
    ] {
        assert!(
            prompt.contains(needle),
            "{needle:?} missing from the writer's prompt"
        );
    }
}

#[test]
fn an_answer_cut_at_max_tokens_is_continued_from_where_it_stopped() {
    let full = reply(&good());
    let cut = full.find("impl Strategy").unwrap();
    let (head, tail) = (full[..cut].to_string(), full[cut..].to_string());
    let run = scripted_cycle(
        |api, _| {
            api.writer_script.push_back((head.clone(), "max_tokens"));
            api.writer_script.push_back((tail, "end_turn"));
        },
        |_| {},
    );
    assert!(
        matches!(run.report.outcome, CycleOutcome::Deployed { .. }),
        "{:?}",
        run.report.outcome
    );
    let api = run.api.lock().unwrap();
    let writes = api.bodies(WRITER);
    assert_eq!(writes.len(), 2);
    // the continuation sends the partial answer as the assistant's prefix, trailing whitespace trimmed
    let turns = writes[1]["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[1]["role"], "assistant");
    assert_eq!(turns[1]["content"], head.trim_end());
    drop(api);
    let src = std::fs::read_to_string(run.report.candidate_dir.join("strategy.rs")).unwrap();
    assert!(src.contains("impl Strategy for Trend") && src.contains("export_strategy!(Trend)"));
}

#[test]
fn an_answer_still_cut_after_its_continuations_is_refused_with_its_reason() {
    let full = reply(&good());
    let run = scripted_cycle(
        |api, _| {
            api.writer_script
                .push_back((full[..400].to_string(), "max_tokens"));
            api.writer_script
                .push_back((full[400..800].to_string(), "max_tokens"));
        },
        |o| o.orchestrator.max_continuations = 1,
    );
    let (code, why) = rejected(&run);
    assert_eq!(code, "truncated", "{why}");
    assert!(
        why.contains("max_tokens") && why.contains("1 continuation"),
        "{why}"
    );
    assert_nothing_deployed(&run);
    // nothing was compiled from a partial source
    assert!(!run.opts.paths.data_dir.join("orchestrator/build").exists());
    assert_eq!(run.api.lock().unwrap().bodies(WRITER).len(), 2);
}

#[test]
fn a_reviewer_answering_in_markdown_is_understood_and_reviews_after_the_checks() {
    let run = scripted_cycle(
        |api, _| {
            api.writer_text = reply(&good());
            api.reviewer_text = Some(
                "## Review\n\n**APPROVE**\n\nThe trend filter is sound; exits exist for every entry.".into(),
            );
        },
        |_| {},
    );
    assert!(
        matches!(run.report.outcome, CycleOutcome::Deployed { .. }),
        "{:?}",
        run.report.outcome
    );
    // the reviewer saw the checks' results, the source and the context
    let api = run.api.lock().unwrap();
    let review = api.bodies(REVIEWER);
    assert_eq!(review.len(), 1);
    let dossier = review[0]["messages"][0]["content"].as_str().unwrap();
    for needle in [
        "CHECK RESULTS",
        &format!(
            "fuzz: {} calls without a trap",
            run.report.figures.fuzz_calls
        ),
        "candidate_oos_sharpe",
        "CANDIDATE SOURCE",
        "impl Strategy for Trend",
        "Ground truth",
        "risk_limits",
    ] {
        assert!(
            dossier.contains(needle),
            "{needle:?} missing from the dossier"
        );
    }
    drop(api);

    // a rejection in markdown is a rejection with its reason
    let run = scripted_cycle(
        |api, _| {
            api.writer_text = reply(&good());
            api.reviewer_text =
                Some("**Verdict: REJECT** — the stop is never set.\n\nDetails...".into());
        },
        |_| {},
    );
    let (code, why) = rejected(&run);
    assert_eq!(code, "review");
    assert!(why.contains("the stop is never set"), "{why}");
    assert_nothing_deployed(&run);
}

#[test]
fn vertex_ai_gets_the_same_messages_on_raw_predict_with_a_bearer_token() {
    let conn = host_store::db::open_in_memory().unwrap();
    let (url, state) = serve(Api {
        writer_text: "from vertex".into(),
        ..Api::default()
    });
    let cfg = ClaudeConfig {
        provider: Provider::Vertex {
            project: "my-proj".into(),
            region: "us-east5".into(),
        },
        base_url: url,
        timeout: Duration::from_secs(10),
        retries: 0,
        requests_per_minute: 100,
        rate_window: Duration::from_secs(60),
        budget_usd: 10.0,
        backoff: Duration::from_millis(1),
        max_retry_after: Duration::from_secs(1),
    };
    let mut c = Claude::with_key(cfg, KEY.into(), 0.0).unwrap();
    let r = c
        .converse(
            &conn,
            WRITER,
            PRICE,
            100,
            "sys",
            &[Turn::user("a"), Turn::assistant("b"), Turn::user("c")],
            "t",
        )
        .unwrap();
    assert_eq!(r.text, "from vertex");
    let api = state.lock().unwrap();
    let (path, body) = &api.requests[0];
    assert_eq!(
        path,
        "/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models/writer-model:rawPredict"
    );
    assert_eq!(body["messages"].as_array().unwrap().len(), 3);
    drop(api);
    // the settings choose it
    let mut s = host_orchestrator::OrchestratorSettings {
        provider: "vertex".into(),
        ..Default::default()
    };
    assert!(s.validate().is_err(), "a project is required");
    s.vertex_project = "my-proj".into();
    s.validate().unwrap();
    let (p, base) = s.provider();
    assert_eq!(
        p,
        Provider::Vertex {
            project: "my-proj".into(),
            region: "us-east5".into()
        }
    );
    assert_eq!(base, "https://us-east5-aiplatform.googleapis.com");
}

#[test]
fn the_reference_examples_compile_against_the_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = host_orchestrator::compile::CompileConfig {
        repo_root: root(),
        build_root: dir.path().join("build"),
        target_dir: candidates_target(),
        timeout: Duration::from_secs(600),
        max_wasm_bytes: 4 << 20,
        allowed_deps: Vec::new(),
        sandbox: Settings::load(None).unwrap().orchestrator.compile.clone(),
    };
    let rt =
        host_sandbox::Runtime::new(Settings::load(None).unwrap().sandbox.clone(), None).unwrap();
    let risk = RiskFile::load(None).unwrap();
    let s = host_orchestrator::compile::compile(
        &cfg,
        "reference-strategy",
        orch::reference::STRATEGY_EXAMPLE,
    )
    .unwrap_or_else(|e| panic!("the reference's strategy example does not compile: {e}"));
    let m = rt.load_strategy(&s.wasm).unwrap();
    let mut i = m.instantiate().unwrap();
    i.initialize(&risk.contract_view(), &["BTCUSD".to_string()], &[])
        .unwrap();
    let a = host_orchestrator::compile::compile(
        &cfg,
        "reference-analysis",
        orch::reference::ANALYSIS_EXAMPLE,
    )
    .unwrap_or_else(|e| panic!("the reference's analysis example does not compile: {e}"));
    rt.load_analysis(&a.wasm).unwrap();
    // both pass the source check the candidates pass
    for src in [
        orch::reference::STRATEGY_EXAMPLE,
        orch::reference::ANALYSIS_EXAMPLE,
    ] {
        host_orchestrator::source_check::check(src, 64 << 10).unwrap();
    }
}

/// The trend strategy of [`good`] with its slow average's length a parameter.
fn tunable() -> String {
    good()
        .replace("pub struct Trend { symbols: Vec<String>, size: f64 }", "pub struct Trend { symbols: Vec<String>, size: f64, slow: usize }")
        .replace(
            "self.size = init.limits.default_trade_pct;",
            "self.size = init.limits.default_trade_pct;\n        self.slow = init.params.f64_or(\"period\", 120.0)? as usize;",
        )
        .replace("sma(&c, 120)", "sma(&c, self.slow)")
}

#[test]
fn a_tune_params_answer_with_bad_values_is_fitted_in_sample_and_deploys_the_fit() {
    // period 202 never trades (the strategy reads 200 candles); 182 and 162 do
    let src = tunable();
    assert!(src.contains("self.slow = init.params") && src.contains("sma(&c, self.slow)"));
    let run = scripted_cycle(
        |api, _| {
            api.writer_text = format!(
                "DECISION: tune_params\nCONFIDENCE: 0.5\nREASON: a slower trend\nPARAMS: period=202\n\n```rust\n{src}\n```\n"
            );
        },
        // five trials deflate the Sharpe ratio: this test is about the fit, not the margin
        |o| o.orchestrator.significance_alpha = 0.2,
    );
    let sel = serde_json::to_value(run.report.figures.selection.as_ref().unwrap()).unwrap();
    let kv = |p: &str| serde_json::json!([["period", p]]);
    assert_eq!(sel["fit"]["method"], "tune_neighbourhood", "{sel:#}");
    assert_eq!(
        sel["fit"]["grid"],
        serde_json::json!([kv("202"), kv("182"), kv("222"), kv("162"), kv("242")])
    );
    assert_eq!(sel["grid_size"], 5);
    let grid = sel["fit"]["grid"].as_array().unwrap().clone();
    // each fold chose a grid point in sample (listed per fold)
    let folds = sel["candidate"]["folds"].as_array().unwrap();
    assert!(folds.len() >= 6);
    assert!(
        folds.iter().all(|f| grid.contains(&f["params"])),
        "{folds:#?}"
    );
    // the trials of honest selection count every grid point
    assert!(
        sel["significance"]["trials"].as_u64().unwrap() >= 5,
        "{sel:#}"
    );
    assert!(
        matches!(run.report.outcome, CycleOutcome::Deployed { .. }),
        "{:?}\n{sel:#}",
        run.report.outcome
    );
    // fitted on the whole development part: a period that trades, deployed as the PARAMS
    let fitted = sel["fitted_params"].clone();
    assert!(fitted == kv("182") || fitted == kv("162"), "{fitted}");
    let fitted: Vec<(String, String)> = serde_json::from_value(fitted).unwrap();
    assert_eq!(run.report.params, fitted);
    let conn = host_store::db::open(&run.opts.paths.db()).unwrap();
    assert_eq!(
        host_store::archive::active(&conn).unwrap().unwrap().params,
        fitted
    );
    let trials: i64 = conn
        .query_row("SELECT COUNT(*) FROM selection_trials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(trials, 5);
}

#[test]
fn with_two_candidates_a_night_the_bandit_decides_the_kind_the_model_is_asked_for() {
    let mut expected = None;
    let run = scripted_cycle(
        |api, _| api.writer_text = reply(&good()),
        |o| {
            o.orchestrator.candidates_per_night = 2;
            std::fs::create_dir_all(&o.paths.data_dir).unwrap();
            let conn = host_store::db::open(&o.paths.db()).unwrap();
            // tune_params was always accepted, the other kinds always refused
            for (d, outcome) in [
                ("tune_params", "deployed"),
                ("tweak", "rejected"),
                ("restructure", "rejected"),
                ("overhaul", "rejected"),
            ] {
                for i in 0..8 {
                    conn.execute(
                        "INSERT INTO orchestrator_runs (run_id, ts, trigger, decision, outcome, report) VALUES (?1, 0, 't', ?2, ?3, '{}')",
                        rusqlite::params![format!("old-{d}-{i}"), d, outcome],
                    )
                    .unwrap();
                }
            }
            let mut b =
                orch::repair::Bandit::from_history(&conn, o.seed, &orch::repair::ARMS).unwrap();
            expected = b.draw();
        },
    );
    let expected = expected.unwrap();
    let kind = expected.decision.as_str();
    let first = &run.report.bandit[0];
    assert_eq!(first.draw, expected, "the same seed draws the same");
    assert_eq!(first.draw.posteriors.len(), 4);
    let tune = first
        .draw
        .posteriors
        .iter()
        .find(|p| p.decision == orch::DecisionKind::TuneParams)
        .unwrap();
    assert_eq!((tune.alpha, tune.beta), (9.0, 1.0));
    // the writer's request names the drawn kind
    let prompt = run.api.lock().unwrap().prompts[0].1.clone();
    assert!(prompt.contains("=== REQUESTED DECISION KIND"), "{prompt}");
    assert!(
        prompt.contains(&format!("{kind} — answer with DECISION: {kind}")),
        "{kind}"
    );
    // the answer (restructure) is audited against the request and still developed
    assert_eq!(first.answered, Some(orch::DecisionKind::Restructure));
    assert_eq!(first.off_request, kind != "restructure");
    assert_eq!(run.report.decision, orch::DecisionKind::Restructure);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&run.report.report_path).unwrap()).unwrap();
    assert_eq!(json["bandit"][0]["draw"]["decision"], kind);
}
