//! The repair loop and the memory of attempts. A candidate that fails a
//! gate a model can fix (source refused, compile errors, a trap or panic in
//! the contract or fuzz checks, a lookahead or startup difference, a missing
//! or bad source) goes back to its writer with what failed, in the same
//! conversation, for up to `max_repairs` further tries; a candidate that
//! merely does not beat the incumbent is never "repaired" (that would fit the
//! test data). Every attempt is a row of `orchestrator_attempts`; those rows
//! are the memory fed into the next contexts; the runs are the evidence of a
//! Thompson sampling bandit over decision kinds, which decides the kind a
//! cycle asks for when the night allows more than one candidate.

use super::checks::Rejection;
use super::proposer::{DecisionKind, Proposal, Rng};
use super::{Context, OrchestratorError, Proposer};
use rusqlite::{params, Connection};
use serde::Serialize;

/// Compiler errors shown to the writer.
pub const MAX_COMPILER_ERRORS: usize = 8;
/// Lines of one compiler error shown (header, location, source and labels).
const LINES_PER_ERROR: usize = 8;

/// The first `n` errors of cargo's human output in short form: the error
/// line, its location in src/lib.rs and the source lines and labels under
/// it. Warnings and cargo's own chatter are left out.
pub fn short_compiler_errors(output: &str, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in output.lines() {
        let t = line.trim_end();
        let starts_diag = t.starts_with("error") || t.starts_with("warning");
        if starts_diag {
            if let Some(e) = current.take() {
                out.push(e.join("\n"));
            }
            if out.len() >= n {
                break;
            }
            let summary = t.starts_with("error: could not compile")
                || t.starts_with("error: aborting")
                || t.starts_with("warning: build failed");
            if t.starts_with("error") && !summary {
                current = Some(vec![t.to_string()]);
            }
            continue;
        }
        if let Some(e) = current.as_mut() {
            if t.is_empty() {
                out.push(current.take().unwrap_or_default().join("\n"));
                if out.len() >= n {
                    break;
                }
            } else if e.len() < LINES_PER_ERROR {
                // drop the build directory from locations: the model knows one file
                let l = match t.find("--> ") {
                    Some(p) => format!(
                        "{}--> {}",
                        &t[..p],
                        t[p + 4..]
                            .rsplit_once("src/lib.rs")
                            .map(|(_, rest)| format!("src/lib.rs{rest}"))
                            .unwrap_or_else(|| t[p + 4..].to_string())
                    ),
                    None => t.to_string(),
                };
                e.push(l);
            }
        }
    }
    if let Some(e) = current.take() {
        if out.len() < n {
            out.push(e.join("\n"));
        }
    }
    out
}

/// What goes back to the writer after `r`, or `None` when a repair would
/// only fit the test (a candidate that underperforms is refused, not tuned).
pub fn feedback(r: &Rejection) -> Option<String> {
    let text = match r {
        Rejection::SourceRefused { refusals } => format!(
            "The source check refused your source (nothing was compiled):\n- {}",
            refusals.join("\n- ")
        ),
        Rejection::CompileFailed { detail } => {
            let errors = short_compiler_errors(detail, MAX_COMPILER_ERRORS);
            if errors.is_empty() {
                format!(
                    "It does not compile:\n{}",
                    detail.chars().take(3_000).collect::<String>()
                )
            } else {
                format!(
                    "It does not compile. The first {} compiler error(s):\n\n{}",
                    errors.len(),
                    errors.join("\n\n")
                )
            }
        }
        Rejection::Contract { detail } => format!("It breaks the contract: {detail}"),
        Rejection::Trapped { stage, trap, .. } => format!(
            "It trapped in the {stage} check: {trap}. The fuzz check calls analyze with no candles, 1-5 candles, \
extreme and flat prices, zero volume and gaps; handle every Option and never index past a slice."
        ),
        Rejection::BadOutput { stage, detail } => {
            format!("The {stage} check refused its output: {detail}")
        }
        Rejection::Lookahead { ts, detail } => format!(
            "The lookahead check found different signals at {ts}: {detail}. Decisions must depend only on what \
`market` returns at `now`, never on dates, timestamps or remembered price levels."
        ),
        Rejection::StartupSensitive { ts, detail } => format!(
            "The startup check found different signals at {ts}: {detail}. Signals must not depend on how long the \
module has run (no scan counters or state accumulated since start); derive everything from the candles."
        ),
        Rejection::NoSource { detail } => format!(
            "{detail}. Answer with the complete src/lib.rs in one ```rust block."
        ),
        _ => return None,
    };
    Some(format!(
        "{text}\n\nFix it and answer again with the same DECISION/REASON/PARAMS lines and the complete corrected \
source in one ```rust block."
    ))
}

/// Which part a candidate changes: `strategy` or an analysis module's name.
pub type Subject<'a> = &'a str;

/// Stores one attempt.
#[allow(clippy::too_many_arguments)]
pub fn record_attempt(
    conn: &Connection,
    run_id: &str,
    ts: i64,
    subject: Subject,
    attempt: u32,
    p: &Proposal,
    result: Result<(), &Rejection>,
) -> rusqlite::Result<()> {
    let (outcome, code, detail) = match result {
        Ok(()) => ("passed", None, String::new()),
        Err(r) => (
            "rejected",
            Some(r.code()),
            r.to_string().chars().take(4_000).collect(),
        ),
    };
    conn.execute(
        "INSERT INTO orchestrator_attempts (run_id, ts, subject, attempt, decision, source_hash, outcome, rejection_code, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            run_id,
            ts,
            subject,
            attempt,
            p.decision.as_str(),
            host_sandbox::module_hash(p.source.as_bytes()),
            outcome,
            code,
            detail
        ],
    )?;
    Ok(())
}

/// How a candidate's development ended.
#[derive(Debug)]
pub struct Developed<T> {
    /// The last proposal tried (the one deployed when `result` is Ok).
    pub proposal: Proposal,
    pub result: Result<T, Rejection>,
    /// Attempts made (1 = no repair).
    pub attempts: u32,
}

/// Evaluates `first`, and while it fails a repairable gate and repairs are
/// left, asks `proposer` for a corrected proposal; every attempt recorded.
/// A repair the proposer cannot make (no conversation, budget spent, a
/// transport error) ends the loop with the last rejection.
#[allow(clippy::too_many_arguments)]
pub fn develop<T>(
    proposer: &mut dyn Proposer,
    conn: &Connection,
    ctx: &Context,
    first: Proposal,
    max_repairs: u32,
    subject: Subject,
    run_id: &str,
    ts: i64,
    mut evaluate: impl FnMut(&Proposal, u32) -> Result<T, Rejection>,
) -> Result<Developed<T>, OrchestratorError> {
    let mut p = first;
    let mut attempt = 1u32;
    // a repair that repeats a refused source is refused again without rebuilding it
    let mut seen: Vec<(String, Rejection)> = Vec::new();
    loop {
        let hash = host_sandbox::module_hash(p.source.as_bytes());
        let result = match seen.iter().find(|(h, _)| *h == hash) {
            Some((_, r)) => Err(r.clone()),
            None => evaluate(&p, attempt),
        };
        if let Err(r) = &result {
            seen.push((hash, r.clone()));
        }
        record_attempt(
            conn,
            run_id,
            ts,
            subject,
            attempt,
            &p,
            result.as_ref().map(|_| ()),
        )?;
        let rejection = match result {
            Ok(t) => {
                return Ok(Developed {
                    proposal: p,
                    result: Ok(t),
                    attempts: attempt,
                })
            }
            Err(r) => r,
        };
        let Some(text) = feedback(&rejection).filter(|_| attempt <= max_repairs) else {
            return Ok(Developed {
                proposal: p,
                result: Err(rejection),
                attempts: attempt,
            });
        };
        let next = match proposer.repair(conn, ctx, &p, &text) {
            Ok(Some(next)) => next,
            Ok(None) => {
                return Ok(Developed {
                    proposal: p,
                    result: Err(rejection),
                    attempts: attempt,
                })
            }
            Err(e) => {
                tracing::warn!("repair of {subject} stopped: {e}");
                return Ok(Developed {
                    proposal: p,
                    result: Err(rejection),
                    attempts: attempt,
                });
            }
        };
        attempt += 1;
        match next {
            Ok(np) => p = np,
            // the repair itself was refused (cut answer, no source): recorded, ends the loop
            Err(r) => {
                record_attempt(conn, run_id, ts, subject, attempt, &p, Err(&r))?;
                return Ok(Developed {
                    proposal: p,
                    result: Err(r),
                    attempts: attempt,
                });
            }
        }
    }
}

/// One past attempt, for the context.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PastAttempt {
    pub ts: i64,
    pub run_id: String,
    pub subject: String,
    pub attempt: u32,
    pub decision: String,
    pub outcome: String,
    pub rejection_code: Option<String>,
    pub detail: String,
}

/// The last `n` attempts, oldest first, with why each stopped.
pub fn memory(conn: &Connection, n: usize) -> rusqlite::Result<Vec<PastAttempt>> {
    let mut stmt = conn.prepare(
        "SELECT ts, run_id, subject, attempt, decision, outcome, rejection_code, detail FROM orchestrator_attempts
         ORDER BY id DESC LIMIT ?1",
    )?;
    let mut rows = stmt
        .query_map([n as i64], |r| {
            Ok(PastAttempt {
                ts: r.get(0)?,
                run_id: r.get(1)?,
                subject: r.get(2)?,
                attempt: r.get(3)?,
                decision: r.get(4)?,
                outcome: r.get(5)?,
                rejection_code: r.get(6)?,
                detail: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.reverse();
    Ok(rows)
}

/// The decision kinds the bandit chooses among.
pub const ARMS: [DecisionKind; 4] = [
    DecisionKind::TuneParams,
    DecisionKind::Tweak,
    DecisionKind::Restructure,
    DecisionKind::Overhaul,
];

/// Acceptance evidence of one decision kind.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Arm {
    pub decision: DecisionKind,
    /// Strategy candidates of this kind that were deployed / tried (per run).
    pub accepted: u32,
    pub tried: u32,
    /// The draw that ranked it this time.
    pub draw: f64,
}

/// A Beta(a, b) draw from two Gamma draws (Marsaglia–Tsang), deterministic in `rng`.
fn beta(rng: &mut Rng, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a);
    let y = gamma(rng, b);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        0.5
    }
}

fn normal(rng: &mut Rng) -> f64 {
    // Box–Muller
    let u1 = rng.unit().max(f64::MIN_POSITIVE);
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn gamma(rng: &mut Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.unit().max(f64::MIN_POSITIVE);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.unit().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Thompson sampling over [`ARMS`] from the runs so far: each kind's
/// acceptance rate drawn from Beta(1 + accepted, 1 + rejected); ranked by
/// the draw, best first. Deterministic in `seed`.
pub fn bandit(conn: &Connection, seed: u64) -> rusqlite::Result<Vec<Arm>> {
    let mut rng = Rng::new(seed ^ 0x00BA_4D17);
    let mut arms = Vec::new();
    for d in ARMS {
        let (tried, accepted): (u32, u32) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(outcome = 'deployed'), 0) FROM orchestrator_runs WHERE decision = ?1",
            [d.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let draw = beta(
            &mut rng,
            1.0 + f64::from(accepted),
            1.0 + f64::from(tried.saturating_sub(accepted)),
        );
        arms.push(Arm {
            decision: d,
            accepted,
            tried,
            draw,
        });
    }
    arms.sort_by(|a, b| b.draw.total_cmp(&a.draw));
    Ok(arms)
}

/// One arm's Beta posterior and its sample in a draw.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Posterior {
    pub decision: DecisionKind,
    /// Beta(alpha, beta): 1 + accepted, 1 + refused.
    pub alpha: f64,
    pub beta: f64,
    pub sample: f64,
}

/// One Thompson draw: the kind requested and every arm's posterior.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Draw {
    pub decision: DecisionKind,
    pub posteriors: Vec<Posterior>,
}

/// The bandit that decides which decision kind the cycle asks for, when a
/// night allows more than one candidate: Thompson sampling over `arms` from
/// the acceptance of past runs (`orchestrator_runs`), a candidate refused
/// tonight counted as one more refusal of its kind for the next draw.
/// Deterministic in the seed.
#[derive(Debug, Clone)]
pub struct Bandit {
    rng: Rng,
    /// (kind, accepted, refused)
    evidence: Vec<(DecisionKind, u32, u32)>,
}

impl Bandit {
    /// The evidence of `arms` in the runs so far.
    pub fn from_history(
        conn: &Connection,
        seed: u64,
        arms: &[DecisionKind],
    ) -> rusqlite::Result<Bandit> {
        let mut evidence = Vec::new();
        for d in arms {
            let (tried, accepted): (u32, u32) = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(outcome = 'deployed'), 0) FROM orchestrator_runs WHERE decision = ?1",
                [d.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            evidence.push((*d, accepted, tried.saturating_sub(accepted)));
        }
        Ok(Bandit {
            rng: Rng::new(seed ^ 0x0D2A_3B17),
            evidence,
        })
    }

    /// Samples every arm's acceptance rate; the highest sample is requested.
    /// `None` without arms.
    pub fn draw(&mut self) -> Option<Draw> {
        let mut posteriors = Vec::new();
        for &(decision, accepted, refused) in &self.evidence {
            let (alpha, b) = (1.0 + f64::from(accepted), 1.0 + f64::from(refused));
            let sample = beta(&mut self.rng, alpha, b);
            posteriors.push(Posterior {
                decision,
                alpha,
                beta: b,
                sample,
            });
        }
        let best = posteriors
            .iter()
            .max_by(|a, b| a.sample.total_cmp(&b.sample))?
            .decision;
        Some(Draw {
            decision: best,
            posteriors,
        })
    }

    /// A candidate of `kind` was refused tonight.
    pub fn refused(&mut self, kind: DecisionKind) {
        if let Some(e) = self.evidence.iter_mut().find(|e| e.0 == kind) {
            e.2 += 1;
        }
    }
}

/// A draw of the cycle and what the proposer answered to it (in the report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BanditDraw {
    /// The strategy candidate it was drawn for (1 = the first).
    pub candidate: u32,
    pub draw: Draw,
    /// The kind of the answer (`None`: no strategy decision).
    pub answered: Option<DecisionKind>,
    /// Answered with another kind than requested (`no_change` is always
    /// allowed): audited, and still developed as the kind it is.
    pub off_request: bool,
}

impl BanditDraw {
    pub fn new(candidate: u32, draw: Draw, answered: Option<DecisionKind>) -> BanditDraw {
        let off_request =
            answered.is_some_and(|a| a != draw.decision && a != DecisionKind::NoChange);
        if off_request {
            tracing::warn!(
                requested = draw.decision.as_str(),
                answered = answered.map(|a| a.as_str()).unwrap_or_default(),
                "the proposer answered off request"
            );
        }
        BanditDraw {
            candidate,
            draw,
            answered,
            off_request,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bandit_requests_the_accepted_kind_far_more_often_and_is_seeded() {
        let conn = host_store::db::open_in_memory().unwrap();
        for (d, outcome) in [("tune_params", "deployed"), ("overhaul", "rejected")] {
            for i in 0..10 {
                conn.execute(
                    "INSERT INTO orchestrator_runs (run_id, ts, trigger, decision, outcome, report) VALUES (?1, 0, 't', ?2, ?3, '{}')",
                    params![format!("{d}{i}"), d, outcome],
                )
                .unwrap();
            }
        }
        let arms = [DecisionKind::TuneParams, DecisionKind::Overhaul];
        let draws = |seed: u64| -> Vec<Draw> {
            let mut b = Bandit::from_history(&conn, seed, &arms).unwrap();
            (0..400).map(|_| b.draw().unwrap()).collect()
        };
        let d = draws(7);
        let tune = d
            .iter()
            .filter(|x| x.decision == DecisionKind::TuneParams)
            .count();
        let overhaul = d.len() - tune;
        assert!(
            tune > 20 * overhaul.max(1),
            "tune {tune}, overhaul {overhaul}"
        );
        assert_eq!(d[0].posteriors[0].alpha, 11.0);
        assert_eq!(
            (d[0].posteriors[1].alpha, d[0].posteriors[1].beta),
            (1.0, 11.0)
        );
        assert_eq!(draws(7), d, "the same seed draws the same");
        assert_ne!(draws(8), d);
        // refusals tonight move the evidence
        let mut b = Bandit::from_history(&conn, 1, &arms).unwrap();
        for _ in 0..2_000 {
            b.refused(DecisionKind::TuneParams);
        }
        assert_eq!(b.draw().unwrap().posteriors[0].beta, 2_001.0);
        let after = (0..100)
            .filter(|_| b.draw().unwrap().decision == DecisionKind::Overhaul)
            .count();
        assert!(after > 80, "{after}");
        assert!(Bandit::from_history(&conn, 1, &[])
            .unwrap()
            .draw()
            .is_none());
    }

    const CARGO: &str = r#"   Compiling candidate-x v0.1.0 (/data/orchestrator/build/x)
warning: unused variable: `p`
 --> /data/orchestrator/build/x/src/lib.rs:9:30
  |
9 |     fn analyze(&mut self, p: &Portfolio) {}
  |                           ^ help: prefix it with an underscore: `_p`

error[E0308]: mismatched types
  --> /data/orchestrator/build/x/src/lib.rs:12:22
   |
12 |         let n: u32 = "not a number";
   |                ---   ^^^^^^^^^^^^^^ expected `u32`, found `&str`
   |                |
   |                expected due to this

error[E0425]: cannot find value `fast` in this scope
  --> /data/orchestrator/build/x/src/lib.rs:20:9
   |
20 |         fast + 1
   |         ^^^^ not found in this scope

error: aborting due to 2 previous errors

Some errors have detailed explanations: E0308, E0425.
error: could not compile `candidate-x` (lib) due to 2 previous errors
"#;

    #[test]
    fn compiler_errors_in_short_form_without_warnings_or_paths() {
        let e = short_compiler_errors(CARGO, 8);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].starts_with("error[E0308]: mismatched types"));
        assert!(e[0].contains("--> src/lib.rs:12:22"), "{}", e[0]);
        assert!(e[0].contains("expected `u32`, found `&str`"));
        assert!(!e.iter().any(|x| x.contains("/data/orchestrator")));
        assert!(e[1].contains("cannot find value `fast`"));
        assert_eq!(short_compiler_errors(CARGO, 1).len(), 1);
    }

    #[test]
    fn underperforming_is_never_repaired_but_a_trap_is() {
        assert!(feedback(&Rejection::Underperforms {
            candidate: Some(0.1),
            incumbent: Some(0.5),
            floor: 0.0,
        })
        .is_none());
        assert!(feedback(&Rejection::Drawdown {
            drawdown_pct: 30.0,
            limit_pct: 20.0
        })
        .is_none());
        let f = feedback(&Rejection::Trapped {
            stage: "fuzz".into(),
            trap: "module panicked: index out of bounds".into(),
            endless: false,
        })
        .unwrap();
        assert!(f.contains("index out of bounds") && f.contains("```rust"));
    }

    #[test]
    fn the_bandit_prefers_what_was_accepted() {
        let conn = host_store::db::open_in_memory().unwrap();
        for (d, outcome, n) in [
            ("tweak", "deployed", 8),
            ("overhaul", "rejected", 8),
            ("tweak", "rejected", 1),
        ] {
            for _ in 0..n {
                conn.execute(
                    "INSERT INTO orchestrator_runs (run_id, ts, trigger, decision, outcome, report) VALUES ('r', 0, 't', ?1, ?2, '{}')",
                    params![d, outcome],
                )
                .unwrap();
            }
        }
        let firsts: Vec<DecisionKind> = (0..50)
            .map(|s| bandit(&conn, s).unwrap()[0].decision)
            .collect();
        let tweak = firsts.iter().filter(|d| **d == DecisionKind::Tweak).count();
        let overhaul = firsts
            .iter()
            .filter(|d| **d == DecisionKind::Overhaul)
            .count();
        assert!(
            tweak > 25 && overhaul < 3,
            "tweak {tweak}, overhaul {overhaul}"
        );
        let arms = bandit(&conn, 1).unwrap();
        let t = arms
            .iter()
            .find(|a| a.decision == DecisionKind::Tweak)
            .unwrap();
        assert_eq!((t.accepted, t.tried), (8, 9));
    }
}
