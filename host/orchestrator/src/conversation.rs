//! The Claude proposer: one multi-turn conversation per cycle with the
//! writer model (its first turn the labelled context, the generated API
//! reference, a complete example strategy, the analysis modules' sources and
//! the memory of past attempts; later turns the failures of the gates, for
//! repairs), and a separate single-turn review by the reviewer model of a
//! candidate that passed every gate. A reply cut at `max_tokens` is
//! continued (the partial answer sent back as the assistant's prefix) up to
//! `max_continuations` times, then refused with its reason; it never
//! becomes an empty source.

use super::checks::Rejection;
use super::claude::{Claude, Price, StopReason, Turn};
use super::proposer::{DecisionKind, Proposal};
use super::reply::{parse_verdict, parse_writer, Decisions, Verdict};
use super::{reference, review, Context, OrchestratorError, OrchestratorSettings, Proposer};
use rusqlite::Connection;

/// The writer's instructions.
pub const WRITER_SYSTEM: &str = "You maintain a crypto trading strategy that runs as a sandboxed WebAssembly \
component, and the two analysis modules that report to you. Mandate: portfolio growth with capital preservation; \
avoid major drawdowns; a long-term fund. The strategy is one Rust file (src/lib.rs) using only the crate guest_sdk, \
documented in the API REFERENCE you are given (every signature there is exact: indicators return Option, \
market.candles takes n: u32, parameters are read with init.params.f64_or/usize_or and need defaults). \
Every candidate goes through a source check, the compiler, contract, fuzz, lookahead and startup checks, backtests \
against the incumbent and a review; failures of the automatic gates are sent back to you to fix.\n\
Answer format (zero or more decisions; each part optional):\n\
DECISION: no_change|tune_params|tweak|restructure|overhaul   (the strategy)\n\
CONFIDENCE: 0..1\nREASON: one line\nPARAMS: name=value, ...   (exactly the defaults your source uses)\n\
OBSERVATION: one line worth remembering\n\
then, unless no_change, the complete src/lib.rs in one ```rust block (the LAST complete ```rust block outside the \
sections below is taken as the strategy).\n\
To replace an analysis module, a line UPDATE_MARKET_ANALYSIS or UPDATE_TRADE_PERFORMANCE followed by its complete \
source in a ```rust block (implements guest_sdk::Analysis, ends with guest_sdk::export_analysis!(Type);).\n\
To edit your strategy document, a line DOCUMENT followed by the complete edited document in one ```markdown block \
(under 2,000 words; keep what was learned, drop what is stale).";

/// How many past attempts the context shows.
pub const MEMORY_ATTEMPTS: usize = 20;

/// The first turn: the context, the reference, the examples and the sources
/// the model may edit, the memory, then what to do.
pub fn writer_prompt(ctx: &Context) -> String {
    let mut s = ctx.render();
    s.push_str("\n\n");
    s.push_str(&reference::api_reference());
    if ctx.strategy_source.is_none() {
        s.push_str("\n=== A COMPLETE EXAMPLE STRATEGY (the default sma-crossover; it compiles against this SDK) ===\n```rust\n");
        s.push_str(reference::EXAMPLE_STRATEGY_SOURCE);
        s.push_str("```\n");
    }
    for (module, src) in &ctx.analysis_sources {
        s.push_str(&format!(
            "\n=== SOURCE OF YOUR ANALYSIS MODULE {module} (what UPDATE_{} replaces) ===\n```rust\n{src}```\n",
            module.to_ascii_uppercase().replace('-', "_")
        ));
    }
    s.push_str("\n=== YOUR PAST ATTEMPTS (rigid record: what was tried and why it stopped) ===\n");
    if ctx.past_attempts.is_empty() {
        s.push_str("(none yet)\n");
    }
    for a in &ctx.past_attempts {
        s.push_str(&format!(
            "{} {} {} attempt {} {}: {}{}\n",
            chrono::DateTime::from_timestamp(a.ts, 0)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            a.run_id,
            a.subject,
            a.attempt,
            a.decision,
            a.outcome,
            a.rejection_code
                .as_ref()
                .map(|c| format!(
                    " ({c}) {}",
                    a.detail
                        .lines()
                        .next()
                        .unwrap_or("")
                        .chars()
                        .take(240)
                        .collect::<String>()
                ))
                .unwrap_or_default()
        ));
    }
    if let Some(kind) = ctx.requested {
        s.push_str(&format!(
            "\n=== REQUESTED DECISION KIND (drawn by Thompson sampling over past acceptance: {}) ===\n{} — answer with DECISION: {}, or no_change if nothing is worth changing; another kind is audited as off request.\n",
            ctx.suggested
                .iter()
                .map(|a| format!("{} {}/{}", a.decision.as_str(), a.accepted, a.tried))
                .collect::<Vec<_>>()
                .join(", "),
            kind.as_str(),
            kind.as_str()
        ));
    } else if let Some(best) = ctx.suggested.first() {
        s.push_str(&format!(
            "\n=== SUGGESTED DECISION KIND (Thompson sampling over past acceptance: {}) ===\n{} — a suggestion, not a rule; no_change is always allowed.\n",
            ctx.suggested
                .iter()
                .map(|a| format!("{} {}/{}", a.decision.as_str(), a.accepted, a.tried))
                .collect::<Vec<_>>()
                .join(", "),
            best.decision.as_str()
        ));
    }
    if ctx.distill_document {
        s.push_str("\nYour strategy document has not been distilled for a quarter: return it edited (DOCUMENT), its journal condensed into lessons.\n");
    }
    s.push_str("\nDecide. If you change the strategy, write the complete new src/lib.rs.");
    s
}

/// Claude writes (writer model, one conversation) and reviews (reviewer model).
pub struct ClaudeProposer {
    pub client: Claude,
    pub settings: OrchestratorSettings,
    pub trigger: String,
    /// The writer conversation so far.
    turns: Vec<Turn>,
}

impl ClaudeProposer {
    pub fn new(client: Claude, settings: OrchestratorSettings, trigger: String) -> ClaudeProposer {
        ClaudeProposer {
            client,
            settings,
            trigger,
            turns: Vec::new(),
        }
    }

    /// The writer conversation so far (first user turn, replies, feedback).
    pub fn turns(&self) -> &[Turn] {
        &self.turns
    }

    fn writer_price(&self) -> Price {
        Price {
            input: self.settings.writer_price_in,
            output: self.settings.writer_price_out,
        }
    }

    /// Sends the writer conversation and returns the complete answer,
    /// continuing a reply cut at `max_tokens`.
    fn ask_writer(
        &mut self,
        conn: &Connection,
    ) -> Result<Result<String, Rejection>, OrchestratorError> {
        let s = self.settings.clone();
        let mut text = String::new();
        let mut continuations = 0u32;
        loop {
            let mut turns = self.turns.clone();
            if !text.is_empty() {
                // the API refuses a final assistant turn ending in whitespace
                turns.push(Turn::assistant(text.trim_end()));
                text.truncate(text.trim_end().len());
            }
            let reply = self.client.converse(
                conn,
                &s.writer_model,
                self.writer_price(),
                s.max_tokens,
                WRITER_SYSTEM,
                &turns,
                &self.trigger,
            )?;
            text.push_str(&reply.text);
            if reply.stop_reason != Some(StopReason::MaxTokens) {
                return Ok(Ok(text));
            }
            if continuations >= s.max_continuations {
                return Ok(Err(Rejection::Truncated {
                    detail: format!(
                        "{} output tokens per reply, still incomplete after {continuations} continuation(s) ({} characters)",
                        s.max_tokens,
                        text.len()
                    ),
                }));
            }
            continuations += 1;
            tracing::info!(continuations, "writer reply cut at max_tokens; continuing");
        }
    }
}

impl Proposer for ClaudeProposer {
    fn propose(&mut self, conn: &Connection, ctx: &Context) -> Result<Proposal, OrchestratorError> {
        let d = match self.decide(conn, ctx)? {
            Ok(d) => d,
            Err(r) => {
                return Ok(Proposal {
                    decision: DecisionKind::NoChange,
                    template: "claude".into(),
                    params: Vec::new(),
                    rationale: r.to_string(),
                    source: String::new(),
                    confidence: None,
                    observation: None,
                    module: None,
                })
            }
        };
        Ok(d.strategy
            .or_else(|| d.analyses.into_iter().next())
            .unwrap_or_else(no_decision))
    }

    fn decide(
        &mut self,
        conn: &Connection,
        ctx: &Context,
    ) -> Result<Result<Decisions, Rejection>, OrchestratorError> {
        self.turns = vec![Turn::user(writer_prompt(ctx))];
        match self.ask_writer(conn)? {
            Err(r) => Ok(Err(r)),
            Ok(text) => {
                self.turns.push(Turn::assistant(text.trim_end()));
                Ok(Ok(parse_writer(&text)))
            }
        }
    }

    fn repair(
        &mut self,
        conn: &Connection,
        _ctx: &Context,
        p: &Proposal,
        feedback: &str,
    ) -> Result<Option<Result<Proposal, Rejection>>, OrchestratorError> {
        if self.turns.is_empty() || !self.client.budget_left() {
            return Ok(None);
        }
        let subject = match &p.module {
            Some(m) => format!("Your {m} module"),
            None => "Your strategy".to_string(),
        };
        self.turns
            .push(Turn::user(format!("{subject}: {feedback}")));
        let text = match self.ask_writer(conn)? {
            Err(r) => return Ok(Some(Err(r))),
            Ok(t) => t,
        };
        self.turns.push(Turn::assistant(text.trim_end()));
        let d = parse_writer(&text);
        let restated = super::claude::field(&text, "DECISION").is_some();
        let next = match &p.module {
            Some(m) => d
                .analyses
                .into_iter()
                .find(|a| a.module.as_deref() == Some(m.as_str()))
                .or_else(|| {
                    // a lone block answering a module repair is that module's source
                    d.strategy
                        .filter(|s| !s.source.is_empty())
                        .map(|s| Proposal {
                            decision: DecisionKind::UpdateAnalysis,
                            module: Some(m.clone()),
                            ..s
                        })
                }),
            None => d.strategy.filter(|s| s.decision != DecisionKind::NoChange),
        };
        Ok(Some(match next {
            Some(n) if !n.source.trim().is_empty() => Ok(Proposal {
                // what the repair did not restate stays as first decided
                decision: if p.module.is_some() || !restated {
                    p.decision
                } else {
                    n.decision
                },
                params: if n.params.is_empty() {
                    p.params.clone()
                } else {
                    n.params
                },
                rationale: if n.rationale == "no reason given" {
                    p.rationale.clone()
                } else {
                    n.rationale
                },
                confidence: n.confidence.or(p.confidence),
                observation: n.observation.or_else(|| p.observation.clone()),
                ..n
            }),
            _ => Err(Rejection::NoSource {
                detail: "the repair answer has no complete ```rust block".into(),
            }),
        }))
    }

    fn next_candidate(
        &mut self,
        conn: &Connection,
        ctx: &Context,
        p: &Proposal,
        rejection: &Rejection,
    ) -> Result<Option<Result<Proposal, Rejection>>, OrchestratorError> {
        if self.turns.is_empty() || !self.client.budget_left() {
            return Ok(None);
        }
        // the code only: the figures of the test windows are not fed back (that would fit them)
        self.turns.push(Turn::user(format!(
            "That candidate ({}) was refused: {}. Write a different candidate (another idea, not a tweak of that one's \
numbers), with the same answer format.{}",
            p.decision.as_str(),
            rejection.code(),
            ctx.requested
                .map(|k| format!(" REQUESTED DECISION KIND: {} (answer with DECISION: {}).", k.as_str(), k.as_str()))
                .unwrap_or_default()
        )));
        let text = match self.ask_writer(conn)? {
            Err(r) => return Ok(Some(Err(r))),
            Ok(t) => t,
        };
        self.turns.push(Turn::assistant(text.trim_end()));
        Ok(match parse_writer(&text).strategy {
            Some(n) if n.decision != DecisionKind::NoChange && !n.source.trim().is_empty() => {
                Some(Ok(n))
            }
            _ => None,
        })
    }

    fn review(
        &mut self,
        conn: &Connection,
        ctx: &Context,
        p: &Proposal,
    ) -> Result<Result<(), String>, OrchestratorError> {
        let dossier = review::dossier(
            ctx,
            p,
            &Default::default(),
            1,
            ctx.strategy_source.as_deref(),
        );
        self.review_candidate(conn, ctx, p, &dossier)
    }

    fn review_candidate(
        &mut self,
        conn: &Connection,
        _ctx: &Context,
        _p: &Proposal,
        dossier: &str,
    ) -> Result<Result<(), String>, OrchestratorError> {
        let s = &self.settings;
        let reply = self.client.converse(
            conn,
            &s.reviewer_model,
            Price {
                input: s.reviewer_price_in,
                output: s.reviewer_price_out,
            },
            2048,
            review::REVIEWER_SYSTEM,
            &[Turn::user(dossier)],
            &self.trigger,
        )?;
        Ok(match parse_verdict(&reply.text) {
            Verdict::Approve => Ok(()),
            Verdict::Reject { reason } => Err(reason),
        })
    }
}

/// A reply that decided nothing.
fn no_decision() -> Proposal {
    Proposal {
        decision: DecisionKind::NoChange,
        template: "claude".into(),
        params: Vec::new(),
        rationale: "the reply made no decision".into(),
        source: String::new(),
        confidence: None,
        observation: None,
        module: None,
    }
}
