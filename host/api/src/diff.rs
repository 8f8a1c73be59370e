//! Line diffs for the dashboard: a strategy version's source against
//! another's, a candidate's against its incumbent's. A longest-common-
//! subsequence diff over lines; its table is bounded ([`MAX_CELLS`]), so a
//! pair of huge sources yields [`Diff::TooLarge`] instead of unbounded work.
//! Invariant: the `same` and `removed` lines, in order, are exactly the old
//! text's lines; the `same` and `added` lines are the new text's.

use serde::Serialize;

/// The most cells (old lines × new lines) one diff may compute.
pub const MAX_CELLS: usize = 4_000_000;

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub op: Op,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Same,
    Added,
    Removed,
}

/// A diff, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Diff {
    Lines {
        lines: Vec<DiffLine>,
        added: usize,
        removed: usize,
    },
    /// More than [`MAX_CELLS`] to compare.
    TooLarge { old_lines: usize, new_lines: usize },
}

/// The line diff from `old` to `new`.
pub fn lines(old: &str, new: &str) -> Diff {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // common prefix and suffix need no table
    let pre = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    if (ma.len() + 1).saturating_mul(mb.len() + 1) > MAX_CELLS {
        return Diff::TooLarge {
            old_lines: a.len(),
            new_lines: b.len(),
        };
    }
    // lcs[i][j]: the longest common subsequence of ma[i..] and mb[j..]
    let w = mb.len() + 1;
    let mut lcs = vec![0u32; (ma.len() + 1) * w];
    for i in (0..ma.len()).rev() {
        for j in (0..mb.len()).rev() {
            lcs[i * w + j] = if ma[i] == mb[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let line = |op, text: &str| DiffLine {
        op,
        text: text.to_string(),
    };
    let mut out: Vec<DiffLine> = a[..pre].iter().map(|t| line(Op::Same, t)).collect();
    let (mut i, mut j) = (0, 0);
    while i < ma.len() || j < mb.len() {
        if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
            out.push(line(Op::Same, ma[i]));
            i += 1;
            j += 1;
        } else if i < ma.len() && (j == mb.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            // removals before additions, as diffs are read
            out.push(line(Op::Removed, ma[i]));
            i += 1;
        } else {
            out.push(line(Op::Added, mb[j]));
            j += 1;
        }
    }
    out.extend(a[a.len() - suf..].iter().map(|t| line(Op::Same, t)));
    let added = out.iter().filter(|l| l.op == Op::Added).count();
    let removed = out.iter().filter(|l| l.op == Op::Removed).count();
    Diff::Lines {
        lines: out,
        added,
        removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(d: &Diff, keep: Op) -> String {
        let Diff::Lines { lines, .. } = d else {
            panic!("{d:?}")
        };
        lines
            .iter()
            .filter(|l| l.op == Op::Same || l.op == keep)
            .map(|l| format!("{}\n", l.text))
            .collect()
    }

    #[test]
    fn a_changed_parameter_is_one_line_removed_and_one_added() {
        let old = "fn a() {}\nconst FAST: u32 = 10;\nfn b() {}\n";
        let new = "fn a() {}\nconst FAST: u32 = 12;\nfn b() {}\nfn c() {}\n";
        let d = lines(old, new);
        let Diff::Lines {
            lines: l,
            added,
            removed,
        } = &d
        else {
            panic!()
        };
        assert_eq!((*added, *removed), (2, 1));
        assert_eq!(l[1].op, Op::Removed);
        assert_eq!(l[1].text, "const FAST: u32 = 10;");
        assert_eq!(l[2].op, Op::Added);
        assert_eq!(side(&d, Op::Removed), old);
        assert_eq!(side(&d, Op::Added), new);
    }

    #[test]
    fn both_sides_are_rebuilt_from_any_diff() {
        let texts = [
            "",
            "a\n",
            "a\nb\nc\n",
            "c\nb\na\n",
            "a\nx\nb\ny\nc\n",
            "x\nx\nx\n",
        ];
        for old in texts {
            for new in texts {
                let d = lines(old, new);
                assert_eq!(side(&d, Op::Removed), old, "{old:?} → {new:?}");
                assert_eq!(side(&d, Op::Added), new, "{old:?} → {new:?}");
            }
        }
        assert_eq!(
            lines("same\n", "same\n"),
            Diff::Lines {
                lines: vec![DiffLine {
                    op: Op::Same,
                    text: "same".into()
                }],
                added: 0,
                removed: 0
            }
        );
    }

    #[test]
    fn huge_sources_are_refused_not_compared() {
        let old: String = (0..3000).map(|i| format!("a{i}\n")).collect();
        let new: String = (0..3000).map(|i| format!("b{i}\n")).collect();
        assert_eq!(
            lines(&old, &new),
            Diff::TooLarge {
                old_lines: 3000,
                new_lines: 3000
            }
        );
    }
}
