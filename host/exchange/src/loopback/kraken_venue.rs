//! A stateful loopback Kraken (REST `/0/public/*`, `/0/private/*`, websocket v2 at `/v2`) on
//! 127.0.0.1:0. It verifies `API-Key`/`API-Sign` and the nonce of every private call exactly as
//! Kraken documents, answers with Kraken's envelope and error strings, keeps balances, orders
//! (by txid, `userref` and `cl_ord_id`) and trades, fills orders against a price the test sets,
//! injects faults, and streams the ohlc/ticker messages the test pushes.

use super::{drop_connection, hang, test_data, unix_now, Fault, Faults};
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha512};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

pub const API_KEY: &str = "loopback-kraken-public-key";
/// The private key of Kraken's published signing example.
pub const API_SECRET: &str =
    "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";

/// Pairs the venue lists: REST name, websocket name, legacy result key, base and quote assets.
const PAIRS: &[(&str, &str, &str, &str, &str)] = &[
    ("XBTUSD", "BTC/USD", "XXBTZUSD", "XXBT", "ZUSD"),
    ("ETHUSD", "ETH/USD", "XETHZUSD", "XETH", "ZUSD"),
];

fn pair_info(
    p: &str,
) -> Option<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
)> {
    PAIRS
        .iter()
        .copied()
        .find(|(rest, ws, key, ..)| *rest == p || *ws == p || *key == p)
}

#[derive(Debug, Clone, PartialEq)]
pub struct VOrder {
    pub txid: String,
    pub cl_ord_id: Option<String>,
    pub userref: i64,
    pub pair: String,
    pub side: String,
    pub ordertype: String,
    pub price: Decimal,
    pub vol: Decimal,
    pub vol_exec: Decimal,
    pub cost: Decimal,
    pub fee: Decimal,
    pub status: String,
    pub opentm: f64,
    pub closetm: f64,
    pub reason: Option<String>,
    pub trades: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VTrade {
    pub id: String,
    pub ordertxid: String,
    pub pair: String,
    pub side: String,
    pub ordertype: String,
    pub price: Decimal,
    pub vol: Decimal,
    pub cost: Decimal,
    pub fee: Decimal,
    pub time: f64,
}

#[derive(Debug)]
pub struct VenueState {
    pub balances: BTreeMap<String, Decimal>,
    pub orders: Vec<VOrder>,
    pub trades: Vec<VTrade>,
    pub prices: HashMap<String, Decimal>,
    /// OHLC rows per legacy pair key, as Kraken sends them.
    pub ohlc: HashMap<String, Vec<Value>>,
    /// OHLC rows per (legacy pair key, interval in minutes), set by the test
    /// ([`KrakenVenue::set_ohlc`]); a pair with any entry here serves only
    /// these (other intervals are empty), else `ohlc` for every interval.
    pub ohlc_at: HashMap<(String, u32), Vec<Value>>,
    pub fee_bps: u32,
    pub faults: Faults,
    /// Every REST request: (endpoint, arrival).
    pub requests: Vec<(String, Instant)>,
    /// Private requests refused: (endpoint, Kraken error).
    pub refused: Vec<(String, String)>,
    /// Websocket subscribe requests received, as sent.
    pub subscriptions: Vec<Value>,
    pub ws_connections: usize,
    /// No heartbeats while set (a stale feed).
    pub silent: bool,
    /// Fractions the next filled order is executed in, one trade each (a
    /// partial fill in several trades); empty: one trade.
    pub split_next: Vec<Decimal>,
    last_nonce: u64,
    next_id: u64,
}

#[derive(Debug, Clone)]
enum WsCmd {
    Text(String),
    Drop,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<VenueState>>,
    ws: broadcast::Sender<WsCmd>,
    secret: Arc<Vec<u8>>,
}

/// A running loopback Kraken; stops when dropped.
pub struct KrakenVenue {
    pub rest_url: String,
    pub ws_url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KrakenVenue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn err(e: &str) -> Value {
    json!({ "error": [e] })
}

fn ok(result: Value) -> Value {
    json!({ "error": [], "result": result })
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

impl KrakenVenue {
    /// Starts on 127.0.0.1 with the documented example balances and candles, BTC at 30000.
    pub async fn start() -> KrakenVenue {
        let mut balances = BTreeMap::new();
        for (k, v) in test_data("kraken", "balance.json")["result"]
            .as_object()
            .unwrap()
        {
            balances.insert(k.clone(), d(v.as_str().unwrap()));
        }
        let ohlc_doc = test_data("kraken", "ohlc.json");
        let mut ohlc = HashMap::new();
        ohlc.insert(
            "XXBTZUSD".to_string(),
            ohlc_doc["result"]["XXBTZUSD"].as_array().unwrap().clone(),
        );
        let state = VenueState {
            ohlc_at: HashMap::new(),
            balances,
            orders: vec![],
            trades: vec![],
            prices: [
                ("XBTUSD".to_string(), d("30000")),
                ("ETHUSD".to_string(), d("2000")),
            ]
            .into_iter()
            .collect(),
            ohlc,
            fee_bps: 26,
            faults: Faults::default(),
            requests: vec![],
            refused: vec![],
            subscriptions: vec![],
            ws_connections: 0,
            silent: false,
            split_next: Vec::new(),
            last_nonce: 0,
            next_id: 0,
        };
        let shared = Shared {
            state: Arc::new(Mutex::new(state)),
            ws: broadcast::channel(1024).0,
            secret: Arc::new(
                base64::engine::general_purpose::STANDARD
                    .decode(API_SECRET)
                    .unwrap(),
            ),
        };
        let app = Router::new()
            .route("/0/public/{method}", get(public))
            .route("/0/private/{method}", post(private))
            .route("/v2", get(ws_upgrade))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        KrakenVenue {
            rest_url: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v2"),
            shared,
            task,
        }
    }

    /// An adapter config pointing here: real signing with [`API_KEY`]/[`API_SECRET`], a short
    /// timeout and quick backoff.
    pub fn config(&self) -> crate::kraken::KrakenConfig {
        crate::kraken::KrakenConfig {
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
            credentials: Some(crate::kraken::KrakenCredentials::new(API_KEY, API_SECRET).unwrap()),
            ..Default::default()
        }
    }

    pub fn state(&self) -> MutexGuard<'_, VenueState> {
        self.shared.state.lock().unwrap()
    }

    pub fn inject(&self, endpoint: &str, fault: Fault, times: usize) {
        self.state().faults.push(endpoint, fault, times);
    }

    /// Requests that reached `endpoint` (e.g. `AddOrder`), with their arrival times.
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

    pub fn orders(&self) -> Vec<VOrder> {
        self.state().orders.clone()
    }

    pub fn trades(&self) -> Vec<VTrade> {
        self.state().trades.clone()
    }

    pub fn balance(&self, asset: &str) -> Decimal {
        self.state()
            .balances
            .get(asset)
            .copied()
            .unwrap_or_default()
    }

    /// Moves the market: resting orders that the new price crosses fill.
    pub fn set_price(&self, pair: &str, price: Decimal) {
        let mut st = self.state();
        let (rest, ..) = pair_info(pair).expect("known pair");
        st.prices.insert(rest.to_string(), price);
        match_orders(&mut st);
    }

    pub fn set_silent(&self, silent: bool) {
        self.state().silent = silent;
    }

    /// Closes every websocket connection without a close frame.
    pub fn drop_ws(&self) {
        self.shared.ws.send(WsCmd::Drop).ok();
    }

    /// Pushes one `ohlc` update (the documented message, fields replaced) to every client.
    #[allow(clippy::too_many_arguments)]
    pub fn push_ohlc(
        &self,
        symbol: &str,
        interval: u32,
        begin: &str,
        o: f64,
        h: f64,
        l: f64,
        c: f64,
        v: f64,
    ) {
        let mut m = test_data("kraken", "ws_ohlc_update.json");
        let x = &mut m["data"][0];
        x["symbol"] = json!(symbol);
        x["interval"] = json!(interval);
        x["interval_begin"] = json!(begin);
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

    /// Sets the REST `OHLC` history of `pair` at `interval` minutes, as
    /// Kraken sends it: `[time, open, high, low, close, vwap, volume, count]`.
    pub fn set_ohlc(&self, pair: &str, interval: u32, candles: &[(i64, f64, f64, f64, f64, f64)]) {
        let (_, _, key, ..) = pair_info(pair).expect("a pair the venue lists");
        let rows = candles
            .iter()
            .map(|&(t, o, h, l, c, v)| {
                json!([
                    t,
                    o.to_string(),
                    h.to_string(),
                    l.to_string(),
                    c.to_string(),
                    c.to_string(),
                    v.to_string(),
                    1
                ])
            })
            .collect();
        self.state()
            .ohlc_at
            .insert((key.to_string(), interval), rows);
    }

    /// Pushes one `ticker` snapshot to every client.
    pub fn push_ticker(&self, symbol: &str, bid: f64, ask: f64, last: f64) {
        let mut m = test_data("kraken", "ws_ticker_snapshot.json");
        let x = &mut m["data"][0];
        x["symbol"] = json!(symbol);
        x["bid"] = json!(bid);
        x["ask"] = json!(ask);
        x["last"] = json!(last);
        self.shared.ws.send(WsCmd::Text(m.to_string())).ok();
    }

    /// Waits until `n` subscribe requests have arrived in total.
    pub async fn wait_subscriptions(&self, n: usize) {
        let st = self.shared.state.clone();
        super::wait_until(10, &format!("{n} websocket subscriptions"), || {
            st.lock().unwrap().subscriptions.len() >= n
        })
        .await;
    }
}

fn order_json(o: &VOrder) -> Value {
    let mut t =
        test_data("kraken", "open_orders.json")["result"]["open"]["OQCLML-BW3P3-BUCMWZ"].clone();
    t["userref"] = json!(o.userref);
    t["cl_ord_id"] = json!(o.cl_ord_id.clone().unwrap_or_default());
    t["status"] = json!(o.status);
    t["opentm"] = json!(o.opentm);
    t["descr"]["pair"] = json!(o.pair);
    t["descr"]["type"] = json!(o.side);
    t["descr"]["ordertype"] = json!(o.ordertype);
    t["descr"]["price"] = json!(o.price.to_string());
    t["descr"]["leverage"] = json!("none");
    t["descr"]["order"] = json!(format!(
        "{} {} {} @ {} {}",
        o.side,
        o.vol.round_dp(8),
        o.pair,
        o.ordertype,
        o.price
    ));
    t["vol"] = json!(o.vol.to_string());
    t["vol_exec"] = json!(o.vol_exec.to_string());
    t["cost"] = json!(o.cost.to_string());
    t["fee"] = json!(o.fee.to_string());
    let avg = if o.vol_exec.is_zero() {
        Decimal::ZERO
    } else {
        (o.cost / o.vol_exec).round_dp(5)
    };
    t["price"] = json!(avg.to_string());
    t["trades"] = json!(o.trades);
    if o.status != "open" && o.status != "pending" {
        t["closetm"] = json!(o.closetm);
        t["reason"] = json!(o.reason);
    }
    t
}

fn trade_json(t: &VTrade) -> Value {
    let mut j = test_data("kraken", "trades_history.json")["result"]["trades"]
        ["THVRQM-33VKH-UCI7BS"]
        .clone();
    let (_, _, key, ..) = pair_info(&t.pair).unwrap();
    j["ordertxid"] = json!(t.ordertxid);
    j["pair"] = json!(key);
    j["time"] = json!(t.time);
    j["type"] = json!(t.side);
    j["ordertype"] = json!(t.ordertype);
    j["price"] = json!(t.price.to_string());
    j["cost"] = json!(t.cost.to_string());
    j["fee"] = json!(t.fee.to_string());
    j["vol"] = json!(t.vol.to_string());
    j
}

/// Fills every open order the current prices allow.
fn match_orders(st: &mut VenueState) {
    for i in 0..st.orders.len() {
        if st.orders[i].status != "open" {
            continue;
        }
        let o = st.orders[i].clone();
        let p = st.prices[&o.pair];
        let buy = o.side == "buy";
        let at = match o.ordertype.as_str() {
            "market" => Some(p),
            "limit" if (buy && p <= o.price) || (!buy && p >= o.price) => Some(o.price),
            "stop-loss" if (buy && p >= o.price) || (!buy && p <= o.price) => Some(p),
            "take-profit" if (buy && p <= o.price) || (!buy && p >= o.price) => Some(p),
            _ => None,
        };
        let Some(price) = at else { continue };
        let (_, _, _, base, quote) = pair_info(&o.pair).unwrap();
        let vol = o.vol - o.vol_exec;
        let cost = (vol * price).round_dp(5);
        let fee = (cost * Decimal::from(st.fee_bps) / Decimal::from(10_000)).round_dp(4);
        let b = st.balances.get(base).copied().unwrap_or_default();
        let q = st.balances.get(quote).copied().unwrap_or_default();
        if (buy && q < cost + fee) || (!buy && b < vol) {
            let o = &mut st.orders[i];
            o.status = "canceled".into();
            o.reason = Some("Insufficient funds".into());
            o.closetm = unix_now();
            continue;
        }
        if buy {
            st.balances.insert(base.into(), b + vol);
            st.balances.insert(quote.into(), q - cost - fee);
        } else {
            st.balances.insert(base.into(), b - vol);
            st.balances.insert(quote.into(), q + cost - fee);
        }
        let now = unix_now();
        let fractions = std::mem::take(&mut st.split_next);
        let mut parts: Vec<Decimal> = fractions.iter().map(|f| (vol * f).round_dp(8)).collect();
        let rest = vol - parts.iter().copied().sum::<Decimal>();
        match parts.last_mut() {
            Some(last) => *last += rest,
            None => parts.push(vol),
        }
        let mut ids = Vec::new();
        let (mut cost_left, mut fee_left) = (cost, fee);
        for (k, part) in parts.iter().enumerate() {
            let last = k + 1 == parts.len();
            let c = if last {
                cost_left
            } else {
                (part * price).round_dp(5)
            };
            let f = if last {
                fee_left
            } else {
                (c * Decimal::from(st.fee_bps) / Decimal::from(10_000)).round_dp(4)
            };
            cost_left -= c;
            fee_left -= f;
            st.next_id += 1;
            let id = format!("T{:05}-LOOP-{:06}", st.next_id, st.next_id * 7);
            st.trades.push(VTrade {
                id: id.clone(),
                ordertxid: o.txid.clone(),
                pair: o.pair.clone(),
                side: o.side.clone(),
                ordertype: o.ordertype.clone(),
                price,
                vol: *part,
                cost: c,
                fee: f,
                time: now,
            });
            ids.push(id);
        }
        let o = &mut st.orders[i];
        o.vol_exec += vol;
        o.cost += cost;
        o.fee += fee;
        o.status = "closed".into();
        o.closetm = now;
        o.trades.extend(ids);
    }
}

fn param<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

fn matches_filter(o: &VOrder, form: &[(String, String)]) -> bool {
    if let Some(c) = param(form, "cl_ord_id") {
        if o.cl_ord_id.as_deref() != Some(c) {
            return false;
        }
    }
    if let Some(u) = param(form, "userref") {
        if u.parse::<i64>().ok() != Some(o.userref) {
            return false;
        }
    }
    true
}

fn add_order(st: &mut VenueState, form: &[(String, String)]) -> Result<Value, &'static str> {
    let pair = param(form, "pair").ok_or("EGeneral:Invalid arguments")?;
    let (rest, ..) = pair_info(pair).ok_or("EQuery:Unknown asset pair")?;
    let side = param(form, "type")
        .filter(|s| *s == "buy" || *s == "sell")
        .ok_or("EGeneral:Invalid arguments:type")?;
    let ordertype = param(form, "ordertype").ok_or("EGeneral:Invalid arguments:ordertype")?;
    if !["market", "limit", "stop-loss", "take-profit"].contains(&ordertype) {
        return Err("EGeneral:Invalid arguments:ordertype");
    }
    let vol: Decimal = param(form, "volume")
        .and_then(|v| v.parse().ok())
        .filter(|v: &Decimal| *v > Decimal::ZERO)
        .ok_or("EGeneral:Invalid arguments:volume")?;
    let price: Decimal = match ordertype {
        "market" => Decimal::ZERO,
        _ => param(form, "price")
            .and_then(|v| v.parse().ok())
            .filter(|v: &Decimal| *v > Decimal::ZERO)
            .ok_or("EGeneral:Invalid arguments:price")?,
    };
    let cl_ord_id = param(form, "cl_ord_id").map(String::from);
    if let Some(c) = &cl_ord_id {
        if st.orders.iter().any(|o| o.cl_ord_id.as_ref() == Some(c)) {
            return Err("EOrder:Duplicate order");
        }
    }
    let userref = param(form, "userref")
        .map(|u| u.parse::<i64>())
        .transpose()
        .map_err(|_| "EGeneral:Invalid arguments:userref")?
        .unwrap_or(0);
    if ordertype == "market" {
        let (_, _, _, base, quote) = pair_info(rest).unwrap();
        let p = st.prices[rest];
        let enough = if side == "buy" {
            st.balances.get(quote).copied().unwrap_or_default() >= vol * p * d("1.01")
        } else {
            st.balances.get(base).copied().unwrap_or_default() >= vol
        };
        if !enough {
            return Err("EOrder:Insufficient funds");
        }
    }
    st.next_id += 1;
    let txid = format!("O{:05}-LOOP-{:06}", st.next_id, st.next_id * 13);
    st.orders.push(VOrder {
        txid: txid.clone(),
        cl_ord_id,
        userref,
        pair: rest.to_string(),
        side: side.to_string(),
        ordertype: ordertype.to_string(),
        price,
        vol,
        vol_exec: Decimal::ZERO,
        cost: Decimal::ZERO,
        fee: Decimal::ZERO,
        status: "open".into(),
        opentm: unix_now(),
        closetm: 0.0,
        reason: None,
        trades: vec![],
    });
    match_orders(st);
    let mut r = test_data("kraken", "add_order.json")["result"].clone();
    r["descr"]["order"] = json!(format!(
        "{side} {} {rest} @ {ordertype} {price}",
        vol.round_dp(8)
    ));
    r["txid"] = json!([txid]);
    Ok(r)
}

fn apply(
    st: &mut VenueState,
    method: &str,
    form: &[(String, String)],
) -> Result<Value, &'static str> {
    match method {
        "AddOrder" => add_order(st, form),
        "CancelOrder" => {
            let id = param(form, "txid").ok_or("EGeneral:Invalid arguments")?;
            let mut count = 0;
            for o in st.orders.iter_mut().filter(|o| o.status == "open") {
                if o.txid == id
                    || o.cl_ord_id.as_deref() == Some(id)
                    || id.parse::<i64>().ok() == Some(o.userref)
                {
                    o.status = "canceled".into();
                    o.reason = Some("User requested".into());
                    o.closetm = unix_now();
                    count += 1;
                }
            }
            if count == 0 {
                return Err("EOrder:Unknown order");
            }
            Ok(json!({ "count": count }))
        }
        "OpenOrders" | "ClosedOrders" => {
            let open = method == "OpenOrders";
            let mut m = serde_json::Map::new();
            for o in st
                .orders
                .iter()
                .filter(|o| (o.status == "open") == open && matches_filter(o, form))
            {
                m.insert(o.txid.clone(), order_json(o));
            }
            Ok(if open {
                json!({ "open": m })
            } else {
                let n = m.len();
                json!({ "closed": m, "count": n })
            })
        }
        "QueryOrders" => {
            let ids = param(form, "txid").ok_or("EGeneral:Invalid arguments")?;
            let mut m = serde_json::Map::new();
            for id in ids.split(',') {
                let o = st
                    .orders
                    .iter()
                    .find(|o| o.txid == id)
                    .ok_or("EOrder:Invalid order")?;
                m.insert(id.to_string(), order_json(o));
            }
            Ok(Value::Object(m))
        }
        "TradesHistory" => {
            let start: f64 = param(form, "start")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0);
            let ofs: usize = param(form, "ofs").and_then(|s| s.parse().ok()).unwrap_or(0);
            let mut ts: Vec<&VTrade> = st.trades.iter().filter(|t| t.time > start).collect();
            ts.reverse(); // newest first, as Kraken pages them
            let count = ts.len();
            let mut m = serde_json::Map::new();
            for t in ts.into_iter().skip(ofs).take(50) {
                m.insert(t.id.clone(), trade_json(t));
            }
            Ok(json!({ "trades": m, "count": count }))
        }
        // documented shape: fees per pair in percent
        "TradeVolume" => {
            let fee = (Decimal::from(st.fee_bps) / Decimal::ONE_HUNDRED).to_string();
            let pair = param(form, "pair")
                .and_then(pair_info)
                .map_or("XXBTZUSD", |p| p.2);
            Ok(json!({
                "currency": "ZUSD",
                "volume": "0.0000",
                "fees": { pair: { "fee": fee, "minfee": "0.1000", "maxfee": "0.2600", "nextfee": "0.2400", "nextvolume": "50000.0000", "tiervolume": "0.0000" } },
                "fees_maker": { pair: { "fee": "0.1600", "minfee": "0.0000", "maxfee": "0.1600", "nextfee": "0.1400", "nextvolume": "50000.0000", "tiervolume": "0.0000" } }
            }))
        }
        "Balance" => Ok(Value::Object(
            st.balances
                .iter()
                .map(|(k, v)| (k.clone(), json!(v.to_string())))
                .collect(),
        )),
        _ => Err("EGeneral:Unknown method"),
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Answers a fault that strikes before anything is applied; `None` lets the request through.
async fn fault_before(f: Option<Fault>) -> Option<Response> {
    match f? {
        Fault::RateLimited { retry_after_secs } => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                err("EAPI:Rate limit exceeded").to_string(),
            )
                .into_response(),
        ),
        Fault::ServerError => {
            Some((StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response())
        }
        Fault::Hang => hang().await,
        _ => None,
    }
}

async fn fault_after(f: Option<Fault>, resp: Response) -> Response {
    match f {
        Some(Fault::ServerErrorAfterApply) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        Some(Fault::HangAfterApply) => hang().await,
        Some(Fault::DropAfterApply) => drop_connection(),
        _ => resp,
    }
}

async fn public(
    State(s): State<Shared>,
    Path(method): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let fault = {
        let mut st = s.state.lock().unwrap();
        st.requests.push((method.clone(), Instant::now()));
        st.faults.take(&method)
    };
    if let Some(r) = fault_before(fault).await {
        return r;
    }
    let body = if method == "OHLC" {
        let st = s.state.lock().unwrap();
        match q.get("pair").and_then(|p| pair_info(p)) {
            None => err("EQuery:Unknown asset pair"),
            Some((_, _, key, ..)) => {
                let since: i64 = q.get("since").and_then(|x| x.parse().ok()).unwrap_or(0);
                let interval: u32 = q.get("interval").and_then(|x| x.parse().ok()).unwrap_or(1);
                let set = st.ohlc_at.keys().any(|(k, _)| k == key);
                let rows: Vec<Value> = if set {
                    st.ohlc_at.get(&(key.to_string(), interval))
                } else {
                    st.ohlc.get(key)
                }
                .into_iter()
                .flatten()
                .filter(|r| r[0].as_i64().unwrap() > since)
                .cloned()
                .collect();
                let last = rows
                    .iter()
                    .filter_map(|r| r[0].as_i64())
                    .max()
                    .unwrap_or(since);
                ok(json!({ key: rows, "last": last }))
            }
        }
    } else {
        err("EGeneral:Unknown method")
    };
    fault_after(fault, reply(StatusCode::OK, body)).await
}

async fn private(
    State(s): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).to_string();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    let (fault, refusal) = {
        let mut st = s.state.lock().unwrap();
        st.requests.push((method.clone(), Instant::now()));
        let nonce = param(&form, "nonce").unwrap_or("");
        let path = format!("/0/private/{method}");
        let mut mac = Hmac::<Sha512>::new_from_slice(&s.secret).unwrap();
        mac.update(path.as_bytes());
        mac.update(&Sha256::digest(format!("{nonce}{text}").as_bytes()));
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let refusal = if header("API-Key") != API_KEY {
            Some("EAPI:Invalid key")
        } else if header("API-Sign") != expected {
            Some("EAPI:Invalid signature")
        } else {
            match nonce.parse::<u64>() {
                Ok(n) if n > st.last_nonce => {
                    st.last_nonce = n;
                    None
                }
                _ => Some("EAPI:Invalid nonce"),
            }
        };
        if let Some(r) = refusal {
            st.refused.push((method.clone(), r.to_string()));
            (None, Some(r))
        } else {
            (st.faults.take(&method), None)
        }
    };
    if let Some(r) = refusal {
        return reply(StatusCode::OK, err(r));
    }
    if let Some(r) = fault_before(fault).await {
        return r;
    }
    let body = {
        let mut st = s.state.lock().unwrap();
        match apply(&mut st, &method, &form) {
            Ok(r) => ok(r),
            Err(e) => err(e),
        }
    };
    fault_after(fault, reply(StatusCode::OK, body)).await
}

async fn ws_upgrade(State(s): State<Shared>, up: WebSocketUpgrade) -> Response {
    up.on_upgrade(move |socket| ws_session(s, socket))
}

async fn ws_session(s: Shared, mut socket: WebSocket) {
    let mut rx = s.ws.subscribe();
    s.state.lock().unwrap().ws_connections += 1;
    let status = test_data("kraken", "ws_status.json").to_string();
    if socket.send(Message::text(status)).await.is_err() {
        return;
    }
    let heartbeat = test_data("kraken", "ws_heartbeat.json").to_string();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            m = socket.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                    let mut replies = vec![];
                    match v["method"].as_str() {
                        Some("subscribe") => {
                            for sym in v["params"]["symbol"].as_array().into_iter().flatten() {
                                let mut ack = test_data("kraken", "ws_subscribe_ack.json");
                                ack["result"]["channel"] = v["params"]["channel"].clone();
                                ack["result"]["symbol"] = sym.clone();
                                if v["params"]["interval"].is_null() {
                                    ack["result"].as_object_mut().unwrap().remove("interval");
                                } else {
                                    ack["result"]["interval"] = v["params"]["interval"].clone();
                                }
                                if !v["req_id"].is_null() {
                                    ack["req_id"] = v["req_id"].clone();
                                }
                                replies.push(ack.to_string());
                            }
                            s.state.lock().unwrap().subscriptions.push(v.clone());
                        }
                        Some("ping") => replies.push(json!({"method": "pong", "req_id": v["req_id"]}).to_string()),
                        _ => {}
                    }
                    for r in replies {
                        if socket.send(Message::text(r)).await.is_err() {
                            return;
                        }
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
                if silent {
                    continue;
                }
                if socket.send(Message::text(heartbeat.clone())).await.is_err() {
                    return;
                }
            }
        }
    }
}
