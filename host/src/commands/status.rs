//! `host status` and `host modules`: what is running, from the live host or the database.

#[allow(unused_imports)]
use crate::prelude::*;

pub(crate) fn status(
    paths: &Paths,
    settings: &Settings,
    risk: &RiskFile,
    json: bool,
) -> Result<()> {
    let live: Option<host_control::Status> =
        match control::request(&paths.socket(), &Request::Status) {
            Ok(Some(Reply::Status(s))) => Some(*s),
            _ => None,
        };
    let conn = host_store::db::open(&paths.db())?;
    let active = archive::active(&conn)?;
    let versions = archive::list(&conn)?.len();
    let (scans, last_scan) = host_store::queries::scan_summary(&conn)?;
    let account = match &live {
        Some(s) => Some(s.clone()),
        None => shell::stored_status(&conn, settings, risk)?,
    };
    // candidates in their forward shadow: the running host's figures, else the stored rows
    let stored_shadows: Vec<serde_json::Value> = [
        host_store::selection::ShadowState::Pending,
        host_store::selection::ShadowState::Running,
    ]
    .into_iter()
    .map(|st| host_store::selection::shadows(&conn, st))
    .collect::<rusqlite::Result<Vec<_>>>()?
    .into_iter()
    .flatten()
    .map(|r| {
        serde_json::json!({
            "id": r.id, "run_id": r.run_id, "origin": r.origin, "state": r.state,
            "started_at": r.started_at, "until": r.until(),
            "candidate_return_pct": r.candidate_return_pct,
            "incumbent_return_pct": r.incumbent_return_pct, "signals": r.signals,
        })
    })
    .collect();
    let out = serde_json::json!({
        "shadows": stored_shadows,
        "running": live.is_some(),
        "contract_version": CONTRACT_VERSION,
        "strategy": active,
        "strategy_versions": versions,
        "scans": scans,
        "last_scan_ts": last_scan,
        "account": account,
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mode = account.as_ref().map(|a| a.mode).unwrap_or(settings.mode);
    println!(
        "host:      {} ({} mode)",
        if live.is_some() {
            "running"
        } else {
            "not running"
        },
        serde_json::to_value(mode)?.as_str().unwrap_or("?")
    );
    println!("contract:  trading:contract@{CONTRACT_VERSION}");
    match &active {
        Some(a) => println!(
            "strategy:  v{} ({}…, contract {}, {})",
            a.version,
            &a.hash[..12],
            a.contract_version,
            a.origin
        ),
        None => println!("strategy:  none deployed"),
    }
    if let Some(p) = live.as_ref().and_then(|l| l.paused.as_deref()) {
        println!("PAUSED:    {p}");
    }
    let pct = |x: &serde_json::Value| x.as_f64().map_or("-".to_string(), |v| format!("{v:.2}%"));
    match live.as_ref().filter(|l| !l.shadows.is_empty()) {
        Some(l) => {
            for sh in &l.shadows {
                println!(
                    "shadow:    #{} {} until {}: {} beside the incumbent's {} ({} signals, none sent)",
                    sh.id,
                    sh.origin,
                    host_trading::backtest::format_ts(sh.until),
                    pct(&serde_json::json!(sh.candidate_return_pct)),
                    pct(&serde_json::json!(sh.incumbent_return_pct)),
                    sh.signals
                );
            }
        }
        None => {
            for sh in &stored_shadows {
                println!(
                    "shadow:    #{} {} ({}): {} beside the incumbent's {} ({} signals, none sent)",
                    sh["id"],
                    sh["origin"].as_str().unwrap_or_default(),
                    sh["state"].as_str().unwrap_or_default(),
                    pct(&sh["candidate_return_pct"]),
                    pct(&sh["incumbent_return_pct"]),
                    sh["signals"]
                );
            }
        }
    }
    println!("versions:  {versions}");
    println!(
        "scans:     {scans} (last at {})",
        last_scan
            .map(host_trading::backtest::format_ts)
            .unwrap_or_else(|| "never".into())
    );
    if let Some(a) = &account {
        println!(
            "account:   equity {} | cash {} | P&L {} (realized {}, unrealized {}, today {}) | fees {}",
            a.equity, a.cash, a.total_pnl, a.realized_pnl, a.unrealized_pnl, a.daily_pnl, a.fees_paid
        );
        println!(
            "trades:    {} closed | {} open orders | drawdown {}%",
            a.closed_trades,
            a.open_orders,
            a.drawdown_pct.round_dp(2)
        );
        if a.positions.is_empty() {
            println!("positions: none");
        }
        for p in &a.positions {
            println!(
                "position:  {} {} @ {} (mark {}, value {}, unrealized {}) SL {} TP {}",
                p.symbol,
                p.qty,
                p.avg_entry.round_dp(2),
                p.mark.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                p.value,
                p.unrealized_pnl,
                p.stop_loss
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
                p.take_profit
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
        }
        match (&a.halt, a.killed) {
            (_, true) => println!("risk:      KILLED (every signal refused until `host resume`)"),
            (Some(h), _) => println!("risk:      HALTED: {h}"),
            (None, false) => println!("risk:      ok"),
        }
        if let Some(h) = &a.health {
            println!("health:    {}", if h.healthy { "ok" } else { "UNHEALTHY" });
            for c in h.checks.iter().filter(|c| !c.ok || !h.healthy) {
                let part = match &c.part {
                    host_control::HealthPart::ScanLoop => "scan loop".to_string(),
                    host_control::HealthPart::Feed(s) => format!("feed {s}"),
                    host_control::HealthPart::Database => "database".to_string(),
                    host_control::HealthPart::Strategy => "strategy".to_string(),
                    host_control::HealthPart::Orchestrator => "orchestrator".to_string(),
                };
                println!(
                    "           {} {part}: {}",
                    if c.ok { "ok  " } else { "FAIL" },
                    c.detail
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn modules(paths: &Paths, json: bool) -> Result<()> {
    let conn = host_store::db::open(&paths.db())?;
    let list = archive::list(&conn)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<8} {:<10} {:<14} {:<20} origin",
        "version", "status", "hash", "deployed"
    );
    for v in list {
        println!(
            "v{:<7} {:<10} {:<14} {:<20} {}",
            v.version,
            v.status,
            &v.hash[..12],
            v.deployed_at.unwrap_or_default(),
            v.origin
        );
    }
    Ok(())
}
