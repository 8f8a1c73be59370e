//! The running host: owns the active strategy, the market data and the
//! database on one thread, scans at the strategy's interval on the injected
//! (feed) clock, and applies deploys and rollbacks between two scans.

use crate::archive::{self, BytesSource};
use crate::config::{RiskFile, Settings};
use crate::events;
use crate::runtime::{ModuleError, ModuleInfo, Runtime, StrategyInstance, StrategyModule};
use rusqlite::Connection;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use trading_core::{Candle, Interval, MarketData, MarketView};

/// Where a host keeps its state.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub archive_dir: PathBuf,
}

impl Paths {
    pub fn db(&self) -> PathBuf {
        self.data_dir.join("host.db")
    }
    pub fn cache(&self) -> PathBuf {
        self.data_dir.join("cache")
    }
    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("host.sock")
    }
    pub fn drop_dir(&self) -> PathBuf {
        self.data_dir.join("drop")
    }
}

/// A strategy validated, instantiated and initialised, waiting to be swapped in.
pub struct Prepared {
    pub bytes: Vec<u8>,
    pub code: Option<String>,
    pub params: Vec<(String, String)>,
    pub origin: String,
    /// Set when re-activating an archived version (rollback).
    pub existing_version: Option<i64>,
    pub module: StrategyModule,
    pub instance: StrategyInstance,
    pub scan_minutes: u32,
}

impl Prepared {
    pub fn info(&self) -> &ModuleInfo {
        self.module.info()
    }
}

/// Validates, instantiates and initialises a strategy component.
pub fn prepare(
    rt: &Arc<Runtime>,
    bytes: Vec<u8>,
    risk: &RiskFile,
    symbols: &[String],
    params: Vec<(String, String)>,
    origin: &str,
) -> Result<Prepared, ModuleError> {
    let module = rt.load_strategy(&bytes)?;
    let mut instance = module.instantiate()?;
    instance.initialize(&risk.contract_view(), symbols, &params)?;
    let scan_minutes = instance.scan_interval_minutes()?;
    Ok(Prepared {
        bytes,
        code: None,
        params,
        origin: origin.to_string(),
        existing_version: None,
        module,
        instance,
        scan_minutes,
    })
}

/// The running strategy.
pub struct Active {
    pub version: i64,
    pub module: StrategyModule,
    pub instance: StrategyInstance,
    pub params: Vec<(String, String)>,
    pub scan_minutes: u32,
    pub failures: u32,
    /// State after the last good scan, to restart a trapped instance from.
    pub last_good_state: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    pub version: i64,
    pub hash: String,
    pub previous: Option<i64>,
    /// The first scan served by the new version.
    pub first_scan: i64,
    pub state_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveStatus {
    pub running: bool,
    pub paused: Option<String>,
    pub active_version: Option<i64>,
    pub active_hash: Option<String>,
    pub scan_seq: i64,
    pub last_scan_ts: Option<i64>,
    pub clock: i64,
}

pub enum Command {
    Deploy(Box<Prepared>, Sender<Result<DeployOutcome, String>>),
    Status(Sender<LiveStatus>),
    Shutdown,
}

/// Where candles come from: a replayed file, or (live) an exchange feed.
pub trait Feed {
    /// The next closed candle, or None at the end of the feed.
    fn next_bar(&mut self) -> Option<(String, Interval, Candle)>;
}

/// Replays candles in time order, paced at `speed`× real time (None = as fast as possible).
pub struct ReplayFeed {
    bars: std::vec::IntoIter<(String, Interval, Candle)>,
    speed: Option<f64>,
    last_ts: Option<i64>,
}

impl ReplayFeed {
    pub fn new(mut bars: Vec<(String, Interval, Candle)>, speed: Option<f64>) -> Self {
        bars.sort_by_key(|(s, i, c)| (c.ts + i.secs(), s.clone()));
        ReplayFeed {
            bars: bars.into_iter(),
            speed,
            last_ts: None,
        }
    }
}

impl Feed for ReplayFeed {
    fn next_bar(&mut self) -> Option<(String, Interval, Candle)> {
        let bar = self.bars.next()?;
        if let (Some(speed), Some(last)) = (self.speed, self.last_ts) {
            let dt = (bar.2.ts - last).max(0) as f64 / speed;
            if dt > 0.0 {
                std::thread::sleep(std::time::Duration::from_secs_f64(dt.min(60.0)));
            }
        }
        self.last_ts = Some(bar.2.ts);
        Some(bar)
    }
}

/// The host's state machine.
pub struct Shell {
    pub conn: Connection,
    pub runtime: Arc<Runtime>,
    pub paths: Paths,
    pub settings: Settings,
    pub risk: RiskFile,
    pub active: Option<Active>,
    pub paused: Option<String>,
    pub data: Arc<MarketData>,
    pub scan_seq: i64,
    pub clock: i64,
    next_scan_at: i64,
    last_scan_ts: Option<i64>,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Shell {
    /// Startup: open the database, then load the active strategy from the
    /// archive file, else its database copy, else the configured default,
    /// else start paused.
    pub fn start(paths: Paths, settings: Settings, risk: RiskFile) -> anyhow::Result<Shell> {
        std::fs::create_dir_all(&paths.data_dir)?;
        let conn = crate::db::open(&paths.db())?;
        let runtime = Runtime::new(settings.sandbox.clone(), Some(&paths.cache()))?;
        let scan_seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM scan_results", [], |r| {
                r.get(0)
            })?;
        let mut shell = Shell {
            conn,
            runtime,
            paths,
            settings,
            risk,
            active: None,
            paused: None,
            data: Arc::new(MarketData::new()),
            scan_seq,
            clock: 0,
            next_scan_at: i64::MIN,
            last_scan_ts: None,
        };
        shell.load_strategy()?;
        Ok(shell)
    }

    fn event(&self, kind: &str, detail: serde_json::Value) {
        if let Err(e) = events::append(&self.conn, now_unix(), kind, None, &detail) {
            tracing::error!("event log: {e}");
        }
    }

    fn load_strategy(&mut self) -> anyhow::Result<()> {
        let symbols = self.settings.symbols.clone();
        if let Some(rec) = archive::active(&self.conn)? {
            let loaded = archive::load_bytes(&self.conn, &self.paths.archive_dir, rec.version);
            match loaded {
                Ok((bytes, source)) => {
                    if source == BytesSource::Database {
                        tracing::warn!(
                            version = rec.version,
                            "archive file missing or damaged: loaded the database copy"
                        );
                        self.event(
                            "strategy_fallback",
                            serde_json::json!({ "version": rec.version, "source": "database" }),
                        );
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
                            let saved = archive::latest_state(&self.conn)?;
                            if let Some((_, state, _)) = saved {
                                if let Err(e) = p.instance.load_state(&state) {
                                    tracing::warn!("saved strategy state refused ({e}); starting from a fresh state");
                                }
                            }
                            tracing::info!(version = rec.version, ?source, "strategy loaded");
                            self.event(
                                "strategy_loaded",
                                serde_json::json!({ "version": rec.version, "source": source }),
                            );
                            self.activate_prepared(rec.version, p);
                            return Ok(());
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
        self.event("strategy_paused", serde_json::json!({ "reason": reason }));
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
            instance: p.instance,
            params: p.params,
            scan_minutes: p.scan_minutes,
            failures: 0,
            last_good_state: None,
        });
        self.paused = None;
    }

    /// Swaps `p` in: carries the running strategy's state across, records the
    /// version, and only then replaces the running module. On any failure the
    /// old module stays.
    pub fn swap(&mut self, mut p: Prepared) -> Result<DeployOutcome, String> {
        let previous = self.active.as_ref().map(|a| a.version);
        let state = match self.active.as_mut() {
            Some(a) => Some(
                a.instance
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

    pub fn status(&self) -> LiveStatus {
        LiveStatus {
            running: true,
            paused: self.paused.clone(),
            active_version: self.active.as_ref().map(|a| a.version),
            active_hash: self.active.as_ref().map(|a| a.module.info().hash.clone()),
            scan_seq: self.scan_seq,
            last_scan_ts: self.last_scan_ts,
            clock: self.clock,
        }
    }

    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Deploy(p, reply) => {
                let r = self.swap(*p);
                if let Err(e) = &r {
                    tracing::error!("deploy refused: {e}");
                    self.event("deploy_failed", serde_json::json!({ "reason": e }));
                }
                let _ = reply.send(r);
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// One bar of market data arrived; scan if one is due. Returns false on shutdown.
    pub fn on_bar(&mut self, symbol: &str, interval: Interval, bar: Candle) {
        Arc::make_mut(&mut self.data).push(symbol, interval, bar);
        self.clock = self.clock.max(bar.ts + interval.secs());
        if self.clock >= self.next_scan_at {
            self.scan(self.clock);
        }
    }

    /// One scan at `now`: the strategy sees the market up to `now`.
    pub fn scan(&mut self, now: i64) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        self.scan_seq += 1;
        let seq = self.scan_seq;
        let step = active.scan_minutes as i64 * 60;
        self.next_scan_at = (now / step + 1) * step;
        self.last_scan_ts = Some(now);
        let portfolio = crate::runtime::bindings::Portfolio {
            cash: self.settings.starting_capital.try_into().unwrap_or(0.0),
            total_value: self.settings.starting_capital.try_into().unwrap_or(0.0),
            positions: vec![],
            daily_pnl: 0.0,
            total_pnl: 0.0,
            fees_paid: 0.0,
            closed_trade_count: 0,
        };
        active.instance.host().view = Some(MarketView::new(self.data.clone(), now));
        let result = active.instance.analyze(now, &portfolio);
        active.instance.host().view = None;
        let fuel = active.instance.fuel_used() as i64;
        let (version, hash) = (active.version, active.module.info().hash.clone());
        let (n, error) = match &result {
            Ok(s) => (s.len() as i64, None),
            Err(e) => (0, Some(e.to_string())),
        };
        if let Err(e) = self.conn.execute(
            "INSERT INTO scan_results (seq, ts, strategy_version, module_hash, signals, fuel, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![seq, now, version, hash, n, fuel, error],
        ) {
            tracing::error!("scan {seq}: {e}");
        }
        match result {
            Ok(_) => active.failures = 0,
            Err(e) => self.module_failed(e),
        }
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
            self.event("module_error", detail);
            self.pause(reason);
            return;
        }
        if e.is_fatal() {
            // restart the instance from its last good state
            let restarted = active.module.instantiate().and_then(|mut i| {
                i.initialize(
                    &self.risk.contract_view(),
                    &self.settings.symbols,
                    &active.params,
                )?;
                if let Some(s) = &active.last_good_state {
                    i.load_state(s)?;
                }
                Ok(i)
            });
            match restarted {
                Ok(i) => active.instance = i,
                Err(e2) => {
                    let reason = format!("version {} cannot be restarted: {e2}", active.version);
                    self.event("module_error", detail);
                    self.pause(reason);
                    return;
                }
            }
        }
        self.event("module_error", detail);
    }

    /// Saves the strategy state (shutdown, and periodically).
    pub fn save_state(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        match active.instance.get_state() {
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
            serde_json::json!({ "mode": self.settings.mode, "paused": self.paused }),
        );
        let mut bars = 0u64;
        'outer: loop {
            while let Ok(cmd) = commands.try_recv() {
                if !self.handle(cmd) {
                    break 'outer;
                }
            }
            let Some((symbol, interval, bar)) = feed.next_bar() else {
                if exit_at_end {
                    break;
                }
                self.save_state();
                tracing::info!(
                    "feed ended after {} scans; waiting for commands",
                    self.scan_seq
                );
                while let Ok(cmd) = commands.recv() {
                    if !self.handle(cmd) {
                        break;
                    }
                }
                break;
            };
            self.on_bar(&symbol, interval, bar);
            bars += 1;
            if bars.is_multiple_of(500) {
                self.save_state();
            }
        }
        self.shutdown();
    }

    /// Shutdown sequence: stop scanning, save the strategy state, log, close.
    pub fn shutdown(&mut self) {
        self.save_state();
        self.event("shutdown", serde_json::json!({ "scans": self.scan_seq }));
    }
}

/// Deploys without a running host: validate, initialise, check the saved
/// state loads, record and activate. The next start uses it.
pub fn deploy_offline(
    paths: &Paths,
    settings: &Settings,
    risk: &RiskFile,
    mut p: Prepared,
) -> anyhow::Result<DeployOutcome> {
    std::fs::create_dir_all(&paths.data_dir)?;
    let conn = crate::db::open(&paths.db())?;
    let previous = archive::active(&conn)?.map(|v| v.version);
    if let Some((_, state, _)) = archive::latest_state(&conn)? {
        p.instance
            .load_state(&state)
            .map_err(|e| anyhow::anyhow!("the new strategy refused the saved state: {e}"))?;
    }
    let _ = (settings, risk);
    let version = match p.existing_version {
        Some(v) => v,
        None => archive::add_version(
            &conn,
            &paths.archive_dir,
            &p.bytes,
            p.code.as_deref(),
            &p.params,
            &p.origin,
            p.info(),
        )?,
    };
    archive::activate(&conn, version)?;
    events::append(
        &conn,
        now_unix(),
        "deploy",
        None,
        &serde_json::json!({ "version": version, "previous": previous, "offline": true }),
    )?;
    let scans: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM scan_results", [], |r| {
        r.get(0)
    })?;
    Ok(DeployOutcome {
        version,
        hash: p.info().hash.clone(),
        previous,
        first_scan: scans + 1,
        state_bytes: 0,
    })
}

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
