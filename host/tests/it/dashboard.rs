//! The dashboard in a real browser: headless Chromium (Debian's `chromium`)
//! driven by tests/browser/dashboard.mjs (playwright-core) against the real
//! host replaying bars slowly: the page loads, a position appears live after
//! a replayed fill, Halt is pressed, and the host (through its API) is halted.
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
    let host = start("10000", "", &[]);
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
    assert!(shots.join("dashboard.png").exists() && shots.join("dashboard-halted.png").exists());
}
