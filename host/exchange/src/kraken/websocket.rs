//! Kraken websocket v2 market feed: subscribes to `ohlc` and `ticker` for the host's symbols,
//! ignores heartbeats and status, and emits a candle once it is closed (a newer `interval_begin`
//! arrived for that symbol); reconnects with backoff and resubscribes after any drop.

use super::config::KrakenConfig;
use super::http::{pair_to_host, ws_symbol};
use crate::ws::{self, FeedProtocol};
use crate::{
    dec_field, str_field, Candle, ExResult, ExchangeError, FeedHandle, MarketEvent, Ticker,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio::sync::mpsc;

/// The intervals Kraken's `ohlc` channel accepts, in minutes.
pub const INTERVALS: &[u32] = &[1, 5, 15, 30, 60, 240, 1440, 10080, 21600];

/// Parser state: the running (not yet closed) candle per symbol.
#[derive(Debug)]
pub struct KrakenFeed {
    symbols: Vec<String>,
    interval: u32,
    req_id: u64,
    running: HashMap<String, Candle>,
}

impl KrakenFeed {
    pub fn new(symbols: &[String], interval_minutes: u32) -> ExResult<KrakenFeed> {
        if !INTERVALS.contains(&interval_minutes) {
            return Err(ExchangeError::Unsupported(format!(
                "Kraken has no {interval_minutes}-minute candles"
            )));
        }
        let symbols = symbols
            .iter()
            .map(|s| ws_symbol(s))
            .collect::<ExResult<Vec<_>>>()?;
        Ok(KrakenFeed {
            symbols,
            interval: interval_minutes,
            req_id: 0,
            running: HashMap::new(),
        })
    }

    fn candle(&mut self, d: &Value) -> ExResult<Option<MarketEvent>> {
        let begin = str_field(d, "interval_begin")?;
        let ts = chrono::DateTime::parse_from_rfc3339(begin)
            .map_err(|e| ExchangeError::Decode(format!("interval_begin {begin:?}: {e}")))?
            .timestamp();
        let c = Candle {
            ts,
            open: dec_field(d, "open")?,
            high: dec_field(d, "high")?,
            low: dec_field(d, "low")?,
            close: dec_field(d, "close")?,
            volume: dec_field(d, "volume")?,
        };
        let symbol = pair_to_host(str_field(d, "symbol")?);
        Ok(match self.running.get(&symbol) {
            Some(cur) if cur.ts < c.ts => {
                let closed = *cur;
                self.running.insert(symbol.clone(), c);
                Some(MarketEvent::Candle {
                    symbol,
                    interval_minutes: self.interval,
                    candle: closed,
                })
            }
            Some(cur) if cur.ts > c.ts => None,
            _ => {
                self.running.insert(symbol, c);
                None
            }
        })
    }

    /// The events in one Kraken websocket text frame; a frame that does not decode is an error
    /// (the feed logs it and goes on).
    pub fn parse(&mut self, text: &str) -> ExResult<Vec<MarketEvent>> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| ExchangeError::Decode(e.to_string()))?;
        if v.get("method").and_then(Value::as_str) == Some("subscribe")
            && v.get("success").and_then(Value::as_bool) == Some(false)
        {
            let error = v.get("error").and_then(Value::as_str).unwrap_or("");
            tracing::warn!(error, "Kraken refused a subscription");
            return Ok(vec![]);
        }
        let data = || {
            v.get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        };
        let mut out = Vec::new();
        match v.get("channel").and_then(Value::as_str) {
            Some("ohlc") => {
                for d in data() {
                    if d.get("interval").and_then(Value::as_u64) == Some(u64::from(self.interval))
                        || d.get("interval").is_none()
                    {
                        out.extend(self.candle(d)?);
                    }
                }
            }
            Some("ticker") => {
                for d in data() {
                    out.push(MarketEvent::Ticker(Ticker {
                        symbol: pair_to_host(str_field(d, "symbol")?),
                        bid: dec_field(d, "bid")?,
                        ask: dec_field(d, "ask")?,
                        last: dec_field(d, "last")?,
                    }));
                }
            }
            _ => {}
        }
        Ok(out)
    }
}

impl FeedProtocol for KrakenFeed {
    fn subscriptions(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (channel, extra) in [("ohlc", Some(self.interval)), ("ticker", None)] {
            self.req_id += 1;
            let mut params = json!({ "channel": channel, "symbol": self.symbols });
            if let Some(i) = extra {
                params["interval"] = json!(i);
            }
            out.push(
                json!({ "method": "subscribe", "params": params, "req_id": self.req_id })
                    .to_string(),
            );
        }
        out
    }

    fn on_text(&mut self, text: &str) -> Vec<MarketEvent> {
        self.parse(text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "undecodable Kraken websocket message");
            vec![]
        })
    }
}

/// Starts the feed for `symbols` (host spelling) and `interval_minutes` candles.
pub fn market_feed(
    cfg: &KrakenConfig,
    symbols: &[String],
    interval_minutes: u32,
) -> ExResult<(FeedHandle, mpsc::Receiver<MarketEvent>)> {
    let feed = KrakenFeed::new(symbols, interval_minutes)?;
    Ok(ws::spawn(
        cfg.ws_url.clone(),
        cfg.ws_idle_timeout,
        cfg.retry.clone(),
        feed,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(begin: &str, close: f64) -> String {
        json!({"channel":"ohlc","type":"update","timestamp":"2023-10-04T16:26:30.524394914Z",
            "data":[{"symbol":"BTC/USD","open":27470.1,"high":27470.1,"low":27470.1,"close":close,
            "trades":1,"volume":0.0015,"vwap":27470.1,"interval_begin":begin,"interval":60,
            "timestamp":"2023-10-04T17:00:00.000000Z"}]})
        .to_string()
    }

    #[test]
    fn candle_closes_when_next_interval_begins() {
        let mut f = KrakenFeed::new(&["BTCUSD".to_string()], 60).unwrap();
        assert!(f
            .on_text(&msg("2023-10-04T16:00:00.000000000Z", 27470.1))
            .is_empty());
        assert!(f
            .on_text(&msg("2023-10-04T16:00:00.000000000Z", 27480.5))
            .is_empty());
        let ev = f.on_text(&msg("2023-10-04T17:00:00.000000000Z", 1.0));
        match &ev[..] {
            [MarketEvent::Candle {
                symbol,
                interval_minutes: 60,
                candle,
            }] => {
                assert_eq!(symbol, "BTCUSD");
                assert_eq!(candle.ts, 1696435200);
                assert_eq!(candle.close.to_string(), "27480.5");
                assert_eq!(candle.volume.to_string(), "0.0015");
            }
            other => panic!("{other:?}"),
        }
        // A late update for an older interval is ignored.
        assert!(f
            .on_text(&msg("2023-10-04T16:00:00.000000000Z", 5.0))
            .is_empty());
        assert!(f.on_text(r#"{"channel":"heartbeat"}"#).is_empty());
        assert!(f.on_text("not json").is_empty());
    }

    #[test]
    fn subscriptions_follow_the_documented_shape() {
        let mut f = KrakenFeed::new(&["BTCUSD".to_string()], 60).unwrap();
        let subs: Vec<Value> = f
            .subscriptions()
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect();
        assert_eq!(subs[0]["method"], "subscribe");
        assert_eq!(subs[0]["params"]["channel"], "ohlc");
        assert_eq!(subs[0]["params"]["symbol"], json!(["BTC/USD"]));
        assert_eq!(subs[0]["params"]["interval"], 60);
        assert_eq!(subs[1]["params"]["channel"], "ticker");
        assert!(KrakenFeed::new(&["BTCUSD".to_string()], 7).is_err());
    }
}
