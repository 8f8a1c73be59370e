//! The Telegram bot: long-polls the Bot API for commands from the one
//! configured chat (anything else is ignored, and recorded at a limited
//! rate), lets only trusted senders steer (`access`), answers through the
//! [`HostHandle`], and pushes notifications from the event bus (fills, SL/TP
//! exits, halts, kills, deploys, rollbacks, errors, alerts, nightly
//! reports). Runs on its own thread and tokio runtime.

pub mod access;
pub mod api;
pub mod commands;
pub mod format;
pub mod reports;

use access::{Admission, Gate};
use api::{BotApi, BotError, Incoming};
use host_control::handle::HostHandle;
use host_control::socket::Recordable;
use host_store::events::EventKind;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use trading_core::clock::Clock;

/// `[telegram]` in settings.toml. The token comes from `TELEGRAM_BOT_TOKEN` only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    #[serde(default = "TelegramSettings::default_url")]
    pub api_url: String,
    /// The only chat obeyed (and notified).
    #[serde(default)]
    pub chat_id: Option<i64>,
    /// The Telegram user ids who may steer (halt, resume, kill, deploy,
    /// rollback, orchestrate) in that chat. Empty (the default): only the
    /// private chat whose id is `chat_id` may steer; in a group nobody can,
    /// and its members get the read-only commands.
    #[serde(default)]
    pub user_ids: Vec<i64>,
    #[serde(default = "TelegramSettings::default_timeout")]
    pub poll_timeout_s: u32,
}

impl TelegramSettings {
    fn default_url() -> String {
        "https://api.telegram.org".into()
    }
    fn default_timeout() -> u32 {
        30
    }

    pub fn validate(&self) -> Result<(), String> {
        let u = url::Url::parse(&self.api_url)
            .map_err(|e| format!("api_url {:?}: {e}", self.api_url))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("api_url {:?}: expected http(s)", self.api_url));
        }
        if self.poll_timeout_s > 300 {
            return Err("poll_timeout_s: at most 300".into());
        }
        Ok(())
    }
}

impl Default for TelegramSettings {
    fn default() -> Self {
        TelegramSettings {
            api_url: Self::default_url(),
            chat_id: None,
            user_ids: Vec::new(),
            poll_timeout_s: Self::default_timeout(),
        }
    }
}

/// Notifications gathered into one message at most this many lines.
const BATCH_LINES: usize = 25;

/// Starts the bot when `TELEGRAM_BOT_TOKEN` is set and `[telegram] chat_id`
/// is configured; otherwise logs why not and returns None. `clock` times
/// kill confirmations and the stranger records.
pub fn spawn(
    handle: HostHandle,
    settings: &TelegramSettings,
    clock: Arc<dyn Clock>,
) -> Option<std::thread::JoinHandle<()>> {
    let token = std::env::var("TELEGRAM_BOT_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())?;
    let settings = settings.clone();
    let Some(chat_id) = settings.chat_id else {
        tracing::warn!(
            "TELEGRAM_BOT_TOKEN is set but [telegram] chat_id is not: the bot stays off"
        );
        return None;
    };
    let bot = match BotApi::new(&settings.api_url, token.trim(), settings.poll_timeout_s) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("telegram bot: {e}");
            return None;
        }
    };
    let no_user_ids = settings.user_ids.is_empty();
    let r = std::thread::Builder::new()
        .name("telegram".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(handle, bot, chat_id, &settings, clock)),
                Err(e) => tracing::error!("telegram runtime: {e}"),
            }
        });
    match r {
        Ok(j) => {
            tracing::info!(chat_id, "telegram bot started");
            if no_user_ids {
                tracing::info!(
                    "telegram: no [telegram] user_ids: only the private chat {chat_id} may steer"
                );
            }
            Some(j)
        }
        Err(e) => {
            tracing::error!("telegram thread: {e}");
            None
        }
    }
}

async fn run(
    handle: HostHandle,
    bot: BotApi,
    chat_id: i64,
    settings: &TelegramSettings,
    clock: Arc<dyn Clock>,
) {
    let menu: Vec<(&str, String)> = commands::COMMANDS
        .iter()
        .map(|(c, usage, what)| {
            let d = if usage.is_empty() {
                what.to_string()
            } else {
                format!("{usage} – {what}")
            };
            (*c, d)
        })
        .collect();
    if let Err(e) = bot.set_my_commands(&menu).await {
        tracing::warn!("telegram setMyCommands: {e}");
    }
    let bot = std::sync::Arc::new(bot);
    let (out_tx, out_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(sender(bot.clone(), chat_id, out_rx));
    tokio::spawn(notifier(handle.clone(), handle.subscribe(), out_tx.clone()));
    let gate = Gate::new(chat_id, &settings.user_ids, clock.clone());
    let session = commands::Session::new(clock);
    poll(handle, &bot, settings.poll_timeout_s, gate, session, out_tx).await;
}

/// Appends a stranger's (rate-limited) record to the event log.
async fn record_stranger(handle: &HostHandle, detail: host_store::payloads::TelegramUnauthorized) {
    let h = handle.clone();
    match tokio::task::spawn_blocking(move || {
        h.record_event(Recordable::TelegramUnauthorized(detail))
    })
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("telegram: recording a stranger: {e}"),
        Err(e) => tracing::warn!("telegram: recording a stranger: {e}"),
    }
}

/// Sends queued messages in order, split under the size limit.
async fn sender(
    bot: std::sync::Arc<BotApi>,
    chat_id: i64,
    mut rx: mpsc::UnboundedReceiver<String>,
) {
    while let Some(text) = rx.recv().await {
        for part in format::split(&text, format::MAX_MESSAGE) {
            tracing::debug!(chars = part.chars().count(), "telegram: sending");
            if let Err(e) = bot.send_message(chat_id, &part).await {
                tracing::warn!("telegram sendMessage: {e}");
            }
        }
    }
}

/// Event kinds written by other processes (`host orchestrate`), which never
/// reach this process's bus: the notifier reads them from the database.
const FOREIGN_KINDS: &[EventKind] = &[EventKind::OrchestratorRun, EventKind::RegimeChange];

/// A batch of notification lines, flushed as one message shortly after its
/// first line. Routine lines (fills, closed positions, heartbeats) are
/// capped at [`BATCH_LINES`] and the rest counted; every other line (halts,
/// kills, deploys, alerts, errors) is always sent, however busy the burst.
#[derive(Default)]
struct Batch {
    lines: Vec<String>,
    routine: usize,
    extra: usize,
    flush_at: Option<tokio::time::Instant>,
}

impl Batch {
    fn add(&mut self, ev: &host_store::events::Event) {
        if let Some(l) = format::notification(ev) {
            if !format::is_routine(ev) {
                self.lines.push(l);
            } else if self.routine < BATCH_LINES {
                self.routine += 1;
                self.lines.push(l);
            } else {
                self.extra += 1;
            }
            self.start();
        }
    }

    fn start(&mut self) {
        // Gather whatever arrives in the next moment into the same message.
        self.flush_at
            .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_millis(400));
    }

    fn take(&mut self) -> Option<String> {
        let mut b = std::mem::take(self);
        if b.extra > 0 {
            b.lines
                .push(format!("… and {} more events (see /logs)", b.extra));
        }
        tracing::debug!(lines = b.lines.len(), "telegram: notification batch");
        (!b.lines.is_empty()).then(|| b.lines.join("\n"))
    }
}

/// Every event after `after` (at most [`LAG_RECOVERY`]), oldest first: what
/// the bus dropped while the notifier lagged (the bus publishes only
/// committed events, so the database holds them all).
fn events_after(
    handle: &HostHandle,
    after: i64,
) -> rusqlite::Result<Vec<host_store::events::Event>> {
    let f = host_store::queries::EventFilter {
        since: Some(after),
        ..Default::default()
    };
    host_store::queries::query_events(&handle.read_db()?, &f, LAG_RECOVERY)
}

/// The most events read back from the database after the notifier lagged.
const LAG_RECOVERY: i64 = 5_000;

/// Events of `FOREIGN_KINDS` after `after`, oldest first.
fn foreign_events(
    handle: &HostHandle,
    after: i64,
) -> rusqlite::Result<Vec<host_store::events::Event>> {
    let f = host_store::queries::EventFilter {
        since: Some(after),
        kinds: Some(FOREIGN_KINDS.to_vec()),
        ..Default::default()
    };
    host_store::queries::query_events(&handle.read_db()?, &f, 100)
}

/// Turns bus events (and other processes' reports) into notifications,
/// batching bursts into one message.
async fn notifier(
    handle: HostHandle,
    mut rx: tokio::sync::broadcast::Receiver<host_store::events::Event>,
    out: mpsc::UnboundedSender<String>,
) {
    let h = handle.clone();
    let mut after: i64 = tokio::task::spawn_blocking(move || {
        h.read_db()
            .and_then(|c| c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0)))
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or(0);
    let mut seen: std::collections::BTreeSet<i64> = Default::default();
    // the newest bus event handled (read back from the database after a lag)
    let mut bus_seq = after;
    let mut batch = Batch::default();
    // what the host said while starting, before this notifier subscribed
    for ev in handle.take_backlog() {
        batch.add(&ev);
    }
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush_at = batch.flush_at;
        tokio::select! {
            r = rx.recv() => match r {
                Ok(ev) => {
                    if ev.seq <= bus_seq {
                        continue; // read back from the database after a lag
                    }
                    bus_seq = ev.seq;
                    if ev.kind().is_some_and(|k| FOREIGN_KINDS.contains(&k)) {
                        seen.insert(ev.seq);
                    }
                    batch.add(&ev);
                }
                Err(RecvError::Lagged(n)) => {
                    // the bus dropped `n` events: read them back, so no halt
                    // or alert is lost behind a burst of fills
                    let h = handle.clone();
                    let since = bus_seq;
                    match tokio::task::spawn_blocking(move || events_after(&h, since)).await {
                        Ok(Ok(evs)) => {
                            tracing::debug!(lagged = n, read = evs.len(), "telegram: notifier lagged");
                            for ev in evs {
                                bus_seq = bus_seq.max(ev.seq);
                                if ev.kind().is_some_and(|k| FOREIGN_KINDS.contains(&k)) {
                                    seen.insert(ev.seq);
                                }
                                batch.add(&ev);
                            }
                        }
                        r => {
                            tracing::warn!(lagged = n, "telegram: events lost to a lag: {r:?}");
                            batch.extra += n as usize;
                            batch.start();
                        }
                    }
                }
                Err(RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let h = handle.clone();
                match tokio::task::spawn_blocking(move || foreign_events(&h, after)).await {
                    Ok(Ok(evs)) => {
                        for ev in evs {
                            after = after.max(ev.seq);
                            if seen.insert(ev.seq) {
                                batch.add(&ev);
                            }
                        }
                        while seen.len() > 1000 {
                            seen.pop_first();
                        }
                    }
                    Ok(Err(e)) => tracing::warn!("telegram: reading reports: {e}"),
                    Err(e) => tracing::warn!("telegram: reading reports: {e}"),
                }
            }
            _ = async { if let Some(t) = flush_at { tokio::time::sleep_until(t).await } }, if flush_at.is_some() => {
                if let Some(text) = batch.take() {
                    if out.send(text).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn poll(
    handle: HostHandle,
    bot: &BotApi,
    timeout_s: u32,
    mut gate: Gate,
    mut session: commands::Session,
    out: mpsc::UnboundedSender<String>,
) {
    let mut offset = 0i64;
    let mut backoff = Duration::from_secs(1);
    loop {
        let items = match bot.get_updates(offset, timeout_s).await {
            Ok(items) => {
                backoff = Duration::from_secs(1);
                items
            }
            Err(BotError::RetryAfter(s)) => {
                tracing::warn!(retry_after = s, "telegram getUpdates rate limited: waiting");
                tokio::time::sleep(Duration::from_secs(s.min(300))).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(
                    "telegram getUpdates: {e}; retrying in {} s",
                    backoff.as_secs()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        let before = offset;
        let n = items.len();
        for item in items {
            match item {
                Incoming::Malformed { update_id, error } => {
                    tracing::warn!(?update_id, "telegram: skipping a malformed update: {error}");
                    if let Some(id) = update_id {
                        offset = offset.max(id + 1);
                    }
                }
                Incoming::Update(u) => {
                    offset = offset.max(u.update_id + 1);
                    let Some(msg) = u.message else { continue };
                    let from = msg.from.as_ref().map(|f| f.id);
                    match gate.admit(&msg) {
                        Admission::Skip => {}
                        Admission::Stranger { record: None } => {
                            tracing::debug!(
                                chat = msg.chat.id,
                                ?from,
                                "telegram: ignored a stranger again"
                            );
                        }
                        Admission::Stranger {
                            record: Some(detail),
                        } => {
                            tracing::warn!(
                                chat = msg.chat.id,
                                ?from,
                                "telegram: ignored a message from an unauthorized chat"
                            );
                            record_stranger(&handle, detail).await;
                        }
                        Admission::Refused { cmd, why, record } => {
                            // answered once per sender and window, like the record
                            let Some(detail) = record else {
                                tracing::debug!(?from, command = %cmd, "telegram: refused a sender again");
                                continue;
                            };
                            tracing::warn!(?from, command = %cmd, "telegram: refused a steering command: {why}");
                            record_stranger(&handle, detail).await;
                            let text = format!(
                                "⛔ /{} refused: {}",
                                format::esc(&cmd),
                                format::esc(&why.to_string())
                            );
                            if out.send(text).is_err() {
                                return;
                            }
                        }
                        Admission::Command { cmd, args, user } => {
                            tracing::info!(command = %cmd, ?user, "telegram command");
                            let reply =
                                commands::answer(&handle, &mut session, user, &cmd, &args).await;
                            if out.send(reply).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
        if n > 0 && offset == before {
            // Nothing could be acknowledged (malformed updates without ids): do not spin.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_store::events::{Event, Payload};
    use host_store::payloads as ev;

    fn event(seq: i64, payload: Payload) -> Event {
        Event {
            seq,
            ts: seq,
            symbol: None,
            payload,
        }
    }

    /// Regression (CI, 2026-12-04): a halt sent in the same burst as a replay's
    /// fills was cut behind "… and N more events"; the routine lines are capped,
    /// never the halt.
    #[test]
    fn a_halt_in_a_burst_of_heartbeats_is_always_sent() {
        let mut b = Batch::default();
        let beat = |seq| {
            event(
                seq,
                Payload::Heartbeat(ev::Heartbeat {
                    scans: seq,
                    equity: rust_decimal::Decimal::ONE,
                    positions: 0,
                    open_orders: 0,
                    paused_symbols: Vec::new(),
                    strategy_version: None,
                }),
            )
        };
        for seq in 0..100 {
            b.add(&beat(seq));
        }
        b.add(&event(
            100,
            Payload::Halt(ev::Halt {
                by: "telegram".into(),
                reason: "manual".into(),
                newly: true,
            }),
        ));
        for seq in 101..120 {
            b.add(&beat(seq));
        }
        let text = b.take().unwrap();
        assert!(text.contains("⏸ <b>Halted</b> by telegram"), "{text}");
        assert_eq!(text.matches("Heartbeat").count(), BATCH_LINES);
        assert!(text.ends_with("… and 94 more events (see /logs)"), "{text}");
    }
}
