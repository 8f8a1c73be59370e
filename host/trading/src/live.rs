//! Live execution: approved orders go to an exchange adapter, venue fills
//! come back into the shared ledger. Every order is written ahead (status
//! `pending_send`, committed) before it is sent, with a client order id the
//! venue keeps, so a crash at any point is resolved at the next start by
//! asking the venue: an order it knows is adopted, one it never saw is sent
//! again (if still fresh) or abandoned, never placed twice. Venue fills are
//! keyed by their trade id, so none is booked twice or lost.

use host_exchange::{
    self as exchange, Exchange, ExchangeError, ExchangesSettings, OrderKind, OrderSpec, Side, Venue,
};
use host_store::account::{self, AccountError};
use rusqlite::{params, Connection, OptionalExtension};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use trading_core::Clock;
use trading_core::{
    CloseReason, Engine, EngineEvent, Fill, FillKind, OrderRequest, OrderSide, OrderType,
    PendingOrder,
};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("exchange: {0}")]
    Exchange(#[from] ExchangeError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("stored order {0} is unreadable: {1}")]
    Corrupt(String, String),
    #[error("cannot start the exchange runtime: {0}")]
    Runtime(std::io::Error),
}

/// What the startup reconciliation with the venue did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VenueReconciliation {
    /// Written-ahead orders the venue knew: adopted.
    pub adopted: Vec<String>,
    /// Written-ahead orders the venue never saw, sent now.
    pub resent: Vec<String>,
    /// Written-ahead orders the venue never saw, too old to send.
    pub abandoned: Vec<String>,
    /// Venue fills booked now (made while the host was down or before it wrote them).
    pub fills_booked: usize,
    /// Stop-loss / take-profit orders the venue no longer had, placed again.
    pub exits_replaced: Vec<String>,
    /// Ledger vs venue balances after booking (asset, ledger, venue), when they differ.
    pub balance_mismatches: Vec<(String, Decimal, Decimal)>,
}

/// A sent order: its client id, and the venue's order id or why it was not placed.
pub type SendOutcome = (String, Result<String, String>);

/// An exchange adapter with the runtime its calls run on.
pub struct LiveVenue {
    rt: tokio::runtime::Runtime,
    exchange: Box<dyn Exchange>,
    /// Quote currency of the account (USD).
    pub quote: String,
    /// A written-ahead order older than this at restart is abandoned, not sent.
    pub resend_window_secs: i64,
}

fn base_asset(symbol: &str, quote: &str) -> String {
    symbol.strip_suffix(quote).unwrap_or(symbol).to_string()
}

fn side(s: OrderSide) -> Side {
    match s {
        OrderSide::Buy => Side::Buy,
        OrderSide::Sell => Side::Sell,
    }
}

impl LiveVenue {
    pub fn new(exchange: Box<dyn Exchange>, quote: &str) -> Result<LiveVenue, LiveError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LiveError::Runtime)?;
        Ok(LiveVenue {
            rt,
            exchange,
            quote: quote.to_string(),
            resend_window_secs: 15 * 60,
        })
    }

    pub fn name(&self) -> &'static str {
        self.exchange.name()
    }

    /// Closed candles of `symbol` since `since` (unix seconds), for backfill.
    pub fn ohlc(
        &self,
        symbol: &str,
        interval_minutes: u32,
        since: i64,
    ) -> Result<Vec<trading_core::Candle>, LiveError> {
        let f = trading_core::money::to_f64;
        Ok(self
            .rt
            .block_on(self.exchange.ohlc(symbol, interval_minutes, since))?
            .into_iter()
            .map(|c| trading_core::Candle {
                ts: c.ts,
                open: f(c.open),
                high: f(c.high),
                low: f(c.low),
                close: f(c.close),
                volume: f(c.volume),
            })
            .collect())
    }

    /// The account's taker fee on `symbol` in basis points.
    pub fn fee_bps(&self, symbol: &str) -> Result<Decimal, LiveError> {
        Ok(self.rt.block_on(self.exchange.taker_fee(symbol))? * Decimal::from(10_000))
    }

    /// The venue's balances (host asset names).
    pub fn balances(&self) -> Result<BTreeMap<String, Decimal>, LiveError> {
        Ok(self.rt.block_on(self.exchange.balances())?)
    }

    fn spec(client_id: &str, r: &OrderRequest) -> OrderSpec {
        let kind = match (r.order_type, r.trigger_price, r.close_reason) {
            (OrderType::Limit, Some(p), _) => OrderKind::Limit { price: p },
            (OrderType::Stop, Some(p), CloseReason::TakeProfit) => {
                OrderKind::TakeProfit { trigger: p }
            }
            (OrderType::Stop, Some(p), _) => OrderKind::StopLoss { trigger: p },
            _ => OrderKind::Market,
        };
        OrderSpec {
            client_id: client_id.to_string(),
            symbol: r.symbol.clone(),
            side: side(r.side),
            kind,
            qty: r.qty,
        }
    }

    /// Writes `orders` ahead as `pending_send` (the caller commits), so the
    /// sends that follow can always be resolved after a crash.
    pub fn write_ahead(
        &self,
        conn: &Connection,
        mode: &str,
        orders: &[PendingOrder],
        now: i64,
    ) -> Result<(), LiveError> {
        account::record_orders(conn, mode, self.name(), orders, now)?;
        for o in orders {
            let id = account::client_order_id(conn, mode, o.id)?;
            conn.execute(
                "UPDATE orders SET status = 'pending_send' WHERE client_order_id = ?1",
                [&id],
            )?;
        }
        Ok(())
    }

    /// Sends every written-ahead order; each outcome is saved as it comes.
    pub fn send_pending(&self, conn: &Connection, now: i64) -> Result<Vec<SendOutcome>, LiveError> {
        let rows = pending_rows(conn)?;
        let mut out = Vec::new();
        for (client_id, request) in rows {
            crate::failpoint::hit("live.before_send");
            let spec = Self::spec(&client_id, &request);
            let r = self.rt.block_on(self.exchange.place_order(&spec));
            crate::failpoint::hit("live.after_send");
            match r {
                Ok(ack) => {
                    conn.execute(
                        "UPDATE orders SET status = 'open', venue_order_id = ?2, updated_ts = ?3 WHERE client_order_id = ?1",
                        params![client_id, ack.order_id, now],
                    )?;
                    out.push((client_id, Ok(ack.order_id)));
                }
                Err(e) if e.is_ambiguous() => {
                    // unknown outcome: stays pending_send, resolved by the next reconcile
                    out.push((client_id, Err(e.to_string())));
                }
                Err(e) => {
                    conn.execute(
                        "UPDATE orders SET status = 'rejected', reason = ?2, updated_ts = ?3 WHERE client_order_id = ?1",
                        params![client_id, e.to_string(), now],
                    )?;
                    out.push((client_id, Err(e.to_string())));
                }
            }
        }
        Ok(out)
    }

    /// Books every venue fill not booked yet into `engine` and the database
    /// (the caller's transaction) and returns the engine's events. A fill is
    /// booked at the venue's time, or at `now` (the shell's injected clock) if
    /// that is earlier, so the ledger never runs ahead of the clock that drives
    /// it (a replayed market against a real venue).
    pub fn book_fills(
        &self,
        conn: &Connection,
        mode: &str,
        engine: &mut Engine,
        now: i64,
    ) -> Result<Vec<EngineEvent>, LiveError> {
        let since: i64 = conn.query_row(
            "SELECT COALESCE(MAX(ts), 0) FROM fills WHERE mode = ?1 AND venue_fill_id IS NOT NULL",
            [mode],
            |r| r.get(0),
        )?;
        let fills = self
            .rt
            .block_on(self.exchange.fills_since((since - 3_600).max(0)))?;
        let mut events = Vec::new();
        for f in fills {
            let known: bool = conn
                .query_row(
                    "SELECT 1 FROM fills WHERE venue_fill_id = ?1",
                    [&f.trade_id],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            if known {
                continue;
            }
            let order: Option<(String, String, Option<i64>)> = conn
                .query_row(
                    "SELECT client_order_id, request, id FROM orders WHERE venue_order_id = ?1",
                    [&f.order_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let request: Option<OrderRequest> = match &order {
                Some((id, json, _)) => Some(
                    serde_json::from_str(json)
                        .map_err(|e| LiveError::Corrupt(id.clone(), e.to_string()))?,
                ),
                None => None,
            };
            let kind = match (f.side, &request) {
                (Side::Buy, Some(r)) => FillKind::Buy {
                    intent: r.intent,
                    stop_loss: r.stop_loss,
                    take_profit: r.take_profit,
                    tag: r.tag.clone(),
                },
                (Side::Buy, None) => FillKind::Buy {
                    intent: trading_core::Intent::Position,
                    stop_loss: None,
                    take_profit: None,
                    tag: "venue".into(),
                },
                (Side::Sell, Some(r)) => FillKind::Sell {
                    reason: r.close_reason,
                },
                (Side::Sell, None) => FillKind::Sell {
                    reason: CloseReason::Reconcile,
                },
            };
            let fill = Fill {
                symbol: f.symbol.clone(),
                qty: f.qty,
                price: f.price,
                fee: f.fee,
                time: f.ts_ms.div_euclid(1000).min(now),
                kind,
            };
            let ev = engine.apply_fill(None, fill).map_err(AccountError::from)?;
            account::record_events(conn, mode, &ev, now)?;
            let client_id = order.as_ref().map(|o| o.0.clone());
            conn.execute(
                "UPDATE fills SET venue_fill_id = ?1, client_order_id = ?2 WHERE id = (SELECT MAX(id) FROM fills WHERE mode = ?3)",
                params![f.trade_id, client_id, mode],
            )?;
            if let Some(id) = &client_id {
                conn.execute(
                    "UPDATE orders SET status = 'filled' WHERE client_order_id = ?1",
                    [id],
                )?;
            }
            crate::failpoint::hit("live.after_fill");
            let closed = ev
                .iter()
                .any(|e| matches!(e, EngineEvent::PositionClosed(_)));
            if let (Side::Buy, Some(r), Some((coid, _, _))) = (f.side, &request, &order) {
                self.write_exits(conn, mode, coid, r, f.qty, now)?;
            }
            if closed {
                self.cancel_exits(conn, &f.symbol, now)?;
            }
            events.extend(ev);
        }
        Ok(events)
    }

    /// Writes ahead the exchange-native stop-loss and take-profit of an
    /// entry that just filled (sent with the next [`LiveVenue::send_pending`]).
    fn write_exits(
        &self,
        conn: &Connection,
        mode: &str,
        entry_id: &str,
        entry: &OrderRequest,
        qty: Decimal,
        now: i64,
    ) -> Result<(), LiveError> {
        for (suffix, trigger, reason) in [
            ("s", entry.stop_loss, CloseReason::StopLoss),
            ("t", entry.take_profit, CloseReason::TakeProfit),
        ] {
            let Some(trigger) = trigger else { continue };
            let request = OrderRequest {
                action: trading_core::Action::Close,
                side: OrderSide::Sell,
                order_type: OrderType::Stop,
                qty,
                trigger_price: Some(trigger),
                stop_loss: None,
                take_profit: None,
                decided_at: now,
                decision_price: trigger,
                close_reason: reason,
                clipped_from: None,
                ..entry.clone()
            };
            insert_order(
                conn,
                mode,
                self.name(),
                &format!("{entry_id}{suffix}"),
                &request,
                now,
            )?;
        }
        Ok(())
    }

    /// Cancels the resting stop-loss / take-profit of `symbol` (its position closed).
    fn cancel_exits(&self, conn: &Connection, symbol: &str, now: i64) -> Result<(), LiveError> {
        for (client_id, venue_id, _) in exit_rows(conn, symbol)? {
            if let Some(v) = &venue_id {
                self.rt.block_on(self.exchange.cancel_order(v))?;
            }
            conn.execute(
                "UPDATE orders SET status = 'cancelled', reason = 'position closed', updated_ts = ?2 WHERE client_order_id = ?1",
                params![client_id, now],
            )?;
        }
        Ok(())
    }

    /// Re-places a held position's stop-loss / take-profit the venue no longer
    /// has open (expired or cancelled while the host was down).
    fn replace_expired_exits(
        &self,
        conn: &Connection,
        mode: &str,
        engine: &Engine,
        now: i64,
    ) -> Result<Vec<String>, LiveError> {
        let open: std::collections::BTreeSet<String> = self
            .rt
            .block_on(self.exchange.open_orders())?
            .into_iter()
            .map(|o| o.order_id)
            .collect();
        let mut replaced = Vec::new();
        for pos in engine.portfolio().positions().values() {
            for (client_id, venue_id, request) in exit_rows(conn, &pos.symbol)? {
                if venue_id.as_ref().is_some_and(|v| open.contains(v)) {
                    continue;
                }
                conn.execute(
                    "UPDATE orders SET status = 'expired', updated_ts = ?2 WHERE client_order_id = ?1",
                    params![client_id, now],
                )?;
                let base = client_id
                    .split('r')
                    .next()
                    .unwrap_or(&client_id)
                    .to_string();
                let n: i64 = conn.query_row(
                    "SELECT COUNT(*) FROM orders WHERE client_order_id LIKE ?1 || 'r%'",
                    [&base],
                    |r| r.get(0),
                )?;
                let again = format!("{base}r{}", n + 1);
                let request = OrderRequest {
                    qty: pos.qty,
                    decided_at: now,
                    ..request
                };
                insert_order(conn, mode, self.name(), &again, &request, now)?;
                replaced.push(again);
            }
        }
        Ok(replaced)
    }

    /// Startup (L7): resolves written-ahead orders with the venue, books the
    /// fills made meanwhile, and compares balances (the venue wins: a
    /// difference is reported for a person to look at).
    pub fn reconcile(
        &self,
        conn: &mut Connection,
        mode: &str,
        engine: &mut Engine,
        now: i64,
    ) -> Result<(VenueReconciliation, Vec<EngineEvent>), LiveError> {
        let mut rec = VenueReconciliation::default();
        for (client_id, request) in pending_rows(conn)? {
            match self
                .rt
                .block_on(self.exchange.query_order_by_client_id(&client_id))?
            {
                Some(st) => {
                    conn.execute(
                        "UPDATE orders SET status = 'open', venue_order_id = ?2, updated_ts = ?3 WHERE client_order_id = ?1",
                        params![client_id, st.order_id, now],
                    )?;
                    rec.adopted.push(client_id);
                }
                None if now - request.decided_at <= self.resend_window_secs => {
                    rec.resent.push(client_id)
                }
                None => {
                    conn.execute(
                        "UPDATE orders SET status = 'abandoned', reason = 'never reached the venue; too old to send after the restart', updated_ts = ?2 WHERE client_order_id = ?1",
                        params![client_id, now],
                    )?;
                    rec.abandoned.push(client_id);
                }
            }
        }
        if !rec.resent.is_empty() {
            self.send_pending(conn, now)?;
        }
        let tx = conn.transaction()?;
        let events = self.book_fills(&tx, mode, engine, now)?;
        account::snapshot(&tx, mode, engine, now)?;
        tx.commit()?;
        rec.fills_booked = events
            .iter()
            .filter(|e| matches!(e, EngineEvent::Filled(_)))
            .count();
        rec.exits_replaced = self.replace_expired_exits(conn, mode, engine, now)?;
        self.send_pending(conn, now)?;
        rec.balance_mismatches = self.compare_balances(engine)?;
        Ok((rec, events))
    }

    /// Ledger vs venue, per asset: quote cash and each held base asset.
    pub fn compare_balances(
        &self,
        engine: &Engine,
    ) -> Result<Vec<(String, Decimal, Decimal)>, LiveError> {
        let venue = self.balances()?;
        let p = engine.portfolio();
        let mut ledger: BTreeMap<String, Decimal> = BTreeMap::new();
        ledger.insert(self.quote.clone(), p.cash());
        for pos in p.positions().values() {
            *ledger
                .entry(base_asset(&pos.symbol, &self.quote))
                .or_default() += pos.qty;
        }
        let mut out = Vec::new();
        for (asset, l) in &ledger {
            let v = venue.get(asset).copied().unwrap_or_default();
            // cash to the cent (venues round their balances), assets exactly
            let differ = if *asset == self.quote {
                l.round_dp(2) != v.round_dp(2)
            } else {
                *l != v
            };
            if differ {
                out.push((asset.clone(), *l, v));
            }
        }
        Ok(out)
    }

    /// Cancels every open order the venue holds (shutdown, dead-man, kill).
    /// With `suspend_exits` (shutdown) a position's stop-loss / take-profit is
    /// kept as `suspended` and placed again at the next start.
    pub fn cancel_open(
        &self,
        conn: &Connection,
        now: i64,
        suspend_exits: bool,
    ) -> Result<usize, LiveError> {
        let open = self.rt.block_on(self.exchange.open_orders())?;
        let mut n = 0;
        for o in open {
            if self.rt.block_on(self.exchange.cancel_order(&o.order_id))? {
                n += 1;
                conn.execute(
                    "UPDATE orders SET status = CASE WHEN ?3 AND order_type = 'stop' AND side = 'sell' THEN 'suspended' ELSE 'cancelled' END,
                     reason = 'cancelled by the host', updated_ts = ?2 WHERE venue_order_id = ?1",
                    params![o.order_id, now, suspend_exits],
                )?;
            }
        }
        Ok(n)
    }
}

/// Writes one order ahead (`pending_send`) under `client_id`.
fn insert_order(
    conn: &Connection,
    mode: &str,
    venue: &str,
    client_id: &str,
    r: &OrderRequest,
    now: i64,
) -> Result<(), LiveError> {
    let request = serde_json::to_string(r)
        .map_err(|e| LiveError::Corrupt(client_id.to_string(), e.to_string()))?;
    conn.execute(
        "INSERT OR IGNORE INTO orders (client_order_id, mode, venue, symbol, side, order_type, qty, price, status, request, created_ts, updated_ts)
         VALUES (?1, ?2, ?3, ?4, 'sell', 'stop', ?5, ?6, 'pending_send', ?7, ?8, ?8)",
        params![client_id, mode, venue, r.symbol, r.qty.to_string(), r.trigger_price.map(|p| p.to_string()), request, now],
    )?;
    Ok(())
}

/// The open exchange-side exits of `symbol`: (client id, venue id, request).
fn exit_rows(
    conn: &Connection,
    symbol: &str,
) -> Result<Vec<(String, Option<String>, OrderRequest)>, LiveError> {
    let mut stmt = conn.prepare(
        "SELECT client_order_id, venue_order_id, request FROM orders WHERE symbol = ?1 AND status IN ('open', 'suspended') AND order_type = 'stop' AND side = 'sell'",
    )?;
    let rows = stmt.query_map([symbol], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, venue, json) = row?;
        let req: OrderRequest = serde_json::from_str(&json)
            .map_err(|e| LiveError::Corrupt(id.clone(), e.to_string()))?;
        out.push((id, venue, req));
    }
    Ok(out)
}

/// Written-ahead orders not yet resolved, oldest first.
fn pending_rows(conn: &Connection) -> Result<Vec<(String, OrderRequest)>, LiveError> {
    let mut stmt = conn.prepare(
        "SELECT client_order_id, request FROM orders WHERE status = 'pending_send' ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json) = row?;
        let req: OrderRequest = serde_json::from_str(&json)
            .map_err(|e| LiveError::Corrupt(id.clone(), e.to_string()))?;
        out.push((id, req));
    }
    Ok(out)
}

/// The adapter of `venue`, configured from `exchanges`, with keys from the
/// environment, on `clock`; Kraken's nonce high-water mark is kept in
/// `data_dir/kraken.nonce`.
pub fn connect(
    venue: Venue,
    exchanges: &ExchangesSettings,
    clock: &Arc<dyn Clock>,
    data_dir: &std::path::Path,
) -> Result<LiveVenue, LiveError> {
    let exchange: Box<dyn Exchange> = match venue {
        Venue::Kraken => {
            let mut cfg = exchange::kraken::KrakenConfig::from_settings(&exchanges.kraken)
                .with_env_credentials()?;
            cfg.clock = clock.clone();
            cfg.nonce_file = Some(data_dir.join("kraken.nonce"));
            Box::new(exchange::kraken::Kraken::new(cfg)?)
        }
        Venue::Coinbase => {
            let mut cfg = exchange::coinbase::CoinbaseConfig::from_settings(&exchanges.coinbase)
                .with_env_credentials()?;
            cfg.clock = clock.clone();
            Box::new(exchange::coinbase::Coinbase::new(cfg)?)
        }
    };
    LiveVenue::new(exchange, "USD")
}

/// Live market data: closed candles from the venue's websocket (the adapter
/// reconnects and resubscribes by itself), and a tick every few seconds of
/// wall time so the shell's jobs (stale-data check, dead-man's switch) run
/// when no candle comes.
pub struct ExchangeFeed {
    rt: tokio::runtime::Runtime,
    _handle: exchange::FeedHandle,
    rx: tokio::sync::mpsc::Receiver<exchange::MarketEvent>,
    tick: std::time::Duration,
    clock: Arc<dyn Clock>,
}

impl ExchangeFeed {
    pub fn connect(
        venue: Venue,
        exchanges: &ExchangesSettings,
        symbols: &[String],
        clock: Arc<dyn Clock>,
    ) -> Result<ExchangeFeed, LiveError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(LiveError::Runtime)?;
        let _guard = rt.enter();
        let (handle, rx) = match venue {
            Venue::Kraken => {
                let mut cfg = exchange::kraken::KrakenConfig::from_settings(&exchanges.kraken);
                cfg.clock = clock.clone();
                exchange::kraken::websocket::market_feed(&cfg, symbols, 60)?
            }
            Venue::Coinbase => {
                let mut cfg =
                    exchange::coinbase::CoinbaseConfig::from_settings(&exchanges.coinbase)
                        .with_env_credentials()?;
                cfg.clock = clock.clone();
                exchange::coinbase::websocket::market_feed(&cfg, symbols)?
            }
        };
        drop(_guard);
        Ok(ExchangeFeed {
            rt,
            _handle: handle,
            rx,
            tick: std::time::Duration::from_secs(5),
            clock,
        })
    }
}

impl crate::feed::Feed for ExchangeFeed {
    fn next_event(&mut self) -> Option<crate::feed::FeedEvent> {
        use crate::feed::FeedEvent;
        let next = self
            .rt
            .block_on(async { tokio::time::timeout(self.tick, self.rx.recv()).await });
        match next {
            Ok(None) => None,
            Ok(Some(exchange::MarketEvent::Candle {
                symbol,
                interval_minutes,
                candle,
            })) => {
                let interval = match interval_minutes {
                    5 => trading_core::Interval::M5,
                    1440 => trading_core::Interval::D1,
                    _ => trading_core::Interval::H1,
                };
                let f = trading_core::money::to_f64;
                Some(FeedEvent::Bar(
                    symbol,
                    interval,
                    trading_core::Candle {
                        ts: candle.ts,
                        open: f(candle.open),
                        high: f(candle.high),
                        low: f(candle.low),
                        close: f(candle.close),
                        volume: f(candle.volume),
                    },
                ))
            }
            Ok(Some(exchange::MarketEvent::Disconnected)) => {
                tracing::warn!("market feed disconnected; the adapter reconnects");
                Some(FeedEvent::Tick(self.clock.now()))
            }
            Ok(Some(_)) | Err(_) => Some(FeedEvent::Tick(self.clock.now())),
        }
    }
}
