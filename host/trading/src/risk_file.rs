//! The user's hard risk limits, `config/risk_limits.toml` (user-only: no
//! module, API or orchestrator writes it): parsed with unknown keys refused,
//! validated, and shown to strategies as the contract's `risk-limits`.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_RISK: &str = include_str!("../../../config/risk_limits.toml");

/// Why the risk file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RiskFileError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: &'static str,
        message: String,
    },
}

fn read(path: &Path) -> Result<String, RiskFileError> {
    std::fs::read_to_string(path).map_err(|source| RiskFileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The user's hard limits, from `risk_limits.toml`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RiskFile {
    pub max_trade_pct: f64,
    pub default_trade_pct: f64,
    pub max_open_positions: u32,
    pub max_daily_loss_pct: f64,
    pub max_drawdown_pct: f64,
    pub max_consecutive_losses: u32,
    pub allowed_symbols: Option<Vec<String>>,
}

impl RiskFile {
    pub fn parse(text: &str, path: &str) -> Result<RiskFile, RiskFileError> {
        let r: RiskFile = toml::from_str(text).map_err(|e| RiskFileError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let invalid = |field, message: String| RiskFileError::Invalid {
            path: path.to_string(),
            field,
            message,
        };
        for (field, v) in [
            ("max_trade_pct", r.max_trade_pct),
            ("default_trade_pct", r.default_trade_pct),
            ("max_daily_loss_pct", r.max_daily_loss_pct),
            ("max_drawdown_pct", r.max_drawdown_pct),
        ] {
            if !v.is_finite() || v <= 0.0 || v > 100.0 {
                return Err(invalid(
                    field,
                    format!("{v} is not a percentage in (0, 100]"),
                ));
            }
        }
        if r.default_trade_pct > r.max_trade_pct {
            return Err(invalid(
                "default_trade_pct",
                format!(
                    "{} is above max_trade_pct {}",
                    r.default_trade_pct, r.max_trade_pct
                ),
            ));
        }
        if r.max_open_positions == 0 {
            return Err(invalid("max_open_positions", "must be at least 1".into()));
        }
        Ok(r)
    }

    pub fn load(path: Option<&Path>) -> Result<RiskFile, RiskFileError> {
        match path {
            Some(p) => RiskFile::parse(&read(p)?, &p.display().to_string()),
            None => RiskFile::parse(DEFAULT_RISK, "embedded risk limits"),
        }
    }

    /// The limits as the contract shows them to a strategy.
    pub fn contract_view(&self) -> host_sandbox::bindings::RiskLimits {
        host_sandbox::bindings::RiskLimits {
            max_trade_pct: self.max_trade_pct,
            default_trade_pct: self.default_trade_pct,
            max_positions: self.max_open_positions,
            max_daily_loss_pct: self.max_daily_loss_pct,
            max_drawdown_pct: self.max_drawdown_pct,
        }
    }
}
