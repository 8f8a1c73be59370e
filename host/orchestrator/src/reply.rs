//! Reading what a model wrote, which is hostile text: the writer's reply
//! becomes zero or more typed decisions (the strategy, each analysis module
//! separately, the edited strategy document), the reviewer's reply a typed
//! [`Verdict`]. Parsing is tolerant of markdown and case but never guesses a
//! source: the strategy's source is the last complete ```rust block outside
//! the analysis sections, a cut block counts as none, and an approval must be
//! an explicit APPROVE.

use super::claude::{fenced_blocks, field, Fenced};
use super::proposer::{DecisionKind, Proposal};
use serde::Serialize;

/// The two analysis modules a reply may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnalysisModule {
    MarketAnalysis,
    TradePerformance,
}

impl AnalysisModule {
    pub const ALL: [AnalysisModule; 2] = [
        AnalysisModule::MarketAnalysis,
        AnalysisModule::TradePerformance,
    ];

    /// The module's name (its archive folder and `system_meta` key).
    pub fn name(self) -> &'static str {
        match self {
            AnalysisModule::MarketAnalysis => "market-analysis",
            AnalysisModule::TradePerformance => "trade-performance",
        }
    }

    /// The section header of a reply that replaces it.
    pub fn header(self) -> &'static str {
        match self {
            AnalysisModule::MarketAnalysis => "UPDATE_MARKET_ANALYSIS",
            AnalysisModule::TradePerformance => "UPDATE_TRADE_PERFORMANCE",
        }
    }

    pub fn parse(s: &str) -> Option<AnalysisModule> {
        let s = s.trim().trim_matches(|c| c == '`' || c == '*').trim();
        AnalysisModule::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s) || m.header().eq_ignore_ascii_case(s))
    }
}

/// What one writer reply decided.
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    /// The strategy decision (`no_change` included), when the reply made one.
    pub strategy: Option<Proposal>,
    /// New analysis modules, each its own decision.
    pub analyses: Vec<Proposal>,
    /// The edited strategy document, when the reply returned one.
    pub document: Option<String>,
}

/// A header line of a section: `UPDATE_MARKET_ANALYSIS`, `## DOCUMENT:` …,
/// markdown and trailing colon tolerated.
fn header_of(line: &str) -> Option<&str> {
    let t = line
        .trim()
        .trim_start_matches('#')
        .trim()
        .trim_matches('*')
        .trim()
        .trim_end_matches(':')
        .trim()
        .trim_matches('*')
        .trim();
    (!t.is_empty() && t.chars().all(|c| c.is_ascii_uppercase() || c == '_')).then_some(t)
}

/// The header above a fenced block: the nearest header line before it, if
/// no other fenced block lies between them.
fn section_of<'a>(lines: &[&'a str], block: &Fenced, previous_end: usize) -> Option<&'a str> {
    let open = block.line.saturating_sub(1);
    (previous_end..open).rev().find_map(|i| header_of(lines[i]))
}

/// `PARAMS: fast=24, slow=120`
pub fn parse_params(line: &str) -> Vec<(String, String)> {
    line.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().trim_matches('`').trim().to_string(),
                v.trim().trim_matches('`').trim().to_string(),
            )
        })
        .filter(|(k, v)| {
            !k.is_empty()
                && !v.is_empty()
                && k.len() <= 64
                && v.len() <= 64
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .take(32)
        .collect()
}

/// Parses a writer reply. `legacy_module`: `DECISION: update_analysis` with
/// `MODULE: …` (one module instead of the strategy) is still understood.
pub fn parse_writer(text: &str) -> Decisions {
    let lines: Vec<&str> = text.lines().collect();
    let blocks = fenced_blocks(text);
    let mut strategy_src: Option<String> = None;
    let mut analysis_src: Vec<(AnalysisModule, String)> = Vec::new();
    let mut document: Option<String> = None;
    let mut previous_end = 0usize;
    for b in &blocks {
        let section = section_of(&lines, b, previous_end);
        previous_end = b.end.min(lines.len());
        let is_rust = b.lang == "rust" || b.lang == "rs";
        match section {
            Some("DOCUMENT") | Some("STRATEGY_DOCUMENT") => {
                document = Some(b.body.clone());
            }
            Some(h) if is_rust && AnalysisModule::parse(h).is_some() => {
                if let Some(m) = AnalysisModule::parse(h) {
                    analysis_src.retain(|(x, _)| *x != m);
                    analysis_src.push((m, b.body.clone()));
                }
            }
            _ if is_rust => strategy_src = Some(b.body.clone()),
            _ => {}
        }
    }
    let confidence = field(text, "CONFIDENCE")
        .and_then(|c| c.trim_matches('*').trim().parse::<f64>().ok())
        .filter(|c| (0.0..=1.0).contains(c));
    let rationale = field(text, "REASON")
        .map(|r| r.trim_matches('*').trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "no reason given".into());
    let observation = field(text, "OBSERVATION")
        .map(|o| o.trim().to_string())
        .filter(|o| !o.is_empty());
    let params = field(text, "PARAMS")
        .map(|l| parse_params(&l))
        .unwrap_or_default();
    let decision = field(text, "DECISION")
        .and_then(|d| DecisionKind::parse(d.trim_matches(|c| c == '*' || c == '`').trim()));
    let base = |decision, source: String, module: Option<String>| Proposal {
        decision,
        template: "claude".into(),
        params: params.clone(),
        rationale: rationale.clone(),
        source,
        confidence,
        observation: observation.clone(),
        module,
    };
    let mut out = Decisions {
        document,
        ..Decisions::default()
    };
    for (m, src) in analysis_src {
        out.analyses.push(base(
            DecisionKind::UpdateAnalysis,
            src,
            Some(m.name().to_string()),
        ));
    }
    match decision {
        Some(DecisionKind::UpdateAnalysis) => {
            // the legacy form: the one rust block is the module named by MODULE
            if let Some(src) = strategy_src {
                out.analyses.push(base(
                    DecisionKind::UpdateAnalysis,
                    src,
                    field(text, "MODULE"),
                ));
            }
        }
        Some(DecisionKind::NoChange) => {
            out.strategy = Some(base(DecisionKind::NoChange, String::new(), None));
        }
        Some(d) => out.strategy = Some(base(d, strategy_src.unwrap_or_default(), None)),
        None => {
            if let Some(src) = strategy_src {
                out.strategy = Some(base(DecisionKind::Tweak, src, None));
            }
        }
    }
    out
}

/// The reviewer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject { reason: String },
}

/// A line without markdown decoration: `**APPROVE**`, `# Verdict: approve`,
/// `> REJECT — reason`.
fn plain(line: &str) -> String {
    line.chars()
        .filter(|c| !matches!(c, '*' | '_' | '`' | '#' | '>'))
        .collect::<String>()
        .trim()
        .to_string()
}

fn verdict_of(line: &str) -> Option<Verdict> {
    let p = plain(line);
    let upper = p.to_ascii_uppercase();
    let rest = upper
        .strip_prefix("VERDICT")
        .map(|r| r.trim_start_matches([':', ' ', '-', '—']).trim_start())
        .unwrap_or(upper.as_str());
    let offset = p.len() - rest.len();
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    match word.as_str() {
        "APPROVE" | "APPROVED" => Some(Verdict::Approve),
        "REJECT" | "REJECTED" => {
            let reason = p[offset + word.len()..]
                .trim_start_matches([':', ' ', '-', '—', '.'])
                .trim()
                .to_string();
            Some(Verdict::Reject {
                reason: if reason.is_empty() {
                    "rejected without a reason on the verdict line".into()
                } else {
                    reason
                },
            })
        }
        _ => None,
    }
}

/// The first line that is a verdict (`APPROVE`, `REJECT: why`, in any case,
/// with markdown, optionally after `VERDICT:`) decides; a reply without one
/// is a rejection saying so.
pub fn parse_verdict(text: &str) -> Verdict {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .find_map(verdict_of)
        .unwrap_or_else(|| Verdict::Reject {
            reason: format!(
                "the reviewer gave no APPROVE or REJECT line: {}",
                text.trim().chars().take(200).collect::<String>()
            ),
        })
}

/// Word count of a document (what the 2,000-word limit counts).
pub fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_in_markdown_and_any_case() {
        assert_eq!(parse_verdict("**APPROVE**\nlooks fine"), Verdict::Approve);
        assert_eq!(parse_verdict("## Verdict: Approved\n"), Verdict::Approve);
        assert_eq!(parse_verdict("\n\napprove"), Verdict::Approve);
        assert_eq!(
            parse_verdict("**REJECT**: uses `now` as a key"),
            Verdict::Reject {
                reason: "uses now as a key".into()
            }
        );
        assert_eq!(
            parse_verdict("Verdict — reject. sizes ignore the limit"),
            Verdict::Reject {
                reason: "sizes ignore the limit".into()
            }
        );
        // no verdict at all is a rejection, never an approval
        assert!(matches!(
            parse_verdict("I think this is probably fine."),
            Verdict::Reject { .. }
        ));
        // "approves" in a sentence on a later line does not approve
        assert!(matches!(
            parse_verdict("Nobody approves this\nREJECT: no"),
            Verdict::Reject { .. }
        ));
    }

    #[test]
    fn a_reply_with_strategy_two_modules_and_a_document() {
        let t = "DECISION: tweak\nCONFIDENCE: 0.4\nREASON: **tighter stop**\nPARAMS: fast=12, slow=`80`, bad key=1\n\
Draft first:\n```rust\nfn draft() {}\n```\nFinal:\n```rust\nfn strategy() {}\n```\n\
UPDATE_MARKET_ANALYSIS:\n```rust\nfn market() {}\n```\n## **UPDATE_TRADE_PERFORMANCE**\n```rust\nfn trades() {}\n```\n\
DOCUMENT:\n```markdown\n# Strategy document\nshort\n```\n";
        let d = parse_writer(t);
        let s = d.strategy.unwrap();
        assert_eq!(s.decision, DecisionKind::Tweak);
        assert_eq!(s.source, "fn strategy() {}\n");
        assert_eq!(s.rationale, "tighter stop");
        assert_eq!(
            s.params,
            vec![("fast".into(), "12".into()), ("slow".into(), "80".into())]
        );
        let mods: Vec<(&str, &str)> = d
            .analyses
            .iter()
            .map(|p| (p.module.as_deref().unwrap(), p.source.as_str()))
            .collect();
        assert_eq!(
            mods,
            vec![
                ("market-analysis", "fn market() {}\n"),
                ("trade-performance", "fn trades() {}\n")
            ]
        );
        assert_eq!(d.document.as_deref(), Some("# Strategy document\nshort\n"));
    }

    #[test]
    fn zero_decisions_no_change_and_the_legacy_form() {
        let d = parse_writer("Nothing to say.");
        assert!(d.strategy.is_none() && d.analyses.is_empty() && d.document.is_none());
        let d = parse_writer("DECISION: **no_change**\nREASON: calm");
        assert_eq!(d.strategy.unwrap().decision, DecisionKind::NoChange);
        let d = parse_writer(
            "DECISION: update_analysis\nMODULE: trade-performance\n```rust\nfn a() {}\n```",
        );
        assert!(d.strategy.is_none());
        assert_eq!(d.analyses[0].module.as_deref(), Some("trade-performance"));
        // only analysis sections: no strategy decision
        let d = parse_writer("UPDATE_MARKET_ANALYSIS\n```rust\nfn m() {}\n```");
        assert!(d.strategy.is_none());
        assert_eq!(d.analyses.len(), 1);
        // a cut code block is no source
        let d = parse_writer("DECISION: tweak\n```rust\nfn cut(");
        assert_eq!(d.strategy.unwrap().source, "");
    }
}
