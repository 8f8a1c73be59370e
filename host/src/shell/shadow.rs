//! Forward shadows and the automatic rollback, on the injected clock.
//!
//! A candidate the cycle passed (`shadow_candidates`, pending) is picked up
//! at the next tick and runs beside the incumbent on the same closed bars:
//! the candidate and a replica of the incumbent each on a fresh paper
//! account ([`ShadowRun`]: the one trader, engine and fill model), their
//! signals recorded in `shadow_signals`, nothing ever sent. After
//! `shadow_days` it is promoted (swapped in as the live strategy, its
//! expectation recorded) unless it trails the replica by more than its
//! tolerance, breaches the drawdown limit or trapped. A running shadow
//! survives a restart: it is rebuilt from the stored candles since its start.
//!
//! The rollback rule ([`schedule::check_rollback`]) holds the active version
//! to its expectation (`deploy_expectations`): trailing it by the margin
//! over `rollback_min_days` or `rollback_min_trades` swaps the previous
//! version back in, with an alert and an `auto_rollback` row in the
//! hash-chained log. Swaps are decided inside a bar and carried out after
//! its commit (the archive writes its own transactions).

use super::*;
use host_orchestrator::schedule;
use host_store::selection::{self as sel, ShadowState};
use host_trading::backtest::Account;
use host_trading::shadow::ShadowRun;

/// A candidate in its shadow and the incumbent's replica.
pub(super) struct Slot {
    row: sel::Shadow,
    until: i64,
    candidate: ShadowRun,
    reference: Option<ShadowRun>,
    signals: u64,
}

/// A swap decided inside a bar, carried out after its commit.
pub(super) enum Deferred {
    Promote { shadow_id: i64, detail: String },
    Rollback { version: i64, reason: String },
}

impl Shell {
    fn shadow_account(&self) -> Result<Account, String> {
        Ok(Account {
            capital: self.settings.starting_capital,
            engine: EngineConfig {
                fill: FillConfig {
                    fee_bps: self.settings.fee_bps.into(),
                    slippage_bps: self.settings.slippage_bps.into(),
                },
                order_ttl_bars: 24,
            },
            risk: convert::risk_config(&self.risk).map_err(|e| e.to_string())?,
            resume_after: None,
        })
    }

    /// The candidate and the replica of the running strategy, fresh.
    fn start_slot(&self, row: sel::Shadow, started_at: i64) -> Result<Slot, String> {
        let account = self.shadow_account()?;
        let module = self
            .runtime
            .load_strategy(&row.wasm)
            .map_err(|e| e.to_string())?;
        let candidate = ShadowRun::start(
            &module,
            &self.risk,
            &self.settings.symbols,
            &row.params,
            &account,
        )
        .map_err(|e| e.to_string())?;
        let reference = match self.active.as_ref() {
            Some(a) => Some(
                ShadowRun::start(
                    &a.module,
                    &self.risk,
                    &self.settings.symbols,
                    &a.params,
                    &account,
                )
                .map_err(|e| format!("the incumbent's replica: {e}"))?,
            ),
            None => None,
        };
        let until = started_at.saturating_add((row.shadow_days * 86_400.0).round() as i64);
        let signals = row.signals.max(0) as u64;
        Ok(Slot {
            row,
            until,
            candidate,
            reference,
            signals,
        })
    }

    /// Every shadow sees the bar the live strategy saw.
    pub(super) fn shadow_bar(&mut self, symbol: &str, bar: &Candle) {
        for s in &mut self.shadows {
            s.candidate.on_bar(symbol, bar);
            if let Some(r) = s.reference.as_mut() {
                r.on_bar(symbol, bar);
            }
        }
    }

    /// Whether every symbol has its bar closing at the scan close before
    /// `now` (or the grace period has passed), as the live scan waits.
    fn bars_in(&self, now: i64, step: i64) -> bool {
        let close = now.div_euclid(step) * step;
        now - close >= i64::from(self.settings.safety.bar_grace_secs)
            || self
                .settings
                .symbols
                .iter()
                .all(|s| self.newest_close(s).is_some_and(|t| t >= close))
    }

    /// The shadow jobs at the current clock: pick up new candidates, scan
    /// the running ones, decide those whose days are over; then the rollback rule.
    pub(super) fn shadow_jobs(&mut self) {
        if !self.shadows_resumed {
            self.shadows_resumed = true;
            self.resume_shadows();
        }
        match sel::shadows(&self.conn, ShadowState::Pending) {
            Ok(rows) => {
                for row in rows {
                    let (id, origin) = (row.id, row.origin.clone());
                    match self.start_slot(row, self.clock) {
                        Ok(mut slot) => {
                            if let Err(e) = sel::start_shadow(&self.conn, id, self.clock) {
                                tracing::error!("shadow {id}: {e}");
                                continue;
                            }
                            slot.row.started_at = Some(self.clock);
                            let until = slot.until;
                            self.shadows.push(slot);
                            self.event(
                                None,
                                Payload::ShadowStarted(ev::ShadowStarted {
                                    shadow_id: id,
                                    origin,
                                    run_id: None,
                                    days: None,
                                    until: Some(until),
                                    picked_up: true,
                                }),
                            );
                        }
                        Err(e) => self.refuse_shadow(id, format!("does not start: {e}")),
                    }
                }
            }
            Err(e) => tracing::error!("shadow candidates: {e}"),
        }
        let now = self.clock;
        let data = self.data.clone();
        let mut records = Vec::new();
        for i in 0..self.shadows.len() {
            let step = i64::from(self.shadows[i].candidate.scan_minutes().max(1)) * 60;
            if !self.bars_in(now, step) {
                continue;
            }
            let s = &mut self.shadows[i];
            if let Some(out) = s.candidate.scan_if_due(&data, now) {
                s.signals += out.decisions.len() as u64;
                records.push((s.row.id, out));
            }
            if let Some(r) = s.reference.as_mut() {
                let _ = r.scan_if_due(&data, now);
            }
        }
        for (id, out) in records {
            for (signal, decision) in &out.decisions {
                let (d, reason) = match decision {
                    Decision::Approved(_) => ("approved", None),
                    Decision::Modify(_) => ("modify", None),
                    Decision::Refused(r) => ("refused", Some(r.to_string())),
                };
                let r = sel::record_shadow_signal(
                    &self.conn,
                    id,
                    now,
                    &signal.symbol,
                    &format!("{:?}", signal.action).to_lowercase(),
                    signal.size_pct.is_finite().then_some(signal.size_pct),
                    d,
                    reason.as_deref(),
                );
                if let Err(e) = r {
                    tracing::error!("shadow {id} signal: {e}");
                }
            }
        }
        for s in &self.shadows {
            let _ = sel::update_shadow(
                &self.conn,
                s.row.id,
                s.candidate.return_pct(),
                s.reference.as_ref().and_then(|r| r.return_pct()),
                Some(s.candidate.max_drawdown_pct()),
            );
        }
        // the shadows whose days are over
        let mut k = 0;
        while k < self.shadows.len() {
            if self.shadows[k].until > now {
                k += 1;
                continue;
            }
            let s = self.shadows.remove(k);
            self.decide(s);
        }
        self.rollback_if_trailing();
    }

    fn refuse_shadow(&mut self, id: i64, detail: String) {
        let _ = sel::start_shadow(&self.conn, id, self.clock);
        if let Err(e) = sel::decide_shadow(
            &self.conn,
            id,
            self.clock,
            ShadowState::Refused,
            None,
            &detail,
        ) {
            tracing::error!("shadow {id}: {e}");
        }
        self.event(
            None,
            Payload::ShadowRefused(ev::ShadowRefused {
                shadow_id: id,
                detail: detail.clone(),
            }),
        );
        self.alert(format!("shadow candidate #{id} refused: {detail}"));
    }

    /// Promotion or refusal at the end of the shadow.
    fn decide(&mut self, s: Slot) {
        let c = s.candidate.return_pct().unwrap_or(0.0);
        let r = s
            .reference
            .as_ref()
            .and_then(|r| r.return_pct())
            .unwrap_or(0.0);
        let dd = s.candidate.max_drawdown_pct();
        let id = s.row.id;
        let why = if s.candidate.module_errors > 0 {
            Some(format!(
                "the strategy failed {} times in its shadow",
                s.candidate.module_errors
            ))
        } else if c < r - s.row.tolerance_pct {
            Some(format!(
                "returned {c:.2}% in {} days of shadow beside the incumbent's {r:.2}% (tolerance {} points)",
                s.row.shadow_days, s.row.tolerance_pct
            ))
        } else if dd > self.risk.max_drawdown_pct {
            Some(format!(
                "drew down {dd:.2}% in its shadow, over the {}% limit",
                self.risk.max_drawdown_pct
            ))
        } else {
            None
        };
        match why {
            Some(detail) => self.refuse_shadow(id, detail),
            None => {
                let days = s.row.shadow_days.max(f64::MIN_POSITIVE);
                let _ = sel::update_shadow(&self.conn, id, Some(c), Some(r), Some(dd));
                self.deferred.push(Deferred::Promote {
                    shadow_id: id,
                    detail: format!(
                        "returned {c:.2}% in {days} days of shadow beside the incumbent's {r:.2}%"
                    ),
                });
            }
        }
    }

    /// Running shadows of an earlier process: rebuilt from the stored
    /// candles since their start, scanned where they would have been.
    fn resume_shadows(&mut self) {
        let rows = match sel::shadows(&self.conn, ShadowState::Running) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("shadow candidates: {e}");
                return;
            }
        };
        for row in rows {
            let id = row.id;
            let Some(start) = row.started_at else {
                continue;
            };
            let mut slot = match self.start_slot(row, start) {
                Ok(s) => s,
                Err(e) => {
                    self.refuse_shadow(id, format!("does not restart: {e}"));
                    continue;
                }
            };
            // the finest stored interval of each symbol, bars opening at or after the start
            let mut bars: Vec<(i64, String, Candle)> = Vec::new();
            for sym in &self.settings.symbols {
                let Some(iv) = [Interval::M5, Interval::H1]
                    .into_iter()
                    .find(|i| !self.data.series(sym, *i).is_empty())
                else {
                    continue;
                };
                for c in self.data.series(sym, iv) {
                    if c.ts >= start && c.ts + iv.secs() <= self.clock {
                        bars.push((c.ts + iv.secs(), sym.clone(), *c));
                    }
                }
            }
            bars.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let mut i = 0;
            while i < bars.len() {
                let t = bars[i].0;
                while i < bars.len() && bars[i].0 == t {
                    slot.candidate.on_bar(&bars[i].1, &bars[i].2);
                    if let Some(r) = slot.reference.as_mut() {
                        r.on_bar(&bars[i].1, &bars[i].2);
                    }
                    i += 1;
                }
                let _ = slot.candidate.scan_if_due(&self.data, t);
                if let Some(r) = slot.reference.as_mut() {
                    let _ = r.scan_if_due(&self.data, t);
                }
            }
            self.shadows.push(slot);
        }
    }

    /// The rollback rule for the active version, when it has an expectation.
    fn rollback_if_trailing(&mut self) {
        let Some(version) = self.active.as_ref().map(|a| a.version) else {
            return;
        };
        if self
            .deferred
            .iter()
            .any(|d| matches!(d, Deferred::Rollback { .. }))
        {
            return;
        }
        let e = match sel::expectation(&self.conn, version) {
            Ok(Some(e)) if e.rolled_back_at.is_none() => e,
            Ok(_) => return,
            Err(err) => {
                tracing::error!("expectation of v{version}: {err}");
                return;
            }
        };
        let p = self.trader.engine.portfolio();
        let equity = p.equity();
        let trades = p.closed_trades().len() as i64;
        let (Some(since), Some(base), Some(base_trades)) =
            (e.baseline_ts, e.baseline_equity, e.baseline_trades)
        else {
            if let Err(err) = sel::set_baseline(&self.conn, version, self.clock, equity, trades) {
                tracing::error!("expectation of v{version}: {err}");
            }
            return;
        };
        let peak = e.peak_equity.unwrap_or(base).max(equity);
        if Some(peak) != e.peak_equity {
            let _ = sel::set_peak(&self.conn, version, peak);
        }
        let pct = |a: Decimal, b: Decimal| {
            trading_core::money::pct(a, b)
                .map(trading_core::money::to_f64)
                .unwrap_or(0.0)
        };
        let live = schedule::Live {
            days: (self.clock - since) as f64 / 86_400.0,
            trades: (trades - base_trades).max(0) as u64,
            return_pct: pct(equity - base, base),
            max_drawdown_pct: pct(peak - equity, peak),
        };
        let expected = schedule::Expected {
            return_pct_per_day: e.return_pct_per_day,
            max_drawdown_pct: e.max_drawdown_pct,
        };
        let o = &self.settings.orchestrator;
        let Some(why) = schedule::check_rollback(
            &expected,
            &live,
            o.rollback_underperform_pct,
            o.rollback_min_days,
            o.rollback_min_trades,
        ) else {
            return;
        };
        let reason = match &why {
            schedule::RollbackReason::TrailsBacktest {
                expected_pct,
                live_pct,
                allowed_pct,
            } => format!(
                "v{version} returned {live_pct:.2}% in {:.1} days ({} trades) against the {expected_pct:.2}% it was expected to, more than {allowed_pct} points short",
                live.days, live.trades
            ),
            schedule::RollbackReason::DeeperDrawdown {
                expected_pct,
                live_pct,
                allowed_pct,
            } => format!(
                "v{version} drew down {live_pct:.2}% against the {expected_pct:.2}% expected, more than {allowed_pct} points deeper"
            ),
        };
        self.event(
            None,
            Payload::AutoRollback(ev::AutoRollback {
                version,
                reason: why,
                live,
                expected,
                message: reason.clone(),
            }),
        );
        self.deferred.push(Deferred::Rollback { version, reason });
    }

    /// Carries out the swaps decided during the bar (after its commit).
    pub(super) fn run_deferred(&mut self) {
        for d in std::mem::take(&mut self.deferred) {
            match d {
                Deferred::Promote { shadow_id, detail } => self.promote(shadow_id, detail),
                Deferred::Rollback { version, reason } => {
                    let r = host_control::prepare_archived(
                        &self.runtime,
                        &self.paths,
                        &self.settings.symbols,
                        &self.risk,
                        host_control::Archived::Previous,
                    )
                    .and_then(|p| self.swap(p));
                    let at = self.clock;
                    let _ = sel::mark_rolled_back(&self.conn, version, at, &reason);
                    match r {
                        Ok(o) => {
                            let _ = archive::set_status(
                                &self.conn,
                                version,
                                "rolled_back",
                                Some(&reason),
                            );
                            self.alert(format!("automatic rollback to v{}: {reason}", o.version));
                        }
                        Err(e) => self.alert(format!(
                            "automatic rollback of v{version} failed ({e}): {reason}"
                        )),
                    }
                }
            }
        }
    }

    fn promote(&mut self, id: i64, detail: String) {
        let row = match sel::shadow(&self.conn, id) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("shadow {id}: {e}");
                return;
            }
        };
        let prepared = prepare(
            &self.runtime,
            row.wasm.clone(),
            &self.risk,
            &self.settings.symbols,
            row.params.clone(),
            &row.origin,
        )
        .map_err(|e| e.to_string())
        .and_then(|mut p| {
            p.code = Some(row.source.clone());
            self.swap(p)
        });
        match prepared {
            Ok(o) => {
                let c = row.candidate_return_pct.unwrap_or(0.0);
                let per_day = c / row.shadow_days.max(f64::MIN_POSITIVE);
                let dd = row.candidate_max_drawdown_pct.unwrap_or(0.0);
                let r = sel::decide_shadow(
                    &self.conn,
                    id,
                    self.clock,
                    ShadowState::Promoted,
                    Some(o.version),
                    &detail,
                )
                .and_then(|_| {
                    sel::expect(
                        &self.conn,
                        o.version,
                        self.clock,
                        "backtest+shadow",
                        row.expected_return_pct_per_day.min(per_day),
                        row.expected_max_drawdown_pct.max(dd),
                    )
                });
                if let Err(e) = r {
                    tracing::error!("shadow {id}: {e}");
                }
                self.event(
                    None,
                    Payload::ShadowPromoted(ev::ShadowPromoted {
                        shadow_id: id,
                        version: o.version,
                        detail: detail.clone(),
                    }),
                );
            }
            Err(e) => {
                let _ =
                    sel::decide_shadow(&self.conn, id, self.clock, ShadowState::Refused, None, &e);
                self.alert(format!("shadow candidate #{id} could not be promoted: {e}"));
            }
        }
    }

    /// The shadows as `status` shows them.
    pub(super) fn shadow_status(&self) -> Vec<host_control::ShadowStatus> {
        self.shadows
            .iter()
            .map(|s| host_control::ShadowStatus {
                id: s.row.id,
                run_id: s.row.run_id.clone(),
                origin: s.row.origin.clone(),
                started_at: s.row.started_at.unwrap_or_default(),
                until: s.until,
                candidate_return_pct: s.candidate.return_pct(),
                incumbent_return_pct: s.reference.as_ref().and_then(|r| r.return_pct()),
                candidate_max_drawdown_pct: s.candidate.max_drawdown_pct(),
                signals: s.signals,
            })
            .collect()
    }
}
