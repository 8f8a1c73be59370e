//! The Coinbase Advanced Trade adapter against a loopback Coinbase that verifies every CDP JWT:
//! the documented payloads, orders with client ids, no duplicate under ambiguous failures, 429
//! with Retry-After, 5xx retries, cancel, open orders, fills, accounts, candle backfill, and the
//! websocket feed with reconnects.

use host_exchange::loopback as support;

use host_exchange::coinbase::{self, http, Coinbase, CoinbaseCredentials};
use host_exchange::{Exchange, ExchangeError, MarketEvent, OrderKind, OrderSpec, OrderState, Side};
use p256::pkcs8::LineEnding;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::time::Duration;
use support::coinbase_venue::{CoinbaseVenue, KEY_NAME};
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
    let o = http::parse_order(&test_data("coinbase", "get_order.json")["order"]).unwrap();
    assert_eq!(o.order_id, "0000-000000-000000");
    assert_eq!(o.client_id.as_deref(), Some("11111-000000-000000"));
    assert_eq!(
        (o.symbol.as_str(), o.side, o.state),
        ("BTCUSD", Side::Buy, OrderState::Open)
    );
    assert_eq!(
        o.kind,
        OrderKind::Limit {
            price: d("10000.00")
        }
    );
    assert_eq!(
        (o.qty, o.filled_qty, o.avg_price),
        (d("0.001"), d("0.001"), Some(d("50")))
    );

    let l = &test_data("coinbase", "list_orders.json")["orders"][0];
    let o = http::parse_order(l).unwrap();
    assert_eq!(
        o.kind,
        OrderKind::StopLoss {
            trigger: d("10000.00")
        }
    );
    assert_eq!((o.side, o.avg_price), (Side::Sell, None));

    let f = http::parse_fill(&test_data("coinbase", "list_fills.json")["fills"][0]).unwrap();
    assert_eq!(
        (f.trade_id.as_str(), f.order_id.as_str()),
        ("1111-11111-111111", "0000-000000-000000")
    );
    assert_eq!(
        (f.price, f.qty, f.fee, f.side),
        (d("10000.00"), d("0.001"), d("1.25"), Side::Buy)
    );
    assert_eq!(f.ts_ms, 1622455199000);

    let mut b = BTreeMap::new();
    http::parse_accounts(&test_data("coinbase", "accounts.json"), &mut b).unwrap();
    assert_eq!(b["BTC"], d("1.23"));

    let c = http::parse_candles(&test_data("coinbase", "candles.json")).unwrap();
    assert_eq!(
        (c[0].ts, c[0].close, c[0].volume),
        (1639508050, d("140.21"), d("56437345"))
    );

    let ok = test_data("coinbase", "create_order.json");
    assert_eq!(ok["success_response"]["order_id"], "11111-00000-000000");
    let bad = test_data("coinbase", "create_order_error.json");
    assert_eq!(bad["error_response"]["error"], "INSUFFICIENT_FUND");
}

#[tokio::test]
async fn every_request_carries_a_jwt_the_venue_verifies() {
    let v = CoinbaseVenue::start().await;
    let c = Coinbase::new(v.config()).unwrap();
    let b = c.balances().await.unwrap();
    assert_eq!((b["BTC"], b["USD"]), (d("1.23"), d("10000")));
    assert!(
        v.state().unauthorized.is_empty(),
        "{:?}",
        v.state().unauthorized
    );

    // A key the venue does not know: 401, typed as an auth failure, not retried.
    let other = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let pem = other.to_sec1_pem(LineEnding::LF).unwrap();
    let mut cfg = v.config();
    cfg.credentials = Some(CoinbaseCredentials::new(KEY_NAME, &pem).unwrap());
    let before = v.count("GET /accounts");
    let e = Coinbase::new(cfg).unwrap().balances().await.unwrap_err();
    assert!(matches!(e, ExchangeError::Auth(_)), "{e}");
    assert_eq!(v.count("GET /accounts"), before + 1);
    assert_eq!(
        v.state().unauthorized.last().unwrap().1,
        "signature does not verify"
    );

    // The right key under another name.
    let mut cfg = v.config();
    cfg.credentials = Some(
        CoinbaseCredentials::new(
            "organizations/x/apiKeys/y",
            support::coinbase_venue::PRIVATE_KEY_PEM,
        )
        .unwrap(),
    );
    assert!(matches!(
        Coinbase::new(cfg).unwrap().balances().await,
        Err(ExchangeError::Auth(_))
    ));

    // A token for another endpoint is refused: the uri claim binds method, host and path.
    let creds =
        CoinbaseCredentials::new(KEY_NAME, support::coinbase_venue::PRIVATE_KEY_PEM).unwrap();
    let host = v.rest_url.trim_start_matches("http://");
    let now = trading_core::Clock::now(&trading_core::WallClock);
    let token = coinbase::auth::jwt(
        &creds,
        Some(&format!("GET {host}/api/v3/brokerage/accounts")),
        now,
    );
    let status = reqwest::Client::new()
        .get(format!(
            "{}/api/v3/brokerage/orders/historical/fills",
            v.rest_url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
    let status = reqwest::Client::new()
        .get(format!("{}/api/v3/brokerage/accounts", v.rest_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
}

#[tokio::test]
async fn market_order_fills_with_client_id_into_fills_and_balances() {
    let v = CoinbaseVenue::start().await;
    let c = Coinbase::new(v.config()).unwrap();
    let ack = c
        .place_order(&spec("cb-buy-1", Side::Buy, OrderKind::Market, "0.1"))
        .await
        .unwrap();
    assert!(!ack.recovered);
    let orders = v.orders();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        (
            orders[0].order_id.as_str(),
            orders[0].client_order_id.as_str()
        ),
        (ack.order_id.as_str(), "cb-buy-1")
    );
    assert_eq!(orders[0].configuration, "market_market_ioc");

    let st = c
        .query_order_by_client_id("cb-buy-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (st.state, st.filled_qty, st.avg_price),
        (OrderState::Filled, d("0.1"), Some(d("30000")))
    );
    assert_eq!(c.http().order(&ack.order_id).await.unwrap(), st);
    assert!(c
        .query_order_by_client_id("unknown")
        .await
        .unwrap()
        .is_none());

    let fills = c.fills_since(0).await.unwrap();
    assert_eq!(fills.len(), 1);
    assert_eq!(
        (fills[0].qty, fills[0].price, fills[0].fee),
        (d("0.1"), d("30000"), d("18"))
    );
    assert!(c
        .fills_since(fills[0].ts_ms / 1000 + 1)
        .await
        .unwrap()
        .is_empty());

    let b = c.balances().await.unwrap();
    assert_eq!((b["USD"], b["BTC"]), (d("6982"), d("1.33")));

    let e = c
        .place_order(&spec("cb-buy-2", Side::Buy, OrderKind::Market, "100"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ExchangeError::Venue { ref code, .. } if code == "INSUFFICIENT_FUND"),
        "{e}"
    );
    assert_eq!(v.count("POST /orders"), 2);
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
        let v = CoinbaseVenue::start().await;
        let c = Coinbase::new(v.config()).unwrap();
        v.inject("POST /orders", fault, 1);
        let id = format!("cb-amb-{i}");
        let ack = c
            .place_order(&spec(&id, Side::Sell, OrderKind::Market, "0.5"))
            .await
            .unwrap();
        assert!(ack.recovered, "{fault:?}");
        assert_eq!(v.count("POST /orders"), 1, "{fault:?}: sent once");
        assert_eq!(v.orders().len(), 1);
        assert_eq!(v.orders()[0].order_id, ack.order_id);
        assert_eq!(v.fills().len(), 1);
        assert!(v.count("GET /orders/historical/batch") >= 1);
    }
}

#[tokio::test]
async fn lost_before_apply_is_sent_again_once() {
    let v = CoinbaseVenue::start().await;
    let c = Coinbase::new(v.config()).unwrap();
    v.inject("POST /orders", Fault::ServerError, 1);
    v.inject("POST /orders", Fault::Hang, 1);
    let ack = c
        .place_order(&spec("cb-re-1", Side::Buy, OrderKind::Market, "0.01"))
        .await
        .unwrap();
    assert!(!ack.recovered);
    assert_eq!(v.count("POST /orders"), 3);
    assert_eq!(v.orders().len(), 1);
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_and_5xx_is_retried() {
    let v = CoinbaseVenue::start().await;
    let c = Coinbase::new(v.config()).unwrap();
    v.inject(
        "GET /accounts",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    c.balances().await.unwrap();
    let t = v.arrivals("GET /accounts");
    assert_eq!(t.len(), 2);
    assert!(
        t[1] - t[0] >= Duration::from_secs(1),
        "retried after {:?}",
        t[1] - t[0]
    );

    // A 429 on placement is a clear refusal: retried without a lookup.
    v.inject(
        "POST /orders",
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    c.place_order(&spec("cb-rl", Side::Buy, OrderKind::Market, "0.01"))
        .await
        .unwrap();
    assert_eq!(v.count("POST /orders"), 2);
    assert_eq!(v.count("GET /orders/historical/batch"), 0);

    v.inject("GET /orders/historical/fills", Fault::ServerError, 2);
    assert_eq!(c.fills_since(0).await.unwrap().len(), 1);
    assert_eq!(v.count("GET /orders/historical/fills"), 3);
}

#[tokio::test]
async fn resting_orders_cancel_and_stop_limits_trigger() {
    let v = CoinbaseVenue::start().await;
    let c = Coinbase::new(v.config()).unwrap();
    let lim = c
        .place_order(&spec(
            "cb-lim",
            Side::Buy,
            OrderKind::Limit { price: d("25000") },
            "0.1",
        ))
        .await
        .unwrap();
    let sl = c
        .place_order(&spec(
            "cb-sl",
            Side::Sell,
            OrderKind::StopLoss {
                trigger: d("28000"),
            },
            "0.2",
        ))
        .await
        .unwrap();
    let tp = c
        .place_order(&spec(
            "cb-tp",
            Side::Sell,
            OrderKind::TakeProfit {
                trigger: d("35000"),
            },
            "0.3",
        ))
        .await
        .unwrap();
    let sent = v.orders();
    let cfg = &sent[1].config;
    assert_eq!(sent[1].configuration, "stop_limit_stop_limit_gtc");
    assert_eq!(
        (cfg["stop_price"].as_str(), cfg["limit_price"].as_str()),
        (Some("28000"), Some("27720"))
    );
    assert_eq!(cfg["stop_direction"], "STOP_DIRECTION_STOP_DOWN");
    assert_eq!(sent[2].config["stop_direction"], "STOP_DIRECTION_STOP_UP");

    let mut open = c.open_orders().await.unwrap();
    open.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    assert_eq!(
        open.iter().map(|o| o.kind).collect::<Vec<_>>(),
        vec![
            OrderKind::Limit { price: d("25000") },
            OrderKind::StopLoss {
                trigger: d("28000")
            },
            OrderKind::TakeProfit {
                trigger: d("35000")
            },
        ]
    );
    v.set_price("BTC-USD", d("27900"));
    let s = c.query_order_by_client_id("cb-sl").await.unwrap().unwrap();
    assert_eq!(
        (s.order_id, s.state, s.avg_price),
        (sl.order_id, OrderState::Filled, Some(d("27900")))
    );

    assert!(c.cancel_order(&tp.order_id).await.unwrap());
    assert!(!c.cancel_order(&tp.order_id).await.unwrap());
    assert_eq!(
        c.query_order_by_client_id("cb-tp")
            .await
            .unwrap()
            .unwrap()
            .state,
        OrderState::Cancelled
    );
    v.set_price("BTC-USD", d("24000"));
    let l = c.query_order_by_client_id("cb-lim").await.unwrap().unwrap();
    assert_eq!(
        (l.order_id, l.state, l.avg_price),
        (lim.order_id, OrderState::Filled, Some(d("25000")))
    );
    assert!(c.open_orders().await.unwrap().is_empty());
}

#[tokio::test]
async fn candle_backfill_pages_through_the_window() {
    let v = CoinbaseVenue::start().await;
    let c = Coinbase::new(v.config()).unwrap();
    let now = trading_core::Clock::now(&trading_core::WallClock);
    let since = now - now % 3600 - 500 * 3600;
    let rows = (0..400)
        .map(|i| {
            let p = Decimal::from(30000 + i);
            (
                since + i * 3600,
                p,
                p + Decimal::ONE,
                p - Decimal::ONE,
                p,
                d("1.5"),
            )
        })
        .collect();
    v.set_candles("BTC-USD", rows);
    let got = c.ohlc("BTCUSD", 60, since).await.unwrap();
    assert_eq!(got.len(), 400);
    assert!(got.windows(2).all(|w| w[1].ts - w[0].ts == 3600));
    assert_eq!(
        (got[399].ts, got[399].close),
        (since + 399 * 3600, d("30399"))
    );
    assert_eq!(
        v.count("GET /products/BTC-USD/candles"),
        2,
        "300 candles per call"
    );
    assert!(matches!(
        c.ohlc("BTCUSD", 7, since).await,
        Err(ExchangeError::Unsupported(_))
    ));
}

async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<MarketEvent>) -> MarketEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a market event within 10 s")
        .expect("feed alive")
}

#[tokio::test]
async fn websocket_candles_tickers_and_reconnects() {
    let v = CoinbaseVenue::start().await;
    let (_feed, mut rx) =
        coinbase::websocket::market_feed(&v.config(), &["BTCUSD".to_string()]).unwrap();
    assert_eq!(next_event(&mut rx).await, MarketEvent::Connected);
    v.wait_subscriptions(3).await;
    {
        let st = v.state();
        let chans: Vec<&str> = st
            .subscriptions
            .iter()
            .map(|s| s["channel"].as_str().unwrap())
            .collect();
        assert_eq!(chans, ["candles", "ticker", "heartbeats"]);
        assert_eq!(st.subscriptions[0]["product_ids"][0], "BTC-USD");
        assert!(
            st.subscriptions[0]["jwt"].is_string(),
            "signed subscription"
        );
    }
    v.push_candle(
        "BTC-USD", 1688998200, "30000", "30010", "29990", "30005", "1.5",
    );
    v.push_ticker("BTC-USD", "30004.99", "30005.01", "30005");
    v.push_candle(
        "BTC-USD", 1688998500, "30005", "30005", "30005", "30005", "0.1",
    );
    match next_event(&mut rx).await {
        MarketEvent::Ticker(t) => assert_eq!(
            (t.symbol.as_str(), t.bid, t.last),
            ("BTCUSD", d("30004.99"), d("30005"))
        ),
        other => panic!("{other:?}"),
    }
    match next_event(&mut rx).await {
        MarketEvent::Candle {
            symbol,
            interval_minutes,
            candle,
        } => {
            assert_eq!(
                (symbol.as_str(), interval_minutes, candle.ts),
                ("BTCUSD", 5, 1688998200)
            );
            assert_eq!(
                (candle.high, candle.close, candle.volume),
                (d("30010"), d("30005"), d("1.5"))
            );
        }
        other => panic!("{other:?}"),
    }
    v.drop_ws();
    assert_eq!(next_event(&mut rx).await, MarketEvent::Disconnected);
    assert_eq!(next_event(&mut rx).await, MarketEvent::Connected);
    v.wait_subscriptions(6).await;
    v.push_candle("BTC-USD", 1688998800, "1", "1", "1", "1", "1");
    match next_event(&mut rx).await {
        MarketEvent::Candle { candle, .. } => assert_eq!(candle.ts, 1688998500),
        other => panic!("{other:?}"),
    }
    v.set_silent(true);
    assert_eq!(next_event(&mut rx).await, MarketEvent::Disconnected);
    v.set_silent(false);
    assert_eq!(next_event(&mut rx).await, MarketEvent::Connected);
    v.wait_subscriptions(9).await;
    assert_eq!(v.state().ws_connections, 3);
}
