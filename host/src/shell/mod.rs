//! The running host: one thread owns the active strategy, the trading
//! account (the shared engine, persisted per bar), the market data and the
//! database; it runs the scheduled jobs on the injected (feed) clock and
//! applies commands (deploy, halt, kill, status) between two bars. Its rooms:
//! `startup` (open, reconcile, load), `scan` (the per-bar transaction and the
//! strategy scan), `jobs` (tiering, daily jobs, reviews), `shadow` (forward
//! shadows, their promotion, the automatic rollback) and `commands`.

mod commands;
mod jobs;
mod scan;
mod shadow;
mod startup;

pub use jobs::Reviews;

use crate::config::{Mode, RiskFile, Settings};
use host_sandbox::{ModuleError, Runtime, StrategyModule};
use host_store::account::{self, Reconciliation};
use host_store::archive::{self, BytesSource};
use host_store::events::{self, Payload};
use host_store::payloads as ev;
use host_trading::backtest::{convert, Driver, WasmDriver};
use host_trading::live::{CancelScope, Sent};
use host_trading::trader::Trader;
use rusqlite::Connection;
use rust_decimal::Decimal;

use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use trading_core::{
    Candle, Decision, EngineConfig, EngineEvent, FillConfig, Interval, MarketData, MarketView,
};

/// The running strategy.
pub struct Active {
    pub version: i64,
    pub module: StrategyModule,
    pub driver: WasmDriver,
    pub params: Vec<(String, String)>,
    pub failures: u32,
    /// State after the last good scan, to restart a trapped instance from.
    pub last_good_state: Option<Vec<u8>>,
}

use host_control::{
    prepare, Command, DeployOutcome, KillOutcome, Paths, PositionStatus, Prepared, Status,
    StrategyStatus,
};
use host_trading::feed::{Feed, FeedEvent};

/// How many feed events the feed thread may read ahead of the shell.
const FEED_WINDOW: usize = 256;
/// How many handled feed events the shell hands back as credit at once.
const FEED_CREDIT: usize = 64;

/// The host's state machine: strategy, account, market data and jobs, all
/// driven by the injected clock.
pub struct Shell {
    pub conn: Connection,
    pub runtime: Arc<Runtime>,
    pub paths: Paths,
    pub settings: Settings,
    pub risk: RiskFile,
    pub active: Option<Active>,
    pub paused: Option<String>,
    pub data: Arc<MarketData>,
    pub trader: Trader,
    pub scan_seq: i64,
    pub clock: i64,
    pub bus: events::Bus,
    pub reconciliation: Reconciliation,
    mode: &'static str,
    next_scan_at: i64,
    last_scan_ts: Option<i64>,
    /// The last time the strategy answered a scan.
    last_answer: Option<i64>,
    dead_man_fired: bool,
    /// UTC day of the last daily job.
    day: Option<i64>,
    /// Inside a bar's (or command's) transaction: events wait here until it commits.
    unpublished: Option<Vec<events::Event>>,
    /// Live mode: the exchange that fills orders (paper: the bars do).
    pub live: Option<host_trading::live::LiveVenue>,
    /// Subscribed before startup: what startup published, for the alert
    /// notifier (`host run` hands it to the bot's handle).
    pub startup_events: Option<tokio::sync::broadcast::Receiver<events::Event>>,
    /// Paper mode on a venue feed: the venue's public market data (REST
    /// backfill and gap fills; live mode uses `live`). Never sends orders.
    pub market_source: Option<host_trading::live::LiveVenue>,
    /// The clock follows wall time (a live market feed), not only the bars.
    pub wall_clock: bool,
    /// The one clock the shell reads for wall time (the feed's clock is `clock`).
    pub wall: Arc<dyn trading_core::Clock>,
    /// This process is the data directory's one writer while the shell lives.
    _lock: host_store::lock::DataDirLock,
    /// Symbols whose data was stale at the last due scan.
    stale: Vec<String>,
    /// Symbols whose bar of the last scanned close had not come within the grace period.
    missing: Vec<String>,
    /// Automatic reviews (`host run --orchestrate`): triggers and the running cycle.
    pub reviews: Option<Reviews>,
    /// The day rolled: aggregate 5m → 1h → 1d and prune old candles after the commit.
    tiering_due: bool,
    /// The New York date the tiering job last ran on.
    tiered_on: Option<chrono::NaiveDate>,
    /// When the candle tiers were last rebuilt by this process (the first
    /// run after a start rebuilds everything, covering any downtime).
    tiered_at: Option<i64>,
    /// Candidates running in their forward shadow (paper accounts, no venue).
    shadows: Vec<shadow::Slot>,
    /// Running shadows stored by an earlier process have been resumed.
    shadows_resumed: bool,
    /// Promotions and rollbacks decided inside a bar, carried out after its commit.
    deferred: Vec<shadow::Deferred>,
    /// When the next heartbeat is due (clock seconds; None: the first tick sets it).
    next_heartbeat: Option<i64>,
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

/// The account part of [`Status`] from an engine (running host or stored snapshot).
pub fn account_status(
    engine: &trading_core::Engine,
    settings: &Settings,
    risk: &RiskFile,
) -> Status {
    let p = engine.portfolio();
    let positions: Vec<PositionStatus> = p
        .positions()
        .values()
        .map(|pos| {
            let mark = p.mark_price(&pos.symbol);
            let px = mark.unwrap_or(pos.avg_entry);
            PositionStatus {
                symbol: pos.symbol.clone(),
                qty: pos.qty,
                avg_entry: pos.avg_entry,
                mark,
                value: cents(pos.value_at(px)),
                unrealized_pnl: cents(pos.unrealized_pnl(px)),
                stop_loss: pos.stop_loss,
                take_profit: pos.take_profit,
                opened_at: pos.opened_at,
                intent: format!("{:?}", pos.intent).to_lowercase(),
                tag: pos.tag.clone(),
            }
        })
        .collect();
    let unrealized: Decimal = positions.iter().map(|x| x.unrealized_pnl).sum();
    let equity = p.equity();
    Status {
        running: false,
        mode: settings.mode,
        paused: None,
        strategy: None,
        scan_seq: 0,
        last_scan_ts: None,
        clock: p.last_time().unwrap_or(0),
        starting_capital: p.starting_capital(),
        cash: cents(p.cash()),
        equity: cents(equity),
        total_pnl: cents(equity - p.starting_capital() - p.net_deposits()),
        realized_pnl: cents(p.realized_pnl()),
        unrealized_pnl: unrealized,
        daily_pnl: cents(p.today().map(|(_, d)| d.pnl()).unwrap_or_default()),
        fees_paid: cents(p.total_fees()),
        drawdown_pct: p.drawdown_pct().round_dp(4),
        positions,
        open_orders: engine.pending().len(),
        paused_symbols: engine.paused_symbols().iter().cloned().collect(),
        closed_trades: p.closed_trades().len(),
        halt: engine.risk().halt().map(|h| h.to_string()),
        killed: engine.risk().is_killed(),
        limits: risk.clone(),
        health: None,
        shadows: Vec::new(),
    }
}

/// The account as last saved, for `host status` when no host runs.
pub fn stored_status(
    conn: &Connection,
    settings: &Settings,
    risk: &RiskFile,
) -> anyhow::Result<Option<Status>> {
    let mode = match settings.mode {
        Mode::Paper => "paper",
        Mode::Live => "live",
    };
    Ok(account::peek(conn, mode)?.map(|engine| account_status(&engine, settings, risk)))
}

/// A stand-in the engine calls back into when no strategy runs (paused):
/// fills still happen, nobody is told.
struct NoStrategy;

impl Driver for NoStrategy {
    fn scan_minutes(&self) -> u32 {
        5
    }
    fn analyze(
        &mut self,
        _: i64,
        _: &host_sandbox::bindings::Portfolio,
        _: &MarketView,
    ) -> Result<Vec<host_sandbox::bindings::Signal>, ModuleError> {
        Ok(Vec::new())
    }
    fn on_fill(&mut self, _: &host_sandbox::bindings::Fill) -> Result<(), ModuleError> {
        Ok(())
    }
    fn on_position_closed(
        &mut self,
        _: &host_sandbox::bindings::ClosedTrade,
    ) -> Result<(), ModuleError> {
        Ok(())
    }
}

impl Shell {
    /// The time events are stamped with: the injected clock once it runs.
    fn now(&self) -> i64 {
        if self.clock > 0 {
            self.clock
        } else {
            self.wall.now()
        }
    }

    /// Appends to the hash-chained event log and publishes to subscribers.
    pub fn event(&mut self, symbol: Option<&str>, payload: Payload) -> Option<i64> {
        let ts = self.now();
        match events::append(&self.conn, ts, symbol, &payload) {
            Ok(seq) => {
                let ev = events::Event {
                    seq,
                    ts,
                    symbol: symbol.map(str::to_string),
                    payload,
                };
                match self.unpublished.as_mut() {
                    Some(buf) => buf.push(ev),
                    None => {
                        let _ = self.bus.send(ev);
                    }
                }
                Some(seq)
            }
            Err(e) => {
                tracing::error!("event log: {e}");
                None
            }
        }
    }

    fn alert(&mut self, message: String) {
        tracing::warn!("{message}");
        self.event(None, Payload::Alert(ev::Alert { message }));
    }

    /// Runs `feed` to its end (or until shutdown). The feed runs on its own
    /// thread and is at most one event ahead of the shell, so a command waits
    /// for at most the bar being scanned, never for the market: a silent feed
    /// (a quiet venue, a replay at `--speed 1`) does not silence the host.
    pub fn run(
        &mut self,
        mut feed: Box<dyn Feed + Send>,
        commands: Receiver<Command>,
        exit_at_end: bool,
    ) {
        self.event(
            None,
            Payload::Startup(ev::Startup {
                mode: self.mode.to_string(),
                paused: self.paused.clone(),
                version: self.active.as_ref().map(|a| a.version),
            }),
        );
        let (tx, inputs) = std::sync::mpsc::channel::<Input>();
        // The feed reads at most FEED_WINDOW events ahead of the shell; the
        // shell hands back credit in batches, so neither thread waits for the
        // other on every bar (a replay ran a third slower in lockstep).
        let (credit, credits) = std::sync::mpsc::channel::<usize>();
        let feed_tx = tx.clone();
        std::thread::Builder::new()
            .name("feed".into())
            .spawn(move || {
                let mut ahead = 0usize;
                loop {
                    while let Ok(n) = credits.try_recv() {
                        ahead = ahead.saturating_sub(n);
                    }
                    while ahead >= FEED_WINDOW {
                        match credits.recv() {
                            Ok(n) => ahead = ahead.saturating_sub(n),
                            Err(_) => return, // the shell is gone
                        }
                    }
                    let ev = feed.next_event();
                    let end = ev.is_none();
                    ahead += 1;
                    // the shell is gone, or the feed ended: this thread's work is done
                    if feed_tx.send(Input::Feed(ev)).is_err() || end {
                        break;
                    }
                }
            })
            .expect("spawning the feed thread");
        let mut handled = 0usize;
        std::thread::Builder::new()
            .name("commands".into())
            .spawn(move || {
                for cmd in commands {
                    if tx.send(Input::Command(cmd)).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the command thread");
        let mut feed_ended = false;
        loop {
            match inputs.recv_timeout(std::time::Duration::from_secs(1)) {
                Ok(Input::Command(cmd)) => {
                    if !self.handle(cmd) {
                        break;
                    }
                }
                Ok(Input::Feed(Some(ev))) => {
                    self.on_feed(ev);
                    // the feed thread may read further ahead
                    handled += 1;
                    if handled == FEED_CREDIT {
                        let _ = credit.send(handled);
                        handled = 0;
                    }
                }
                Ok(Input::Feed(None)) => {
                    if exit_at_end {
                        break;
                    }
                    feed_ended = true;
                    self.save_state();
                    tracing::info!(
                        "feed ended after {} scans; waiting for commands",
                        self.scan_seq
                    );
                }
                // idle after the feed: a review that was waiting for the running one
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if feed_ended => {
                    self.review_if_due()
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = self.wall.now();
            self.heartbeat(now);
        }
        self.shutdown();
    }

    fn on_feed(&mut self, ev: FeedEvent) {
        match ev {
            FeedEvent::Bar(symbol, interval, bar) => self.on_bar(&symbol, interval, bar),
            FeedEvent::Quote {
                symbol,
                bid,
                ask,
                last,
            } => {
                let (spread, ts) = (ask - bid, self.now());
                if spread.is_finite() && spread >= 0.0 && last.is_finite() && last > 0.0 {
                    Arc::make_mut(&mut self.data).set_quote(
                        &symbol,
                        trading_core::Quote {
                            ts,
                            price: last,
                            spread,
                        },
                    );
                }
            }
            FeedEvent::Reconnected => self.fill_gaps(),
            FeedEvent::Tick(now) => {
                self.begin();
                let scanned = self.tick(now.unwrap_or(self.clock));
                self.commit(scanned);
                // the position monitor: exchange-side stop-loss / take-profit fills
                self.execute_live();
                self.run_deferred();
            }
        }
    }
}

/// Whether a heartbeat is due at `now` with the next one due at `next`
/// (None: none yet), every `every` seconds; and when the one after is due
/// (on the grid of `every`, so a late loop does not drift it).
pub(crate) fn heartbeat_due(now: i64, next: Option<i64>, every: i64) -> (bool, Option<i64>) {
    if every <= 0 {
        return (false, None);
    }
    let after = now - now.rem_euclid(every) + every;
    match next {
        None => (false, Some(after)),
        Some(t) if now >= t => (true, Some(after)),
        Some(t) => (false, Some(t)),
    }
}

impl Shell {
    /// `heartbeat` every `[safety] heartbeat_minutes` of wall time (0: off):
    /// the host is alive, with its scans, equity and paused symbols.
    pub(crate) fn heartbeat(&mut self, now: i64) {
        let every = i64::from(self.settings.safety.heartbeat_minutes) * 60;
        let (due, next) = heartbeat_due(now, self.next_heartbeat, every);
        self.next_heartbeat = next;
        if !due {
            return;
        }
        let p = self.trader.engine.portfolio();
        let beat = ev::Heartbeat {
            scans: self.scan_seq,
            equity: cents(p.equity()),
            positions: p.positions().len(),
            open_orders: self.trader.engine.pending().len(),
            paused_symbols: self
                .trader
                .engine
                .paused_symbols()
                .iter()
                .cloned()
                .collect(),
            strategy_version: self.active.as_ref().map(|a| a.version),
        };
        self.event(None, Payload::Heartbeat(beat));
    }

    /// `config_change` for each configuration file that differs from the
    /// last run's (the effective settings and risk limits, compared as JSON).
    pub(crate) fn config_changes(&mut self) {
        let files = [
            (
                ev::ConfigFile::Settings,
                serde_json::to_string(&self.settings),
            ),
            (
                ev::ConfigFile::RiskLimits,
                serde_json::to_string(&self.risk),
            ),
        ];
        for (file, json) in files {
            let change = match json {
                Ok(j) => {
                    host_store::config_log::observe(&self.conn, file, &j).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            };
            match change {
                Ok(Some(c)) => {
                    self.event(None, Payload::ConfigChange(c));
                }
                Ok(None) => {}
                Err(e) => self.alert(format!("{file:?}: the configuration was not compared: {e}")),
            }
        }
    }
}

/// What the shell's loop takes in: a command, or the feed's next event (None: it ended).
enum Input {
    Command(Command),
    Feed(Option<FeedEvent>),
}

#[cfg(test)]
mod tests {
    #[test]
    fn heartbeats_fall_on_their_grid_and_a_late_loop_does_not_drift_them() {
        use super::heartbeat_due;
        // the first call only sets the next beat, at the next grid point
        assert_eq!(heartbeat_due(130, None, 60), (false, Some(180)));
        assert_eq!(heartbeat_due(179, Some(180), 60), (false, Some(180)));
        assert_eq!(heartbeat_due(180, Some(180), 60), (true, Some(240)));
        // late by 50 s: the beat fires and the next stays on the grid
        assert_eq!(heartbeat_due(290, Some(240), 60), (true, Some(300)));
        // off
        assert_eq!(heartbeat_due(290, Some(240), 0), (false, None));
    }
}
