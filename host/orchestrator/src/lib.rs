//! The nightly orchestrator: the host's own candles (a development part and
//! a held-out window) → truth benchmarks → both analysis reports → labelled
//! context (with the generated API reference, an example strategy, the
//! analysis sources and the memory of past attempts) → zero or more
//! decisions (Claude, or the offline proposer): each analysis module and the
//! strategy separately, each through source check → compile → screens
//! (contract, fuzz, lookahead, startup) → selection gate (walk-forward fitted
//! in sample and scored out of sample, significance, held-out window), with
//! failures fed back for repairs → review of what passed → forward shadow in
//! the running host (or, with `shadow_days = 0`, deploy with its parameters)
//! or a typed rejection → observations, the strategy document and a report in
//! the log, the database and a file.

pub mod checks;
pub mod claude;
pub mod compile;
pub mod conversation;
pub mod data;
mod develop;
pub mod evaluate;
pub mod gate;
pub mod proposer;
pub mod reference;
pub mod repair;
pub mod reply;
pub mod review;
pub mod schedule;
pub mod selection;
pub mod settings;
pub mod source_check;

pub use checks::{CheckConfig, CheckFigures, Rejection};
pub use conversation::ClaudeProposer;
pub use proposer::{DecisionKind, Proposal};
pub use reply::Decisions;
pub use settings::OrchestratorSettings;

use chrono::{DateTime, Utc};
use claude::{Claude, ClaudeConfig, ClaudeError};
use host_control::{Candidate, Deployer, Paths};
use host_sandbox::bindings::MetricValue;
use host_sandbox::Limits;
use host_sandbox::{open_read_only, Runtime};
use host_store::archive;
use host_trading::backtest::{self, BacktestConfig, Series};
use host_trading::risk_file::RiskFile;
use rusqlite::{params, Connection, OptionalExtension};
use rust_decimal::Decimal;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a cycle could not run at all (a rejected candidate is not an error).
#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings: {0}")]
    Config(String),
    #[error("no market data: {0}")]
    NoData(String),
    #[error("sandbox runtime: {0}")]
    Runtime(String),
    #[error("archive: {0}")]
    Archive(#[from] archive::ArchiveError),
    #[error("model: {0}")]
    Claude(#[from] ClaudeError),
    #[error("the incumbent cannot be backtested: {0}")]
    Incumbent(String),
    #[error("candle store: {0}")]
    Store(#[from] host_store::candles::CandleError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OrchestratorError + '_ {
    move |source| OrchestratorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which proposer writes the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProposerChoice {
    Offline,
    Claude,
}

/// What a cycle needs to know of the host's trading setup (the binary
/// fills it from its settings): the market the candidate is tested on and
/// the incumbent it is measured against.
#[derive(Debug, Clone, Serialize)]
pub struct Market {
    pub symbols: Vec<String>,
    pub starting_capital: Decimal,
    pub fee_bps: u32,
    pub slippage_bps: u32,
    pub sandbox: Limits,
    /// The shell's default strategy component (the incumbent before any deploy).
    pub default_strategy: Option<PathBuf>,
    pub strategy_params: Vec<(String, String)>,
}

/// Everything one cycle needs.
#[derive(Clone)]
pub struct CycleOptions {
    pub paths: Paths,
    pub market: Market,
    pub orchestrator: OrchestratorSettings,
    pub risk: RiskFile,
    /// Holds deploy/guest-env.sh, strategies/sdk and Cargo.lock.
    pub repo_root: PathBuf,
    pub proposer: ProposerChoice,
    pub seed: u64,
    pub trigger: String,
    pub now: DateTime<Utc>,
    /// Key for the Claude proposer; `None` reads ANTHROPIC_API_KEY.
    pub api_key: Option<String>,
    /// Gets an accepted candidate live.
    pub deployer: Arc<dyn Deployer>,
}

impl std::fmt::Debug for CycleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleOptions")
            .field("paths", &self.paths)
            .field("market", &self.market)
            .field("proposer", &self.proposer)
            .field("seed", &self.seed)
            .field("trigger", &self.trigger)
            .field("now", &self.now)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

/// How a cycle ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CycleOutcome {
    Deployed {
        version: i64,
        live: bool,
    },
    /// A new analysis module is active from the next cycle on.
    AnalysisUpdated {
        module: String,
        version: i64,
    },
    Rejected {
        rejection: Rejection,
    },
    /// Passed the gate; runs beside the incumbent in the running host for
    /// `days` before it is promoted or refused (`shadow_candidates` row `shadow_id`).
    Shadow {
        shadow_id: i64,
        days: f64,
    },
    NoChange {
        reason: String,
    },
}

/// The cycle's report (also stored in `orchestrator_runs` and written to a file).
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub run_id: String,
    pub started_at: String,
    pub trigger: String,
    pub proposer: ProposerChoice,
    pub decision: DecisionKind,
    pub template: String,
    pub params: Vec<(String, String)>,
    pub rationale: String,
    /// How sure the proposer was (0..1), when it said.
    pub confidence: Option<f64>,
    /// The archived version the candidate was measured against.
    pub incumbent_version: Option<i64>,
    pub outcome: CycleOutcome,
    pub figures: CheckFigures,
    /// Attempts the strategy candidate took (1 = no repair; 0 = none made).
    pub attempts: u32,
    /// Each analysis-module decision's outcome.
    pub analyses: Vec<CycleOutcome>,
    pub ground_truth: serde_json::Value,
    pub market_report: serde_json::Value,
    pub trade_report: serde_json::Value,
    /// (stage, seconds)
    pub timings: Vec<(String, f64)>,
    pub report_path: PathBuf,
    pub candidate_dir: PathBuf,
    /// The bandit's draws (kind requested, every arm's posterior) and what was answered.
    pub bandit: Vec<repair::BanditDraw>,
}

impl CycleReport {
    /// One line for the log.
    pub fn headline(&self) -> String {
        let outcome = match &self.outcome {
            CycleOutcome::Deployed { version, live } => format!(
                "deployed v{version}{}",
                if *live {
                    " into the running host"
                } else {
                    " (next start uses it)"
                }
            ),
            CycleOutcome::Rejected { rejection } => {
                format!("rejected ({}): {rejection}", rejection.code())
            }
            CycleOutcome::NoChange { reason } => format!("no change: {reason}"),
            CycleOutcome::AnalysisUpdated { module, version } => {
                format!("{module} v{version} active from the next cycle")
            }
            CycleOutcome::Shadow { shadow_id, days } => {
                format!("in shadow #{shadow_id} for {days} days beside the incumbent")
            }
        };
        format!(
            "orchestrator run {}: {} {} → {outcome}",
            self.run_id,
            self.decision.as_str(),
            self.template
        )
    }
}

/// The inputs of a decision, each labelled with who may change it.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub ground_truth: serde_json::Value,
    pub market_report: serde_json::Value,
    pub trade_report: serde_json::Value,
    pub strategy_source: Option<String>,
    pub incumbent_template: Option<String>,
    pub incumbent_params: Vec<(String, String)>,
    pub strategy_document: String,
    pub versions: Vec<archive::VersionRecord>,
    pub observations: Vec<(String, String, String)>,
    pub constraints: serde_json::Value,
    /// The active analysis modules' sources (name, source), for `update_analysis`.
    pub analysis_sources: Vec<(String, String)>,
    /// The last attempts and why each stopped.
    pub past_attempts: Vec<repair::PastAttempt>,
    /// The bandit's ranking of decision kinds.
    pub suggested: Vec<repair::Arm>,
    /// Ask for the strategy document distilled (a quarter since the last time).
    pub distill_document: bool,
    /// The decision kind the bandit requests ([`repair::Bandit`], when the
    /// night allows more than one candidate); `None`: only suggested.
    pub requested: Option<DecisionKind>,
}

impl Context {
    /// The labelled prompt text.
    pub fn render(&self) -> String {
        let j = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        let mut s = String::new();
        s.push_str("=== GROUND TRUTH (rigid: computed by the shell; you cannot change this) ===\n");
        s.push_str(&j(&self.ground_truth));
        s.push_str("\n\n=== YOUR MARKET ANALYSIS (a module you designed; you can change it) ===\n");
        s.push_str(&j(&self.market_report));
        s.push_str("\n\n=== YOUR TRADE ANALYSIS (a module you designed; you can change it) ===\n");
        s.push_str(&j(&self.trade_report));
        s.push_str("\n\n=== YOUR STRATEGY (Rust source; you can change it; every change is checked, backtested and paper-tested) ===\n");
        s.push_str(
            self.strategy_source
                .as_deref()
                .unwrap_or("(source not archived: the default incumbent is strategies/sma-crossover, shown below as the example)"),
        );
        s.push_str("\n\n=== YOUR STRATEGY DOCUMENT (your long-term memory; you maintain it) ===\n");
        s.push_str(&self.strategy_document);
        s.push_str("\n\n=== VERSION HISTORY (rigid record; you cannot change this) ===\n");
        for v in &self.versions {
            s.push_str(&format!(
                "v{} {} {} {}\n",
                v.version,
                v.status,
                v.origin,
                v.deployed_at.clone().unwrap_or_default()
            ));
        }
        s.push_str("\n=== YOUR OBSERVATIONS, LAST 30 DAYS (your notes) ===\n");
        for (ts, cat, text) in &self.observations {
            s.push_str(&format!("{ts} [{cat}] {text}\n"));
        }
        s.push_str(
            "\n=== USER CONSTRAINTS (risk limits and settings; you cannot change this) ===\n",
        );
        s.push_str(&j(&self.constraints));
        s
    }
}

/// Writes and reviews candidates.
pub trait Proposer {
    fn propose(&mut self, conn: &Connection, ctx: &Context) -> Result<Proposal, OrchestratorError>;
    /// The decision kinds this proposer can be asked for (the bandit's arms).
    fn kinds(&self, _ctx: &Context) -> Vec<DecisionKind> {
        repair::ARMS.to_vec()
    }
    /// `Ok(Err(why))` when the reviewer refuses the change.
    fn review(
        &mut self,
        conn: &Connection,
        ctx: &Context,
        p: &Proposal,
    ) -> Result<Result<(), String>, OrchestratorError>;
    /// Every decision of this cycle (default: [`Proposer::propose`]'s one);
    /// `Ok(Err(_))` when the answer itself is refused (cut at max_tokens).
    fn decide(
        &mut self,
        conn: &Connection,
        ctx: &Context,
    ) -> Result<Result<Decisions, Rejection>, OrchestratorError> {
        Ok(Ok(Decisions::from_single(self.propose(conn, ctx)?)))
    }
    /// Another try at `p` after a gate refused it (`feedback` says why);
    /// `None` when this proposer does not repair. `Some(Err(_))`: the
    /// repair answer itself is refused.
    fn repair(
        &mut self,
        _conn: &Connection,
        _ctx: &Context,
        _p: &Proposal,
        _feedback: &str,
    ) -> Result<Option<Result<Proposal, Rejection>>, OrchestratorError> {
        Ok(None)
    }
    /// A different candidate after `p` was refused for `rejection` (a gate
    /// repairs cannot pass: it underperformed, or the reviewer refused it),
    /// when the night allows more candidates; `None`: no more.
    fn next_candidate(
        &mut self,
        _conn: &Connection,
        _ctx: &Context,
        _p: &Proposal,
        _rejection: &Rejection,
    ) -> Result<Option<Result<Proposal, Rejection>>, OrchestratorError> {
        Ok(None)
    }
    /// The review of a candidate that passed every automatic gate, with
    /// its dossier (diff, check results, context); default [`Proposer::review`].
    fn review_candidate(
        &mut self,
        conn: &Connection,
        ctx: &Context,
        p: &Proposal,
        _dossier: &str,
    ) -> Result<Result<(), String>, OrchestratorError> {
        self.review(conn, ctx, p)
    }
}

impl Decisions {
    /// One proposal as the decisions it stands for.
    pub fn from_single(p: Proposal) -> Decisions {
        match p.decision {
            DecisionKind::UpdateAnalysis => Decisions {
                analyses: vec![p],
                ..Decisions::default()
            },
            _ => Decisions {
                strategy: Some(p),
                ..Decisions::default()
            },
        }
    }
}

/// The offline proposer behind the [`Proposer`] interface.
pub struct Offline {
    pub seed: u64,
    pub max_source_bytes: usize,
}

impl Proposer for Offline {
    fn propose(
        &mut self,
        _conn: &Connection,
        ctx: &Context,
    ) -> Result<Proposal, OrchestratorError> {
        let t = ctx.incumbent_template.as_deref();
        Ok(match ctx.requested {
            Some(kind) => proposer::propose_kind(self.seed, t, &ctx.incumbent_params, kind),
            None => proposer::propose(self.seed, t),
        })
    }
    /// Tuning and tweaking need a template incumbent.
    fn kinds(&self, ctx: &Context) -> Vec<DecisionKind> {
        let templated = ctx
            .incumbent_template
            .as_deref()
            .is_some_and(|t| proposer::TEMPLATES.iter().any(|x| x.0 == t));
        repair::ARMS
            .into_iter()
            .filter(|k| {
                templated || matches!(k, DecisionKind::Restructure | DecisionKind::Overhaul)
            })
            .collect()
    }
    fn next_candidate(
        &mut self,
        _conn: &Connection,
        ctx: &Context,
        _p: &Proposal,
        _rejection: &Rejection,
    ) -> Result<Option<Result<Proposal, Rejection>>, OrchestratorError> {
        // only a bandit's request asks the offline proposer for another candidate
        self.seed = self.seed.wrapping_add(1);
        Ok(ctx.requested.map(|kind| {
            Ok(proposer::propose_kind(
                self.seed,
                ctx.incumbent_template.as_deref(),
                &ctx.incumbent_params,
                kind,
            ))
        }))
    }
    fn review(
        &mut self,
        _conn: &Connection,
        _ctx: &Context,
        p: &Proposal,
    ) -> Result<Result<(), String>, OrchestratorError> {
        // The offline review: the source must render completely and be within size.
        if p.source.is_empty() || p.source.contains("{{") {
            return Ok(Err("the template did not render".into()));
        }
        if p.source.len() > self.max_source_bytes {
            return Ok(Err(format!("source is {} bytes", p.source.len())));
        }
        Ok(Ok(()))
    }
}

/// Candle series for the settings' symbols: the first existing data file per
/// symbol, its most recent `history_bars` candles.
pub fn load_series(
    settings: &Market,
    o: &OrchestratorSettings,
) -> Result<Vec<Series>, OrchestratorError> {
    let mut out = Vec::new();
    for sym in &settings.symbols {
        let file = o
            .data
            .iter()
            .find(|p| p.exists() && backtest::name_parts(p).0.as_deref() == Some(sym.as_str()));
        let Some(file) = file else {
            return Err(OrchestratorError::NoData(format!(
                "no data file for {sym} among {:?}",
                o.data
            )));
        };
        let mut s = backtest::load_csv(file, Some(sym))
            .map_err(|e| OrchestratorError::NoData(e.to_string()))?;
        let n = s.candles.len();
        s.candles.drain(..n.saturating_sub(o.history_bars));
        if s.candles.len() < 100 {
            return Err(OrchestratorError::NoData(format!(
                "{}: only {} candles",
                file.display(),
                s.candles.len()
            )));
        }
        out.push(s);
    }
    Ok(out)
}

fn report_json(r: &host_sandbox::bindings::Report) -> serde_json::Value {
    let mut sections = serde_json::Map::new();
    for m in &r.metrics {
        let v = match &m.value {
            MetricValue::Number(n) => serde_json::json!(n),
            MetricValue::Text(t) => serde_json::json!(t),
            MetricValue::Flag(b) => serde_json::json!(b),
            MetricValue::Missing => serde_json::Value::Null,
        };
        sections
            .entry(m.section.clone())
            .or_insert_with(|| serde_json::json!({}))
            .as_object_mut()
            .map(|o| o.insert(m.key.clone(), v));
    }
    serde_json::json!({ "module": r.module, "summary": r.summary, "sections": sections })
}

/// Runs one analysis component against the read-only database.
pub fn run_analysis(
    rt: &Arc<Runtime>,
    wasm_path: &Path,
    db_path: &Path,
    now: i64,
) -> serde_json::Value {
    let run = || -> Result<serde_json::Value, String> {
        let bytes =
            std::fs::read(wasm_path).map_err(|e| format!("{}: {e}", wasm_path.display()))?;
        let m = rt.load_analysis(&bytes).map_err(|e| e.to_string())?;
        let conn = open_read_only(db_path).map_err(|e| e.to_string())?;
        let mut inst = m.instantiate(Some(conn)).map_err(|e| e.to_string())?;
        let r = inst.analyze(now).map_err(|e| e.to_string())?;
        let mut j = report_json(&r);
        j["module_hash"] = serde_json::json!(m.info().hash);
        Ok(j)
    };
    run().unwrap_or_else(|e| serde_json::json!({ "error": e }))
}

/// The regime label of each symbol in a market-analysis report
/// (`sections["symbol:<S>"].regime`), for `regime_change` events.
pub fn regimes(market_report: &serde_json::Value) -> Vec<(String, String)> {
    market_report["sections"]
        .as_object()
        .map(|sections| {
            sections
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.strip_prefix("symbol:")?.to_string(),
                        v["regime"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Shell-computed facts the orchestrator cannot change: recorded trades and
/// scans, and the incumbent's backtest on the cycle's data.
fn ground_truth(
    conn: &Connection,
    incumbent: Option<&backtest::BacktestReport>,
) -> rusqlite::Result<serde_json::Value> {
    let (trades, wins, losses, pnl_pct): (i64, i64, i64, Option<f64>) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(CAST(pnl AS REAL) > 0), 0), COALESCE(SUM(CAST(pnl AS REAL) < 0), 0), AVG(pnl_pct) FROM trades",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let mut pnl = rust_decimal::Decimal::ZERO;
    let mut fees = rust_decimal::Decimal::ZERO;
    let mut stmt = conn.prepare("SELECT pnl, fees FROM trades")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (p, f) = row?;
        pnl = pnl.saturating_add(p.parse().unwrap_or_default());
        fees = fees.saturating_add(f.parse().unwrap_or_default());
    }
    let scans: i64 = conn.query_row("SELECT COUNT(*) FROM scan_results", [], |r| r.get(0))?;
    Ok(serde_json::json!({
        "recorded": { "trades": trades, "wins": wins, "losses": losses, "net_pnl": pnl.to_string(), "fees": fees.to_string(), "avg_pnl_pct": pnl_pct, "scans": scans },
        "incumbent_backtest": incumbent.map(|r| serde_json::json!({
            "return_pct": r.return_pct, "metrics": r.metrics, "mean_oos_sharpe": checks::mean_oos_sharpe(r), "trades": r.trades.len(),
        })),
    }))
}

fn observations(conn: &Connection, since: i64) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare("SELECT datetime(ts, 'unixepoch'), category, text FROM observations WHERE ts >= ?1 ORDER BY ts, id")?;
    let rows = stmt
        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn observe(
    conn: &Connection,
    ts: i64,
    run_id: &str,
    category: &str,
    text: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO observations (ts, run_id, category, text) VALUES (?1, ?2, ?3, ?4)",
        params![ts, run_id, category, text],
    )?;
    Ok(())
}

/// The incumbent: the active version's bytes, source, template and
/// parameters; else the configured default strategy.
struct Incumbent {
    /// The archived version (none: the configured default file, never deployed).
    version: Option<i64>,
    wasm: Vec<u8>,
    source: Option<String>,
    template: Option<String>,
    params: Vec<(String, String)>,
}

fn incumbent(
    conn: &Connection,
    paths: &Paths,
    settings: &Market,
) -> Result<Option<Incumbent>, OrchestratorError> {
    if let Some(rec) = archive::active(conn)? {
        let (wasm, _) = archive::load_bytes(conn, &paths.archive_dir, rec.version)?;
        let source: Option<String> = conn.query_row(
            "SELECT code FROM strategy_versions WHERE version = ?1",
            [rec.version],
            |r| r.get(0),
        )?;
        let meta: Option<String> = conn
            .query_row("SELECT template || char(31) || params FROM orchestrator_runs WHERE deployed_version = ?1", [rec.version], |r| r.get(0))
            .optional()?;
        let (template, params) = match meta.as_deref().and_then(|m| m.split_once('\u{1f}')) {
            Some((t, p)) => (
                Some(t.to_string()),
                serde_json::from_str(p).unwrap_or_default(),
            ),
            None => (
                // the shell's default strategy: its file names the template
                (rec.origin == "default")
                    .then_some(settings.default_strategy.as_deref())
                    .flatten()
                    .and_then(|p| p.file_stem()?.to_str().map(String::from)),
                rec.params.clone(),
            ),
        };
        return Ok(Some(Incumbent {
            version: Some(rec.version),
            wasm,
            source,
            template,
            params,
        }));
    }
    match &settings.default_strategy {
        Some(p) if p.exists() => Ok(Some(Incumbent {
            version: None,
            wasm: std::fs::read(p).map_err(io(p))?,
            source: None,
            template: p.file_stem().and_then(|s| s.to_str()).map(String::from),
            params: settings.strategy_params.clone(),
        })),
        _ => Ok(None),
    }
}

/// How candidates are compiled: in `work`'s build tree, with the
/// orchestrator's limits, dependency allow-list and build sandbox.
fn compile_config(opts: &CycleOptions, work: &Path) -> compile::CompileConfig {
    let o = &opts.orchestrator;
    compile::CompileConfig {
        repo_root: opts.repo_root.clone(),
        build_root: work.join("build"),
        target_dir: o.target_dir.clone().unwrap_or_else(|| work.join("target")),
        timeout: Duration::from_secs(o.compile_timeout_secs.max(1)),
        max_wasm_bytes: o.max_wasm_bytes,
        allowed_deps: o.allowed_deps.clone(),
        sandbox: o.compile.clone(),
    }
}

fn check_config(o: &OrchestratorSettings, seed: u64) -> CheckConfig {
    CheckConfig {
        fuzz_calls: o.fuzz_calls,
        seed,
        window_bars: o.window_bars,
        lookahead_cuts: o.lookahead_cuts,
        shift_weeks: o.shift_weeks,
        warmup_bars: o.warmup_bars,
    }
}

fn gate_config(o: &OrchestratorSettings, risk: &RiskFile, seed: u64) -> gate::GateConfig {
    gate::GateConfig {
        folds: o.walk_forward_folds,
        significance: selection::SignificanceConfig {
            alpha: o.significance_alpha,
            resamples: o.bootstrap_resamples,
            mean_block_days: o.bootstrap_block_days,
            min_days: o.min_significance_days,
            seed,
        },
        min_oos_sharpe: o.min_oos_sharpe,
        holdout_tolerance_pct: o.holdout_tolerance_pct,
        max_drawdown_pct: risk.max_drawdown_pct,
        search_candidates: o.search_candidates.max(1),
        tune_grid_max: o.tune_grid_max.max(1),
    }
}

/// Keeps `strategies/strategy_document.md` current and under 2,000 words:
/// the "Current strategy" section is rewritten, a journal line appended,
/// and the oldest journal lines dropped when the document grows too long.
pub fn update_document(
    path: &Path,
    current: &str,
    journal_line: &str,
    max_words: usize,
) -> std::io::Result<String> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let head = old
        .split("\n## Current strategy")
        .next()
        .unwrap_or("")
        .trim_end()
        .to_string();
    let head = if head.trim().is_empty() {
        "# Strategy document\n\nMaintained by the orchestrator (kept under 2,000 words). Mandate: portfolio growth with capital \
preservation; avoid major drawdowns; a long-term fund. The shell's risk limits and truth benchmarks are fixed; the \
strategy, the analysis modules and this document are ours to change."
            .to_string()
    } else {
        head
    };
    let mut journal: Vec<String> = old
        .split("\n## Journal\n")
        .nth(1)
        .map(|j| {
            j.lines()
                .filter(|l| l.starts_with("- "))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    journal.push(format!("- {journal_line}"));
    let render = |j: &[String]| {
        format!(
            "{head}\n\n## Current strategy\n\n{current}\n\n## Journal\n\n{}\n",
            j.join("\n")
        )
    };
    let mut doc = render(&journal);
    while doc.split_whitespace().count() > max_words && journal.len() > 1 {
        journal.remove(0);
        doc = render(&journal);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, &doc)?;
    Ok(doc)
}

/// Runs one full cycle with the proposer the options name.
pub fn run_cycle(opts: &CycleOptions) -> Result<CycleReport, OrchestratorError> {
    let conn = host_store::db::open(&opts.paths.db())?;
    let mut proposer: Box<dyn Proposer> = match opts.proposer {
        ProposerChoice::Offline => Box::new(Offline {
            seed: opts.seed,
            max_source_bytes: opts.orchestrator.max_source_bytes,
        }),
        ProposerChoice::Claude => {
            let o = &opts.orchestrator;
            let (provider, base_url) = o.provider();
            let cfg = ClaudeConfig {
                provider,
                base_url,
                timeout: Duration::from_secs(o.timeout_secs.max(1)),
                retries: o.retries,
                requests_per_minute: o.requests_per_minute,
                rate_window: Duration::from_secs(60),
                budget_usd: o.nightly_budget_usd,
                backoff: Duration::from_millis(500),
                max_retry_after: Duration::from_secs(60),
            };
            let spent = claude::spent_since(&conn, opts.now.timestamp() - 86_400)?;
            let client = match &opts.api_key {
                Some(k) => Claude::with_key(cfg, k.clone(), spent)?,
                None => Claude::from_env(cfg, spent)?,
            };
            Box::new(ClaudeProposer::new(client, o.clone(), opts.trigger.clone()))
        }
    };
    run_cycle_with(opts, &conn, proposer.as_mut())
}

/// Runs one full cycle with `proposer`.
pub fn run_cycle_with(
    opts: &CycleOptions,
    conn: &Connection,
    proposer: &mut dyn Proposer,
) -> Result<CycleReport, OrchestratorError> {
    let o = &opts.orchestrator;
    o.validate().map_err(OrchestratorError::Config)?;
    let t0 = Instant::now();
    let mut timings: Vec<(String, f64)> = Vec::new();
    let mut lap = |name: &str, since: &mut Instant| {
        timings.push((name.to_string(), since.elapsed().as_secs_f64()));
        *since = Instant::now();
    };
    let mut since = Instant::now();
    let now = opts.now.timestamp();
    let run_id = format!("{}-{}", opts.now.format("%Y%m%dT%H%M%S"), opts.seed);
    let work = opts.paths.data_dir.join("orchestrator");
    let reports_dir = work.join("reports");
    std::fs::create_dir_all(&reports_dir).map_err(io(&reports_dir))?;
    conn.execute(
        "INSERT INTO tuning_triggers (ts, kind, priority, detail, run_id) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now, opts.trigger, 0, format!("cycle {run_id}"), run_id],
    )?;
    tracing::info!(run = %run_id, trigger = %opts.trigger, "orchestrator cycle starts");

    // 1. data (the host's candles; the last `holdout_bars` held out) and truth
    let (series, data_source) = data::cycle_series(conn, &opts.market, o, now)?;
    let dev_end = evaluate::split(&series, o.holdout_bars).ok_or_else(|| {
        OrchestratorError::NoData(format!(
            "{} bars cannot hold out {}",
            series.first().map_or(0, |s| s.candles.len()),
            o.holdout_bars
        ))
    })?;
    let rt = Runtime::new(opts.market.sandbox.clone(), Some(&opts.paths.cache()))
        .map_err(|e| OrchestratorError::Runtime(format!("{e:#}")))?;
    let inc = incumbent(conn, &opts.paths, &opts.market)?;
    let input = checks::CheckInput {
        runtime: &rt,
        series: &series,
        risk: &opts.risk,
        symbols: &opts.market.symbols,
        capital: opts.market.starting_capital,
        fee_bps: opts.market.fee_bps.into(),
        slippage_bps: opts.market.slippage_bps.into(),
    };
    let cfg = check_config(o, opts.seed);
    let gcfg = gate_config(o, &opts.risk, opts.seed);
    let eval_input = evaluate::EvalInput {
        runtime: &rt,
        series: &series,
        risk: &opts.risk,
        symbols: &opts.market.symbols,
        account: backtest::Account::from_config(&{
            let mut b = BacktestConfig::new(Vec::new(), Vec::new(), opts.risk.clone());
            b.capital = input.capital;
            b.fee_bps = input.fee_bps;
            b.slippage_bps = input.slippage_bps;
            b
        })
        .map_err(|e| OrchestratorError::Config(e.to_string()))?,
        dev_end,
    };
    let inc_eval = match &inc {
        Some(i) => Some(
            gate::incumbent(&eval_input, &i.wasm, &i.params, &gcfg)
                .map_err(|e| OrchestratorError::Incumbent(e.to_string()))?,
        ),
        None => None,
    };
    let mut selection_figures = gate::SelectionFigures {
        data_source: Some(data_source.clone()),
        development: eval_input.start().map(|s| (s, dev_end)),
        holdout: eval_input.end().map(|e| (dev_end, e)),
        folds: gcfg.folds,
        incumbent: inc_eval.as_ref().map(|i| i.evaluation.clone()),
        holdout_incumbent: inc_eval.as_ref().map(|i| i.holdout.clone()),
        ..Default::default()
    };
    if let data::DataSource::BundledCsv { reason } = &data_source {
        tracing::warn!("orchestrator: {reason}; testing on the bundled candle files");
    }
    let inc_report = match &inc {
        Some(i) => {
            let mut b = BacktestConfig::new(i.wasm.clone(), series.clone(), opts.risk.clone());
            b.capital = input.capital;
            b.fee_bps = input.fee_bps;
            b.slippage_bps = input.slippage_bps;
            b.sandbox = opts.market.sandbox.clone();
            b.params = i.params.clone();
            // the development part only: the held-out window is never summarised
            b.to = Some(dev_end);
            b.walk_forward = Some(gcfg.folds);
            Some(
                backtest::run_with(&rt, &b)
                    .map_err(|e| OrchestratorError::Incumbent(e.to_string()))?,
            )
        }
        None => None,
    };
    let truth = ground_truth(conn, inc_report.as_ref())?;
    lap("truth", &mut since);

    // 2. analysis reports
    let market_path = analysis_path(conn, "market-analysis", &o.market_analysis)?;
    let trade_path = analysis_path(conn, "trade-performance", &o.trade_performance)?;
    // as of the development part's end: nothing of the held-out window reaches the model
    let market_report = run_analysis(&rt, &market_path, &opts.paths.db(), dev_end);
    let trade_report = run_analysis(&rt, &trade_path, &opts.paths.db(), dev_end);
    // the regimes of the latest bars the model may see (the held-out days are not read)
    if let Err(e) = host_store::regime_log::observe(conn, dev_end, &regimes(&market_report)) {
        tracing::warn!("regimes not recorded: {e}");
    }
    lap("analysis", &mut since);

    // 3. context
    let document = std::fs::read_to_string(&o.strategy_document).unwrap_or_default();
    let ctx = Context {
        ground_truth: truth.clone(),
        market_report: market_report.clone(),
        trade_report: trade_report.clone(),
        strategy_source: inc.as_ref().and_then(|i| i.source.clone()),
        incumbent_template: inc.as_ref().and_then(|i| i.template.clone()),
        incumbent_params: inc.as_ref().map(|i| i.params.clone()).unwrap_or_default(),
        strategy_document: document,
        versions: archive::list(conn)?,
        observations: observations(conn, now - 30 * 86_400)?,
        constraints: serde_json::json!({ "risk_limits": opts.risk, "symbols": opts.market.symbols, "fee_bps": opts.market.fee_bps, "slippage_bps": opts.market.slippage_bps }),
        analysis_sources: reply::AnalysisModule::ALL
            .iter()
            .map(|m| Ok((m.name().to_string(), analysis_source(conn, m.name())?)))
            .collect::<rusqlite::Result<Vec<_>>>()?,
        past_attempts: repair::memory(conn, conversation::MEMORY_ATTEMPTS)?,
        suggested: repair::bandit(conn, opts.seed)?,
        distill_document: distill_due(conn, now)?,
        requested: None,
    };
    // the bandit decides the kind asked for when the night allows more than one candidate
    let mut bandit = if o.candidates_per_night > 1 {
        Some(repair::Bandit::from_history(
            conn,
            opts.seed,
            &proposer.kinds(&ctx),
        )?)
    } else {
        None
    };
    let first_draw = bandit.as_mut().and_then(|b| b.draw());
    let ctx = Context {
        requested: first_draw.as_ref().map(|d| d.decision),
        ..ctx
    };

    // 4. decisions: each analysis module separately, then the strategy
    let decided = proposer.decide(conn, &ctx)?;
    lap("proposal", &mut since);
    let candidate_dir = opts.paths.archive_dir.join("candidates").join(&run_id);
    std::fs::create_dir_all(&candidate_dir).map_err(io(&candidate_dir))?;
    let write = |name: &str, bytes: &[u8]| -> Result<(), OrchestratorError> {
        let p = candidate_dir.join(name);
        std::fs::write(&p, bytes).map_err(io(&p))
    };
    let (decisions, refused) = match decided {
        Ok(d) => (d, None),
        Err(r) => (Decisions::default(), Some(r)),
    };
    let mut draws: Vec<repair::BanditDraw> = Vec::new();
    if let Some(d) = first_draw {
        draws.push(repair::BanditDraw::new(
            1,
            d,
            decisions.strategy.as_ref().map(|s| s.decision),
        ));
    }
    let mut analyses: Vec<CycleOutcome> = Vec::new();
    for a in &decisions.analyses {
        analyses.push(analysis_decision(
            opts,
            conn,
            &rt,
            proposer,
            &ctx,
            a.clone(),
            &run_id,
        )?);
    }
    let mut proposal = decisions
        .strategy
        .clone()
        .or_else(|| decisions.analyses.first().cloned())
        .unwrap_or_else(|| Proposal {
            decision: DecisionKind::NoChange,
            template: "claude".into(),
            params: Vec::new(),
            rationale: match &refused {
                Some(r) => r.to_string(),
                None => "no decision".into(),
            },
            source: String::new(),
            confidence: None,
            observation: None,
            module: None,
        });

    let mut figures = CheckFigures::default();
    let mut wasm: Option<Vec<u8>> = None;
    let mut attempts = 0u32;
    let outcome = if let Some(rejection) = refused {
        CycleOutcome::Rejected { rejection }
    } else if decisions.strategy.is_none() && !analyses.is_empty() {
        analyses[0].clone()
    } else if matches!(proposal.decision, DecisionKind::NoChange) {
        CycleOutcome::NoChange {
            reason: proposal.rationale.clone(),
        }
    } else {
        // 5-10. source check, compile, screens, selection gate (repairs fed back), review
        let ccfg = compile_config(opts, &work);
        let mut gate_fn = |p: &Proposal,
                           wasm: &[u8],
                           module: &host_sandbox::StrategyModule,
                           figures: &mut CheckFigures|
         -> Result<gate::Passed, Rejection> {
            let (trials, sharpes) =
                host_store::selection::trials(conn).map_err(|e| Rejection::Backtest {
                    detail: e.to_string(),
                })?;
            let g = gate::GateInput {
                eval: &eval_input,
                incumbent: inc_eval.as_ref(),
                trials: (trials, sharpes),
                cfg: &gcfg,
                seed: opts.seed,
            };
            let compile_fitted = |src: &str| {
                let id = format!(
                    "{}-{}",
                    run_id.to_ascii_lowercase().replace('t', "-"),
                    &host_sandbox::module_hash(src.as_bytes())[..12]
                );
                compile::compile(&ccfg, &id, src)
                    .map(|b| b.wasm)
                    .map_err(|e| Rejection::CompileFailed {
                        detail: e.to_string(),
                    })
            };
            let passed = gate::run(
                &g,
                p,
                wasm,
                module,
                &compile_fitted,
                figures,
                &mut selection_figures,
            );
            if let Some(s) = &selection_figures.significance {
                // every grid point fitted over is a trial: the chosen one
                // with its Sharpe ratio, the others counted without one
                for i in 0..selection_figures.grid_size.max(1) {
                    host_store::selection::record_trial(
                        conn,
                        now,
                        &run_id,
                        &p.template,
                        s.deflated.map(|d| d.sharpe).filter(|_| i == 0),
                        s.p_value.filter(|_| i == 0),
                        s.passed && i == 0,
                    )
                    .map_err(|e| Rejection::Backtest {
                        detail: e.to_string(),
                    })?;
                }
            }
            passed
        };
        let developed = develop::candidates(
            opts,
            conn,
            proposer,
            &ctx,
            proposal.clone(),
            &input,
            &mut gate_fn,
            &cfg,
            &mut figures,
            &run_id,
            bandit.as_mut(),
            &mut draws,
        )?;
        proposal = developed.proposal;
        attempts = developed.attempts;
        match developed.result {
            Err(rejection) => CycleOutcome::Rejected { rejection },
            Ok(develop::Built { passed, report, .. }) => {
                wasm = Some(passed.wasm.clone());
                // the fitted parameters are the candidate's from here on
                proposal.source = passed.source.clone();
                proposal.params = passed.params.clone();
                let report = &report;
                let _ = write(
                    "backtest.json",
                    &serde_json::to_vec_pretty(report).unwrap_or_default(),
                );
                // 11. forward shadow in the running host, or deploy at once
                match shadow_or_deploy(opts, conn, &passed, &proposal, &run_id) {
                    Ok(Staged::Shadow { shadow_id }) => CycleOutcome::Shadow {
                        shadow_id,
                        days: o.shadow_days,
                    },
                    Ok(Staged::Deployed(host_control::Deployed { version, live })) => {
                        let p = archive::version_dir(&opts.paths.archive_dir, version)
                            .join("backtest.json");
                        let _ = std::fs::write(
                            &p,
                            serde_json::to_vec_pretty(report).unwrap_or_default(),
                        );
                        CycleOutcome::Deployed { version, live }
                    }
                    Err(detail) => CycleOutcome::Rejected {
                        rejection: Rejection::Deploy { detail },
                    },
                }
            }
        }
    };
    write("strategy.rs", proposal.source.as_bytes())?;
    figures.selection = Some(selection_figures);
    lap("candidate", &mut since);
    if let Some(w) = &wasm {
        write("strategy.wasm", w)?;
    }

    // 12. memory: config history, observations, document
    let deployed_version = match &outcome {
        CycleOutcome::Deployed { version, .. } => Some(*version),
        _ => None,
    };
    if deployed_version.is_some() {
        let same_family = ctx.incumbent_template.as_deref() == Some(proposal.template.as_str());
        for (k, v) in &proposal.params {
            let old = ctx
                .incumbent_params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone());
            if !same_family || old.as_deref() != Some(v.as_str()) {
                conn.execute(
                    "INSERT INTO config_history (ts, param, symbol, old_value, new_value, reason, confidence, run_id) VALUES (?1, ?2, '*', ?3, ?4, ?5, ?6, ?7)",
                    params![now, k, if same_family { old } else { None }, v, proposal.rationale, proposal.confidence, run_id],
                )?;
            }
        }
    }
    let summary = |v: &serde_json::Value| {
        v["summary"]
            .as_str()
            .map(String::from)
            .or_else(|| v["error"].as_str().map(|e| format!("error: {e}")))
            .unwrap_or_default()
    };
    observe(conn, now, &run_id, "market", &summary(&market_report))?;
    observe(conn, now, &run_id, "performance", &summary(&trade_report))?;
    let outcome_text = match &outcome {
        CycleOutcome::Deployed { version, .. } => format!("deployed v{version}"),
        CycleOutcome::Rejected { rejection } => {
            format!("rejected ({}): {rejection}", rejection.code())
        }
        CycleOutcome::NoChange { reason } => format!("no change: {reason}"),
        CycleOutcome::AnalysisUpdated { module, version } => format!("{module} v{version} active"),
        CycleOutcome::Shadow { shadow_id, days } => format!("shadow #{shadow_id} ({days} days)"),
    };
    let outcome_text: String = outcome_text
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    observe(
        conn,
        now,
        &run_id,
        "decision",
        &format!(
            "{} {}: {} → {outcome_text}",
            proposal.decision.as_str(),
            proposal.template,
            proposal.rationale
        ),
    )?;
    if let Some(o) = &proposal.observation {
        observe(conn, now, &run_id, "proposer", o)?;
    }
    let active = archive::active(conn)?;
    let current = match &active {
        Some(a) => format!(
            "Active: v{} ({}), origin {}.",
            a.version,
            &a.hash[..12.min(a.hash.len())],
            a.origin
        ),
        None => "No strategy deployed yet.".into(),
    };
    let line = format!(
        "{} {}: {} {} → {}",
        opts.now.format("%Y-%m-%d %H:%M"),
        run_id,
        proposal.decision.as_str(),
        proposal.template,
        outcome_text
    );
    let document_edit = accept_document(
        conn,
        &o.strategy_document,
        decisions.document.as_deref(),
        now,
    )?;
    if let Some(why) = &document_edit {
        observe(conn, now, &run_id, "document", why)?;
    }
    update_document(&o.strategy_document, &current, &line, 2_000)
        .map_err(io(&o.strategy_document))?;
    lap("memory", &mut since);
    timings.push(("total".into(), t0.elapsed().as_secs_f64()));

    // 13. report
    let report_path = reports_dir.join(format!("{run_id}.json"));
    let report = CycleReport {
        run_id: run_id.clone(),
        started_at: opts.now.to_rfc3339(),
        trigger: opts.trigger.clone(),
        proposer: opts.proposer,
        decision: proposal.decision,
        template: proposal.template.clone(),
        params: proposal.params.clone(),
        rationale: proposal.rationale.clone(),
        confidence: proposal.confidence,
        incumbent_version: inc.as_ref().and_then(|i| i.version),
        outcome,
        figures,
        attempts,
        analyses,
        ground_truth: truth,
        market_report,
        trade_report,
        timings,
        report_path: report_path.clone(),
        candidate_dir: candidate_dir.clone(),
        bandit: draws,
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&report_path, &json).map_err(io(&report_path))?;
    write("meta.json", json.as_bytes())?;
    let (code, rejection) = match &report.outcome {
        CycleOutcome::Deployed { .. } => ("deployed", None),
        CycleOutcome::Rejected { rejection } => ("rejected", Some(rejection.to_string())),
        CycleOutcome::NoChange { .. } => ("no_change", None),
        CycleOutcome::AnalysisUpdated { .. } => ("analysis_updated", None),
        CycleOutcome::Shadow { .. } => ("shadow", None),
    };
    conn.execute(
        "INSERT INTO orchestrator_runs (run_id, ts, trigger, proposer, decision, template, params, outcome, rejection_code, rejection, deployed_version, report)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            run_id,
            now,
            opts.trigger,
            serde_json::to_value(opts.proposer).ok().and_then(|v| v.as_str().map(String::from)),
            proposal.decision.as_str(),
            proposal.template,
            serde_json::to_string(&proposal.params).unwrap_or_default(),
            code,
            match &report.outcome {
                CycleOutcome::Rejected { rejection } => Some(rejection.code()),
                _ => None,
            },
            rejection,
            deployed_version,
            json
        ],
    )?;
    if let Err(e) = host_store::events::append(
        conn,
        now,
        None,
        &host_store::events::Payload::OrchestratorRun(host_store::payloads::OrchestratorRun {
            run_id: run_id.to_string(),
            outcome: code.to_string(),
            decision: proposal.decision.as_str().to_string(),
        }),
    ) {
        tracing::warn!("event log: {e}");
    }
    tracing::info!("{}", report.headline());
    Ok(report)
}

/// The active component of analysis module `name`: the orchestrator's last
/// update (`system_meta` `analysis.<name>`), else the configured file.
pub fn analysis_path(
    conn: &Connection,
    name: &str,
    configured: &Path,
) -> rusqlite::Result<PathBuf> {
    Ok(host_store::db::get_meta(conn, &format!("analysis.{name}"))?
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .unwrap_or_else(|| configured.to_path_buf()))
}

/// An analysis decision: its gates and review ([`develop::analysis`]),
/// then archived as `archive/analysis/<module>/vNNN/` and made active.
fn analysis_decision(
    opts: &CycleOptions,
    conn: &Connection,
    rt: &Arc<Runtime>,
    proposer: &mut dyn Proposer,
    ctx: &Context,
    p: Proposal,
    run_id: &str,
) -> Result<CycleOutcome, OrchestratorError> {
    let d = develop::analysis(opts, conn, rt, proposer, ctx, p, run_id)?;
    let built = match d.result {
        Ok(b) => b,
        Err(rejection) => return Ok(CycleOutcome::Rejected { rejection }),
    };
    Ok(
        match activate_analysis(opts, conn, &built, &d.proposal, run_id) {
            Ok(version) => CycleOutcome::AnalysisUpdated {
                module: built.module,
                version,
            },
            Err(rejection) => CycleOutcome::Rejected { rejection },
        },
    )
}

/// Archives a built analysis module and makes it the active one.
fn activate_analysis(
    opts: &CycleOptions,
    conn: &Connection,
    built: &develop::BuiltAnalysis,
    p: &Proposal,
    run_id: &str,
) -> Result<i64, Rejection> {
    let module = &built.module;
    let base = opts.paths.archive_dir.join("analysis").join(module);
    let version = std::fs::read_dir(&base)
        .map(|d| d.count() as i64)
        .unwrap_or(0)
        + 1;
    let dir = base.join(format!("v{version:03}"));
    let files: [(&str, Vec<u8>); 4] = [
        ("module.wasm", built.wasm.clone()),
        ("module.rs", p.source.clone().into_bytes()),
        ("report.json", serde_json::to_vec_pretty(&report_json(&built.report)).unwrap_or_default()),
        (
            "meta.json",
            serde_json::to_vec_pretty(&serde_json::json!({
                "module": module, "version": version, "hash": built.hash, "run_id": run_id, "reason": p.rationale,
            }))
            .unwrap_or_default(),
        ),
    ];
    let fail = |e: std::io::Error| Rejection::Deploy {
        detail: format!("{}: {e}", dir.display()),
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).map_err(fail)?;
    }
    let path = std::fs::canonicalize(dir.join("module.wasm")).map_err(fail)?;
    host_store::db::set_meta(
        conn,
        &format!("analysis.{module}"),
        &path.display().to_string(),
    )
    .map_err(|e| Rejection::Deploy {
        detail: e.to_string(),
    })?;
    Ok(version)
}

/// The source of the active analysis module `name`: the archived
/// `module.rs` beside an orchestrator-built component, else the default's.
pub fn analysis_source(conn: &Connection, name: &str) -> rusqlite::Result<String> {
    let archived = host_store::db::get_meta(conn, &format!("analysis.{name}"))?
        .map(PathBuf::from)
        .and_then(|p| std::fs::read_to_string(p.with_file_name("module.rs")).ok());
    Ok(archived.unwrap_or_else(|| match name {
        "trade-performance" => reference::TRADE_PERFORMANCE_SOURCE.to_string(),
        _ => reference::MARKET_ANALYSIS_SOURCE.to_string(),
    }))
}

/// A quarter: how often the strategy document is distilled.
const DISTILL_SECS: i64 = 91 * 86_400;

/// Is the strategy document due for distillation? (The clock starts at the first cycle.)
fn distill_due(conn: &Connection, now: i64) -> rusqlite::Result<bool> {
    match host_store::db::get_meta(conn, "document.distilled_at")?
        .and_then(|v| v.parse::<i64>().ok())
    {
        Some(t) => Ok(now - t >= DISTILL_SECS),
        None => {
            host_store::db::set_meta(conn, "document.distilled_at", &now.to_string())?;
            Ok(false)
        }
    }
}

/// Writes the model's edited strategy document when it is within 2,000
/// words; returns what to remember when an edit was refused or taken.
fn accept_document(
    conn: &Connection,
    path: &Path,
    edited: Option<&str>,
    now: i64,
) -> Result<Option<String>, OrchestratorError> {
    let Some(doc) = edited else {
        return Ok(None);
    };
    let words = reply::words(doc);
    if words > 2_000 || doc.trim().is_empty() {
        return Ok(Some(format!(
            "the edited strategy document was refused: {words} words (limit 2,000); the old one is kept"
        )));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(path, doc).map_err(io(path))?;
    host_store::db::set_meta(conn, "document.distilled_at", &now.to_string())?;
    Ok(Some(format!(
        "the strategy document was edited ({words} words)"
    )))
}

/// `offline`, `claude`, or `auto` (Claude when ANTHROPIC_API_KEY is set).
pub fn choose_proposer(name: &str) -> Result<ProposerChoice, OrchestratorError> {
    match name {
        "offline" => Ok(ProposerChoice::Offline),
        "claude" => Ok(ProposerChoice::Claude),
        "auto" => Ok(
            if std::env::var(claude::KEY_VAR).is_ok_and(|k| !k.trim().is_empty()) {
                ProposerChoice::Claude
            } else {
                ProposerChoice::Offline
            },
        ),
        other => Err(OrchestratorError::Config(format!(
            "proposer {other:?}: expected offline, claude or auto"
        ))),
    }
}

/// What `host bench orchestrate` measured, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchFigures {
    /// The first offline cycle (may compile the SDK).
    pub first: f64,
    /// A warm offline cycle.
    pub warm: f64,
    /// A warm cycle whose first two answers fail (a compile error, then a
    /// panic in the fuzz check) and are repaired: three compiles, the checks
    /// thrice, the backtests once (model latency not included: the answers
    /// are scripted).
    pub repaired: f64,
    pub repaired_attempts: u32,
    pub repaired_headline: String,
}

/// A proposer whose first answer and repairs are fixed (the repair bench).
pub struct Scripted {
    pub first: Proposal,
    pub repairs: std::collections::VecDeque<Proposal>,
}

impl Proposer for Scripted {
    fn propose(
        &mut self,
        _conn: &Connection,
        _ctx: &Context,
    ) -> Result<Proposal, OrchestratorError> {
        Ok(self.first.clone())
    }
    fn review(
        &mut self,
        _conn: &Connection,
        _ctx: &Context,
        _p: &Proposal,
    ) -> Result<Result<(), String>, OrchestratorError> {
        Ok(Ok(()))
    }
    fn repair(
        &mut self,
        _conn: &Connection,
        _ctx: &Context,
        _p: &Proposal,
        _feedback: &str,
    ) -> Result<Option<Result<Proposal, Rejection>>, OrchestratorError> {
        Ok(self.repairs.pop_front().map(Ok))
    }
}

impl Scripted {
    /// The bench's script: the offline proposal for `seed` that first does
    /// not compile, then panics on an empty history, then is right.
    pub fn two_repairs(seed: u64) -> Scripted {
        let good = proposer::propose(seed, None);
        let broken = Proposal {
            source: format!(
                "{}\nfn broken() -> u32 {{ \"not a number\" }}\n",
                good.source
            ),
            ..good.clone()
        };
        let panics = Proposal {
            source: good.source.replacen(
                "        for sym in &self.symbols {\n            let held",
                "        let _first = market.candles(&self.symbols[0], Interval::H1, 1)[0].close;\n        for sym in &self.symbols {\n            let held",
                1,
            ),
            ..good.clone()
        };
        Scripted {
            first: broken,
            repairs: [panics, good].into_iter().collect(),
        }
    }
}

/// Times two offline cycles in a scratch data directory
/// (`<data>/orchestrator/bench`) that shares the candidates' cargo target
/// directory (the first may compile the SDK, the second is warm), then a
/// warm cycle with two repairs ([`Scripted::two_repairs`]).
pub fn bench(
    paths: &Paths,
    market: &Market,
    orchestrator: &OrchestratorSettings,
    risk: &RiskFile,
    repo_root: &Path,
) -> Result<BenchFigures, OrchestratorError> {
    let work = paths.data_dir.join("orchestrator");
    let scratch = work.join("bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
    let mut o = orchestrator.clone();
    o.target_dir = Some(o.target_dir.clone().unwrap_or_else(|| work.join("target")));
    o.strategy_document = scratch.join("strategy_document.md");
    o.max_repairs = o.max_repairs.max(2);
    let mut times = Vec::new();
    let runtime = Runtime::new(market.sandbox.clone(), Some(&paths.cache()))
        .map_err(|e| OrchestratorError::Runtime(format!("{e:#}")))?;
    let mut repaired = (0.0, 0, String::new());
    for seed in [1u64, 2, 3] {
        let paths = Paths {
            data_dir: scratch.join("data"),
            archive_dir: scratch.join("archive"),
        };
        let opts = CycleOptions {
            deployer: Arc::new(host_control::SocketOrOffline {
                paths: paths.clone(),
                runtime: runtime.clone(),
                risk: risk.clone(),
                symbols: market.symbols.clone(),
            }),
            paths,
            market: market.clone(),
            orchestrator: o.clone(),
            risk: risk.clone(),
            repo_root: repo_root.to_path_buf(),
            proposer: ProposerChoice::Offline,
            seed,
            trigger: "bench".into(),
            now: DateTime::from_timestamp(
                trading_core::Clock::now(&trading_core::WallClock) + seed as i64,
                0,
            )
            .unwrap_or_default(),
            api_key: None,
        };
        std::fs::create_dir_all(&opts.paths.data_dir).map_err(io(&opts.paths.data_dir))?;
        let t = Instant::now();
        let r = if seed == 3 {
            let conn = host_store::db::open(&opts.paths.db())?;
            run_cycle_with(&opts, &conn, &mut Scripted::two_repairs(seed))?
        } else {
            run_cycle(&opts)?
        };
        let secs = t.elapsed().as_secs_f64();
        println!(
            "cycle {seed}{}: {secs:.1} s — {}",
            if seed == 3 { " (two repairs)" } else { "" },
            r.headline()
        );
        for (stage, s) in &r.timings {
            println!("  {stage:<10} {s:>7.2} s");
        }
        if seed == 3 {
            repaired = (secs, r.attempts, r.headline());
        } else {
            times.push(secs);
        }
    }
    Ok(BenchFigures {
        first: times[0],
        warm: times[1],
        repaired: repaired.0,
        repaired_attempts: repaired.1,
        repaired_headline: repaired.2,
    })
}

/// Where a passing candidate went.
enum Staged {
    Shadow { shadow_id: i64 },
    Deployed(host_control::Deployed),
}

/// A passing candidate goes into its forward shadow (`shadow_days > 0`: the
/// running host picks it up), else it is deployed at once with its
/// expectation recorded for the rollback rule.
fn shadow_or_deploy(
    opts: &CycleOptions,
    conn: &Connection,
    passed: &gate::Passed,
    p: &Proposal,
    run_id: &str,
) -> Result<Staged, String> {
    let o = &opts.orchestrator;
    let origin = format!("orchestrator {run_id} {}", p.template);
    if o.shadow_days > 0.0 {
        let shadow_id = host_store::selection::add_shadow(
            conn,
            &host_store::selection::NewShadow {
                run_id,
                created_at: opts.now.timestamp(),
                origin: &origin,
                wasm: &passed.wasm,
                source: &passed.source,
                params: &passed.params,
                shadow_days: o.shadow_days,
                tolerance_pct: o.shadow_tolerance_pct,
                expected_return_pct_per_day: passed.expected_return_pct_per_day,
                expected_max_drawdown_pct: passed.expected_max_drawdown_pct,
            },
        )
        .map_err(|e| e.to_string())?;
        if let Err(e) = host_store::events::append(
            conn,
            opts.now.timestamp(),
            None,
            &host_store::events::Payload::ShadowStarted(host_store::payloads::ShadowStarted {
                shadow_id,
                origin: origin.clone(),
                run_id: Some(run_id.to_string()),
                days: Some(o.shadow_days),
                until: None,
                picked_up: false,
            }),
        ) {
            tracing::warn!("event log: {e}");
        }
        return Ok(Staged::Shadow { shadow_id });
    }
    let d = deploy(opts, &passed.wasm, p, run_id)?;
    host_store::selection::expect(
        conn,
        d.version,
        opts.now.timestamp(),
        "backtest",
        passed.expected_return_pct_per_day,
        passed.expected_max_drawdown_pct,
    )
    .map_err(|e| e.to_string())?;
    Ok(Staged::Deployed(d))
}

/// Writes the candidate where the host can read it and hands it to the
/// cycle's [`Deployer`].
fn deploy(
    opts: &CycleOptions,
    wasm: &[u8],
    p: &Proposal,
    run_id: &str,
) -> Result<host_control::Deployed, String> {
    let origin = format!("orchestrator {run_id} {}", p.template);
    let dir = opts
        .paths
        .data_dir
        .join("orchestrator")
        .join("build")
        .join(run_id);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("candidate.wasm");
    std::fs::write(&path, wasm).map_err(|e| e.to_string())?;
    let abs = std::fs::canonicalize(&path).map_err(|e| e.to_string())?;
    opts.deployer
        .deploy(&Candidate {
            path: &abs,
            wasm,
            source: &p.source,
            params: &p.params,
            origin: &origin,
            now: opts.now.timestamp(),
        })
        .map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_stays_under_the_word_limit_and_keeps_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("doc.md");
        for i in 0..400 {
            update_document(
                &p,
                "Active: v1.",
                &format!("cycle {i} with some words to fill the journal quickly"),
                2_000,
            )
            .unwrap();
        }
        let doc = std::fs::read_to_string(&p).unwrap();
        assert!(doc.split_whitespace().count() <= 2_000);
        assert!(doc.starts_with("# Strategy document"));
        assert!(doc.contains("cycle 399 "));
        assert!(!doc.contains("cycle 0 "));
        assert_eq!(doc.matches("## Current strategy").count(), 1);
    }
}
