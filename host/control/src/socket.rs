//! The local control channel: a Unix socket in the data directory speaking
//! one JSON request and one JSON reply per connection. `host deploy`,
//! `host rollback` and `host status` use it when a host is running. It owns
//! the socket's door: the file is created 0600, a client of another uid is
//! refused (SO_PEERCRED), at most [`MAX_CLIENTS`] connections are served at
//! once, a request must arrive whole within [`READ_DEADLINE`] and
//! [`MAX_REQUEST_BYTES`], and `record` takes only a [`RecordKind`]. Every
//! refusal is a typed [`Refusal`] reply.

use crate::{
    prepare, prepare_archived, Archived, Command, DeployOutcome, KillOutcome, Paths, Prepared,
    Status,
};
use host_sandbox::Runtime;
use host_trading::risk_file::RiskFile;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once; one more is answered [`Refusal::Busy`] and closed.
pub const MAX_CLIENTS: usize = 8;
/// The longest request line (a deploy carries the candidate's source).
pub const MAX_REQUEST_BYTES: usize = 4 << 20;
/// A request must arrive whole (up to its newline) within this time.
pub const READ_DEADLINE: Duration = Duration::from_secs(5);
/// The largest `detail` a client may record, serialised.
pub const MAX_RECORD_DETAIL_BYTES: usize = 4096;

/// The event kinds a client of the control channel may append to the log.
/// Everything else in the log (fills, closes, kills, deploys...) is written
/// by the scan loop itself, so no client can forge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A Telegram message the bot did not obey: another chat, or a sender
    /// who may not steer (rate-limited by the bot).
    TelegramUnauthorized,
}

impl RecordKind {
    /// Every recordable kind.
    pub const ALL: [RecordKind; 1] = [RecordKind::TelegramUnauthorized];

    /// The event kind written to the log.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::TelegramUnauthorized => "telegram_unauthorized",
        }
    }

    /// The kind named `s` exactly, if it is recordable.
    pub fn parse(s: &str) -> Option<RecordKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event a control client may append: a [`RecordKind`] with its typed payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Recordable {
    TelegramUnauthorized(host_store::payloads::TelegramUnauthorized),
}

impl Recordable {
    pub fn kind(&self) -> RecordKind {
        match self {
            Recordable::TelegramUnauthorized(_) => RecordKind::TelegramUnauthorized,
        }
    }

    /// The wire's `detail` read as `kind`'s payload.
    pub fn decode(kind: RecordKind, detail: &serde_json::Value) -> Result<Recordable, Refusal> {
        let bad = |e: serde_json::Error| Refusal::BadRequest {
            message: format!("{kind} detail: {e}"),
        };
        match kind {
            RecordKind::TelegramUnauthorized => serde_json::from_value(detail.clone())
                .map(Recordable::TelegramUnauthorized)
                .map_err(bad),
        }
    }

    /// The event appended to the log.
    pub fn into_payload(self) -> host_store::events::Payload {
        match self {
            Recordable::TelegramUnauthorized(t) => {
                host_store::events::Payload::TelegramUnauthorized(t)
            }
        }
    }

    fn detail_bytes(&self) -> usize {
        match self {
            Recordable::TelegramUnauthorized(t) => {
                serde_json::to_string(t).map_or(usize::MAX, |s| s.len())
            }
        }
    }
}

fn recordable_names() -> String {
    RecordKind::ALL.map(RecordKind::as_str).join(", ")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Deploy {
        path: PathBuf,
        params: Vec<(String, String)>,
        source: Option<String>,
        origin: Option<String>,
    },
    Rollback,
    /// Re-activate an archived version.
    Activate {
        version: i64,
    },
    Halt {
        by: Option<String>,
    },
    Resume {
        by: Option<String>,
    },
    Kill {
        by: Option<String>,
    },
    Review {
        by: Option<String>,
        reason: String,
    },
    /// No new entries on `symbol` (exits still run) until resumed.
    #[serde(rename = "pause_symbol")]
    PauseSymbol {
        symbol: String,
        by: Option<String>,
    },
    /// Close `symbol`'s position at market now (paper mode).
    #[serde(rename = "force_exit")]
    ForceExit {
        symbol: String,
        by: Option<String>,
    },
    /// Entries on `symbol` allowed again.
    #[serde(rename = "resume_symbol")]
    ResumeSymbol {
        symbol: String,
        by: Option<String>,
    },
    /// Append an event of a recordable kind (the bot: a message it ignored).
    /// `detail` is the wire's JSON: [`answer`] reads it into the kind's type
    /// ([`Recordable`]) or refuses it; nothing untyped reaches the scan loop.
    Record {
        kind: RecordKind,
        detail: serde_json::Value,
    },
    Shutdown,
}

/// Why the control channel refused a connection or a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum Refusal {
    /// `record` of a kind not in [`RecordKind::ALL`].
    #[error(
        "event kind {kind:?} may not be recorded through the control channel (recordable: {})",
        recordable_names()
    )]
    NotRecordable { kind: String },
    /// A recorded detail over [`MAX_RECORD_DETAIL_BYTES`].
    #[error("the detail to record is {bytes} bytes, more than {max}")]
    DetailTooLarge { bytes: usize, max: usize },
    /// A symbol the host does not trade.
    #[error("{symbol:?} is not a configured symbol (configured: {configured})")]
    UnknownSymbol { symbol: String, configured: String },
    /// Not a request (bad JSON, unknown command, wrong field types).
    #[error("bad request: {message}")]
    BadRequest { message: String },
    /// No newline within [`MAX_REQUEST_BYTES`].
    #[error("request longer than {max} bytes")]
    TooLong { max: usize },
    /// No whole request within [`READ_DEADLINE`].
    #[error("no whole request within {ms} ms")]
    Timeout { ms: u64 },
    /// [`MAX_CLIENTS`] connections are being served already.
    #[error("{max} control clients are connected already; try again")]
    Busy { max: usize },
    /// The client runs as another user than the host.
    #[error("the client's uid {uid} is not the host's uid {host}")]
    ForeignUser { uid: u32, host: u32 },
    /// The client's credentials could not be read.
    #[error("the client's credentials are unreadable: {message}")]
    NoCredentials { message: String },
    /// A review was asked of a host started without `--orchestrate`.
    #[error("this host runs without the orchestrator, so no review would run: restart it with `host run --orchestrate`, or run one cycle with `host orchestrate --now`")]
    NotOrchestrating,
}

/// The host's answer: one typed variant per kind of request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum Reply {
    Status(Box<Status>),
    Deployed(DeployOutcome),
    /// Halt: whether entries were newly halted.
    Halted {
        newly: bool,
    },
    /// Resume: whether a halt or the kill switch was cleared.
    Resumed {
        cleared: bool,
    },
    Killed(KillOutcome),
    /// Pause or resume a symbol: its state now, and whether it changed.
    #[serde(rename = "symbol_toggled")]
    SymbolToggled {
        symbol: String,
        paused: bool,
        changed: bool,
    },
    /// Force exit: the quantity queued to close (None: no position).
    #[serde(rename = "force_exit")]
    ForceExit {
        symbol: String,
        qty: Option<rust_decimal::Decimal>,
    },
    /// Review or record: the appended event's sequence.
    Recorded {
        seq: Option<i64>,
    },
    Ok,
    /// The host could not carry the request out (its reason).
    Error {
        message: String,
    },
    /// The control channel refused the connection or the request.
    Refused(Refusal),
}

/// What the control server needs to prepare modules off the scan thread.
#[derive(Clone)]
pub struct ControlContext {
    pub runtime: Arc<Runtime>,
    pub paths: Paths,
    /// The configured symbols (a strategy is initialised with them).
    pub symbols: Vec<String>,
    /// The configured strategy parameters (a deploy without its own uses them).
    pub strategy_params: Vec<(String, String)>,
    pub risk: RiskFile,
    pub commands: Sender<Command>,
}

/// Starts the server thread. Removes a stale socket left by a dead host.
pub fn serve(ctx: ControlContext) -> std::io::Result<()> {
    let path = ctx.paths.socket();
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("a host is already running on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = bind_private(&path)?;
    let host_uid = rustix::process::geteuid().as_raw();
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        // e.g. out of file descriptors: do not spin
                        tracing::warn!("control socket accept: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                if let Err(r) = same_user(&stream, host_uid) {
                    tracing::warn!("control socket: {r}");
                    refuse(&stream, r);
                    continue;
                }
                let Some(slot) = Slot::take(&active, MAX_CLIENTS) else {
                    refuse(&stream, Refusal::Busy { max: MAX_CLIENTS });
                    continue;
                };
                let ctx = ctx.clone();
                let spawned = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || {
                        let _slot = slot;
                        if let Err(e) = handle(&ctx, stream) {
                            tracing::warn!("control connection: {e}");
                        }
                    });
                if let Err(e) = spawned {
                    tracing::warn!("control connection thread: {e}");
                }
            }
        })?;
    Ok(())
}

/// Binds the socket under a temporary name, makes it 0600, then moves it into
/// place: it is never reachable at `path` with the umask's mode.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "host.sock".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// The peer must run as the host's own uid.
fn same_user(stream: &UnixStream, host: u32) -> Result<(), Refusal> {
    let cred =
        rustix::net::sockopt::socket_peercred(stream).map_err(|e| Refusal::NoCredentials {
            message: e.to_string(),
        })?;
    let uid = cred.uid.as_raw();
    if uid == host {
        Ok(())
    } else {
        Err(Refusal::ForeignUser { uid, host })
    }
}

/// One of [`MAX_CLIENTS`] places; given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers a refused connection without waiting on it (the reply is small
/// enough for the socket's buffer) and closes it.
fn refuse(stream: &UnixStream, r: Refusal) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
    let _ = write_reply(stream, &Reply::Refused(r));
}

fn write_reply(stream: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    let mut w = stream;
    w.write_all(&line)
}

/// Reads one request line: up to its newline (or the end of the stream),
/// at most `max` bytes, all of it within `deadline`.
fn read_request(stream: &UnixStream, max: usize, deadline: Duration) -> Result<Vec<u8>, Refusal> {
    let end = Instant::now() + deadline;
    let timeout = Refusal::Timeout {
        ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Refusal::BadRequest {
                message: e.to_string(),
            })?;
        let mut r = stream;
        match r.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => {
                let got = &chunk[..n];
                let newline = got.iter().position(|b| *b == b'\n');
                buf.extend_from_slice(&got[..newline.unwrap_or(n)]);
                if buf.len() > max {
                    return Err(Refusal::TooLong { max });
                }
                if newline.is_some() {
                    return Ok(buf);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timeout)
            }
            Err(e) => {
                return Err(Refusal::BadRequest {
                    message: e.to_string(),
                })
            }
        }
    }
}

/// Parses one request line; a `record` of a kind outside [`RecordKind`] is
/// named as such rather than as bad JSON.
pub fn decode(line: &[u8]) -> Result<Request, Refusal> {
    match serde_json::from_slice::<Request>(line) {
        Ok(req) => Ok(req),
        Err(e) => {
            #[derive(Deserialize)]
            struct RecordProbe {
                cmd: String,
                kind: String,
            }
            if let Ok(p) = serde_json::from_slice::<RecordProbe>(line) {
                if p.cmd == "record" && RecordKind::parse(&p.kind).is_none() {
                    return Err(Refusal::NotRecordable {
                        kind: p.kind.chars().take(64).collect(),
                    });
                }
            }
            Err(Refusal::BadRequest {
                message: e.to_string(),
            })
        }
    }
}

fn handle(ctx: &ControlContext, stream: UnixStream) -> std::io::Result<()> {
    let reply = match read_request(&stream, MAX_REQUEST_BYTES, READ_DEADLINE)
        .and_then(|line| decode(&line))
    {
        Ok(req) => answer(ctx, req),
        Err(r) => {
            tracing::warn!("control socket: {r}");
            Reply::Refused(r)
        }
    };
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write_reply(&stream, &reply)
}

fn deployed(r: Result<DeployOutcome, String>) -> Reply {
    match r {
        Ok(o) => Reply::Deployed(o),
        Err(message) => Reply::Error { message },
    }
}

/// Sends a prepared module to the scan loop and waits for the swap.
pub fn submit(ctx: &ControlContext, p: Prepared) -> Result<DeployOutcome, String> {
    let (tx, rx) = channel();
    ctx.commands
        .send(Command::Deploy(Box::new(p), tx))
        .map_err(|_| "the host is shutting down".to_string())?;
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| "the host did not answer".to_string())?
}

/// Carries out one request (the socket server and the in-process [`crate::handle::HostHandle`] share this).
pub fn answer(ctx: &ControlContext, req: Request) -> Reply {
    match req {
        Request::Status => {
            let (tx, rx) = channel::<Status>();
            if ctx.commands.send(Command::Status(tx)).is_err() {
                return Reply::Error {
                    message: "the host is shutting down".into(),
                };
            }
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(s) => Reply::Status(Box::new(s)),
                Err(_) => Reply::Error {
                    message: "the host did not answer".into(),
                },
            }
        }
        Request::Deploy {
            path,
            params,
            source,
            origin,
        } => {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    return Reply::Error {
                        message: format!("{}: {e}", path.display()),
                    }
                }
            };
            let origin = origin.unwrap_or_else(|| format!("deploy {}", path.display()));
            match prepare(
                &ctx.runtime,
                bytes,
                &ctx.risk,
                &ctx.symbols,
                params,
                &origin,
            ) {
                Ok(mut p) => {
                    p.code = source;
                    deployed(submit(ctx, p))
                }
                Err(e) => Reply::Error {
                    message: e.to_string(),
                },
            }
        }
        Request::Rollback => deployed(
            prepare_archived(
                &ctx.runtime,
                &ctx.paths,
                &ctx.symbols,
                &ctx.risk,
                Archived::Previous,
            )
            .and_then(|p| submit(ctx, p)),
        ),
        Request::Activate { version } => deployed(
            prepare_archived(
                &ctx.runtime,
                &ctx.paths,
                &ctx.symbols,
                &ctx.risk,
                Archived::Version(version),
            )
            .and_then(|p| submit(ctx, p)),
        ),
        Request::Halt { by } => ask(
            ctx,
            |reply| Command::Halt {
                by: by.unwrap_or_else(|| "cli".into()),
                reply,
            },
            |newly| Reply::Halted { newly },
        ),
        Request::Resume { by } => ask(
            ctx,
            |reply| Command::Resume {
                by: by.unwrap_or_else(|| "cli".into()),
                reply,
            },
            |cleared| Reply::Resumed { cleared },
        ),
        Request::Kill { by } => ask(
            ctx,
            |reply| Command::Kill {
                by: by.unwrap_or_else(|| "cli".into()),
                reply,
            },
            Reply::Killed,
        ),
        Request::Review { by, reason } => ask(
            ctx,
            |reply| Command::TriggerReview {
                by: by.unwrap_or_else(|| "cli".into()),
                reason,
                reply,
            },
            |r| match r {
                Ok(seq) => Reply::Recorded { seq },
                Err(refusal) => Reply::Refused(refusal),
            },
        ),
        Request::PauseSymbol { symbol, by } => toggle(ctx, symbol, by, true),
        Request::ResumeSymbol { symbol, by } => toggle(ctx, symbol, by, false),
        Request::ForceExit { symbol, by } => {
            if !ctx.symbols.contains(&symbol) {
                return Reply::Refused(Refusal::UnknownSymbol {
                    symbol: symbol.chars().take(32).collect(),
                    configured: ctx.symbols.join(", "),
                });
            }
            let s = symbol.clone();
            ask(
                ctx,
                |reply| Command::ForceExit {
                    symbol: s,
                    by: by.unwrap_or_else(|| "cli".into()),
                    reply,
                },
                |r: Result<Option<rust_decimal::Decimal>, String>| match r {
                    Ok(qty) => Reply::ForceExit { symbol, qty },
                    Err(message) => Reply::Error { message },
                },
            )
        }
        Request::Record { kind, detail } => {
            // the wire's detail is checked for size before it is read
            let bytes = detail.to_string().len();
            if bytes > MAX_RECORD_DETAIL_BYTES {
                return Reply::Refused(Refusal::DetailTooLarge {
                    bytes,
                    max: MAX_RECORD_DETAIL_BYTES,
                });
            }
            match Recordable::decode(kind, &detail) {
                Ok(event) => record(ctx, event),
                Err(r) => Reply::Refused(r),
            }
        }
        Request::Shutdown => {
            let _ = ctx.commands.send(Command::Shutdown);
            Reply::Ok
        }
    }
}

/// Pauses (`pause`) or resumes entries on a configured symbol.
fn toggle(ctx: &ControlContext, symbol: String, by: Option<String>, pause: bool) -> Reply {
    if !ctx.symbols.contains(&symbol) {
        return Reply::Refused(Refusal::UnknownSymbol {
            symbol: symbol.chars().take(32).collect(),
            configured: ctx.symbols.join(", "),
        });
    }
    let by = by.unwrap_or_else(|| "cli".into());
    let s = symbol.clone();
    ask(
        ctx,
        |reply| Command::ToggleSymbol {
            symbol: s,
            by,
            pause,
            reply,
        },
        |changed| Reply::SymbolToggled {
            symbol,
            paused: pause,
            changed,
        },
    )
}

/// Appends a recordable event through the scan loop (the socket's `record`
/// and [`crate::handle::HostHandle::record_event`] share this).
pub fn record(ctx: &ControlContext, event: Recordable) -> Reply {
    let bytes = event.detail_bytes();
    if bytes > MAX_RECORD_DETAIL_BYTES {
        return Reply::Refused(Refusal::DetailTooLarge {
            bytes,
            max: MAX_RECORD_DETAIL_BYTES,
        });
    }
    ask(
        ctx,
        |reply| Command::Record { event, reply },
        |seq| Reply::Recorded { seq },
    )
}

/// Sends a command built around a reply channel and waits for its answer.
fn ask<T>(
    ctx: &ControlContext,
    make: impl FnOnce(Sender<T>) -> Command,
    reply: impl FnOnce(T) -> Reply,
) -> Reply {
    let (tx, rx) = channel::<T>();
    if ctx.commands.send(make(tx)).is_err() {
        return Reply::Error {
            message: "the host is shutting down".into(),
        };
    }
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(v) => reply(v),
        Err(_) => Reply::Error {
            message: "the host did not answer".into(),
        },
    }
}

/// Sends one request to a running host. `Ok(None)` when no host is running.
pub fn request(socket: &Path, req: &Request) -> std::io::Result<Option<Reply>> {
    let stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(Duration::from_secs(90)))?;
    let mut w = &stream;
    serde_json::to_writer(&mut w, req)?;
    w.write_all(b"\n")?;
    // the host's replies are small but for a status; never read without end
    let mut line = String::new();
    BufReader::new((&stream).take(64 << 20)).read_line(&mut line)?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
