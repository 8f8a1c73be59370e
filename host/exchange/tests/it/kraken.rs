//! The Kraken adapter against a loopback Kraken that checks every signature and nonce: the
//! documented payloads, orders with client ids, no duplicate under ambiguous failures, 429 with
//! Retry-After, 5xx retries, cancel, open orders, fills, balances, OHLC backfill, and the
//! websocket v2 feed with reconnects.

use host_exchange::loopback as support;

use host_exchange::kraken::{self, http, Kraken, KrakenCredentials};
use host_exchange::{Exchange, ExchangeError, MarketEvent, OrderKind, OrderSpec, OrderState, Side};
use rust_decimal::Decimal;
use std::time::Duration;
use support::kraken_venue::{KrakenVenue, API_KEY, API_SECRET};
use support::{test_data, Fault};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn spec(id: &str, side: Side, kind: OrderKind, qty: &str) -> OrderSpec {
    OrderSpec {
        client_id: id.into(),
        symbol: "BTCUSD".into(),
        side,
        kind,
        qty: d(qty),
    }
}

#[test]
fn documented_payloads_parse() {
    let open = test_data("kraken", "open_orders.json");
    let mut orders = http::parse_order_map(http::envelope(&open).unwrap(), "open").unwrap();
    orders.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    let o = orders
        .iter()
        .find(|o| o.order_id == "OQCLML-BW3P3-BUCMWZ")
        .unwrap();
    assert_eq!(o.symbol, "BTCUSD");
    assert_eq!(o.side, Side::Buy);
    assert_eq!(
        o.kind,
        OrderKind::Limit {
            price: d("30010.0")
        }
    );
    assert_eq!((o.qty, o.filled_qty), (d("1.25"), d("0.375")));
    assert_eq!(o.avg_price, Some(d("30010.0")));
    assert_eq!(o.state, OrderState::Open);

    let closed = test_data("kraken", "closed_orders.json");
    let c = http::parse_order_map(http::envelope(&closed).unwrap(), "closed").unwrap();
    let sl = c
        .iter()
        .find(|o| o.order_id == "O37652-RJWRT-IMO74O")
        .unwrap();
    assert_eq!(
        sl.kind,
        OrderKind::StopLoss {
            trigger: d("23667.0")
        }
    );
    assert_eq!(
        (sl.symbol.as_str(), sl.state),
        ("BTCGBP", OrderState::Cancelled)
    );
    let tp = c
        .iter()
        .find(|o| o.order_id == "O6YDQ5-LOMWU-37YKEE")
        .unwrap();
    assert_eq!(
        tp.kind,
        OrderKind::TakeProfit {
            trigger: d("27743.0")
        }
    );

    let trades =
        http::parse_trades(http::envelope(&test_data("kraken", "trades_history.json")).unwrap())
            .unwrap();
    assert_eq!(trades.len(), 2);
    assert_eq!(trades[0].trade_id, "TCWJEG-FL4SZ-3FKGH6", "oldest first");
    assert_eq!(trades[0].ts_ms, 1688667769639);
    assert_eq!(
        (trades[1].qty, trades[1].price, trades[1].symbol.as_str()),
        (d("0.02"), d("30010"), "BTCUSD")
    );

    let b = http::parse_balances(http::envelope(&test_data("kraken", "balance.json")).unwrap())
        .unwrap();
    assert_eq!(b["USD"], d("171288.6158"));
    assert_eq!(b["BTC"], d("1011.19088779"));
    assert_eq!(b["ETH2.S"], d("198.39708"));

    let c = http::parse_ohlc(http::envelope(&test_data("kraken", "ohlc.json")).unwrap()).unwrap();
    assert_eq!(c.len(), 4);
    assert_eq!(
        (c[0].ts, c[0].open, c[0].volume),
        (1688671200, d("30306.1"), d("3.39243896"))
    );

    let add = test_data("kraken", "add_order.json");
    assert_eq!(
        http::envelope(&add).unwrap()["txid"][0],
        "OU22CG-KLAF2-FWUDD7"
    );
    let e = http::envelope(&test_data("kraken", "error_invalid_signature.json")).unwrap_err();
    assert!(matches!(e, ExchangeError::Auth(_)), "{e}");
}

#[tokio::test]
async fn signatures_and_nonces_are_checked_by_the_venue() {
    let v = KrakenVenue::start().await;
    let k = Kraken::new(v.config()).unwrap();
    let b = k.balances().await.unwrap();
    assert_eq!(b["USD"], d("171288.6158"));
    assert!(v.state().refused.is_empty(), "{:?}", v.state().refused);

    // Another secret: the venue refuses with Kraken's documented error.
    let mut cfg = v.config();
    cfg.credentials =
        Some(KrakenCredentials::new(API_KEY, "c2VjcmV0LXRoYXQtaXMtd3Jvbmc=").unwrap());
    let e = Kraken::new(cfg).unwrap().balances().await.unwrap_err();
    assert!(
        matches!(e, ExchangeError::Auth(ref m) if m.contains("EAPI:Invalid signature")),
        "{e}"
    );
    assert_eq!(
        v.state().refused.last().unwrap().1,
        "EAPI:Invalid signature"
    );

    // A correctly signed request with a stale nonce.
    let secret =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, API_SECRET).unwrap();
    let body = "nonce=1";
    let sig = kraken::auth::sign("/0/private/Balance", "1", body, &secret);
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/0/private/Balance", v.rest_url))
        .header("API-Key", API_KEY)
        .header("API-Sign", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"][0], "EAPI:Invalid nonce");

    // No credentials at all: a typed error, nothing sent.
    let mut cfg = v.config();
    cfg.credentials = None;
    let before = v.count("Balance");
    let e = Kraken::new(cfg).unwrap().balances().await.unwrap_err();
    assert!(matches!(e, ExchangeError::MissingCredentials(_)));
    assert_eq!(v.count("Balance"), before);
}

#[tokio::test]
async fn market_order_fills_with_client_id_into_fills_and_balances() {
    let v = KrakenVenue::start().await;
    let k = Kraken::new(v.config()).unwrap();
    let usd0 = v.balance("ZUSD");
    let btc0 = v.balance("XXBT");
    let ack = k
        .place_order(&spec("buy-1", Side::Buy, OrderKind::Market, "0.5"))
        .await
        .unwrap();
    assert!(!ack.recovered);
    let orders = v.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].txid, ack.order_id);
    assert_eq!(orders[0].cl_ord_id.as_deref(), Some("buy-1"));

    let st = k.query_order_by_client_id("buy-1").await.unwrap().unwrap();
    assert_eq!(st.state, OrderState::Filled);
    assert_eq!((st.filled_qty, st.avg_price), (d("0.5"), Some(d("30000"))));
    assert!(k.query_order_by_client_id("nope").await.unwrap().is_none());

    let fills = k.fills_since(0).await.unwrap();
    assert_eq!(fills.len(), 1);
    let f = &fills[0];
    assert_eq!(
        (f.order_id.as_str(), f.side, f.qty, f.price, f.fee),
        (
            ack.order_id.as_str(),
            Side::Buy,
            d("0.5"),
            d("30000"),
            d("39")
        )
    );
    let later = f.ts_ms / 1000 + 1;
    assert!(k.fills_since(later).await.unwrap().is_empty());

    let b = k.balances().await.unwrap();
    assert_eq!(b["USD"], usd0 - d("15000") - d("39"));
    assert_eq!(b["BTC"], btc0 + d("0.5"));
    assert_eq!(b["USD"], d("156249.6158"));

    // The venue's refusals come back typed, and are not retried.
    let e = k
        .place_order(&spec("buy-2", Side::Buy, OrderKind::Market, "1000000"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExchangeError::Venue { ref code, .. } if code == "EOrder:Insufficient funds"),
        "{e}"
    );
    assert_eq!(v.count("AddOrder"), 2);
    let e = k
        .place_order(&spec("buy-1", Side::Buy, OrderKind::Market, "0.1"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExchangeError::Venue { .. }),
        "a reused client id is refused: {e}"
    );
    let e = k
        .place_order(&spec("x", Side::Buy, OrderKind::Market, "0"))
        .await
        .unwrap_err();
    assert!(matches!(e, ExchangeError::InvalidOrder(_)));
    let e = k
        .place_order(&spec(
            "a-client-id-longer-than-18",
            Side::Buy,
            OrderKind::Market,
            "1",
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, ExchangeError::InvalidOrder(_)));
}

#[tokio::test]
async fn ambiguous_failures_never_place_an_order_twice() {
    for (i, fault) in [
        Fault::DropAfterApply,
        Fault::HangAfterApply,
        Fault::ServerErrorAfterApply,
    ]
    .into_iter()
    .enumerate()
    {
        let v = KrakenVenue::start().await;
        let k = Kraken::new(v.config()).unwrap();
        v.inject("AddOrder", fault, 1);
        let id = format!("amb-{i}");
        let ack = k
            .place_order(&spec(&id, Side::Buy, OrderKind::Market, "0.25"))
            .await
            .unwrap();
        assert!(ack.recovered, "{fault:?}: found by client id");
        assert_eq!(v.count("AddOrder"), 1, "{fault:?}: sent once");
        let orders = v.orders();
        assert_eq!(orders.len(), 1, "{fault:?}");
        assert_eq!(ack.order_id, orders[0].txid);
        assert_eq!(v.trades().len(), 1);
        assert!(v.count("OpenOrders") + v.count("ClosedOrders") >= 1);
    }
}

#[tokio::test]
async fn lost_before_apply_is_sent_again_once() {
    let v = KrakenVenue::start().await;
    let k = Kraken::new(v.config()).unwrap();
    v.inject("AddOrder", Fault::ServerError, 1);
    v.inject("AddOrder", Fault::Hang, 1);
    let ack = k
        .place_order(&spec("resend-1", Side::Sell, OrderKind::Market, "1"))
        .await
        .unwrap();
    assert!(!ack.recovered);
    assert_eq!(
        v.count("AddOrder"),
        3,
        "two failed attempts, then one that landed"
    );
    assert_eq!(v.orders().len(), 1);
    // The venue kept failing: the lookup could not clear it either, so the order is unresolved.
    v.inject("AddOrder", Fault::ServerError, 1);
    v.inject("OpenOrders", Fault::ServerError, 100);
    let e = k
        .place_order(&spec("resend-2", Side::Sell, OrderKind::Market, "1"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExchangeError::Unresolved { ref client_id, .. } if client_id == "resend-2"),
        "{e}"
    );
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_and_5xx_is_retried() {
    let v = KrakenVenue::start().await;
    let k = Kraken::new(v.config()).unwrap();
    v.inject(
        "Balance",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    k.balances().await.unwrap();
    let t = v.arrivals("Balance");
    assert_eq!(t.len(), 2);
    assert!(
        t[1] - t[0] >= Duration::from_secs(1),
        "retried after {:?}",
        t[1] - t[0]
    );

    v.inject("OpenOrders", Fault::ServerError, 2);
    assert!(k.open_orders().await.unwrap().is_empty());
    assert_eq!(v.count("OpenOrders"), 3);

    v.inject("Balance", Fault::ServerError, 100);
    let e = k.balances().await.unwrap_err();
    assert!(matches!(e, ExchangeError::Http { status: 500, .. }), "{e}");
    assert_eq!(v.count("Balance"), 2 + 5, "first try + max_retries");
}

#[tokio::test]
async fn resting_orders_cancel_and_conditional_orders_trigger() {
    let v = KrakenVenue::start().await;
    let k = Kraken::new(v.config()).unwrap();
    let limit = k
        .place_order(&spec(
            "lim-1",
            Side::Buy,
            OrderKind::Limit { price: d("25000") },
            "0.1",
        ))
        .await
        .unwrap();
    let stop = k
        .place_order(&spec(
            "sl-1",
            Side::Sell,
            OrderKind::StopLoss {
                trigger: d("28000"),
            },
            "0.2",
        ))
        .await
        .unwrap();
    let tp = k
        .place_order(&spec(
            "tp-1",
            Side::Sell,
            OrderKind::TakeProfit {
                trigger: d("35000"),
            },
            "0.3",
        ))
        .await
        .unwrap();
    let mut open = k.open_orders().await.unwrap();
    open.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    assert_eq!(open.len(), 3);
    assert_eq!(open[0].kind, OrderKind::Limit { price: d("25000") });
    assert_eq!(
        open[1].kind,
        OrderKind::StopLoss {
            trigger: d("28000")
        }
    );
    assert_eq!(
        open[2].kind,
        OrderKind::TakeProfit {
            trigger: d("35000")
        }
    );

    v.set_price("XBTUSD", d("27000"));
    let open = k.open_orders().await.unwrap();
    assert_eq!(open.len(), 2, "the stop-loss fired");
    let sl = k.query_order_by_client_id("sl-1").await.unwrap().unwrap();
    assert_eq!(
        (sl.order_id, sl.state, sl.avg_price),
        (stop.order_id, OrderState::Filled, Some(d("27000")))
    );

    assert!(k.cancel_order(&tp.order_id).await.unwrap());
    assert!(
        !k.cancel_order(&tp.order_id).await.unwrap(),
        "already cancelled"
    );
    assert!(!k.cancel_order("OUNKNO-WNXXX-XXXXXX").await.unwrap());
    let tp = k.query_order_by_client_id("tp-1").await.unwrap().unwrap();
    assert_eq!(tp.state, OrderState::Cancelled);

    v.set_price("XBTUSD", d("24000"));
    let l = k.query_order_by_client_id("lim-1").await.unwrap().unwrap();
    assert_eq!(
        (l.order_id, l.state, l.avg_price),
        (limit.order_id, OrderState::Filled, Some(d("25000")))
    );
    assert!(k.open_orders().await.unwrap().is_empty());
    let fills = k.fills_since(0).await.unwrap();
    assert_eq!(
        fills.iter().map(|f| f.price).collect::<Vec<_>>(),
        vec![d("27000"), d("25000")]
    );
}

#[tokio::test]
async fn ohlc_backfill_returns_closed_candles_since() {
    let v = KrakenVenue::start().await;
    let k = Kraken::new(v.config()).unwrap();
    let c = k.ohlc("BTCUSD", 1, 1688671260).await.unwrap();
    assert_eq!(
        c.iter().map(|c| c.ts).collect::<Vec<_>>(),
        vec![1688671260, 1688671320, 1688671380]
    );
    assert_eq!(
        (c[0].open, c[0].high, c[0].low, c[0].close),
        (d("30304.5"), d("30304.5"), d("30300.0"), d("30300.0"))
    );
    assert_eq!(k.ohlc("BTCUSD", 1, 0).await.unwrap().len(), 4);
    // A still-running candle (open time now) is not returned.
    let now = trading_core::Clock::now(&trading_core::WallClock);
    v.state()
        .ohlc
        .get_mut("XXBTZUSD")
        .unwrap()
        .push(serde_json::json!([
            now - now % 60,
            "1",
            "1",
            "1",
            "1",
            "1",
            "1",
            1
        ]));
    assert_eq!(k.ohlc("BTCUSD", 1, 0).await.unwrap().len(), 4);
    let e = k.ohlc("DOGEXYZ", 1, 0).await.unwrap_err();
    assert!(matches!(e, ExchangeError::UnknownSymbol(_)));
}

async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<MarketEvent>) -> MarketEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a market event within 10 s")
        .expect("feed alive")
}

async fn next_candle(
    rx: &mut tokio::sync::mpsc::Receiver<MarketEvent>,
) -> (String, u32, host_exchange::Candle) {
    loop {
        if let MarketEvent::Candle {
            symbol,
            interval_minutes,
            candle,
        } = next_event(rx).await
        {
            return (symbol, interval_minutes, candle);
        }
    }
}

#[tokio::test]
async fn websocket_candles_tickers_and_reconnects() {
    let v = KrakenVenue::start().await;
    let cfg = v.config();
    let (_feed, mut rx) =
        kraken::websocket::market_feed(&cfg, &["BTCUSD".to_string()], 60).unwrap();
    assert_eq!(next_event(&mut rx).await, MarketEvent::Connected);
    v.wait_subscriptions(2).await;
    {
        let st = v.state();
        let s = &st.subscriptions;
        assert_eq!(s[0]["method"], "subscribe");
        assert_eq!(s[0]["params"]["channel"], "ohlc");
        assert_eq!(s[0]["params"]["symbol"][0], "BTC/USD");
        assert_eq!(s[0]["params"]["interval"], 60);
        assert_eq!(s[1]["params"]["channel"], "ticker");
    }
    v.push_ohlc(
        "BTC/USD",
        60,
        "2023-10-04T16:00:00.000000000Z",
        27470.1,
        27470.1,
        27470.1,
        27470.1,
        0.0015,
    );
    v.push_ohlc(
        "BTC/USD",
        60,
        "2023-10-04T16:00:00.000000000Z",
        27470.1,
        27520.0,
        27400.5,
        27500.2,
        1.25,
    );
    v.push_ticker("BTC/USD", 27500.1, 27500.3, 27500.2);
    v.push_ohlc(
        "BTC/USD",
        60,
        "2023-10-04T17:00:00.000000000Z",
        27500.2,
        27500.2,
        27500.2,
        27500.2,
        0.1,
    );
    match next_event(&mut rx).await {
        MarketEvent::Ticker(t) => {
            assert_eq!(
                (t.symbol.as_str(), t.bid, t.ask, t.last),
                ("BTCUSD", d("27500.1"), d("27500.3"), d("27500.2"))
            )
        }
        other => panic!("{other:?}"),
    }
    let (sym, iv, c) = next_candle(&mut rx).await;
    assert_eq!((sym.as_str(), iv, c.ts), ("BTCUSD", 60, 1696435200));
    assert_eq!(
        (c.open, c.high, c.low, c.close, c.volume),
        (
            d("27470.1"),
            d("27520"),
            d("27400.5"),
            d("27500.2"),
            d("1.25")
        )
    );

    // The venue drops the connection: the feed reconnects, resubscribes, and keeps its candle.
    v.drop_ws();
    assert_eq!(next_event(&mut rx).await, MarketEvent::Disconnected);
    assert_eq!(next_event(&mut rx).await, MarketEvent::Connected);
    v.wait_subscriptions(4).await;
    v.push_ohlc(
        "BTC/USD",
        60,
        "2023-10-04T18:00:00.000000000Z",
        1.0,
        1.0,
        1.0,
        1.0,
        1.0,
    );
    let (_, _, c) = next_candle(&mut rx).await;
    assert_eq!((c.ts, c.close), (1696438800, d("27500.2")));

    // A feed that goes silent (no heartbeats) is treated as dead and replaced.
    v.set_silent(true);
    assert_eq!(next_event(&mut rx).await, MarketEvent::Disconnected);
    v.set_silent(false);
    assert_eq!(next_event(&mut rx).await, MarketEvent::Connected);
    v.wait_subscriptions(6).await;
    assert_eq!(v.state().ws_connections, 3);
}
