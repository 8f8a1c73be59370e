//! The scan loop's inbox: every request from the control socket, the API,
//! the bot, the drop folder and the orchestrator becomes one [`Command`] with
//! a reply channel, applied between two bars.

use crate::socket::Recordable;
use crate::{DeployOutcome, KillOutcome, Prepared, Status};
use std::sync::mpsc::Sender;

/// A request to the scan loop. Replies go back on the enclosed channel.
pub enum Command {
    Deploy(Box<Prepared>, Sender<Result<DeployOutcome, String>>),
    Status(Sender<Status>),
    /// Latch a manual halt (no new entries). Replies whether it was newly latched.
    Halt {
        by: String,
        reply: Sender<bool>,
    },
    /// Clear halts and the kill switch. Replies whether anything was cleared.
    Resume {
        by: String,
        reply: Sender<bool>,
    },
    /// Kill switch: cancel every order, close every position, refuse all signals.
    Kill {
        by: String,
        reply: Sender<KillOutcome>,
    },
    /// Append an event of a recordable kind on behalf of the bot or a
    /// control client (e.g. an ignored stranger). Replies with its sequence.
    Record {
        event: Recordable,
        reply: Sender<Option<i64>>,
    },
    /// Record a manual tuning trigger for the orchestrator. Replies with the
    /// event's sequence, or [`Refusal::NotOrchestrating`](crate::socket::Refusal)
    /// when the host runs without `--orchestrate` (no review would ever run).
    TriggerReview {
        by: String,
        reason: String,
        reply: Sender<Result<Option<i64>, crate::socket::Refusal>>,
    },
    /// Pause (`pause`) or resume entries on one symbol; exits still run.
    /// Replies whether its state changed.
    ToggleSymbol {
        symbol: String,
        by: String,
        pause: bool,
        reply: Sender<bool>,
    },
    /// Close one position at market (paper mode; live refuses). Replies the
    /// quantity queued, None when there is no position.
    ForceExit {
        symbol: String,
        by: String,
        reply: Sender<Result<Option<rust_decimal::Decimal>, String>>,
    },
    Shutdown,
}
