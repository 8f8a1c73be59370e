//! `[orchestrator]` settings: data, schedule, models and prices, compile
//! caps and the build sandbox (`[orchestrator.compile]`), check thresholds,
//! honest selection (walk-forward, held-out window, significance, search),
//! the forward shadow, tuning triggers and rollback. Every key optional.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[orchestrator]` section of settings.toml.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorSettings {
    /// Candle files the cycle falls back to when the host's candle store has
    /// none for a symbol; the first existing file per symbol wins.
    pub data: Vec<PathBuf>,
    /// Most recent hourly bars used (store or file).
    pub history_bars: usize,
    /// The final bars held out of the walk-forward and of everything the model sees.
    pub holdout_bars: usize,
    /// Nightly window, America/New_York wall-clock, "HH:MM".
    pub window_start: String,
    pub window_end: String,
    /// `auto` (Claude when ANTHROPIC_API_KEY is set, else offline), `offline` or `claude`.
    pub proposer: String,
    /// `anthropic` (key in ANTHROPIC_API_KEY) or `vertex` (Vertex AI's
    /// rawPredict, bearer token in VERTEX_ACCESS_TOKEN).
    pub provider: String,
    /// Vertex AI project and region (provider `vertex`).
    pub vertex_project: String,
    pub vertex_region: String,
    /// Default `https://api.anthropic.com`; with provider `vertex` an empty
    /// or Anthropic base means `https://{region}-aiplatform.googleapis.com`.
    pub base_url: String,
    pub writer_model: String,
    pub reviewer_model: String,
    pub max_tokens: u32,
    /// Further tries after a candidate fails its source check, compile or
    /// checks: the failure is fed back to the writer in the same conversation.
    pub max_repairs: u32,
    /// A reply cut at `max_tokens` is continued this many times, then refused.
    pub max_continuations: u32,
    /// Strategy candidates one cycle may develop (each with its repairs).
    pub candidates_per_night: u32,
    pub timeout_secs: u64,
    pub retries: u32,
    pub requests_per_minute: u32,
    /// Spending cap per night (24 h), USD.
    pub nightly_budget_usd: f64,
    /// USD per million input / output tokens: writer, reviewer.
    pub writer_price_in: f64,
    pub writer_price_out: f64,
    pub reviewer_price_in: f64,
    pub reviewer_price_out: f64,
    /// Analysis components run each cycle.
    pub market_analysis: PathBuf,
    pub trade_performance: PathBuf,
    /// Strategy document maintained by the cycle.
    pub strategy_document: PathBuf,
    pub compile_timeout_secs: u64,
    pub max_wasm_bytes: u64,
    pub max_source_bytes: usize,
    /// Extra crates a candidate may depend on: [["name", "version"]].
    pub allowed_deps: Vec<(String, String)>,
    /// Shared cargo target directory of candidates (default: <data>/orchestrator/target).
    pub target_dir: Option<PathBuf>,
    pub fuzz_calls: usize,
    pub window_bars: usize,
    pub lookahead_cuts: usize,
    pub shift_weeks: i64,
    pub warmup_bars: usize,
    /// Walk-forward folds (at least 6).
    pub walk_forward_folds: usize,
    /// Out-of-sample daily Sharpe a candidate needs whatever the incumbent did.
    pub min_oos_sharpe: f64,
    /// Largest p-value of the bootstrap accepted (the deflated Sharpe
    /// probability must reach 1 − alpha).
    pub significance_alpha: f64,
    pub bootstrap_resamples: usize,
    /// Mean block length of the stationary bootstrap, days.
    pub bootstrap_block_days: f64,
    /// Fewest paired out-of-sample days the test runs on (fewer: refused).
    pub min_significance_days: usize,
    /// The held-out window refuses a candidate trailing the incumbent there by more (points).
    pub holdout_tolerance_pct: f64,
    /// Parameter sets the cross-validated search tries per template candidate.
    pub search_candidates: usize,
    /// Largest grid a `tune_params` decision is fitted over (its values and
    /// ± one or two steps of each, `gate::neighbourhood`); 1: not fitted.
    pub tune_grid_max: usize,
    /// Days a passing candidate runs in shadow beside the incumbent before
    /// promotion (0: deployed at once).
    pub shadow_days: f64,
    /// Promotion refuses a shadow returning this many points less than the incumbent's replica.
    pub shadow_tolerance_pct: f64,
    /// Triggers.
    pub loss_threshold_pct: f64,
    pub consecutive_losses: u32,
    /// A winning streak this long asks for a review too (0: never).
    pub consecutive_wins: u32,
    pub every_n_trades: u64,
    pub atr_spike_pct: f64,
    pub cooldown_minutes: i64,
    /// Roll back a deployed candidate that trails its backtest and shadow
    /// expectation by this many percentage points ...
    pub rollback_underperform_pct: f64,
    /// ... once it has run this many days, or closed this many trades (0: days only).
    pub rollback_min_days: f64,
    pub rollback_min_trades: u64,
    /// `[orchestrator.compile]`: the sandbox and limits of candidate builds.
    pub compile: CompileSettings,
}

/// How candidate builds are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// bubblewrap: no network, a cleared environment, and a file system of
    /// only the toolchain, the SDK and the build directory. A host without a
    /// working `bwrap` refuses to compile.
    Bwrap,
    /// No sandbox: the model-written code is compiled with the host's view of
    /// the file system (the environment is still cleared and the limits still
    /// apply). Only for machines that hold no secrets; warned at every build.
    None,
}

/// `[orchestrator.compile]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompileSettings {
    /// `bwrap` (default) or `none` (unsafe opt-out).
    pub sandbox: SandboxMode,
    /// The bubblewrap binary (default: /usr/bin/bwrap, else `bwrap` on PATH).
    pub bwrap_path: Option<PathBuf>,
    /// Address space of each build process (RLIMIT_AS), MiB.
    pub memory_mb: u64,
    /// CPU time of each build process (RLIMIT_CPU), seconds.
    pub cpu_secs: u64,
    /// Largest file a build may write (RLIMIT_FSIZE), MiB.
    pub max_file_mb: u64,
    /// Size of the sandbox's private /tmp (a tmpfs), MiB.
    pub tmp_mb: u64,
    /// Compiler output kept in a rejection (the end of it), bytes.
    pub max_output_bytes: usize,
}

impl Default for CompileSettings {
    fn default() -> Self {
        CompileSettings {
            sandbox: SandboxMode::Bwrap,
            bwrap_path: None,
            memory_mb: 4096,
            cpu_secs: 300,
            max_file_mb: 256,
            tmp_mb: 256,
            max_output_bytes: 4096,
        }
    }
}

impl Default for OrchestratorSettings {
    fn default() -> Self {
        OrchestratorSettings {
            data: vec![
                "../shared/data/BTCUSD-1h.csv".into(),
                "data/sample/BTCUSD-1h.csv".into(),
            ],
            history_bars: 3000,
            holdout_bars: 240,
            window_start: "03:30".into(),
            window_end: "06:00".into(),
            proposer: "auto".into(),
            provider: "anthropic".into(),
            vertex_project: String::new(),
            vertex_region: "us-east5".into(),
            base_url: "https://api.anthropic.com".into(),
            writer_model: "claude-sonnet-4-5".into(),
            reviewer_model: "claude-opus-4-1".into(),
            max_tokens: 8000,
            max_repairs: 3,
            max_continuations: 2,
            candidates_per_night: 1,
            timeout_secs: 120,
            retries: 3,
            requests_per_minute: 10,
            nightly_budget_usd: 5.0,
            writer_price_in: 3.0,
            writer_price_out: 15.0,
            reviewer_price_in: 15.0,
            reviewer_price_out: 75.0,
            market_analysis: "target/wasm/market-analysis.wasm".into(),
            trade_performance: "target/wasm/trade-performance.wasm".into(),
            strategy_document: "strategies/strategy_document.md".into(),
            compile_timeout_secs: 600,
            max_wasm_bytes: 4 << 20,
            max_source_bytes: 64 << 10,
            allowed_deps: Vec::new(),
            target_dir: None,
            fuzz_calls: 40,
            window_bars: 240,
            lookahead_cuts: 3,
            shift_weeks: 53,
            warmup_bars: 200,
            walk_forward_folds: 6,
            min_oos_sharpe: 0.0,
            significance_alpha: 0.05,
            bootstrap_resamples: 2_000,
            bootstrap_block_days: 3.0,
            min_significance_days: 15,
            holdout_tolerance_pct: 2.0,
            search_candidates: 8,
            tune_grid_max: 9,
            shadow_days: 7.0,
            shadow_tolerance_pct: 1.0,
            loss_threshold_pct: 2.0,
            consecutive_losses: 3,
            consecutive_wins: 5,
            every_n_trades: 20,
            atr_spike_pct: 50.0,
            cooldown_minutes: 60,
            rollback_underperform_pct: 5.0,
            rollback_min_days: 3.0,
            compile: CompileSettings::default(),
            rollback_min_trades: 10,
        }
    }
}

impl OrchestratorSettings {
    /// Refuses values that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("window_start", &self.window_start),
            ("window_end", &self.window_end),
        ] {
            super::schedule::parse_hhmm(v).ok_or_else(|| format!("{name} {v:?} is not HH:MM"))?;
        }
        if !matches!(self.proposer.as_str(), "auto" | "offline" | "claude") {
            return Err(format!(
                "proposer {:?}: expected auto, offline or claude",
                self.proposer
            ));
        }
        match self.provider.as_str() {
            "anthropic" => {}
            "vertex"
                if !self.vertex_project.trim().is_empty()
                    && !self.vertex_region.trim().is_empty() => {}
            "vertex" => {
                return Err("provider \"vertex\" needs vertex_project and vertex_region".into())
            }
            other => return Err(format!("provider {other:?}: expected anthropic or vertex")),
        }
        if self.candidates_per_night == 0 {
            return Err("candidates_per_night must be at least 1".into());
        }
        if self.requests_per_minute == 0 || self.history_bars < 100 {
            return Err(
                "requests_per_minute must be positive and history_bars at least 100".into(),
            );
        }
        if self.walk_forward_folds < 6 {
            return Err(format!(
                "walk_forward_folds ({}) must be at least 6",
                self.walk_forward_folds
            ));
        }
        if self.holdout_bars + 100 > self.history_bars {
            return Err(format!(
                "holdout_bars ({}) must leave at least 100 of the {} history_bars for the walk-forward",
                self.holdout_bars, self.history_bars
            ));
        }
        if !(self.significance_alpha > 0.0 && self.significance_alpha < 0.5)
            || self.bootstrap_resamples < 100
            || self.bootstrap_block_days.is_nan()
            || self.bootstrap_block_days < 1.0
        {
            return Err(format!(
                "significance_alpha ({}) must be in (0, 0.5), bootstrap_resamples ({}) at least 100, bootstrap_block_days ({}) at least 1",
                self.significance_alpha, self.bootstrap_resamples, self.bootstrap_block_days
            ));
        }
        for (name, v) in [
            ("nightly_budget_usd", self.nightly_budget_usd),
            ("writer_price_in", self.writer_price_in),
            ("writer_price_out", self.writer_price_out),
            ("reviewer_price_in", self.reviewer_price_in),
            ("reviewer_price_out", self.reviewer_price_out),
            ("holdout_tolerance_pct", self.holdout_tolerance_pct),
            ("shadow_days", self.shadow_days),
            ("shadow_tolerance_pct", self.shadow_tolerance_pct),
            ("rollback_underperform_pct", self.rollback_underperform_pct),
            ("rollback_min_days", self.rollback_min_days),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} ({v}) must be a non-negative number"));
            }
        }
        let c = &self.compile;
        if c.memory_mb < 512 || c.cpu_secs == 0 || c.max_file_mb == 0 || c.tmp_mb == 0 {
            return Err("[orchestrator.compile]: memory_mb must be at least 512 and cpu_secs, max_file_mb, tmp_mb positive".into());
        }
        Ok(())
    }
}

impl OrchestratorSettings {
    /// The Messages API endpoint and provider these settings name.
    pub fn provider(&self) -> (super::claude::Provider, String) {
        match self.provider.as_str() {
            "vertex" => {
                let base =
                    if self.base_url.is_empty() || self.base_url.contains("api.anthropic.com") {
                        format!("https://{}-aiplatform.googleapis.com", self.vertex_region)
                    } else {
                        self.base_url.clone()
                    };
                (
                    super::claude::Provider::Vertex {
                        project: self.vertex_project.clone(),
                        region: self.vertex_region.clone(),
                    },
                    base,
                )
            }
            _ => (super::claude::Provider::Anthropic, self.base_url.clone()),
        }
    }
}
