//! Who the bot obeys. It owns the door of the bot: an update from another
//! chat is a stranger's (ignored); in the configured chat anyone may ask the
//! read-only commands, but a steering command (see
//! [`crate::commands::is_steering`]) needs a trusted sender: one of
//! `[telegram] user_ids`, or, when none are configured, the user of the
//! private chat whose id is `chat_id` (in a group, nobody). Strangers and
//! refused senders are recorded at most once per [`STRANGER_RECORD_EVERY_S`]
//! each and [`STRANGER_RECORDS_PER_HOUR`] in all, on the injected clock, so
//! a flood of messages does not flood the event log.

use crate::api::Message;
use crate::commands;
use host_store::payloads::TelegramUnauthorized;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use trading_core::clock::Clock;

/// A stranger (a chat, a sender) is recorded at most once this often.
pub const STRANGER_RECORD_EVERY_S: i64 = 600;
/// Stranger records in any hour, all strangers together.
pub const STRANGER_RECORDS_PER_HOUR: usize = 20;
/// Strangers remembered at once (the oldest is forgotten first).
const STRANGERS_KEPT: usize = 1024;

/// Why a sender may not steer the host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotTrusted {
    /// Channel posts and anonymous group admins carry no user.
    #[error("the message has no sender")]
    NoSender,
    /// `user_ids` are configured and this user is not one of them.
    #[error("user {0} is not in [telegram] user_ids")]
    NotListed(i64),
    /// No `user_ids`: only the private chat `chat_id` itself may steer.
    #[error("no [telegram] user_ids are configured: only the private chat {chat} may steer")]
    NotThePrivateChat { chat: i64 },
}

/// The configured chat and the users who may steer in it.
#[derive(Debug, Clone)]
pub struct Access {
    chat_id: i64,
    user_ids: BTreeSet<i64>,
}

impl Access {
    pub fn new(chat_id: i64, user_ids: &[i64]) -> Access {
        Access {
            chat_id,
            user_ids: user_ids.iter().copied().collect(),
        }
    }

    /// The user who may steer with this message, or why not.
    pub fn steerer(&self, msg: &Message) -> Result<i64, NotTrusted> {
        let from = msg
            .from
            .as_ref()
            .map(|u| u.id)
            .ok_or(NotTrusted::NoSender)?;
        if self.user_ids.is_empty() {
            // In a private chat the chat id is the user's id; anything else
            // claiming this chat id (a group, another sender) is not it.
            let private = msg.chat.kind.as_deref() == Some("private");
            if private && msg.chat.id == self.chat_id && from == self.chat_id {
                Ok(from)
            } else {
                Err(NotTrusted::NotThePrivateChat { chat: self.chat_id })
            }
        } else if self.user_ids.contains(&from) {
            Ok(from)
        } else {
            Err(NotTrusted::NotListed(from))
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    recorded_at: i64,
    suppressed: u64,
}

/// Decides which stranger messages reach the event log.
#[derive(Debug)]
pub struct StrangerLog {
    clock: Arc<dyn Clock>,
    seen: HashMap<(i64, Option<i64>), Seen>,
    /// When the records of the last hour were made.
    recent: VecDeque<i64>,
    /// Messages not recorded because the hourly budget was spent.
    over_budget: u64,
}

impl StrangerLog {
    pub fn new(clock: Arc<dyn Clock>) -> StrangerLog {
        StrangerLog {
            clock,
            seen: HashMap::new(),
            recent: VecDeque::new(),
            over_budget: 0,
        }
    }

    /// Notes one message from a stranger; the event detail to record when
    /// one is due, None when this one is only counted.
    pub fn note(
        &mut self,
        chat: i64,
        from: Option<i64>,
        reason: &str,
        command: Option<&str>,
    ) -> Option<TelegramUnauthorized> {
        let now = self.clock.now();
        while self
            .recent
            .front()
            .is_some_and(|t| !(0..3600).contains(&now.saturating_sub(*t)))
        {
            self.recent.pop_front();
        }
        let key = (chat, from);
        if let Some(s) = self.seen.get_mut(&key) {
            let since = now.saturating_sub(s.recorded_at);
            if (0..STRANGER_RECORD_EVERY_S).contains(&since) {
                s.suppressed += 1;
                return None;
            }
        }
        if self.recent.len() >= STRANGER_RECORDS_PER_HOUR {
            self.over_budget += 1;
            return None;
        }
        let suppressed = self.seen.remove(&key).map_or(0, |s| s.suppressed);
        if self.seen.len() >= STRANGERS_KEPT {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.recorded_at)
                .map(|(k, _)| *k)
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(
            key,
            Seen {
                recorded_at: now,
                suppressed: 0,
            },
        );
        self.recent.push_back(now);
        let d = TelegramUnauthorized {
            chat,
            from,
            reason: reason.to_string(),
            suppressed,
            over_budget: std::mem::take(&mut self.over_budget),
            command: command.map(|c| c.chars().take(32).collect()),
        };
        Some(d)
    }
}

/// What the bot does with one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Not a command: nothing to do.
    Skip,
    /// From another chat: ignored; `record` is the event detail when one is due.
    Stranger {
        record: Option<TelegramUnauthorized>,
    },
    /// A steering command from a sender who may not steer: not run; the
    /// refusal is answered and recorded when `record` is Some.
    Refused {
        cmd: String,
        why: NotTrusted,
        record: Option<TelegramUnauthorized>,
    },
    /// A command to run; `user` is the sender when they may steer.
    Command {
        cmd: String,
        args: String,
        user: Option<i64>,
    },
}

/// [`Access`] and the [`StrangerLog`] together: one decision per message.
#[derive(Debug)]
pub struct Gate {
    chat_id: i64,
    access: Access,
    strangers: StrangerLog,
}

impl Gate {
    pub fn new(chat_id: i64, user_ids: &[i64], clock: Arc<dyn Clock>) -> Gate {
        Gate {
            chat_id,
            access: Access::new(chat_id, user_ids),
            strangers: StrangerLog::new(clock),
        }
    }

    pub fn admit(&mut self, msg: &Message) -> Admission {
        let from = msg.from.as_ref().map(|u| u.id);
        if msg.chat.id != self.chat_id {
            return Admission::Stranger {
                record: self.strangers.note(msg.chat.id, from, "chat", None),
            };
        }
        let Some((cmd, args)) = msg.text.as_deref().and_then(commands::parse) else {
            return Admission::Skip;
        };
        let user = self.access.steerer(msg);
        if commands::is_steering(&cmd) {
            if let Err(why) = user {
                let record = self.strangers.note(msg.chat.id, from, "sender", Some(&cmd));
                return Admission::Refused { cmd, why, record };
            }
        }
        Admission::Command {
            cmd,
            args,
            user: user.ok(),
        }
    }
}
