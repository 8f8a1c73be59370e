//! Kraken spot: the [`Exchange`] adapter over signed REST ([`http`]), and the public websocket v2
//! market feed ([`websocket`]) for candles and prices.

pub mod auth;
pub mod config;
pub mod http;
pub mod websocket;

pub use config::{KrakenConfig, KrakenCredentials};

use crate::{BoxFuture, Candle, ExResult, Exchange, Fill, OrderAck, OrderSpec, OrderStatus};
use http::KrakenHttp;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Kraken behind the [`Exchange`] trait.
#[derive(Debug)]
pub struct Kraken {
    http: KrakenHttp,
}

impl Kraken {
    pub fn new(cfg: KrakenConfig) -> ExResult<Kraken> {
        Ok(Kraken {
            http: KrakenHttp::new(cfg)?,
        })
    }

    pub fn config(&self) -> &KrakenConfig {
        &self.http.cfg
    }

    /// The raw REST client (no retries).
    pub fn http(&self) -> &KrakenHttp {
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
        http::rest_pair(&spec.symbol)?;
        if spec.client_id.len() > 18 && !is_uuid(&spec.client_id) {
            return Err(crate::ExchangeError::InvalidOrder(format!(
                "{}: Kraken takes a UUID or at most 18 characters as cl_ord_id",
                spec.client_id
            )));
        }
        self.http
            .cfg
            .retry
            .place_once(
                &self.http.limiter,
                spec,
                || async {
                    let txid = self.http.add_order(spec).await?;
                    Ok(OrderAck {
                        order_id: txid,
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
        loop {
            let ofs = out.len();
            let (page, count) = self.retried(|| self.http.trades_page(since, ofs)).await?;
            let n = page.len();
            out.extend(page);
            if n == 0 || out.len() >= count {
                break;
            }
        }
        out.retain(|f| f.ts_ms > since * 1000);
        out.sort_by(|a, b| (a.ts_ms, &a.trade_id).cmp(&(b.ts_ms, &b.trade_id)));
        out.dedup_by(|a, b| a.trade_id == b.trade_id);
        Ok(out)
    }
}

fn is_uuid(s: &str) -> bool {
    let hex = s.chars().filter(|c| *c != '-').collect::<String>();
    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

impl Exchange for Kraken {
    fn name(&self) -> &'static str {
        "kraken"
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
        Box::pin(self.retried(|| self.http.balances()))
    }

    fn taker_fee<'a>(&'a self, symbol: &'a str) -> BoxFuture<'a, Decimal> {
        Box::pin(self.retried(move || self.http.taker_fee(symbol)))
    }

    fn ohlc<'a>(
        &'a self,
        symbol: &'a str,
        interval_minutes: u32,
        since: i64,
    ) -> BoxFuture<'a, Vec<Candle>> {
        Box::pin(self.retried(move || self.http.ohlc(symbol, interval_minutes, since)))
    }
}
