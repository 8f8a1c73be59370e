//! Live mode through the real `host` binary against a loopback Kraken that
//! checks every signature: orders go to the venue with client ids, fills come
//! back into the ledger, and crashes at every point of an order's life
//! (before send, after send before the ack is written, after the fill before
//! it is written, SIGKILL) followed by restarts never lose or duplicate an
//! order or a fill: positions and cash match the exchange to the cent.

use crate::common;
use host_exchange::loopback as support;

use common::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use support::kraken_venue::{KrakenVenue, API_KEY, API_SECRET};

const BARS: usize = 1_500;

struct Live {
    dir: tempfile::TempDir,
    venue: KrakenVenue,
}

impl Live {
    async fn new() -> Live {
        Live::with_strategy("sma-crossover", "[[\"fast\", \"3\"], [\"slow\", \"12\"]]").await
    }

    async fn with_strategy(strategy: &str, params: &str) -> Live {
        let venue = KrakenVenue::start().await;
        let candles = shared_candles("BTCUSD-1h.csv", 60_000, BARS);
        {
            let mut st = venue.state();
            st.balances = BTreeMap::from([("ZUSD".to_string(), Decimal::from(10_000))]);
        }
        venue.set_price(
            "XBTUSD",
            rust_decimal::Decimal::try_from(candles[0].close)
                .unwrap()
                .round_dp(1),
        );
        let dir = tempfile::tempdir().unwrap();
        let settings = format!(
            "mode = \"live\"\nvenue = \"kraken\"\nsymbols = [\"BTCUSD\"]\n\
             [strategy]\ndefault = \"{}\"\nparams = {}\n\
             [exchanges.kraken]\nrest_url = \"{}\"\nws_url = \"{}\"\ntimeout_ms = 2000\nmax_retries = 2\nrate_per_sec = 1000.0\n",
            guest_path(strategy).display(),
            params,
            venue.rest_url,
            venue.ws_url
        );
        std::fs::write(dir.path().join("settings.toml"), settings).unwrap();
        std::fs::write(dir.path().join("risk.toml"), LOOSE_RISK_LIMITS).unwrap();
        write_csv(&dir.path().join("btc.csv"), &candles);
        Live { dir, venue }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_host"));
        c.args(args)
            .env("HOST_DATA_DIR", self.path("data"))
            .env("HOST_ARCHIVE_DIR", self.path("archive"))
            .env("HOST_CONFIG", self.path("settings.toml"))
            .env("HOST_RISK_LIMITS", self.path("risk.toml"))
            .env("HOST_LOG", "error")
            .env("KRAKEN_API_KEY", API_KEY)
            .env("KRAKEN_API_SECRET", API_SECRET)
            .env_remove("HOST_FAILPOINT")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    async fn replay(&self, failpoint: Option<&str>) -> std::process::Output {
        self.replay_file("btc.csv", failpoint).await
    }

    /// Writes the first `n` bars as `btc-cut.csv`.
    fn cut(&self, n: usize) {
        let text = std::fs::read_to_string(self.path("btc.csv")).unwrap();
        let lines: Vec<&str> = text.lines().take(n + 1).collect();
        std::fs::write(self.path("btc-cut.csv"), lines.join("\n")).unwrap();
    }

    async fn replay_file(&self, file: &str, failpoint: Option<&str>) -> std::process::Output {
        let mut c = self.cmd(&[
            "run",
            "--replay",
            self.path(file).to_str().unwrap(),
            "--speed",
            "max",
            "--exit-at-end",
        ]);
        if let Some(f) = failpoint {
            c.env("HOST_FAILPOINT", f);
        }
        tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap()
    }

    /// The database once a first run has created it.
    async fn db_when_ready(&self) -> rusqlite::Connection {
        if !self.path("data/host.db").exists() {
            self.cut(1);
            let out = self.replay_file("btc-cut.csv", None).await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.db()
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("data/host.db")).unwrap()
    }

    async fn account(&self) -> serde_json::Value {
        let mut c = self.cmd(&["status", "--json"]);
        c.stdout(Stdio::piped());
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["account"].clone()
    }

    /// The invariants: one venue order per client id, every venue trade
    /// booked once, nothing left unresolved, ledger = exchange to the cent.
    async fn check_against_venue(&self) {
        let orders = self.venue.orders();
        let mut per_client: BTreeMap<String, usize> = BTreeMap::new();
        for o in &orders {
            *per_client
                .entry(
                    o.cl_ord_id
                        .clone()
                        .expect("every order carries a client id"),
                )
                .or_default() += 1;
        }
        assert!(
            per_client.values().all(|n| *n == 1),
            "an order was placed twice: {per_client:?}"
        );
        let c = self.db();
        let booked: BTreeSet<String> = c
            .prepare("SELECT venue_fill_id FROM fills WHERE venue_fill_id IS NOT NULL")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let all_fills: i64 = c
            .query_row("SELECT COUNT(*) FROM fills", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            all_fills as usize,
            booked.len(),
            "a fill was booked without its venue id"
        );
        let trades: BTreeSet<String> = self.venue.trades().into_iter().map(|t| t.id).collect();
        assert_eq!(booked, trades, "host fills and venue trades differ");
        let pending: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM orders WHERE status = 'pending_send'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(pending, 0, "orders left unresolved");
        let a = self.account().await;
        let dec = |v: &serde_json::Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
        assert_eq!(
            dec(&a["cash"]),
            self.venue.balance("ZUSD").round_dp(2),
            "cash differs from the exchange"
        );
        let held: Decimal = a["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| dec(&p["qty"]))
            .sum();
        assert_eq!(
            held,
            self.venue.balance("XXBT"),
            "position differs from the exchange"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_orders_reach_the_venue_and_fills_come_back() {
    let l = Live::new().await;
    l.venue.state().fee_bps = 40;
    let out = l.replay(None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        l.venue.trades().len() >= 4,
        "the strategy should trade: {} venue trades",
        l.venue.trades().len()
    );
    assert!(
        l.venue.state().refused.is_empty(),
        "the venue refused signatures: {:?}",
        l.venue.state().refused
    );
    l.check_against_venue().await;
    // at startup the venue's fee schedule (TradeVolume) replaced the configured 26 bps
    let fee: String = l
        .db()
        .query_row(
            "SELECT detail FROM events WHERE kind = 'fee_schedule' ORDER BY seq LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let fee: serde_json::Value = serde_json::from_str(&fee).unwrap();
    let bps = |v: &serde_json::Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    assert_eq!(bps(&fee["fee_bps"]), Decimal::from(40));
    assert_eq!(bps(&fee["was"]), Decimal::from(26));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashes_around_sends_and_fills_never_lose_or_duplicate_an_order() {
    let l = Live::new().await;
    for point in [
        "live.before_send:1",
        "live.after_send:1",
        "live.after_fill:1",
        "live.after_send:1",
    ] {
        let out = l.replay(Some(point)).await;
        assert!(
            !out.status.success(),
            "{point} was never reached: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = l.replay(None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    l.check_against_venue().await;
    // the restarts found the orders the crashes left behind
    let c = l.db();
    let reconciles: Vec<String> = c
        .prepare("SELECT detail FROM events WHERE kind = 'venue_reconcile'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let all = reconciles.join("\n");
    assert!(
        all.contains("\"adopted\":[\"live-"),
        "no order adopted after an after-send crash: {all}"
    );
    // the first order crashed before its send; the restart sent it, once
    let first = l
        .venue
        .orders()
        .into_iter()
        .filter(|o| o.cl_ord_id.as_deref() == Some("live-0-1"))
        .count();
    assert_eq!(
        first, 1,
        "the order written ahead before the crash should reach the venue exactly once"
    );
    let status: String = c
        .query_row(
            "SELECT status FROM orders WHERE client_order_id = 'live-0-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "filled");
    assert!(
        !all.contains("balance_mismatches\":[[\"BTC")
            && !all.contains("balance_mismatches\":[[\"USD"),
        "{all}"
    );
}

/// Polls `f` on the host database until it holds (the host runs in another process).
async fn db_until(l: &Live, what: &str, f: impl Fn(&rusqlite::Connection) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(c) = rusqlite::Connection::open(l.path("data/host.db")) {
            if f(&c) {
                return;
            }
        }
        if std::time::Instant::now() > deadline {
            let c = l.db();
            let events: Vec<String> = c
                .prepare("SELECT kind || ' ' || detail FROM events ORDER BY seq DESC LIMIT 12")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            panic!(
                "timed out waiting for {what}; last events:\n{}",
                events.join("\n")
            );
        }
        tokio::task::yield_now().await;
    }
}

fn count(c: &rusqlite::Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_drives_scans_and_stale_data_is_never_scanned() {
    let l = Live::new().await;
    let mut child = l.cmd(&["run", "--api-addr", "off"]).spawn().unwrap();
    // two subscriptions per connection: ohlc and ticker
    l.venue.wait_subscriptions(2).await;
    let iso = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string()
    };
    // candles from long ago: stored, but the strategy is not called on them
    l.venue.push_ohlc(
        "BTC/USD",
        60,
        &iso(1_600_000_000),
        10_000.0,
        10_100.0,
        9_900.0,
        10_050.0,
        1.0,
    );
    l.venue.push_ohlc(
        "BTC/USD",
        60,
        &iso(1_600_003_600),
        10_050.0,
        10_150.0,
        9_950.0,
        10_100.0,
        1.0,
    );
    db_until(&l, "the old candle", |c| {
        count(c, "SELECT COUNT(*) FROM candles") >= 1
    })
    .await;
    let c = l.db();
    let stale = "SELECT COUNT(*) FROM events WHERE kind = 'stale_data' AND detail LIKE '%BTCUSD%'";
    assert!(
        count(&c, stale) >= 1,
        "the scan due with the old candle should be skipped as stale"
    );
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM scan_results"),
        0,
        "the strategy was called on stale data"
    );
    // the feed drops and comes back; fresh candles get scanned
    l.venue.drop_ws();
    l.venue.wait_subscriptions(4).await;
    let now = trading_core::Clock::now(&trading_core::WallClock) / 3600 * 3600;
    l.venue.push_ohlc(
        "BTC/USD",
        60,
        &iso(now - 3_600),
        10_100.0,
        10_200.0,
        10_000.0,
        10_150.0,
        1.0,
    );
    l.venue.push_ohlc(
        "BTC/USD",
        60,
        &iso(now),
        10_150.0,
        10_250.0,
        10_050.0,
        10_200.0,
        1.0,
    );
    db_until(&l, "a scan on fresh data", |c| {
        count(c, "SELECT COUNT(*) FROM scan_results") >= 1
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_rest_on_the_exchange_are_suspended_at_shutdown_replaced_at_start_and_fill_there() {
    let l = Live::with_strategy("momentum", "[]").await;
    let candles = shared_candles("BTCUSD-1h.csv", 60_000, BARS);
    let c = l.db_when_ready().await;
    let suspended = |c: &rusqlite::Connection| -> i64 {
        c.query_row(
            "SELECT COUNT(*) FROM orders WHERE status = 'suspended' AND order_type = 'stop'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
    };
    // replay in slices until a run ends holding a position: its exits were on the
    // exchange and the shutdown suspended them (the seed's shutdown sequence)
    let mut held = false;
    for n in (30..BARS).step_by(2) {
        // the venue trades where the replay is, so exits rest instead of triggering at once
        l.venue.set_price(
            "XBTUSD",
            Decimal::try_from(candles[n - 1].close).unwrap().round_dp(1),
        );
        l.cut(n);
        let out = l.replay_file("btc-cut.csv", None).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if suspended(&c) > 0 {
            held = true;
            break;
        }
    }
    assert!(
        held,
        "a momentum position with its stop-loss should be held at the end of some slice"
    );
    assert!(l
        .venue
        .orders()
        .iter()
        .any(|o| o.ordertype == "stop-loss" && o.status == "canceled"));
    l.check_against_venue().await;
    // the market falls through the stop while the host is down: the restart
    // places the stop again, the exchange fills it, the ledger books a stop_loss
    l.venue.set_price("XBTUSD", Decimal::ONE);
    let out = l.replay(None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replaced: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'venue_reconcile' AND detail LIKE '%\"exits_replaced\":[\"live-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        replaced >= 1,
        "the suspended exits should be placed again at the restart"
    );
    let stopped: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM trades WHERE close_reason = 'stop_loss'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        stopped >= 1,
        "the stop filled on the exchange should close the position as stop_loss"
    );
    l.check_against_venue().await;
}
