//! Kraken settings: REST and websocket base URLs, timeouts, retry and rate figures, and the API
//! key pair, which comes only from the environment and never shows in `Debug` output.

use crate::{ExResult, ExchangeError, RetryPolicy, VenueSettings};
use base64::Engine as _;
use std::time::Duration;

pub const DEFAULT_REST_URL: &str = "https://api.kraken.com";
pub const DEFAULT_WS_URL: &str = "wss://ws.kraken.com/v2";
pub const ENV_API_KEY: &str = "KRAKEN_API_KEY";
pub const ENV_API_SECRET: &str = "KRAKEN_API_SECRET";

/// The API key pair. The secret is kept decoded; neither part is ever printed.
#[derive(Clone)]
pub struct KrakenCredentials {
    pub(crate) api_key: String,
    pub(crate) secret: Vec<u8>,
}

impl std::fmt::Debug for KrakenCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KrakenCredentials { api_key: <redacted>, secret: <redacted> }")
    }
}

impl KrakenCredentials {
    /// `secret_b64` is the private key as Kraken shows it (base64).
    pub fn new(api_key: &str, secret_b64: &str) -> ExResult<KrakenCredentials> {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_b64.trim())
            .map_err(|_| ExchangeError::Auth(format!("{ENV_API_SECRET} is not base64")))?;
        if api_key.trim().is_empty() || secret.is_empty() {
            return Err(ExchangeError::Auth("empty Kraken API key or secret".into()));
        }
        Ok(KrakenCredentials {
            api_key: api_key.trim().to_string(),
            secret,
        })
    }

    /// `KRAKEN_API_KEY` and `KRAKEN_API_SECRET`; `None` when neither is set.
    pub fn from_env() -> ExResult<Option<KrakenCredentials>> {
        match (std::env::var(ENV_API_KEY), std::env::var(ENV_API_SECRET)) {
            (Ok(k), Ok(s)) => KrakenCredentials::new(&k, &s).map(Some),
            (Err(_), Err(_)) => Ok(None),
            (Ok(_), Err(_)) => Err(ExchangeError::MissingCredentials(ENV_API_SECRET)),
            (Err(_), Ok(_)) => Err(ExchangeError::MissingCredentials(ENV_API_KEY)),
        }
    }
}

/// Everything the Kraken adapter needs.
#[derive(Debug, Clone)]
pub struct KrakenConfig {
    pub rest_url: String,
    pub ws_url: String,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub rate_per_sec: f64,
    /// A feed that says nothing (not even a heartbeat, sent every second) for this long is dead.
    pub ws_idle_timeout: Duration,
    pub credentials: Option<KrakenCredentials>,
    /// Where nonces come from (the wall clock outside tests).
    pub clock: std::sync::Arc<dyn trading_core::Clock>,
    /// Where the nonce high-water mark is kept across restarts, so a clock
    /// stepped back never sends a nonce Kraken has already seen. `None`:
    /// in memory only.
    pub nonce_file: Option<std::path::PathBuf>,
}

impl Default for KrakenConfig {
    fn default() -> Self {
        KrakenConfig {
            rest_url: DEFAULT_REST_URL.into(),
            ws_url: DEFAULT_WS_URL.into(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            rate_per_sec: 1.0,
            ws_idle_timeout: Duration::from_secs(10),
            credentials: None,
            clock: trading_core::clock::wall(),
            nonce_file: None,
        }
    }
}

impl KrakenConfig {
    /// From `[exchanges.kraken]`, without credentials.
    pub fn from_settings(s: &VenueSettings) -> KrakenConfig {
        KrakenConfig {
            rest_url: s.rest_url.trim_end_matches('/').to_string(),
            ws_url: s.ws_url.clone(),
            timeout: Duration::from_millis(s.timeout_ms),
            retry: RetryPolicy {
                max_retries: s.max_retries,
                ..RetryPolicy::default()
            },
            rate_per_sec: s.rate_per_sec,
            ..KrakenConfig::default()
        }
    }

    /// The same config with the key pair from the environment (see [`KrakenCredentials::from_env`]).
    pub fn with_env_credentials(mut self) -> ExResult<KrakenConfig> {
        self.credentials = KrakenCredentials::from_env()?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let c = KrakenCredentials::new("my-public-key", "c2VjcmV0").unwrap();
        let cfg = KrakenConfig {
            credentials: Some(c),
            ..KrakenConfig::default()
        };
        let text = format!("{cfg:?}");
        assert!(
            !text.contains("my-public-key") && !text.contains("c2VjcmV0"),
            "{text}"
        );
        assert!(text.contains("redacted"));
        assert!(KrakenCredentials::new("k", "not base64!").is_err());
    }
}
