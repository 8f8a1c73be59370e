//! The append-only event log: every row is hash-chained to the previous one
//! (sha256 over the previous hash and the row's fields), so any edit or
//! deletion is detected by [`verify`]. New events also go to a broadcast channel.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub ts: i64,
    pub kind: String,
    pub symbol: Option<String>,
    pub detail: serde_json::Value,
}

fn digest(prev: &str, ts: i64, kind: &str, symbol: Option<&str>, detail: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &ts.to_string(), kind, symbol.unwrap_or(""), detail] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Appends one event and returns its sequence number. The previous hash is
/// read and the row written under the database's write lock (the caller's
/// transaction, else one `BEGIN IMMEDIATE` of its own), so two processes
/// appending at once never chain two rows to the same predecessor.
pub fn append(
    conn: &Connection,
    ts: i64,
    kind: &str,
    symbol: Option<&str>,
    detail: &serde_json::Value,
) -> rusqlite::Result<i64> {
    if !conn.is_autocommit() {
        return append_locked(conn, ts, kind, symbol, detail);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match append_locked(conn, ts, kind, symbol, detail) {
        Ok(seq) => {
            conn.execute_batch("COMMIT")?;
            Ok(seq)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn append_locked(
    conn: &Connection,
    ts: i64,
    kind: &str,
    symbol: Option<&str>,
    detail: &serde_json::Value,
) -> rusqlite::Result<i64> {
    let detail = detail.to_string();
    let prev: String = conn
        .query_row(
            "SELECT hash FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| GENESIS.to_string());
    let hash = digest(&prev, ts, kind, symbol, &detail);
    conn.execute(
        "INSERT INTO events (ts, kind, symbol, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![ts, kind, symbol, detail, prev, hash],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The in-process channel every appended event is published on (API, bot).
pub type Bus = tokio::sync::broadcast::Sender<Event>;

/// Appends one event and publishes it to `bus` subscribers (none is fine).
pub fn publish(
    conn: &Connection,
    bus: &Bus,
    ts: i64,
    kind: &str,
    symbol: Option<&str>,
    detail: &serde_json::Value,
) -> rusqlite::Result<i64> {
    let seq = append(conn, ts, kind, symbol, detail)?;
    let _ = bus.send(Event {
        seq,
        ts,
        kind: kind.to_string(),
        symbol: symbol.map(str::to_string),
        detail: detail.clone(),
    });
    Ok(seq)
}

/// Why the chain does not verify.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChainError {
    #[error("event {seq}: its hash does not match its contents (edited)")]
    Tampered { seq: i64 },
    #[error("event {seq}: it does not follow the previous event's hash (a row was removed or reordered)")]
    Broken { seq: i64 },
    #[error("database: {0}")]
    Db(String),
}

/// Checks the whole chain; returns the number of events verified.
pub fn verify(conn: &Connection) -> Result<u64, ChainError> {
    let db = |e: rusqlite::Error| ChainError::Db(e.to_string());
    let mut stmt = conn
        .prepare("SELECT seq, ts, kind, symbol, detail, prev_hash, hash FROM events ORDER BY seq")
        .map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    let mut prev = GENESIS.to_string();
    let mut n = 0;
    while let Some(r) = rows.next().map_err(db)? {
        let seq: i64 = r.get(0).map_err(db)?;
        let (ts, kind, symbol, detail): (i64, String, Option<String>, String) = (
            r.get(1).map_err(db)?,
            r.get(2).map_err(db)?,
            r.get(3).map_err(db)?,
            r.get(4).map_err(db)?,
        );
        let (prev_hash, hash): (String, String) = (r.get(5).map_err(db)?, r.get(6).map_err(db)?);
        if prev_hash != prev {
            return Err(ChainError::Broken { seq });
        }
        if digest(&prev_hash, ts, &kind, symbol.as_deref(), &detail) != hash {
            return Err(ChainError::Tampered { seq });
        }
        prev = hash;
        n += 1;
    }
    Ok(n)
}

/// Events after `since` (sequence), oldest first, at most `limit`.
pub fn since(conn: &Connection, since: i64, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare(
        "SELECT seq, ts, kind, symbol, detail FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, limit as i64], |r| {
        let detail: String = r.get(4)?;
        Ok(Event {
            seq: r.get(0)?,
            ts: r.get(1)?,
            kind: r.get(2)?,
            symbol: r.get(3)?,
            detail: serde_json::from_str(&detail).unwrap_or_default(),
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: the shell and `host orchestrate` appending at once forked
    /// the chain (both read the same previous hash).
    #[test]
    fn two_connections_appending_a_thousand_events_each_leave_a_chain_that_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("host.db");
        crate::db::open(&db).unwrap();
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let c = crate::db::open(&db).unwrap();
                    for i in 0..1_000 {
                        append(
                            &c,
                            i,
                            "test",
                            None,
                            &serde_json::json!({ "writer": w, "i": i }),
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let c = crate::db::open(&db).unwrap();
        assert_eq!(verify(&c), Ok(2_000));
    }

    #[test]
    fn chain_detects_edits_and_deletions() {
        let c = crate::db::open_in_memory().unwrap();
        for i in 0..5 {
            append(
                &c,
                i,
                "scan",
                Some("BTCUSD"),
                &serde_json::json!({ "i": i }),
            )
            .unwrap();
        }
        assert_eq!(verify(&c), Ok(5));
        c.execute("UPDATE events SET detail = '{\"i\":99}' WHERE seq = 3", [])
            .unwrap();
        assert_eq!(verify(&c), Err(ChainError::Tampered { seq: 3 }));
        c.execute("UPDATE events SET detail = '{\"i\":2}' WHERE seq = 3", [])
            .unwrap();
        assert_eq!(verify(&c), Ok(5));
        c.execute("DELETE FROM events WHERE seq = 2", []).unwrap();
        assert_eq!(verify(&c), Err(ChainError::Broken { seq: 3 }));
    }
}
