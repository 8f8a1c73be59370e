//! Starting the host: the database, the account rebuilt from it, the venue
//! reconciled, market data loaded and backfilled, the active strategy loaded
//! (or the default deployed). Nothing here trades.

use super::*;

impl Shell {
    /// Startup (the seed's L1–L9): open and migrate the database, rebuild the
    /// account from its fills and check it against the snapshot (L1),
    /// re-evaluate halts (L2), warn about orphaned positions (L3), load the
    /// strategy from the archive file, else its database copy, else the
    /// configured default, else start paused (L4), restore its state, cancel
    /// orders that are no longer open (L7) and raise the startup alerts.
    pub fn start(paths: Paths, settings: Settings, risk: RiskFile) -> anyhow::Result<Shell> {
        std::fs::create_dir_all(&paths.data_dir)?;
        // before anything is read or written: a second host refuses here
        let lock = host_store::lock::DataDirLock::acquire(&paths.data_dir)?;
        let wall = trading_core::clock::wall();
        let conn = host_store::db::open(&paths.db())?;
        // Durability per mode (WAL in both): paper keeps `synchronous =
        // NORMAL` (a power cut may lose the last bars, which replay again,
        // never corrupt); live syncs every commit (`FULL`), so an order
        // written ahead of its send survives a power cut.
        if settings.mode == Mode::Live {
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
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
                let venue = host_trading::live::connect(
                    settings.venue,
                    &settings.exchanges,
                    &wall,
                    &paths.data_dir,
                )?;
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
        let (bus, early) = tokio::sync::broadcast::channel(1024);
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
            market_source: None,
            startup_events: Some(early),
            wall_clock: false,
            wall,
            _lock: lock,
            stale: Vec::new(),
            missing: Vec::new(),
            reviews: None,
            tiering_due: false,
            tiered_on: None,
            tiered_at: None,
            shadows: Vec::new(),
            shadows_resumed: false,
            deferred: Vec::new(),
            next_heartbeat: None,
        };
        shell.load_candles()?;
        let paused = host_store::db::paused_symbols(&shell.conn)?;
        shell.trader.engine.set_paused_symbols(paused);
        shell.config_changes();
        let rec = shell.reconciliation.clone();
        shell.event(None, Payload::Reconcile(rec.clone()));
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
        // a restarted host never scans a close twice: the next scan is the
        // first close after the last one this data directory recorded
        let last_scan: Option<i64> =
            shell
                .conn
                .query_row("SELECT MAX(ts) FROM scan_results", [], |r| r.get(0))?;
        if let Some(last) = last_scan {
            let step = shell
                .active
                .as_ref()
                .map_or(300, |a| i64::from(a.driver.scan_minutes().max(1)) * 60);
            shell.last_scan_ts = Some(last);
            shell.next_scan_at = (last.div_euclid(step) + 1) * step;
        }
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
    pub(super) fn reconcile_venue(&mut self) {
        let Some(venue) = self.live.as_ref() else {
            return;
        };
        let now = self.now();
        match venue.reconcile(&mut self.conn, self.mode, &mut self.trader.engine, now) {
            Ok((rec, events)) => {
                self.engine_events(&events);
                self.event(None, Payload::VenueReconcile(rec.clone()));
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

    /// On a venue feed, at startup: each tier's candles missed while down
    /// (from the newest stored one on; with nothing stored, the last 30 days
    /// of 5m, a year of 1h and seven years of 1d, as far as the venue
    /// serves them), written straight to the store and the market view (no
    /// scans on history), then the coarser tiers rolled up from the finer.
    /// Live mode asks the trading venue, paper mode the public market source.
    pub fn backfill(&mut self) {
        let windows = [
            (Interval::D1, 7 * 365 * 86_400),
            (Interval::H1, 365 * 86_400),
            (Interval::M5, 30 * 86_400),
        ];
        let mut stored = Vec::new();
        let mut failed = Vec::new();
        for symbol in self.settings.symbols.clone() {
            for (interval, window) in windows {
                match self.missing_candles(&symbol, interval, window) {
                    Some(Ok(candles)) => {
                        for c in &candles {
                            self.store_candle(&symbol, interval, c);
                            Arc::make_mut(&mut self.data).push(&symbol, interval, *c);
                            self.clock = self.clock.max(c.ts + interval.secs());
                        }
                        stored.push(ev::BackfillCount::Tier(
                            symbol.clone(),
                            interval.name().to_string(),
                            candles.len(),
                        ));
                    }
                    Some(Err(e)) => failed.push(format!("{symbol} {}: {e}", interval.name())),
                    None => return,
                }
            }
            let horizon = self.newest_close(&symbol).unwrap_or(i64::MIN);
            for (interval, c) in Arc::make_mut(&mut self.data).roll_up_from(&symbol, horizon) {
                self.store_candle(&symbol, interval, &c);
            }
        }
        self.event(
            None,
            Payload::Backfill(ev::Backfill {
                stored,
                failed: failed.clone(),
            }),
        );
        if !failed.is_empty() {
            self.alert(format!("candle backfill failed: {}", failed.join("; ")));
        }
    }

    /// After the venue feed reconnected: the 5m candles that closed while it
    /// was down, fed through [`Shell::on_bar`] in close order (so fills,
    /// roll-ups and scans happen as if they had streamed in); the bars the
    /// feed then repeats are dropped as seen.
    pub(super) fn fill_gaps(&mut self) {
        let mut bars = Vec::new();
        let mut failed = Vec::new();
        for symbol in self.settings.symbols.clone() {
            match self.missing_candles(&symbol, Interval::M5, 30 * 86_400) {
                Some(Ok(candles)) => bars.extend(candles.into_iter().map(|c| (symbol.clone(), c))),
                Some(Err(e)) => failed.push(format!("{symbol}: {e}")),
                None => return,
            }
        }
        bars.sort_by_key(|(s, c)| (c.ts, s.clone()));
        self.event(
            None,
            Payload::GapFill(ev::GapFill {
                bars: bars.len(),
                failed: failed.clone(),
            }),
        );
        for (symbol, c) in bars {
            self.on_bar(&symbol, Interval::M5, c);
        }
        if !failed.is_empty() {
            self.alert(format!(
                "candles missed during a feed outage were not fetched: {}",
                failed.join("; ")
            ));
        }
    }

    /// The closed candles of `symbol` at `interval` newer than the stored
    /// ones (at most `window` back on a wall clock), from the venue; None
    /// without a venue.
    fn missing_candles(
        &self,
        symbol: &str,
        interval: Interval,
        window: i64,
    ) -> Option<Result<Vec<Candle>, host_trading::live::LiveError>> {
        let venue = self.live.as_ref().or(self.market_source.as_ref())?;
        let now = self.wall_clock.then(|| self.wall.now());
        let since = match self.data.series(symbol, interval).last() {
            Some(c) => c.ts + interval.secs(),
            None => now.map_or(0, |n| n - window),
        };
        let minutes = u32::try_from(interval.secs() / 60).unwrap_or(u32::MAX);
        Some(venue.ohlc(symbol, minutes, since).map(|candles| {
            candles
                .into_iter()
                .filter(|c| c.ts >= since && now.is_none_or(|n| c.ts + interval.secs() <= n))
                .collect()
        }))
    }

    /// Writes one candle (inside or outside a bar's transaction); a failure is logged.
    pub(super) fn store_candle(&self, symbol: &str, interval: Interval, c: &Candle) {
        let r = host_store::candles::put(&self.conn, symbol, interval, c);
        if let Err(e) = r {
            tracing::error!(symbol, interval = interval.name(), "candle not stored: {e}");
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
                            Some(symbol.clone().as_str()),
                            Payload::FeeSchedule(ev::FeeSchedule {
                                fee_bps: bps,
                                was,
                                changed: bps != was,
                            }),
                        );
                    }
                    Err(e) => self.alert(format!("the venue's fee of {bps} bps is refused: {e}")),
                }
            }
            Err(e) => self.alert(format!("fee schedule not refreshed: {e}")),
        }
    }

    /// Loads the stored candles of the configured symbols (the market view's history).
    pub(super) fn load_candles(&mut self) -> anyhow::Result<()> {
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

    pub(super) fn load_strategy(&mut self) -> anyhow::Result<()> {
        let symbols = self.settings.symbols.clone();
        if let Some(rec) = archive::active(&self.conn)? {
            let loaded = archive::load_bytes(&self.conn, &self.paths.archive_dir, rec.version);
            match loaded {
                Ok((bytes, source)) => {
                    if source == BytesSource::Database {
                        self.event(
                            None,
                            Payload::StrategyFallback(ev::StrategyLoaded {
                                version: rec.version,
                                source: BytesSource::Database,
                            }),
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
                                None,
                                Payload::StrategyLoaded(ev::StrategyLoaded {
                                    version: rec.version,
                                    source,
                                }),
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
}
