//! A stateful loopback Coinbase Advanced Trade (REST under `/api/v3/brokerage`, websocket at
//! `/`) on 127.0.0.1:0. Every REST call must carry a CDP JWT (ES256, `kid`, `nonce`, `iss`
//! "cdp", `sub`, `nbf`/`exp` two minutes apart, `uri` = "METHOD host/path") signed by the
//! venue's key, else 401. It keeps accounts, orders (by id and `client_order_id`) and fills, fills
//! orders against a price the test sets, injects faults, and streams pushed candles and tickers.

use super::{drop_connection, hang, test_data, unix_now, Fault, Faults};
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

pub const KEY_NAME: &str = "organizations/loopback-org/apiKeys/loopback-key";
/// The key the venue trusts (SEC1 PEM, as Coinbase hands CDP keys out).
pub const PRIVATE_KEY_PEM: &str = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIN8FhrAA+me6WYj0McbA2wQhSWRaP/6FvBEHGa5fxCo9oAoGCCqGSM49\nAwEHoUQDQgAErsntrczwhMMgERDCYG7QelyIlkbbcMwJdQK9K+DNnfirUnSp/SjL\nawXffj0BhFpr6t0caG0dTE2aCkr3A5dvFA==\n-----END EC PRIVATE KEY-----\n";
const API: &str = "/api/v3/brokerage";

/// A stored candle: (start, open, high, low, close, volume).
pub type CandleRow = (i64, Decimal, Decimal, Decimal, Decimal, Decimal);

#[derive(Debug, Clone, PartialEq)]
pub struct CbOrder {
    pub order_id: String,
    pub client_order_id: String,
    pub product_id: String,
    pub side: String,
    /// `market_market_ioc`, `limit_limit_gtc` or `stop_limit_stop_limit_gtc`.
    pub configuration: String,
    pub config: Value,
    pub base_size: Decimal,
    pub status: String,
    pub triggered: bool,
    pub filled_size: Decimal,
    pub filled_value: Decimal,
    pub fees: Decimal,
    pub created: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CbFill {
    pub trade_id: String,
    pub order_id: String,
    pub product_id: String,
    pub side: String,
    pub price: Decimal,
    pub size: Decimal,
    pub commission: Decimal,
    pub time: f64,
}

#[derive(Debug)]
pub struct CbState {
    pub accounts: BTreeMap<String, Decimal>,
    pub orders: Vec<CbOrder>,
    pub fills: Vec<CbFill>,
    pub prices: HashMap<String, Decimal>,
    /// Candles per product: (start, open, high, low, close, volume).
    pub candles: HashMap<String, Vec<CandleRow>>,
    /// Candles per (product, granularity in seconds): once any is set for a
    /// product, its candles are served per granularity from here.
    pub candles_at: HashMap<(String, i64), Vec<CandleRow>>,
    pub fee_bps: u32,
    pub faults: Faults,
    /// Every REST request: ("METHOD /path-after-brokerage", arrival).
    pub requests: Vec<(String, Instant)>,
    /// Requests refused with 401, and why.
    pub unauthorized: Vec<(String, String)>,
    pub subscriptions: Vec<Value>,
    pub ws_connections: usize,
    pub silent: bool,
    next_id: u64,
}

#[derive(Debug, Clone)]
enum WsCmd {
    Text(String),
    Drop,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<CbState>>,
    ws: broadcast::Sender<WsCmd>,
    key: VerifyingKey,
}

/// A running loopback Coinbase; stops when dropped.
pub struct CoinbaseVenue {
    pub rest_url: String,
    pub ws_url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CoinbaseVenue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn rfc3339(t: f64) -> String {
    chrono::DateTime::from_timestamp_micros((t * 1e6) as i64)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl CoinbaseVenue {
    /// Starts on 127.0.0.1 with the documented example account (1.23 BTC) plus 10000 USD, and
    /// BTC-USD at 30000.
    pub async fn start() -> CoinbaseVenue {
        let mut accounts = BTreeMap::new();
        for a in test_data("coinbase", "accounts.json")["accounts"]
            .as_array()
            .unwrap()
        {
            accounts.insert(
                a["currency"].as_str().unwrap().to_string(),
                d(a["available_balance"]["value"].as_str().unwrap()),
            );
        }
        accounts.insert("USD".into(), d("10000"));
        let mut candles = HashMap::new();
        let c = &test_data("coinbase", "candles.json")["candles"][0];
        let f = |k: &str| d(c[k].as_str().unwrap());
        candles.insert(
            "BTC-USD".to_string(),
            vec![(
                c["start"].as_str().unwrap().parse().unwrap(),
                f("open"),
                f("high"),
                f("low"),
                f("close"),
                f("volume"),
            )],
        );
        let secret = p256::SecretKey::from_sec1_pem(&PRIVATE_KEY_PEM.replace("\\n", "\n")).unwrap();
        let shared = Shared {
            state: Arc::new(Mutex::new(CbState {
                accounts,
                orders: vec![],
                fills: vec![],
                prices: [
                    ("BTC-USD".to_string(), d("30000")),
                    ("ETH-USD".to_string(), d("2000")),
                ]
                .into_iter()
                .collect(),
                candles,
                fee_bps: 60,
                faults: Faults::default(),
                requests: vec![],
                unauthorized: vec![],
                subscriptions: vec![],
                candles_at: HashMap::new(),
                ws_connections: 0,
                silent: false,
                next_id: 0,
            })),
            ws: broadcast::channel(1024).0,
            key: VerifyingKey::from(&p256::ecdsa::SigningKey::from(secret)),
        };
        let app = Router::new()
            .route("/", get(ws_upgrade))
            .fallback(rest)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        CoinbaseVenue {
            rest_url: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/"),
            shared,
            task,
        }
    }

    /// An adapter config pointing here, with the venue's key, a short timeout and quick backoff.
    pub fn config(&self) -> crate::coinbase::CoinbaseConfig {
        crate::coinbase::CoinbaseConfig {
            rest_url: self.rest_url.clone(),
            ws_url: self.ws_url.clone(),
            timeout: Duration::from_millis(750),
            retry: crate::RetryPolicy {
                max_retries: 4,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(100),
            },
            rate_per_sec: 1000.0,
            ws_idle_timeout: Duration::from_secs(2),
            credentials: Some(
                crate::coinbase::CoinbaseCredentials::new(KEY_NAME, PRIVATE_KEY_PEM).unwrap(),
            ),
            ..Default::default()
        }
    }

    pub fn state(&self) -> MutexGuard<'_, CbState> {
        self.shared.state.lock().unwrap()
    }

    /// Faults for requests whose "METHOD /path" contains `endpoint` (e.g. "POST /orders").
    pub fn inject(&self, endpoint: &str, fault: Fault, times: usize) {
        self.state().faults.push(endpoint, fault, times);
    }

    pub fn arrivals(&self, endpoint: &str) -> Vec<Instant> {
        self.state()
            .requests
            .iter()
            .filter(|(e, _)| e == endpoint)
            .map(|(_, t)| *t)
            .collect()
    }

    pub fn count(&self, endpoint: &str) -> usize {
        self.arrivals(endpoint).len()
    }

    pub fn orders(&self) -> Vec<CbOrder> {
        self.state().orders.clone()
    }

    pub fn fills(&self) -> Vec<CbFill> {
        self.state().fills.clone()
    }

    pub fn balance(&self, currency: &str) -> Decimal {
        self.state()
            .accounts
            .get(currency)
            .copied()
            .unwrap_or_default()
    }

    pub fn set_price(&self, product: &str, price: Decimal) {
        let mut st = self.state();
        st.prices.insert(product.to_string(), price);
        match_orders(&mut st);
    }

    pub fn set_candles(&self, product: &str, rows: Vec<CandleRow>) {
        self.state().candles.insert(product.to_string(), rows);
    }

    /// The candles of one granularity (`step` seconds) of `product`.
    pub fn set_candles_at(&self, product: &str, step: i64, rows: Vec<CandleRow>) {
        self.state()
            .candles_at
            .insert((product.to_string(), step), rows);
    }

    pub fn set_silent(&self, silent: bool) {
        self.state().silent = silent;
    }

    pub fn drop_ws(&self) {
        self.shared.ws.send(WsCmd::Drop).ok();
    }

    /// Pushes one `candles` update (the documented message, fields replaced).
    #[allow(clippy::too_many_arguments)]
    pub fn push_candle(
        &self,
        product: &str,
        start: i64,
        o: &str,
        h: &str,
        l: &str,
        c: &str,
        v: &str,
    ) {
        let mut m = test_data("coinbase", "ws_candles.json");
        m["events"][0]["type"] = json!("update");
        let x = &mut m["events"][0]["candles"][0];
        x["product_id"] = json!(product);
        x["start"] = json!(start.to_string());
        for (k, val) in [
            ("open", o),
            ("high", h),
            ("low", l),
            ("close", c),
            ("volume", v),
        ] {
            x[k] = json!(val);
        }
        self.shared.ws.send(WsCmd::Text(m.to_string())).ok();
    }

    pub fn push_ticker(&self, product: &str, bid: &str, ask: &str, price: &str) {
        let mut m = test_data("coinbase", "ws_ticker.json");
        let x = &mut m["events"][0]["tickers"][0];
        x["product_id"] = json!(product);
        x["best_bid"] = json!(bid);
        x["best_ask"] = json!(ask);
        x["price"] = json!(price);
        self.shared.ws.send(WsCmd::Text(m.to_string())).ok();
    }

    pub async fn wait_subscriptions(&self, n: usize) {
        let st = self.shared.state.clone();
        super::wait_until(10, &format!("{n} websocket subscriptions"), || {
            st.lock().unwrap().subscriptions.len() >= n
        })
        .await;
    }
}

/// Checks a CDP JWT; `uri` is required for REST, absent for the websocket.
fn verify_jwt(key: &VerifyingKey, token: &str, uri: Option<&str>) -> Result<(), String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("not a JWT".into());
    }
    let b64 = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("base64url: {e}"))
    };
    let header: Value = serde_json::from_slice(&b64(parts[0])?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&b64(parts[1])?).map_err(|e| e.to_string())?;
    if header["alg"] != "ES256" || header["kid"] != KEY_NAME || !header["nonce"].is_string() {
        return Err(format!("bad header {header}"));
    }
    if claims["iss"] != "cdp" || claims["sub"] != KEY_NAME {
        return Err(format!("bad issuer/subject {claims}"));
    }
    let (nbf, exp) = (
        claims["nbf"].as_i64().unwrap_or(0),
        claims["exp"].as_i64().unwrap_or(0),
    );
    let now = unix_now() as i64;
    if nbf > now + 5 || exp < now || exp - nbf > 120 {
        return Err(format!("not valid now: nbf {nbf} exp {exp} now {now}"));
    }
    if let Some(u) = uri {
        if claims["uri"] != u {
            return Err(format!("uri claim {} is not {u:?}", claims["uri"]));
        }
    }
    let sig = Signature::from_slice(&b64(parts[2])?).map_err(|e| format!("signature: {e}"))?;
    key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .map_err(|_| "signature does not verify".to_string())
}

fn order_json(o: &CbOrder) -> Value {
    let mut t = test_data("coinbase", "get_order.json")["order"].clone();
    t["order_id"] = json!(o.order_id);
    t["client_order_id"] = json!(o.client_order_id);
    t["product_id"] = json!(o.product_id);
    t["side"] = json!(o.side);
    t["order_configuration"] = json!({ o.configuration.clone(): o.config });
    t["status"] = json!(o.status);
    t["created_time"] = json!(rfc3339(o.created));
    t["filled_size"] = json!(o.filled_size.to_string());
    t["filled_value"] = json!(o.filled_value.to_string());
    t["total_fees"] = json!(o.fees.to_string());
    t["fee"] = json!(o.fees.to_string());
    t["settled"] = json!(o.status == "FILLED");
    t["pending_cancel"] = json!(false);
    t["number_of_fills"] = json!(if o.filled_size.is_zero() { "0" } else { "1" });
    let avg = if o.filled_size.is_zero() {
        Decimal::ZERO
    } else {
        (o.filled_value / o.filled_size).round_dp(8)
    };
    t["average_filled_price"] = json!(avg.to_string());
    t["completion_percentage"] = json!(if o.status == "FILLED" { "100" } else { "0" });
    t["order_type"] = json!(match o.configuration.as_str() {
        "market_market_ioc" => "MARKET",
        "limit_limit_gtc" => "LIMIT",
        _ => "STOP_LIMIT",
    });
    t
}

fn fill_json(f: &CbFill) -> Value {
    let mut t = test_data("coinbase", "list_fills.json")["fills"][0].clone();
    t["entry_id"] = json!(format!("entry-{}", f.trade_id));
    t["trade_id"] = json!(f.trade_id);
    t["order_id"] = json!(f.order_id);
    t["trade_time"] = json!(rfc3339(f.time));
    t["sequence_timestamp"] = json!(rfc3339(f.time));
    t["price"] = json!(f.price.to_string());
    t["size"] = json!(f.size.to_string());
    t["commission"] = json!(f.commission.to_string());
    t["product_id"] = json!(f.product_id);
    t["side"] = json!(f.side);
    t
}

fn cfg_dec(o: &CbOrder, k: &str) -> Decimal {
    d(o.config[k].as_str().unwrap_or("0"))
}

fn match_orders(st: &mut CbState) {
    for i in 0..st.orders.len() {
        if st.orders[i].status != "OPEN" {
            continue;
        }
        let o = st.orders[i].clone();
        let p = st.prices[&o.product_id];
        let buy = o.side == "BUY";
        let limit_crossed = |limit: Decimal| (buy && p <= limit) || (!buy && p >= limit);
        let at = match o.configuration.as_str() {
            "market_market_ioc" => Some(p),
            "limit_limit_gtc" => {
                let l = cfg_dec(&o, "limit_price");
                limit_crossed(l).then_some(l)
            }
            _ => {
                let stop = cfg_dec(&o, "stop_price");
                let down = o.config["stop_direction"] == "STOP_DIRECTION_STOP_DOWN";
                if o.triggered || (down && p <= stop) || (!down && p >= stop) {
                    st.orders[i].triggered = true;
                    limit_crossed(cfg_dec(&o, "limit_price")).then_some(p)
                } else {
                    None
                }
            }
        };
        let Some(price) = at else { continue };
        let (base, quote) = o.product_id.split_once('-').unwrap();
        let size = o.base_size - o.filled_size;
        let value = size * price;
        let fee = (value * Decimal::from(st.fee_bps) / Decimal::from(10_000)).round_dp(8);
        let b = st.accounts.get(base).copied().unwrap_or_default();
        let q = st.accounts.get(quote).copied().unwrap_or_default();
        if (buy && q < value + fee) || (!buy && b < size) {
            st.orders[i].status = if o.configuration == "market_market_ioc" {
                "FAILED"
            } else {
                "CANCELLED"
            }
            .into();
            continue;
        }
        if buy {
            st.accounts.insert(base.into(), b + size);
            st.accounts.insert(quote.into(), q - value - fee);
        } else {
            st.accounts.insert(base.into(), b - size);
            st.accounts.insert(quote.into(), q + value - fee);
        }
        st.next_id += 1;
        let trade_id = format!("trade-{:04}", st.next_id);
        st.fills.push(CbFill {
            trade_id,
            order_id: o.order_id.clone(),
            product_id: o.product_id.clone(),
            side: o.side.clone(),
            price,
            size,
            commission: fee,
            time: unix_now(),
        });
        let o = &mut st.orders[i];
        o.filled_size += size;
        o.filled_value += value;
        o.fees += fee;
        o.status = "FILLED".into();
    }
}

fn bad(code: &str, message: &str) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({ "error": code, "message": message, "error_details": message }),
    )
}

fn create_order(st: &mut CbState, body: &Value) -> (StatusCode, Value) {
    let client_order_id = body["client_order_id"].as_str().unwrap_or("");
    let product = body["product_id"].as_str().unwrap_or("");
    let side = body["side"].as_str().unwrap_or("");
    if client_order_id.is_empty()
        || !st.prices.contains_key(product)
        || !["BUY", "SELL"].contains(&side)
    {
        return bad(
            "INVALID_ARGUMENT",
            "client_order_id, product_id and side are required",
        );
    }
    let Some((configuration, config)) = body["order_configuration"]
        .as_object()
        .and_then(|m| m.iter().next())
    else {
        return bad("INVALID_ARGUMENT", "order_configuration is required");
    };
    if ![
        "market_market_ioc",
        "limit_limit_gtc",
        "stop_limit_stop_limit_gtc",
    ]
    .contains(&configuration.as_str())
    {
        return bad("INVALID_ARGUMENT", "unsupported order configuration");
    }
    // The documented behaviour: a client_order_id already used returns that order, no new one.
    if let Some(o) = st
        .orders
        .iter()
        .find(|o| o.client_order_id == client_order_id)
    {
        let mut r = test_data("coinbase", "create_order.json");
        r["success_response"] = json!({"order_id": o.order_id, "product_id": o.product_id,
            "side": o.side, "client_order_id": o.client_order_id});
        r["order_configuration"] = json!({ o.configuration.clone(): o.config });
        return (StatusCode::OK, r);
    }
    let Some(base_size) = config["base_size"]
        .as_str()
        .and_then(|s| s.parse::<Decimal>().ok())
        .filter(|s| *s > Decimal::ZERO)
    else {
        return bad("INVALID_ARGUMENT", "base_size must be a positive decimal");
    };
    let (base, quote) = product.split_once('-').unwrap();
    if configuration == "market_market_ioc" {
        let p = st.prices[product];
        let enough = if side == "BUY" {
            st.accounts.get(quote).copied().unwrap_or_default() >= base_size * p * d("1.01")
        } else {
            st.accounts.get(base).copied().unwrap_or_default() >= base_size
        };
        if !enough {
            let mut r = test_data("coinbase", "create_order_error.json");
            r["order_configuration"] = json!({ configuration.clone(): config });
            return (StatusCode::OK, r);
        }
    }
    st.next_id += 1;
    let order_id = format!(
        "{:08x}-0000-4000-8000-{:012x}",
        st.next_id,
        st.next_id * 977
    );
    st.orders.push(CbOrder {
        order_id: order_id.clone(),
        client_order_id: client_order_id.to_string(),
        product_id: product.to_string(),
        side: side.to_string(),
        configuration: configuration.clone(),
        config: config.clone(),
        base_size,
        status: "OPEN".into(),
        triggered: false,
        filled_size: Decimal::ZERO,
        filled_value: Decimal::ZERO,
        fees: Decimal::ZERO,
        created: unix_now(),
    });
    match_orders(st);
    let mut r = test_data("coinbase", "create_order.json");
    r["success_response"] = json!({"order_id": order_id, "product_id": product, "side": side,
        "client_order_id": client_order_id});
    r["order_configuration"] = json!({ configuration.clone(): config });
    (StatusCode::OK, r)
}

fn page<T: Clone>(items: &[T], q: &HashMap<String, String>, max: usize) -> (Vec<T>, bool, String) {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(max)
        .clamp(1, max);
    let start: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let out: Vec<T> = items.iter().skip(start).take(limit).cloned().collect();
    let next = start + out.len();
    let more = next < items.len();
    (
        out,
        more,
        if more {
            next.to_string()
        } else {
            String::new()
        },
    )
}

fn apply(
    st: &mut CbState,
    method: &Method,
    path: &str,
    q: &HashMap<String, String>,
    body: &Value,
) -> (StatusCode, Value) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["orders"]) => create_order(st, body),
        ("POST", ["orders", "batch_cancel"]) => {
            let mut results = vec![];
            for id in body["order_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let found = st
                    .orders
                    .iter_mut()
                    .find(|o| o.order_id == id && o.status == "OPEN");
                let mut r = test_data("coinbase", "batch_cancel.json")["results"][0].clone();
                r["order_id"] = json!(id);
                match found {
                    Some(o) => o.status = "CANCELLED".into(),
                    None => {
                        r["success"] = json!(false);
                        r["failure_reason"] = json!("UNKNOWN_CANCEL_ORDER");
                    }
                }
                results.push(r);
            }
            (StatusCode::OK, json!({ "results": results }))
        }
        ("GET", ["orders", "historical", "batch"]) => {
            let status = q.get("order_status");
            let mut list: Vec<Value> = st
                .orders
                .iter()
                .rev()
                .filter(|o| status.is_none_or(|s| &o.status == s))
                .map(order_json)
                .collect();
            list.retain(|o| q.get("product_ids").is_none_or(|p| o["product_id"] == **p));
            let (orders, has_next, cursor) = page(&list, q, 1000);
            let mut r = test_data("coinbase", "list_orders.json");
            r["orders"] = json!(orders);
            r["has_next"] = json!(has_next);
            r["cursor"] = json!(cursor);
            (StatusCode::OK, r)
        }
        ("GET", ["orders", "historical", "fills"]) => {
            let since = q
                .get("start_sequence_timestamp")
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp_micros() as f64 / 1e6)
                .unwrap_or(0.0);
            let list: Vec<Value> = st
                .fills
                .iter()
                .filter(|f| f.time >= since)
                .rev()
                .map(fill_json)
                .collect();
            let (fills, _, cursor) = page(&list, q, 100);
            (StatusCode::OK, json!({ "fills": fills, "cursor": cursor }))
        }
        ("GET", ["orders", "historical", id]) => match st.orders.iter().find(|o| o.order_id == *id)
        {
            Some(o) => (StatusCode::OK, json!({ "order": order_json(o) })),
            None => (
                StatusCode::NOT_FOUND,
                json!({"error": "NOT_FOUND", "message": "order not found"}),
            ),
        },
        // documented shape of GET /api/v3/brokerage/transaction_summary
        ("GET", ["transaction_summary"]) => (
            StatusCode::OK,
            json!({
                "total_volume": 0,
                "total_fees": 0,
                "fee_tier": {
                    "pricing_tier": "Advanced 1",
                    "usd_from": "0",
                    "usd_to": "10000",
                    "taker_fee_rate": (Decimal::from(st.fee_bps) / Decimal::from(10_000)).to_string(),
                    "maker_fee_rate": "0.004"
                },
                "advanced_trade_only_volume": 0,
                "advanced_trade_only_fees": 0
            }),
        ),

        ("GET", ["accounts"]) => {
            let mut template = test_data("coinbase", "accounts.json")["accounts"][0].clone();
            let list: Vec<Value> = st
                .accounts
                .iter()
                .map(|(c, v)| {
                    template["uuid"] = json!(format!("acct-{c}"));
                    template["name"] = json!(format!("{c} Wallet"));
                    template["currency"] = json!(c);
                    template["available_balance"] = json!({"value": v.to_string(), "currency": c});
                    template["hold"] = json!({"value": "0", "currency": c});
                    template.clone()
                })
                .collect();
            let (accounts, has_next, cursor) = page(&list, q, 250);
            let n = accounts.len();
            (
                StatusCode::OK,
                json!({ "accounts": accounts, "has_next": has_next, "cursor": cursor, "size": n }),
            )
        }
        ("GET", ["products", product, "candles"] | ["market", "products", product, "candles"]) => {
            let g = q.get("granularity").map(String::as_str).unwrap_or("");
            let Some(step) = [
                ("ONE_MINUTE", 60),
                ("FIVE_MINUTE", 300),
                ("FIFTEEN_MINUTE", 900),
                ("THIRTY_MINUTE", 1800),
                ("ONE_HOUR", 3600),
                ("TWO_HOUR", 7200),
                ("SIX_HOUR", 21600),
                ("ONE_DAY", 86400),
            ]
            .iter()
            .find(|(n, _)| *n == g)
            .map(|(_, s)| *s) else {
                return bad("INVALID_ARGUMENT", "granularity");
            };
            let start: i64 = q.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
            let end: i64 = q
                .get("end")
                .and_then(|s| s.parse().ok())
                .unwrap_or(i64::MAX);
            if (end - start) / step > 350 {
                return bad(
                    "INVALID_ARGUMENT",
                    "number of candles requested should be less than 350",
                );
            }
            let per_step = st.candles_at.keys().any(|(p, _)| p == product);
            let mut rows: Vec<Value> = if per_step {
                st.candles_at.get(&(product.to_string(), step))
            } else {
                st.candles.get(*product)
            }
            .into_iter()
            .flatten()
            .filter(|c| c.0 >= start && c.0 < end)
            .map(|c| {
                json!({"start": c.0.to_string(), "low": c.3.to_string(), "high": c.2.to_string(),
                    "open": c.1.to_string(), "close": c.4.to_string(), "volume": c.5.to_string()})
            })
            .collect();
            rows.reverse(); // newest first, as Coinbase sends them
            (StatusCode::OK, json!({ "candles": rows }))
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"error": "NOT_FOUND", "message": format!("{method} {path}")}),
        ),
    }
}

async fn rest(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let full = uri.path().to_string();
    let Some(path) = full.strip_prefix(API) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let endpoint = format!("{method} {path}");
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let token = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let fault = {
        let mut st = s.state.lock().unwrap();
        st.requests.push((endpoint.clone(), Instant::now()));
        // the public market endpoints (`/market/...`) need no key
        let public = path.starts_with("/market/");
        if public && !token.is_empty() {
            st.unauthorized
                .push((endpoint, "a token sent to a public endpoint".into()));
            return (StatusCode::BAD_REQUEST, "public endpoints take no token\n").into_response();
        }
        let checked = if public {
            Ok(())
        } else {
            verify_jwt(&s.key, token, Some(&format!("{method} {host}{full}")))
        };
        if let Err(why) = checked {
            st.unauthorized.push((endpoint, why));
            return (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
        }
        st.faults.take(&endpoint)
    };
    match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                json!({"error": "RATE_LIMIT_EXCEEDED", "message": "Too many requests"}).to_string(),
            )
                .into_response()
        }
        Some(Fault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        Some(Fault::Hang) => hang().await,
        _ => {}
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "INVALID_ARGUMENT", "message": "body is not JSON"}).to_string(),
                )
                    .into_response()
            }
        }
    };
    let (status, answer) = {
        let mut st = s.state.lock().unwrap();
        apply(&mut st, &method, path, &q, &body)
    };
    match fault {
        Some(Fault::ServerErrorAfterApply) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        Some(Fault::HangAfterApply) => hang().await,
        Some(Fault::DropAfterApply) => drop_connection(),
        _ => (
            status,
            [("content-type", "application/json")],
            answer.to_string(),
        )
            .into_response(),
    }
}

async fn ws_upgrade(State(s): State<Shared>, up: WebSocketUpgrade) -> Response {
    up.on_upgrade(move |socket| ws_session(s, socket))
}

async fn ws_session(s: Shared, mut socket: WebSocket) {
    let mut rx = s.ws.subscribe();
    s.state.lock().unwrap().ws_connections += 1;
    let heartbeat = test_data("coinbase", "ws_heartbeats.json").to_string();
    let mut heartbeats = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            m = socket.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                    if v["type"] != "subscribe" {
                        continue;
                    }
                    if let Some(tok) = v["jwt"].as_str() {
                        if let Err(why) = verify_jwt(&s.key, tok, None) {
                            let e = json!({"type": "error", "message": format!("authentication failure: {why}")});
                            socket.send(Message::text(e.to_string())).await.ok();
                            return;
                        }
                    }
                    let channel = v["channel"].as_str().unwrap_or("").to_string();
                    heartbeats |= channel == "heartbeats";
                    s.state.lock().unwrap().subscriptions.push(v.clone());
                    let mut ack = test_data("coinbase", "ws_subscriptions.json");
                    ack["events"][0]["subscriptions"] = json!({ channel: v["product_ids"] });
                    if socket.send(Message::text(ack.to_string())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            c = rx.recv() => match c {
                Ok(WsCmd::Text(t)) => {
                    if socket.send(Message::text(t)).await.is_err() {
                        return;
                    }
                }
                Ok(WsCmd::Drop) => return,
                Err(_) => {}
            },
            _ = tick.tick() => {
                let silent = s.state.lock().unwrap().silent;
                if heartbeats && !silent && socket.send(Message::text(heartbeat.clone())).await.is_err() {
                    return;
                }
            }
        }
    }
}
