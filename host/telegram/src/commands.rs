//! The bot's commands: each takes the text after the command and answers
//! with an HTML message built from the host's status and database. Steering
//! commands (halt, resume, kill, deploy, rollback, orchestrate) go through
//! the same [`HostHandle`] calls as the API and the control socket. Who may
//! give a steering command is decided before (`crate::access`); the kill
//! confirmation is per user and expires on the injected clock ([`Session`]).

use super::format::{esc, time};
use host_control::handle::{HandleError, HostHandle};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use trading_core::clock::Clock;

/// Every command with its usage and one line of help: `/help` and
/// `setMyCommands` are both built from this list.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("status", "", "mode, strategy, equity, P&L, halts"),
    ("positions", "", "open positions"),
    ("trades", "[n]", "the last n closed trades (10)"),
    ("count", "", "open positions and orders against the limit"),
    ("profit", "", "P&L, win rate, expectancy"),
    ("balance", "", "cash and equity"),
    ("daily", "[n]", "daily P&L for the last n days (7)"),
    ("weekly", "[n]", "weekly P&L for the last n weeks (8)"),
    ("monthly", "[n]", "monthly P&L for the last n months (6)"),
    ("performance", "", "results per symbol"),
    (
        "karma",
        "",
        "scorecard: hit rate, P&L and confidence calibration",
    ),
    (
        "shadow",
        "",
        "refused entries followed to their would-be exits",
    ),
    ("risk", "", "limits, halts, drawdown"),
    ("halt", "", "stop new entries (exits still run)"),
    ("stopentry", "", "the same as /halt"),
    ("pause", "<symbol>", "no new entries on one symbol"),
    (
        "resume",
        "[symbol]",
        "clear halts and the kill switch, or resume one symbol",
    ),
    ("forceexit", "<symbol>", "close one position at market"),
    ("kill", "", "close everything at market (asks to confirm)"),
    ("strategy", "", "active version and history"),
    ("deploy", "<version>", "re-activate an archived version"),
    ("rollback", "", "back to the previous version"),
    ("orchestrate", "", "trigger a review now"),
    ("report", "", "the last nightly report"),
    ("logs", "[n]", "the last n events (20)"),
    ("show_config", "", "the effective settings and risk limits"),
    ("health", "", "the scan loop, the data and the event chain"),
    ("version", "", "host and strategy versions"),
    ("help", "", "this list"),
];

/// The `/help` text, from [`COMMANDS`].
pub fn help() -> String {
    let mut m = String::from("<b>Commands</b>");
    for (cmd, usage, what) in COMMANDS {
        let usage = if usage.is_empty() {
            String::new()
        } else {
            format!(" {}", esc(usage))
        };
        m.push_str(&format!("\n/{cmd}{usage} – {}", esc(what)));
    }
    m
}

/// How long `/kill confirm` is accepted after `/kill`.
pub const KILL_CONFIRM_WINDOW: Duration = Duration::from_secs(60);

/// The commands that steer the host (everything else only reads).
pub const STEERING: &[&str] = &[
    "halt",
    "stopentry",
    "pause",
    "resume",
    "forceexit",
    "kill",
    "deploy",
    "rollback",
    "orchestrate",
];

/// Whether `cmd` (as [`parse`] gives it) steers the host.
pub fn is_steering(cmd: &str) -> bool {
    STEERING.contains(&cmd)
}

/// What a `/kill` or `/kill confirm` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillStep {
    /// Ask this user to confirm (their earlier ask, if any, starts again).
    Ask,
    /// This user confirmed their own ask within the window: go ahead.
    Confirmed,
}

/// The chat's state: each user's pending kill confirmation, on the injected clock.
#[derive(Debug)]
pub struct Session {
    clock: Arc<dyn Clock>,
    /// User id → when they sent `/kill` (clock microseconds).
    kill_asked: HashMap<i64, i64>,
}

impl Session {
    pub fn new(clock: Arc<dyn Clock>) -> Session {
        Session {
            clock,
            kill_asked: HashMap::new(),
        }
    }

    fn window_micros() -> i64 {
        i64::try_from(KILL_CONFIRM_WINDOW.as_micros()).unwrap_or(i64::MAX)
    }

    /// `/kill` (args empty) or `/kill confirm` from `user`. Only the user
    /// who asked can confirm, and only within [`KILL_CONFIRM_WINDOW`]; a
    /// message without a user can never confirm.
    pub fn kill_step(&mut self, user: Option<i64>, args: &str) -> KillStep {
        let Some(user) = user else {
            return KillStep::Ask;
        };
        let now = self.clock.now_micros();
        let window = Self::window_micros();
        let fresh = |t: i64| (0..=window).contains(&now.saturating_sub(t));
        if args.eq_ignore_ascii_case("confirm")
            && self.kill_asked.get(&user).copied().is_some_and(fresh)
        {
            self.kill_asked.remove(&user);
            return KillStep::Confirmed;
        }
        self.kill_asked.retain(|_, t| fresh(*t));
        self.kill_asked.insert(user, now);
        KillStep::Ask
    }

    /// Any other command from `user` withdraws their pending kill.
    pub fn other_command(&mut self, user: Option<i64>) {
        if let Some(u) = user {
            self.kill_asked.remove(&u);
        }
    }
}

async fn on_host<T: Send + 'static>(
    h: &HostHandle,
    f: impl FnOnce(&HostHandle) -> T + Send + 'static,
) -> Result<T, String> {
    let h = h.clone();
    tokio::task::spawn_blocking(move || f(&h))
        .await
        .map_err(|e| format!("worker failed: {e}"))
}

fn refused(e: HandleError) -> String {
    format!("⚠️ {}", esc(&e.to_string()))
}

fn money(d: Decimal) -> String {
    esc(&d.round_dp(2).to_string())
}

fn count(arg: &str, default: i64, max: i64) -> Result<i64, String> {
    match arg.trim() {
        "" => Ok(default),
        a => match a.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!("⚠️ {} is not a number between 1 and {max}", esc(a))),
        },
    }
}

/// Splits `/cmd@bot args` into (`cmd`, `args`); None for plain text.
pub fn parse(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let (head, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let cmd = head.split('@').next().unwrap_or("").to_ascii_lowercase();
    (!cmd.is_empty()).then(|| (cmd, args.trim().to_string()))
}

/// Answers one command from `user` (Some when they may steer; the caller
/// never passes a steering command without one).
pub async fn answer(
    h: &HostHandle,
    session: &mut Session,
    user: Option<i64>,
    cmd: &str,
    args: &str,
) -> String {
    match run(h, session, user, cmd, args).await {
        Ok(s) | Err(s) => s,
    }
}

async fn run(
    h: &HostHandle,
    session: &mut Session,
    user: Option<i64>,
    cmd: &str,
    args: &str,
) -> Result<String, String> {
    if cmd != "kill" {
        session.other_command(user);
    }
    match cmd {
        "start" | "help" => Ok(help()),
        "status" => {
            let st = on_host(h, |h| h.status()).await?.map_err(refused)?;
            let strategy = match &st.strategy {
                Some(s) => format!(
                    "v{} <code>{}</code>",
                    s.version,
                    esc(&s.hash.chars().take(12).collect::<String>())
                ),
                None => "none".into(),
            };
            let mut m = format!(
                "<b>Status</b> ({:?} mode)\nStrategy: {strategy}{}\nEquity: {} (cash {})\nP&amp;L: {} total, {} today\nPositions: {}, open orders: {}\nScans: {}, clock {}",
                st.mode,
                st.paused.as_ref().map(|p| format!(" — <b>paused</b>: {}", esc(p))).unwrap_or_default(),
                money(st.equity),
                money(st.cash),
                money(st.total_pnl),
                money(st.daily_pnl),
                st.positions.len(),
                st.open_orders,
                st.scan_seq,
                time(st.clock),
            );
            if let Some(halt) = &st.halt {
                m.push_str(&format!("\n⛔ <b>Halted</b>: {}", esc(halt)));
            }
            if st.killed {
                m.push_str("\n☠️ <b>Kill switch engaged</b>");
            }
            for sh in &st.shadows {
                let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}%"));
                m.push_str(&format!(
                    "\n🕶 <b>In shadow</b> #{} until {}: {} beside the incumbent's {} ({} signals, none sent)",
                    sh.id,
                    time(sh.until),
                    pct(sh.candidate_return_pct),
                    pct(sh.incumbent_return_pct),
                    sh.signals
                ));
            }
            Ok(m)
        }
        "positions" => {
            let st = on_host(h, |h| h.status()).await?.map_err(refused)?;
            if st.positions.is_empty() {
                return Ok("No open positions.".into());
            }
            let mut m = String::from("<b>Open positions</b>");
            for p in &st.positions {
                m.push_str(&format!(
                    "\n{} {} @ {} → {} (P&amp;L {}){}{}",
                    esc(&p.symbol),
                    esc(&p.qty.to_string()),
                    money(p.avg_entry),
                    p.mark.map(money).unwrap_or_else(|| "-".into()),
                    money(p.unrealized_pnl),
                    p.stop_loss
                        .map(|s| format!(" SL {}", money(s)))
                        .unwrap_or_default(),
                    p.take_profit
                        .map(|s| format!(" TP {}", money(s)))
                        .unwrap_or_default(),
                ));
            }
            Ok(m)
        }
        "trades" => {
            let n = count(args, 10, 500)?;
            let rows = on_host(h, move |h| {
                h.read_db()
                    .and_then(|c| host_store::queries::recent_trades(&c, None, n, 0))
            })
            .await?
            .map_err(|e| format!("⚠️ database: {}", esc(&e.to_string())))?;
            if rows.0.is_empty() {
                return Ok("No closed trades yet.".into());
            }
            let mut m = format!("<b>Last {} of {} trades</b>", rows.0.len(), rows.1);
            for t in &rows.0 {
                m.push_str(&format!(
                    "\n#{} {} {} {} → {}: {} ({:.2}%) {}",
                    t["id"],
                    time(t["closed_at"].as_i64().unwrap_or(0)),
                    esc(t["symbol"].as_str().unwrap_or("")),
                    esc(t["entry_price"].as_str().unwrap_or("")),
                    esc(t["exit_price"].as_str().unwrap_or("")),
                    esc(t["pnl"].as_str().unwrap_or("")),
                    t["pnl_pct"].as_f64().unwrap_or(0.0),
                    esc(t["close_reason"].as_str().unwrap_or("")),
                ));
            }
            Ok(m)
        }
        "profit" | "performance" | "daily" | "balance" | "risk" => report(h, cmd, args).await,
        "weekly" | "monthly" | "count" | "show_config" | "health" | "version" | "karma"
        | "shadow" => more(h, cmd, args).await,
        "halt" | "stopentry" => {
            let newly = on_host(h, |h| h.halt("telegram")).await?.map_err(refused)?;
            Ok(if newly {
                "⏸ Halted: no new entries; exits still run. /resume to continue."
            } else {
                "Already halted."
            }
            .into())
        }
        "pause" | "resume" if !args.is_empty() => {
            let symbol = args.trim().to_ascii_uppercase();
            let pause = cmd == "pause";
            let s = symbol.clone();
            let changed = on_host(h, move |h| h.toggle_symbol(&s, pause, "telegram"))
                .await?
                .map_err(refused)?;
            Ok(match (pause, changed) {
                (true, true) => format!(
                    "⏸ {}: no new entries; exits still run. /resume {} to allow them.",
                    esc(&symbol),
                    esc(&symbol)
                ),
                (true, false) => format!("{} was paused already.", esc(&symbol)),
                (false, true) => format!("▶️ {}: entries allowed again.", esc(&symbol)),
                (false, false) => format!("{} was not paused.", esc(&symbol)),
            })
        }
        "pause" => Err("Usage: <code>/pause &lt;symbol&gt;</code>, e.g. /pause BTCUSD".into()),
        "forceexit" => {
            let symbol = args.trim().to_ascii_uppercase();
            if symbol.is_empty() {
                return Err(
                    "Usage: <code>/forceexit &lt;symbol&gt;</code>, e.g. /forceexit BTCUSD".into(),
                );
            }
            let s = symbol.clone();
            let qty = on_host(h, move |h| h.force_exit(&s, "telegram"))
                .await?
                .map_err(refused)?;
            Ok(match qty {
                Some(q) => format!(
                    "🚪 {}: closing {} at market on the next bar.",
                    esc(&symbol),
                    esc(&q.to_string())
                ),
                None => format!("{}: no open position.", esc(&symbol)),
            })
        }
        "resume" => {
            let cleared = on_host(h, |h| h.resume("telegram"))
                .await?
                .map_err(refused)?;
            Ok(if cleared {
                "▶️ Resumed."
            } else {
                "Nothing to resume: not halted."
            }
            .into())
        }
        "kill" => {
            if session.kill_step(user, args) == KillStep::Ask {
                return Ok(format!("☠️ The kill switch cancels every order and closes every position at market.\nSend <code>/kill confirm</code> yourself within {} s to go ahead.", KILL_CONFIRM_WINDOW.as_secs()));
            }
            let o = on_host(h, |h| h.kill("telegram")).await?.map_err(refused)?;
            Ok(format!(
                "☠️ Kill switch engaged: {} orders cancelled, closing {}. /resume clears it.",
                o.cancelled_orders,
                esc(&o.closing.join(", "))
            ))
        }
        "strategy" => {
            let (st, versions) = on_host(h, |h| {
                let st = h.status().map_err(refused)?;
                let v = h
                    .read_db()
                    .and_then(|c| host_store::queries::versions(&c))
                    .map_err(|e| format!("⚠️ database: {}", esc(&e.to_string())))?;
                Ok::<_, String>((st, v))
            })
            .await??;
            let mut m = match &st.strategy {
                Some(s) => format!(
                    "<b>Active</b>: v{} <code>{}</code>, every {} min, {} failures",
                    s.version,
                    esc(&s.hash.chars().take(12).collect::<String>()),
                    s.scan_minutes,
                    s.failures
                ),
                None => "<b>No active strategy</b>".into(),
            };
            if let Some(p) = &st.paused {
                m.push_str(&format!("\n⏸ paused: {}", esc(p)));
            }
            m.push_str("\n<b>History</b>");
            for v in versions.iter().take(15) {
                m.push_str(&format!(
                    "\nv{} {} {} — {}",
                    v["version"],
                    esc(v["status"].as_str().unwrap_or("")),
                    esc(v["created_at"].as_str().unwrap_or("")),
                    esc(v["origin"].as_str().unwrap_or("")),
                ));
            }
            Ok(m)
        }
        "deploy" => {
            let v: i64 = args
                .trim()
                .trim_start_matches('v')
                .parse()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| {
                    "Usage: <code>/deploy &lt;version&gt;</code>, e.g. /deploy 3 (see /strategy)"
                        .to_string()
                })?;
            let o = on_host(h, move |h| h.deploy_version(v))
                .await?
                .map_err(refused)?;
            Ok(format!(
                "🚀 v{} serving from scan {} (was {}).",
                o.version,
                o.first_scan,
                o.previous
                    .map(|p| format!("v{p}"))
                    .unwrap_or_else(|| "none".into())
            ))
        }
        "rollback" => {
            let o = on_host(h, |h| h.rollback()).await?.map_err(refused)?;
            Ok(format!(
                "↩️ Rolled back to v{} (was {}), serving from scan {}.",
                o.version,
                o.previous
                    .map(|p| format!("v{p}"))
                    .unwrap_or_else(|| "none".into()),
                o.first_scan
            ))
        }
        "orchestrate" => {
            let reason = if args.is_empty() {
                "manual review from Telegram".to_string()
            } else {
                args.to_string()
            };
            let seq = on_host(h, move |h| h.trigger_review("telegram", &reason))
                .await?
                .map_err(refused)?;
            Ok(format!(
                "🤖 Review requested{}; the orchestrator picks it up on its next cycle.",
                seq.map(|s| format!(" (event #{s})")).unwrap_or_default()
            ))
        }
        "report" => {
            let v = on_host(h, |h| {
                h.read_db()
                    .and_then(|c| host_store::queries::ai_decisions_json(&c, 1))
            })
            .await?
            .map_err(|e| format!("⚠️ database: {}", esc(&e.to_string())))?;
            let Some(run) = v["runs"].get(0) else {
                return Ok("No nightly report yet.".into());
            };
            let report = run["report"].as_str().unwrap_or("");
            let report = match serde_json::from_str::<Value>(report) {
                Ok(j) => serde_json::to_string_pretty(&j).unwrap_or_default(),
                Err(_) => report.to_string(),
            };
            Ok(format!(
                "<b>Report {}</b> {} ({})\nDecision: {} → {}{}\n{}",
                esc(run["run_id"].as_str().unwrap_or("")),
                time(run["ts"].as_i64().unwrap_or(0)),
                esc(run["trigger"].as_str().unwrap_or("")),
                esc(run["decision"].as_str().unwrap_or("")),
                esc(run["outcome"].as_str().unwrap_or("")),
                run["rejection"]
                    .as_str()
                    .map(|r| format!(" ({})", esc(r)))
                    .unwrap_or_default(),
                esc(&report)
            ))
        }
        "logs" => {
            let n = count(args, 20, 1000)?;
            let f = host_store::queries::EventFilter::default();
            let evs = on_host(h, move |h| {
                h.read_db()
                    .and_then(|c| host_store::queries::query_events(&c, &f, n))
            })
            .await?
            .map_err(|e| format!("⚠️ database: {}", esc(&e.to_string())))?;
            if evs.is_empty() {
                return Ok("The event log is empty.".into());
            }
            let mut m = format!("<b>Last {} events</b>", evs.len());
            for e in &evs {
                let mut d = e.payload.detail_json().unwrap_or_default();
                if d.chars().count() > 160 {
                    d = d.chars().take(157).collect::<String>() + "...";
                }
                m.push_str(&format!(
                    "\n#{} {} <b>{}</b> {} {}",
                    e.seq,
                    time(e.ts),
                    esc(e.kind_name()),
                    esc(e.symbol.as_deref().unwrap_or("")),
                    esc(&d)
                ));
            }
            Ok(m)
        }
        other => Ok(format!("Unknown command /{}. Try /help.", esc(other))),
    }
}

fn db(e: &dyn std::fmt::Display) -> String {
    format!("⚠️ database: {}", esc(&e.to_string()))
}

/// The reports of [`crate::reports`], and count, config, health and version.
async fn more(h: &HostHandle, cmd: &str, args: &str) -> Result<String, String> {
    use crate::reports::{self, Period};
    let n = match cmd {
        "weekly" => count(args, 8, 520)?,
        "monthly" => count(args, 6, 240)?,
        _ => 0,
    } as usize;
    let cmd = cmd.to_string();
    on_host(h, move |h| {
        let st = h.status().map_err(refused)?;
        let c = h.read_db().map_err(|e| db(&e))?;
        let mode = format!("{:?}", st.mode).to_lowercase();
        match cmd.as_str() {
            "weekly" | "monthly" => {
                let p = if cmd == "weekly" { Period::Week } else { Period::Month };
                let curve = host_store::truth_db::equity_curve(&c).map_err(|e| db(&e))?;
                let days: Vec<(String, Decimal)> = curve.into_iter().map(|(d, p, _)| (d, p.value)).collect();
                let rows = reports::by_period(&days, st.starting_capital, p).map_err(|e| format!("⚠️ {}", esc(&e)))?;
                Ok(format!("{}\nToday so far: {}", reports::period_text(&rows, n, p), money(st.daily_pnl)))
            }
            "count" => Ok(format!(
                "<b>Count</b>\nOpen positions: {} of {} allowed\nOpen orders: {}\nPaused symbols: {}",
                st.positions.len(),
                st.limits.max_open_positions,
                st.open_orders,
                if st.paused_symbols.is_empty() { "none".to_string() } else { esc(&st.paused_symbols.join(", ")) }
            )),
            "show_config" => {
                use host_store::payloads::ConfigFile;
                let settings = host_store::config_log::current(&c, ConfigFile::Settings).map_err(|e| db(&e))?;
                let pretty = |t: Option<String>| -> String {
                    t.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .and_then(|v| serde_json::to_string_pretty(&v).ok())
                        .unwrap_or_else(|| "(not recorded yet)".into())
                };
                let limits = serde_json::to_string_pretty(&st.limits).map_err(|e| format!("⚠️ {}", esc(&e.to_string())))?;
                Ok(format!(
                    "<b>Configuration</b> ({} mode, symbols {})\n<b>Risk limits</b> (the user's file, read-only)\n<pre>{}</pre>\n<b>Settings</b>\n<pre>{}</pre>",
                    esc(&mode),
                    esc(&h.symbols().join(", ")),
                    esc(&limits),
                    esc(&pretty(settings))
                ))
            }
            "health" => {
                let chain = host_store::events::verify(&c);
                let last_beat: Option<i64> = c
                    .query_row(
                        "SELECT MAX(ts) FROM events WHERE kind = ?1",
                        [host_store::events::EventKind::Heartbeat.as_str()],
                        |r| r.get(0),
                    )
                    .map_err(|e| db(&e))?;
                Ok(format!(
                    "<b>Health</b>\nRunning: {}\nLast scan: {} (scan {})\nClock: {}\nStrategy: {}\nEntries: {}\nLast heartbeat: {}\nEvent chain: {}",
                    if st.running { "yes" } else { "no" },
                    st.last_scan_ts.map(time).unwrap_or_else(|| "none yet".into()),
                    st.scan_seq,
                    time(st.clock),
                    match (&st.strategy, &st.paused) {
                        (_, Some(p)) => format!("paused: {}", esc(p)),
                        (Some(s), None) => format!("v{}, {} failures in a row", s.version, s.failures),
                        (None, None) => "none".into(),
                    },
                    match (&st.halt, st.killed) {
                        (_, true) => "kill switch engaged".to_string(),
                        (Some(hl), false) => format!("halted: {}", esc(hl)),
                        (None, false) => "allowed".into(),
                    },
                    last_beat.map(time).unwrap_or_else(|| "none yet".into()),
                    match chain {
                        Ok(n) => format!("{n} events verified"),
                        Err(e) => format!("⚠️ {}", esc(&e.to_string())),
                    }
                ))
            }
            "version" => Ok(format!(
                "<b>Version</b>\nHost: {}\nStrategy: {}",
                env!("CARGO_PKG_VERSION"),
                st.strategy
                    .as_ref()
                    .map(|s| format!("v{} <code>{}</code>", s.version, esc(&s.hash.chars().take(12).collect::<String>())))
                    .unwrap_or_else(|| "none".into())
            )),
            "karma" => {
                let card = host_store::queries::scorecard(&c, &mode).map_err(|e| db(&e))?;
                Ok(reports::karma_text(&card))
            }
            _ => {
                let r = host_store::shadow_db::report(&c, &mode).map_err(|e| db(&e))?;
                let recent = host_store::shadow_db::rows(&c, &mode, 5).map_err(|e| db(&e))?;
                Ok(reports::shadow_text(&r, &recent))
            }
        }
    })
    .await?
}

/// The account reports: profit, performance, daily, balance, risk.
async fn report(h: &HostHandle, cmd: &str, args: &str) -> Result<String, String> {
    let days = if cmd == "daily" {
        count(args, 7, 365)?
    } else {
        0
    };
    let cmd = cmd.to_string();
    on_host(h, move |h| {
        let st = h.status().map_err(refused)?;
        let c = h.read_db().map_err(|e| format!("⚠️ database: {}", esc(&e.to_string())))?;
        let dberr = |e: &dyn std::fmt::Display| format!("⚠️ {}", esc(&e.to_string()));
        match cmd.as_str() {
            "balance" => {
                let held: Decimal = st.positions.iter().map(|p| p.value).sum();
                Ok(format!(
                    "<b>Balance</b>\nCash: {}\nPositions: {}\nEquity: {}\nStarting capital: {}",
                    money(st.cash),
                    money(held),
                    money(st.equity),
                    money(st.starting_capital)
                ))
            }
            "profit" => {
                let cur = host_store::truth_db::Current { ts: st.clock, value: st.equity, cash: st.cash };
                let t = host_store::truth_db::truth_from_db(&c, Some(cur), st.positions.first().map(|p| p.symbol.as_str()))
                    .map_err(|e| dberr(&e))?;
                let pct = |x: Option<f64>| x.map(|v| format!("{v:.1}%")).unwrap_or_else(|| "-".into());
                Ok(format!(
                    "<b>Profit</b>\nTotal: {} (realized {}, unrealized {})\nToday: {}\nFees: {}\nTrades: {} ({} won, {} lost), win rate {}\nExpectancy: {}\nMax drawdown: {}\nSharpe: {}",
                    money(st.total_pnl),
                    money(st.realized_pnl),
                    money(st.unrealized_pnl),
                    money(st.daily_pnl),
                    money(st.fees_paid),
                    t.trade_count,
                    t.win_count,
                    t.loss_count,
                    pct(t.win_rate.map(|w| w * 100.0)),
                    t.expectancy.map(money).unwrap_or_else(|| "-".into()),
                    pct(t.max_drawdown_pct),
                    t.sharpe_ratio.map(|s| format!("{s:.2}")).unwrap_or_else(|| "-".into()),
                ))
            }
            "daily" => {
                let curve = host_store::truth_db::equity_curve(&c).map_err(|e| dberr(&e))?;
                if curve.is_empty() {
                    return Ok(format!("No daily snapshots yet. Today: {}", money(st.daily_pnl)));
                }
                let mut prev = st.starting_capital;
                let mut lines = Vec::new();
                for (day, p, _) in &curve {
                    lines.push(format!("{} {} ({})", esc(day), money(p.value), money(p.value - prev)));
                    prev = p.value;
                }
                let skip = lines.len().saturating_sub(days as usize);
                Ok(format!("<b>Daily equity (P&amp;L)</b>\n{}\nToday so far: {}", lines[skip..].join("\n"), money(st.daily_pnl)))
            }
            "performance" => {
                let mut stmt = c.prepare("SELECT symbol, pnl FROM trades").map_err(|e| dberr(&e))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                    .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(|e| dberr(&e))?;
                let mut m: std::collections::BTreeMap<String, (u32, u32, Decimal)> = Default::default();
                for (s, p) in rows {
                    let p = host_store::db::decimal(&p).map_err(|e| dberr(&e))?;
                    let e = m.entry(s).or_default();
                    e.0 += 1;
                    e.1 += u32::from(p > Decimal::ZERO);
                    e.2 += p;
                }
                if m.is_empty() {
                    return Ok("No closed trades yet.".into());
                }
                let mut out = String::from("<b>Performance per symbol</b>");
                for (s, (n, w, p)) in m {
                    out.push_str(&format!("\n{}: {} trades, {} won, P&amp;L {}", esc(&s), n, w, money(p)));
                }
                Ok(out)
            }
            _ => {
                let l = &st.limits;
                Ok(format!(
                    "<b>Risk</b>\nHalt: {}\nKill switch: {}\nDrawdown: {}% (max {}%)\nToday: {} (max loss {}%)\nPositions: {} (max {})\nTrade size: {}% (max {}%)\nMax consecutive losses: {}",
                    st.halt.as_deref().map(esc).unwrap_or_else(|| "none".into()),
                    if st.killed { "engaged" } else { "off" },
                    money(st.drawdown_pct),
                    l.max_drawdown_pct,
                    money(st.daily_pnl),
                    l.max_daily_loss_pct,
                    st.positions.len(),
                    l.max_open_positions,
                    l.default_trade_pct,
                    l.max_trade_pct,
                    l.max_consecutive_losses,
                ))
            }
        }
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!(parse("/status"), Some(("status".into(), "".into())));
        assert_eq!(
            parse("/Trades@my_bot  5 "),
            Some(("trades".into(), "5".into()))
        );
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("/"), None);
        assert_eq!(count("", 10, 50), Ok(10));
        assert_eq!(count("7", 10, 50), Ok(7));
        assert!(count("0", 10, 50).is_err() && count("x<", 10, 50).unwrap_err().contains("x&lt;"));
    }
}
