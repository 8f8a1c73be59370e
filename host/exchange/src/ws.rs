//! The reconnecting websocket loop both venues' market feeds run: connect, send the venue's
//! subscriptions, hand every text frame to the venue's parser, treat silence longer than the idle
//! timeout as a dead link, and reconnect with backoff (resubscribing) until the receiver is gone.

use super::{MarketEvent, RetryPolicy};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A venue's side of a feed: its subscriptions and its message parser.
pub(crate) trait FeedProtocol: Send + 'static {
    /// The messages to send after each connect (fresh, so they may carry a new token).
    fn subscriptions(&mut self) -> Vec<String>;
    /// Events in one text frame; malformed frames yield none.
    fn on_text(&mut self, text: &str) -> Vec<MarketEvent>;
}

/// A running feed; dropping it stops the feed.
#[derive(Debug)]
pub struct FeedHandle {
    task: tokio::task::JoinHandle<()>,
}

impl FeedHandle {
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for FeedHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn spawn<P: FeedProtocol>(
    url: String,
    idle_timeout: Duration,
    backoff: RetryPolicy,
    protocol: P,
) -> (FeedHandle, mpsc::Receiver<MarketEvent>) {
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(run(url, idle_timeout, backoff, protocol, tx));
    (FeedHandle { task }, rx)
}

async fn run<P: FeedProtocol>(
    url: String,
    idle_timeout: Duration,
    backoff: RetryPolicy,
    mut protocol: P,
    tx: mpsc::Sender<MarketEvent>,
) {
    let mut failures: u32 = 0;
    loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((mut ws, _)) => {
                let mut ok = true;
                for s in protocol.subscriptions() {
                    if ws.send(Message::text(s)).await.is_err() {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    if tx.send(MarketEvent::Connected).await.is_err() {
                        return;
                    }
                    loop {
                        match tokio::time::timeout(idle_timeout, ws.next()).await {
                            Ok(Some(Ok(Message::Text(t)))) => {
                                failures = 0;
                                for ev in protocol.on_text(t.as_str()) {
                                    if tx.send(ev).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Ok(Some(Ok(Message::Ping(_)))) => {
                                // tungstenite queued the pong; push it out.
                                if ws.flush().await.is_err() {
                                    break;
                                }
                            }
                            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
                            Ok(Some(Ok(_))) => {}
                            Err(_) => {
                                tracing::warn!(%url, "market feed silent past the idle timeout; reconnecting");
                                break;
                            }
                        }
                    }
                }
                if tx.send(MarketEvent::Disconnected).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(%url, error = %e, "market feed connect failed"),
        }
        if tx.is_closed() {
            return;
        }
        let d = backoff.delay(failures, &super::ExchangeError::Transport(String::new()));
        failures = failures.saturating_add(1);
        tokio::time::sleep(d).await;
    }
}
