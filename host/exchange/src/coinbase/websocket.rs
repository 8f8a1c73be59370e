//! Coinbase Advanced Trade websocket feed: subscribes to `candles` (5-minute), `ticker` and
//! `heartbeats` for the host's symbols (with a fresh JWT when a key is configured), emits a
//! candle once a newer `start` arrives for that product, and reconnects with backoff.

use super::auth::jwt;
use super::config::{CoinbaseConfig, CoinbaseCredentials};
use super::http::{product_id, product_to_host};
use crate::ws::{self, FeedProtocol};
use crate::{
    dec_field, str_field, Candle, ExResult, ExchangeError, FeedHandle, MarketEvent, Ticker,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// The candles channel's only interval.
pub const CANDLE_MINUTES: u32 = 5;

#[derive(Debug)]
pub struct CoinbaseFeed {
    products: Vec<String>,
    credentials: Option<CoinbaseCredentials>,
    clock: std::sync::Arc<dyn trading_core::Clock>,
    running: HashMap<String, Candle>,
}

impl CoinbaseFeed {
    pub fn new(
        symbols: &[String],
        credentials: Option<CoinbaseCredentials>,
        clock: std::sync::Arc<dyn trading_core::Clock>,
    ) -> ExResult<Self> {
        Ok(CoinbaseFeed {
            products: symbols
                .iter()
                .map(|s| product_id(s))
                .collect::<ExResult<_>>()?,
            credentials,
            clock,
            running: HashMap::new(),
        })
    }

    fn candle(&mut self, c: &Value) -> ExResult<Option<MarketEvent>> {
        let candle = Candle {
            ts: str_field(c, "start")?
                .parse()
                .map_err(|_| ExchangeError::Decode(format!("bad candle start in {c}")))?,
            open: dec_field(c, "open")?,
            high: dec_field(c, "high")?,
            low: dec_field(c, "low")?,
            close: dec_field(c, "close")?,
            volume: dec_field(c, "volume")?,
        };
        let symbol = product_to_host(str_field(c, "product_id")?);
        Ok(match self.running.get(&symbol) {
            Some(cur) if cur.ts < candle.ts => {
                let closed = *cur;
                self.running.insert(symbol.clone(), candle);
                Some(MarketEvent::Candle {
                    symbol,
                    interval_minutes: CANDLE_MINUTES,
                    candle: closed,
                })
            }
            Some(cur) if cur.ts > candle.ts => None,
            _ => {
                self.running.insert(symbol, candle);
                None
            }
        })
    }

    /// The events in one Coinbase websocket text frame; a frame that does not decode is an error
    /// (the feed logs it and goes on).
    pub fn parse(&mut self, text: &str) -> ExResult<Vec<MarketEvent>> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| ExchangeError::Decode(e.to_string()))?;
        if v.get("type").and_then(Value::as_str) == Some("error") {
            tracing::warn!(message = %v, "Coinbase websocket error");
            return Ok(vec![]);
        }
        let events = v
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let mut out = Vec::new();
        match v.get("channel").and_then(Value::as_str) {
            Some("candles") => {
                let mut all: Vec<&Value> = events
                    .flat_map(|e| {
                        e.get("candles")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                    })
                    .collect();
                // Snapshots may list several candles; take them oldest first.
                all.sort_by_key(|c| {
                    c.get("start")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<i64>().ok())
                });
                for c in all {
                    out.extend(self.candle(c)?);
                }
            }
            Some("ticker") => {
                for t in events.flat_map(|e| {
                    e.get("tickers")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                }) {
                    out.push(MarketEvent::Ticker(Ticker {
                        symbol: product_to_host(str_field(t, "product_id")?),
                        bid: dec_field(t, "best_bid")?,
                        ask: dec_field(t, "best_ask")?,
                        last: dec_field(t, "price")?,
                    }));
                }
            }
            _ => {}
        }
        Ok(out)
    }
}

impl FeedProtocol for CoinbaseFeed {
    fn subscriptions(&mut self) -> Vec<String> {
        ["candles", "ticker", "heartbeats"]
            .iter()
            .map(|channel| {
                let mut m = json!({
                    "type": "subscribe",
                    "product_ids": self.products,
                    "channel": channel,
                });
                if let Some(c) = &self.credentials {
                    m["jwt"] = json!(jwt(c, None, self.clock.now()));
                }
                m.to_string()
            })
            .collect()
    }

    fn on_text(&mut self, text: &str) -> Vec<MarketEvent> {
        self.parse(text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "undecodable Coinbase websocket message");
            vec![]
        })
    }
}

/// Starts the feed for `symbols` (host spelling); candles are 5-minute.
pub fn market_feed(
    cfg: &CoinbaseConfig,
    symbols: &[String],
) -> ExResult<(FeedHandle, mpsc::Receiver<MarketEvent>)> {
    let feed = CoinbaseFeed::new(symbols, cfg.credentials.clone(), cfg.clock.clone())?;
    Ok(ws::spawn(
        cfg.ws_url.clone(),
        cfg.ws_idle_timeout,
        cfg.retry.clone(),
        feed,
    ))
}
