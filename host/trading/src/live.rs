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
use std::collections::{BTreeMap, BTreeSet};
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

pub use host_store::payloads::{ExternalFill, TrueUp, VenueReconciliation};

/// An exchange adapter with the runtime its calls run on.
pub struct LiveVenue {
    rt: tokio::runtime::Runtime,
    exchange: Box<dyn Exchange>,
    /// Quote currency of the account (USD).
    pub quote: String,
    /// A written-ahead order (other than a protective exit) decided longer
    /// ago than this is abandoned, never sent: at a restart, after an outage.
    pub max_order_age_secs: i64,
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
            max_order_age_secs: 15 * 60,
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
    /// An order whose earlier send had no answer is looked up first (adopted
    /// if the venue has it); an order older than its age limit is abandoned,
    /// never sent (a market order decided before an outage must not go out
    /// after it).
    pub fn send_pending(&self, conn: &Connection, now: i64) -> Result<Vec<SendOutcome>, LiveError> {
        let rows = pending_rows(conn, now)?;
        let mut out = Vec::new();
        for (client_id, request, unknown) in rows {
            if unknown {
                if let Some(st) = self
                    .rt
                    .block_on(self.exchange.query_order_by_client_id(&client_id))?
                {
                    conn.execute(
                        "UPDATE orders SET status = 'open', venue_order_id = ?2, updated_ts = ?3 WHERE client_order_id = ?1",
                        params![client_id, st.order_id, now],
                    )?;
                    out.push((client_id, Sent::Adopted(st.order_id)));
                    continue;
                }
            }
            if self.too_old(&request, now) {
                let age = now - request.decided_at;
                abandon(conn, &client_id, age, now)?;
                out.push((client_id, Sent::Abandoned { age_secs: age }));
                continue;
            }
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
                    out.push((client_id, Sent::Placed(ack.order_id)));
                }
                Err(e) if e.is_ambiguous() => {
                    // unknown outcome: looked up before any further send
                    conn.execute(
                        "UPDATE orders SET status = 'send_unknown', reason = ?2, updated_ts = ?3 WHERE client_order_id = ?1",
                        params![client_id, e.to_string(), now],
                    )?;
                    out.push((client_id, Sent::Unknown(e)));
                }
                Err(e) => {
                    conn.execute(
                        "UPDATE orders SET status = 'rejected', reason = ?2, updated_ts = ?3 WHERE client_order_id = ?1",
                        params![client_id, e.to_string(), now],
                    )?;
                    out.push((client_id, Sent::Rejected(e)));
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
    ///
    /// All or nothing: when booking fails the engine is put back as it was, so
    /// memory and the rolled-back transaction agree and the next bar books the
    /// same fills again. A fill of no host order (a manual trade on the same
    /// account) or one the ledger cannot take is recorded in `external_fills`
    /// and never stops the fills after it; every held position leaves with its
    /// stop-loss / take-profit covering its whole quantity.
    pub fn book_fills(
        &self,
        conn: &Connection,
        mode: &str,
        engine: &mut Engine,
        now: i64,
    ) -> Result<Booked, LiveError> {
        let before = engine.clone();
        let r = self.book_fills_inner(conn, mode, engine, now);
        if r.is_err() {
            *engine = before;
        }
        r
    }

    fn book_fills_inner(
        &self,
        conn: &Connection,
        mode: &str,
        engine: &mut Engine,
        now: i64,
    ) -> Result<Booked, LiveError> {
        let since: i64 = conn.query_row(
            "SELECT MAX(COALESCE((SELECT MAX(ts) FROM fills WHERE mode = ?1 AND venue_fill_id IS NOT NULL), 0),
                        COALESCE((SELECT MAX(ts) FROM external_fills WHERE mode = ?1), 0))",
            [mode],
            |r| r.get(0),
        )?;
        let fills = self
            .rt
            .block_on(self.exchange.fills_since((since - 3_600).max(0)))?;
        let mut booked = Booked::default();
        let mut fresh = BTreeSet::new();
        for f in fills {
            let known: bool = conn
                .query_row(
                    "SELECT 1 FROM fills WHERE venue_fill_id = ?1 UNION ALL SELECT 1 FROM external_fills WHERE venue_fill_id = ?1",
                    [&f.trade_id],
                    |_| Ok(true),
                )
                .optional()?
                .unwrap_or(false);
            if known {
                continue;
            }
            let order: Option<(String, String)> = conn
                .query_row(
                    "SELECT client_order_id, request FROM orders WHERE venue_order_id = ?1",
                    [&f.order_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((client_id, json)) = order else {
                booked
                    .external
                    .push(record_external(conn, mode, &f, "no host order", now)?);
                continue;
            };
            let request: OrderRequest = serde_json::from_str(&json)
                .map_err(|e| LiveError::Corrupt(client_id.clone(), e.to_string()))?;
            let kind = match f.side {
                Side::Buy => FillKind::Buy {
                    intent: request.intent,
                    stop_loss: request.stop_loss,
                    take_profit: request.take_profit,
                    tag: request.tag.clone(),
                },
                Side::Sell => FillKind::Sell {
                    reason: request.close_reason,
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
            let ev = match engine.apply_fill(None, fill) {
                Ok(ev) => ev,
                Err(e) => {
                    let reason = format!("the ledger cannot book it: {e}");
                    booked
                        .external
                        .push(record_external(conn, mode, &f, &reason, now)?);
                    continue;
                }
            };
            account::record_events(conn, mode, &ev, now)?;
            conn.execute(
                "UPDATE fills SET venue_fill_id = ?1, client_order_id = ?2 WHERE id = (SELECT MAX(id) FROM fills WHERE mode = ?3)",
                params![f.trade_id, client_id, mode],
            )?;
            conn.execute(
                "UPDATE orders SET status = 'filled' WHERE client_order_id = ?1",
                [&client_id],
            )?;
            crate::failpoint::hit("live.after_fill");
            let entry = (f.side == Side::Buy).then_some(client_id.as_str());
            self.protect(conn, mode, engine, &f.symbol, entry, &mut fresh, now)?;
            booked.events.extend(ev);
        }
        // exits follow the positions (Modify signals, restarts, partial exits)
        let held: Vec<String> = engine.portfolio().positions().keys().cloned().collect();
        for symbol in held {
            self.protect(conn, mode, engine, &symbol, None, &mut fresh, now)?;
        }
        Ok(booked)
    }

    /// Makes the exchange-side stop-loss and take-profit of `symbol` cover
    /// the whole position at its current triggers: an exit of the wrong size
    /// or price is replaced (cancelled at the venue, a new one written ahead,
    /// sent with the next [`LiveVenue::send_pending`]); one written in this
    /// booking and not sent yet (`fresh`) is resized in place; with no
    /// position left, every exit is cancelled. `entry` names the client id new
    /// exits are numbered after (the entry that just filled).
    #[allow(clippy::too_many_arguments)]
    fn protect(
        &self,
        conn: &Connection,
        mode: &str,
        engine: &Engine,
        symbol: &str,
        entry: Option<&str>,
        fresh: &mut BTreeSet<String>,
        now: i64,
    ) -> Result<(), LiveError> {
        let Some(pos) = engine.portfolio().position(symbol) else {
            return self.cancel_exits(conn, symbol, now);
        };
        let exits = active_exit_rows(conn, symbol)?;
        for (suffix, reason, trigger) in [
            ("s", CloseReason::StopLoss, pos.stop_loss),
            ("t", CloseReason::TakeProfit, pos.take_profit),
        ] {
            let mine: Vec<&ExitRow> = exits
                .iter()
                .filter(|e| e.request.close_reason == reason)
                .collect();
            if let (Some(t), [only]) = (trigger, mine.as_slice()) {
                if only.request.qty == pos.qty && only.request.trigger_price == Some(t) {
                    continue;
                }
                if fresh.contains(&only.client_id) {
                    let request = OrderRequest {
                        qty: pos.qty,
                        trigger_price: Some(t),
                        decision_price: t,
                        ..only.request.clone()
                    };
                    update_unsent(conn, &only.client_id, &request, now)?;
                    continue;
                }
            }
            for old in &mine {
                self.retire(conn, old, fresh, now)?;
            }
            let Some(trigger) = trigger else { continue };
            let base = match (entry, mine.first()) {
                (Some(e), _) => format!("{e}{suffix}"),
                (None, Some(old)) => old.client_id.clone(),
                (None, None) => match last_entry(conn, symbol)? {
                    Some(e) => format!("{e}{suffix}"),
                    None => {
                        tracing::warn!("{symbol}: no host entry to number its exits after; the position is not protected on the venue");
                        continue;
                    }
                },
            };
            let client_id = unused_id(conn, &base)?;
            let request = OrderRequest {
                symbol: symbol.to_string(),
                action: trading_core::Action::Close,
                side: OrderSide::Sell,
                order_type: OrderType::Stop,
                qty: pos.qty,
                trigger_price: Some(trigger),
                stop_loss: None,
                take_profit: None,
                intent: pos.intent,
                tag: pos.tag.clone(),
                decided_at: now,
                decision_price: trigger,
                close_reason: reason,
                clipped_from: None,
            };
            insert_order(conn, mode, self.name(), &client_id, &request, now)?;
            fresh.insert(client_id);
        }
        Ok(())
    }

    /// Takes an exit out of service: cancelled at the venue if it may rest
    /// there, then marked `replaced`.
    fn retire(
        &self,
        conn: &Connection,
        old: &ExitRow,
        fresh: &BTreeSet<String>,
        now: i64,
    ) -> Result<(), LiveError> {
        let venue_id = match (old.status.as_str(), &old.venue_id) {
            ("open", Some(v)) => Some(v.clone()),
            ("pending_send" | "send_unknown", _) if !fresh.contains(&old.client_id) => self
                .rt
                .block_on(self.exchange.query_order_by_client_id(&old.client_id))?
                .map(|st| st.order_id),
            _ => None,
        };
        if let Some(v) = &venue_id {
            self.rt.block_on(self.exchange.cancel_order(v))?;
        }
        conn.execute(
            "UPDATE orders SET status = 'replaced', venue_order_id = COALESCE(?3, venue_order_id), reason = 'the position changed', updated_ts = ?2 WHERE client_order_id = ?1",
            params![old.client_id, now, venue_id],
        )?;
        Ok(())
    }

    /// Brings the ledger to the venue's balances, which are the truth: a held
    /// asset the venue has less of is sold off the ledger (`reconcile`, at its
    /// last price), then a quote cash difference of a cent or more is booked
    /// as an explicit adjustment. More of an asset on the venue than the
    /// ledger holds is left alone (coins the host did not buy) and reported.
    pub fn true_up(
        &self,
        conn: &Connection,
        mode: &str,
        engine: &mut Engine,
        reason: &str,
        now: i64,
    ) -> Result<TrueUp, LiveError> {
        let venue = self.balances()?;
        let mut out = TrueUp::default();
        let held: Vec<(String, Decimal, Decimal)> = engine
            .portfolio()
            .positions()
            .values()
            .map(|p| {
                let price = engine
                    .portfolio()
                    .mark_price(&p.symbol)
                    .unwrap_or(p.avg_entry);
                (p.symbol.clone(), p.qty, price)
            })
            .collect();
        let mut fresh = BTreeSet::new();
        for (symbol, qty, price) in held {
            let asset = base_asset(&symbol, &self.quote);
            let on_venue = venue.get(&asset).copied().unwrap_or_default();
            if on_venue >= qty {
                if on_venue > qty {
                    out.outside.push((asset, qty, on_venue));
                }
                continue;
            }
            let fill = Fill {
                symbol: symbol.clone(),
                qty: qty - on_venue.max(Decimal::ZERO),
                price,
                fee: Decimal::ZERO,
                time: now,
                kind: FillKind::Sell {
                    reason: CloseReason::Reconcile,
                },
            };
            let ev = engine.apply_fill(None, fill).map_err(AccountError::from)?;
            account::record_events(conn, mode, &ev, now)?;
            self.protect(conn, mode, engine, &symbol, None, &mut fresh, now)?;
            out.assets.push((asset, qty, on_venue));
            out.events.extend(ev);
        }
        let ledger = engine.portfolio().cash();
        let on_venue = venue.get(&self.quote).copied().unwrap_or_default();
        if ledger.round_dp(2) != on_venue.round_dp(2) {
            account::record_adjustment(
                conn,
                mode,
                engine,
                &account::CashDifference {
                    asset: &self.quote,
                    ledger,
                    venue: on_venue,
                    reason,
                },
                now,
            )?;
            out.cash = Some((ledger, on_venue));
        }
        Ok(out)
    }

    /// Cancels the stop-loss / take-profit of `symbol` (its position closed):
    /// at the venue where it may rest, and in the database.
    fn cancel_exits(&self, conn: &Connection, symbol: &str, now: i64) -> Result<(), LiveError> {
        for e in active_exit_rows(conn, symbol)? {
            if let (true, Some(v)) = (e.status == "open", &e.venue_id) {
                self.rt.block_on(self.exchange.cancel_order(v))?;
            }
            conn.execute(
                "UPDATE orders SET status = 'cancelled', reason = 'position closed', updated_ts = ?2 WHERE client_order_id = ?1",
                params![e.client_id, now],
            )?;
        }
        Ok(())
    }

    /// Re-places a held position's stop-loss / take-profit the venue no longer
    /// has open (expired or cancelled while the host was down, or suspended
    /// at the last shutdown).
    fn replace_expired_exits(
        &self,
        conn: &Connection,
        mode: &str,
        engine: &Engine,
        now: i64,
    ) -> Result<Vec<String>, LiveError> {
        let open: BTreeSet<String> = self
            .rt
            .block_on(self.exchange.open_orders())?
            .into_iter()
            .map(|o| o.order_id)
            .collect();
        let mut replaced = Vec::new();
        for pos in engine.portfolio().positions().values() {
            for e in active_exit_rows(conn, &pos.symbol)? {
                let resting = e.venue_id.as_ref().is_some_and(|v| open.contains(v));
                if resting || !matches!(e.status.as_str(), "open" | "suspended") {
                    continue;
                }
                conn.execute(
                    "UPDATE orders SET status = 'expired', updated_ts = ?2 WHERE client_order_id = ?1",
                    params![e.client_id, now],
                )?;
                let again = unused_id(conn, &e.client_id)?;
                let request = OrderRequest {
                    qty: pos.qty,
                    decided_at: now,
                    ..e.request
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
        for (client_id, request, _) in pending_rows(conn, i64::MAX)? {
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
                None if !self.too_old(&request, now) => rec.resent.push(client_id),
                None => {
                    abandon(conn, &client_id, now - request.decided_at, now)?;
                    rec.abandoned.push(client_id);
                }
            }
        }
        if !rec.resent.is_empty() {
            self.send_pending(conn, now)?;
        }
        let tx = conn.transaction()?;
        let booked = self.book_fills(&tx, mode, engine, now)?;
        let mut events = booked.events;
        rec.external_fills = booked.external;
        rec.balance_mismatches = self.compare_balances(engine)?;
        if !rec.balance_mismatches.is_empty() {
            let before = engine.clone();
            match self.true_up(&tx, mode, engine, "startup reconciliation", now) {
                Ok(t) => {
                    events.extend(t.events.iter().cloned());
                    rec.true_up = Some(t);
                }
                Err(e) => {
                    *engine = before;
                    return Err(e);
                }
            }
        }
        account::snapshot(&tx, mode, engine, now)?;
        tx.commit()?;
        rec.fills_booked = events
            .iter()
            .filter(|e| matches!(e, EngineEvent::Filled(_)))
            .count();
        rec.exits_replaced = self.replace_expired_exits(conn, mode, engine, now)?;
        self.send_pending(conn, now)?;
        Ok((rec, events))
    }

    /// Whether a written-ahead order is too old to send: protective exits
    /// never are (they guard a position that exists now); anything else
    /// decided more than `max_order_age_secs` ago is.
    fn too_old(&self, r: &OrderRequest, now: i64) -> bool {
        !is_protective(r) && now.saturating_sub(r.decided_at) >= self.max_order_age_secs
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

    /// Cancels the venue's open orders that the host placed (a manual order
    /// on the same account is never touched). `scope` says what happens to
    /// the stop-loss / take-profit orders protecting positions.
    pub fn cancel_open(
        &self,
        conn: &Connection,
        now: i64,
        scope: CancelScope,
    ) -> Result<usize, LiveError> {
        let open = self.rt.block_on(self.exchange.open_orders())?;
        let mut n = 0;
        for o in open {
            let row: Option<(String, String)> = conn
                .query_row(
                    "SELECT order_type, side FROM orders WHERE venue_order_id = ?1",
                    [&o.order_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((order_type, side)) = row else {
                tracing::warn!("venue order {} is not the host's; left open", o.order_id);
                continue;
            };
            let protective = order_type == "stop" && side == "sell";
            if protective && scope == CancelScope::KeepExits {
                continue;
            }
            if self.rt.block_on(self.exchange.cancel_order(&o.order_id))? {
                n += 1;
                let status = if protective && scope == CancelScope::SuspendExits {
                    "suspended"
                } else {
                    "cancelled"
                };
                conn.execute(
                    "UPDATE orders SET status = ?3, reason = 'cancelled by the host', updated_ts = ?2 WHERE venue_order_id = ?1",
                    params![o.order_id, now, status],
                )?;
            }
        }
        Ok(n)
    }
}

/// The host's orders handed to the venue and not done (written ahead,
/// unanswered or resting), other than protective exits: what the risk
/// manager must count beside the engine's own pending orders.
pub fn resting(conn: &Connection) -> Result<Vec<OrderRequest>, LiveError> {
    let mut stmt = conn.prepare(
        "SELECT client_order_id, request FROM orders WHERE venue != 'paper' AND status IN ('pending_send', 'send_unknown', 'open')",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json) = row?;
        let r: OrderRequest =
            serde_json::from_str(&json).map_err(|e| LiveError::Corrupt(id, e.to_string()))?;
        if !is_protective(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

/// A stop-loss or take-profit guarding a held position.
fn is_protective(r: &OrderRequest) -> bool {
    r.order_type == OrderType::Stop
        && matches!(
            r.close_reason,
            CloseReason::StopLoss | CloseReason::TakeProfit
        )
}

/// What [`LiveVenue::cancel_open`] does with the exits protecting positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelScope {
    /// Cancel them too (kill: the positions are closed next).
    Everything,
    /// Cancel them as `suspended`, placed again at the next start (shutdown).
    SuspendExits,
    /// Leave them resting (dead-man's switch: entries stop, protection stays).
    KeepExits,
}

/// How one written-ahead order's send ended.
#[derive(Debug)]
pub enum Sent {
    Placed(String),
    /// An earlier send without an answer had reached the venue.
    Adopted(String),
    /// No answer: looked up before any further send.
    Unknown(ExchangeError),
    Rejected(ExchangeError),
    /// Too old to send (decided `age_secs` ago): never sent.
    Abandoned {
        age_secs: i64,
    },
}

/// A sent order: its client id and how the send ended.
pub type SendOutcome = (String, Sent);

/// What one booking did.
#[derive(Debug, Default)]
pub struct Booked {
    pub events: Vec<EngineEvent>,
    pub external: Vec<ExternalFill>,
}

fn record_external(
    conn: &Connection,
    mode: &str,
    f: &exchange::Fill,
    reason: &str,
    now: i64,
) -> Result<ExternalFill, LiveError> {
    let side = match f.side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    };
    conn.execute(
        "INSERT OR IGNORE INTO external_fills (venue_fill_id, mode, venue_order_id, symbol, side, qty, price, fee, ts, reason, recorded_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            f.trade_id,
            mode,
            f.order_id,
            f.symbol,
            side,
            f.qty.to_string(),
            f.price.to_string(),
            f.fee.to_string(),
            f.ts_ms.div_euclid(1000),
            reason,
            now
        ],
    )?;
    Ok(ExternalFill {
        venue_fill_id: f.trade_id.clone(),
        symbol: f.symbol.clone(),
        side: match f.side {
            Side::Buy => OrderSide::Buy,
            Side::Sell => OrderSide::Sell,
        },
        qty: f.qty,
        price: f.price,
        reason: reason.to_string(),
    })
}

fn abandon(conn: &Connection, client_id: &str, age_secs: i64, now: i64) -> Result<(), LiveError> {
    conn.execute(
        "UPDATE orders SET status = 'abandoned', reason = ?2, updated_ts = ?3 WHERE client_order_id = ?1",
        params![
            client_id,
            format!("decided {age_secs} s ago, older than its age limit; never sent"),
            now
        ],
    )?;
    Ok(())
}

/// An exchange-side exit of a position as stored.
struct ExitRow {
    client_id: String,
    status: String,
    venue_id: Option<String>,
    request: OrderRequest,
}

/// The exits of `symbol` still in service: written ahead, unknown, resting or suspended.
fn active_exit_rows(conn: &Connection, symbol: &str) -> Result<Vec<ExitRow>, LiveError> {
    let mut stmt = conn.prepare(
        "SELECT client_order_id, status, venue_order_id, request FROM orders
         WHERE symbol = ?1 AND status IN ('pending_send', 'send_unknown', 'open', 'suspended') AND order_type = 'stop' AND side = 'sell'
         ORDER BY id",
    )?;
    let rows = stmt.query_map([symbol], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (client_id, status, venue_id, json) = row?;
        let request: OrderRequest = serde_json::from_str(&json)
            .map_err(|e| LiveError::Corrupt(client_id.clone(), e.to_string()))?;
        out.push(ExitRow {
            client_id,
            status,
            venue_id,
            request,
        });
    }
    Ok(out)
}

/// Resizes an exit that was written ahead in this booking and not sent.
fn update_unsent(
    conn: &Connection,
    client_id: &str,
    r: &OrderRequest,
    now: i64,
) -> Result<(), LiveError> {
    let request = serde_json::to_string(r)
        .map_err(|e| LiveError::Corrupt(client_id.to_string(), e.to_string()))?;
    conn.execute(
        "UPDATE orders SET qty = ?2, price = ?3, request = ?4, updated_ts = ?5 WHERE client_order_id = ?1 AND status = 'pending_send'",
        params![client_id, r.qty.to_string(), r.trigger_price.map(|p| p.to_string()), request, now],
    )?;
    Ok(())
}

/// The client id of the last filled entry of `symbol`.
fn last_entry(conn: &Connection, symbol: &str) -> Result<Option<String>, LiveError> {
    Ok(conn
        .query_row(
            "SELECT client_order_id FROM orders WHERE symbol = ?1 AND side = 'buy' AND status = 'filled' ORDER BY id DESC LIMIT 1",
            [symbol],
            |r| r.get(0),
        )
        .optional()?)
}

/// `base` when no order has it, else its next revision `{root}r{n}` (the
/// root is `base` up to its first `r`; host ids have none before the suffix).
fn unused_id(conn: &Connection, base: &str) -> Result<String, LiveError> {
    let taken = |id: &str| -> Result<bool, LiveError> {
        Ok(conn
            .query_row(
                "SELECT 1 FROM orders WHERE client_order_id = ?1",
                [id],
                |_| Ok(true),
            )
            .optional()?
            .unwrap_or(false))
    };
    if !taken(base)? {
        return Ok(base.to_string());
    }
    let root = base.split('r').next().unwrap_or(base);
    let mut n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM orders WHERE client_order_id LIKE ?1 || 'r%'",
        [root],
        |r| r.get(0),
    )?;
    loop {
        n += 1;
        let id = format!("{root}r{n}");
        if !taken(&id)? {
            return Ok(id);
        }
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

/// Written-ahead orders not yet resolved, oldest first, with whether an
/// earlier send had no answer (`send_unknown`). An order whose send had no
/// answer at `now` is left for a later pass: the venue gets time to show it
/// before it is looked up, and it is never resent in the same breath.
fn pending_rows(
    conn: &Connection,
    now: i64,
) -> Result<Vec<(String, OrderRequest, bool)>, LiveError> {
    let mut stmt = conn.prepare(
        "SELECT client_order_id, request, status FROM orders
         WHERE status = 'pending_send' OR (status = 'send_unknown' AND updated_ts < ?1) ORDER BY id",
    )?;
    let rows = stmt.query_map([now], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, json, status) = row?;
        let req: OrderRequest = serde_json::from_str(&json)
            .map_err(|e| LiveError::Corrupt(id.clone(), e.to_string()))?;
        out.push((id, req, status == "send_unknown"));
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

/// The venue's public market data only (paper mode on a venue feed): no
/// credentials are read, so no private call can be made with it.
pub fn connect_public(
    venue: Venue,
    exchanges: &ExchangesSettings,
    clock: &Arc<dyn Clock>,
) -> Result<LiveVenue, LiveError> {
    let exchange: Box<dyn Exchange> = match venue {
        Venue::Kraken => {
            let mut cfg = exchange::kraken::KrakenConfig::from_settings(&exchanges.kraken);
            cfg.clock = clock.clone();
            Box::new(exchange::kraken::Kraken::new(cfg)?)
        }
        Venue::Coinbase => {
            let mut cfg = exchange::coinbase::CoinbaseConfig::from_settings(&exchanges.coinbase);
            cfg.clock = clock.clone();
            Box::new(exchange::coinbase::Coinbase::new(cfg)?)
        }
    };
    LiveVenue::new(exchange, "USD")
}

/// Live market data: closed candles of the venue's finest tier (5m) from
/// its websocket (the adapter reconnects and resubscribes by itself; a
/// reconnect is reported so the shell fetches what closed meanwhile),
/// tickers (bid/ask), and a tick every few seconds so the shell's jobs
/// (stale-data check, dead-man's switch) run when no candle comes. On a
/// wall clock a tick carries wall time; on a feed clock (`wall = None`)
/// time is only what the candles say.
pub struct ExchangeFeed {
    rt: tokio::runtime::Runtime,
    _handle: exchange::FeedHandle,
    rx: tokio::sync::mpsc::Receiver<exchange::MarketEvent>,
    tick: std::time::Duration,
    wall: Option<Arc<dyn Clock>>,
    /// A `Disconnected` came and no `Connected` since.
    down: bool,
}

/// The candle interval live feeds subscribe to: coarser tiers are built from it.
pub const FEED_INTERVAL_MINUTES: u32 = 5;

impl ExchangeFeed {
    /// Subscribes to `symbols` on `venue`'s public market data (no keys
    /// needed). `clock` signs and times the adapter's requests; `wall`
    /// stamps the ticks (None on a feed clock).
    pub fn connect(
        venue: Venue,
        exchanges: &ExchangesSettings,
        symbols: &[String],
        clock: Arc<dyn Clock>,
        wall: Option<Arc<dyn Clock>>,
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
                exchange::kraken::websocket::market_feed(&cfg, symbols, FEED_INTERVAL_MINUTES)?
            }
            Venue::Coinbase => {
                let mut cfg =
                    exchange::coinbase::CoinbaseConfig::from_settings(&exchanges.coinbase);
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
            wall,
            down: false,
        })
    }
}

impl crate::feed::Feed for ExchangeFeed {
    fn next_event(&mut self) -> Option<crate::feed::FeedEvent> {
        use crate::feed::FeedEvent;
        let tick = FeedEvent::Tick(self.wall.as_ref().map(|c| c.now()));
        let next = self
            .rt
            .block_on(async { tokio::time::timeout(self.tick, self.rx.recv()).await });
        let f = trading_core::money::to_f64;
        match next {
            Ok(None) => None,
            Ok(Some(exchange::MarketEvent::Candle {
                symbol,
                interval_minutes,
                candle,
            })) => {
                let Some(interval) = trading_core::Interval::ALL
                    .into_iter()
                    .find(|i| i.secs() == i64::from(interval_minutes) * 60)
                else {
                    tracing::warn!(
                        interval_minutes,
                        "a candle of an interval the host does not keep"
                    );
                    return Some(tick);
                };
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
            Ok(Some(exchange::MarketEvent::Ticker(t))) => Some(FeedEvent::Quote {
                symbol: t.symbol,
                bid: f(t.bid),
                ask: f(t.ask),
                last: f(t.last),
            }),
            Ok(Some(exchange::MarketEvent::Disconnected)) => {
                tracing::warn!("market feed disconnected; the adapter reconnects");
                self.down = true;
                Some(tick)
            }
            Ok(Some(exchange::MarketEvent::Connected)) if std::mem::take(&mut self.down) => {
                Some(FeedEvent::Reconnected)
            }
            Ok(Some(exchange::MarketEvent::Connected)) | Err(_) => Some(tick),
        }
    }
}
