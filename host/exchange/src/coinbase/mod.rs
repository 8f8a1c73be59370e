//! Coinbase Advanced Trade: the [`Exchange`] adapter over JWT-authenticated REST ([`http`]), and
//! the websocket market feed ([`websocket`]) for 5-minute candles and prices.

pub mod auth;
pub mod config;
pub mod http;
pub mod websocket;

pub use config::{CoinbaseConfig, CoinbaseCredentials};

use crate::{BoxFuture, Candle, ExResult, Exchange, Fill, OrderAck, OrderSpec, OrderStatus};
use http::CoinbaseHttp;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Candles per request the candles endpoint allows (350), kept under.
const CANDLES_PER_CALL: i64 = 300;
/// The oldest candle a backfill asks Coinbase for, in candles before now
/// (a year of 1h, 30 days of 5m, 27 years of 1d).
const MAX_CANDLES_BACK: i64 = 10_000;

/// Coinbase behind the [`Exchange`] trait.
#[derive(Debug)]
pub struct Coinbase {
    http: CoinbaseHttp,
}

impl Coinbase {
    pub fn new(cfg: CoinbaseConfig) -> ExResult<Coinbase> {
        Ok(Coinbase {
            http: CoinbaseHttp::new(cfg)?,
        })
    }

    pub fn config(&self) -> &CoinbaseConfig {
        &self.http.cfg
    }

    /// The raw REST client (no retries).
    pub fn http(&self) -> &CoinbaseHttp {
        &self.http
    }

    async fn retried<T, F, Fut>(&self, op: F) -> ExResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ExResult<T>>,
    {
        self.http.cfg.retry.run(&self.http.limiter, op).await
    }

    async fn place(&self, spec: &OrderSpec) -> ExResult<OrderAck> {
        spec.validate()?;
        http::product_id(&spec.symbol)?;
        self.http
            .cfg
            .retry
            .place_once(
                &self.http.limiter,
                spec,
                || async {
                    let id = self.http.create_order(spec).await?;
                    Ok(OrderAck {
                        order_id: id,
                        client_id: spec.client_id.clone(),
                        recovered: false,
                    })
                },
                || self.http.find_by_client_id(&spec.client_id),
            )
            .await
    }

    async fn fills(&self, since: i64) -> ExResult<Vec<Fill>> {
        let mut out: Vec<Fill> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.clone();
            let (page, next) = self
                .retried(|| self.http.fills_page(since, c.as_deref()))
                .await?;
            out.extend(page);
            match next {
                Some(n) if Some(&n) != cursor.as_ref() => cursor = Some(n),
                _ => break,
            }
        }
        out.retain(|f| f.ts_ms > since * 1000);
        out.sort_by(|a, b| (a.ts_ms, &a.trade_id).cmp(&(b.ts_ms, &b.trade_id)));
        out.dedup_by(|a, b| a.trade_id == b.trade_id);
        Ok(out)
    }

    async fn balances(&self) -> ExResult<BTreeMap<String, Decimal>> {
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.clone();
            let (page, next) = self
                .retried(|| self.http.accounts_page(c.as_deref()))
                .await?;
            for (k, v) in page {
                let sum = out.entry(k.clone()).or_insert(Decimal::ZERO);
                *sum = sum.checked_add(v).ok_or_else(|| {
                    crate::ExchangeError::Decode(format!("balance of {k} overflows"))
                })?;
            }
            match next {
                Some(n) if Some(&n) != cursor.as_ref() => cursor = Some(n),
                _ => return Ok(out),
            }
        }
    }

    /// Closed candles from `since` (at most [`MAX_CANDLES_BACK`] back), in
    /// pages of [`CANDLES_PER_CALL`].
    async fn candles(&self, symbol: &str, minutes: u32, since: i64) -> ExResult<Vec<Candle>> {
        http::granularity(minutes)?;
        let step = i64::from(minutes) * 60;
        let now = self.http.cfg.clock.now();
        let mut out: Vec<Candle> = Vec::new();
        // at most MAX_CANDLES_BACK candles back: a `since` of 0 (nothing
        // stored yet) is not fifty years of 350-candle pages
        let floor = now - MAX_CANDLES_BACK * step;
        let since = since.max(floor);
        let mut start = since - since.rem_euclid(step);
        while start < now {
            let end = (start + CANDLES_PER_CALL * step).min(now);
            let page = self
                .retried(|| self.http.candles(symbol, minutes, start, end))
                .await?;
            out.extend(page);
            start = end;
        }
        out.retain(|c| c.ts >= since && c.ts.checked_add(step).is_some_and(|end| end <= now));
        out.sort_by_key(|c| c.ts);
        out.dedup_by_key(|c| c.ts);
        Ok(out)
    }
}

impl Exchange for Coinbase {
    fn name(&self) -> &'static str {
        "coinbase"
    }

    fn place_order<'a>(&'a self, spec: &'a OrderSpec) -> BoxFuture<'a, OrderAck> {
        Box::pin(self.place(spec))
    }

    fn cancel_order<'a>(&'a self, order_id: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(self.retried(move || self.http.cancel(order_id)))
    }

    fn open_orders(&self) -> BoxFuture<'_, Vec<OrderStatus>> {
        Box::pin(self.retried(|| self.http.open_orders()))
    }

    fn query_order_by_client_id<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, Option<OrderStatus>> {
        Box::pin(self.retried(move || self.http.find_by_client_id(client_id)))
    }

    fn fills_since(&self, since: i64) -> BoxFuture<'_, Vec<Fill>> {
        Box::pin(self.fills(since))
    }

    fn balances(&self) -> BoxFuture<'_, BTreeMap<String, Decimal>> {
        Box::pin(Coinbase::balances(self))
    }

    fn taker_fee<'a>(&'a self, _symbol: &'a str) -> BoxFuture<'a, Decimal> {
        Box::pin(self.retried(|| self.http.taker_fee()))
    }

    fn ohlc<'a>(
        &'a self,
        symbol: &'a str,
        interval_minutes: u32,
        since: i64,
    ) -> BoxFuture<'a, Vec<Candle>> {
        Box::pin(self.candles(symbol, interval_minutes, since))
    }
}
