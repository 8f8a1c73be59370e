//! Never-panic properties for every parser of venue input (issue 16): the Kraken and Coinbase REST
//! bodies (balances, OHLC, orders, trades and fills, fees, error envelopes, HTTP statuses), their
//! websocket frames (candles, tickers, heartbeats, subscription answers), pair and product-id
//! mapping, decimals and `Retry-After`. Inputs are arbitrary text and bytes, the documented
//! payloads in `test_data/` with byte edits and truncations, and those payloads with values
//! replaced by hostile JSON (1e308, -0, "NaN", i64::MAX, Decimal::MAX, huge strings, nesting).
//! A failure must come back as the expected typed error, and where a value obviously round-trips
//! (decimals, symbols, candles, balances, order bodies) it must come back unchanged.

use host_exchange::coinbase::http as cb;
use host_exchange::coinbase::websocket::CoinbaseFeed;
use host_exchange::coinbase::{Coinbase, CoinbaseConfig, CoinbaseCredentials};
use host_exchange::kraken::http as kr;
use host_exchange::kraken::websocket::KrakenFeed;
use host_exchange::kraken::{Kraken, KrakenConfig, KrakenCredentials};
use host_exchange::loopback::{coinbase_venue, kraken_venue, test_data};
use host_exchange::{
    dec, parse_dec, retry_after, split_symbol, Candle, ExResult, Exchange, ExchangeError,
    MarketEvent, OrderKind, OrderSpec, RetryPolicy, Side, MAX_RETRY_AFTER,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

const KRAKEN_FILES: &[&str] = &[
    "add_order.json",
    "balance.json",
    "cancel_order.json",
    "closed_orders.json",
    "error_invalid_signature.json",
    "ohlc.json",
    "open_orders.json",
    "trades_history.json",
    "ws_heartbeat.json",
    "ws_ohlc_update.json",
    "ws_status.json",
    "ws_subscribe_ack.json",
    "ws_subscribe_ohlc.json",
    "ws_ticker_snapshot.json",
];

const COINBASE_FILES: &[&str] = &[
    "accounts.json",
    "batch_cancel.json",
    "candles.json",
    "create_order.json",
    "create_order_error.json",
    "get_order.json",
    "list_fills.json",
    "list_orders.json",
    "ws_candles.json",
    "ws_heartbeats.json",
    "ws_subscribe.json",
    "ws_subscriptions.json",
    "ws_ticker.json",
];

/// Kraken's documented payloads, plus the shapes `test_data/` lacks (TradeVolume, a refused
/// subscription).
fn kraken_templates() -> Vec<Value> {
    let mut t: Vec<Value> = KRAKEN_FILES
        .iter()
        .map(|f| test_data("kraken", f))
        .collect();
    t.push(
        json!({"error":[],"result":{"currency":"ZUSD","volume":"0.0000","fees":{"XXBTZUSD":
        {"fee":"0.2600","minfee":"0.1000","maxfee":"0.2600","nextfee":"0.2400",
         "tiervolume":"0.0000","nextvolume":"50000.0000"}}}}),
    );
    t.push(
        json!({"method":"subscribe","success":false,"error":"Currency pair not supported",
        "symbol":"ABC/USD","time_in":"2023-10-04T16:26:30.524394914Z"}),
    );
    t
}

/// Coinbase's documented payloads, plus `transaction_summary` and an error frame.
fn coinbase_templates() -> Vec<Value> {
    let mut t: Vec<Value> = COINBASE_FILES
        .iter()
        .map(|f| test_data("coinbase", f))
        .collect();
    t.push(
        json!({"total_volume":1000,"total_fees":25,"fee_tier":{"pricing_tier":"<$10k",
        "usd_from":"0","usd_to":"10000","taker_fee_rate":"0.006","maker_fee_rate":"0.004"}}),
    );
    t.push(json!({"type":"error","message":"failure to subscribe"}));
    t.push(json!({"error":"NOT_FOUND","message":"order not found"}));
    t
}

/// Boundary and malformed values, as JSON text (so numbers keep their spelling).
const HOSTILE_JSON: &[&str] = &[
    "null",
    "true",
    "0",
    "-0",
    "-0.0",
    "1",
    "-1",
    "0.1",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "5e-324",
    "1e-7",
    "1e28",
    "1e29",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
    "79228162514264337593543950335",
    "[]",
    "{}",
    "[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]",
    "[1,2,3,4,5,6,7,8]",
    "[1688671200,\"1\",\"1\",\"1\",\"1\",\"1\"]",
    "{\"value\":\"1\"}",
    "\"\"",
    "\" \"",
    "\"NaN\"",
    "\"nan\"",
    "\"inf\"",
    "\"-inf\"",
    "\"Infinity\"",
    "\"1e308\"",
    "\"-1e308\"",
    "\"1e-308\"",
    "\"1e999999999999\"",
    "\"1e-999999999999\"",
    "\"1e2147483648\"",
    "\"-0\"",
    "\"+0\"",
    "\"0x10\"",
    "\"1_000\"",
    "\"1.2.3\"",
    "\"--1\"",
    "\"1e\"",
    "\"e5\"",
    "\".\"",
    "\"-\"",
    "\"0.00000000000000000000000000001\"",
    "\"79228162514264337593543950335\"",
    "\"79228162514264337593543950336\"",
    "\"-79228162514264337593543950335\"",
    "\"7922816251426433759354395033.5\"",
    "\"9223372036854775807\"",
    "\"-9223372036854775808\"",
    "\"9223372036854775808\"",
    "\"99999999999999999999999999999999999999999\"",
    "\"2023-10-04T16:25:00.000000000Z\"",
    "\"+262143-12-31T23:59:59Z\"",
    "\"9999-12-31T23:59:59Z\"",
    "\"-9999-01-01T00:00:00Z\"",
    "\"2023-02-30T00:00:00Z\"",
    "\"XXBTZUSD\"",
    "\"XBT€USD\"",
    "\"BTC/USD\"",
    "\"BTC-USD\"",
    "\"éééé\"",
    "\"\\u0000\"",
    "\"buy\"",
    "\"SELL\"",
    "\"open\"",
    "\"closed\"",
    "\"limit\"",
    "\"stop-loss\"",
    "\"take-profit-limit\"",
    "\"iceberg\"",
    "\"FILLED\"",
    "\"OPEN\"",
    "\"STOP_DIRECTION_STOP_DOWN\"",
    "\"ohlc\"",
    "\"ticker\"",
    "\"candles\"",
    "\"subscribe\"",
    "\"EAPI:Rate limit exceeded\"",
    "\"EService:Unavailable\"",
    "\"EAPI:Invalid key\"",
];

fn hostile_values() -> Vec<Value> {
    let mut v: Vec<Value> = HOSTILE_JSON
        .iter()
        .map(|t| serde_json::from_str(t).unwrap_or_else(|e| panic!("{t}: {e}")))
        .collect();
    v.push(Value::String("9".repeat(20_000)));
    v.push(Value::String(format!("0.{}", "1".repeat(5_000))));
    v.push(Value::String("é".repeat(3_000)));
    v.push(nested(200));
    v
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!([v]))
}

/// Object keys the parsers look for, so random objects reach past the first `get`.
const KEYS: &[&str] = &[
    "error",
    "result",
    "open",
    "closed",
    "trades",
    "descr",
    "ordertype",
    "price",
    "status",
    "vol_exec",
    "vol",
    "cl_ord_id",
    "pair",
    "type",
    "ordertxid",
    "fee",
    "time",
    "last",
    "txid",
    "count",
    "fees",
    "channel",
    "data",
    "symbol",
    "bid",
    "ask",
    "interval",
    "interval_begin",
    "high",
    "low",
    "close",
    "volume",
    "method",
    "success",
    "events",
    "candles",
    "tickers",
    "start",
    "product_id",
    "best_bid",
    "best_ask",
    "side",
    "order_configuration",
    "market_market_ioc",
    "limit_limit_gtc",
    "stop_limit_stop_limit_gtc",
    "base_size",
    "limit_price",
    "stop_price",
    "stop_direction",
    "filled_size",
    "average_filled_price",
    "order_id",
    "client_order_id",
    "trade_id",
    "size",
    "commission",
    "trade_time",
    "accounts",
    "currency",
    "available_balance",
    "value",
    "has_next",
    "cursor",
    "results",
    "failure_reason",
    "success_response",
    "error_response",
    "fee_tier",
    "taker_fee_rate",
    "order",
    "orders",
    "fills",
    "message",
    "XXBT",
    "XBT",
];

fn hostile_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(hostile_values()),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        1 => any::<f64>().prop_map(|f| Value::String(f.to_string())),
        1 => (any::<i64>(), any::<i32>()).prop_map(|(m, e)| Value::String(format!("{m}e{e}"))),
        1 => "\\PC{0,24}".prop_map(Value::String),
        1 => "[0-9.eE+-]{0,40}".prop_map(Value::String),
        1 => (1usize..300).prop_map(nested),
    ]
}

fn hostile_json() -> impl Strategy<Value = Value> {
    hostile_leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        3 => prop::sample::select(KEYS).prop_map(String::from),
                        1 => "\\PC{0,8}",
                    ],
                    inner
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// One structural edit of a JSON payload, at a node picked by `Index` among all its nodes.
#[derive(Debug, Clone)]
enum Edit {
    Replace(Index, Value),
    Remove(Index),
    /// The node wrapped in an array (a shape change that keeps the content).
    Wrap(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), hostile_json()).prop_map(|(i, v)| Edit::Replace(i, v)),
        1 => any::<Index>().prop_map(Edit::Remove),
        1 => any::<Index>().prop_map(Edit::Wrap),
    ]
}

/// JSON pointers of every node below the root.
fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    walk(x, &p, out);
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    walk(x, &p, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

fn remove_at(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&key);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = key.parse::<usize>() {
                if i < a.len() {
                    a.remove(i);
                }
            }
        }
        _ => {}
    }
}

fn apply(v: &mut Value, e: &Edit) {
    let ps = pointers(v);
    if ps.is_empty() {
        if let Edit::Replace(_, x) = e {
            *v = x.clone();
        }
        return;
    }
    let pick = |i: &Index| ps[i.index(ps.len())].clone();
    match e {
        Edit::Replace(i, x) => {
            if let Some(slot) = v.pointer_mut(&pick(i)) {
                *slot = x.clone();
            }
        }
        Edit::Remove(i) => remove_at(v, &pick(i)),
        Edit::Wrap(i) => {
            if let Some(slot) = v.pointer_mut(&pick(i)) {
                *slot = json!([slot.take()]);
            }
        }
    }
}

fn edited(templates: Vec<Value>) -> impl Strategy<Value = Value> {
    (
        prop::sample::select(templates),
        prop::collection::vec(edit(), 0..4),
    )
        .prop_map(|(mut v, edits)| {
            for e in &edits {
                apply(&mut v, e);
            }
            v
        })
}

/// One byte-level edit of a payload's text.
#[derive(Debug, Clone)]
enum ByteEdit {
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
    Splice(Index, &'static str),
}

const SPLICES: &[&str] = &[
    "1e308",
    "-0",
    "\"NaN\"",
    "NaN",
    "Infinity",
    "[[[[[[[[",
    "]]]]",
    "}}",
    "{\"a\":",
    "\\u0000",
    "\\ud800",
    "\"",
    ",,",
    "79228162514264337593543950336",
    "9223372036854775808",
    "\u{10FFFF}",
    "é",
];

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    let interesting = prop_oneof![
        prop::sample::select(b"{}[]\",:-+.eE0123456789\\ \nnt".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<Index>(), interesting.clone()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<Index>(), interesting).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Delete),
        any::<Index>().prop_map(ByteEdit::Truncate),
        (any::<Index>(), prop::sample::select(SPLICES)).prop_map(|(i, s)| ByteEdit::Splice(i, s)),
    ]
}

fn apply_bytes(b: &mut Vec<u8>, e: &ByteEdit) {
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
    match e {
        ByteEdit::Set(i, x) if !b.is_empty() => {
            let k = i.index(b.len());
            b[k] = *x;
        }
        ByteEdit::Insert(i, x) => {
            let k = at(i, b.len());
            b.insert(k, *x);
        }
        ByteEdit::Delete(i) if !b.is_empty() => {
            b.remove(i.index(b.len()));
        }
        ByteEdit::Truncate(i) => {
            let k = at(i, b.len());
            b.truncate(k);
        }
        ByteEdit::Splice(i, s) => {
            let k = at(i, b.len());
            b.splice(k..k, s.bytes());
        }
        _ => {}
    }
}

fn mangled(templates: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(templates),
        prop::collection::vec(byte_edit(), 1..6),
    )
        .prop_map(|(v, edits)| {
            let mut b = v.to_string().into_bytes();
            for e in &edits {
                apply_bytes(&mut b, e);
            }
            b
        })
}

/// Raw bytes a venue might answer: arbitrary, byte-edited payloads, payloads with hostile
/// values, and payloads as documented.
fn body_bytes(templates: Vec<Value>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => "\\PC{0,64}".prop_map(String::into_bytes),
        1 => (1usize..400).prop_map(|n| "[".repeat(n).into_bytes()),
        3 => mangled(templates.clone()),
        6 => edited(templates.clone()).prop_map(|v| v.to_string().into_bytes()),
        2 => prop::sample::select(templates).prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn cfg(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Harnesses: every public parser of one venue over one input
// ---------------------------------------------------------------------------------------------

/// A pure parser's answer: a value, or `Decode` / `Unsupported` (whose text also renders).
fn decoded<T>(r: ExResult<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(
                matches!(e, ExchangeError::Decode(_) | ExchangeError::Unsupported(_)),
                "a parser answered {e:?}"
            );
            let _ = e.to_string();
            None
        }
    }
}

fn kraken_rest(body: &Value) {
    let env = kr::envelope(body);
    if let Err(e) = &env {
        assert!(
            matches!(
                e,
                ExchangeError::Venue { .. }
                    | ExchangeError::Auth(_)
                    | ExchangeError::RateLimited { retry_after: None }
                    | ExchangeError::Unavailable(_)
                    | ExchangeError::Decode(_)
            ),
            "envelope answered {e:?}"
        );
    }
    let result = env.unwrap_or(body);
    for r in [body, result] {
        decoded(kr::parse_balances(r));
        if let Some(c) = decoded(kr::parse_ohlc(r)) {
            let rows = r
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| *k != "last"));
            assert_eq!(
                Some(c.len()),
                rows.and_then(|(_, v)| v.as_array()).map(Vec::len)
            );
        }
        if let Some(t) = decoded(kr::parse_trades(r)) {
            assert!(t.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        }
        decoded(kr::parse_order("O", r));
        for key in ["open", "closed"] {
            decoded(kr::parse_order_map(r, key));
            for (id, o) in r.get(key).and_then(Value::as_object).into_iter().flatten() {
                decoded(kr::parse_order(id, o));
            }
        }
    }
}

fn coinbase_rest(body: &Value) {
    let list = |k: &str| body.get(k).and_then(Value::as_array).into_iter().flatten();
    decoded(cb::parse_order(body));
    if let Some(o) = body.get("order") {
        decoded(cb::parse_order(o));
    }
    for o in list("orders") {
        decoded(cb::parse_order(o));
    }
    decoded(cb::parse_fill(body));
    for f in list("fills") {
        decoded(cb::parse_fill(f));
    }
    let mut into = BTreeMap::new();
    decoded(cb::parse_accounts(body, &mut into));
    if let Some(c) = decoded(cb::parse_candles(body)) {
        assert!(c.windows(2).all(|w| w[0].ts <= w[1].ts));
    }
}

fn kraken_feed() -> KrakenFeed {
    let s = ["BTCUSD", "MATICUSD", "ALGOUSD"].map(String::from);
    KrakenFeed::new(&s, 5).unwrap()
}

fn coinbase_feed() -> CoinbaseFeed {
    let s = ["BTCUSD", "ETHUSD"].map(String::from);
    CoinbaseFeed::new(&s, None, trading_core::clock::wall()).unwrap()
}

/// A websocket frame's events, or `Decode`.
fn frame_events(r: ExResult<Vec<MarketEvent>>) -> Vec<MarketEvent> {
    match r {
        Ok(v) => v,
        Err(e) => {
            assert!(
                matches!(e, ExchangeError::Decode(_)),
                "a feed answered {e:?}"
            );
            vec![]
        }
    }
}

/// Every parser of both venues (REST and websocket) over one piece of text.
fn every_parser(text: &str, kf: &mut KrakenFeed, cf: &mut CoinbaseFeed) {
    frame_events(kf.parse(text));
    frame_events(cf.parse(text));
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        kraken_rest(&v);
        coinbase_rest(&v);
    }
}

// ---------------------------------------------------------------------------------------------
// Pure parsers
// ---------------------------------------------------------------------------------------------

/// Deterministic sweep: every node of every documented payload replaced by every boundary value
/// (and removed, and wrapped), run through every parser of its venue.
#[test]
fn every_value_of_every_documented_payload_replaced_by_a_boundary_value_is_not_a_panic() {
    let hostile = hostile_values();
    let (mut kf, mut cf) = (kraken_feed(), coinbase_feed());
    let mut runs = 0usize;
    for (venue, templates) in [
        ("kraken", kraken_templates()),
        ("coinbase", coinbase_templates()),
    ] {
        for t in &templates {
            let run = |v: &Value, kf: &mut KrakenFeed, cf: &mut CoinbaseFeed| {
                let text = v.to_string();
                if venue == "kraken" {
                    kraken_rest(v);
                    frame_events(kf.parse(&text));
                } else {
                    coinbase_rest(v);
                    frame_events(cf.parse(&text));
                }
            };
            run(t, &mut kf, &mut cf);
            for p in pointers(t) {
                for h in &hostile {
                    let mut v = t.clone();
                    *v.pointer_mut(&p).unwrap() = h.clone();
                    run(&v, &mut kf, &mut cf);
                    runs += 1;
                }
                let mut v = t.clone();
                remove_at(&mut v, &p);
                run(&v, &mut kf, &mut cf);
                let mut v = t.clone();
                let slot = v.pointer_mut(&p).unwrap();
                *slot = json!([slot.take()]);
                run(&v, &mut kf, &mut cf);
                runs += 2;
            }
        }
    }
    assert!(runs > 10_000, "{runs}");
}

/// Deterministic sweep: every prefix of every documented payload, as REST body and as frame.
#[test]
fn every_truncation_of_every_documented_payload_is_not_a_panic() {
    let (mut kf, mut cf) = (kraken_feed(), coinbase_feed());
    for t in kraken_templates().iter().chain(&coinbase_templates()) {
        let text = t.to_string();
        for (i, _) in text.char_indices() {
            every_parser(&text[..i], &mut kf, &mut cf);
        }
    }
}

proptest! {
    #![proptest_config(cfg(1_000))]

    #[test]
    fn arbitrary_text_into_every_parser_is_not_a_panic(text in prop_oneof![
        "\\PC{0,200}",
        ".{0,200}",
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        hostile_json().prop_map(|v| v.to_string()),
    ]) {
        let (mut kf, mut cf) = (kraken_feed(), coinbase_feed());
        every_parser(&text, &mut kf, &mut cf);
    }

    #[test]
    fn kraken_payloads_with_hostile_values_are_not_a_panic(v in edited(kraken_templates())) {
        kraken_rest(&v);
        frame_events(kraken_feed().parse(&v.to_string()));
    }

    #[test]
    fn coinbase_payloads_with_hostile_values_are_not_a_panic(v in edited(coinbase_templates())) {
        coinbase_rest(&v);
        frame_events(coinbase_feed().parse(&v.to_string()));
    }

    #[test]
    fn byte_mangled_payloads_are_not_a_panic(
        b in prop_oneof![mangled(kraken_templates()), mangled(coinbase_templates())]
    ) {
        let (mut kf, mut cf) = (kraken_feed(), coinbase_feed());
        every_parser(&String::from_utf8_lossy(&b), &mut kf, &mut cf);
    }

}

proptest! {
    #![proptest_config(cfg(300))]

    /// A stateful feed fed a run of frames (documented, edited, mangled, arbitrary) in order.
    #[test]
    fn a_run_of_hostile_frames_into_one_feed_is_not_a_panic(frames in prop::collection::vec(
        prop_oneof![
            2 => edited(kraken_templates()).prop_map(|v| v.to_string()),
            2 => edited(coinbase_templates()).prop_map(|v| v.to_string()),
            1 => mangled(kraken_templates()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            1 => mangled(coinbase_templates()).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            1 => prop::sample::select(kraken_templates()).prop_map(|v| v.to_string()),
            1 => prop::sample::select(coinbase_templates()).prop_map(|v| v.to_string()),
        ],
        1..12,
    )) {
        let (mut kf, mut cf) = (kraken_feed(), coinbase_feed());
        for f in &frames {
            frame_events(kf.parse(f));
            frame_events(cf.parse(f));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decimals, symbols, Retry-After
// ---------------------------------------------------------------------------------------------

fn any_decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            0u32..=28
        )
            .prop_map(|(lo, mid, hi, neg, s)| Decimal::from_parts(lo, mid, hi, neg, s)),
        prop::sample::select(vec![
            Decimal::MAX,
            Decimal::MIN,
            Decimal::ZERO,
            Decimal::ONE,
            Decimal::new(1, 28),
        ]),
    ]
}

fn positive_decimal() -> impl Strategy<Value = Decimal> {
    any_decimal()
        .prop_map(|d| d.abs())
        .prop_filter("positive", |d| !d.is_zero())
}

/// A base that no Kraken legacy code or prefix rewrite touches.
fn plain_base() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "BTC", "ETH", "SOL", "DOGE", "DOT", "ADA", "LINK", "MATIC"
        ])
        .prop_map(String::from),
        "[A-WY][A-Z0-9]{1,6}",
    ]
    .prop_filter("not a Kraken legacy code", |b| kr::asset_to_host(b) == *b)
}

const QUOTES: &[&str] = &[
    "USDT", "USDC", "USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD", "BTC", "ETH",
];

proptest! {
    #![proptest_config(cfg(2_000))]

    #[test]
    fn decimal_text_is_a_decimal_or_a_decode_error(text in prop_oneof![
        "\\PC{0,40}",
        "[-+]?[0-9]{0,40}(\\.[0-9]{0,40})?([eE][-+]?[0-9]{0,12})?",
        (any::<i64>(), any::<i32>()).prop_map(|(m, e)| format!("{m}e{e}")),
        (any::<i128>(), any::<i64>()).prop_map(|(m, e)| format!("{m}E{e}")),
        any::<f64>().prop_map(|f| f.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
    ]) {
        for r in [parse_dec(&text), dec(&Value::String(text.clone()))] {
            decoded(r);
        }
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            decoded(dec(&v));
        }
    }

    #[test]
    fn json_numbers_are_decimals_or_decode_errors(v in prop_oneof![
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        hostile_json(),
    ]) {
        decoded(dec(&v));
    }

    #[test]
    fn decimals_round_trip_through_their_text(d in any_decimal()) {
        prop_assert_eq!(parse_dec(&d.to_string()).unwrap(), d);
        prop_assert_eq!(dec(&Value::String(d.to_string())).unwrap(), d);
        prop_assert_eq!(parse_dec(&format!("{d:e}")).unwrap(), d);
    }

    #[test]
    fn arbitrary_symbols_and_pairs_are_not_a_panic(s in prop_oneof![
        "\\PC{0,16}",
        "[A-Z/\\-]{0,12}",
        "[XZ][A-Z€é]{3,7}",
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]) {
        let symbol_errors = |r: ExResult<String>| {
            if let Err(e) = r {
                assert!(matches!(e, ExchangeError::UnknownSymbol(_)), "{e:?}");
            }
        };
        if let Err(e) = split_symbol(&s) {
            assert!(matches!(e, ExchangeError::UnknownSymbol(_)), "{e:?}");
        }
        symbol_errors(kr::rest_pair(&s));
        symbol_errors(kr::ws_symbol(&s));
        symbol_errors(cb::product_id(&s));
        let _ = (kr::pair_to_host(&s), kr::asset_to_host(&s), cb::product_to_host(&s));
        let _ = kr::venue_error(&[s.clone(), s]).to_string();
    }

    #[test]
    fn host_symbols_round_trip_through_venue_spellings(
        base in plain_base(),
        quote in prop::sample::select(QUOTES),
    ) {
        let symbol = format!("{base}{quote}");
        prop_assert_eq!(split_symbol(&symbol).unwrap(), (base.as_str(), quote));
        prop_assert_eq!(cb::product_to_host(&cb::product_id(&symbol).unwrap()), symbol.clone());
        prop_assert_eq!(kr::pair_to_host(&kr::ws_symbol(&symbol).unwrap()), symbol.clone());
        // Kraken's REST spelling of a BTC quote (`ETHXBT`) does not map back: see the report.
        if quote != "BTC" {
            prop_assert_eq!(kr::pair_to_host(&kr::rest_pair(&symbol).unwrap()), symbol);
        }
    }

    #[test]
    fn any_retry_after_header_is_at_most_the_cap(raw in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        "[-+ ]?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][-+]?[0-9]{0,5})? ?".prop_map(String::into_bytes),
        any::<f64>().prop_map(|f| f.to_string().into_bytes()),
        prop::sample::select(vec!["inf", "NaN", "-0", "1e20", "1.7e308", "Wed, 21 Oct 2015 07:28:00 GMT"])
            .prop_map(|s| s.as_bytes().to_vec()),
    ]) {
        if let Ok(h) = reqwest::header::HeaderValue::from_bytes(&raw) {
            let mut m = reqwest::header::HeaderMap::new();
            m.insert(reqwest::header::RETRY_AFTER, h);
            if let Some(d) = retry_after(&m) {
                prop_assert!(d <= MAX_RETRY_AFTER, "{d:?}");
            }
        }
    }

    #[test]
    fn retry_after_seconds_round_trip(secs in 0u64..=7_200, frac in 0u32..1000) {
        let mut m = reqwest::header::HeaderMap::new();
        m.insert(reqwest::header::RETRY_AFTER, secs.to_string().parse().unwrap());
        prop_assert_eq!(retry_after(&m), Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER)));
        m.insert(reqwest::header::RETRY_AFTER, format!(" {secs}.{frac:03} ").parse().unwrap());
        let want = (Duration::from_secs(secs) + Duration::from_millis(frac.into())).min(MAX_RETRY_AFTER);
        let got = retry_after(&m).unwrap();
        prop_assert!(got.abs_diff(want) < Duration::from_micros(1), "{got:?} vs {want:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips through the payload parsers
// ---------------------------------------------------------------------------------------------

fn candles() -> impl Strategy<Value = Vec<Candle>> {
    prop::collection::vec(
        (
            0i64..4_000_000_000,
            any_decimal(),
            any_decimal(),
            any_decimal(),
            any_decimal(),
            any_decimal(),
        ),
        1..8,
    )
    .prop_map(|rows| {
        let mut ts = 0;
        rows.into_iter()
            .map(|(step, open, high, low, close, volume)| {
                ts += step / 1000 * 300 + 300;
                Candle {
                    ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                }
            })
            .collect()
    })
}

fn order_kind() -> impl Strategy<Value = OrderKind> {
    prop_oneof![
        Just(OrderKind::Market),
        positive_decimal().prop_map(|price| OrderKind::Limit { price }),
        positive_decimal().prop_map(|trigger| OrderKind::StopLoss { trigger }),
        positive_decimal().prop_map(|trigger| OrderKind::TakeProfit { trigger }),
    ]
}

proptest! {
    #![proptest_config(cfg(500))]

    #[test]
    fn kraken_ohlc_rows_round_trip(c in candles(), as_numbers in any::<bool>()) {
        let rows: Vec<Value> = c.iter().map(|c| {
            let d = |x: Decimal| if as_numbers && x.scale() == 0 && x.abs() < Decimal::from(1u64 << 53) {
                json!(i64::try_from(x).unwrap())
            } else {
                json!(x.to_string())
            };
            json!([c.ts, d(c.open), d(c.high), d(c.low), d(c.close), "0", d(c.volume), 1])
        }).collect();
        let body = json!({"error": [], "result": {"XXBTZUSD": rows, "last": 1}});
        prop_assert_eq!(kr::parse_ohlc(kr::envelope(&body).unwrap()).unwrap(), c);
    }

    #[test]
    fn coinbase_candles_round_trip_oldest_first(c in candles()) {
        let rows: Vec<Value> = c.iter().rev().map(|c| json!({
            "start": c.ts.to_string(), "open": c.open.to_string(), "high": c.high.to_string(),
            "low": c.low.to_string(), "close": c.close.to_string(), "volume": c.volume.to_string(),
        })).collect();
        prop_assert_eq!(cb::parse_candles(&json!({ "candles": rows })).unwrap(), c);
    }

    /// Each websocket candle comes out, unchanged, once the next interval begins.
    #[test]
    fn websocket_candles_close_unchanged_when_the_next_interval_begins(c in candles()) {
        let (mut kf, mut cf) = (kraken_feed(), coinbase_feed());
        for (i, x) in c.iter().enumerate() {
            let begin = chrono::DateTime::from_timestamp(x.ts, 0).unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let k = json!({"channel": "ohlc", "type": "update", "data": [{"symbol": "BTC/USD",
                "open": x.open.to_string(), "high": x.high.to_string(), "low": x.low.to_string(),
                "close": x.close.to_string(), "volume": x.volume.to_string(),
                "interval_begin": begin, "interval": 5}]});
            let cbm = json!({"channel": "candles", "events": [{"type": "update", "candles": [{
                "product_id": "BTC-USD", "start": x.ts.to_string(), "open": x.open.to_string(),
                "high": x.high.to_string(), "low": x.low.to_string(), "close": x.close.to_string(),
                "volume": x.volume.to_string()}]}]});
            let want: Vec<MarketEvent> = (i > 0).then(|| MarketEvent::Candle {
                symbol: "BTCUSD".into(), interval_minutes: 5, candle: c[i - 1],
            }).into_iter().collect();
            prop_assert_eq!(kf.parse(&k.to_string()).unwrap(), want.clone());
            prop_assert_eq!(cf.parse(&cbm.to_string()).unwrap(), want);
        }
    }

    #[test]
    fn kraken_balances_round_trip(b in prop::collection::btree_map(plain_base(), any_decimal(), 0..8)) {
        let body = json!({"error": [], "result": b.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string()))).collect::<serde_json::Map<_, _>>()});
        prop_assert_eq!(kr::parse_balances(kr::envelope(&body).unwrap()).unwrap(), b);
    }

    #[test]
    fn coinbase_order_bodies_round_trip_through_the_order_parser(
        side in prop::sample::select(vec![Side::Buy, Side::Sell]),
        kind in order_kind(),
        qty in positive_decimal(),
        symbol in prop::sample::select(vec!["BTCUSD", "ETHBTC", "SOLEUR", "DOGEUSDT"]),
        bps in prop_oneof![0u32..500, any::<u32>()],
    ) {
        let spec = OrderSpec { client_id: "c-1".into(), symbol: symbol.into(), side, kind, qty };
        match cb::order_body(&spec, bps) {
            Ok(mut body) => {
                body["order_id"] = json!("o-1");
                body["status"] = json!("OPEN");
                let o = cb::parse_order(&body).unwrap();
                prop_assert_eq!((o.kind, o.side, o.qty), (kind, side, qty));
                prop_assert_eq!(o.symbol, symbol);
                prop_assert_eq!(o.client_id.as_deref(), Some("c-1"));
            }
            Err(e) => prop_assert!(matches!(e, ExchangeError::InvalidOrder(_)), "{e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Over HTTP: status, headers and body of every REST call, through the raw clients and adapters
// ---------------------------------------------------------------------------------------------

/// One canned HTTP answer.
#[derive(Debug, Clone)]
struct Canned {
    status: u16,
    retry_after: Option<Vec<u8>>,
    body: Vec<u8>,
}

/// A local HTTP server answering every request with the next canned answer; once they run out,
/// `418` with an error body, so paging loops end.
struct Scripted {
    rt: tokio::runtime::Runtime,
    url: String,
    script: Arc<Mutex<VecDeque<Canned>>>,
}

impl Scripted {
    fn start() -> Scripted {
        use axum::http::{header::RETRY_AFTER, HeaderValue, StatusCode};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let script: Arc<Mutex<VecDeque<Canned>>> = Arc::default();
        let s = script.clone();
        let url = rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = axum::Router::new().fallback(move || {
                let next = s.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                async move {
                    let c = next.unwrap_or(Canned {
                        status: 418,
                        retry_after: None,
                        body: br#"{"error":["EXHAUSTED"]}"#.to_vec(),
                    });
                    let mut r = axum::response::Response::new(axum::body::Body::from(c.body));
                    *r.status_mut() = StatusCode::from_u16(c.status).unwrap();
                    if let Some(h) = c.retry_after.and_then(|b| HeaderValue::from_bytes(&b).ok()) {
                        r.headers_mut().insert(RETRY_AFTER, h);
                    }
                    r
                }
            });
            tokio::spawn(async move { axum::serve(listener, app).await.ok() });
            format!("http://{addr}")
        });
        Scripted { rt, url, script }
    }

    fn answer(&self, script: &[Canned]) {
        *self.script.lock().unwrap_or_else(|p| p.into_inner()) = script.iter().cloned().collect();
    }
}

fn no_retries() -> RetryPolicy {
    RetryPolicy {
        max_retries: 0,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    }
}

fn script(templates: Vec<Value>) -> impl Strategy<Value = Vec<Canned>> {
    let status = prop_oneof![
        12 => Just(200u16),
        1 => prop::sample::select(vec![201u16, 204, 301, 400, 401, 403, 404, 418, 500, 502, 503]),
        2 => Just(429u16),
        1 => 200u16..600,
    ];
    let retry = prop::option::of(prop_oneof![
        (0u64..5_000).prop_map(|s| s.to_string().into_bytes()),
        prop::sample::select(vec![
            "1e20", "1.7e308", "inf", "NaN", "-1", "0.5", " 7 ", "soon"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ]);
    prop::collection::vec(
        (status, retry, body_bytes(templates)).prop_map(|(status, retry_after, body)| Canned {
            status,
            retry_after,
            body,
        }),
        1..4,
    )
}

fn order_spec() -> OrderSpec {
    OrderSpec {
        client_id: "c-1".into(),
        symbol: "BTCUSD".into(),
        side: Side::Buy,
        kind: OrderKind::Limit {
            price: Decimal::from(30_000),
        },
        qty: Decimal::ONE,
    }
}

fn kraken_client(url: &str) -> Kraken {
    Kraken::new(KrakenConfig {
        rest_url: url.into(),
        timeout: Duration::from_secs(5),
        retry: no_retries(),
        rate_per_sec: 0.0,
        credentials: Some(
            KrakenCredentials::new(kraken_venue::API_KEY, kraken_venue::API_SECRET).unwrap(),
        ),
        ..KrakenConfig::default()
    })
    .unwrap()
}

fn coinbase_client(url: &str) -> Coinbase {
    Coinbase::new(CoinbaseConfig {
        rest_url: url.into(),
        timeout: Duration::from_secs(5),
        retry: no_retries(),
        rate_per_sec: 0.0,
        lookup_pages: 3,
        credentials: Some(
            CoinbaseCredentials::new(coinbase_venue::KEY_NAME, coinbase_venue::PRIVATE_KEY_PEM)
                .unwrap(),
        ),
        ..CoinbaseConfig::default()
    })
    .unwrap()
}

const KRAKEN_OPS: u8 = 13;

/// Kraken call number `op`: every REST method of the raw client, then the adapter's.
async fn kraken_op(k: &Kraken, op: u8) -> ExResult<()> {
    let h = k.http();
    let spec = order_spec();
    match op % KRAKEN_OPS {
        0 => h.balances().await.map(drop),
        1 => h.open_orders().await.map(drop),
        2 => h.trades_page(0, 0).await.map(drop),
        3 => h.taker_fee("BTCUSD").await.map(drop),
        4 => h.ohlc("BTCUSD", 1, 0).await.map(drop),
        5 => h.add_order(&spec).await.map(drop),
        6 => h.cancel("OQCLML-BW3P3-BUCMWZ").await.map(drop),
        7 => h.find_by_client_id("c-1").await.map(drop),
        8 => h.public("Time", &[]).await.map(drop),
        9 => k.fills_since(0).await.map(drop),
        10 => k.ohlc("BTCUSD", 1, 0).await.map(drop),
        11 => k.balances().await.map(drop),
        _ => k.taker_fee("BTCUSD").await.map(drop),
    }
}

const COINBASE_OPS: u8 = 13;

async fn coinbase_op(c: &Coinbase, op: u8) -> ExResult<()> {
    use trading_core::Clock as _;
    let h = c.http();
    let spec = order_spec();
    match op % COINBASE_OPS {
        0 => h.accounts_page(None).await.map(drop),
        1 => h.open_orders().await.map(drop),
        2 => h.fills_page(0, None).await.map(drop),
        3 => h.taker_fee().await.map(drop),
        4 => h.candles("BTCUSD", 60, 0, 3600).await.map(drop),
        5 => h.create_order(&spec).await.map(drop),
        6 => h.cancel("0000-00000").await.map(drop),
        7 => h.find_by_client_id("c-1").await.map(drop),
        8 => h.order("0000-000000-000000").await.map(drop),
        9 => c.fills_since(0).await.map(drop),
        10 => {
            let now = trading_core::WallClock.now();
            c.ohlc("BTCUSD", 60, now - 7_200).await.map(drop)
        }
        11 => c.balances().await.map(drop),
        _ => c.open_orders().await.map(drop),
    }
}

/// What an HTTP answer may turn into: never a state the client itself owns.
fn check_http_outcome(first: &Canned, r: ExResult<()>) {
    let Err(e) = r else { return };
    let _ = e.to_string();
    assert!(
        !matches!(
            e,
            ExchangeError::Unresolved { .. }
                | ExchangeError::NonceStore { .. }
                | ExchangeError::MissingCredentials(_)
                | ExchangeError::InvalidOrder(_)
                | ExchangeError::UnknownSymbol(_)
        ),
        "{e:?}"
    );
    match first.status {
        429 => assert!(
            matches!(&e, ExchangeError::RateLimited { retry_after }
                if retry_after.is_none_or(|d| d <= MAX_RETRY_AFTER)),
            "{e:?}"
        ),
        401 | 403 => assert!(matches!(e, ExchangeError::Auth(_)), "{e:?}"),
        _ => {}
    }
}

#[test]
fn kraken_rest_answers_of_any_status_header_and_body_are_not_a_panic() {
    let venue = Scripted::start();
    let k = kraken_client(&venue.url);
    let mut runner = TestRunner::new(cfg(400));
    runner
        .run(
            &(any::<u8>(), script(kraken_templates())),
            |(op, answers)| {
                venue.answer(&answers);
                let r = venue.rt.block_on(kraken_op(&k, op));
                check_http_outcome(&answers[0], r);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn coinbase_rest_answers_of_any_status_header_and_body_are_not_a_panic() {
    let venue = Scripted::start();
    let c = coinbase_client(&venue.url);
    let mut runner = TestRunner::new(cfg(400));
    runner
        .run(
            &(any::<u8>(), script(coinbase_templates())),
            |(op, answers)| {
                venue.answer(&answers);
                let r = venue.rt.block_on(coinbase_op(&c, op));
                check_http_outcome(&answers[0], r);
                Ok(())
            },
        )
        .unwrap();
}

/// Deterministic sweep over HTTP for the parsers only a REST call reaches (fees, `txid`, cancel
/// counts, create-order answers, one order, the adapters' candle windows): every node of the
/// payload each call expects replaced by every boundary value.
#[test]
fn every_value_of_every_http_only_payload_replaced_by_a_boundary_value_is_not_a_panic() {
    let hostile = hostile_values();
    let venue = Scripted::start();
    let (k, c) = (kraken_client(&venue.url), coinbase_client(&venue.url));
    let (kt, ct) = (kraken_templates(), coinbase_templates());
    let file = |t: &[Value], files: &[&str], f: &str| {
        t[files.iter().position(|x| *x == f).unwrap()].clone()
    };
    // (venue, op, payload): ops as numbered in `kraken_op` / `coinbase_op`.
    let cases = [
        (true, 3, kt[KRAKEN_FILES.len()].clone()),
        (true, 5, file(&kt, KRAKEN_FILES, "add_order.json")),
        (true, 6, file(&kt, KRAKEN_FILES, "cancel_order.json")),
        (true, 10, {
            // One row is enough: the others have the same shape.
            let mut o = file(&kt, KRAKEN_FILES, "ohlc.json");
            o["result"]["XXBTZUSD"].as_array_mut().unwrap().truncate(1);
            o
        }),
        (false, 3, ct[COINBASE_FILES.len()].clone()),
        (false, 5, file(&ct, COINBASE_FILES, "create_order.json")),
        (
            false,
            5,
            file(&ct, COINBASE_FILES, "create_order_error.json"),
        ),
        (false, 6, file(&ct, COINBASE_FILES, "batch_cancel.json")),
        (false, 8, file(&ct, COINBASE_FILES, "get_order.json")),
        (false, 10, file(&ct, COINBASE_FILES, "candles.json")),
    ];
    let mut calls = 0;
    for (kraken, op, t) in &cases {
        for p in pointers(t) {
            for h in &hostile {
                let mut v = t.clone();
                *v.pointer_mut(&p).unwrap() = h.clone();
                let answer = ok(v);
                venue.answer(std::slice::from_ref(&answer));
                let r = if *kraken {
                    venue.rt.block_on(kraken_op(&k, *op))
                } else {
                    venue.rt.block_on(coinbase_op(&c, *op))
                };
                check_http_outcome(&answer, r);
                calls += 1;
            }
        }
    }
    assert!(calls > 2_000, "{calls}");
}

// ---------------------------------------------------------------------------------------------
// Regressions: panics these properties found
// ---------------------------------------------------------------------------------------------

const DECIMAL_MAX: &str = "79228162514264337593543950335";

fn decode_error<T: std::fmt::Debug>(r: ExResult<T>) {
    assert!(matches!(r, Err(ExchangeError::Decode(_))), "{r:?}");
}

/// `ts_ms` multiplied the trade time by 1000 with `*`, which panics past `Decimal::MAX`.
#[test]
fn a_kraken_trade_time_beyond_the_decimal_range_is_an_error_not_a_panic() {
    let mut body = test_data("kraken", "trades_history.json");
    body["result"]["trades"]["THVRQM-33VKH-UCI7BS"]["time"] = json!(DECIMAL_MAX);
    decode_error(kr::parse_trades(kr::envelope(&body).unwrap()));
}

/// `XXBT` and `XBT` both map to `BTC`; summing them with `+=` panicked past `Decimal::MAX`.
#[test]
fn a_kraken_balance_summed_past_the_decimal_range_is_an_error_not_a_panic() {
    let body = json!({"error": [], "result": {"XXBT": DECIMAL_MAX, "XBT": DECIMAL_MAX}});
    decode_error(kr::parse_balances(kr::envelope(&body).unwrap()));
}

/// Two accounts in one currency were summed with `+=`, which panics past `Decimal::MAX`.
#[test]
fn a_coinbase_account_list_summed_past_the_decimal_range_is_an_error_not_a_panic() {
    let acct = json!({"currency": "BTC", "available_balance": {"value": DECIMAL_MAX}});
    let mut into = BTreeMap::new();
    decode_error(cb::parse_accounts(
        &json!({ "accounts": [acct.clone(), acct] }),
        &mut into,
    ));
}

fn ok(body: Value) -> Canned {
    Canned {
        status: 200,
        retry_after: None,
        body: body.to_string().into_bytes(),
    }
}

/// The adapter summed one currency across account pages with `+=` (panics past `Decimal::MAX`).
#[test]
fn a_coinbase_balance_summed_across_pages_past_the_decimal_range_is_an_error_not_a_panic() {
    let venue = Scripted::start();
    let c = coinbase_client(&venue.url);
    let page = |cursor: &str, more: bool| {
        ok(
            json!({"accounts": [{"currency": "BTC", "available_balance": {"value": DECIMAL_MAX}}],
            "has_next": more, "cursor": cursor}),
        )
    };
    venue.answer(&[page("p2", true), page("p3", false)]);
    decode_error(venue.rt.block_on(c.balances()));
}

/// The adapters kept candles with `c.ts + step <= now`, which overflows (a panic in debug, a
/// wrapped "closed" candle in release) for a candle opening at `i64::MAX`.
#[test]
fn an_ohlc_candle_opening_at_the_end_of_time_is_dropped_not_a_panic() {
    use trading_core::Clock as _;
    let venue = Scripted::start();
    let (k, c) = (kraken_client(&venue.url), coinbase_client(&venue.url));
    venue.answer(&[ok(json!({"error": [], "result": {"XXBTZUSD": [
        [i64::MAX, "1", "1", "1", "1", "1", "1", 1]], "last": 1}}))]);
    assert_eq!(venue.rt.block_on(k.ohlc("BTCUSD", 1, 0)), Ok(vec![]));
    venue.answer(&[ok(
        json!({"candles": [{"start": i64::MAX.to_string(), "open": "1",
        "high": "1", "low": "1", "close": "1", "volume": "1"}]}),
    )]);
    let since = trading_core::WallClock.now() - 3_600;
    assert_eq!(venue.rt.block_on(c.ohlc("BTCUSD", 60, since)), Ok(vec![]));
}

/// A stop-limit's limit (`trigger · (1 ± buffer)`) was computed with `*`, which panics when the
/// trigger is near `Decimal::MAX`.
#[test]
fn a_coinbase_stop_order_whose_limit_overflows_is_an_invalid_order_not_a_panic() {
    let spec = OrderSpec {
        kind: OrderKind::TakeProfit {
            trigger: DECIMAL_MAX.parse().unwrap(),
        },
        ..order_spec()
    };
    let r = cb::order_body(&spec, 100);
    assert!(matches!(r, Err(ExchangeError::InvalidOrder(_))), "{r:?}");
}
