//! One bar, one scan: the per-bar transaction (`begin`/`commit`), booking
//! engine events and live fills, the strategy scan and its signals, module
//! failures, stale data and the dead man's switch. Everything a bar changes is
//! written inside that bar's transaction.

use super::*;

/// How far past the wall clock a candle's close may be (clock skew).
const FUTURE_TOLERANCE_SECS: i64 = 60;

impl Shell {
    /// Opens the transaction everything until [`Shell::commit`] lands in.
    pub(super) fn begin(&mut self) {
        if self.unpublished.is_some() {
            return;
        }
        // A bar commits whole or not at all: while another process holds the
        // write lock past the busy timeout (a `host data import`, a `host
        // orchestrate`), wait and try again; never run the bar in autocommit.
        let mut waited = std::time::Duration::ZERO;
        let mut pause = std::time::Duration::from_millis(50);
        let mut next_alarm = std::time::Duration::from_secs(30);
        while let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            if waited.is_zero() {
                tracing::warn!("the database is locked by another process; the bar waits: {e}");
            }
            std::thread::sleep(pause);
            waited += pause;
            pause = (pause * 2).min(std::time::Duration::from_secs(2));
            if waited >= next_alarm {
                tracing::error!(
                    "the bar has waited {} s for the database's write lock",
                    waited.as_secs()
                );
                next_alarm += std::time::Duration::from_secs(30);
            }
        }
        if !waited.is_zero() {
            tracing::info!(
                waited_ms = waited.as_millis() as u64,
                "the write lock was released; the bar runs"
            );
        }
        self.unpublished = Some(Vec::new());
    }

    /// Saves the engine snapshot (and the strategy state when `with_state`),
    /// commits, then publishes the events the transaction held.
    pub(super) fn commit(&mut self, with_state: bool) {
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
                    None,
                    Payload::Error(ev::ErrorEvent {
                        site: ev::ErrorSite::Account,
                        error: e.to_string(),
                    }),
                );
            }
        }
    }

    /// Writes engine events and new orders, with the engine snapshot, in one
    /// transaction (or inside the bar's, when one is open).
    pub(super) fn persist_account(
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
    pub(super) fn write_ahead_live(&mut self) {
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
    pub(super) fn record(
        &mut self,
        events: &[EngineEvent],
        new_orders: &[trading_core::PendingOrder],
    ) {
        let r = account::record_events(&self.conn, self.mode, events, self.clock).and_then(|_| {
            account::record_orders(&self.conn, self.mode, self.mode, new_orders, self.clock)
        });
        if let Err(e) = r {
            tracing::error!("account not recorded: {e}");
            self.event(
                None,
                Payload::Error(ev::ErrorEvent {
                    site: ev::ErrorSite::Account,
                    error: e.to_string(),
                }),
            );
        }
    }

    pub(super) fn engine_events(&mut self, events: &[EngineEvent]) {
        for e in events {
            let (payload, symbol) = Payload::from_engine(e);
            self.event(symbol.as_deref(), payload);
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
        let close = bar.ts.saturating_add(interval.secs());
        if self.wall_clock && close > self.wall.now() + FUTURE_TOLERANCE_SECS {
            // a wall clock refuses candles from the future (a venue or feed bug)
            self.event(
                Some(symbol),
                Payload::FutureCandle(ev::FutureCandle {
                    interval: interval.name().to_string(),
                    ts: bar.ts,
                    close,
                    now: self.wall.now(),
                }),
            );
            return;
        }
        self.begin();
        self.store_candle(symbol, interval, &bar);
        let data = Arc::make_mut(&mut self.data);
        data.push(symbol, interval, bar);
        // the coarser tiers advance as their buckets close, before the scan
        // that may read them (the same rule as the candle store)
        for (coarse, c) in data.roll_up_from(symbol, close) {
            self.store_candle(symbol, coarse, &c);
        }
        self.clock = self.clock.max(close);
        if self.wall_clock {
            self.clock = self.clock.max(self.wall.now());
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
                // the engine took the bar (a later one than its last): so do the counterfactuals
                self.follow_shadows(symbol, &bar);
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
                    Some(symbol),
                    Payload::Error(ev::ErrorEvent {
                        site: ev::ErrorSite::Engine,
                        error: e.to_string(),
                    }),
                );
            }
        }
        // the forward shadows see the bar the strategy saw
        self.shadow_bar(symbol, &bar);
        let scanned = self.tick(self.clock);
        host_trading::failpoint::hit("bar.before_commit");
        self.commit(scanned);
        host_trading::failpoint::hit("bar.after_commit");
        self.execute_live();
        self.run_deferred();
        if std::mem::take(&mut self.tiering_due) {
            self.tier_candles();
        }
    }

    /// Live mode, after a commit: send written-ahead orders, then book the venue's fills.
    pub(super) fn execute_live(&mut self) {
        let Some(venue) = self.live.as_ref() else {
            return;
        };
        let now = self.clock;
        let sent = venue.send_pending(&self.conn, now);
        let engine_before = self.trader.engine.clone();
        let booked = (|| -> Result<_, host_trading::live::LiveError> {
            let tx = self.conn.transaction()?;
            let mut booked = venue.book_fills(&tx, self.mode, &mut self.trader.engine, now)?;
            // a fill that was not the host's moved the venue's balances: the
            // venue is the truth, the difference is booked as an adjustment
            let true_up = if booked.external.is_empty() {
                None
            } else {
                let t = venue.true_up(
                    &tx,
                    self.mode,
                    &mut self.trader.engine,
                    "a venue fill that was not the host's",
                    now,
                )?;
                booked.events.extend(t.events.iter().cloned());
                Some(t)
            };
            account::snapshot(&tx, self.mode, &self.trader.engine, now)?;
            tx.commit()?;
            Ok((booked, true_up))
        })();
        // the exits the booking wrote ahead protect positions now, not a bar later
        let sent = match (sent, venue.send_pending(&self.conn, now)) {
            (Ok(mut a), Ok(b)) => {
                a.extend(b);
                Ok(a)
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match sent {
            Ok(results) => {
                for (id, r) in results {
                    match r {
                        Sent::Placed(venue_id) | Sent::Adopted(venue_id) => self.event(
                            None,
                            Payload::OrderSent(ev::OrderSent {
                                client_order_id: id,
                                venue_order_id: venue_id,
                            }),
                        ),
                        Sent::Unknown(e) | Sent::Rejected(e) => self.event(
                            None,
                            Payload::OrderSendFailed(ev::OrderSendFailed {
                                client_order_id: id,
                                error: e.to_string(),
                                ambiguous: e.is_ambiguous(),
                            }),
                        ),
                        Sent::Abandoned { age_secs } => {
                            self.alert(format!(
                                "order {id} was decided {age_secs} s ago and never reached the venue: abandoned, not sent"
                            ));
                            self.event(
                                None,
                                Payload::OrderAbandoned(ev::OrderAbandoned {
                                    client_order_id: id,
                                    age_secs,
                                }),
                            )
                        }
                    };
                }
            }
            Err(e) => self.alert(format!("sending orders failed: {e}")),
        }
        match booked {
            Ok((booked, true_up)) => {
                for x in &booked.external {
                    self.alert(format!(
                        "a venue fill that was not the host's: {:?} {} {} at {} ({}); recorded as external",
                        x.side, x.qty, x.symbol, x.price, x.reason
                    ));
                    self.event(Some(&x.symbol), Payload::ExternalFill(x.clone()));
                }
                if let Some(t) = true_up {
                    self.event(None, Payload::BalanceAdjusted(t));
                }
                if let Some(a) = self.active.as_mut() {
                    let errors = self.trader.forward(&mut a.driver, &booked.events);
                    for e in errors {
                        self.module_failed(e);
                    }
                }
                self.engine_events(&booked.events);
            }
            Err(e) => {
                // the transaction rolled back: so does the ledger in memory
                self.trader.engine = engine_before;
                self.alert(format!("booking exchange fills failed: {e}"));
            }
        }
    }

    /// One scan at `now`: the strategy sees the market up to `now`, its
    /// signals go through the risk manager, and everything is recorded.
    /// Returns whether the strategy was called.
    pub fn scan(&mut self, now: i64) -> bool {
        if let Some(venue) = self.live.as_mut() {
            // the venue's open orders count for risk like the engine's own
            match host_trading::live::resting(&self.conn) {
                Ok(r) => self.trader.engine.set_resting(r),
                Err(e) => tracing::error!("cannot read the orders resting at the venue: {e}"),
            }
            // an order is stale once its bar has passed
            if let Some(a) = self.active.as_ref() {
                let step = i64::from(a.driver.scan_minutes().max(1)) * 60;
                venue.max_order_age_secs = venue.max_order_age_secs.min(step);
            }
        }
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        let step = i64::from(active.driver.scan_minutes().max(1)) * 60;
        let stale = self.stale_symbols(now);
        if !stale.is_empty() && self.stale != stale {
            // logged when it starts or changes
            self.event(
                None,
                Payload::StaleData(ev::DataState {
                    symbols: stale.clone(),
                    at: now,
                }),
            );
        }
        if !stale.is_empty() && stale.len() == self.settings.symbols.len() {
            // every symbol stale (the feed is down): not scanned, tried again at the next bar or tick
            self.stale = stale;
            return false;
        }
        let fresh: Vec<String> = self
            .stale
            .iter()
            .filter(|s| !stale.contains(s))
            .cloned()
            .collect();
        if !fresh.is_empty() {
            self.event(
                None,
                Payload::DataFresh(ev::DataState {
                    symbols: fresh,
                    at: now,
                }),
            );
        }
        // no entry on a symbol whose newest bar is stale or missing at this close
        let mut no_entry = stale.clone();
        no_entry.extend(self.missing.iter().filter(|s| !stale.contains(s)).cloned());
        // (a paused symbol is refused by the engine itself: `set_paused_symbols`)
        self.trader.engine.set_stale(no_entry);
        self.stale = stale;
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
        const SCAN: &str = "INSERT INTO scan_results (seq, ts, strategy_version, module_hash, signals, fuel, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
        let signals = outcome.decisions.len() as i64;
        let r = self.conn.prepare_cached(SCAN).and_then(|mut st| {
            st.execute(rusqlite::params![
                seq, now, version, hash, signals, fuel, error
            ])
        });
        if let Err(e) = r {
            tracing::error!("scan {seq}: {e}");
        }
        for (signal, decision) in &outcome.decisions {
            self.record_signal(seq, now, signal, decision);
        }
        // the strategy's own close signals end its symbols' counterfactuals
        for (signal, _) in &outcome.decisions {
            if matches!(
                signal.action,
                trading_core::Action::Sell | trading_core::Action::Close
            ) {
                if let Err(e) =
                    host_store::shadow_db::close_signal(&self.conn, self.mode, &signal.symbol, now)
                {
                    tracing::error!("counterfactuals of {}: {e}", signal.symbol);
                }
            }
        }
        for cf in self.trader.engine.take_counterfactuals() {
            let mut entry = ev::RefusedEntry::from(&cf);
            match host_store::shadow_db::open(
                &self.conn,
                self.mode,
                &cf,
                &entry.refusal.kind,
                Some(version),
            ) {
                Ok(id) => entry.shadow_id = Some(id),
                Err(e) => tracing::error!("counterfactual not kept: {e}"),
            }
            self.event(Some(&cf.symbol), Payload::Counterfactual(entry));
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
            self.event(Some(&o.request.symbol), Payload::Order(o.clone()));
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

    /// Feeds a bar to the symbol's open counterfactuals (the refused entries
    /// being followed); each one it closes is recorded (`counterfactual_closed`).
    pub(super) fn follow_shadows(&mut self, symbol: &str, bar: &Candle) {
        let Ok(b) = trading_core::Bar::from_candle(bar) else {
            return;
        };
        let cfg = self.trader.engine.config().fill;
        match host_store::shadow_db::on_bar(&self.conn, self.mode, symbol, &b, &cfg) {
            Ok(closed) => {
                for (o, exit) in closed {
                    self.event(
                        Some(symbol),
                        Payload::CounterfactualClosed(ev::ShadowClosed {
                            shadow_id: o.id,
                            refusal_kind: o.refusal_kind,
                            exit,
                        }),
                    );
                }
            }
            Err(e) => tracing::error!("counterfactuals of {symbol}: {e}"),
        }
    }

    /// Symbols whose newest candle is older than the stale limit at `now`.
    pub(super) fn stale_symbols(&self, now: i64) -> Vec<String> {
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

    pub(super) fn record_signal(
        &mut self,
        seq: i64,
        now: i64,
        s: &trading_core::Signal,
        d: &Decision,
    ) {
        let (decision, reason) = match d {
            Decision::Approved(o) => (
                "approved",
                o.clipped_from.as_ref().map(|c| format!("clipped: {c:?}")),
            ),
            Decision::Modify(_) => ("modify", None),
            Decision::Refused(r) => ("refused", Some(r.to_string())),
        };
        let lower = |x: String| x.to_lowercase();
        const SIGNAL: &str = "INSERT INTO signals (scan_seq, ts, symbol, action, size_pct, order_type, confidence, tag, reasoning, decision, reason, acted_on)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
        let r = self.conn.prepare_cached(SIGNAL).and_then(|mut st| {
            st.execute(rusqlite::params![
                seq,
                now,
                s.symbol,
                lower(format!("{:?}", s.action)),
                if s.size_pct.is_finite() {
                    s.size_pct
                } else {
                    -1.0
                },
                lower(format!("{:?}", s.order_type)),
                if s.confidence.is_finite() {
                    Some(s.confidence)
                } else {
                    None
                },
                s.tag,
                s.reasoning,
                decision,
                reason,
                d.is_approved()
            ])
        });
        if let Err(e) = r {
            tracing::error!("signal not stored: {e}");
        }
        self.event(
            Some(&s.symbol),
            Payload::RiskDecision(ev::RiskDecision {
                scan: seq,
                signal: s.clone(),
                decision: decision.to_string(),
                reason,
            }),
        );
    }

    pub(super) fn module_failed(&mut self, e: ModuleError) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        active.failures += 1;
        tracing::error!(
            version = active.version,
            failures = active.failures,
            "strategy failed: {e}"
        );
        let detail = Payload::ModuleError(ev::ModuleErrorEvent {
            version: active.version,
            error: e.to_string(),
            failures: active.failures,
        });
        if active.failures >= self.settings.max_failures {
            let reason = format!(
                "version {} failed {} scans in a row: {e}",
                active.version, active.failures
            );
            let _ = archive::set_status(&self.conn, active.version, "failed", Some(&reason));
            self.event(None, detail);
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
                    self.event(None, detail);
                    self.pause(reason);
                    return;
                }
            }
        }
        self.event(None, detail);
    }

    /// Cancels every open order once the strategy has not answered for the configured time.
    pub(super) fn dead_man(&mut self) {
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
                if let Err(e) = v.cancel_open(&self.conn, self.clock, CancelScope::KeepExits) {
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
}
