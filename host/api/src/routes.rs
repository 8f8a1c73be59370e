//! The REST endpoints: read-only views over the host's status and database,
//! and the few POSTs that steer it (halt, resume, kill, review, deploy,
//! rollback). Query strings are parsed by hand so that every bad value gets
//! a 400 naming the parameter; bodies are JSON objects, accepted only with
//! `Content-Type: application/json` (415 otherwise).

use super::auth::{error, guard};
use super::AppState;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use host_control::handle::HandleError;
use rusqlite::Connection;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type S = State<Arc<AppState>>;
type ApiResult = Result<Response, Fail>;

/// An error answer: its status and message, sent as `{"error": message}`.
pub(crate) struct Fail(pub StatusCode, pub String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const STYLE_CSS: &str = include_str!("dashboard/style.css");

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { static_file("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/index.html",
            get(|| async { static_file("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { static_file("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { static_file("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/api/v1/health", get(health))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(super::openapi::document()) }),
        )
        .route("/api/v1/status", get(status))
        .route("/api/v1/symbols", get(symbols))
        .route("/api/v1/positions", get(positions))
        .route("/api/v1/trades", get(trades))
        .route("/api/v1/events", get(events))
        .route("/api/v1/performance/daily", get(perf_daily))
        .route("/api/v1/performance/symbols", get(perf_symbols))
        .route("/api/v1/truth", get(truth))
        .route("/api/v1/karma", get(karma))
        .route("/api/v1/counterfactuals", get(counterfactuals))
        .route("/api/v1/strategy", get(strategy))
        .route("/api/v1/ai/decisions", get(ai_decisions))
        .route("/api/v1/config", get(config))
        .route("/api/v1/halt", post(halt))
        .route("/api/v1/resume", post(resume))
        .route("/api/v1/kill", post(kill))
        .route("/api/v1/review", post(review))
        .route("/api/v1/deploy", post(deploy))
        .route("/api/v1/rollback", post(rollback))
        .route("/api/v1/ws", get(super::ws::upgrade))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint: see /api/v1/openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

fn bad(message: impl Into<String>) -> Fail {
    Fail(StatusCode::BAD_REQUEST, message.into())
}

fn db_err(e: impl std::fmt::Display) -> Fail {
    Fail(StatusCode::INTERNAL_SERVER_ERROR, format!("database: {e}"))
}

fn host_err(e: HandleError) -> Fail {
    match e {
        HandleError::Refused(m) => Fail(StatusCode::CONFLICT, m),
        HandleError::Control(r) => Fail(StatusCode::CONFLICT, r.to_string()),
        HandleError::Protocol(m) => Fail(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the host did not answer: {m}"),
        ),
    }
}

/// Runs blocking host or database work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Fail> + Send + 'static,
) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("worker failed: {e}"),
        ))
    })
}

/// Query parameters, refusing unknown names and repeated ones.
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, Fail> {
        let mut m = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(bad(format!(
                    "unknown query parameter {k:?} (expected one of: {})",
                    allowed.join(", ")
                )));
            }
            if m.insert(k.to_string(), v.to_string()).is_some() {
                return Err(bad(format!("query parameter {k:?} given twice")));
            }
        }
        Ok(Query(m))
    }

    pub(crate) fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, Fail> {
        let Some(v) = self.0.get(name) else {
            return Ok(None);
        };
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| bad(format!("{name}: {v:?} is not a whole number")))?;
        if n < min || n > max {
            return Err(bad(format!("{name}: {n} is out of range {min}..={max}")));
        }
        Ok(Some(n))
    }

    /// Unix seconds or an RFC 3339 time.
    fn time(&self, name: &str) -> Result<Option<i64>, Fail> {
        let Some(v) = self.0.get(name) else {
            return Ok(None);
        };
        if let Ok(n) = v.trim().parse::<i64>() {
            return Ok(Some(n));
        }
        chrono::DateTime::parse_from_rfc3339(v.trim())
            .map(|d| Some(d.timestamp()))
            .map_err(|_| {
                bad(format!(
                    "{name}: {v:?} is neither Unix seconds nor an RFC 3339 time"
                ))
            })
    }

    fn word(&self, name: &str, ok: fn(char) -> bool, what: &str) -> Result<Option<String>, Fail> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if !v.is_empty() && v.len() <= 64 && v.chars().all(ok) => Ok(Some(v.clone())),
            Some(v) => Err(bad(format!("{name}: {v:?} is not {what}"))),
        }
    }

    fn symbol(&self) -> Result<Option<String>, Fail> {
        self.word(
            "symbol",
            |c| c.is_ascii_alphanumeric(),
            "a symbol like BTCUSD",
        )
        .map(|s| s.map(|s| s.to_ascii_uppercase()))
    }
}

/// Whether a `Content-Type` is `application/json` (parameters such as
/// `charset=utf-8` allowed).
fn is_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(b"application/json")
}

/// A JSON object body, only under `Content-Type: application/json` (what a
/// cross-site form or no-cors `fetch` cannot send); an empty body, with that
/// type or none, is an empty object.
fn body_object(headers: &HeaderMap, body: &Bytes) -> Result<serde_json::Map<String, Value>, Fail> {
    let empty = body.iter().all(u8::is_ascii_whitespace);
    match headers.get(header::CONTENT_TYPE) {
        Some(ct) if is_json(ct.as_bytes()) => {}
        None if empty => {}
        _ => {
            return Err(Fail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON sent with Content-Type: application/json".into(),
            ))
        }
    }
    if empty {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("the body must be a JSON object")),
        Err(e) => Err(bad(format!("the body is not valid JSON: {e}"))),
    }
}

use host_store::db::decimal as dec;
pub(crate) use host_store::events::EventKind;
pub(crate) use host_store::queries::{
    ai_decisions_json, query_events, recent_trades, versions, EventFilter,
};

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

async fn status(State(s): S) -> ApiResult {
    let h = s.handle.clone();
    let st = blocking(move || h.status().map_err(host_err)).await?;
    ok(serde_json::to_value(st).map_err(db_err)?)
}

/// The karma scorecard (seed 002) of the running mode.
async fn karma(State(s): S) -> ApiResult {
    let h = s.handle.clone();
    blocking(move || {
        let st = h.status().map_err(host_err)?;
        let c = h.read_db().map_err(db_err)?;
        let mode = format!("{:?}", st.mode).to_lowercase();
        let card = host_store::queries::scorecard(&c, &mode).map_err(db_err)?;
        ok(json!({ "mode": mode, "scorecard": card }))
    })
    .await
}

/// The refused entries followed to their would-be exits (seed 004), newest
/// first, and what the limits cost or saved.
async fn counterfactuals(State(s): S, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref(), &["limit"])?;
    let limit = q.int("limit", 1, 1000)?.unwrap_or(100);
    let h = s.handle.clone();
    blocking(move || {
        let st = h.status().map_err(host_err)?;
        let c = h.read_db().map_err(db_err)?;
        let mode = format!("{:?}", st.mode).to_lowercase();
        let report = host_store::shadow_db::report(&c, &mode).map_err(db_err)?;
        let rows = host_store::shadow_db::rows(&c, &mode, limit).map_err(db_err)?;
        ok(json!({ "mode": mode, "verdict": report.verdict(), "report": report, "counterfactuals": rows }))
    })
    .await
}

async fn positions(State(s): S) -> ApiResult {
    let h = s.handle.clone();
    let st = blocking(move || h.status().map_err(host_err)).await?;
    ok(json!({ "positions": st.positions }))
}

async fn symbols(State(s): S) -> ApiResult {
    let h = s.handle.clone();
    blocking(move || {
        let st = h.status().map_err(host_err)?;
        let c = h.read_db().map_err(db_err)?;
        let allowed = h.risk().allowed_symbols.clone();
        let mut out = Vec::new();
        for sym in h.symbols() {
            let mut stmt = c.prepare("SELECT pnl FROM trades WHERE symbol = ?1").map_err(db_err)?;
            let pnls: Vec<String> = stmt
                .query_map([sym], |r| r.get(0))
                .and_then(|r| r.collect())
                .map_err(db_err)?;
            let last: Option<(i64, f64)> = c
                .query_row(
                    "SELECT ts, close FROM candles WHERE symbol = ?1 ORDER BY ts DESC LIMIT 1",
                    [sym],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok();
            let pos = st.positions.iter().find(|p| &p.symbol == sym);
            out.push(json!({
                "symbol": sym,
                "allowed": allowed.as_ref().is_none_or(|a| a.contains(sym)),
                "position_qty": pos.map(|p| p.qty),
                "last_price": pos.and_then(|p| p.mark).map(|m| m.to_string()).or(last.map(|l| l.1.to_string())),
                "last_candle_ts": last.map(|l| l.0),
                "trades": pnls.len(),
                "realized_pnl": pnls.iter().map(|p| dec(p)).sum::<rusqlite::Result<Decimal>>().map_err(db_err)?,
            }));
        }
        ok(json!({ "symbols": out }))
    })
    .await
}

async fn trades(State(s): S, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref(), &["limit", "offset", "symbol"])?;
    let limit = q.int("limit", 1, 1000)?.unwrap_or(50);
    let offset = q.int("offset", 0, i64::MAX)?.unwrap_or(0);
    let symbol = q.symbol()?;
    let h = s.handle.clone();
    blocking(move || {
        let c = h.read_db().map_err(db_err)?;
        let (rows, total) = recent_trades(&c, symbol.as_deref(), limit, offset).map_err(db_err)?;
        ok(json!({ "trades": rows, "total": total, "limit": limit, "offset": offset }))
    })
    .await
}

async fn events(State(s): S, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(
        q.as_deref(),
        &["symbol", "kind", "since", "from", "to", "limit"],
    )?;
    let kind = q.word(
        "kind",
        |c| c.is_ascii_lowercase() || c == '_' || c == ',',
        "an event kind like fill (or a comma-separated list)",
    )?;
    let f = EventFilter {
        symbol: q.symbol()?,
        kinds: kind
            .map(|k| {
                k.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        EventKind::parse(s).ok_or_else(|| {
                            bad(format!(
                                "kind: {s:?} is not an event kind (one of {})",
                                EventKind::ALL
                                    .iter()
                                    .map(|k| k.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
        since: q.int("since", 0, i64::MAX)?,
        from: q.time("from")?,
        to: q.time("to")?,
    };
    if let (Some(a), Some(b)) = (f.from, f.to) {
        if a > b {
            return Err(bad(format!("from ({a}) is after to ({b})")));
        }
    }
    let limit = q.int("limit", 1, 1000)?.unwrap_or(100);
    let h = s.handle.clone();
    blocking(move || {
        let c = h.read_db().map_err(db_err)?;
        let rows = query_events(&c, &f, limit).map_err(db_err)?;
        let last: Option<i64> = c
            .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
            .map_err(db_err)?;
        ok(json!({ "events": rows, "last_seq": last }))
    })
    .await
}

/// Realized P&L of closed trades per UTC day.
fn realized_by_day(c: &Connection) -> rusqlite::Result<BTreeMap<String, (Decimal, i64)>> {
    let mut stmt = c.prepare("SELECT date(closed_at, 'unixepoch'), pnl FROM trades")?;
    let mut m: BTreeMap<String, (Decimal, i64)> = BTreeMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (day, pnl) = row?;
        let e = m.entry(day).or_default();
        e.0 += dec(&pnl)?;
        e.1 += 1;
    }
    Ok(m)
}

async fn perf_daily(State(s): S, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref(), &["limit"])?;
    let limit = q.int("limit", 1, 10_000)?.unwrap_or(365) as usize;
    let h = s.handle.clone();
    blocking(move || {
        let st = h.status().map_err(host_err)?;
        let c = h.read_db().map_err(db_err)?;
        let curve = host_store::truth_db::equity_curve(&c).map_err(db_err)?;
        let realized = realized_by_day(&c).map_err(db_err)?;
        let mut prev = st.starting_capital;
        let mut days = Vec::new();
        for (day, p, cash) in &curve {
            let (r, n) = realized.get(day).copied().unwrap_or_default();
            days.push(json!({
                "day": day, "ts": p.ts, "value": p.value, "cash": cash,
                "pnl": p.value - prev, "realized_pnl": r, "trades": n,
            }));
            prev = p.value;
        }
        let week_ago = st.clock - 7 * 86_400;
        let week_base = curve
            .iter()
            .rev()
            .find(|(_, p, _)| p.ts <= week_ago)
            .map(|(_, p, _)| p.value)
            .unwrap_or(st.starting_capital);
        let skip = days.len().saturating_sub(limit);
        ok(json!({
            "days": days.split_off(skip),
            "current": { "ts": st.clock, "value": st.equity, "cash": st.cash },
            "summary": { "today": st.daily_pnl, "week": st.equity - week_base, "all": st.total_pnl },
        }))
    })
    .await
}

async fn perf_symbols(State(s): S) -> ApiResult {
    let h = s.handle.clone();
    blocking(move || {
        let c = h.read_db().map_err(db_err)?;
        let mut stmt = c
            .prepare("SELECT symbol, pnl, fees, pnl_pct FROM trades ORDER BY symbol")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, f64>(3)?,
                ))
            })
            .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err)?;
        #[derive(Default)]
        struct Acc {
            trades: i64,
            wins: i64,
            losses: i64,
            pnl: Decimal,
            fees: Decimal,
            best: Option<f64>,
            worst: Option<f64>,
        }
        let mut m: BTreeMap<String, Acc> = BTreeMap::new();
        for (sym, pnl, fees, pct) in rows {
            let a = m.entry(sym).or_default();
            let p = dec(&pnl).map_err(db_err)?;
            a.trades += 1;
            a.wins += i64::from(p > Decimal::ZERO);
            a.losses += i64::from(p < Decimal::ZERO);
            a.pnl += p;
            a.fees += dec(&fees).map_err(db_err)?;
            a.best = Some(a.best.map_or(pct, |b| b.max(pct)));
            a.worst = Some(a.worst.map_or(pct, |w| w.min(pct)));
        }
        let out: Vec<Value> = m
            .into_iter()
            .map(|(sym, a)| {
                json!({
                    "symbol": sym, "trades": a.trades, "wins": a.wins, "losses": a.losses,
                    "win_rate": (a.trades > 0).then(|| a.wins as f64 / a.trades as f64),
                    "pnl": a.pnl, "fees": a.fees, "best_pnl_pct": a.best, "worst_pnl_pct": a.worst,
                })
            })
            .collect();
        ok(json!({ "symbols": out }))
    })
    .await
}

async fn truth(State(s): S) -> ApiResult {
    let h = s.handle.clone();
    blocking(move || {
        let st = h.status().map_err(host_err)?;
        let c = h.read_db().map_err(db_err)?;
        let current = host_store::truth_db::Current {
            ts: st.clock,
            value: st.equity,
            cash: st.cash,
        };
        let bench = h.symbols().first().cloned();
        let r = host_store::truth_db::truth_from_db(&c, Some(current), bench.as_deref())
            .map_err(db_err)?;
        ok(serde_json::to_value(r).map_err(db_err)?)
    })
    .await
}

async fn strategy(State(s): S) -> ApiResult {
    let h = s.handle.clone();
    blocking(move || {
        let st = h.status().map_err(host_err)?;
        let c = h.read_db().map_err(db_err)?;
        let v = versions(&c).map_err(db_err)?;
        ok(json!({ "active": st.strategy, "paused": st.paused, "versions": v }))
    })
    .await
}

async fn ai_decisions(State(s): S, RawQuery(q): RawQuery) -> ApiResult {
    let q = Query::parse(q.as_deref(), &["limit"])?;
    let limit = q.int("limit", 1, 1000)?.unwrap_or(20);
    let h = s.handle.clone();
    blocking(move || {
        let c = h.read_db().map_err(db_err)?;
        ok(ai_decisions_json(&c, limit).map_err(db_err)?)
    })
    .await
}

async fn config(State(s): S) -> ApiResult {
    // Settings hold no secrets: tokens and keys come from the environment only.
    ok(json!({
        "settings": s.config.show().map_err(db_err)?,
        "risk_limits": serde_json::to_value(s.handle.risk()).map_err(db_err)?,
        "api": { "auth": true, "cors": false },
    }))
}

async fn halt(State(s): S, headers: HeaderMap, body: Bytes) -> ApiResult {
    body_object(&headers, &body)?;
    let h = s.handle.clone();
    let changed = blocking(move || h.halt("api").map_err(host_err)).await?;
    ok(json!({ "ok": true, "changed": changed }))
}

async fn resume(State(s): S, headers: HeaderMap, body: Bytes) -> ApiResult {
    body_object(&headers, &body)?;
    let h = s.handle.clone();
    let changed = blocking(move || h.resume("api").map_err(host_err)).await?;
    ok(json!({ "ok": true, "changed": changed }))
}

async fn kill(State(s): S, headers: HeaderMap, body: Bytes) -> ApiResult {
    let b = body_object(&headers, &body)?;
    if b.get("confirm") != Some(&Value::Bool(true)) {
        return Err(bad("the kill switch cancels every order and closes every position at market: send {\"confirm\": true}"));
    }
    let h = s.handle.clone();
    let o = blocking(move || h.kill("api").map_err(host_err)).await?;
    ok(json!({ "ok": true, "cancelled_orders": o.cancelled_orders, "closing": o.closing }))
}

async fn review(State(s): S, headers: HeaderMap, body: Bytes) -> ApiResult {
    let b = body_object(&headers, &body)?;
    let reason = match b.get("reason") {
        None | Some(Value::Null) => "manual review from the API".to_string(),
        Some(Value::String(r)) if r.len() <= 1000 => r.clone(),
        Some(_) => return Err(bad("reason: expected a string of at most 1000 characters")),
    };
    let h = s.handle.clone();
    let seq = blocking(move || h.trigger_review("api", &reason).map_err(host_err)).await?;
    ok(json!({ "ok": true, "seq": seq }))
}

async fn deploy(State(s): S, headers: HeaderMap, body: Bytes) -> ApiResult {
    let b = body_object(&headers, &body)?;
    let version = match b.get("version") {
        Some(v) => v
            .as_i64()
            .filter(|v| *v >= 1)
            .ok_or_else(|| bad(format!("version: {v} is not a version number (1, 2, ...)")))?,
        None => return Err(bad("version: required, e.g. {\"version\": 3}")),
    };
    let h = s.handle.clone();
    let o = blocking(move || h.deploy_version(version).map_err(host_err)).await?;
    ok(serde_json::to_value(o).map_err(db_err)?)
}

async fn rollback(State(s): S, headers: HeaderMap, body: Bytes) -> ApiResult {
    body_object(&headers, &body)?;
    let h = s.handle.clone();
    let o = blocking(move || h.rollback().map_err(host_err)).await?;
    ok(serde_json::to_value(o).map_err(db_err)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    #[test]
    fn bodies_are_json_only_with_the_json_type() {
        let body = Bytes::from_static(br#"{"confirm":true}"#);
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
        ] {
            assert!(body_object(&with(Some(ok)), &body).is_ok(), "{ok}");
        }
        for bad in [
            Some("text/plain"),
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/jsonx"),
            Some(""),
            None,
        ] {
            let e = body_object(&with(bad), &body).err().map(|f| f.0);
            assert_eq!(e, Some(StatusCode::UNSUPPORTED_MEDIA_TYPE), "{bad:?}");
        }
        assert!(body_object(&with(None), &Bytes::new()).is_ok());
        assert!(body_object(&with(Some("text/plain")), &Bytes::new()).is_err());
        let e = body_object(&with(Some("application/json")), &Bytes::from_static(b"[1]"));
        assert_eq!(e.err().map(|f| f.0), Some(StatusCode::BAD_REQUEST));
    }
}
