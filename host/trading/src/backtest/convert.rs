//! Conversions between the money core's types and the contract's.

use crate::risk_file::RiskFile;
use host_sandbox::bindings as c;
use trading_core::money::{to_decimal, to_f64};
use trading_core::risk::{RiskConfig, RiskConfigError};
use trading_core::{Action, Intent, OrderType, Side};

/// Why the risk file could not become the core's risk configuration.
#[derive(Debug, thiserror::Error)]
pub enum RiskConvertError {
    #[error("risk limit {field} = {value} is not a usable number")]
    Number { field: &'static str, value: f64 },
    #[error("risk limits: {0}")]
    Invalid(#[from] RiskConfigError),
}

/// The user's risk file as the core's validated risk configuration.
pub fn risk_config(r: &RiskFile) -> Result<RiskConfig, RiskConvertError> {
    let d = |field: &'static str, value: f64| {
        to_decimal(value).map_err(|_| RiskConvertError::Number { field, value })
    };
    let cfg = RiskConfig {
        max_trade_pct: d("max_trade_pct", r.max_trade_pct)?,
        default_trade_pct: d("default_trade_pct", r.default_trade_pct)?,
        max_open_positions: r.max_open_positions,
        max_daily_loss_pct: d("max_daily_loss_pct", r.max_daily_loss_pct)?,
        max_drawdown_pct: d("max_drawdown_pct", r.max_drawdown_pct)?,
        max_consecutive_losses: r.max_consecutive_losses.max(1),
        allowed_symbols: r.allowed_symbols.clone(),
        ..RiskConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

pub fn intent_to_contract(i: Intent) -> c::Intent {
    match i {
        Intent::Day => c::Intent::Day,
        Intent::Swing => c::Intent::Swing,
        Intent::Position => c::Intent::Position,
    }
}

pub fn intent_from_contract(i: c::Intent) -> Intent {
    match i {
        c::Intent::Day => Intent::Day,
        c::Intent::Swing => Intent::Swing,
        c::Intent::Position => Intent::Position,
    }
}

fn side_to_contract(s: Side) -> c::Side {
    match s {
        Side::Long => c::Side::Long,
        Side::Short => c::Side::Short,
    }
}

/// A contract signal as the core's.
pub fn signal_from_contract(s: &c::Signal) -> trading_core::Signal {
    trading_core::Signal {
        symbol: s.symbol.clone(),
        action: match s.action {
            c::Action::Buy => Action::Buy,
            c::Action::Sell => Action::Sell,
            c::Action::Close => Action::Close,
            c::Action::Modify => Action::Modify,
        },
        size_pct: s.size_pct,
        order_type: match s.order_type {
            c::OrderType::Market => OrderType::Market,
            c::OrderType::Limit => OrderType::Limit,
            c::OrderType::Stop => OrderType::Stop,
        },
        limit_price: s.limit_price,
        stop_loss: s.stop_loss,
        take_profit: s.take_profit,
        intent: intent_from_contract(s.intent),
        tag: s.tag.clone(),
        confidence: s.confidence,
        reasoning: s.reasoning.clone(),
        slippage_tolerance: s.slippage_tolerance,
    }
}

/// A core fill for the strategy's `on-fill`; sells carry the intent and tag
/// of the position they reduce (`entry`).
pub fn fill_to_contract(f: &trading_core::Fill, entry: Option<(Intent, &str)>) -> c::Fill {
    let (action, intent, tag) = match &f.kind {
        trading_core::FillKind::Buy { intent, tag, .. } => (c::Action::Buy, *intent, tag.clone()),
        trading_core::FillKind::Sell { .. } => {
            let (i, t) = entry.unwrap_or((Intent::Swing, ""));
            (c::Action::Sell, i, t.to_string())
        }
    };
    c::Fill {
        symbol: f.symbol.clone(),
        action,
        qty: to_f64(f.qty),
        price: to_f64(f.price),
        fee: to_f64(f.fee),
        intent: intent_to_contract(intent),
        tag,
        ts: f.time,
    }
}

pub fn trade_to_contract(t: &trading_core::ClosedTrade) -> c::ClosedTrade {
    c::ClosedTrade {
        symbol: t.symbol.clone(),
        side: side_to_contract(t.side),
        qty: to_f64(t.qty),
        entry_price: to_f64(t.entry_price),
        exit_price: to_f64(t.exit_price),
        pnl: to_f64(t.pnl),
        pnl_pct: to_f64(t.pnl_pct),
        fees: to_f64(t.fees),
        intent: intent_to_contract(t.intent),
        opened_at: t.opened_at,
        closed_at: t.closed_at,
        close_reason: t.close_reason.name().to_string(),
        tag: t.tag.clone(),
    }
}

/// The engine's portfolio as the contract's summary handed to `analyze`.
pub fn portfolio_to_contract(p: &trading_core::Portfolio) -> c::Portfolio {
    let positions = p
        .positions()
        .values()
        .map(|pos| {
            let price = p.mark_price(&pos.symbol).unwrap_or(pos.avg_entry);
            let upnl = pos.unrealized_pnl(price);
            let basis = pos.basis();
            let upnl_pct = if basis.is_zero() {
                0.0
            } else {
                to_f64(upnl) / to_f64(basis) * 100.0
            };
            c::OpenPosition {
                symbol: pos.symbol.clone(),
                side: side_to_contract(pos.side),
                qty: to_f64(pos.qty),
                avg_entry: to_f64(pos.avg_entry),
                current_price: to_f64(price),
                unrealized_pnl: to_f64(upnl),
                unrealized_pnl_pct: upnl_pct,
                intent: intent_to_contract(pos.intent),
                stop_loss: pos.stop_loss.map(to_f64),
                take_profit: pos.take_profit.map(to_f64),
                opened_at: pos.opened_at,
                tag: pos.tag.clone(),
            }
        })
        .collect();
    let equity = p.equity();
    c::Portfolio {
        cash: to_f64(p.cash()),
        total_value: to_f64(equity),
        positions,
        daily_pnl: p.today().map_or(0.0, |(_, d)| to_f64(d.pnl())),
        total_pnl: to_f64(equity.saturating_sub(p.net_deposits())),
        fees_paid: to_f64(p.total_fees()),
        closed_trade_count: u32::try_from(p.closed_trades().len()).unwrap_or(u32::MAX),
    }
}
