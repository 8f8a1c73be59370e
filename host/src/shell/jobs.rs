//! Jobs on the injected clock: candle tiering, the daily jobs, the
//! orchestrator's reviews (triggers evaluated here, the cycle on its own thread,
//! deployed through the [`Deployer`](host_control::Deployer) it is given) and,
//! every tick, the forward shadows and the rollback rule (`shadow`).

use super::*;

/// The orchestrator as the scheduler runs it: triggers evaluated on the
/// injected clock, at most one cycle at a time, on its own thread (it deploys
/// through the [`Deployer`](host_control::Deployer) it is given, the host's
/// own handle, so the swap lands between two scans).
pub struct Reviews {
    pub repo_root: PathBuf,
    deployer: std::sync::Arc<dyn host_control::Deployer>,
    pub proposer: host_orchestrator::ProposerChoice,
    pub(super) state: host_orchestrator::schedule::TriggerState,
    running: Option<std::thread::JoinHandle<()>>,
    seed: u64,
}

impl Reviews {
    /// When a review last started (any trigger), Unix seconds.
    pub fn last_cycle_at(&self) -> Option<i64> {
        self.state.last_fired.values().max().map(|t| t.timestamp())
    }

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
                consecutive_wins: 0,
                closed_trades: 0,
                trades_at_last_review: 0,
                atr: Default::default(),
                manual_requested: false,
                last_fired: Default::default(),
                last_nightly: None,
                open_episodes: Default::default(),
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

impl Shell {
    /// The daily data job: finer candles aggregated into coarser ones, old ones pruned.
    pub(super) fn tier_candles(&mut self) {
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
        self.tiering_if_due();
        self.review_if_due();
        self.shadow_jobs();
        if self.clock >= self.next_scan_at {
            if self.awaiting_bars(self.clock) {
                return false;
            }
            return self.scan(self.clock);
        }
        false
    }

    /// Seed 003's nightly data job, in every mode: once per New York date,
    /// when the clock is inside the orchestration window, the candle tiers
    /// are rebuilt and pruned (after the bar's commit).
    fn tiering_if_due(&mut self) {
        let o = &self.settings.orchestrator;
        let (Some(start), Some(end)) = (
            host_orchestrator::schedule::parse_hhmm(&o.window_start),
            host_orchestrator::schedule::parse_hhmm(&o.window_end),
        ) else {
            return;
        };
        let Some(now) = chrono::DateTime::from_timestamp(self.clock, 0) else {
            return;
        };
        let today = host_orchestrator::schedule::new_york(now).date();
        if host_orchestrator::schedule::in_window(now, start, end) && self.tiered_on != Some(today)
        {
            self.tiered_on = Some(today);
            self.tiering_due = true;
        }
    }

    /// Whether the scan due at `now` waits for bars: a scan at close `t`
    /// runs once every symbol that is not stale has its candle closing at
    /// `t` (the backtest's order: all bars of a close, then the scan), or
    /// once `[safety] bar_grace_secs` have passed since `t`; then the symbols
    /// still missing are recorded (`bars_missing`) and no entry is opened on
    /// them this scan.
    pub(super) fn awaiting_bars(&mut self, now: i64) -> bool {
        let Some(active) = self.active.as_ref() else {
            return false;
        };
        let step = i64::from(active.driver.scan_minutes().max(1)) * 60;
        let close = now.div_euclid(step) * step;
        let stale = self.stale_symbols(now);
        let missing: Vec<String> = self
            .settings
            .symbols
            .iter()
            .filter(|s| !stale.contains(s))
            .filter(|s| self.newest_close(s).is_none_or(|t| t < close))
            .cloned()
            .collect();
        if missing.is_empty() {
            self.missing.clear();
            return false;
        }
        if now - close < i64::from(self.settings.safety.bar_grace_secs) {
            return true;
        }
        if self.missing != missing {
            self.event(
                None,
                Payload::BarsMissing(ev::BarsMissing {
                    symbols: missing.clone(),
                    close,
                    at: now,
                }),
            );
        }
        self.missing = missing;
        false
    }

    /// When the newest candle of `symbol` (any interval) closed.
    pub(super) fn newest_close(&self, symbol: &str) -> Option<i64> {
        Interval::ALL
            .iter()
            .filter_map(|i| self.data.series(symbol, *i).last().map(|c| c.ts + i.secs()))
            .max()
    }

    /// The daily P&L snapshot and fee-schedule refresh; with a live feed,
    /// candle tiering runs after the bar commits (a replay keeps its history whole).
    pub(super) fn daily_jobs(&mut self) {
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
    pub(super) fn review_if_due(&mut self) {
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
        r.state.consecutive_wins = p
            .closed_trades()
            .iter()
            .rev()
            .take_while(|t| t.pnl > rust_decimal::Decimal::ZERO)
            .count() as u32;
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
        // once per episode: a streak that lasts all day starts one cycle
        let due = host_orchestrator::schedule::fire(&mut r.state, now);
        let Some(first) = due.first().cloned() else {
            return;
        };
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
            trigger: first.kind.as_str().to_string(),
            now,
            api_key: None,
        };
        let detail = ev::ReviewStarted {
            kind: format!("{:?}", first.kind),
            detail: first.detail.clone(),
            due: due.len(),
        };
        r.running = Some(std::thread::spawn(
            move || match host_orchestrator::run_cycle(&opts) {
                Ok(report) => tracing::info!("review: {}", report.headline()),
                Err(e) => tracing::error!("review failed: {e}"),
            },
        ));
        self.event(None, Payload::ReviewStarted(detail));
    }
}
