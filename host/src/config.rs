//! Settings: raw TOML parsed with unknown keys refused, then validated into
//! typed settings. Defaults are embedded, so the host runs with no files.

use host_sandbox::Limits;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_SETTINGS: &str = include_str!("../../config/settings.toml");
pub use host_trading::risk_file::{RiskFile, RiskFileError, DEFAULT_RISK};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error(transparent)]
    Risk(#[from] RiskFileError),
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: &'static str,
        message: String,
    },
}

pub use host_exchange::Venue;
pub use host_trading::Mode;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    mode: Option<Mode>,
    clock: Option<ClockSource>,
    venue: Option<Venue>,
    symbols: Option<Vec<String>>,
    starting_capital: Option<String>,
    fee_bps: Option<u32>,
    slippage_bps: Option<u32>,
    strategy: Option<RawStrategy>,
    sandbox: Option<Limits>,
    safety: Option<Safety>,
    orchestrator: Option<host_orchestrator::OrchestratorSettings>,
    exchanges: Option<host_exchange::RawExchanges>,
    api: Option<host_api::ApiSettings>,
    telegram: Option<host_telegram::TelegramSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    default: Option<PathBuf>,
    params: Option<Vec<(String, String)>>,
    max_failures: Option<u32>,
}

/// Where the host takes its time from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClockSource {
    /// Wall time (live trading): candles from the future are refused and
    /// stale data stops entries.
    #[default]
    Wall,
    /// The venue's candles: time is the close of the newest candle the feed
    /// delivered, so a loopback venue can serve real candles far faster
    /// than real time and the whole live path runs accelerated (tests, replays).
    Feed,
}

/// The shell's own safety timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Safety {
    /// Cancel every open order once the strategy has not answered for this long (0: off).
    #[serde(default = "Safety::default_dead_man")]
    pub dead_man_minutes: u32,
    /// Do not call the strategy when a symbol's newest candle is older than this (0: off).
    #[serde(default = "Safety::default_stale")]
    pub stale_data_minutes: u32,
    /// How long a scan at close `t` waits for the other symbols' bars of `t`
    /// before it runs without them (their entries refused), seconds of the clock.
    #[serde(default = "Safety::default_grace")]
    pub bar_grace_secs: u32,
    /// A `heartbeat` event every this many minutes of wall time (0: off).
    #[serde(default = "Safety::default_heartbeat")]
    pub heartbeat_minutes: u32,
}

impl Safety {
    fn default_dead_man() -> u32 {
        120
    }
    fn default_stale() -> u32 {
        180
    }
    fn default_grace() -> u32 {
        90
    }
    fn default_heartbeat() -> u32 {
        60
    }
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            dead_man_minutes: Safety::default_dead_man(),
            stale_data_minutes: Safety::default_stale(),
            bar_grace_secs: Safety::default_grace(),
            heartbeat_minutes: Safety::default_heartbeat(),
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub mode: Mode,
    /// `clock = "wall" | "feed"`: the time source of a venue feed.
    pub clock: ClockSource,
    /// The exchange of live mode.
    pub venue: Venue,
    pub symbols: Vec<String>,
    pub starting_capital: Decimal,
    pub fee_bps: u32,
    pub slippage_bps: u32,
    pub default_strategy: Option<PathBuf>,
    pub strategy_params: Vec<(String, String)>,
    pub max_failures: u32,
    pub sandbox: Limits,
    pub safety: Safety,
    pub orchestrator: host_orchestrator::OrchestratorSettings,
    /// `[exchanges.kraken]`, `[exchanges.coinbase]`: venue URLs, timeouts, retries, rate.
    pub exchanges: host_exchange::ExchangesSettings,
    /// `[api]`: the REST/WebSocket API and dashboard.
    pub api: host_api::ApiSettings,
    /// `[telegram]`: the bot (token from `TELEGRAM_BOT_TOKEN`).
    pub telegram: host_telegram::TelegramSettings,
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl Settings {
    /// The orchestrator's view of the trading setup.
    pub fn market(&self) -> host_orchestrator::Market {
        host_orchestrator::Market {
            symbols: self.symbols.clone(),
            starting_capital: self.starting_capital,
            fee_bps: self.fee_bps,
            slippage_bps: self.slippage_bps,
            sandbox: self.sandbox.clone(),
            default_strategy: self.default_strategy.clone(),
            strategy_params: self.strategy_params.clone(),
        }
    }

    pub fn parse(text: &str, path: &str) -> Result<Settings, ConfigError> {
        let d: RawSettings = parse(DEFAULT_SETTINGS, "embedded settings")?;
        let r: RawSettings = parse(text, path)?;
        let invalid = |field, message: String| ConfigError::Invalid {
            path: path.to_string(),
            field,
            message,
        };
        let symbols = r.symbols.or(d.symbols).unwrap_or_default();
        if symbols.is_empty() {
            return Err(invalid("symbols", "at least one symbol is needed".into()));
        }
        if let Some(bad) = symbols
            .iter()
            .find(|s| s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(invalid(
                "symbols",
                format!("{bad:?} is not a symbol like BTCUSD"),
            ));
        }
        let cap = r
            .starting_capital
            .or(d.starting_capital)
            .unwrap_or_else(|| "10000".into());
        let starting_capital: Decimal = cap.parse().map_err(|_| {
            invalid(
                "starting_capital",
                format!("{cap:?} is not a decimal number"),
            )
        })?;
        if starting_capital <= Decimal::ZERO {
            return Err(invalid("starting_capital", "must be positive".into()));
        }
        let fee_bps = r.fee_bps.or(d.fee_bps).unwrap_or(26);
        let slippage_bps = r.slippage_bps.or(d.slippage_bps).unwrap_or(5);
        if fee_bps > 1_000 || slippage_bps > 1_000 {
            return Err(invalid(
                "fee_bps",
                "fees and slippage above 10% are not plausible".into(),
            ));
        }
        let (rs, ds) = (
            r.strategy.unwrap_or(RawStrategy {
                default: None,
                params: None,
                max_failures: None,
            }),
            d.strategy,
        );
        let ds = ds.unwrap_or(RawStrategy {
            default: None,
            params: None,
            max_failures: None,
        });
        let sandbox = r.sandbox.or(d.sandbox).unwrap_or_default();
        if sandbox.fuel_per_call == 0
            || sandbox.memory_bytes < (1 << 20)
            || sandbox.deadline_ms == 0
        {
            return Err(invalid(
                "sandbox",
                "fuel, memory (>= 1 MiB) and deadline must be positive".into(),
            ));
        }
        Ok(Settings {
            mode: r.mode.or(d.mode).unwrap_or(Mode::Paper),
            clock: r.clock.or(d.clock).unwrap_or_default(),
            venue: r.venue.or(d.venue).unwrap_or(Venue::Kraken),
            symbols,
            starting_capital,
            fee_bps,
            slippage_bps,
            default_strategy: rs.default.or(ds.default),
            strategy_params: rs.params.or(ds.params).unwrap_or_default(),
            max_failures: rs.max_failures.or(ds.max_failures).unwrap_or(3).max(1),
            sandbox,
            safety: r.safety.or(d.safety).unwrap_or_default(),
            orchestrator: {
                let o = r.orchestrator.or(d.orchestrator).unwrap_or_default();
                o.validate().map_err(|m| invalid("orchestrator", m))?;
                o
            },
            exchanges: host_exchange::ExchangesSettings::resolve(r.exchanges, d.exchanges)
                .map_err(|m| invalid("exchanges", m))?,
            api: {
                let a = r.api.or(d.api).unwrap_or_default();
                a.validate().map_err(|e| invalid("api", e.to_string()))?;
                a
            },
            telegram: {
                let t = r.telegram.or(d.telegram).unwrap_or_default();
                t.validate().map_err(|m| invalid("telegram", m))?;
                t
            },
        })
    }

    /// `path` if it exists, else the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        match path {
            Some(p) => Settings::parse(&read(p)?, &p.display().to_string()),
            None => Settings::parse(DEFAULT_SETTINGS, "embedded settings"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let s = Settings::load(None).unwrap();
        assert_eq!(s.mode, Mode::Paper);
        assert_eq!(s.symbols, vec!["BTCUSD"]);
        RiskFile::load(None).unwrap();
    }

    /// Issue 14: a partial `[exchanges.kraken]` (only the URLs) was refused
    /// with "missing field `timeout_ms`", though every key is optional.
    #[test]
    fn a_section_with_one_key_takes_the_rest_from_the_defaults() {
        let text = "[exchanges.kraken]\nrest_url = \"http://127.0.0.1:9\"\nws_url = \"ws://127.0.0.1:9\"\n\
                    [exchanges.coinbase]\ntimeout_ms = 500\n\
                    [sandbox]\ndeadline_ms = 100\n[safety]\ndead_man_minutes = 5\n\
                    [orchestrator]\nshadow_days = 0.5\n[api]\nrate_per_minute = 60\n\
                    [telegram]\npoll_timeout_s = 5\n[strategy]\nmax_failures = 2\n";
        let s = Settings::parse(text, "s.toml").unwrap();
        let d = Settings::load(None).unwrap();
        assert_eq!(s.exchanges.kraken.rest_url, "http://127.0.0.1:9");
        assert_eq!(s.exchanges.kraken.timeout_ms, d.exchanges.kraken.timeout_ms);
        assert_eq!(
            s.exchanges.kraken.rate_per_sec,
            d.exchanges.kraken.rate_per_sec
        );
        assert_eq!(s.exchanges.coinbase.timeout_ms, 500);
        assert_eq!(s.exchanges.coinbase.rest_url, d.exchanges.coinbase.rest_url);
        assert_eq!(s.sandbox.deadline_ms, 100);
        assert_eq!(s.sandbox.fuel_per_call, d.sandbox.fuel_per_call);
        assert_eq!(s.safety.dead_man_minutes, 5);
        assert_eq!(s.safety.stale_data_minutes, d.safety.stale_data_minutes);
        assert_eq!(s.api.addr, d.api.addr);
        assert_eq!(s.max_failures, 2);
        assert_eq!(s.default_strategy, d.default_strategy);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let e = Settings::parse("mode = \"paper\"\nfoo = 1\n", "s.toml").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        let e = Settings::parse("starting_capital = \"lots\"", "s.toml").unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    field: "starting_capital",
                    ..
                }
            ),
            "{e}"
        );
        let mut risk = DEFAULT_RISK.replace("default_trade_pct = 5.0", "default_trade_pct = 50.0");
        let e = RiskFile::parse(&risk, "r.toml").unwrap_err();
        assert!(
            matches!(
                e,
                RiskFileError::Invalid {
                    field: "default_trade_pct",
                    ..
                }
            ),
            "{e}"
        );
        risk = DEFAULT_RISK.replace("max_trade_pct = 10.0", "max_trade_pct = nan");
        assert!(RiskFile::parse(&risk, "r.toml").is_err());
    }
}
