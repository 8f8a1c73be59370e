//! Live mode on Coinbase Advanced Trade through the real `host` binary: a
//! loopback Coinbase checks the ES256 JWT of every private request; orders
//! carry client order ids, fills come back once each, a crash after a send
//! does not place the order twice, and cash and BTC match the exchange.

use crate::common;
use host_exchange::loopback as support;

use common::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use support::coinbase_venue::{CoinbaseVenue, KEY_NAME, PRIVATE_KEY_PEM};

const BARS: usize = 1_500;

async fn run(dir: &std::path::Path, failpoint: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_host"));
    c.args([
        "run",
        "--replay",
        dir.join("btc.csv").to_str().unwrap(),
        "--speed",
        "max",
        "--exit-at-end",
    ])
    .args(["--api-addr", "off"])
    .env("HOST_DATA_DIR", dir.join("data"))
    .env("HOST_ARCHIVE_DIR", dir.join("archive"))
    .env("HOST_CONFIG", dir.join("settings.toml"))
    .env("HOST_RISK_LIMITS", dir.join("risk.toml"))
    .env("HOST_LOG", "error")
    .env("COINBASE_API_KEY_NAME", KEY_NAME)
    .env("COINBASE_API_PRIVATE_KEY", PRIVATE_KEY_PEM)
    .env_remove("HOST_FAILPOINT")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(f) = failpoint {
        c.env("HOST_FAILPOINT", f);
    }
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_live_orders_fills_and_a_crash_after_send() {
    let venue = CoinbaseVenue::start().await;
    let candles = shared_candles("BTCUSD-1h.csv", 60_000, BARS);
    venue.state().accounts = BTreeMap::from([("USD".to_string(), Decimal::from(10_000))]);
    venue.set_price(
        "BTC-USD",
        Decimal::try_from(candles[0].close).unwrap().round_dp(2),
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("settings.toml"),
        format!(
            "mode = \"live\"\nvenue = \"coinbase\"\nsymbols = [\"BTCUSD\"]\n\
             [strategy]\ndefault = \"{}\"\nparams = [[\"fast\", \"3\"], [\"slow\", \"12\"]]\n\
             [exchanges.coinbase]\nrest_url = \"{}\"\nws_url = \"{}\"\ntimeout_ms = 2000\nmax_retries = 2\nrate_per_sec = 1000.0\n",
            guest_path("sma-crossover").display(),
            venue.rest_url,
            venue.ws_url
        ),
    )
    .unwrap();
    std::fs::write(d.join("risk.toml"), LOOSE_RISK_LIMITS).unwrap();
    write_csv(&d.join("btc.csv"), &candles);

    let out = run(d, Some("live.after_send:2")).await;
    assert!(
        !out.status.success(),
        "the failpoint was never reached: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(d, None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(
        venue.state().unauthorized.is_empty(),
        "JWTs refused: {:?}",
        venue.state().unauthorized
    );
    let orders = venue.orders();
    if orders.len() < 3 {
        let c = rusqlite::Connection::open(d.join("data/host.db")).unwrap();
        let ev: Vec<String> = c.prepare("SELECT kind || ' ' || substr(detail,1,300) FROM events WHERE kind IN ('alert','error','venue_reconcile','order_send_failed','order_sent','module_error','strategy_paused','halted') ORDER BY seq").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
        let sig: Vec<String> = c.prepare("SELECT ts || ' ' || action || ' ' || decision || ' ' || COALESCE(reason,'') FROM signals ORDER BY id").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
        let scans: i64 = c
            .query_row("SELECT COUNT(*) FROM scan_results", [], |r| r.get(0))
            .unwrap();
        let cnd: i64 = c
            .query_row("SELECT COUNT(*) FROM candles", [], |r| r.get(0))
            .unwrap();
        eprintln!("signals {sig:#?} scans {scans} candles {cnd}");
        panic!(
            "the strategy should trade: {} orders\n{ev:#?}",
            orders.len()
        );
    }
    let ids: BTreeSet<&str> = orders.iter().map(|o| o.client_order_id.as_str()).collect();
    assert_eq!(ids.len(), orders.len(), "an order was placed twice");
    let c = rusqlite::Connection::open(d.join("data/host.db")).unwrap();
    let booked: BTreeSet<String> = c
        .prepare("SELECT venue_fill_id FROM fills")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let fills: BTreeSet<String> = venue.fills().into_iter().map(|f| f.trade_id).collect();
    assert_eq!(booked, fills, "host fills and venue fills differ");
    // the fee schedule came from transaction_summary (the loopback tier: 60 bps)
    let fee: String = c
        .query_row(
            "SELECT detail FROM events WHERE kind = 'fee_schedule' ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let fee: serde_json::Value = serde_json::from_str(&fee).unwrap();
    assert_eq!(
        fee["fee_bps"].as_str().unwrap().parse::<Decimal>().unwrap(),
        Decimal::from(60)
    );
    let pending: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM orders WHERE status = 'pending_send'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pending, 0);
    let snapshot: String = c
        .query_row("SELECT engine FROM account_snapshot", [], |r| r.get(0))
        .unwrap();
    let engine: trading_core::Engine = serde_json::from_str(&snapshot).unwrap();
    let p = engine.portfolio();
    assert_eq!(
        p.cash().round_dp(2),
        venue.balance("USD").round_dp(2),
        "cash differs from the exchange"
    );
    let held: Decimal = p.positions().values().map(|x| x.qty).sum();
    assert_eq!(held, venue.balance("BTC"), "BTC differs from the exchange");
}
