//! Venue adapters behind one [`Exchange`] trait: typed orders, fills, balances and candles in
//! exact decimals, host symbols (`BTCUSD`) mapped to each venue's spelling, typed errors, a shared
//! retry policy that never places an order twice, and a reconnecting websocket market feed.

pub mod coinbase;
pub mod kraken;
pub mod loopback;
pub mod retry;
mod ws;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

pub use retry::{RateLimiter, RetryPolicy};
use trading_core::error_chain;
pub use ws::FeedHandle;

/// Result of a venue call.
pub type ExResult<T> = Result<T, ExchangeError>;
/// The boxed future every [`Exchange`] method returns (keeps the trait object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = ExResult<T>> + Send + 'a>>;

/// What went wrong talking to a venue.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExchangeError {
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("venue error {code}: {message}")]
    Venue { code: String, message: String },
    #[error("venue temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("no credentials: {0}")]
    MissingCredentials(&'static str),
    #[error("could not decode the venue's answer: {0}")]
    Decode(String),
    #[error("request timed out")]
    Timeout,
    /// The request never reached the venue (DNS, connection refused).
    #[error("could not connect: {0}")]
    Connect(String),
    /// The connection failed after the request may have been sent.
    #[error("connection failed: {0}")]
    Transport(String),
    #[error("invalid order: {0}")]
    InvalidOrder(String),
    #[error("unknown symbol {0:?}")]
    UnknownSymbol(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An order placement failed ambiguously and the venue could not be asked whether it exists:
    /// reconcile by client id before doing anything else with it.
    #[error("order {client_id} is in an unknown state: {message}")]
    Unresolved { client_id: String, message: String },
    /// The Kraken nonce high-water mark could not be read or written: no
    /// private call is made rather than risk a reused nonce.
    #[error("nonce file {path}: {kind}")]
    NonceStore {
        path: std::path::PathBuf,
        kind: std::io::ErrorKind,
    },
}

impl ExchangeError {
    /// Worth trying again (after a delay).
    pub fn is_retryable(&self) -> bool {
        match self {
            ExchangeError::Http { status, .. } => *status >= 500,
            ExchangeError::RateLimited { .. }
            | ExchangeError::Unavailable(_)
            | ExchangeError::Timeout
            | ExchangeError::Connect(_)
            | ExchangeError::Transport(_) => true,
            _ => false,
        }
    }

    /// The venue may have applied the request although we got no clear answer.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            ExchangeError::Http { status, .. } => *status >= 500,
            ExchangeError::Unavailable(_)
            | ExchangeError::Timeout
            | ExchangeError::Transport(_)
            | ExchangeError::Decode(_) => true,
            _ => false,
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> ExchangeError {
        if e.is_timeout() {
            ExchangeError::Timeout
        } else if e.is_connect() {
            ExchangeError::Connect(error_chain(&e))
        } else if e.is_decode() {
            ExchangeError::Decode(error_chain(&e))
        } else {
            ExchangeError::Transport(error_chain(&e))
        }
    }
}

/// The exchange live mode trades on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Venue {
    Kraken,
    Coinbase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

/// The order types the shell places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderKind {
    Market,
    Limit {
        price: Decimal,
    },
    /// Exchange-native stop-loss: a market order once the trigger is crossed.
    StopLoss {
        trigger: Decimal,
    },
    /// Exchange-native take-profit at the trigger price.
    TakeProfit {
        trigger: Decimal,
    },
}

/// One order, identified by the shell's own client id (stored before the order is sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSpec {
    pub client_id: String,
    /// Host symbol, e.g. `BTCUSD`.
    pub symbol: String,
    pub side: Side,
    pub kind: OrderKind,
    /// Base-currency quantity.
    pub qty: Decimal,
}

impl OrderSpec {
    /// Structural checks every adapter applies before sending.
    pub fn validate(&self) -> ExResult<()> {
        let bad = |m: &str| {
            Err(ExchangeError::InvalidOrder(format!(
                "{}: {m}",
                self.client_id
            )))
        };
        if self.client_id.is_empty() || self.client_id.len() > 64 {
            return bad("client id must be 1..=64 characters");
        }
        if !self
            .client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("client id may hold only ASCII letters, digits, '-' and '_'");
        }
        if self.qty <= Decimal::ZERO {
            return bad("quantity must be positive");
        }
        match self.kind {
            OrderKind::Limit { price: p }
            | OrderKind::StopLoss { trigger: p }
            | OrderKind::TakeProfit { trigger: p }
                if p <= Decimal::ZERO =>
            {
                bad("price must be positive")
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderState {
    /// Accepted, not yet live (or a conditional order waiting for its trigger).
    Pending,
    Open,
    Filled,
    Cancelled,
    Expired,
    Rejected,
}

impl OrderState {
    pub fn is_open(self) -> bool {
        matches!(self, OrderState::Pending | OrderState::Open)
    }
}

/// The venue's answer to a placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderAck {
    pub order_id: String,
    pub client_id: String,
    /// True when the placement failed ambiguously and the order was then found by client id.
    pub recovered: bool,
}

/// An order as the venue reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderStatus {
    pub order_id: String,
    pub client_id: Option<String>,
    pub symbol: String,
    pub side: Side,
    pub kind: OrderKind,
    pub qty: Decimal,
    pub filled_qty: Decimal,
    pub avg_price: Option<Decimal>,
    pub state: OrderState,
}

/// One execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fill {
    pub trade_id: String,
    pub order_id: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub price: Decimal,
    /// Fee in quote currency.
    pub fee: Decimal,
    /// Unix milliseconds.
    pub ts_ms: i64,
}

/// A candle, open time in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candle {
    pub ts: i64,
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    pub volume: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticker {
    pub symbol: String,
    pub bid: Decimal,
    pub ask: Decimal,
    pub last: Decimal,
}

/// What a market feed emits on its channel.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    /// Connected and subscriptions sent (also after every reconnect).
    Connected,
    /// The connection dropped or went stale; the feed reconnects by itself.
    Disconnected,
    /// A candle that is closed: a newer interval has begun.
    Candle {
        symbol: String,
        interval_minutes: u32,
        candle: Candle,
    },
    Ticker(Ticker),
}

/// One venue. Every method is safe to call concurrently; `place_order` never places an order twice
/// for the same `client_id` (ambiguous failures are resolved by looking the client id up first).
pub trait Exchange: Send + Sync {
    fn name(&self) -> &'static str;
    fn place_order<'a>(&'a self, spec: &'a OrderSpec) -> BoxFuture<'a, OrderAck>;
    /// `true` if the order was cancelled now, `false` if the venue has no open order by that id.
    fn cancel_order<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, bool>;
    fn open_orders(&self) -> BoxFuture<'_, Vec<OrderStatus>>;
    fn query_order_by_client_id<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Option<OrderStatus>>;
    /// Executions strictly after `since` (unix seconds), oldest first.
    fn fills_since(&self, since: i64) -> BoxFuture<'_, Vec<Fill>>;
    /// Available balance per asset (host spelling: `BTC`, `USD`).
    fn balances(&self) -> BoxFuture<'_, BTreeMap<String, Decimal>>;
    /// The account's current taker fee on `symbol`, as a fraction of notional (0.0026 = 26 bps).
    fn taker_fee<'a>(&'a self, symbol: &'a str) -> BoxFuture<'a, Decimal>;
    /// Closed candles with open time `>= since` (unix seconds), oldest first.
    fn ohlc<'a>(
        &'a self,
        symbol: &'a str,
        interval_minutes: u32,
        since: i64,
    ) -> BoxFuture<'a, Vec<Candle>>;
}

/// `[exchanges.<venue>]` in settings.toml.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VenueSettings {
    pub rest_url: String,
    pub ws_url: String,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub rate_per_sec: f64,
}

impl VenueSettings {
    /// Checks the values; `Err` names the bad field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, u) in [("rest_url", &self.rest_url), ("ws_url", &self.ws_url)] {
            let parsed = url::Url::parse(u).map_err(|e| (field, format!("{u:?}: {e}")))?;
            if parsed.host_str().is_none() {
                return Err((field, format!("{u:?} has no host")));
            }
        }
        if self.timeout_ms == 0 {
            return Err(("timeout_ms", "must be positive".into()));
        }
        if !self.rate_per_sec.is_finite() || self.rate_per_sec <= 0.0 {
            return Err(("rate_per_sec", "must be a positive number".into()));
        }
        Ok(())
    }
}

/// `[exchanges.<venue>]` as written: every key optional; a missing key
/// takes the embedded default's, then the built-in one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVenue {
    pub rest_url: Option<String>,
    pub ws_url: Option<String>,
    pub timeout_ms: Option<u64>,
    pub max_retries: Option<u32>,
    pub rate_per_sec: Option<f64>,
}

impl RawVenue {
    /// This section's keys over `base`'s.
    fn over(self, base: VenueSettings) -> VenueSettings {
        VenueSettings {
            rest_url: self.rest_url.unwrap_or(base.rest_url),
            ws_url: self.ws_url.unwrap_or(base.ws_url),
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            max_retries: self.max_retries.unwrap_or(base.max_retries),
            rate_per_sec: self.rate_per_sec.unwrap_or(base.rate_per_sec),
        }
    }
}

/// `[exchanges]` as written: each venue section, and each key in it, optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExchanges {
    pub kraken: Option<RawVenue>,
    pub coinbase: Option<RawVenue>,
}

/// `[exchanges]` resolved: every venue's URLs and limits (keys come only from the environment).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExchangesSettings {
    pub kraken: VenueSettings,
    pub coinbase: VenueSettings,
}

impl Default for ExchangesSettings {
    fn default() -> Self {
        let venue = |rest: &str, ws: &str, rate| VenueSettings {
            rest_url: rest.into(),
            ws_url: ws.into(),
            timeout_ms: 10_000,
            max_retries: 4,
            rate_per_sec: rate,
        };
        ExchangesSettings {
            kraken: venue(
                kraken::config::DEFAULT_REST_URL,
                kraken::config::DEFAULT_WS_URL,
                1.0,
            ),
            coinbase: venue(
                coinbase::config::DEFAULT_REST_URL,
                coinbase::config::DEFAULT_WS_URL,
                10.0,
            ),
        }
    }
}

impl ExchangesSettings {
    /// The user's keys over the embedded ones over the built-in defaults, key by key, validated.
    pub fn resolve(
        user: Option<RawExchanges>,
        embedded: Option<RawExchanges>,
    ) -> Result<ExchangesSettings, String> {
        let (u, e) = (user.unwrap_or_default(), embedded.unwrap_or_default());
        let def = ExchangesSettings::default();
        let layer = |user: Option<RawVenue>, embedded: Option<RawVenue>, base| {
            user.unwrap_or_default()
                .over(embedded.unwrap_or_default().over(base))
        };
        let out = ExchangesSettings {
            kraken: layer(u.kraken, e.kraken, def.kraken),
            coinbase: layer(u.coinbase, e.coinbase, def.coinbase),
        };
        for (name, v) in [("kraken", &out.kraken), ("coinbase", &out.coinbase)] {
            v.validate()
                .map_err(|(field, m)| format!("{name}.{field}: {m}"))?;
        }
        Ok(out)
    }
}

/// Quote currencies recognised at the end of a host symbol, longest first.
const QUOTES: &[&str] = &[
    "USDT", "USDC", "USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD", "BTC", "ETH",
];

/// Splits a host symbol (`BTCUSD`) into base and quote (`BTC`, `USD`).
pub fn split_symbol(symbol: &str) -> ExResult<(&str, &str)> {
    for q in QUOTES {
        if let Some(base) = symbol.strip_suffix(q) {
            if !base.is_empty() && base.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Ok((base, q));
            }
        }
    }
    Err(ExchangeError::UnknownSymbol(symbol.to_string()))
}

/// A decimal from a JSON string or number (numbers go through their shortest text form).
pub fn dec(v: &serde_json::Value) -> ExResult<Decimal> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(ExchangeError::Decode(format!("{other} is not a number"))),
    };
    parse_dec(&text)
}

/// A decimal from venue text: plain (`30306.1`) or scientific (`1e-7`); anything else is
/// [`ExchangeError::Decode`].
pub fn parse_dec(text: &str) -> ExResult<Decimal> {
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| ExchangeError::Decode(format!("{text:?} is not a decimal")))
}

/// Field `k` of a JSON object as a decimal.
pub(crate) fn dec_field(v: &serde_json::Value, k: &str) -> ExResult<Decimal> {
    dec(v
        .get(k)
        .ok_or_else(|| ExchangeError::Decode(format!("missing field {k:?}")))?)
}

pub(crate) fn str_field<'a>(v: &'a serde_json::Value, k: &str) -> ExResult<&'a str> {
    v.get(k)
        .and_then(|x| x.as_str())
        .ok_or_else(|| ExchangeError::Decode(format!("missing string field {k:?}")))
}

/// Text of a decimal without trailing zeros, as venues expect it.
pub(crate) fn dec_text(d: Decimal) -> String {
    d.normalize().to_string()
}

/// A reqwest client with the venue's timeout.
pub(crate) fn http_client(timeout: Duration) -> ExResult<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("wasm-trading-host/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ExchangeError::Connect(error_chain(&e)))
}

/// The longest `Retry-After` honoured: a larger one (up to `1e20` or more) waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Seconds from a `Retry-After` header (delta-seconds form), at most [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: `Retry-After: 1e20` panicked `Duration::from_secs_f64` on the scan thread.
    #[test]
    fn a_huge_retry_after_is_capped_not_a_panic() {
        let mut h = reqwest::header::HeaderMap::new();
        for (text, want) in [
            ("1e20", Some(MAX_RETRY_AFTER)),
            ("1.7e308", Some(MAX_RETRY_AFTER)),
            ("2.5", Some(Duration::from_millis(2_500))),
            ("inf", None),
            ("-1", None),
            ("NaN", None),
            ("soon", None),
        ] {
            h.insert(reqwest::header::RETRY_AFTER, text.parse().unwrap());
            assert_eq!(retry_after(&h), want, "{text}");
        }
    }

    #[test]
    fn symbols_split() {
        assert_eq!(split_symbol("BTCUSD").unwrap(), ("BTC", "USD"));
        assert_eq!(split_symbol("ETHUSDT").unwrap(), ("ETH", "USDT"));
        assert_eq!(split_symbol("SOLEUR").unwrap(), ("SOL", "EUR"));
        assert!(split_symbol("USD").is_err());
        assert!(split_symbol("BTCXYZ").is_err());
    }

    #[test]
    fn decimals_from_json() {
        assert_eq!(
            dec(&serde_json::json!("30306.1")).unwrap().to_string(),
            "30306.1"
        );
        assert_eq!(dec(&serde_json::json!(0.1)).unwrap().to_string(), "0.1");
        assert_eq!(
            dec(&serde_json::json!(1e-7)).unwrap().to_string(),
            "0.0000001"
        );
        assert!(dec(&serde_json::json!("abc")).is_err());
        assert!(dec(&serde_json::json!(null)).is_err());
    }

    #[tokio::test]
    async fn adapters_are_exchange_trait_objects() {
        let venues: Vec<Box<dyn Exchange>> = vec![
            Box::new(kraken::Kraken::new(kraken::KrakenConfig::default()).unwrap()),
            Box::new(coinbase::Coinbase::new(coinbase::CoinbaseConfig::default()).unwrap()),
        ];
        let names: Vec<&str> = venues.iter().map(|v| v.name()).collect();
        assert_eq!(names, ["kraken", "coinbase"]);
        // Without keys a private call fails typed, before anything is sent.
        for v in &venues {
            assert!(matches!(
                v.balances().await,
                Err(ExchangeError::MissingCredentials(_))
            ));
        }
    }

    #[test]
    fn exchanges_settings_resolve_and_validate() {
        let d = ExchangesSettings::resolve(None, None).unwrap();
        assert_eq!(d.kraken.rest_url, "https://api.kraken.com");
        assert_eq!(d.coinbase.ws_url, "wss://advanced-trade-ws.coinbase.com");
        let none = || RawVenue {
            rest_url: None,
            ws_url: None,
            timeout_ms: None,
            max_retries: None,
            rate_per_sec: None,
        };
        let k = RawVenue {
            rest_url: Some("http://127.0.0.1:9".into()),
            ..none()
        };
        let user = RawExchanges {
            kraken: Some(k),
            coinbase: None,
        };
        let r = ExchangesSettings::resolve(Some(user), None).unwrap();
        assert_eq!(
            (r.kraken.rest_url.as_str(), r.coinbase),
            ("http://127.0.0.1:9", d.coinbase.clone())
        );
        let bad = RawVenue {
            rate_per_sec: Some(0.0),
            ..none()
        };
        let e = ExchangesSettings::resolve(
            Some(RawExchanges {
                kraken: None,
                coinbase: Some(bad),
            }),
            None,
        );
        assert!(e.unwrap_err().starts_with("coinbase.rate_per_sec"));
        let bad = RawVenue {
            ws_url: Some("not a url".into()),
            ..none()
        };
        assert!(ExchangesSettings::resolve(
            Some(RawExchanges {
                kraken: Some(bad),
                coinbase: None
            }),
            None
        )
        .is_err());
    }

    #[test]
    fn order_validation() {
        let mut o = OrderSpec {
            client_id: "abc-1".into(),
            symbol: "BTCUSD".into(),
            side: Side::Buy,
            kind: OrderKind::Market,
            qty: Decimal::ONE,
        };
        assert!(o.validate().is_ok());
        o.qty = Decimal::ZERO;
        assert!(matches!(o.validate(), Err(ExchangeError::InvalidOrder(_))));
        o.qty = Decimal::ONE;
        o.kind = OrderKind::Limit {
            price: -Decimal::ONE,
        };
        assert!(o.validate().is_err());
        o.kind = OrderKind::Market;
        o.client_id = "a b".into();
        assert!(o.validate().is_err());
    }
}
