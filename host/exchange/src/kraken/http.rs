//! Kraken REST: form-encoded signed POSTs to `/0/private/*`, GETs to `/0/public/*`, the
//! `{"error":[…],"result":…}` envelope mapped to typed errors, and parsers for orders, trades,
//! balances and OHLC rows as Kraken documents them.

use super::auth::{sign, NonceSource};
use super::config::KrakenConfig;
use crate::{
    dec, dec_field, dec_text, http_client, retry_after, split_symbol, str_field, Candle, ExResult,
    ExchangeError, Fill, OrderKind, OrderSpec, OrderState, OrderStatus, RateLimiter, Side,
};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

/// Legacy four-letter asset codes and what the host calls them.
const LEGACY_ASSETS: &[(&str, &str)] = &[
    ("XXBT", "BTC"),
    ("XBT", "BTC"),
    ("XETH", "ETH"),
    ("XLTC", "LTC"),
    ("XXRP", "XRP"),
    ("XXLM", "XLM"),
    ("XXDG", "DOGE"),
    ("XDG", "DOGE"),
    ("XZEC", "ZEC"),
    ("XXMR", "XMR"),
    ("XETC", "ETC"),
    ("XREP", "REP"),
    ("XMLN", "MLN"),
    ("ZUSD", "USD"),
    ("ZEUR", "EUR"),
    ("ZGBP", "GBP"),
    ("ZCAD", "CAD"),
    ("ZJPY", "JPY"),
    ("ZAUD", "AUD"),
    ("ZCHF", "CHF"),
];

/// Kraken's asset code to the host's (`XXBT` → `BTC`, `ZUSD` → `USD`, `DOT` → `DOT`).
pub fn asset_to_host(asset: &str) -> String {
    LEGACY_ASSETS
        .iter()
        .find(|(k, _)| *k == asset)
        .map(|(_, h)| h.to_string())
        .unwrap_or_else(|| asset.to_string())
}

fn base_to_kraken(base: &str) -> &str {
    match base {
        "BTC" => "XBT",
        "DOGE" => "XDG",
        b => b,
    }
}

/// Host symbol to Kraken's REST pair: `BTCUSD` → `XBTUSD`.
pub fn rest_pair(symbol: &str) -> ExResult<String> {
    let (base, quote) = split_symbol(symbol)?;
    Ok(format!("{}{}", base_to_kraken(base), base_to_kraken(quote)))
}

/// Host symbol to Kraken's websocket v2 symbol: `BTCUSD` → `BTC/USD`.
pub fn ws_symbol(symbol: &str) -> ExResult<String> {
    let (base, quote) = split_symbol(symbol)?;
    Ok(format!("{base}/{quote}"))
}

/// Any Kraken pair spelling (`XBTUSD`, `XXBTZUSD`, `BTC/USD`, `XBT/USD`) to the host symbol.
pub fn pair_to_host(pair: &str) -> String {
    if let Some((b, q)) = pair.split_once('/') {
        return format!("{}{}", asset_to_host(b), asset_to_host(q));
    }
    // `split_at_checked`: a venue payload with a multi-byte character at byte
    // 4 must not panic the host (issue 18)
    if let Some((b, q)) = pair
        .split_at_checked(4)
        .filter(|_| pair.len() == 8 && (pair.starts_with('X') || pair.starts_with('Z')))
    {
        if LEGACY_ASSETS.iter().any(|(k, _)| *k == b) && LEGACY_ASSETS.iter().any(|(k, _)| *k == q)
        {
            return format!("{}{}", asset_to_host(b), asset_to_host(q));
        }
    }
    for (k, h) in [("XBT", "BTC"), ("XDG", "DOGE")] {
        if let Some(rest) = pair.strip_prefix(k) {
            return format!("{h}{rest}");
        }
    }
    pair.to_string()
}

/// Maps Kraken's error list to a typed error.
pub fn venue_error(errors: &[String]) -> ExchangeError {
    let first = errors.first().map(String::as_str).unwrap_or("");
    let message = errors.join("; ");
    match first {
        "EAPI:Rate limit exceeded"
        | "EOrder:Rate limit exceeded"
        | "EGeneral:Too many requests" => ExchangeError::RateLimited { retry_after: None },
        "EService:Unavailable" | "EService:Busy" | "EService:Timeout" => {
            ExchangeError::Unavailable(message)
        }
        "EAPI:Invalid key"
        | "EAPI:Invalid signature"
        | "EAPI:Invalid nonce"
        | "EGeneral:Permission denied" => ExchangeError::Auth(message),
        _ => ExchangeError::Venue {
            code: first.to_string(),
            message,
        },
    }
}

/// The `result` of a Kraken envelope, or its errors as a typed error.
pub fn envelope(body: &Value) -> ExResult<&Value> {
    let errors: Vec<String> = body
        .get("error")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(venue_error(&errors));
    }
    body.get("result")
        .ok_or_else(|| ExchangeError::Decode("envelope without result".into()))
}

fn side(s: &str) -> ExResult<Side> {
    match s {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        o => Err(ExchangeError::Decode(format!("unknown side {o:?}"))),
    }
}

/// One order from OpenOrders / ClosedOrders / QueryOrders.
pub fn parse_order(txid: &str, o: &Value) -> ExResult<OrderStatus> {
    let descr = o
        .get("descr")
        .ok_or_else(|| ExchangeError::Decode(format!("order {txid} has no descr")))?;
    let price = || dec_field(descr, "price");
    let kind = match str_field(descr, "ordertype")? {
        "market" => OrderKind::Market,
        "limit" => OrderKind::Limit { price: price()? },
        "stop-loss" | "stop-loss-limit" => OrderKind::StopLoss { trigger: price()? },
        "take-profit" | "take-profit-limit" => OrderKind::TakeProfit { trigger: price()? },
        other => {
            return Err(ExchangeError::Unsupported(format!(
                "order {txid} has type {other:?}"
            )))
        }
    };
    let state = match str_field(o, "status")? {
        "pending" => OrderState::Pending,
        "open" => OrderState::Open,
        "closed" => OrderState::Filled,
        "canceled" => OrderState::Cancelled,
        "expired" => OrderState::Expired,
        other => {
            return Err(ExchangeError::Decode(format!(
                "unknown order status {other:?}"
            )))
        }
    };
    let filled_qty = dec_field(o, "vol_exec")?;
    let avg = o.get("price").map(dec).transpose()?;
    let client_id = o
        .get("cl_ord_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    Ok(OrderStatus {
        order_id: txid.to_string(),
        client_id,
        symbol: pair_to_host(str_field(descr, "pair")?),
        side: side(str_field(descr, "type")?)?,
        kind,
        qty: dec_field(o, "vol")?,
        filled_qty,
        avg_price: avg.filter(|p| !p.is_zero() && !filled_qty.is_zero()),
        state,
    })
}

/// The orders of an OpenOrders (`open`) or ClosedOrders (`closed`) result; orders of types the
/// host does not place are skipped with a warning.
pub fn parse_order_map(result: &Value, key: &str) -> ExResult<Vec<OrderStatus>> {
    let map = result
        .get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| ExchangeError::Decode(format!("result has no {key:?} object")))?;
    let mut out = Vec::with_capacity(map.len());
    for (txid, o) in map {
        match parse_order(txid, o) {
            Ok(s) => out.push(s),
            Err(ExchangeError::Unsupported(m)) => tracing::warn!("skipping Kraken order: {m}"),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn ts_ms(v: &Value) -> ExResult<i64> {
    let secs = dec(v)?;
    use rust_decimal::prelude::ToPrimitive;
    secs.checked_mul(Decimal::from(1000))
        .and_then(|ms| ms.trunc().to_i64())
        .ok_or_else(|| ExchangeError::Decode(format!("bad time {v}")))
}

/// The trades of a TradesHistory result, oldest first.
pub fn parse_trades(result: &Value) -> ExResult<Vec<Fill>> {
    let map = result
        .get("trades")
        .and_then(Value::as_object)
        .ok_or_else(|| ExchangeError::Decode("result has no trades object".into()))?;
    let mut out = Vec::with_capacity(map.len());
    for (id, t) in map {
        out.push(Fill {
            trade_id: id.clone(),
            order_id: str_field(t, "ordertxid")?.to_string(),
            symbol: pair_to_host(str_field(t, "pair")?),
            side: side(str_field(t, "type")?)?,
            qty: dec_field(t, "vol")?,
            price: dec_field(t, "price")?,
            fee: dec_field(t, "fee")?,
            ts_ms: ts_ms(t.get("time").unwrap_or(&Value::Null))?,
        });
    }
    out.sort_by(|a, b| (a.ts_ms, &a.trade_id).cmp(&(b.ts_ms, &b.trade_id)));
    Ok(out)
}

/// A Balance result, asset codes mapped to the host's.
pub fn parse_balances(result: &Value) -> ExResult<BTreeMap<String, Decimal>> {
    let map = result
        .as_object()
        .ok_or_else(|| ExchangeError::Decode("balance result is not an object".into()))?;
    let mut out = BTreeMap::new();
    for (asset, v) in map {
        // `XXBT` and `XBT` both land on `BTC`: a sum past `Decimal::MAX` is an error, not a panic.
        let sum = out.entry(asset_to_host(asset)).or_insert(Decimal::ZERO);
        *sum = sum
            .checked_add(dec(v)?)
            .ok_or_else(|| ExchangeError::Decode(format!("balance of {asset} overflows")))?;
    }
    Ok(out)
}

/// The rows of an OHLC result (`[time, open, high, low, close, vwap, volume, count]`).
pub fn parse_ohlc(result: &Value) -> ExResult<Vec<Candle>> {
    let rows = result
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| *k != "last"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ExchangeError::Decode("OHLC result has no pair rows".into()))?;
    rows.iter()
        .map(|r| {
            let r = r
                .as_array()
                .filter(|a| a.len() >= 7)
                .ok_or_else(|| ExchangeError::Decode(format!("bad OHLC row {r}")))?;
            Ok(Candle {
                ts: r[0]
                    .as_i64()
                    .ok_or_else(|| ExchangeError::Decode(format!("bad OHLC time {}", r[0])))?,
                open: dec(&r[1])?,
                high: dec(&r[2])?,
                low: dec(&r[3])?,
                close: dec(&r[4])?,
                volume: dec(&r[6])?,
            })
        })
        .collect()
}

/// The raw REST client: signing, envelopes, rate limiting (retries live in the adapter).
#[derive(Debug)]
pub struct KrakenHttp {
    pub(crate) cfg: KrakenConfig,
    http: reqwest::Client,
    pub(crate) limiter: RateLimiter,
    nonce: NonceSource,
}

impl KrakenHttp {
    pub fn new(cfg: KrakenConfig) -> ExResult<KrakenHttp> {
        Ok(KrakenHttp {
            http: http_client(cfg.timeout)?,
            limiter: RateLimiter::new(cfg.rate_per_sec, cfg.rate_per_sec.ceil().max(1.0) as u32),
            nonce: NonceSource::new(cfg.clock.clone(), cfg.nonce_file.clone())?,
            cfg,
        })
    }

    async fn finish(resp: Result<reqwest::Response, reqwest::Error>) -> ExResult<Value> {
        let resp = resp.map_err(ExchangeError::from_reqwest)?;
        let status = resp.status().as_u16();
        if status == 429 {
            return Err(ExchangeError::RateLimited {
                retry_after: retry_after(resp.headers()),
            });
        }
        let text = resp.text().await.map_err(ExchangeError::from_reqwest)?;
        if status == 401 || status == 403 {
            return Err(ExchangeError::Auth(format!("HTTP {status}")));
        }
        if !(200..300).contains(&status) {
            return Err(ExchangeError::Http {
                status,
                body: text.chars().take(200).collect(),
            });
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| {
            ExchangeError::Decode(format!(
                "{e}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        envelope(&body).cloned()
    }

    /// GET `/0/public/{method}`.
    pub async fn public(&self, method: &str, query: &[(&str, String)]) -> ExResult<Value> {
        let url = format!("{}/0/public/{method}", self.cfg.rest_url);
        Self::finish(self.http.get(url).query(query).send().await).await
    }

    /// Signed POST to `/0/private/{method}` with `params` (the nonce is added first).
    pub async fn private(&self, method: &str, params: &[(&str, String)]) -> ExResult<Value> {
        let creds = self
            .cfg
            .credentials
            .as_ref()
            .ok_or(ExchangeError::MissingCredentials(
                super::config::ENV_API_KEY,
            ))?;
        let path = format!("/0/private/{method}");
        let nonce = self.nonce.next()?.to_string();
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("nonce", &nonce);
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.finish()
        };
        let signature = sign(&path, &nonce, &body, &creds.secret);
        let req = self
            .http
            .post(format!("{}{path}", self.cfg.rest_url))
            .header("API-Key", &creds.api_key)
            .header("API-Sign", signature)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body);
        Self::finish(req.send().await).await
    }

    /// AddOrder, once, no retries.
    pub async fn add_order(&self, spec: &OrderSpec) -> ExResult<String> {
        let (ordertype, price) = match spec.kind {
            OrderKind::Market => ("market", None),
            OrderKind::Limit { price } => ("limit", Some(price)),
            OrderKind::StopLoss { trigger } => ("stop-loss", Some(trigger)),
            OrderKind::TakeProfit { trigger } => ("take-profit", Some(trigger)),
        };
        let mut params = vec![
            ("ordertype", ordertype.to_string()),
            (
                "type",
                match spec.side {
                    Side::Buy => "buy",
                    Side::Sell => "sell",
                }
                .to_string(),
            ),
            ("volume", dec_text(spec.qty)),
            ("pair", rest_pair(&spec.symbol)?),
            ("cl_ord_id", spec.client_id.clone()),
        ];
        if let Some(p) = price {
            params.push(("price", dec_text(p)));
        }
        let r = self.private("AddOrder", &params).await?;
        r.get("txid")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| ExchangeError::Decode(format!("AddOrder result without txid: {r}")))
    }

    /// The order with this `cl_ord_id`, open or closed.
    pub async fn find_by_client_id(&self, client_id: &str) -> ExResult<Option<OrderStatus>> {
        for (method, key) in [("OpenOrders", "open"), ("ClosedOrders", "closed")] {
            let r = self
                .private(method, &[("cl_ord_id", client_id.to_string())])
                .await?;
            if let Some(o) = parse_order_map(&r, key)?
                .into_iter()
                .find(|o| o.client_id.as_deref() == Some(client_id))
            {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }

    pub async fn open_orders(&self) -> ExResult<Vec<OrderStatus>> {
        parse_order_map(&self.private("OpenOrders", &[]).await?, "open")
    }

    /// CancelOrder; `false` when Kraken does not know the order.
    pub async fn cancel(&self, txid: &str) -> ExResult<bool> {
        match self
            .private("CancelOrder", &[("txid", txid.to_string())])
            .await
        {
            Ok(r) => Ok(r.get("count").and_then(Value::as_u64).unwrap_or(0) > 0),
            Err(ExchangeError::Venue { code, .. }) if code == "EOrder:Unknown order" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One TradesHistory page from offset `ofs`: (trades, total count).
    pub async fn trades_page(&self, since: i64, ofs: usize) -> ExResult<(Vec<Fill>, usize)> {
        let r = self
            .private(
                "TradesHistory",
                &[("start", since.to_string()), ("ofs", ofs.to_string())],
            )
            .await?;
        let count = r.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
        Ok((parse_trades(&r)?, count))
    }

    pub async fn balances(&self) -> ExResult<BTreeMap<String, Decimal>> {
        parse_balances(&self.private("Balance", &[]).await?)
    }

    /// The taker fee on `symbol` from TradeVolume (Kraken gives percent).
    pub async fn taker_fee(&self, symbol: &str) -> ExResult<Decimal> {
        let r = self
            .private("TradeVolume", &[("pair", rest_pair(symbol)?)])
            .await?;
        let pct = r
            .get("fees")
            .and_then(Value::as_object)
            .and_then(|m| m.values().next())
            .and_then(|f| f.get("fee"))
            .and_then(Value::as_str)
            .ok_or_else(|| ExchangeError::Decode(format!("TradeVolume without a fee: {r}")))?;
        let pct: Decimal = pct
            .parse()
            .map_err(|e| ExchangeError::Decode(format!("fee {pct:?}: {e}")))?;
        Ok(pct / Decimal::ONE_HUNDRED)
    }

    /// Closed candles with open time >= `since`.
    pub async fn ohlc(&self, symbol: &str, interval: u32, since: i64) -> ExResult<Vec<Candle>> {
        let r = self
            .public(
                "OHLC",
                &[
                    ("pair", rest_pair(symbol)?),
                    ("interval", interval.to_string()),
                    ("since", (since - 1).max(0).to_string()),
                ],
            )
            .await?;
        let now = self.cfg.clock.now();
        let step = i64::from(interval) * 60;
        let mut c = parse_ohlc(&r)?;
        c.retain(|c| c.ts >= since && c.ts.checked_add(step).is_some_and(|end| end <= now));
        c.sort_by_key(|c| c.ts);
        c.dedup_by_key(|c| c.ts);
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 18: `pair.split_at(4)` panicked on a non-ASCII pair from the venue.
    #[test]
    fn a_non_ascii_pair_is_not_a_panic() {
        for pair in ["XXBé€", "XBT€USD", "Z\u{1F600}AB", "ééééé"] {
            let _ = pair_to_host(pair);
        }
        assert_eq!(pair_to_host("XXBTZUSD"), "BTCUSD");
    }

    #[test]
    fn pairs_and_assets_map_both_ways() {
        assert_eq!(rest_pair("BTCUSD").unwrap(), "XBTUSD");
        assert_eq!(rest_pair("ETHEUR").unwrap(), "ETHEUR");
        assert_eq!(ws_symbol("BTCUSD").unwrap(), "BTC/USD");
        for p in ["XBTUSD", "XXBTZUSD", "BTC/USD", "XBT/USD"] {
            assert_eq!(pair_to_host(p), "BTCUSD", "{p}");
        }
        assert_eq!(pair_to_host("XETHZEUR"), "ETHEUR");
        assert_eq!(asset_to_host("ZUSD"), "USD");
        assert_eq!(asset_to_host("USDT"), "USDT");
        assert_eq!(asset_to_host("ETH2.S"), "ETH2.S");
    }

    #[test]
    fn envelope_errors_are_typed() {
        let e = |s: &str| envelope(&serde_json::json!({ "error": [s] })).unwrap_err();
        assert!(matches!(
            e("EAPI:Invalid signature"),
            ExchangeError::Auth(_)
        ));
        assert!(matches!(
            e("EAPI:Rate limit exceeded"),
            ExchangeError::RateLimited { .. }
        ));
        assert!(matches!(
            e("EService:Unavailable"),
            ExchangeError::Unavailable(_)
        ));
        assert!(
            matches!(e("EOrder:Insufficient funds"), ExchangeError::Venue { code, .. } if code == "EOrder:Insufficient funds")
        );
        assert!(envelope(&serde_json::json!({"error": []})).is_err());
    }
}
