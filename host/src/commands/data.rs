//! `host data`: import, list and tier candle files.

#[allow(unused_imports)]
use crate::prelude::*;

pub(crate) fn data(what: DataCmd, paths: &Paths) -> Result<()> {
    use host_store::candles;
    std::fs::create_dir_all(&paths.data_dir)
        .with_context(|| paths.data_dir.display().to_string())?;
    let mut conn = host_store::db::open(&paths.db())?;
    match what {
        DataCmd::Import {
            file,
            symbol,
            interval,
        } => {
            let iv = interval
                .map(|s| {
                    Interval::parse(&s)
                        .with_context(|| format!("--interval {s:?}: expected 5m, 1h or 1d"))
                })
                .transpose()?;
            let r = candles::import_file(&mut conn, &file, symbol.as_deref(), iv)?;
            println!(
                "{} {}: {} rows: {} inserted, {} updated, {} unchanged",
                r.symbol,
                r.interval.name(),
                r.rows,
                r.stats.inserted,
                r.stats.updated,
                r.stats.unchanged
            );
        }
        DataCmd::List { json } => {
            let list = candles::list(&conn)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", candles::list_table(&list));
            }
        }
        DataCmd::Aggregate { symbol } => {
            let syms = match symbol {
                Some(s) => vec![s],
                None => candles::symbols(&conn)?,
            };
            for s in syms {
                let (h, d) = candles::aggregate(&mut conn, &s, None)?;
                println!(
                    "{s}: 1h {} inserted, {} updated, {} unchanged; 1d {} inserted, {} updated, {} unchanged",
                    h.inserted, h.updated, h.unchanged, d.inserted, d.updated, d.unchanged
                );
            }
        }
        DataCmd::Prune {
            keep_5m,
            keep_1h,
            keep_1d,
            now,
        } => {
            let retention = candles::Retention {
                m5: candles::parse_keep(&keep_5m)?,
                h1: candles::parse_keep(&keep_1h)?,
                d1: candles::parse_keep(&keep_1d)?,
            };
            let now = now.unwrap_or_else(now_unix);
            let p = candles::prune(&mut conn, now, &retention)?;
            println!("pruned 5m {}, 1h {}, 1d {}", p.m5, p.h1, p.d1);
        }
    }
    Ok(())
}
