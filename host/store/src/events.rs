//! The append-only event log: every row is hash-chained to the previous one
//! (sha256 over the previous hash and the row's fields), so any edit or
//! deletion is detected by [`verify`]. New events also go to a broadcast channel.
//!
//! Events are typed: an [`Event`] carries a [`Payload`], one variant per
//! [`EventKind`], and is turned into text (`kind`, `detail` JSON) only here,
//! at the store boundary. The stored kind names are the ones the log has
//! always used, so old databases read back and their chains still verify. A
//! row whose kind this build does not know, or whose detail does not parse
//! into its kind's type, reads back as [`Payload::Other`] (never a panic,
//! never dropped); it serialises back to exactly its stored text.

use crate::payloads::*;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use trading_core::{ClosedTrade, EngineEvent, FillRecord, PendingOrder};

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

macro_rules! event_kinds {
    ($($variant:ident($ty:ty) => $name:literal,)*) => {
        /// Every kind of event the host writes (stored as its snake_case name).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum EventKind {
            $($variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The name stored in the `kind` column.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// The kind stored as `s`, if this build knows it.
            pub fn parse(s: &str) -> Option<EventKind> {
                match s {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }

        /// An event's typed content, one variant per [`EventKind`].
        #[derive(Debug, Clone, PartialEq)]
        pub enum Payload {
            $($variant($ty),)*
            /// A row this build cannot type (an unknown kind, or a detail
            /// that does not parse into its kind's type): kept as stored.
            Other(Other),
        }

        impl Payload {
            /// The kind, None for [`Payload::Other`].
            pub fn kind(&self) -> Option<EventKind> {
                match self {
                    $(Payload::$variant(_) => Some(EventKind::$variant),)*
                    Payload::Other(_) => None,
                }
            }

            /// The stored kind name (an [`Other`]'s own).
            pub fn kind_name(&self) -> &str {
                match self {
                    $(Payload::$variant(_) => $name,)*
                    Payload::Other(o) => &o.kind,
                }
            }

            /// The `detail` column's JSON text.
            pub fn detail_json(&self) -> Result<String, serde_json::Error> {
                match self {
                    $(Payload::$variant(p) => serde_json::to_string(p),)*
                    Payload::Other(o) => Ok(o.detail.clone()),
                }
            }

            /// Reads a stored row's kind and detail.
            pub fn decode(kind: &str, detail: &str) -> Payload {
                let other = |error: Option<String>| Payload::Other(Other {
                    kind: kind.to_string(),
                    detail: detail.to_string(),
                    error,
                });
                match kind {
                    $($name => match serde_json::from_str::<$ty>(detail) {
                        Ok(p) => Payload::$variant(p),
                        Err(e) => other(Some(e.to_string())),
                    },)*
                    _ => other(None),
                }
            }
        }
    };
}

event_kinds! {
    Startup(Startup) => "startup",
    Shutdown(Shutdown) => "shutdown",
    Alert(Alert) => "alert",
    Error(ErrorEvent) => "error",
    DeployFailed(DeployFailed) => "deploy_failed",
    Deploy(Deploy) => "deploy",
    Halt(Halt) => "halt",
    Resume(Resume) => "resume",
    Kill(Kill) => "kill",
    TuningTrigger(TuningTrigger) => "tuning_trigger",
    TelegramUnauthorized(TelegramUnauthorized) => "telegram_unauthorized",
    StrategyPaused(StrategyPaused) => "strategy_paused",
    OrdersCancelled(OrdersCancelled) => "orders_cancelled",
    ReviewStarted(ReviewStarted) => "review_started",
    Reconcile(crate::account::Reconciliation) => "reconcile",
    VenueReconcile(VenueReconciliation) => "venue_reconcile",
    StrategyFallback(StrategyLoaded) => "strategy_fallback",
    StrategyLoaded(StrategyLoaded) => "strategy_loaded",
    Backfill(Backfill) => "backfill",
    GapFill(GapFill) => "gap_fill",
    FutureCandle(FutureCandle) => "future_candle",
    FeeSchedule(FeeSchedule) => "fee_schedule",
    BarsMissing(BarsMissing) => "bars_missing",
    StaleData(DataState) => "stale_data",
    DataFresh(DataState) => "data_fresh",
    Fill(FillRecord) => "fill",
    PositionClosed(ClosedTrade) => "position_closed",
    OrderCancelled(OrderCancelled) => "order_cancelled",
    OrderExpired(OrderExpired) => "order_expired",
    Halted(Halted) => "halted",
    Order(PendingOrder) => "order",
    OrderSent(OrderSent) => "order_sent",
    OrderSendFailed(OrderSendFailed) => "order_send_failed",
    OrderAbandoned(OrderAbandoned) => "order_abandoned",
    ExternalFill(ExternalFill) => "external_fill",
    BalanceAdjusted(TrueUp) => "balance_adjusted",
    Counterfactual(RefusedEntry) => "counterfactual",
    CounterfactualClosed(ShadowClosed) => "counterfactual_closed",
    RiskDecision(RiskDecision) => "risk_decision",
    ModuleError(ModuleErrorEvent) => "module_error",
    OrchestratorRun(OrchestratorRun) => "orchestrator_run",
    RegimeChange(RegimeChange) => "regime_change",
    ConfigChange(ConfigChange) => "config_change",
    PauseSymbol(SymbolToggle) => "pause_symbol",
    ResumeSymbol(SymbolToggle) => "resume_symbol",
    Heartbeat(Heartbeat) => "heartbeat",
    ForceExit(ForceExit) => "force_exit",
    ShadowStarted(ShadowStarted) => "shadow_started",
    ShadowPromoted(ShadowPromoted) => "shadow_promoted",
    ShadowRefused(ShadowRefused) => "shadow_refused",
    AutoRollback(AutoRollback) => "auto_rollback",
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored row this build cannot type.
#[derive(Debug, Clone, PartialEq)]
pub struct Other {
    pub kind: String,
    /// The stored detail text, unchanged.
    pub detail: String,
    /// Why a known kind's detail did not parse (None: the kind is unknown).
    pub error: Option<String>,
}

impl Payload {
    /// The payload of an engine event and the symbol it concerns.
    pub fn from_engine(ev: &EngineEvent) -> (Payload, Option<String>) {
        match ev {
            EngineEvent::Filled(r) => (Payload::Fill(r.clone()), Some(r.fill.symbol.clone())),
            EngineEvent::PositionClosed(t) => {
                (Payload::PositionClosed(t.clone()), Some(t.symbol.clone()))
            }
            EngineEvent::OrderCancelled {
                order_id,
                symbol,
                reason,
            } => (
                Payload::OrderCancelled(OrderCancelled {
                    order_id: *order_id,
                    symbol: symbol.clone(),
                    reason: reason.clone(),
                }),
                Some(symbol.clone()),
            ),
            EngineEvent::OrderExpired { order_id, symbol } => (
                Payload::OrderExpired(OrderExpired {
                    order_id: *order_id,
                    symbol: symbol.clone(),
                }),
                Some(symbol.clone()),
            ),
            EngineEvent::Halted(h) => (
                Payload::Halted(Halted {
                    reason: *h,
                    message: h.to_string(),
                }),
                None,
            ),
        }
    }

    /// The `detail` as a JSON value, for the wire (API, WebSocket); an
    /// [`Other`] whose text is not JSON is given as a string.
    fn detail_for_wire<S: serde::Serializer>(&self) -> Result<serde_json::Value, S::Error> {
        use serde::ser::Error;
        match self {
            Payload::Other(o) => Ok(serde_json::from_str(&o.detail)
                .unwrap_or_else(|_| serde_json::Value::String(o.detail.clone()))),
            p => p
                .detail_json()
                .and_then(|s| serde_json::from_str(&s))
                .map_err(S::Error::custom),
        }
    }
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub ts: i64,
    pub symbol: Option<String>,
    pub payload: Payload,
}

impl Event {
    pub fn kind(&self) -> Option<EventKind> {
        self.payload.kind()
    }

    /// The stored kind name.
    pub fn kind_name(&self) -> &str {
        self.payload.kind_name()
    }
}

/// On the wire an event is `{seq, ts, kind, symbol, detail}`, as stored.
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let detail = self.payload.detail_for_wire::<S>()?;
        let mut st = s.serialize_struct("Event", 5)?;
        st.serialize_field("seq", &self.seq)?;
        st.serialize_field("ts", &self.ts)?;
        st.serialize_field("kind", self.kind_name())?;
        st.serialize_field("symbol", &self.symbol)?;
        st.serialize_field("detail", &detail)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Event, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            seq: i64,
            ts: i64,
            kind: String,
            symbol: Option<String>,
            detail: serde_json::Value,
        }
        let w = Wire::deserialize(d)?;
        Ok(Event {
            seq: w.seq,
            ts: w.ts,
            symbol: w.symbol,
            payload: Payload::decode(&w.kind, &w.detail.to_string()),
        })
    }
}

/// Why an event was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("event detail not serialisable: {0}")]
    Encode(#[from] serde_json::Error),
}

fn digest(prev: &str, ts: i64, kind: &str, symbol: Option<&str>, detail: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &ts.to_string(), kind, symbol.unwrap_or(""), detail] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Only a typed payload is written: an [`Other`] is what was read, never new.
#[derive(Debug, thiserror::Error)]
#[error("an untyped event ({kind}) cannot be appended")]
pub struct UntypedAppend {
    pub kind: String,
}

/// The row text of a payload: (kind, detail JSON).
fn encode(payload: &Payload) -> rusqlite::Result<(&'static str, String)> {
    let conv =
        |e: Box<dyn std::error::Error + Send + Sync>| rusqlite::Error::ToSqlConversionFailure(e);
    let kind = payload.kind().ok_or_else(|| {
        conv(Box::new(UntypedAppend {
            kind: payload.kind_name().to_string(),
        }))
    })?;
    let detail = payload.detail_json().map_err(|e| conv(Box::new(e)))?;
    Ok((kind.as_str(), detail))
}

/// Appends one event and returns its sequence number. The previous hash is
/// read and the row written under the database's write lock (the caller's
/// transaction, else one `BEGIN IMMEDIATE` of its own), so two processes
/// appending at once never chain two rows to the same predecessor.
pub fn append(
    conn: &Connection,
    ts: i64,
    symbol: Option<&str>,
    payload: &Payload,
) -> rusqlite::Result<i64> {
    let (kind, detail) = encode(payload)?;
    if !conn.is_autocommit() {
        return append_locked(conn, ts, kind, symbol, &detail);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match append_locked(conn, ts, kind, symbol, &detail) {
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
    detail: &str,
) -> rusqlite::Result<i64> {
    let prev: String = conn
        .prepare_cached("SELECT hash FROM events ORDER BY seq DESC LIMIT 1")
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .optional()?
        .unwrap_or_else(|| GENESIS.to_string());
    let hash = digest(&prev, ts, kind, symbol, detail);
    conn.prepare_cached("INSERT INTO events (ts, kind, symbol, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)").and_then(|mut st| st.execute(params![ts, kind, symbol, detail, prev, hash]))?;
    Ok(conn.last_insert_rowid())
}

/// The in-process channel every appended event is published on (API, bot).
pub type Bus = tokio::sync::broadcast::Sender<Event>;

/// Appends one event and publishes it to `bus` subscribers (none is fine).
pub fn publish(
    conn: &Connection,
    bus: &Bus,
    ts: i64,
    symbol: Option<&str>,
    payload: Payload,
) -> rusqlite::Result<i64> {
    let seq = append(conn, ts, symbol, &payload)?;
    let _ = bus.send(Event {
        seq,
        ts,
        symbol: symbol.map(str::to_string),
        payload,
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

/// Reads one row `(seq, ts, kind, symbol, detail)` of a query into an [`Event`].
pub fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let kind: String = r.get(2)?;
    let detail: String = r.get(4)?;
    Ok(Event {
        seq: r.get(0)?,
        ts: r.get(1)?,
        symbol: r.get(3)?,
        payload: Payload::decode(&kind, &detail),
    })
}

/// Events after `since` (sequence), oldest first, at most `limit`.
pub fn since(conn: &Connection, since: i64, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, ts, kind, symbol, detail FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![since, limit as i64], from_row)?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(i: i64) -> Payload {
        Payload::Alert(Alert {
            message: format!("m{i}"),
        })
    }

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
                        append(&c, i, None, &alert(w * 10_000 + i)).unwrap();
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
            append(&c, i, Some("BTCUSD"), &alert(i)).unwrap();
        }
        assert_eq!(verify(&c), Ok(5));
        let original: String = c
            .query_row("SELECT detail FROM events WHERE seq = 3", [], |r| r.get(0))
            .unwrap();
        c.execute(
            "UPDATE events SET detail = '{\"message\":\"m99\"}' WHERE seq = 3",
            [],
        )
        .unwrap();
        assert_eq!(verify(&c), Err(ChainError::Tampered { seq: 3 }));
        c.execute("UPDATE events SET detail = ?1 WHERE seq = 3", [original])
            .unwrap();
        assert_eq!(verify(&c), Ok(5));
        c.execute("DELETE FROM events WHERE seq = 2", []).unwrap();
        assert_eq!(verify(&c), Err(ChainError::Broken { seq: 3 }));
    }

    /// Rows written before the log was typed (their kind names and JSON, as
    /// the old `json!` call sites wrote them) read back into their types, and
    /// a chain of such rows still verifies.
    #[test]
    fn rows_written_by_the_untyped_log_read_back_typed_and_verify() {
        let c = crate::db::open_in_memory().unwrap();
        let old: &[(&str, Option<&str>, &str)] = &[
            (
                "halt",
                None,
                r#"{"by":"telegram","newly":true,"reason":"manual"}"#,
            ),
            (
                "deploy",
                None,
                r#"{"first_scan":4,"hash":"ab","origin":"rollback","previous":2,"version":1}"#,
            ),
            (
                "deploy",
                None,
                r#"{"offline":true,"previous":null,"version":3}"#,
            ),
            (
                "halted",
                None,
                r#"{"event":"halted","limit":"5","message":"daily loss 6% reached the 5% limit","pct":"6","reason":"daily_loss"}"#,
            ),
            (
                "kill",
                None,
                r#"{"by":"cli","outcome":{"cancelled_orders":2,"closing":["BTCUSD"]}}"#,
            ),
            (
                "counterfactual",
                Some("BTCUSD"),
                r#"{"price":"100","qty":"0.5","refusal":{"detail":{"max":1,"open":1},"kind":"max_positions"},"symbol":"BTCUSD","time":60}"#,
            ),
            (
                "telegram_unauthorized",
                None,
                r#"{"chat":1,"from":2,"note":"x","reason":"chat"}"#,
            ),
            (
                "orchestrator_run",
                None,
                r#"{"decision":"keep","outcome":"kept","run_id":"r1"}"#,
            ),
            ("scan", None, r#"{"i":1}"#),
            ("alert", None, r#"{"no_message":1}"#),
        ];
        let mut prev = GENESIS.to_string();
        for (i, (kind, sym, detail)) in old.iter().enumerate() {
            let ts = i as i64;
            let hash = digest(&prev, ts, kind, *sym, detail);
            c.execute(
                "INSERT INTO events (ts, kind, symbol, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![ts, kind, sym, detail, prev, hash],
            )
            .unwrap();
            prev = hash;
        }
        append(&c, 99, None, &alert(1)).unwrap();
        assert_eq!(verify(&c), Ok(old.len() as u64 + 1));
        let evs = since(&c, 0, 100).unwrap();
        assert!(matches!(&evs[0].payload, Payload::Halt(h) if h.by == "telegram" && h.newly));
        assert!(
            matches!(&evs[1].payload, Payload::Deploy(d) if d.is_rollback() && d.previous == Some(2))
        );
        assert!(matches!(&evs[2].payload, Payload::Deploy(d) if d.offline && d.previous.is_none()));
        match &evs[3].payload {
            Payload::Halted(h) => assert!(matches!(
                h.reason,
                trading_core::HaltReason::DailyLoss { .. }
            )),
            p => panic!("{p:?}"),
        }
        assert!(matches!(&evs[4].payload, Payload::Kill(k) if k.outcome.closing == ["BTCUSD"]));
        assert!(
            matches!(&evs[5].payload, Payload::Counterfactual(c) if c.refusal.kind == "max_positions")
        );
        assert!(
            matches!(&evs[6].payload, Payload::TelegramUnauthorized(t) if t.chat == 1 && t.from == Some(2))
        );
        assert!(matches!(&evs[7].payload, Payload::OrchestratorRun(r) if r.run_id == "r1"));
        // an unknown kind and an unparsable detail: typed as Other, kept as stored
        assert!(
            matches!(&evs[8].payload, Payload::Other(o) if o.kind == "scan" && o.error.is_none())
        );
        assert!(
            matches!(&evs[9].payload, Payload::Other(o) if o.kind == "alert" && o.error.is_some())
        );
        assert_eq!(evs[9].kind_name(), "alert");
        assert_eq!(evs[9].kind(), None);
        let wire = serde_json::to_value(&evs[8]).unwrap();
        assert_eq!(wire["kind"], "scan");
        assert_eq!(wire["detail"]["i"], 1);
        // an untyped payload is never appended
        assert!(append(&c, 100, None, &evs[8].payload).is_err());
    }

    #[test]
    fn every_kind_name_parses_back_and_is_unique() {
        let mut names = std::collections::BTreeSet::new();
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
            assert!(names.insert(k.as_str()), "{k} twice");
            // the serde name is the stored name
            assert_eq!(
                serde_json::to_string(k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
    }

    #[test]
    fn a_typed_event_round_trips_through_the_store() {
        let c = crate::db::open_in_memory().unwrap();
        let p = Payload::PauseSymbol(SymbolToggle {
            by: "telegram".into(),
            changed: true,
        });
        append(&c, 5, Some("ETHUSD"), &p).unwrap();
        let evs = since(&c, 0, 10).unwrap();
        assert_eq!(evs[0].payload, p);
        assert_eq!(evs[0].symbol.as_deref(), Some("ETHUSD"));
        let back: Event = serde_json::from_str(&serde_json::to_string(&evs[0]).unwrap()).unwrap();
        assert_eq!(back, evs[0]);
    }
}
