//! Paper trading on a venue's own market feed, accelerated: a loopback
//! Kraken (and, in a second test, a loopback Coinbase: its `candles`
//! channel and its public paged REST candles, no key) serves two symbols'
//! real 5-minute candles (`../shared/data/`) —
//! history over REST, then the stream over its websocket as fast as the real
//! `host` binary takes them — and the host runs in paper mode on its feed
//! with `clock = "feed"`. Checked: every bar of every symbol is stored once
//! and scanned once, in order, never before its bars; the 1h and 1d candles
//! the strategy saw equal an independent aggregation of the 5m data, live,
//! without a restart; a dropped websocket, and a silent one given up after
//! its idle timeout, lose no bar (the gap is fetched over REST) and repeat
//! none; a kill -9 and a restart resume without a gap.

use crate::common::*;
use host_exchange::loopback::coinbase_venue::CoinbaseVenue;
use host_exchange::loopback::kraken_venue::KrakenVenue;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use trading_core::Candle;

/// Bars per symbol the venue's REST history holds before the host starts.
const HISTORY: usize = 36;
/// Bars per symbol streamed after it (past a day boundary and an outage).
const STREAM: usize = 600;
/// Where the websocket drops (bars lost from the stream) and for how many bars.
const DROP_AT: usize = 200;
const DROPPED: usize = 7;
/// Where the feed falls silent (no heartbeat, no candle: the host must find
/// it dead and reconnect) and how many bars close meanwhile.
const SILENT_AT: usize = 300;
const SILENT: usize = 5;
/// Where the host is killed (-9) and how many bars close while it is down.
const KILL_AT: usize = 420;
const DOWN: usize = 15;

const SYMBOLS: [(&str, &str, &str); 2] = [
    ("BTCUSD", "BTC/USD", "BTCUSDT-5m.csv"),
    ("ETHUSD", "ETH/USD", "ETHUSDT-5m.csv"),
];

/// The loopback venue the feed comes from, each speaking its documented protocol.
enum Venue {
    Kraken(KrakenVenue),
    Coinbase(CoinbaseVenue),
}

/// A price as the venue's JSON writes it: the shortest text that reads back as the same `f64`.
fn dec(x: f64) -> rust_decimal::Decimal {
    format!("{x}").parse().unwrap()
}

impl Venue {
    fn name(&self) -> &'static str {
        match self {
            Venue::Kraken(_) => "kraken",
            Venue::Coinbase(_) => "coinbase",
        }
    }

    fn urls(&self) -> (&str, &str) {
        match self {
            Venue::Kraken(v) => (&v.rest_url, &v.ws_url),
            Venue::Coinbase(v) => (&v.rest_url, &v.ws_url),
        }
    }

    /// Websocket subscriptions one connection makes (Kraken: ohlc and
    /// ticker; Coinbase: candles, ticker and heartbeats).
    fn per_connection(&self) -> usize {
        match self {
            Venue::Kraken(_) => 2,
            Venue::Coinbase(_) => 3,
        }
    }

    /// The REST history of one symbol at one tier.
    fn set_history(&self, symbol: &str, minutes: u32, bars: &[Candle]) {
        match self {
            Venue::Kraken(v) => v.set_ohlc(
                &format!("{}/{}", &symbol[..3], &symbol[3..]),
                minutes,
                &rows(bars),
            ),
            Venue::Coinbase(v) => v.set_candles_at(
                &product(symbol),
                i64::from(minutes) * 60,
                bars.iter()
                    .map(|c| {
                        (
                            c.ts,
                            dec(c.open),
                            dec(c.high),
                            dec(c.low),
                            dec(c.close),
                            dec(c.volume),
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// One 5m candle update on the websocket.
    fn push(&self, symbol: &str, c: &Candle) {
        match self {
            Venue::Kraken(v) => v.push_ohlc(
                &format!("{}/{}", &symbol[..3], &symbol[3..]),
                5,
                &iso(c.ts),
                c.open,
                c.high,
                c.low,
                c.close,
                c.volume,
            ),
            Venue::Coinbase(v) => v.push_candle(
                &product(symbol),
                c.ts,
                &format!("{}", c.open),
                &format!("{}", c.high),
                &format!("{}", c.low),
                &format!("{}", c.close),
                &format!("{}", c.volume),
            ),
        }
    }

    fn drop_ws(&self) {
        match self {
            Venue::Kraken(v) => v.drop_ws(),
            Venue::Coinbase(v) => v.drop_ws(),
        }
    }

    /// Heartbeats stop (the connection stays open and says nothing).
    fn set_silent(&self, silent: bool) {
        match self {
            Venue::Kraken(v) => v.set_silent(silent),
            Venue::Coinbase(v) => v.set_silent(silent),
        }
    }

    /// Websocket connections accepted so far.
    fn connections(&self) -> usize {
        match self {
            Venue::Kraken(v) => v.state().ws_connections,
            Venue::Coinbase(v) => v.state().ws_connections,
        }
    }

    /// Waits for the subscriptions of `connections` websocket connections.
    async fn wait_connections(&self, connections: usize) {
        let n = connections * self.per_connection();
        match self {
            Venue::Kraken(v) => v.wait_subscriptions(n).await,
            Venue::Coinbase(v) => v.wait_subscriptions(n).await,
        }
    }
}

/// Coinbase's product id of a host symbol (`BTCUSD` → `BTC-USD`).
fn product(symbol: &str) -> String {
    format!("{}-{}", &symbol[..3], &symbol[3..])
}

struct Feed {
    dir: tempfile::TempDir,
    venue: Venue,
    bars: Vec<Vec<Candle>>,
    runs: usize,
}

fn iso(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn rows(bars: &[Candle]) -> Vec<(i64, f64, f64, f64, f64, f64)> {
    bars.iter()
        .map(|c| (c.ts, c.open, c.high, c.low, c.close, c.volume))
        .collect()
}

impl Feed {
    async fn new() -> Feed {
        Feed::on(Venue::Kraken(KrakenVenue::start().await)).await
    }

    async fn on(venue: Venue) -> Feed {
        let mut bars: Vec<Vec<Candle>> = SYMBOLS
            .iter()
            .map(|(_, _, file)| shared_candles(file, 0, HISTORY + STREAM + 1))
            .collect();
        if let Venue::Coinbase(_) = venue {
            // the Coinbase adapter pages its REST history back from the wall
            // clock: the candles are moved (by whole days, so the day
            // boundaries stay where they were) to end before now
            let now = chrono::Utc::now().timestamp();
            let span = (bars[0].len() as i64) * 300 + 6 * 3_600;
            let shift = (now - span - bars[0][0].ts).div_euclid(86_400) * 86_400;
            for b in &mut bars {
                for c in b.iter_mut() {
                    c.ts += shift;
                }
            }
        }
        let ts: Vec<Vec<i64>> = bars
            .iter()
            .map(|b| b.iter().map(|c| c.ts).collect())
            .collect();
        assert_eq!(ts[0], ts[1], "the two files' candles are aligned");
        let dir = tempfile::tempdir().unwrap();
        let (rest_url, ws_url) = venue.urls();
        let settings = format!(
            "mode = \"paper\"\nclock = \"feed\"\nvenue = \"{0}\"\nsymbols = [\"BTCUSD\", \"ETHUSD\"]\n\
             [strategy]\ndefault = \"{1}\"\nparams = [[\"echo\", \"tiers\"]]\n\
             [exchanges.{0}]\nrest_url = \"{2}\"\nws_url = \"{3}\"\nrate_per_sec = 1000.0\n",
            venue.name(),
            guest_path("market-echo").display(),
            rest_url,
            ws_url
        );
        std::fs::write(dir.path().join("settings.toml"), settings).unwrap();
        std::fs::write(dir.path().join("risk.toml"), LOOSE_RISK_LIMITS).unwrap();
        let f = Feed {
            dir,
            venue,
            bars,
            runs: 0,
        };
        f.serve_history(HISTORY);
        f
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The venue's REST history: the first `n` bars of each symbol at 5m
    /// (and nothing at 1h or 1d: those the host builds itself).
    fn serve_history(&self, n: usize) {
        for (k, (sym, _, _)) in SYMBOLS.iter().enumerate() {
            self.venue.set_history(sym, 5, &self.bars[k][..n]);
            self.venue.set_history(sym, 60, &[]);
            self.venue.set_history(sym, 1440, &[]);
        }
    }

    fn start(&mut self) -> Child {
        self.runs += 1;
        let log = std::fs::File::create(self.path(&format!("run{}.log", self.runs))).unwrap();
        Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["run", "--api-addr", "off"])
            .env("HOST_DATA_DIR", self.path("data"))
            .env("HOST_ARCHIVE_DIR", self.path("archive"))
            .env("HOST_CONFIG", self.path("settings.toml"))
            .env("HOST_RISK_LIMITS", self.path("risk.toml"))
            .env("HOST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("KRAKEN_API_KEY")
            .env_remove("KRAKEN_API_SECRET")
            .env_remove("HOST_FAILPOINT")
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Streams bar `i` of both symbols over the websocket (it closes when
    /// bar `i + 1` begins, as Kraken's `ohlc` channel works).
    fn push(&self, i: usize) {
        for (k, (sym, _, _)) in SYMBOLS.iter().enumerate() {
            self.venue.push(sym, &self.bars[k][i]);
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("data/host.db")).unwrap()
    }

    /// Waits until the store holds both symbols' 5m bars up to bar `i`.
    async fn stored_through(&self, i: usize) {
        let ts = self.bars[0][i].ts;
        let path = self.path("data/host.db");
        wait_db(&path, &format!("5m bars through #{i}"), move |c| {
            let n: i64 = c
                .query_row(
                    "SELECT COUNT(DISTINCT symbol) FROM candles WHERE interval = '5m' AND ts = ?1",
                    [ts],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            n == 2
        })
        .await;
    }

    /// Streams bars `from..to` in batches, each waited for in the store.
    async fn stream(&self, from: usize, to: usize) {
        let mut i = from;
        while i < to {
            let end = (i + 40).min(to);
            for j in i..end {
                self.push(j);
            }
            // bar `end - 1` is still open in the venue's stream: `end - 2` closed
            if end >= 2 && end - 2 >= from {
                self.stored_through(end - 2).await;
            }
            i = end;
        }
    }
}

/// Per (symbol, interval): the newest candle a scan saw, as logged (None: none).
type Seen = BTreeMap<(String, String), Option<Vec<String>>>;

/// What market-echo logged: per scan `now`, per symbol and interval, the newest candle it saw.
fn echoed(logs: &[PathBuf]) -> BTreeMap<i64, Seen> {
    let mut out: BTreeMap<i64, Seen> = BTreeMap::new();
    for p in logs {
        let text = std::fs::read_to_string(p).unwrap();
        for line in text.lines() {
            let Some(at) = line.find("tier ") else {
                continue;
            };
            let f: Vec<&str> = line[at..].split_whitespace().collect();
            let now: i64 = f[1].parse().unwrap();
            let seen = (f[4] != "none").then(|| f[4..10].iter().map(|s| s.to_string()).collect());
            out.entry(now)
                .or_default()
                .insert((f[2].to_string(), f[3].to_string()), seen);
        }
    }
    out
}

/// The coarse candle of the newest bucket of `secs` that ended by `now`, by
/// hand: open of the first 5m candle in it, close of the last, extremes,
/// summed volume (None when the bucket holds no candle).
fn by_hand(fine: &[Candle], secs: i64, now: i64) -> Option<Vec<String>> {
    let bucket = now.div_euclid(secs) * secs - secs;
    let inside: Vec<&Candle> = fine
        .iter()
        .filter(|c| c.ts >= bucket && c.ts < bucket + secs)
        .collect();
    let first = inside.first()?;
    let mut high = f64::MIN;
    let mut low = f64::MAX;
    let mut volume = 0.0;
    for c in &inside {
        high = high.max(c.high);
        low = low.min(c.low);
        volume += c.volume;
    }
    let last = inside.last()?;
    let b = |x: f64| format!("{:x}", x.to_bits());
    Some(vec![
        bucket.to_string(),
        b(first.open),
        b(high),
        b(low),
        b(last.close),
        b(volume),
    ])
}

/// Polls `f` on the host database (another process) until it holds, for at most 120 s.
async fn wait_db(path: &Path, what: &str, f: impl Fn(&rusqlite::Connection) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut conn = None;
    loop {
        if conn.is_none() && path.exists() {
            conn = rusqlite::Connection::open(path).ok();
        }
        if conn.as_ref().is_some_and(&f) {
            return;
        }
        if std::time::Instant::now() > deadline {
            let events: Vec<String> = conn
                .as_ref()
                .and_then(|c| {
                    c.prepare("SELECT kind || ' ' || detail FROM events ORDER BY seq DESC LIMIT 12")
                        .ok()?
                        .query_map([], |r| r.get(0))
                        .ok()?
                        .collect::<Result<_, _>>()
                        .ok()
                })
                .unwrap_or_default();
            let log = path
                .parent()
                .and_then(Path::parent)
                .and_then(|d| std::fs::read_dir(d).ok())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("run"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|t| t.lines().rev().take(15).collect::<Vec<_>>().join("\n"))
                .collect::<Vec<_>>()
                .join("\n---\n");
            panic!(
                "timed out waiting for {what}; last events:\n{}\nhost logs (newest lines first):\n{log}",
                events.join("\n")
            );
        }
        // a condition poll with a deadline, not a fixed wait
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every complete hour of `fine` that ended by `now`, built by hand.
fn hours_by_hand(fine: &[Candle], now: i64) -> Vec<Candle> {
    let mut out: Vec<Candle> = Vec::new();
    for c in fine {
        let bucket = c.ts.div_euclid(3_600) * 3_600;
        if bucket + 3_600 > now {
            break;
        }
        match out.last_mut() {
            Some(h) if h.ts == bucket => {
                h.high = h.high.max(c.high);
                h.low = h.low.min(c.low);
                h.close = c.close;
                h.volume += c.volume;
            }
            _ => out.push(Candle { ts: bucket, ..*c }),
        }
    }
    out
}

fn kill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

fn count(c: &rusqlite::Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_on_a_fast_venue_feed_scans_every_bar_once_and_builds_every_tier_live() {
    fast_feed(Feed::new().await).await;
}

/// The same on Coinbase's feed (its candles channel, its paged REST candles).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_on_a_fast_coinbase_feed_scans_every_bar_once_and_builds_every_tier_live() {
    fast_feed(Feed::on(Venue::Coinbase(CoinbaseVenue::start().await)).await).await;
}

async fn fast_feed(mut f: Feed) {
    let mut host = f.start();
    f.venue.wait_connections(1).await;
    f.stored_through(HISTORY - 1).await; // the REST backfill
    let streamed_from = HISTORY;

    // the stream, up to an outage of the websocket
    f.stream(HISTORY, DROP_AT).await;
    f.serve_history(DROP_AT + DROPPED);
    f.venue.drop_ws();
    for i in DROP_AT..DROP_AT + DROPPED {
        f.push(i); // nobody listens: these are lost from the stream
    }
    f.venue.wait_connections(2).await;
    f.stream(DROP_AT + DROPPED, SILENT_AT).await;

    // a silent feed: nothing arrives, not even heartbeats, until the host
    // gives the connection up (its idle timeout) and connects again
    f.stored_through(SILENT_AT - 2).await;
    let before = f.venue.connections();
    f.venue.set_silent(true);
    f.serve_history(SILENT_AT + SILENT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while f.venue.connections() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "a silent feed was never given up"
        );
        // a condition poll with a deadline, not a fixed wait
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    f.venue.set_silent(false);
    f.venue.wait_connections(3).await;
    f.stored_through(SILENT_AT + SILENT - 1).await;
    f.stream(SILENT_AT + SILENT, KILL_AT).await;

    // kill -9; bars close while the host is down; it restarts
    f.stored_through(KILL_AT - 2).await;
    kill(&mut host);
    f.serve_history(KILL_AT + DOWN);
    let mut host = f.start();
    f.venue.wait_connections(4).await;
    f.stored_through(KILL_AT + DOWN - 1).await;
    f.stream(KILL_AT + DOWN, HISTORY + STREAM + 1).await;
    let last = HISTORY + STREAM - 1;
    f.stored_through(last).await;
    // the scan of the last bar is in the same transaction as the bar
    kill(&mut host);

    let c = f.db();
    // every 5m bar stored once, equal to the venue's
    for (k, (sym, _, _)) in SYMBOLS.iter().enumerate() {
        let stored: Vec<(i64, f64, f64)> = c
            .prepare("SELECT ts, close, volume FROM candles WHERE symbol = ?1 AND interval = '5m' ORDER BY ts")
            .unwrap()
            .query_map([sym], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(i64, f64, f64)> = f.bars[k][..=last]
            .iter()
            .map(|c| (c.ts, c.close, c.volume))
            .collect();
        assert_eq!(
            stored, want,
            "{sym}: the stored 5m bars differ from the venue's"
        );
    }
    let gap_fills = count(
        &c,
        "SELECT COUNT(*) FROM events WHERE kind = 'gap_fill' AND json_extract(detail, '$.bars') > 0",
    );
    assert!(
        gap_fills >= 2,
        "the bars of the outage and of the silence came back over REST: {gap_fills} gap fills"
    );

    // scans: strictly increasing closes, never before both symbols' bars
    let scans: Vec<i64> = c
        .prepare("SELECT ts FROM scan_results ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let twice: Vec<(usize, i64, i64)> = scans
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] >= w[1])
        .map(|(i, w)| (i, w[0], w[1]))
        .collect();
    assert!(
        twice.is_empty(),
        "closes scanned twice or out of order: {twice:?} (first close {})",
        f.bars[0][0].ts + 300
    );
    let closes: Vec<i64> = f.bars[0][..=last].iter().map(|c| c.ts + 300).collect();
    let scanned: BTreeSet<i64> = scans.iter().copied().collect();
    // the bars that streamed or were fetched after the outage were all scanned;
    // the ones that closed while the host was down are history at its restart
    for (i, close) in closes.iter().enumerate().skip(streamed_from) {
        if (KILL_AT - 1..KILL_AT + DOWN).contains(&i) {
            continue;
        }
        assert!(
            scanned.contains(close),
            "bar #{i} (close {close}) was not scanned"
        );
    }
    for s in &scans {
        assert!(closes.contains(s), "a scan at {s} is not at a bar's close");
    }

    // what the strategy saw: at each scan, the bar of that close at 5m, and
    // the newest complete hour and day aggregated from the 5m bars
    let logs: Vec<PathBuf> = (1..=f.runs)
        .map(|r| f.path(&format!("run{r}.log")))
        .collect();
    let seen = echoed(&logs);
    let mut hours = BTreeSet::new();
    let mut days = BTreeSet::new();
    for now in &scans {
        let at = seen
            .get(now)
            .unwrap_or_else(|| panic!("no echo of the scan at {now}"));
        for (k, (sym, _, _)) in SYMBOLS.iter().enumerate() {
            let bars: Vec<Candle> = f.bars[k]
                .iter()
                .filter(|c| c.ts + 300 <= *now)
                .copied()
                .collect();
            let five = by_hand(&bars, 300, *now);
            assert_eq!(
                at[&(sym.to_string(), "5m".into())],
                five,
                "{sym} 5m at {now}"
            );
            let hour = by_hand(&bars, 3_600, *now);
            assert_eq!(
                at[&(sym.to_string(), "1h".into())],
                hour,
                "{sym} 1h at {now}"
            );
            hours.insert(hour);
            // days are built from hours (the tier rule: 5m → 1h → 1d), so
            // their volume is the sum of the hours' sums
            let hourly = hours_by_hand(&bars, *now);
            let day = by_hand(&hourly, 86_400, *now);
            if day.is_some() {
                assert_eq!(
                    at[&(sym.to_string(), "1d".into())],
                    day,
                    "{sym} 1d at {now}"
                );
                days.insert(day);
            }
        }
    }
    assert!(hours.len() > 40, "the hours advanced live: {}", hours.len());
    assert!(
        !days.is_empty(),
        "a day closed during the stream and was seen"
    );
}

/// `/api/v1/health` means something: a paper host on a wall clock whose
/// venue serves only old candles answers 503 and names the stale feeds,
/// while the parts that are fine say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_503_and_names_the_stale_feeds() {
    let mut f = Feed::new().await;
    let port = crate::people_host::free_port();
    let text = std::fs::read_to_string(f.path("settings.toml"))
        .unwrap()
        .replace("clock = \"feed\"", "clock = \"wall\"");
    std::fs::write(
        f.path("settings.toml"),
        format!("{text}[api]\naddr = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    f.runs += 1;
    let log = std::fs::File::create(f.path("run1.log")).unwrap();
    let mut host = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["run"])
        .env("HOST_DATA_DIR", f.path("data"))
        .env("HOST_ARCHIVE_DIR", f.path("archive"))
        .env("HOST_CONFIG", f.path("settings.toml"))
        .env("HOST_RISK_LIMITS", f.path("risk.toml"))
        .env("HOST_API_TOKEN", "health-test-token")
        .env("NO_COLOR", "1")
        .current_dir(f.dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    f.venue.wait_connections(1).await;
    // on a wall clock the 2021 history is older than any backfill window:
    // the feed brings one old bar, which is stored but not fresh
    f.push(0);
    f.push(1);
    f.stored_through(0).await;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/v1/health");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (code, body) = loop {
        if let Ok(r) = http.get(&url).send().await {
            let code = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            if body.get("checks").is_some() {
                break (code, body);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    kill(&mut host);
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["healthy"], false);
    let checks = body["checks"].as_array().unwrap();
    let of = |part: &str, symbol: Option<&str>| {
        checks
            .iter()
            .find(|c| c["part"] == part && symbol.is_none_or(|s| c["symbol"] == s))
            .unwrap_or_else(|| panic!("no {part} check in {body}"))
            .clone()
    };
    for (sym, _, _) in SYMBOLS {
        let feed = of("feed", Some(sym));
        assert_eq!(feed["ok"], false, "{feed}");
        assert!(feed["age_secs"].as_i64().unwrap() > 365 * 86_400, "{feed}");
    }
    assert_eq!(of("database", None)["ok"], true);
    assert_eq!(of("strategy", None)["ok"], true);
    assert!(
        body.get("cash").is_none(),
        "health shows no account figures"
    );
}
