//! The local control channel: a Unix socket in the data directory speaking
//! one JSON request and one JSON reply per connection. `host deploy`,
//! `host rollback` and `host status` use it when a host is running.

use crate::{
    prepare, prepare_archived, Archived, Command, DeployOutcome, KillOutcome, Paths, Prepared,
    Status,
};
use host_sandbox::Runtime;
use host_trading::risk_file::RiskFile;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::Duration;

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
    /// Append an event (the API and the bot: e.g. a message from an unknown chat).
    Record {
        kind: String,
        detail: serde_json::Value,
    },
    Shutdown,
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
    /// Review or record: the appended event's sequence.
    Recorded {
        seq: Option<i64>,
    },
    Ok,
    Error {
        message: String,
    },
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
    let listener = UnixListener::bind(&path)?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let ctx = ctx.clone();
                std::thread::spawn(move || {
                    if let Err(e) = handle(&ctx, stream) {
                        tracing::warn!("control connection: {e}");
                    }
                });
            }
        })?;
    Ok(())
}

fn handle(ctx: &ControlContext, stream: UnixStream) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => answer(ctx, req),
        Err(e) => Reply::Error {
            message: format!("bad request: {e}"),
        },
    };
    let mut w = &stream;
    serde_json::to_writer(&mut w, &reply)?;
    w.write_all(b"\n")
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
            |seq| Reply::Recorded { seq },
        ),
        Request::Record { kind, detail } => ask(
            ctx,
            |reply| Command::Record {
                kind,
                detail,
                reply,
            },
            |seq| Reply::Recorded { seq },
        ),
        Request::Shutdown => {
            let _ = ctx.commands.send(Command::Shutdown);
            Reply::Ok
        }
    }
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
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
