//! Coinbase Advanced Trade settings: REST and websocket base URLs, timeouts, retry and rate
//! figures, and the CDP API key (name + EC private key), only from the environment and never
//! shown in `Debug` output.

use crate::{ExResult, ExchangeError, RetryPolicy, VenueSettings};
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey;
use std::time::Duration;

pub const DEFAULT_REST_URL: &str = "https://api.coinbase.com";
pub const DEFAULT_WS_URL: &str = "wss://advanced-trade-ws.coinbase.com";
pub const ENV_KEY_NAME: &str = "COINBASE_API_KEY_NAME";
pub const ENV_PRIVATE_KEY: &str = "COINBASE_API_PRIVATE_KEY";

/// A CDP API key: its name (`organizations/…/apiKeys/…`) and its P-256 private key.
#[derive(Clone)]
pub struct CoinbaseCredentials {
    pub(crate) key_name: String,
    pub(crate) key: SigningKey,
}

impl std::fmt::Debug for CoinbaseCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoinbaseCredentials { key_name: <redacted>, key: <redacted> }")
    }
}

impl CoinbaseCredentials {
    /// `pem` is the key as Coinbase hands it out (SEC1 `EC PRIVATE KEY`) or PKCS#8
    /// (`PRIVATE KEY`); literal `\n` sequences (as environment files often hold them) are accepted.
    pub fn new(key_name: &str, pem: &str) -> ExResult<CoinbaseCredentials> {
        let pem = pem.trim().replace("\\n", "\n");
        let key = p256::SecretKey::from_sec1_pem(&pem)
            .map(SigningKey::from)
            .or_else(|_| SigningKey::from_pkcs8_pem(&pem))
            .map_err(|_| {
                ExchangeError::Auth(format!(
                    "{ENV_PRIVATE_KEY} is not a P-256 private key in SEC1 or PKCS#8 PEM"
                ))
            })?;
        if key_name.trim().is_empty() {
            return Err(ExchangeError::Auth(format!("{ENV_KEY_NAME} is empty")));
        }
        Ok(CoinbaseCredentials {
            key_name: key_name.trim().to_string(),
            key,
        })
    }

    /// `COINBASE_API_KEY_NAME` and `COINBASE_API_PRIVATE_KEY`; `None` when neither is set.
    pub fn from_env() -> ExResult<Option<CoinbaseCredentials>> {
        match (std::env::var(ENV_KEY_NAME), std::env::var(ENV_PRIVATE_KEY)) {
            (Ok(k), Ok(p)) => CoinbaseCredentials::new(&k, &p).map(Some),
            (Err(_), Err(_)) => Ok(None),
            (Ok(_), Err(_)) => Err(ExchangeError::MissingCredentials(ENV_PRIVATE_KEY)),
            (Err(_), Ok(_)) => Err(ExchangeError::MissingCredentials(ENV_KEY_NAME)),
        }
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }
}

/// Everything the Coinbase adapter needs.
#[derive(Debug, Clone)]
pub struct CoinbaseConfig {
    pub rest_url: String,
    pub ws_url: String,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_per_sec: f64,
    /// A feed silent this long (heartbeats come every second) is dead.
    pub ws_idle_timeout: Duration,
    /// Stop-loss and take-profit are stop-limit orders whose limit is the trigger moved this many
    /// basis points against us, so they fill once triggered.
    pub stop_limit_buffer_bps: u32,
    /// Pages of order history scanned when looking an order up by client id.
    pub lookup_pages: u32,
    pub credentials: Option<CoinbaseCredentials>,
    /// What "now" is for JWTs and candle windows (the wall clock outside tests).
    pub clock: std::sync::Arc<dyn trading_core::Clock>,
}

impl Default for CoinbaseConfig {
    fn default() -> Self {
        CoinbaseConfig {
            rest_url: DEFAULT_REST_URL.into(),
            ws_url: DEFAULT_WS_URL.into(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            rate_per_sec: 10.0,
            ws_idle_timeout: Duration::from_secs(10),
            stop_limit_buffer_bps: 100,
            lookup_pages: 10,
            credentials: None,
            clock: trading_core::clock::wall(),
        }
    }
}

impl CoinbaseConfig {
    /// From `[exchanges.coinbase]`, without credentials.
    pub fn from_settings(s: &VenueSettings) -> CoinbaseConfig {
        CoinbaseConfig {
            rest_url: s.rest_url.trim_end_matches('/').to_string(),
            ws_url: s.ws_url.clone(),
            timeout: Duration::from_millis(s.timeout_ms),
            retry: RetryPolicy {
                max_retries: s.max_retries,
                ..RetryPolicy::default()
            },
            rate_per_sec: s.rate_per_sec,
            ..CoinbaseConfig::default()
        }
    }

    /// The same config with the key from the environment.
    pub fn with_env_credentials(mut self) -> ExResult<CoinbaseConfig> {
        self.credentials = CoinbaseCredentials::from_env()?;
        Ok(self)
    }
}
