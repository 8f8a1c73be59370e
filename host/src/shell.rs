//! The running host: one thread owns the active strategy, the trading
//! account (the shared engine, persisted per bar), the market data and the
//! database; it runs the scheduled jobs on the injected (feed) clock and
//! applies commands (deploy, halt, kill, status) between two bars.

use crate::config::{Mode, RiskFile, Settings};
use host_sandbox::{ModuleError, Runtime, StrategyModule};
use host_store::account::{self, Reconciliation};
use host_store::archive::{self, BytesSource};
use host_store::events;
use host_trading::backtest::{convert, Driver, WasmDriver};
use host_trading::trader::Trader;
use rusqlite::Connection;
use rust_decimal::Decimal;

use std::path::{Path, PathBuf};
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
    /// The clock follows wall time (a live market feed), not only the bars.
    pub wall_clock: bool,
    /// Symbols whose data was stale at the last due scan.
    stale: Vec<String>,
    /// Automatic reviews (`host run --orchestrate`): triggers and the running cycle.
    pub reviews: Option<Reviews>,
    /// The day rolled: aggregate 5m → 1h → 1d and prune old candles after the commit.
    tiering_due: bool,
    /// When the candle tiers were last rebuilt by this process (the first
    /// run after a start rebuilds everything, covering any downtime).
    tiered_at: Option<i64>,
}

/// The orchestrator as the scheduler runs it: triggers evaluated on the
/// injected clock, at most one cycle at a time, on its own thread (it deploys
/// through the [`Deployer`](host_control::Deployer) it is given, the host's
/// own handle, so the swap lands between two scans).
pub struct Reviews {
    pub repo_root: PathBuf,
    deployer: std::sync::Arc<dyn host_control::Deployer>,
    pub proposer: host_orchestrator::ProposerChoice,
    state: host_orchestrator::schedule::TriggerState,
    running: Option<std::thread::JoinHandle<()>>,
    seed: u64,
}

impl Reviews {
    pub fn new(
        settings: &Settings,
        repo_root: PathBuf,
        proposer: host_orchestrator::ProposerChoice,
        deployer: std::sync::Arc<dyn host_control::Deployer>,
    ) -> anyhow::Result<Reviews> {
        let config =
            host_orchestrator::schedule::TriggerConfig::from_settings(&settings.orchestrator)
                .ok_or_else(|| {
                    anyhow::anyhow!("[orchestrator] window_start/window_end are not HH:MM")
                })?;
        Ok(Reviews {
            repo_root,
            deployer,
            proposer,
            state: host_orchestrator::schedule::TriggerState {
                config,
                session_pnl_pct: 0.0,
                consecutive_losses: 0,
                closed_trades: 0,
                trades_at_last_review: 0,
                atr: Default::default(),
                manual_requested: false,
                last_fired: Default::default(),
                last_nightly: None,
            },
            running: None,
            seed: 1,
        })
    }
}

/// ATR(14) of the last bars and its mean over the last 30 days of hourly bars.
fn atr_now_and_baseline(bars: &[Candle]) -> Option<(f64, f64)> {
    if bars.len() < 30 {
        return None;
    }
    let tr: Vec<f64> = bars
        .windows(2)
        .map(|w| {
            (w[1].high - w[1].low)
                .max((w[1].high - w[0].close).abs())
                .max((w[1].low - w[0].close).abs())
        })
        .collect();
    let atr = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let now = atr(&tr[tr.len() - 14..]);
    let base = atr(&tr[tr.len().saturating_sub(720)..]);
    (now.is_finite() && base.is_finite() && base > 0.0).then_some((now, base))
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
        closed_trades: p.closed_trades().len(),
        halt: engine.risk().halt().map(|h| h.to_string()),
        killed: engine.risk().is_killed(),
        limits: risk.clone(),
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
    /// Startup (the seed's L1–L9): open and migrate the database, rebuild the
    /// account from its fills and check it against the snapshot (L1),
    /// re-evaluate halts (L2), warn about orphaned positions (L3), load the
    /// strategy from the archive file, else its database copy, else the
    /// configured default, else start paused (L4), restore its state, cancel
    /// orders that are no longer open (L7) and raise the startup alerts.
    pub fn start(paths: Paths, settings: Settings, risk: RiskFile) -> anyhow::Result<Shell> {
        std::fs::create_dir_all(&paths.data_dir)?;
        let conn = host_store::db::open(&paths.db())?;
        let runtime = Runtime::new(settings.sandbox.clone(), Some(&paths.cache()))?;
        let scan_seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM scan_results", [], |r| {
                r.get(0)
            })?;
        let mode = match settings.mode {
            Mode::Paper => "paper",
            Mode::Live => "live",
        };
        let risk_config = convert::risk_config(&risk)?;
        let engine_config = EngineConfig {
            fill: FillConfig {
                fee_bps: settings.fee_bps.into(),
                slippage_bps: settings.slippage_bps.into(),
            },
            order_ttl_bars: 24,
        };
        // L7: live mode fails fast when the venue refuses the keys; its quote
        // balance is the starting capital of a new live account
        let (live, capital) = match settings.mode {
            Mode::Paper => (None, settings.starting_capital),
            Mode::Live => {
                let venue = host_trading::live::connect(settings.venue, &settings.exchanges)?;
                let balances = venue
                    .balances()
                    .map_err(|e| anyhow::anyhow!("live mode: the exchange refused: {e}"))?;
                let cash = balances.get(&venue.quote).copied().unwrap_or_default();
                // the venue's cash starts a new live account; an existing one keeps its capital
                let stored = host_store::db::get_meta(&conn, "live.starting_capital")?
                    .and_then(|s| s.parse().ok());
                (Some(venue), stored.unwrap_or(cash))
            }
        };
        let (mut engine, reconciliation) =
            account::open(&conn, mode, capital, risk_config, engine_config)?;
        if reconciliation.mismatch {
            account::next_epoch(&conn, mode)?;
        }
        let clock = engine.portfolio().last_time().unwrap_or(0);
        let halt_now = engine.observe();
        let (bus, _) = tokio::sync::broadcast::channel(1024);
        let mut shell = Shell {
            conn,
            runtime,
            paths,
            settings,
            risk,
            active: None,
            paused: None,
            data: Arc::new(MarketData::new()),
            trader: Trader::new(engine),
            scan_seq,
            clock,
            bus,
            reconciliation,
            mode,
            next_scan_at: i64::MIN,
            last_scan_ts: None,
            last_answer: None,
            dead_man_fired: false,
            day: None,
            unpublished: None,
            live,
            wall_clock: false,
            stale: Vec::new(),
            reviews: None,
            tiering_due: false,
            tiered_at: None,
        };
        shell.load_candles()?;
        let rec = shell.reconciliation.clone();
        shell.event("reconcile", None, serde_json::to_value(&rec)?);
        if let Some(c) = rec.configured_capital_ignored {
            shell.alert(format!(
                "settings name a starting capital of {c}, but this account started with {}; the stored value is kept",
                rec.starting_capital
            ));
        }
        if rec.mismatch {
            shell.alert(format!(
                "the account snapshot (cash {}) disagreed with the {} stored fills (cash {}); rebuilt from the fills",
                rec.snapshot_cash.unwrap_or_default(),
                rec.fills,
                rec.cash
            ));
        }
        if !rec.stale_orders.is_empty() {
            shell.alert(format!(
                "cancelled {} stale orders: {}",
                rec.stale_orders.len(),
                rec.stale_orders.join(", ")
            ));
        }
        if let Some(h) = halt_now.or(shell.trader.engine.risk().halt()) {
            shell.alert(format!("entries are halted: {h}"));
        }
        if shell.trader.engine.risk().is_killed() {
            shell.alert("the kill switch is engaged: every signal is refused until resumed".into());
        }
        let orphans: Vec<String> = shell
            .trader
            .engine
            .portfolio()
            .positions()
            .keys()
            .filter(|s| !shell.settings.symbols.contains(s))
            .cloned()
            .collect();
        if !orphans.is_empty() {
            shell.alert(format!(
                "orphaned positions in unconfigured symbols: {}",
                orphans.join(", ")
            ));
        }
        shell.reconcile_venue();
        shell.refresh_fees();
        shell.load_strategy()?;
        // L5: the analysis modules the orchestrator reads
        let modules = [
            shell.settings.orchestrator.market_analysis.clone(),
            shell.settings.orchestrator.trade_performance.clone(),
        ];
        for m in modules {
            if !m.exists() {
                shell.alert(format!(
                    "analysis module {} is missing: nightly reviews will lack its report",
                    m.display()
                ));
            }
        }
        if let Some(p) = shell.paused.clone() {
            shell.alert(format!("strategy paused: {p}"));
        }
        Ok(shell)
    }

    /// Live mode, at startup: resolve written-ahead orders with the venue,
    /// book the fills made meanwhile, compare balances (L7).
    fn reconcile_venue(&mut self) {
        let Some(venue) = self.live.as_ref() else {
            return;
        };
        let now = self.now();
        match venue.reconcile(&mut self.conn, self.mode, &mut self.trader.engine, now) {
            Ok((rec, events)) => {
                self.engine_events(&events);
                self.event(
                    "venue_reconcile",
                    None,
                    serde_json::to_value(&rec).unwrap_or_default(),
                );
                for (asset, ledger, venue) in &rec.balance_mismatches {
                    self.alert(format!("{asset}: the ledger holds {ledger}, the exchange {venue}; the exchange wins — check it"));
                }
                if !rec.abandoned.is_empty() {
                    self.alert(format!(
                        "orders that never reached the exchange were abandoned: {}",
                        rec.abandoned.join(", ")
                    ));
                }
            }
            Err(e) => self.alert(format!("reconciling with the exchange failed: {e}")),
        }
    }

    /// Live mode, at startup: fetch the hourly candles missed while down
    /// (at most the last 30 days) so the strategy scans a complete history.
    pub fn backfill(&mut self) {
        let Some(venue) = self.live.as_ref() else {
            return;
        };
        let now = now_unix();
        let mut stored = Vec::new();
        let mut failed = Vec::new();
        for symbol in self.settings.symbols.clone() {
            let since = self
                .data
                .series(&symbol, Interval::H1)
                .last()
                .map_or(now - 30 * 86_400, |c| c.ts + Interval::H1.secs());
            match venue.ohlc(&symbol, 60, since) {
                Ok(candles) => {
                    let fresh: Vec<Candle> = candles
                        .into_iter()
                        .filter(|c| c.ts + Interval::H1.secs() <= now)
                        .collect();
                    for c in &fresh {
                        let _ = self.conn.execute(
                            "INSERT OR REPLACE INTO candles (symbol, interval, ts, open, high, low, close, volume) VALUES (?1, '1h', ?2, ?3, ?4, ?5, ?6, ?7)",
                            rusqlite::params![symbol, c.ts, c.open, c.high, c.low, c.close, c.volume],
                        );
                        Arc::make_mut(&mut self.data).push(&symbol, Interval::H1, *c);
                    }
                    stored.push((symbol, fresh.len()));
                }
                Err(e) => failed.push(format!("{symbol}: {e}")),
            }
        }
        self.event(
            "backfill",
            None,
            serde_json::json!({ "stored": stored, "failed": failed }),
        );
        if !failed.is_empty() {
            self.alert(format!("candle backfill failed: {}", failed.join("; ")));
        }
    }

    /// Live mode: the venue's current taker fee becomes the fee the risk
    /// manager sizes orders with (daily, and at startup).
    pub fn refresh_fees(&mut self) {
        let (Some(venue), Some(symbol)) = (self.live.as_ref(), self.settings.symbols.first())
        else {
            return;
        };
        match venue.fee_bps(symbol) {
            Ok(bps) => {
                let was = self.trader.engine.config().fill.fee_bps;
                match self.trader.engine.set_fee_bps(bps) {
                    Ok(()) => {
                        self.event(
                            "fee_schedule",
                            Some(symbol.clone().as_str()),
                            serde_json::json!({ "fee_bps": bps, "was": was, "changed": bps != was }),
                        );
                    }
                    Err(e) => self.alert(format!("the venue's fee of {bps} bps is refused: {e}")),
                }
            }
            Err(e) => self.alert(format!("fee schedule not refreshed: {e}")),
        }
    }

    /// Live mode, after a commit: send written-ahead orders, then book the venue's fills.
    fn execute_live(&mut self) {
        let Some(venue) = self.live.as_ref() else {
            return;
        };
        let now = self.clock;
        let sent = venue.send_pending(&self.conn, now);
        let booked = (|| -> Result<Vec<EngineEvent>, host_trading::live::LiveError> {
            let tx = self.conn.transaction()?;
            let ev = venue.book_fills(&tx, self.mode, &mut self.trader.engine, now)?;
            account::snapshot(&tx, self.mode, &self.trader.engine, now)?;
            tx.commit()?;
            Ok(ev)
        })();
        match sent {
            Ok(results) => {
                for (id, r) in results {
                    match r {
                        Ok(venue_id) => self.event("order_sent", None, serde_json::json!({ "client_order_id": id, "venue_order_id": venue_id })),
                        Err(e) => self.event("order_send_failed", None, serde_json::json!({ "client_order_id": id, "error": e })),
                    };
                }
            }
            Err(e) => self.alert(format!("sending orders failed: {e}")),
        }
        match booked {
            Ok(events) => {
                if let Some(a) = self.active.as_mut() {
                    let errors = self.trader.forward(&mut a.driver, &events);
                    for e in errors {
                        self.module_failed(e);
                    }
                }
                self.engine_events(&events);
            }
            Err(e) => self.alert(format!("booking exchange fills failed: {e}")),
        }
    }

    /// Loads the stored candles of the configured symbols (the market view's history).
    fn load_candles(&mut self) -> anyhow::Result<()> {
        let data = Arc::make_mut(&mut self.data);
        let mut stmt = self
            .conn
            .prepare("SELECT ts, open, high, low, close, volume FROM candles WHERE symbol = ?1 AND interval = ?2 ORDER BY ts")?;
        for symbol in &self.settings.symbols {
            for interval in [Interval::M5, Interval::H1, Interval::D1] {
                let candles = stmt
                    .query_map(rusqlite::params![symbol, interval.name()], |r| {
                        Ok(Candle {
                            ts: r.get(0)?,
                            open: r.get(1)?,
                            high: r.get(2)?,
                            low: r.get(3)?,
                            close: r.get(4)?,
                            volume: r.get(5)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(last) = candles.last() {
                    self.clock = self.clock.max(last.ts + interval.secs());
                }
                if !candles.is_empty() {
                    data.set_series(symbol, interval, candles);
                }
            }
        }
        Ok(())
    }

    /// The time events are stamped with: the injected clock once it runs.
    fn now(&self) -> i64 {
        if self.clock > 0 {
            self.clock
        } else {
            now_unix()
        }
    }

    /// Appends to the hash-chained event log and publishes to subscribers.
    pub fn event(
        &mut self,
        kind: &str,
        symbol: Option<&str>,
        detail: serde_json::Value,
    ) -> Option<i64> {
        let ts = self.now();
        match events::append(&self.conn, ts, kind, symbol, &detail) {
            Ok(seq) => {
                let ev = events::Event {
                    seq,
                    ts,
                    kind: kind.to_string(),
                    symbol: symbol.map(str::to_string),
                    detail,
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

    /// Opens the transaction everything until [`Shell::commit`] lands in.
    fn begin(&mut self) {
        if self.unpublished.is_some() {
            return;
        }
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!("cannot begin a transaction: {e}");
            return;
        }
        self.unpublished = Some(Vec::new());
    }

    /// Saves the engine snapshot (and the strategy state when `with_state`),
    /// commits, then publishes the events the transaction held.
    fn commit(&mut self, with_state: bool) {
        let Some(buf) = self.unpublished.take() else {
            return;
        };
        if with_state {
            self.save_state();
        }
        let r = account::snapshot(&self.conn, self.mode, &self.trader.engine, self.clock)
            .and_then(|_| Ok(self.conn.execute_batch("COMMIT")?));
        match r {
            Ok(()) => {
                for ev in buf {
                    let _ = self.bus.send(ev);
                }
            }
            Err(e) => {
                // the account in memory is ahead of the database: say so loudly
                tracing::error!("account not saved: {e}");
                let _ = self.conn.execute_batch("ROLLBACK");
                self.event(
                    "error",
                    None,
                    serde_json::json!({ "where": "account", "error": e.to_string() }),
                );
            }
        }
    }

    fn alert(&mut self, message: String) {
        tracing::warn!("{message}");
        self.event("alert", None, serde_json::json!({ "message": message }));
    }

    fn load_strategy(&mut self) -> anyhow::Result<()> {
        let symbols = self.settings.symbols.clone();
        if let Some(rec) = archive::active(&self.conn)? {
            let loaded = archive::load_bytes(&self.conn, &self.paths.archive_dir, rec.version);
            match loaded {
                Ok((bytes, source)) => {
                    if source == BytesSource::Database {
                        self.event(
                            "strategy_fallback",
                            None,
                            serde_json::json!({ "version": rec.version, "source": "database" }),
                        );
                        self.alert(format!(
                            "strategy v{}: archive file missing or damaged, loaded the database copy",
                            rec.version
                        ));
                    }
                    match prepare(
                        &self.runtime,
                        bytes,
                        &self.risk,
                        &symbols,
                        rec.params.clone(),
                        "startup",
                    ) {
                        Ok(mut p) => {
                            if let Some((_, state, _)) = archive::latest_state(&self.conn)? {
                                if let Err(e) = p.instance.load_state(&state) {
                                    self.alert(format!("saved strategy state refused ({e}); starting from a fresh state"));
                                }
                            }
                            tracing::info!(version = rec.version, ?source, "strategy loaded");
                            self.event(
                                "strategy_loaded",
                                None,
                                serde_json::json!({ "version": rec.version, "source": source }),
                            );
                            self.activate_prepared(rec.version, p);
                        }
                        Err(e) => self.pause(format!(
                            "active version {} does not start: {e}",
                            rec.version
                        )),
                    }
                }
                Err(e) => self.pause(format!("{e}")),
            }
            return Ok(());
        }
        let Some(path) = self.settings.default_strategy.clone() else {
            self.pause("no strategy deployed and no default configured".into());
            return Ok(());
        };
        match std::fs::read(&path) {
            Ok(bytes) => match prepare(
                &self.runtime,
                bytes,
                &self.risk,
                &symbols,
                self.settings.strategy_params.clone(),
                "default",
            ) {
                Ok(p) => {
                    let version = self.record_version(&p)?;
                    self.activate_prepared(version, p);
                }
                Err(e) => self.pause(format!("default strategy {}: {e}", path.display())),
            },
            Err(e) => self.pause(format!(
                "no strategy deployed and the default {} cannot be read: {e}",
                path.display()
            )),
        }
        Ok(())
    }

    fn pause(&mut self, reason: String) {
        tracing::error!("strategy paused: {reason}");
        self.event(
            "strategy_paused",
            None,
            serde_json::json!({ "reason": reason }),
        );
        self.paused = Some(reason);
        self.active = None;
    }

    fn record_version(&self, p: &Prepared) -> Result<i64, archive::ArchiveError> {
        let v = match p.existing_version {
            Some(v) => v,
            None => archive::add_version(
                &self.conn,
                &self.paths.archive_dir,
                &p.bytes,
                p.code.as_deref(),
                &p.params,
                &p.origin,
                p.info(),
            )?,
        };
        archive::activate(&self.conn, v)?;
        Ok(v)
    }

    fn activate_prepared(&mut self, version: i64, p: Prepared) {
        self.active = Some(Active {
            version,
            module: p.module,
            driver: WasmDriver::from_instance(p.instance, p.scan_minutes),
            params: p.params,
            failures: 0,
            last_good_state: None,
        });
        self.paused = None;
        self.dead_man_fired = false;
    }

    /// Swaps `p` in: carries the running strategy's state across, records the
    /// version, and only then replaces the running module. On any failure the
    /// old module stays.
    pub fn swap(&mut self, mut p: Prepared) -> Result<DeployOutcome, String> {
        let previous = self.active.as_ref().map(|a| a.version);
        let state = match self.active.as_mut() {
            Some(a) => Some(
                a.driver
                    .instance
                    .get_state()
                    .map_err(|e| format!("the running strategy's state cannot be read: {e}"))?,
            ),
            None => archive::latest_state(&self.conn)
                .map_err(|e| e.to_string())?
                .map(|(_, s, _)| s),
        };
        if let Some(s) = &state {
            p.instance
                .load_state(s)
                .map_err(|e| format!("the new strategy refused the running state: {e}"))?;
        }
        let hash = p.info().hash.clone();
        let version = self.record_version(&p).map_err(|e| e.to_string())?;
        if let Some(s) = &state {
            archive::save_state(&self.conn, version, s, self.scan_seq)
                .map_err(|e| e.to_string())?;
        }
        let origin = p.origin.clone();
        self.activate_prepared(version, p);
        self.event(
            "deploy",
            None,
            serde_json::json!({ "version": version, "previous": previous, "hash": hash, "origin": origin, "first_scan": self.scan_seq + 1 }),
        );
        tracing::info!(
            version,
            ?previous,
            "strategy swapped in before scan {}",
            self.scan_seq + 1
        );
        Ok(DeployOutcome {
            version,
            hash,
            previous,
            first_scan: self.scan_seq + 1,
            state_bytes: state.map_or(0, |s| s.len()),
        })
    }

    pub fn status(&self) -> Status {
        let mut s = account_status(&self.trader.engine, &self.settings, &self.risk);
        s.running = true;
        s.paused = self.paused.clone();
        s.strategy = self.active.as_ref().map(|a| StrategyStatus {
            version: a.version,
            hash: a.module.info().hash.clone(),
            scan_minutes: a.driver.scan_minutes(),
            failures: a.failures,
        });
        s.scan_seq = self.scan_seq;
        s.last_scan_ts = self.last_scan_ts;
        s.clock = self.clock;
        s
    }

    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Deploy(p, reply) => {
                let r = self.swap(*p);
                if let Err(e) = &r {
                    tracing::error!("deploy refused: {e}");
                    self.event("deploy_failed", None, serde_json::json!({ "reason": e }));
                }
                let _ = reply.send(r);
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Halt { by, reply } => {
                let newly = self.trader.engine.halt_manually();
                self.persist_account(&[], &[]);
                self.event(
                    "halt",
                    None,
                    serde_json::json!({ "by": by, "reason": "manual", "newly": newly }),
                );
                let _ = reply.send(newly);
            }
            Command::Resume { by, reply } => {
                let e = &mut self.trader.engine;
                let was = e.risk().halt().map(|h| h.to_string());
                let killed = e.risk().is_killed();
                e.resume();
                e.clear_kill();
                self.persist_account(&[], &[]);
                self.event(
                    "resume",
                    None,
                    serde_json::json!({ "by": by, "halt": was, "killed": killed }),
                );
                let _ = reply.send(was.is_some() || killed);
            }
            Command::Kill { by, reply } => {
                let now = self.now();
                let first = self.trader.engine.next_order_id();
                let events = self.trader.engine.kill(now);
                let closing = self.trader.engine.pending_since(first);
                let outcome = KillOutcome {
                    cancelled_orders: events.len(),
                    closing: closing.iter().map(|o| o.request.symbol.clone()).collect(),
                };
                if self.live.is_some() {
                    self.begin();
                    self.record(&events, &[]);
                    self.write_ahead_live();
                    self.commit(false);
                    if let Some(v) = self.live.as_ref() {
                        if let Err(e) = v.cancel_open(&self.conn, now, false) {
                            self.alert(format!("kill: cancelling exchange orders failed: {e}"));
                        }
                    }
                    self.execute_live();
                } else {
                    self.persist_account(&events, &closing);
                }
                self.event(
                    "kill",
                    None,
                    serde_json::json!({ "by": by, "outcome": outcome }),
                );
                let _ = reply.send(outcome);
            }
            Command::Record {
                kind,
                detail,
                reply,
            } => {
                let seq = self.event(&kind, None, detail);
                let _ = reply.send(seq);
            }
            Command::TriggerReview { by, reason, reply } => {
                if let Some(r) = self.reviews.as_mut() {
                    r.state.manual_requested = true;
                }
                let seq = self.event(
                    "tuning_trigger",
                    None,
                    serde_json::json!({ "kind": "manual", "by": by, "reason": reason }),
                );
                let _ = reply.send(seq);
                // start it now, even when no bar or tick is coming (a replay that ended)
                self.review_if_due();
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// Writes engine events and new orders, with the engine snapshot, in one
    /// transaction (or inside the bar's, when one is open).
    fn persist_account(
        &mut self,
        events: &[EngineEvent],
        new_orders: &[trading_core::PendingOrder],
    ) {
        let own = self.unpublished.is_none();
        self.begin();
        self.record(events, new_orders);
        if own {
            self.commit(false);
        }
    }

    /// Live mode: moves the engine's approved orders into the written-ahead
    /// orders table (sent after the commit).
    fn write_ahead_live(&mut self) {
        let Some(venue) = self.live.as_ref() else {
            return;
        };
        let orders = self.trader.engine.detach_pending();
        if orders.is_empty() {
            return;
        }
        if let Err(e) = venue.write_ahead(&self.conn, self.mode, &orders, self.clock) {
            self.alert(format!("orders not written ahead, not sent: {e}"));
        }
    }

    /// Writes engine events and new orders into the open transaction.
    fn record(&mut self, events: &[EngineEvent], new_orders: &[trading_core::PendingOrder]) {
        let r = account::record_events(&self.conn, self.mode, events, self.clock).and_then(|_| {
            account::record_orders(&self.conn, self.mode, self.mode, new_orders, self.clock)
        });
        if let Err(e) = r {
            tracing::error!("account not recorded: {e}");
            self.event(
                "error",
                None,
                serde_json::json!({ "where": "account", "error": e.to_string() }),
            );
        }
    }

    fn engine_events(&mut self, events: &[EngineEvent]) {
        for ev in events {
            let (kind, symbol) = match ev {
                EngineEvent::Filled(r) => ("fill", Some(r.fill.symbol.as_str())),
                EngineEvent::PositionClosed(t) => ("position_closed", Some(t.symbol.as_str())),
                EngineEvent::OrderCancelled { symbol, .. } => {
                    ("order_cancelled", Some(symbol.as_str()))
                }
                EngineEvent::OrderExpired { symbol, .. } => {
                    ("order_expired", Some(symbol.as_str()))
                }
                EngineEvent::Halted(_) => ("halted", None),
            };
            let mut detail = serde_json::to_value(ev).unwrap_or_default();
            if let EngineEvent::Halted(h) = ev {
                detail["message"] = serde_json::Value::String(h.to_string());
            }
            self.event(kind, symbol, detail);
        }
    }

    /// One closed bar, in one transaction: store it, let the engine fill and
    /// exit on it, tell the strategy, run the jobs due at the new clock (the
    /// scan included), then save the account and the strategy state. A crash
    /// anywhere in between leaves the database as it was before the bar, and
    /// the restarted host replays it.
    pub fn on_bar(&mut self, symbol: &str, interval: Interval, bar: Candle) {
        if self
            .data
            .series(symbol, interval)
            .last()
            .is_some_and(|c| c.ts >= bar.ts)
        {
            return; // seen before (a restarted replay, or a repeated feed message)
        }
        self.begin();
        if let Err(e) = self.conn.execute(
            "INSERT OR REPLACE INTO candles (symbol, interval, ts, open, high, low, close, volume) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![symbol, interval.name(), bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume],
        ) {
            tracing::error!("candle not stored: {e}");
        }
        Arc::make_mut(&mut self.data).push(symbol, interval, bar);
        self.clock = self.clock.max(bar.ts + interval.secs());
        if self.wall_clock {
            self.clock = self.clock.max(now_unix());
        }
        let result = if self.live.is_some() {
            // the exchange fills and runs stops; the bar only marks the ledger
            match trading_core::money::to_decimal(bar.close) {
                Ok(px) => Ok((self.trader.engine.mark(symbol, bar.ts, px), Vec::new())),
                Err(_) => Ok((Vec::new(), Vec::new())),
            }
        } else {
            match self.active.as_mut() {
                Some(a) => self.trader.on_bar(&mut a.driver, symbol, &bar),
                None => self.trader.on_bar(&mut NoStrategy, symbol, &bar),
            }
        };
        match result {
            Ok((events, errors)) => {
                self.record(&events, &[]);
                if events.iter().any(|e| matches!(e, EngineEvent::Filled(_))) {
                    // filled in memory, not yet in the database
                    host_trading::failpoint::hit("fill.before_commit");
                }
                self.engine_events(&events);
                for e in errors {
                    self.module_failed(e);
                }
            }
            Err(e) => {
                self.event(
                    "error",
                    Some(symbol),
                    serde_json::json!({ "where": "engine", "error": e.to_string() }),
                );
            }
        }
        let scanned = self.tick(self.clock);
        host_trading::failpoint::hit("bar.before_commit");
        self.commit(scanned);
        host_trading::failpoint::hit("bar.after_commit");
        self.execute_live();
        if std::mem::take(&mut self.tiering_due) {
            self.tier_candles();
        }
    }

    /// The daily data job: finer candles aggregated into coarser ones, old ones pruned.
    fn tier_candles(&mut self) {
        let mut report = Vec::new();
        // from a day before the last run: only those buckets can have changed
        let since = self.tiered_at.map(|t| t - 86_400);
        self.tiered_at = Some(self.clock);
        for symbol in self.settings.symbols.clone() {
            if let Err(e) = host_store::candles::aggregate(&mut self.conn, &symbol, since) {
                report.push(format!("{symbol}: aggregation failed: {e}"));
            }
        }
        match host_store::candles::prune(
            &mut self.conn,
            self.clock,
            &host_store::candles::Retention::default(),
        ) {
            Ok(p) if p.m5 + p.h1 + p.d1 > 0 => {
                tracing::info!(m5 = p.m5, h1 = p.h1, d1 = p.d1, "pruned old candles");
            }
            Ok(_) => {}
            Err(e) => report.push(format!("pruning failed: {e}")),
        }
        if !report.is_empty() {
            self.alert(report.join("; "));
        }
    }

    /// Runs whatever is due at `now`: daily jobs, the dead-man's switch, a
    /// scan. Returns whether the strategy was called.
    pub fn tick(&mut self, now: i64) -> bool {
        self.clock = self.clock.max(now);
        let day = trading_core::utc_day(self.clock);
        if self.day != Some(day) {
            if self.day.is_some() {
                self.daily_jobs();
            }
            self.day = Some(day);
        }
        self.dead_man();
        self.review_if_due();
        if self.clock >= self.next_scan_at {
            return self.scan(self.clock);
        }
        false
    }

    /// The daily P&L snapshot and fee-schedule refresh; with a live feed,
    /// candle tiering runs after the bar commits (a replay keeps its history whole).
    fn daily_jobs(&mut self) {
        self.tiering_due = self.wall_clock;
        self.refresh_fees();
        let p = self.trader.engine.portfolio();
        let day = chrono::DateTime::from_timestamp(self.clock - 1, 0)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        if let Err(e) = self.conn.execute(
            "INSERT OR REPLACE INTO daily_snapshots (day, ts, value, cash) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                day,
                self.clock,
                cents(p.equity()).to_string(),
                cents(p.cash()).to_string()
            ],
        ) {
            tracing::error!("daily snapshot: {e}");
        }
    }

    /// Starts an orchestrator cycle when a trigger is due and none runs.
    fn review_if_due(&mut self) {
        let Some(r) = self.reviews.as_mut() else {
            return;
        };
        if r.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Some(now) = chrono::DateTime::from_timestamp(self.clock, 0) else {
            return;
        };
        let p = self.trader.engine.portfolio();
        r.state.session_pnl_pct = p
            .today()
            .map(|(_, d)| d.loss_pct())
            .map_or(0.0, |l| -trading_core::money::to_f64(l));
        r.state.consecutive_losses = p.consecutive_losses();
        r.state.closed_trades = p.closed_trades().len() as u64;
        r.state.atr = self
            .settings
            .symbols
            .iter()
            .filter_map(|s| {
                Some((
                    s.clone(),
                    atr_now_and_baseline(self.data.series(s, Interval::H1))?,
                ))
            })
            .collect();
        let due = host_orchestrator::schedule::due_triggers(&r.state, now);
        let Some(first) = due.first().cloned() else {
            return;
        };
        for t in &due {
            r.state.last_fired.insert(t.kind, now);
            if t.kind == host_orchestrator::schedule::TriggerKind::Nightly {
                r.state.last_nightly = Some(host_orchestrator::schedule::new_york(now).date());
            }
        }
        r.state.manual_requested = false;
        r.state.trades_at_last_review = r.state.closed_trades;
        r.seed += 1;
        let opts = host_orchestrator::CycleOptions {
            deployer: r.deployer.clone(),
            paths: self.paths.clone(),
            market: self.settings.market(),
            orchestrator: self.settings.orchestrator.clone(),
            risk: self.risk.clone(),
            repo_root: r.repo_root.clone(),
            proposer: r.proposer,
            seed: r.seed,
            trigger: format!("{:?}", first.kind).to_lowercase(),
            now,
            api_key: None,
        };
        let detail = serde_json::json!({ "kind": format!("{:?}", first.kind), "detail": first.detail, "due": due.len() });
        r.running = Some(std::thread::spawn(
            move || match host_orchestrator::run_cycle(&opts) {
                Ok(report) => tracing::info!("review: {}", report.headline()),
                Err(e) => tracing::error!("review failed: {e}"),
            },
        ));
        self.event("review_started", None, detail);
    }

    /// Cancels every open order once the strategy has not answered for the configured time.
    fn dead_man(&mut self) {
        let limit = i64::from(self.settings.safety.dead_man_minutes) * 60;
        if limit == 0
            || self.dead_man_fired
            || (self.live.is_none() && self.trader.engine.pending().is_empty())
        {
            return;
        }
        let since = self.last_answer.unwrap_or(i64::MIN);
        let silent = self.active.is_none() || self.active.as_ref().is_some_and(|a| a.failures > 0);
        if silent && self.clock.saturating_sub(since) >= limit {
            let ids: Vec<u64> = self.trader.engine.pending().iter().map(|o| o.id).collect();
            let events: Vec<EngineEvent> = ids
                .into_iter()
                .filter_map(|id| self.trader.engine.cancel(id))
                .collect();
            self.dead_man_fired = true;
            self.persist_account(&events, &[]);
            self.engine_events(&events);
            if let Some(v) = self.live.as_ref() {
                if let Err(e) = v.cancel_open(&self.conn, self.clock, false) {
                    self.alert(format!(
                        "dead-man's switch: cancelling exchange orders failed: {e}"
                    ));
                }
            }
            self.alert(format!(
                "dead-man's switch: the strategy has not answered since {}; cancelled {} open orders",
                self.last_answer.map_or("startup".to_string(), |t| t.to_string()),
                events.len()
            ));
        }
    }

    /// Symbols whose newest candle is older than the stale limit at `now`.
    fn stale_symbols(&self, now: i64) -> Vec<String> {
        let limit = i64::from(self.settings.safety.stale_data_minutes) * 60;
        if limit == 0 {
            return Vec::new();
        }
        self.settings
            .symbols
            .iter()
            .filter(|s| {
                let newest = [Interval::M5, Interval::H1, Interval::D1]
                    .iter()
                    .filter_map(|i| self.data.series(s, *i).last().map(|c| c.ts + i.secs()))
                    .max();
                newest.is_none_or(|t| now - t > limit)
            })
            .cloned()
            .collect()
    }

    /// One scan at `now`: the strategy sees the market up to `now`, its
    /// signals go through the risk manager, and everything is recorded.
    /// Returns whether the strategy was called.
    pub fn scan(&mut self, now: i64) -> bool {
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        let step = i64::from(active.driver.scan_minutes().max(1)) * 60;
        let stale = self.stale_symbols(now);
        if !stale.is_empty() {
            // not scanned: tried again at the next bar or tick; logged when it starts or changes
            if self.stale != stale {
                self.event(
                    "stale_data",
                    None,
                    serde_json::json!({ "symbols": stale, "at": now }),
                );
                self.stale = stale;
            }
            return false;
        }
        if !self.stale.is_empty() {
            let was = std::mem::take(&mut self.stale);
            self.event(
                "data_fresh",
                None,
                serde_json::json!({ "symbols": was, "at": now }),
            );
        }
        self.next_scan_at = (now.div_euclid(step) + 1) * step;
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        self.scan_seq += 1;
        let seq = self.scan_seq;
        self.last_scan_ts = Some(now);
        let first = self.trader.engine.next_order_id();
        let outcome = self.trader.scan(&mut active.driver, &self.data, now);
        let fuel = active.driver.instance.fuel_used() as i64;
        let (version, hash) = (active.version, active.module.info().hash.clone());
        let error = outcome.error.as_ref().map(|e| e.to_string());
        if let Err(e) = self.conn.execute(
            "INSERT INTO scan_results (seq, ts, strategy_version, module_hash, signals, fuel, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![seq, now, version, hash, outcome.decisions.len() as i64, fuel, error],
        ) {
            tracing::error!("scan {seq}: {e}");
        }
        for (signal, decision) in &outcome.decisions {
            self.record_signal(seq, now, signal, decision);
        }
        for cf in self.trader.engine.take_counterfactuals() {
            self.event(
                "counterfactual",
                Some(&cf.symbol.clone()),
                serde_json::to_value(&cf).unwrap_or_default(),
            );
        }
        let new_orders = self.trader.engine.pending_since(first);
        if !new_orders.is_empty() {
            // the order is decided, not yet recorded
            host_trading::failpoint::hit("order.before_record");
        }
        if self.live.is_some() {
            self.write_ahead_live();
            self.persist_account(&[], &[]);
        } else {
            self.persist_account(&[], &new_orders);
        }
        for o in &new_orders {
            self.event(
                "order",
                Some(&o.request.symbol),
                serde_json::to_value(o).unwrap_or_default(),
            );
        }
        match outcome.error {
            None => {
                self.last_answer = Some(now);
                self.dead_man_fired = false;
                if let Some(a) = self.active.as_mut() {
                    a.failures = 0;
                }
            }
            Some(e) => self.module_failed(e),
        }
        true
    }

    fn record_signal(&mut self, seq: i64, now: i64, s: &trading_core::Signal, d: &Decision) {
        let (decision, reason) = match d {
            Decision::Approved(o) => (
                "approved",
                o.clipped_from.as_ref().map(|c| format!("clipped: {c:?}")),
            ),
            Decision::Modify(_) => ("modify", None),
            Decision::Refused(r) => ("refused", Some(r.to_string())),
        };
        let lower = |x: String| x.to_lowercase();
        if let Err(e) = self.conn.execute(
            "INSERT INTO signals (scan_seq, ts, symbol, action, size_pct, order_type, confidence, tag, reasoning, decision, reason, acted_on)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            rusqlite::params![
                seq,
                now,
                s.symbol,
                lower(format!("{:?}", s.action)),
                if s.size_pct.is_finite() { s.size_pct } else { -1.0 },
                lower(format!("{:?}", s.order_type)),
                if s.confidence.is_finite() { Some(s.confidence) } else { None },
                s.tag,
                s.reasoning,
                decision,
                reason,
                d.is_approved()
            ],
        ) {
            tracing::error!("signal not stored: {e}");
        }
        self.event(
            "risk_decision",
            Some(&s.symbol),
            serde_json::json!({ "scan": seq, "signal": s, "decision": decision, "reason": reason }),
        );
    }

    fn module_failed(&mut self, e: ModuleError) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.failures += 1;
        tracing::error!(
            version = active.version,
            failures = active.failures,
            "strategy failed: {e}"
        );
        let detail = serde_json::json!({ "version": active.version, "error": e.to_string(), "failures": active.failures });
        if active.failures >= self.settings.max_failures {
            let reason = format!(
                "version {} failed {} scans in a row: {e}",
                active.version, active.failures
            );
            let _ = archive::set_status(&self.conn, active.version, "failed", Some(&reason));
            self.event("module_error", None, detail);
            self.pause(reason);
            return;
        }
        if e.is_fatal() {
            // restart the instance from its last good state
            let restarted = WasmDriver::start(
                &active.module,
                &self.risk,
                &self.settings.symbols,
                &active.params,
            )
            .and_then(|mut d| {
                if let Some(s) = &active.last_good_state {
                    d.instance.load_state(s)?;
                }
                Ok(d)
            });
            match restarted {
                Ok(d) => active.driver = d,
                Err(e2) => {
                    let reason = format!("version {} cannot be restarted: {e2}", active.version);
                    self.event("module_error", None, detail);
                    self.pause(reason);
                    return;
                }
            }
        }
        self.event("module_error", None, detail);
    }

    /// Saves the strategy state (shutdown, and periodically).
    pub fn save_state(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        match active.driver.instance.get_state() {
            Ok(s) => {
                active.last_good_state = Some(s.clone());
                if let Err(e) = archive::save_state(&self.conn, active.version, &s, self.scan_seq) {
                    tracing::error!("saving strategy state: {e}");
                }
            }
            Err(e) => tracing::error!("strategy state not saved: {e}"),
        }
    }

    /// Runs `feed` to its end (or until shutdown), handling commands between bars.
    pub fn run(&mut self, feed: &mut dyn Feed, commands: &Receiver<Command>, exit_at_end: bool) {
        self.event(
            "startup",
            None,
            serde_json::json!({ "mode": self.settings.mode, "paused": self.paused, "version": self.active.as_ref().map(|a| a.version) }),
        );
        'outer: loop {
            while let Ok(cmd) = commands.try_recv() {
                if !self.handle(cmd) {
                    break 'outer;
                }
            }
            let Some(ev) = feed.next_event() else {
                if exit_at_end {
                    break;
                }
                self.save_state();
                tracing::info!(
                    "feed ended after {} scans; waiting for commands",
                    self.scan_seq
                );
                // idle: commands, and a review that was waiting for the running one
                loop {
                    match commands.recv_timeout(std::time::Duration::from_secs(1)) {
                        Ok(cmd) => {
                            if !self.handle(cmd) {
                                break;
                            }
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => self.review_if_due(),
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                break;
            };
            match ev {
                FeedEvent::Bar(symbol, interval, bar) => {
                    self.on_bar(&symbol, interval, bar);
                }
                FeedEvent::Tick(now) => {
                    self.begin();
                    let scanned = self.tick(now);
                    self.commit(scanned);
                    // the position monitor: exchange-side stop-loss / take-profit fills
                    self.execute_live();
                }
            }
        }
        self.shutdown();
    }

    /// Shutdown sequence: stop scanning, save the strategy state, cancel
    /// unfilled orders (positions are kept), log, close.
    pub fn shutdown(&mut self) {
        self.save_state();
        let ids: Vec<u64> = self.trader.engine.pending().iter().map(|o| o.id).collect();
        let events: Vec<EngineEvent> = ids
            .into_iter()
            .filter_map(|id| self.trader.engine.cancel(id))
            .collect();
        self.persist_account(&events, &[]);
        self.engine_events(&events);
        if let Some(v) = self.live.as_ref() {
            match v.cancel_open(&self.conn, self.clock, true) {
                Ok(n) if n > 0 => self.event(
                    "orders_cancelled",
                    None,
                    serde_json::json!({ "count": n, "why": "shutdown" }),
                ),
                Ok(_) => None,
                Err(e) => {
                    self.alert(format!("shutdown: cancelling exchange orders failed: {e}"));
                    None
                }
            };
        }
        self.event(
            "shutdown",
            None,
            serde_json::json!({ "scans": self.scan_seq, "cancelled_orders": events.len(), "positions": self.trader.engine.portfolio().positions().len() }),
        );
    }
}

/// Deploys without a running host: validate, initialise, check the saved
/// state loads, record and activate. The next start uses it.
/// Reads the candles of a CSV file for replay.
pub fn read_replay(
    path: &Path,
    symbol: &str,
    interval: Interval,
) -> anyhow::Result<Vec<(String, Interval, Candle)>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let candles = trading_core::csv::parse_candles(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(candles
        .into_iter()
        .map(|c| (symbol.to_string(), interval, c))
        .collect())
}
