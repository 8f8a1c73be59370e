//! `sweep.svg`: a sweep's grid as a heatmap, hand-written SVG. Rows are the
//! values of the first swept parameter and columns those of the second (one
//! swept parameter: a single row); with more than two, each cell shows the
//! best combination over the others (the title says so, each cell's tooltip
//! names it). The colour and the printed value are the sweep's ranking
//! metric, the return in percent (2 decimals, as the table prints it), on a
//! diverging scale around 0 with a legend; a cell whose return is undefined
//! (no defined figure, or every combination failed) is hatched grey with
//! "n/a", never drawn as 0.

use super::output::xml;
use super::sweep::{SweepReport, SweepRow};
use std::fmt::Write as _;

/// The best row of `rows` (ranked best first) matching every `(name, value)`
/// of `at`: the first with a defined return and no error.
fn best<'a>(rows: &'a [SweepRow], at: &[(&str, &str)]) -> Option<&'a SweepRow> {
    rows.iter().find(|r| {
        r.error.is_none()
            && r.return_pct.is_some_and(f64::is_finite)
            && at
                .iter()
                .all(|(k, v)| r.params.iter().any(|(pk, pv)| pk == k && pv == v))
    })
}

/// `t` in [-1, 1] → red (−) through white (0) to green (+).
fn colour(t: f64) -> String {
    let t = t.clamp(-1.0, 1.0);
    let (r, g, b) = if t < 0.0 {
        (207.0, 34.0, 46.0)
    } else {
        (26.0, 127.0, 55.0)
    };
    let a = t.abs();
    let mix = |c: f64| (255.0 + (c - 255.0) * a).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(r), mix(g), mix(b))
}

fn params_text(p: &[(String, String)]) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The heatmap of `r` as a standalone SVG.
pub fn sweep_svg(r: &SweepReport) -> String {
    const LW: f64 = 120.0;
    const TOP: f64 = 76.0;
    const CH: f64 = 30.0;
    const LEGEND_W: f64 = 130.0;
    let (row_axis, col_axis) = match r.swept.as_slice() {
        [] => (None, None),
        [a] => (None, Some(a)),
        [a, b, ..] => (Some(a), Some(b)),
    };
    let row_values: Vec<Option<&str>> = match row_axis {
        None => vec![None],
        Some(a) => a.values.iter().map(|v| Some(v.as_str())).collect(),
    };
    let col_values: Vec<Option<&str>> = match col_axis {
        None => vec![None],
        Some(b) => b.values.iter().map(|v| Some(v.as_str())).collect(),
    };
    let cw = (720.0 / col_values.len() as f64).clamp(44.0, 90.0);
    let w = LW + cw * col_values.len() as f64 + 24.0 + LEGEND_W;
    let h = (TOP + CH * row_values.len() as f64 + 40.0).max(TOP + 200.0);

    // the cells: (row, col, best row)
    let cells: Vec<Vec<Option<&SweepRow>>> = row_values
        .iter()
        .map(|rv| {
            col_values
                .iter()
                .map(|cv| {
                    let mut at: Vec<(&str, &str)> = Vec::new();
                    if let (Some(a), Some(v)) = (row_axis, rv) {
                        at.push((a.name.as_str(), v));
                    }
                    if let (Some(b), Some(v)) = (col_axis, cv) {
                        at.push((b.name.as_str(), v));
                    }
                    best(&r.rows, &at)
                })
                .collect()
        })
        .collect();
    let scale = cells
        .iter()
        .flatten()
        .flatten()
        .filter_map(|c| c.return_pct)
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(1e-9);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r##"<defs><pattern id="na" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#d0d7de"/><line x1="0" y1="0" x2="0" y2="6" stroke="#8c959f" stroke-width="2"/></pattern><linearGradient id="scale" x1="0" y1="1" x2="0" y2="0"><stop offset="0" stop-color="{}"/><stop offset="0.5" stop-color="#ffffff"/><stop offset="1" stop-color="{}"/></linearGradient></defs>"##,
        colour(-1.0),
        colour(1.0)
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let axes = match (row_axis, col_axis) {
        (Some(a), Some(b)) => format!("{} (rows) × {} (columns)", xml(&a.name), xml(&b.name)),
        (None, Some(b)) => xml(&b.name),
        _ => "no swept parameter".to_string(),
    };
    let _ = writeln!(
        s,
        r#"<text x="12" y="22" font-size="14">Sweep of {}: return % by {axes}, {} combinations</text>"#,
        xml(&r.strategy_hash[..r.strategy_hash.len().min(12)]),
        r.combinations
    );
    if r.swept.len() > 2 {
        let others: Vec<String> = r.swept[2..].iter().map(|s| xml(&s.name)).collect();
        let _ = writeln!(
            s,
            r##"<text x="12" y="40" fill="#444">each cell: the best over {} (its tooltip names the combination)</text>"##,
            others.join(", ")
        );
    }
    // column headers
    if let Some(b) = col_axis {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            LW + cw * col_values.len() as f64 / 2.0,
            TOP - 24.0,
            xml(&b.name)
        );
    }
    for (j, cv) in col_values.iter().enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            LW + cw * (j as f64 + 0.5),
            TOP - 8.0,
            xml(cv.unwrap_or(""))
        );
    }
    if let Some(a) = row_axis {
        let _ = writeln!(
            s,
            r##"<text x="12" y="{:.1}" fill="#444">{}</text>"##,
            TOP - 8.0,
            xml(&a.name)
        );
    }
    for (i, (rv, row)) in row_values.iter().zip(&cells).enumerate() {
        let y = TOP + CH * i as f64;
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LW - 8.0,
            y + CH / 2.0 + 4.0,
            xml(rv.unwrap_or("return %"))
        );
        for (j, (cv, cell)) in col_values.iter().zip(row).enumerate() {
            let x = LW + cw * j as f64;
            let mut at: Vec<String> = Vec::new();
            if let (Some(a), Some(v)) = (row_axis, rv) {
                at.push(format!("{}={v}", a.name));
            }
            if let (Some(b), Some(v)) = (col_axis, cv) {
                at.push(format!("{}={v}", b.name));
            }
            let at = xml(&at.join(" "));
            match cell.and_then(|c| c.return_pct.map(|v| (c, v))) {
                Some((c, v)) => {
                    let t = v / scale;
                    let ink = if t.abs() > 0.6 { "#ffffff" } else { "#111111" };
                    let full = xml(&params_text(&c.params));
                    let _ = writeln!(
                        s,
                        r##"<g class="cell" data-params="{at}" data-best="{full}"><title>{full}: return {v:.2}%, {} trades</title><rect x="{x:.1}" y="{y:.1}" width="{cw:.1}" height="{CH}" fill="{}" stroke="#ffffff"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{ink}">{v:.2}</text></g>"##,
                        c.trades,
                        colour(t),
                        x + cw / 2.0,
                        y + CH / 2.0 + 4.0
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<g class="cell na" data-params="{at}"><title>{at}: return undefined</title><rect x="{x:.1}" y="{y:.1}" width="{cw:.1}" height="{CH}" fill="url(#na)" stroke="#ffffff"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#24292f">n/a</text></g>"##,
                        x + cw / 2.0,
                        y + CH / 2.0 + 4.0
                    );
                }
            }
        }
    }
    // colour scale
    let lx = LW + cw * col_values.len() as f64 + 24.0;
    let (ly, lh) = (TOP, 140.0);
    let _ = writeln!(
        s,
        r##"<g class="legend"><text x="{lx:.1}" y="{:.1}" fill="#444">return %</text><rect x="{lx:.1}" y="{ly:.1}" width="16" height="{lh}" fill="url(#scale)" stroke="#999"/><text x="{:.1}" y="{:.1}">{:.2}</text><text x="{:.1}" y="{:.1}">0</text><text x="{:.1}" y="{:.1}">{:.2}</text><rect x="{lx:.1}" y="{:.1}" width="16" height="12" fill="url(#na)" stroke="#999"/><text x="{:.1}" y="{:.1}">n/a</text></g>"##,
        ly - 8.0,
        lx + 22.0,
        ly + 4.0,
        scale,
        lx + 22.0,
        ly + lh / 2.0 + 4.0,
        lx + 22.0,
        ly + lh + 4.0,
        -scale,
        ly + lh + 14.0,
        lx + 22.0,
        ly + lh + 24.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::super::sweep::Sweep;
    use super::*;
    use rust_decimal::Decimal;

    fn row(rank: usize, fast: &str, slow: &str, ret: Option<f64>, error: Option<&str>) -> SweepRow {
        SweepRow {
            rank,
            params: vec![("fast".into(), fast.into()), ("slow".into(), slow.into())],
            trades: 3,
            win_rate: None,
            net_pnl: Decimal::ZERO,
            final_value: Decimal::ZERO,
            return_pct: ret,
            sharpe_ratio: None,
            max_drawdown_pct: None,
            module_errors: 0,
            risk_breaches: 0,
            error: error.map(str::to_string),
        }
    }

    fn cells(svg: &str) -> Vec<(String, String, String)> {
        // (class, data-params, printed text)
        svg.lines()
            .filter(|l| l.starts_with("<g class=\"cell"))
            .map(|l| {
                let attr = |name: &str| {
                    let k = format!("{name}=\"");
                    let i = l.find(&k).map(|i| i + k.len()).unwrap_or(0);
                    l[i..].split('"').next().unwrap_or("").to_string()
                };
                let text = l
                    .rsplit("\">")
                    .next()
                    .unwrap_or("")
                    .trim_end_matches("</text></g>")
                    .to_string();
                (attr("class"), attr("data-params"), text)
            })
            .collect()
    }

    #[test]
    fn an_undefined_return_is_a_hatched_na_cell_never_zero() {
        let r = SweepReport {
            strategy_hash: "abcdef0123456789".into(),
            combinations: 4,
            swept: vec![
                Sweep::parse("fast=5,10").unwrap(),
                Sweep::parse("slow=20,30").unwrap(),
            ],
            rows: vec![
                row(1, "5", "20", Some(1.234), None),
                row(2, "10", "30", Some(-0.5), None),
                row(3, "5", "30", None, None),
                row(4, "10", "20", None, Some("trapped")),
            ],
        };
        let svg = sweep_svg(&r);
        let c = cells(&svg);
        assert_eq!(c.len(), 4, "{svg}");
        let get = |p: &str| {
            c.iter()
                .find(|x| x.1 == p)
                .unwrap_or_else(|| panic!("no cell {p}: {svg}"))
        };
        assert_eq!(
            get("fast=5 slow=20"),
            &("cell".into(), "fast=5 slow=20".into(), "1.23".into())
        );
        assert_eq!(get("fast=10 slow=30").2, "-0.50");
        for p in ["fast=5 slow=30", "fast=10 slow=20"] {
            let (class, _, text) = get(p);
            assert_eq!((class.as_str(), text.as_str()), ("cell na", "n/a"));
        }
        assert!(
            !svg.contains(">0.00<"),
            "an undefined return is not drawn as 0: {svg}"
        );
        assert!(svg.contains(r#"fill="url(#na)""#));
    }

    #[test]
    fn one_parameter_is_one_row_and_more_take_the_best_over_the_rest() {
        let mut one = SweepReport {
            strategy_hash: "h".into(),
            combinations: 2,
            swept: vec![Sweep::parse("fast=5,10").unwrap()],
            rows: vec![
                row(1, "5", "20", Some(2.0), None),
                row(2, "10", "20", Some(1.0), None),
            ],
        };
        let c = cells(&sweep_svg(&one));
        assert_eq!(
            c.iter()
                .map(|x| (x.1.as_str(), x.2.as_str()))
                .collect::<Vec<_>>(),
            [("fast=5", "2.00"), ("fast=10", "1.00")]
        );
        // three swept parameters: slow is the third here, fast × size the grid
        one.swept = vec![
            Sweep::parse("fast=5,10").unwrap(),
            Sweep::parse("size=1").unwrap(),
            Sweep::parse("slow=20,30").unwrap(),
        ];
        let mut rows = vec![
            row(1, "5", "30", Some(3.0), None),
            row(2, "5", "20", Some(2.0), None),
            row(3, "10", "20", Some(1.0), None),
            row(4, "10", "30", None, None),
        ];
        for r in &mut rows {
            r.params.push(("size".into(), "1".into()));
        }
        one.rows = rows;
        let svg = sweep_svg(&one);
        assert!(svg.contains("the best over slow"), "{svg}");
        let c = cells(&svg);
        assert_eq!(
            c.iter()
                .map(|x| (x.1.as_str(), x.2.as_str()))
                .collect::<Vec<_>>(),
            [("fast=5 size=1", "3.00"), ("fast=10 size=1", "1.00")]
        );
    }
}
