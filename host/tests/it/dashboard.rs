//! The dashboard in a real browser: headless Chromium (Debian's `chromium`)
//! driven by tests/browser/dashboard.mjs (playwright-core) against the real
//! host replaying bars slowly: the page loads, a position appears live after
//! a replayed fill, Halt is pressed, and the host (through its API) is halted;
//! then every view: the symbol's candlesticks with its entries, exits and
//! position lines; the events filtered by kind, a live one arriving, and the
//! CSV export of the rows shown; the versions view rolling the host back to
//! v1 (after the script deployed v2 with `host deploy`); the tuner log
//! filtered (its runs are a fixture put in the database before the start:
//! a real cycle compiles a crate); the settings pausing BTCUSD's entries.
//! v1's archived backtest is a real `host backtest` of the same strategy.
//! The browser is given only the URL `host run` printed (`/?token=...`, the
//! token it generated): the page keeps the token and drops it from the URL.
//! Screenshots go to target/dashboard-screenshots/ (to docs/, for the README,
//! with HOST_UPDATE_SCREENSHOTS=1). Without chromium, node or the npm
//! packages the test says so and passes, unless HOST_BROWSER_TEST=1.

use crate::people_host;

use people_host::*;
use std::process::Command;

fn missing() -> Option<String> {
    let root = repo_root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} is missing (apt-get install -y chromium)"
        ));
    }
    if Command::new("node")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Some("node is missing (apt-get install -y nodejs npm)".into());
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        return Some("tests/browser/node_modules is missing (cd tests/browser && npm ci)".into());
    }
    None
}

#[test]
fn dashboard_shows_a_live_position_and_halts_the_host() {
    if let Some(why) = missing() {
        if std::env::var("HOST_BROWSER_TEST").as_deref() == Ok("1") {
            panic!("HOST_BROWSER_TEST=1 but the browser test cannot run: {why}");
        }
        eprintln!(
            "SKIPPED: browser test not run: {why} (set HOST_BROWSER_TEST=1 to make this a failure)"
        );
        return;
    }
    // 10000x: an hourly bar every 0.36 s; the first fill comes ~16 s in.
    // No HOST_API_TOKEN: the host generates one and prints the dashboard URL
    // carrying it, which is all the browser gets (as a person opening it would).
    let host = start_seeded(
        &root_dir().join("data/sample/BTCUSD-1h.csv"),
        "10000",
        "",
        &[],
        &seed_tuner_log,
    );
    archive_a_backtest_for_v1(&host);
    let url = host.dashboard_url();
    assert!(url.contains("?token="), "{url}");
    let root = repo_root();
    let shots = if std::env::var_os("HOST_UPDATE_SCREENSHOTS").is_some() {
        root.join("docs")
    } else {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("dashboard-screenshots")
    };
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("DASHBOARD_URL", &url)
        .env("SCREENSHOT_DIR", &shots)
        .env("HOST_BIN", env!("CARGO_BIN_EXE_host"))
        .env("HOST_DATA_DIR", host.path().join("data"))
        .env("HOST_ARCHIVE_DIR", host.path().join("archive"))
        .env("HOST_CONFIG", host.path().join("settings.toml"))
        .env("HOST_LOG", "warn")
        .env("V2_WASM", crate::common::guest_path("rsi-reversion"))
        .env(
            "V2_SOURCE",
            root.join("strategies/rsi-reversion/src/lib.rs"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script failed:\n{stdout}\n{}\nhost log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        host.stderr()
    );
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    println!("dashboard figures: {r}");
    assert_eq!(
        r["positions_at_load"], 0,
        "the position must appear after the page loaded: {r}"
    );
    assert_eq!(r["position_symbol"], "BTCUSD");
    assert!(
        r["fill_events_seen"].as_u64().unwrap() >= 1,
        "the fill arrived over the websocket: {r}"
    );
    assert!(
        r["risk_state"].as_str().unwrap().starts_with("HALTED"),
        "{r}"
    );
    assert_eq!(r["page_errors"], serde_json::json!([]));
    assert_eq!(
        r["token_left_in_url"], false,
        "the page drops the token from the address bar: {r}"
    );
    assert!(
        r["load_ms"].as_f64().unwrap() < 1000.0,
        "the dashboard must load in under a second: {r}"
    );

    // The host itself is halted, by the API.
    let st = host.status_json();
    assert!(st["account"]["halt"].is_string(), "{st}");
    for f in [
        "dashboard.png",
        "dashboard-halted.png",
        "dashboard-symbol.png",
        "dashboard-events.png",
        "dashboard-versions.png",
        "dashboard-tuner.png",
        "dashboard-settings.png",
    ] {
        assert!(shots.join(f).exists(), "{f}");
    }

    // Symbol detail: candles of the stored tier, the fills marked, the
    // open position's lines (entry, and stop/target when set).
    let sym = &r["symbol_view"];
    assert_eq!(sym["symbol"], "BTCUSD", "{sym}");
    assert!(sym["candles"].as_u64().unwrap() > 20, "{sym}");
    assert!(sym["markers"].as_u64().unwrap() >= 1, "{sym}");
    assert!(sym["lines"].as_u64().unwrap() >= 1, "{sym}");
    assert!(
        sym["canvases"].as_u64().unwrap() >= 1,
        "drawn by the chart library: {sym}"
    );
    assert!(
        sym["tiers"].as_array().unwrap().contains(&"1h".into()),
        "{sym}"
    );

    // Events: the kind filter filters, a live event arrives, and the CSV
    // holds exactly the rows shown.
    let ev = &r["events_view"];
    let (all, fills) = (
        ev["all_rows"].as_u64().unwrap(),
        ev["fill_rows"].as_u64().unwrap(),
    );
    assert!(fills >= 1 && fills < all, "{ev}");
    assert_eq!(ev["fill_kinds"], serde_json::json!(["fill"]), "{ev}");
    assert_eq!(ev["live_kind_arrived"], true, "{ev}");
    let csv = ev["csv"].as_str().unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "seq,ts,time_utc,kind,symbol,detail");
    assert_eq!(
        lines.len() as u64 - 1,
        fills,
        "one CSV line per row shown: {csv}"
    );
    assert!(lines[1..].iter().all(|l| l.contains(",\"fill\",")), "{csv}");
    let shown: Vec<i64> = serde_json::from_value(ev["fill_seqs"].clone()).unwrap();
    let in_csv: Vec<i64> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(in_csv, shown);

    // Versions: v2 was deployed, the view rolled the host back to v1.
    let ver = &r["versions_view"];
    assert_eq!(ver["active_before"], "2", "{ver}");
    assert_eq!(ver["active_after"], "1", "{ver}");
    assert!(ver["backtest_points"].as_u64().unwrap() > 10, "{ver}");
    assert_eq!(st["strategy"]["version"], 1, "the host runs v1 again: {st}");

    // Tuner log: three decisions, the decision filter leaves the one asked for.
    let tu = &r["tuner_view"];
    assert_eq!(tu["all_rows"], 3, "{tu}");
    assert_eq!(tu["filtered"], serde_json::json!(["no_change"]), "{tu}");
    assert!(tu["diff_added"].as_u64().unwrap() > 0, "{tu}");

    // Settings: BTCUSD paused from the page, recorded as an event.
    assert_eq!(r["settings_view"]["paused"], "true", "{r}");
    assert_eq!(
        st["account"]["paused_symbols"],
        serde_json::json!(["BTCUSD"]),
        "{st}"
    );
    let c = rusqlite::Connection::open(host.path().join("data/host.db")).unwrap();
    let n: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'pause_symbol' AND symbol = 'BTCUSD'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 1);
}

fn root_dir() -> std::path::PathBuf {
    repo_root()
}

/// Three orchestrator decisions as a cycle records them (`orchestrator_runs`,
/// `config_history`, the candidate's source under archive/candidates/):
/// a deployed retune, a rejected candidate measured against v2, a no-change.
fn seed_tuner_log(dir: &std::path::Path) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let c = host_store::db::open(&data.join("host.db")).unwrap();
    let root = repo_root();
    type Run<'a> = (
        &'a str,
        i64,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<i64>,
        &'a str,
    );
    let runs: [Run; 3] = [
        (
            "20221001T033000-7",
            1_664_595_000,
            "nightly",
            "tune_params",
            "deployed",
            None,
            Some(2),
            r#"{"rationale":"RSI reversion suits the range the market analysis reports; period 14 → 10.","confidence":0.64,"incumbent_version":1,"figures":{"fuzz_calls":200,"lookahead_scans":40,"startup_scans":30,"candidate_oos_sharpe":0.52,"incumbent_oos_sharpe":0.31,"candidate_return_pct":3.1,"incumbent_return_pct":1.2,"candidate_max_drawdown_pct":4.4,"paper_candidate_return_pct":0.4,"paper_incumbent_return_pct":0.1}}"#,
        ),
        (
            "20221002T033000-8",
            1_664_681_400,
            "losing_streak",
            "restructure",
            "rejected",
            Some("underperforms"),
            None,
            r#"{"rationale":"Back to a trend follower after five losses in a row.","confidence":0.41,"incumbent_version":2,"figures":{"fuzz_calls":200,"lookahead_scans":40,"startup_scans":30,"candidate_oos_sharpe":0.12,"incumbent_oos_sharpe":0.52,"candidate_return_pct":-0.8,"incumbent_return_pct":3.1,"candidate_max_drawdown_pct":6.0,"paper_candidate_return_pct":null,"paper_incumbent_return_pct":null}}"#,
        ),
        (
            "20221003T033000-9",
            1_664_767_800,
            "nightly",
            "no_change",
            "no_change",
            None,
            None,
            r#"{"rationale":"Too few trades since the last change to judge.","figures":{}}"#,
        ),
    ];
    for (run_id, ts, trigger, decision, outcome, code, deployed, report) in runs {
        c.execute(
            "INSERT INTO orchestrator_runs (run_id, ts, trigger, proposer, decision, template, params, outcome, rejection_code, rejection, deployed_version, report)
             VALUES (?1, ?2, ?3, 'offline', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            rusqlite::params![
                run_id,
                ts,
                trigger,
                decision,
                if decision == "restructure" { "sma-crossover" } else { "rsi-reversion" },
                r#"[["period","10"]]"#,
                outcome,
                code,
                code.map(|_| "walk-forward: mean out-of-sample Sharpe 0.12 does not beat the incumbent's 0.52 by the margin"),
                deployed,
                report
            ],
        )
        .unwrap();
    }
    c.execute(
        "INSERT INTO config_history (ts, param, symbol, old_value, new_value, reason, confidence, run_id)
         VALUES (1664595000, 'period', '*', '14', '10', 'RSI reversion suits the range', 0.64, '20221001T033000-7')",
        [],
    )
    .unwrap();
    for (run, src) in [
        ("20221001T033000-7", "strategies/rsi-reversion/src/lib.rs"),
        ("20221002T033000-8", "strategies/sma-crossover/src/lib.rs"),
    ] {
        let d = dir.join("archive/candidates").join(run);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(root.join(src), d.join("strategy.rs")).unwrap();
    }
}

/// v1 (the default sma-crossover) gets the report of a real `host backtest`
/// of itself as its archived backtest, as the orchestrator archives one.
fn archive_a_backtest_for_v1(host: &RunningHost) {
    let out = host.path().join("bt");
    let o = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["backtest", "--strategy"])
        .arg(crate::common::guest_path("sma-crossover"))
        .arg("--data")
        .arg(repo_root().join("data/sample/BTCUSD-1h.csv"))
        .arg("--out")
        .arg(&out)
        .env("HOST_DATA_DIR", host.path().join("bt-data"))
        .env("HOST_ARCHIVE_DIR", host.path().join("bt-archive"))
        .env("HOST_CONFIG", host.path().join("settings.toml"))
        .env("HOST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v1 = host.path().join("archive/strategy_v001");
    eventually(30, "v1 archived", || v1.exists().then_some(()));
    std::fs::copy(out.join("report.json"), v1.join("backtest.json")).unwrap();
}
