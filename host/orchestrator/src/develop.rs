//! One decision taken from proposal to verdict, in the order the gates
//! cost: source check → compile → contract, fuzz, lookahead, startup →
//! backtests (walk-forward and paper, in `checks`) → the declared parameters
//! accepted by `initialize` → review (the reviewer sees the diff and every
//! result). The automatic gates run inside the repair loop of
//! [`super::repair::develop`]; the review runs once, on the candidate that
//! passed them. Analysis modules take the same path with their own checks
//! (loads as an analysis component and reports on the real read-only
//! database without trapping).

use super::checks::{self, CheckConfig, CheckFigures, CheckInput, Rejection};
use super::repair::{self, Developed};
use super::{compile, compile_config, source_check, CycleOptions, OrchestratorError, Proposer};
use super::{Context, Proposal};
use host_sandbox::{open_read_only, Runtime};
use host_trading::backtest::{self, WasmDriver};
use rusqlite::Connection;
use std::sync::Arc;

/// The crate id of a candidate: run, kind and the source's hash, so
/// candidates sharing the target directory never overwrite each other.
/// The candidate crate's name: the run, the source's hash, and this
/// process and build, so two cycles sharing the candidates' target directory
/// (two hosts, parallel tests with one clock) never build or clean up the
/// same crate at once.
fn crate_id(run_id: &str, kind: &str, source: &str) -> String {
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}-{kind}{}-{}-{n}",
        run_id.to_ascii_lowercase().replace('t', "-"),
        &host_sandbox::module_hash(source.as_bytes())[..12],
        std::process::id()
    )
}

fn source_gate(p: &Proposal, max_bytes: usize) -> Result<(), Rejection> {
    if p.source.trim().is_empty() {
        return Err(Rejection::NoSource {
            detail: format!(
                "decision {} came without a complete ```rust block",
                p.decision.as_str()
            ),
        });
    }
    source_check::check(&p.source, max_bytes).map_err(|r| Rejection::SourceRefused {
        refusals: r.iter().map(|x| x.to_string()).collect(),
    })
}

/// The strategy candidate built and checked, ready for review and deploy.
pub struct Built {
    pub report: backtest::BacktestReport,
    /// What the selection gate passed (fitted source and parameters, expectations).
    pub passed: super::gate::Passed,
}

/// The selection gate a screened candidate goes through (walk-forward fitted
/// in sample, significance, held-out window): the cycle builds it.
pub type Gate<'a> = dyn FnMut(
        &Proposal,
        &[u8],
        &host_sandbox::StrategyModule,
        &mut CheckFigures,
    ) -> Result<super::gate::Passed, Rejection>
    + 'a;

/// Up to `candidates_per_night` strategy candidates, each through
/// [`strategy`]: after one is refused, the proposer may offer another (a
/// different idea, not a repair); the first that passes is the cycle's.
#[allow(clippy::too_many_arguments)]
pub fn candidates(
    opts: &CycleOptions,
    conn: &Connection,
    proposer: &mut dyn Proposer,
    ctx: &Context,
    first: Proposal,
    input: &CheckInput,
    gate: &mut Gate<'_>,
    cfg: &CheckConfig,
    figures: &mut CheckFigures,
    run_id: &str,
    mut bandit: Option<&mut repair::Bandit>,
    draws: &mut Vec<repair::BanditDraw>,
) -> Result<Developed<Built>, OrchestratorError> {
    let mut proposal = first;
    let mut n = 1u32;
    loop {
        let subject = if n == 1 {
            "strategy".to_string()
        } else {
            format!("strategy candidate {n}")
        };
        let d = strategy(
            opts, conn, proposer, ctx, proposal, input, gate, cfg, figures, run_id, &subject,
        )?;
        let rejection = match &d.result {
            Ok(_) => return Ok(d),
            Err(r) => r.clone(),
        };
        if n >= opts.orchestrator.candidates_per_night {
            return Ok(d);
        }
        // the bandit draws the next kind, this refusal counted
        let draw = bandit.as_mut().and_then(|b| {
            b.refused(d.proposal.decision);
            b.draw()
        });
        let asked = Context {
            requested: draw.as_ref().map(|x| x.decision).or(ctx.requested),
            ..ctx.clone()
        };
        let next = proposer.next_candidate(conn, &asked, &d.proposal, &rejection);
        if let Some(x) = draw {
            let answered = match &next {
                Ok(Some(Ok(p))) => Some(p.decision),
                _ => None,
            };
            draws.push(repair::BanditDraw::new(n + 1, x, answered));
        }
        match next {
            Ok(Some(Ok(next))) => {
                proposal = next;
                n += 1;
            }
            Ok(Some(Err(r))) => {
                return Ok(Developed {
                    result: Err(r),
                    ..d
                })
            }
            Ok(None) => return Ok(d),
            Err(e) => {
                tracing::warn!("no further candidate: {e}");
                return Ok(d);
            }
        }
    }
}

/// The strategy decision through every gate, repairs included, then the review.
#[allow(clippy::too_many_arguments)]
pub fn strategy(
    opts: &CycleOptions,
    conn: &Connection,
    proposer: &mut dyn Proposer,
    ctx: &Context,
    first: Proposal,
    input: &CheckInput,
    gate: &mut Gate<'_>,
    cfg: &CheckConfig,
    figures: &mut CheckFigures,
    run_id: &str,
    subject: &str,
) -> Result<Developed<Built>, OrchestratorError> {
    let o = &opts.orchestrator;
    let work = opts.paths.data_dir.join("orchestrator");
    let ccfg = compile_config(opts, &work);
    let now = opts.now.timestamp();
    let mut developed = repair::develop(
        proposer,
        conn,
        ctx,
        first,
        o.max_repairs,
        subject,
        run_id,
        now,
        |p, _attempt| {
            source_gate(p, o.max_source_bytes)?;
            let built = compile::compile(&ccfg, &crate_id(run_id, "", &p.source), &p.source)
                .map_err(|e| Rejection::CompileFailed {
                    detail: e.to_string(),
                })?;
            *figures = CheckFigures::default();
            // contract, fuzz, lookahead, startup; then the selection gate
            let module = checks::screen(input, &built.wasm, cfg, figures)?;
            // the declared parameters are deployed (and a tune_params
            // grid is centred on them): initialize must accept them
            if !p.params.is_empty() {
                WasmDriver::start(&module, input.risk, input.symbols, &p.params).map_err(|e| {
                    Rejection::Contract {
                        detail: format!("initialize refused the declared PARAMS: {e}"),
                    }
                })?;
            }
            let passed = gate(p, &built.wasm, &module, figures)?;
            Ok(Built {
                report: passed.report.clone(),
                passed,
            })
        },
    )?;
    if developed.result.is_ok() {
        let dossier = super::review::dossier(
            ctx,
            &developed.proposal,
            figures,
            developed.attempts,
            ctx.strategy_source.as_deref(),
        );
        review(
            proposer,
            conn,
            ctx,
            &mut developed,
            &dossier,
            run_id,
            now,
            subject,
        )?;
    }
    Ok(developed)
}

/// An analysis module that passed its gates: its name, component and report.
pub struct BuiltAnalysis {
    pub module: String,
    pub wasm: Vec<u8>,
    pub hash: String,
    pub report: host_sandbox::bindings::Report,
}

/// An analysis decision through its gates (repairs included) and the review.
#[allow(clippy::too_many_arguments)]
pub fn analysis(
    opts: &CycleOptions,
    conn: &Connection,
    rt: &Arc<Runtime>,
    proposer: &mut dyn Proposer,
    ctx: &Context,
    first: Proposal,
    run_id: &str,
) -> Result<Developed<BuiltAnalysis>, OrchestratorError> {
    let o = &opts.orchestrator;
    let now = opts.now.timestamp();
    let module = first.module.clone().unwrap_or_default();
    let subject = match super::reply::AnalysisModule::parse(&module) {
        Some(m) => m.name(),
        None => {
            let r = Rejection::Review {
                detail: format!("MODULE {module:?}: expected market-analysis or trade-performance"),
            };
            repair::record_attempt(conn, run_id, now, "analysis", 1, &first, Err(&r))?;
            return Ok(Developed {
                proposal: first,
                result: Err(r),
                attempts: 1,
            });
        }
    };
    let work = opts.paths.data_dir.join("orchestrator");
    let ccfg = compile_config(opts, &work);
    let mut developed = repair::develop(
        proposer,
        conn,
        ctx,
        first,
        o.max_repairs,
        subject,
        run_id,
        now,
        |p, _attempt| {
            source_gate(p, o.max_source_bytes)?;
            let built = compile::compile(&ccfg, &crate_id(run_id, "a-", &p.source), &p.source)
                .map_err(|e| Rejection::CompileFailed {
                    detail: e.to_string(),
                })?;
            let m = rt
                .load_analysis(&built.wasm)
                .map_err(|e| Rejection::Contract {
                    detail: e.to_string(),
                })?;
            let db = open_read_only(&opts.paths.db()).map_err(|e| Rejection::Contract {
                detail: e.to_string(),
            })?;
            let report = m
                .instantiate(Some(db))
                .and_then(|mut i| i.analyze(now))
                .map_err(|e| match e {
                    host_sandbox::ModuleError::Trap { kind, .. } => Rejection::Trapped {
                        stage: "analysis".into(),
                        endless: matches!(
                            kind,
                            host_sandbox::TrapKind::OutOfFuel | host_sandbox::TrapKind::Deadline
                        ),
                        trap: kind.to_string(),
                    },
                    other => Rejection::BadOutput {
                        stage: "analysis".into(),
                        detail: other.to_string(),
                    },
                })?;
            Ok(BuiltAnalysis {
                module: subject.to_string(),
                wasm: built.wasm,
                hash: m.info().hash.clone(),
                report,
            })
        },
    )?;
    if let Ok(b) = &developed.result {
        let old = ctx
            .analysis_sources
            .iter()
            .find(|(m, _)| m == subject)
            .map(|(_, s)| s.as_str());
        let mut dossier = super::review::dossier(
            ctx,
            &developed.proposal,
            &CheckFigures::default(),
            developed.attempts,
            old,
        );
        dossier.push_str(&format!(
            "\n\n=== THIS IS THE ANALYSIS MODULE {subject}; its report on the real database ===\n{}\n",
            serde_json::to_string_pretty(&super::report_json(&b.report)).unwrap_or_default()
        ));
        review(
            proposer,
            conn,
            ctx,
            &mut developed,
            &dossier,
            run_id,
            now,
            subject,
        )?;
    }
    Ok(developed)
}

/// The reviewer's verdict on a candidate that passed its gates; a refusal
/// is audited as the last attempt and becomes the result.
#[allow(clippy::too_many_arguments)]
fn review<T>(
    proposer: &mut dyn Proposer,
    conn: &Connection,
    ctx: &Context,
    developed: &mut Developed<T>,
    dossier: &str,
    run_id: &str,
    now: i64,
    subject: &str,
) -> Result<(), OrchestratorError> {
    let verdict = proposer
        .review_candidate(conn, ctx, &developed.proposal, dossier)
        .map_err(|e| Rejection::Review {
            detail: e.to_string(),
        })
        .and_then(|v| v.map_err(|detail| Rejection::Review { detail }));
    if let Err(r) = verdict {
        repair::record_attempt(
            conn,
            run_id,
            now,
            subject,
            developed.attempts,
            &developed.proposal,
            Err(&r),
        )?;
        developed.result = Err(r);
    }
    Ok(())
}
