//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, written by hand:
//! every endpoint, its parameters and the JSON schema of its answers. The API
//! tests validate every live response against these schemas. Money is a
//! decimal string; times are Unix seconds.

use serde_json::{json, Map, Value};

fn t(ty: &str) -> Value {
    json!({ "type": ty })
}
fn opt(ty: &str) -> Value {
    json!({ "type": [ty, "null"] })
}
/// An exact decimal amount, as a string.
fn money() -> Value {
    json!({ "type": "string", "description": "exact decimal" })
}
fn opt_money() -> Value {
    json!({ "type": ["string", "null"], "description": "exact decimal" })
}
fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}
fn opt_ref(name: &str) -> Value {
    json!({ "anyOf": [r(name), { "type": "null" }] })
}
fn arr(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}
/// An object whose listed properties are all required.
fn obj(props: &[(&str, Value)]) -> Value {
    let mut p = Map::new();
    for (k, v) in props {
        p.insert((*k).to_string(), v.clone());
    }
    json!({ "type": "object", "properties": p, "required": props.iter().map(|(k, _)| *k).collect::<Vec<_>>() })
}

fn schemas() -> Value {
    let error = obj(&[("error", t("string"))]);
    let position = obj(&[
        ("symbol", t("string")),
        ("qty", money()),
        ("avg_entry", money()),
        ("mark", opt_money()),
        ("value", money()),
        ("unrealized_pnl", money()),
        ("stop_loss", opt_money()),
        ("take_profit", opt_money()),
        ("opened_at", t("integer")),
        ("intent", t("string")),
        ("tag", t("string")),
    ]);
    let strategy_status = obj(&[
        ("version", t("integer")),
        ("hash", t("string")),
        ("scan_minutes", t("integer")),
        ("failures", t("integer")),
    ]);
    let risk_limits = obj(&[
        ("max_trade_pct", t("number")),
        ("default_trade_pct", t("number")),
        ("max_open_positions", t("integer")),
        ("max_daily_loss_pct", t("number")),
        ("max_drawdown_pct", t("number")),
        ("max_consecutive_losses", t("integer")),
        (
            "allowed_symbols",
            json!({ "type": ["array", "null"], "items": t("string") }),
        ),
    ]);
    let status = obj(&[
        ("running", t("boolean")),
        (
            "mode",
            json!({ "type": "string", "enum": ["paper", "live"] }),
        ),
        ("paused", opt("string")),
        ("strategy", opt_ref("StrategyStatus")),
        ("scan_seq", t("integer")),
        ("last_scan_ts", opt("integer")),
        ("clock", t("integer")),
        ("starting_capital", money()),
        ("cash", money()),
        ("equity", money()),
        ("total_pnl", money()),
        ("realized_pnl", money()),
        ("unrealized_pnl", money()),
        ("daily_pnl", money()),
        ("fees_paid", money()),
        ("drawdown_pct", money()),
        ("positions", arr(r("Position"))),
        ("open_orders", t("integer")),
        ("closed_trades", t("integer")),
        ("halt", opt("string")),
        ("killed", t("boolean")),
        ("paused_symbols", arr(t("string"))),
        ("limits", r("RiskLimits")),
        ("shadows", arr(r("ShadowStatus"))),
    ]);
    let shadow_status = obj(&[
        ("id", t("integer")),
        ("run_id", t("string")),
        ("origin", t("string")),
        ("started_at", t("integer")),
        ("until", t("integer")),
        ("candidate_return_pct", opt("number")),
        ("incumbent_return_pct", opt("number")),
        ("candidate_max_drawdown_pct", t("number")),
        ("signals", t("integer")),
    ]);
    let trade = obj(&[
        ("id", t("integer")),
        ("symbol", t("string")),
        (
            "side",
            json!({ "type": "string", "enum": ["long", "short"] }),
        ),
        ("qty", money()),
        ("entry_price", money()),
        ("exit_price", money()),
        ("pnl", money()),
        ("pnl_pct", t("number")),
        ("fees", money()),
        ("intent", opt("string")),
        ("tag", opt("string")),
        (
            "close_reason",
            json!({ "type": "string", "enum": ["signal", "stop_loss", "take_profit", "kill", "reconcile", "end_of_data"] }),
        ),
        ("opened_at", t("integer")),
        ("closed_at", t("integer")),
        (
            "mode",
            json!({ "type": "string", "enum": ["paper", "live"] }),
        ),
    ]);
    let event = obj(&[
        ("seq", t("integer")),
        ("ts", t("integer")),
        ("kind", t("string")),
        ("symbol", opt("string")),
        ("detail", json!({ "description": "kind-specific JSON" })),
    ]);
    let day = obj(&[
        ("day", t("string")),
        ("ts", t("integer")),
        ("value", money()),
        ("cash", money()),
        ("pnl", money()),
        ("realized_pnl", money()),
        ("trades", t("integer")),
    ]);
    let symbol_perf = obj(&[
        ("symbol", t("string")),
        ("trades", t("integer")),
        ("wins", t("integer")),
        ("losses", t("integer")),
        ("win_rate", opt("number")),
        ("pnl", money()),
        ("fees", money()),
        ("best_pnl_pct", opt("number")),
        ("worst_pnl_pct", opt("number")),
    ]);
    let truth = obj(&[
        ("trade_count", t("integer")),
        ("win_count", t("integer")),
        ("loss_count", t("integer")),
        ("win_rate", opt("number")),
        ("net_pnl", money()),
        ("total_fees", money()),
        ("avg_win", opt_money()),
        ("avg_loss", opt_money()),
        ("expectancy", opt_money()),
        ("consecutive_losses", t("integer")),
        ("portfolio_value", opt_money()),
        ("portfolio_cash", opt_money()),
        ("max_drawdown_pct", opt("number")),
        ("total_signals", t("integer")),
        ("acted_signals", t("integer")),
        ("signal_act_rate", opt("number")),
        ("total_scans", t("integer")),
        ("first_scan_at", opt("integer")),
        ("last_scan_at", opt("integer")),
        ("current_strategy_version", opt("string")),
        ("strategy_version_count", t("integer")),
        ("profit_factor", opt("number")),
        (
            "close_reason_breakdown",
            json!({ "type": "object", "additionalProperties": t("integer") }),
        ),
        ("avg_trade_duration_hours", opt("number")),
        ("best_trade_pnl_pct", opt_money()),
        ("worst_trade_pnl_pct", opt_money()),
        ("sharpe_ratio", opt("number")),
        ("sortino_ratio", opt("number")),
        ("cagr", opt("number")),
        ("calmar", opt("number")),
        ("market_change_pct", opt("number")),
    ]);
    let version = obj(&[
        ("version", t("integer")),
        ("hash", t("string")),
        ("contract_version", t("string")),
        ("origin", t("string")),
        ("status", t("string")),
        ("note", opt("string")),
        ("params", t("array")),
        ("created_at", t("string")),
        ("deployed_at", opt("string")),
        ("retired_at", opt("string")),
        ("has_source", t("boolean")),
    ]);
    let run = obj(&[
        ("id", t("integer")),
        ("run_id", t("string")),
        ("ts", t("integer")),
        ("trigger", t("string")),
        ("proposer", opt("string")),
        ("decision", t("string")),
        ("template", opt("string")),
        ("params", t("array")),
        ("outcome", t("string")),
        ("rejection_code", opt("string")),
        ("rejection", opt("string")),
        ("deployed_version", opt("integer")),
        ("report", t("string")),
    ]);
    let change = obj(&[
        ("id", t("integer")),
        ("ts", t("integer")),
        ("param", t("string")),
        ("symbol", t("string")),
        ("old_value", opt("string")),
        ("new_value", t("string")),
        ("reason", t("string")),
        ("confidence", opt("number")),
        ("run_id", opt("string")),
    ]);
    let audit = obj(&[
        ("id", t("integer")),
        ("ts", t("integer")),
        ("trigger", t("string")),
        ("model", t("string")),
        ("tokens_in", t("integer")),
        ("tokens_out", t("integer")),
        ("latency_ms", t("integer")),
        ("cost_usd", t("number")),
        ("status", opt("integer")),
    ]);
    let deploy = obj(&[
        ("version", t("integer")),
        ("hash", t("string")),
        ("previous", opt("integer")),
        ("first_scan", t("integer")),
        ("state_bytes", t("integer")),
    ]);
    json!({
        "Error": error,
        "Position": position,
        "StrategyStatus": strategy_status,
        "ShadowStatus": shadow_status,
        "RiskLimits": risk_limits,
        "Status": status,
        "Trade": trade,
        "Event": event,
        "Day": day,
        "SymbolPerformance": symbol_perf,
        "Truth": truth,
        "StrategyVersion": version,
        "OrchestratorRun": run,
        "ConfigChange": change,
        "AiCall": audit,
        "DeployOutcome": deploy,
        "Health": obj(&[("status", json!({ "type": "string", "enum": ["ok"] })), ("version", t("string"))]),
        "Symbol": obj(&[
            ("symbol", t("string")),
            ("allowed", t("boolean")),
            ("position_qty", opt_money()),
            ("last_price", opt("string")),
            ("last_candle_ts", opt("integer")),
            ("trades", t("integer")),
            ("realized_pnl", money()),
            ("paused", t("boolean")),
        ]),
        "Changed": obj(&[("ok", t("boolean")), ("changed", t("boolean"))]),
        "Candle": obj(&[
            ("ts", t("integer")),
            ("open", t("number")),
            ("high", t("number")),
            ("low", t("number")),
            ("close", t("number")),
            ("volume", t("number")),
        ]),
        "Fill": obj(&[
            ("id", t("integer")),
            ("ts", t("integer")),
            ("symbol", t("string")),
            ("action", json!({ "type": "string", "enum": ["buy", "sell"] })),
            ("qty", money()),
            ("price", money()),
            ("fee", money()),
            ("tag", opt("string")),
        ]),
        "DiffLine": obj(&[
            ("op", json!({ "type": "string", "enum": ["same", "added", "removed"] })),
            ("text", t("string")),
        ]),
        "Diff": json!({ "anyOf": [
            obj(&[
                ("kind", json!({ "type": "string", "enum": ["lines"] })),
                ("lines", arr(r("DiffLine"))),
                ("added", t("integer")),
                ("removed", t("integer")),
            ]),
            obj(&[
                ("kind", json!({ "type": "string", "enum": ["too_large"] })),
                ("old_lines", t("integer")),
                ("new_lines", t("integer")),
            ]),
        ] }),
        "TunerRun": obj(&[
            ("id", t("integer")),
            ("run_id", t("string")),
            ("ts", t("integer")),
            ("trigger", t("string")),
            ("proposer", opt("string")),
            ("decision", t("string")),
            ("template", opt("string")),
            ("params", arr(arr(t("string")))),
            ("result", t("string")),
            ("rejection_code", opt("string")),
            ("rejection", opt("string")),
            ("deployed_version", opt("integer")),
            ("reasoning", opt("string")),
            ("confidence", opt("number")),
            ("incumbent_version", opt("integer")),
            ("figures", arr(obj(&[("name", t("string")), ("value", opt("number"))]))),
            ("changes", arr(obj(&[
                ("param", t("string")),
                ("symbol", t("string")),
                ("old_value", opt("string")),
                ("new_value", t("string")),
                ("reason", t("string")),
                ("confidence", opt("number")),
            ]))),
            ("source_diff", opt_ref("Diff")),
        ]),
        "VersionRecord": obj(&[
            ("version", t("integer")),
            ("hash", t("string")),
            ("contract_version", t("string")),
            ("params", arr(arr(t("string")))),
            ("origin", t("string")),
            ("status", t("string")),
            ("note", opt("string")),
            ("created_at", t("string")),
            ("deployed_at", opt("string")),
        ]),
        "ArchivedBacktest": obj(&[
            ("start", t("integer")),
            ("end", t("integer")),
            ("starting_capital", money()),
            ("final_value", money()),
            ("return_pct", opt("number")),
            ("equity_curve", arr(obj(&[("ts", t("integer")), ("value", money())]))),
        ]),
        "LiveResults": obj(&[
            ("scans", t("integer")),
            ("first_scan_ts", opt("integer")),
            ("last_scan_ts", opt("integer")),
            ("trades", t("integer")),
            ("wins", t("integer")),
            ("losses", t("integer")),
            ("pnl", money()),
            ("fees", money()),
            ("pnl_curve", json!({ "type": "array", "items": { "type": "array", "description": "[closed_at, cumulative P&L as an exact decimal string]" } })),
        ]),
    })
}

fn param(name: &str, schema: Value, desc: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": desc })
}

fn answer(desc: &str, schema: Value) -> Value {
    json!({ "description": desc, "content": { "application/json": { "schema": schema } } })
}

fn get_op(summary: &str, params: Vec<Value>, ok: Value) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), answer("OK", ok));
    if !params.is_empty() {
        responses.insert(
            "400".into(),
            answer("a bad query value (the message names it)", r("Error")),
        );
    }
    responses.insert(
        "401".into(),
        answer("missing or wrong bearer token", r("Error")),
    );
    responses.insert(
        "403".into(),
        answer(
            "the Host is not this server (DNS rebinding), or a WebSocket's Origin is foreign",
            r("Error"),
        ),
    );
    responses.insert(
        "429".into(),
        answer("rate limited; see Retry-After", r("Error")),
    );
    json!({ "summary": summary, "parameters": params, "responses": responses })
}

/// `op` with a 404 answer (`what` was not found).
fn with_404(mut op: Value, what: &str) -> Value {
    op["responses"]["404"] = answer(what, r("Error"));
    op
}

fn post_op(summary: &str, body: Option<Value>, ok: Value) -> Value {
    let mut op = json!({
        "summary": summary,
        "responses": {
            "200": answer("OK", ok),
            "400": answer("a bad body", r("Error")),
            "401": answer("missing or wrong bearer token", r("Error")),
            "403": answer("the Host is not this server, or the Origin is another site", r("Error")),
            "409": answer("the host refused (the message says why)", r("Error")),
            "415": answer("a body without Content-Type: application/json", r("Error")),
            "429": answer("rate limited; see Retry-After", r("Error")),
        }
    });
    if let Some(b) = body {
        op["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": b } } });
    }
    op
}

/// The document.
pub fn document() -> Value {
    let limit = |max: i64, default: i64| json!({ "type": "integer", "minimum": 1, "maximum": max, "default": default });
    let symbol = param(
        "symbol",
        json!({ "type": "string", "pattern": "^[A-Za-z0-9]+$" }),
        "only this symbol",
    );
    let mut paths = Map::new();
    let mut add = |path: &str, method: &str, op: Value| {
        paths.insert(path.to_string(), json!({ method: op }));
    };
    let mut health = get_op("Liveness check (no token needed)", vec![], r("Health"));
    health["security"] = json!([]);
    add("/api/v1/health", "get", health);
    let mut doc = get_op("This document (no token needed)", vec![], t("object"));
    doc["security"] = json!([]);
    add("/api/v1/openapi.json", "get", doc);
    add(
        "/api/v1/status",
        "get",
        get_op(
            "Mode, strategy, account, positions, halts, limits",
            vec![],
            r("Status"),
        ),
    );
    add(
        "/api/v1/karma",
        "get",
        get_op(
            "The karma scorecard: hit rate, P&L and confidence calibration (reliability bins, Brier) per strategy version, tag, symbol and intent",
            vec![],
            t("object"),
        ),
    );
    add(
        "/api/v1/counterfactuals",
        "get",
        get_op(
            "Refused entries followed to their would-be exits, newest first, and what the limits cost or saved",
            vec![param("limit", limit(1000, 100), "at most this many")],
            t("object"),
        ),
    );
    add(
        "/api/v1/symbols",
        "get",
        get_op(
            "Configured symbols",
            vec![],
            obj(&[("symbols", arr(r("Symbol")))]),
        ),
    );
    add(
        "/api/v1/positions",
        "get",
        get_op(
            "Open positions marked at the last price",
            vec![],
            obj(&[("positions", arr(r("Position")))]),
        ),
    );
    add(
        "/api/v1/trades",
        "get",
        get_op(
            "Closed trades, newest first",
            vec![
                param("limit", limit(1000, 50), "page size"),
                param(
                    "offset",
                    json!({ "type": "integer", "minimum": 0, "default": 0 }),
                    "trades skipped",
                ),
                symbol.clone(),
            ],
            obj(&[
                ("trades", arr(r("Trade"))),
                ("total", t("integer")),
                ("limit", t("integer")),
                ("offset", t("integer")),
            ]),
        ),
    );
    add(
        "/api/v1/events",
        "get",
        get_op(
            "The event log, oldest first: the first `limit` after `since`, else the newest `limit`",
            vec![
                symbol,
                param(
                    "kind",
                    json!({ "type": "string", "pattern": "^[a-z_,]+$" }),
                    "event kind(s), comma-separated",
                ),
                param(
                    "since",
                    json!({ "type": "integer", "minimum": 0 }),
                    "only events after this sequence number",
                ),
                param(
                    "from",
                    t("string"),
                    "Unix seconds or RFC 3339: events at or after",
                ),
                param(
                    "to",
                    t("string"),
                    "Unix seconds or RFC 3339: events at or before",
                ),
                param("limit", limit(1000, 100), "at most this many"),
            ],
            obj(&[("events", arr(r("Event"))), ("last_seq", opt("integer"))]),
        ),
    );
    add(
        "/api/v1/events/kinds",
        "get",
        get_op(
            "Every event kind in the log (the events view's filter)",
            vec![],
            obj(&[("kinds", arr(t("string")))]),
        ),
    );
    add(
        "/api/v1/chart",
        "get",
        with_404(get_op(
            "A symbol's newest candles of one stored tier (default 1h, else the finest) and its fills over them",
            vec![
                param("symbol", json!({ "type": "string", "pattern": "^[A-Za-z0-9]+$" }), "a configured symbol (default: the first)"),
                param("interval", json!({ "type": "string", "enum": ["5m", "1h", "1d"] }), "the candle tier"),
                param("limit", limit(5000, 500), "the newest candles"),
            ],
            obj(&[
                ("symbol", t("string")),
                ("interval", opt("string")),
                ("intervals", arr(t("string"))),
                ("candles", arr(r("Candle"))),
                ("fills", arr(r("Fill"))),
            ]),
        ), "not a configured symbol"),
    );
    let name = || json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]+$" });
    add(
        "/api/v1/tuner",
        "get",
        get_op(
            "The tuner log: every orchestrator decision, newest first, with reasoning, confidence, check figures, parameters before → after and the candidate's source diff against the incumbent",
            vec![
                param("trigger", name(), "only runs of this trigger"),
                param("decision", name(), "only this decision"),
                param("result", name(), "only this outcome: deployed, rejected, no_change, analysis_updated"),
                param("limit", limit(500, 50), "at most this many"),
            ],
            obj(&[
                ("runs", arr(r("TunerRun"))),
                ("facets", obj(&[
                    ("triggers", arr(t("string"))),
                    ("decisions", arr(t("string"))),
                    ("results", arr(t("string"))),
                ])),
            ]),
        ),
    );
    add(
        "/api/v1/strategy/version",
        "get",
        with_404(get_op(
            "One strategy version (default the active one): record, source, archived backtest with its equity curve, live results since deploy",
            vec![param("version", json!({ "type": "integer", "minimum": 1 }), "the version")],
            obj(&[
                ("version", opt("integer")),
                ("record", opt_ref("VersionRecord")),
                ("source", opt("string")),
                ("backtest", opt_ref("ArchivedBacktest")),
                ("live", opt_ref("LiveResults")),
            ]),
        ), "no such version"),
    );
    add(
        "/api/v1/strategy/diff",
        "get",
        with_404(get_op(
            "Version a against version b (default: the one before the active against the active): hashes, parameters, source diff",
            vec![
                param("a", json!({ "type": "integer", "minimum": 1 }), "the old version"),
                param("b", json!({ "type": "integer", "minimum": 1 }), "the new version"),
            ],
            obj(&[
                ("a", opt("integer")),
                ("b", opt("integer")),
                ("hash_a", opt("string")),
                ("hash_b", opt("string")),
                ("params", arr(obj(&[("name", t("string")), ("a", opt("string")), ("b", opt("string"))]))),
                ("source_diff", opt_ref("Diff")),
            ]),
        ), "no such version"),
    );
    add(
        "/api/v1/performance/daily",
        "get",
        get_op(
            "Daily equity snapshots with P&L, and today/week/all P&L",
            vec![param("limit", limit(10_000, 365), "the most recent days")],
            obj(&[
                ("days", arr(r("Day"))),
                (
                    "current",
                    obj(&[("ts", t("integer")), ("value", money()), ("cash", money())]),
                ),
                (
                    "summary",
                    obj(&[("today", money()), ("week", money()), ("all", money())]),
                ),
            ]),
        ),
    );
    add(
        "/api/v1/performance/symbols",
        "get",
        get_op(
            "Closed-trade results per symbol",
            vec![],
            obj(&[("symbols", arr(r("SymbolPerformance")))]),
        ),
    );
    add(
        "/api/v1/truth",
        "get",
        get_op(
            "The truth benchmarks over the recorded history",
            vec![],
            r("Truth"),
        ),
    );
    add(
        "/api/v1/strategy",
        "get",
        get_op(
            "The active strategy and the archive",
            vec![],
            obj(&[
                ("active", opt_ref("StrategyStatus")),
                ("paused", opt("string")),
                ("versions", arr(r("StrategyVersion"))),
            ]),
        ),
    );
    add(
        "/api/v1/ai/decisions",
        "get",
        get_op(
            "The orchestrator's runs, parameter changes (before/after, reasoning) and AI calls, newest first",
            vec![param("limit", limit(1000, 20), "per list")],
            obj(&[("runs", arr(r("OrchestratorRun"))), ("config_changes", arr(r("ConfigChange"))), ("audit", arr(r("AiCall")))]),
        ),
    );
    add(
        "/api/v1/config",
        "get",
        get_op(
            "Settings and risk limits (no secrets)",
            vec![],
            obj(&[
                (
                    "settings",
                    obj(&[("mode", t("string")), ("symbols", arr(t("string")))]),
                ),
                ("risk_limits", r("RiskLimits")),
                (
                    "api",
                    obj(&[("auth", t("boolean")), ("cors", t("boolean"))]),
                ),
            ]),
        ),
    );
    let toggled = obj(&[
        ("ok", t("boolean")),
        ("changed", t("boolean")),
        ("symbol", t("string")),
        ("paused", t("boolean")),
    ]);
    let symbol_path = json!([{ "name": "symbol", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[A-Za-z0-9]+$" } }]);
    let mut pause = with_404(
        post_op(
            "Pause new entries on one configured symbol (exits still run); recorded as a pause_symbol event",
            None,
            toggled.clone(),
        ),
        "not a configured symbol",
    );
    pause["parameters"] = symbol_path.clone();
    add("/api/v1/symbols/{symbol}/pause", "post", pause);
    let mut resume = with_404(
        post_op(
            "Allow new entries on a paused symbol again; recorded as a resume_symbol event",
            None,
            toggled,
        ),
        "not a configured symbol",
    );
    resume["parameters"] = symbol_path;
    add("/api/v1/symbols/{symbol}/resume", "post", resume);
    add(
        "/api/v1/halt",
        "post",
        post_op("Halt new entries (exits still run)", None, r("Changed")),
    );
    add(
        "/api/v1/resume",
        "post",
        post_op("Clear halts and the kill switch", None, r("Changed")),
    );
    add(
        "/api/v1/kill",
        "post",
        post_op(
            "Kill switch: cancel every order, close every position at market",
            Some(obj(&[(
                "confirm",
                json!({ "type": "boolean", "enum": [true] }),
            )])),
            obj(&[
                ("ok", t("boolean")),
                ("cancelled_orders", t("integer")),
                ("closing", arr(t("string"))),
            ]),
        ),
    );
    add(
        "/api/v1/review",
        "post",
        post_op(
            "Trigger an orchestrator review now",
            Some(json!({ "type": "object", "properties": { "reason": t("string") } })),
            obj(&[("ok", t("boolean")), ("seq", opt("integer"))]),
        ),
    );
    add(
        "/api/v1/deploy",
        "post",
        post_op(
            "Re-activate an archived version (hot-swapped between two scans)",
            Some(obj(&[(
                "version",
                json!({ "type": "integer", "minimum": 1 }),
            )])),
            r("DeployOutcome"),
        ),
    );
    add(
        "/api/v1/rollback",
        "post",
        post_op(
            "Roll back to the previous version",
            None,
            r("DeployOutcome"),
        ),
    );
    let mut ws = get_op(
        "WebSocket event stream. Query: token (browsers), since, channels (comma-separated). Client messages: \
         {\"op\":\"subscribe\"|\"unsubscribe\",\"channels\":[fills, positions, orders, risk, strategy, events],\"since\":SEQ} \
         and {\"op\":\"ping\"}. Server messages: hello, subscribed, event {channel, data: Event}, lagged, pong, error.",
        vec![
            param("token", t("string"), "the bearer token (browsers cannot send headers)"),
            param("since", json!({ "type": "integer", "minimum": 0 }), "replay stored events after this sequence"),
            param("channels", t("string"), "initial subscriptions, comma-separated"),
        ],
        obj(&[("type", json!({ "type": "string", "enum": ["event"] })), ("channel", t("string")), ("data", r("Event"))]),
    );
    ws["responses"]["101"] = json!({ "description": "switching to the WebSocket protocol" });
    add("/api/v1/ws", "get", ws);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "WASM trading host API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Status, history and control of a running host. Bearer token, always required: \
                            HOST_API_TOKEN, else the one generated in data/api.token at the first start. \
                            Requests must name this server in Host; WebSocket upgrades and POSTs from another \
                            Origin are refused; bodies are JSON with Content-Type: application/json. \
                            Money fields are exact decimal strings."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas(),
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_reference_resolves() {
        let d = super::document();
        let text = d.to_string();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(d["components"]["schemas"].get(&name).is_some(), "{name}");
        }
    }
}
