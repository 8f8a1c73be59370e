//! What the reviewer reads, after every automatic gate has passed: the
//! decision and its reason, a unified diff of the candidate against the
//! incumbent's source (or the whole source when none is archived), every
//! check's result and the attempts it took, and the cycle's context (ground
//! truth, the analyses' summaries, the user's constraints). The verdict is
//! parsed by [`super::reply::parse_verdict`].

use super::checks::CheckFigures;
use super::proposer::Proposal;
use super::Context;

/// The reviewer's instructions.
pub const REVIEWER_SYSTEM: &str = "You review a generated trading strategy (Rust, guest_sdk) that has already passed \
the source check, the compiler, the contract, fuzz, lookahead and startup checks and the backtests shown to you. \
Look for what those cannot see: lookahead or data snooping in the logic, risk the limits do not cover (sizing, \
missing exits, averaging down), fragile assumptions, and whether the change matches its stated reason. \
Answer on the first line exactly `APPROVE` or `REJECT: <reason>`, then explain briefly.";

/// Lines of a unified diff kept (the rest is summarised).
const MAX_DIFF_LINES: usize = 400;

/// A unified diff of `old` → `new` (line based, LCS), with `context` lines
/// around each change. Inputs beyond 3,000 lines each are not diffed.
pub fn unified_diff(old: &str, new: &str, context: usize) -> Option<String> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len() > 3_000 || b.len() > 3_000 {
        return None;
    }
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: LCS length of a[i..] and b[j..]
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    // the edit script: (' ' | '-' | '+', old line no, new line no, text)
    let mut ops: Vec<(char, usize, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', i, j, a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            ops.push(('-', i, j, a[i]));
            i += 1;
        } else {
            ops.push(('+', i, j, b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| o.0 != ' ')
        .map(|(k, _)| k)
        .collect();
    if changed.is_empty() {
        return Some(String::new());
    }
    let mut out = String::from("--- incumbent/src/lib.rs\n+++ candidate/src/lib.rs\n");
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(context);
        let mut end = (changed[k] + context + 1).min(ops.len());
        while k + 1 < changed.len() && changed[k + 1] <= end + context {
            k += 1;
            end = (changed[k] + context + 1).min(ops.len());
        }
        let hunk = &ops[start..end];
        let old_len = hunk.iter().filter(|o| o.0 != '+').count();
        let new_len = hunk.iter().filter(|o| o.0 != '-').count();
        out.push_str(&format!(
            "@@ -{},{old_len} +{},{new_len} @@\n",
            hunk[0].1 + 1,
            hunk[0].2 + 1
        ));
        for (c, _, _, t) in hunk {
            out.push(*c);
            out.push_str(t);
            out.push('\n');
        }
        k += 1;
    }
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() > MAX_DIFF_LINES {
        let mut s = lines[..MAX_DIFF_LINES].join("\n");
        s.push_str(&format!(
            "\n… {} more diff lines not shown\n",
            lines.len() - MAX_DIFF_LINES
        ));
        return Some(s);
    }
    Some(out)
}

/// The reviewer's prompt.
pub fn dossier(
    ctx: &Context,
    p: &Proposal,
    figures: &CheckFigures,
    attempts: u32,
    incumbent_source: Option<&str>,
) -> String {
    let j = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let mut s = String::new();
    s.push_str(&format!(
        "=== DECISION ===\n{} (confidence {}), after {attempts} attempt(s)\nReason: {}\nDeclared parameters: {}\n\n",
        p.decision.as_str(),
        p.confidence.map_or("not given".into(), |c| format!("{c:.2}")),
        p.rationale,
        if p.params.is_empty() {
            "none".to_string()
        } else {
            p.params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    match incumbent_source.and_then(|old| unified_diff(old, &p.source, 3)) {
        Some(d) if d.is_empty() => s.push_str("=== DIFF ===\n(identical to the incumbent)\n\n"),
        Some(d) => {
            s.push_str("=== DIFF AGAINST THE INCUMBENT ===\n");
            s.push_str(&d);
            s.push('\n');
        }
        None => s.push_str("=== (no incumbent source archived: the whole candidate follows) ===\n"),
    }
    s.push_str("=== CANDIDATE SOURCE ===\n```rust\n");
    s.push_str(&p.source);
    s.push_str("\n```\n\n=== CHECK RESULTS (all automatic gates passed) ===\n");
    s.push_str(&format!(
        "source check: passed\ncompile: passed\ncontract: passed\nfuzz: {} calls without a trap\nlookahead: {} scans compared, no difference\nstartup: {} scans compared, no difference\n",
        figures.fuzz_calls, figures.lookahead_scans, figures.startup_scans
    ));
    let mut f = serde_json::to_value(figures).unwrap_or_default();
    if let Some(o) = f.as_object_mut() {
        o.remove("candidate_report");
    }
    s.push_str("backtest and paper figures:\n");
    s.push_str(&j(&f));
    s.push_str("\n\n=== CONTEXT ===\nGround truth:\n");
    s.push_str(&j(&ctx.ground_truth));
    for (label, r) in [
        ("Market analysis", &ctx.market_report),
        ("Trade analysis", &ctx.trade_report),
    ] {
        s.push_str(&format!(
            "\n{label}: {}\n",
            r["summary"].as_str().unwrap_or("(no summary)")
        ));
    }
    s.push_str("\nUser constraints:\n");
    s.push_str(&j(&ctx.constraints));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_show_changes_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nC\nd\ne\nf\ng\nh\n";
        let d = unified_diff(old, new, 1).unwrap();
        assert!(d.contains("-c\n+C\n"), "{d}");
        assert!(d.contains("+h\n"), "{d}");
        assert!(d.contains(" b\n") && !d.contains(" a\n"), "{d}");
        assert_eq!(unified_diff(old, old, 3).as_deref(), Some(""));
    }
}
