//! Commands applied between two bars: deploy (hot swap carrying state),
//! rollback, halt, resume, kill, status, pause/resume one symbol's entries;
//! saving state and shutting down.

use super::*;

impl Shell {
    pub(super) fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Deploy(p, reply) => {
                let r = self.swap(*p);
                if let Err(e) = &r {
                    tracing::error!("deploy refused: {e}");
                    self.event(
                        None,
                        Payload::DeployFailed(ev::DeployFailed { reason: e.clone() }),
                    );
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
                    None,
                    Payload::Halt(ev::Halt {
                        by,
                        reason: "manual".into(),
                        newly,
                    }),
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
                let cleared = was.is_some() || killed;
                self.event(
                    None,
                    Payload::Resume(ev::Resume {
                        by,
                        halt: was,
                        killed,
                    }),
                );
                let _ = reply.send(cleared);
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
                        if let Err(e) = v.cancel_open(&self.conn, now, CancelScope::Everything) {
                            self.alert(format!("kill: cancelling exchange orders failed: {e}"));
                        }
                    }
                    self.execute_live();
                } else {
                    self.persist_account(&events, &closing);
                }
                self.event(
                    None,
                    Payload::Kill(ev::Kill {
                        by,
                        outcome: outcome.clone(),
                    }),
                );
                let _ = reply.send(outcome);
            }
            Command::Record { event, reply } => {
                let seq = self.event(None, event.into_payload());
                let _ = reply.send(seq);
            }
            Command::TriggerReview { by, reason, reply } => {
                let Some(r) = self.reviews.as_mut() else {
                    // started without --orchestrate: say so instead of recording a review nobody runs
                    let _ = reply.send(Err(host_control::socket::Refusal::NotOrchestrating));
                    return true;
                };
                r.state.manual_requested = true;
                let seq = self.event(
                    None,
                    Payload::TuningTrigger(ev::TuningTrigger {
                        kind: "manual".into(),
                        by,
                        reason,
                    }),
                );
                let _ = reply.send(Ok(seq));
                // start it now, even when no bar or tick is coming (a replay that ended)
                self.review_if_due();
            }
            Command::ToggleSymbol {
                symbol,
                by,
                pause,
                reply,
            } => {
                let changed = self.toggle_symbol(&symbol, by, pause);
                let _ = reply.send(changed);
            }
            Command::ForceExit { symbol, by, reply } => {
                let r = self.force_exit(&symbol, by);
                let _ = reply.send(r);
            }
            Command::Shutdown => return false,
        }
        true
    }

    /// Pauses (`pause`) or resumes entries on `symbol`, kept in the database
    /// across restarts; exits, stops and targets still run. A change is
    /// recorded as `pause_symbol` / `resume_symbol`. Returns whether the
    /// state changed.
    fn toggle_symbol(&mut self, symbol: &str, by: String, pause: bool) -> bool {
        let mut set = self.trader.engine.paused_symbols().clone();
        let changed = if pause {
            set.insert(symbol.to_string())
        } else {
            set.remove(symbol)
        };
        if changed {
            if let Err(e) = host_store::db::set_paused_symbols(&self.conn, &set) {
                self.alert(format!(
                    "{symbol}: the paused symbols were not saved, nothing changed: {e}"
                ));
                return false;
            }
            self.trader.engine.set_paused_symbols(set);
        }
        if changed {
            let t = ev::SymbolToggle { by, changed };
            let payload = if pause {
                Payload::PauseSymbol(t)
            } else {
                Payload::ResumeSymbol(t)
            };
            self.event(Some(symbol), payload);
        }
        changed
    }

    /// Closes `symbol`'s position at market on the next bar (paper). Live
    /// refuses: the venue's resting exits of the symbol would have to be
    /// cancelled first, which the venue layer cannot yet do for one symbol.
    fn force_exit(&mut self, symbol: &str, by: String) -> Result<Option<Decimal>, String> {
        if self.live.is_some() {
            return Err(
                "force exit is not available in live mode yet: close it at the venue, or use /kill"
                    .into(),
            );
        }
        let now = self.now();
        let Some((events, order)) = self.trader.engine.force_exit(symbol, now) else {
            return Ok(None);
        };
        self.persist_account(&events, std::slice::from_ref(&order));
        self.engine_events(&events);
        let qty = order.request.qty;
        self.event(
            Some(symbol),
            Payload::ForceExit(ev::ForceExit {
                by,
                qty,
                order_id: order.id,
            }),
        );
        self.event(Some(symbol), Payload::Order(order));
        Ok(Some(qty))
    }

    pub(super) fn pause(&mut self, reason: String) {
        tracing::error!("strategy paused: {reason}");
        self.event(
            None,
            Payload::StrategyPaused(ev::StrategyPaused {
                reason: reason.clone(),
            }),
        );
        self.paused = Some(reason);
        self.active = None;
    }

    pub(super) fn record_version(&self, p: &Prepared) -> Result<i64, archive::ArchiveError> {
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

    pub(super) fn activate_prepared(&mut self, version: i64, p: Prepared) {
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
            None,
            Payload::Deploy(ev::Deploy {
                version,
                previous,
                hash: Some(hash.clone()),
                origin: Some(origin),
                first_scan: Some(self.scan_seq + 1),
                offline: false,
            }),
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
        s.shadows = self.shadow_status();
        s.clock = self.clock;
        s.health = Some(self.health());
        s
    }

    /// Every part's health at the shell's clock: the scan loop (the last
    /// scan no older than three scan intervals plus the bar grace), each
    /// symbol's feed (its newest candle within `[safety]
    /// stale_data_minutes`), the database (a write lock is taken and
    /// released), the strategy (active, not paused, no failure in a row),
    /// the orchestrator (its last cycle within two days, when it runs).
    pub fn health(&self) -> host_control::Health {
        use host_control::{HealthCheck, HealthPart};
        let now = self.now();
        let mut checks = Vec::new();
        let step = self
            .active
            .as_ref()
            .map_or(300, |a| i64::from(a.driver.scan_minutes().max(1)) * 60);
        let limit = 3 * step + i64::from(self.settings.safety.bar_grace_secs);
        let since_scan = self.last_scan_ts.map(|t| now - t);
        checks.push(HealthCheck {
            part: HealthPart::ScanLoop,
            ok: self.paused.is_some() || since_scan.is_none_or(|a| a <= limit),
            age_secs: since_scan,
            detail: match since_scan {
                None => "no scan yet".into(),
                Some(a) if a > limit => format!("no scan for {a} s (limit {limit} s)"),
                Some(a) => format!("last scan {a} s ago"),
            },
        });
        let stale = i64::from(self.settings.safety.stale_data_minutes) * 60;
        for symbol in &self.settings.symbols {
            let age = self.newest_close(symbol).map(|t| now - t);
            let ok = stale == 0 || age.is_some_and(|a| a <= stale);
            checks.push(HealthCheck {
                part: HealthPart::Feed(symbol.clone()),
                ok,
                age_secs: age,
                detail: match age {
                    None => "no candle".into(),
                    Some(a) if !ok => format!("newest candle closed {a} s ago (limit {stale} s)"),
                    Some(a) => format!("newest candle closed {a} s ago"),
                },
            });
        }
        // inside a bar's or a command's transaction the write lock is held
        // already; otherwise take it and let it go
        let db = if self.conn.is_autocommit() {
            self.conn
                .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
                .map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        checks.push(HealthCheck {
            part: HealthPart::Database,
            ok: db.is_ok(),
            age_secs: None,
            detail: db.err().unwrap_or_else(|| "writable".into()),
        });
        checks.push(HealthCheck {
            part: HealthPart::Strategy,
            ok: self.active.as_ref().is_some_and(|a| a.failures == 0) && self.paused.is_none(),
            age_secs: None,
            detail: match (&self.active, &self.paused) {
                (_, Some(why)) => format!("paused: {why}"),
                (None, None) => "no strategy".into(),
                (Some(a), None) if a.failures > 0 => {
                    format!("version {} failed {} scans in a row", a.version, a.failures)
                }
                (Some(a), None) => format!("version {} active", a.version),
            },
        });
        if let Some(r) = self.reviews.as_ref() {
            let age = r.last_cycle_at().map(|t| now - t);
            checks.push(HealthCheck {
                part: HealthPart::Orchestrator,
                ok: age.is_none_or(|a| a <= 2 * 86_400),
                age_secs: age,
                detail: match age {
                    None => "no cycle yet".into(),
                    Some(a) => format!("last cycle {a} s ago"),
                },
            });
        }
        host_control::Health::new(checks)
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
            match v.cancel_open(&self.conn, self.clock, CancelScope::SuspendExits) {
                Ok(n) if n > 0 => self.event(
                    None,
                    Payload::OrdersCancelled(ev::OrdersCancelled {
                        count: n,
                        why: "shutdown".into(),
                    }),
                ),
                Ok(_) => None,
                Err(e) => {
                    self.alert(format!("shutdown: cancelling exchange orders failed: {e}"));
                    None
                }
            };
        }
        let positions = self.trader.engine.portfolio().positions().len();
        self.event(
            None,
            Payload::Shutdown(ev::Shutdown {
                scans: self.scan_seq,
                cancelled_orders: events.len(),
                positions,
            }),
        );
    }
}
