//! The market regime of each symbol as the market-analysis module last
//! labelled it (`system_meta` `regime.<symbol>`); a label that differs from
//! the last one becomes a `regime_change` event. Invariant: the stored label
//! and the event are written in one transaction, so a change is reported once.

use crate::db::{get_meta, set_meta};
use crate::events::{self, Payload};
use crate::payloads::RegimeChange;
use rusqlite::Connection;

/// Compares `regimes` (symbol, label) with the last labels and appends a
/// `regime_change` for each that differs (the first label seen too, with no
/// `from`). Returns the appended events' sequences.
pub fn observe(
    conn: &Connection,
    now: i64,
    regimes: &[(String, String)],
) -> rusqlite::Result<Vec<i64>> {
    let own = conn.is_autocommit();
    if own {
        conn.execute_batch("BEGIN IMMEDIATE")?;
    }
    let r = (|| {
        let mut seqs = Vec::new();
        for (symbol, label) in regimes {
            let key = format!("regime.{symbol}");
            let from = get_meta(conn, &key)?;
            if from.as_deref() == Some(label.as_str()) {
                continue;
            }
            set_meta(conn, &key, label)?;
            let p = Payload::RegimeChange(RegimeChange {
                from,
                to: label.clone(),
            });
            seqs.push(events::append(conn, now, Some(symbol), &p)?);
        }
        Ok(seqs)
    })();
    if own {
        match &r {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_regime_is_recorded_once_per_change() {
        let c = crate::db::open_in_memory().unwrap();
        let r = |s: &str, l: &str| (s.to_string(), l.to_string());
        assert_eq!(
            observe(&c, 1, &[r("BTC", "ranging"), r("ETH", "volatile")])
                .unwrap()
                .len(),
            2
        );
        assert!(observe(&c, 2, &[r("BTC", "ranging"), r("ETH", "volatile")])
            .unwrap()
            .is_empty());
        let seqs = observe(&c, 3, &[r("BTC", "trending_up"), r("ETH", "volatile")]).unwrap();
        assert_eq!(seqs.len(), 1);
        let evs = events::since(&c, seqs[0] - 1, 10).unwrap();
        assert_eq!(evs[0].symbol.as_deref(), Some("BTC"));
        assert_eq!(
            evs[0].payload,
            Payload::RegimeChange(RegimeChange {
                from: Some("ranging".into()),
                to: "trending_up".into()
            })
        );
        assert_eq!(events::verify(&c), Ok(3));
    }
}
