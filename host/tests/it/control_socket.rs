//! The control socket's door against a real `host run`: the socket file is
//! 0600, a client that connects and never sends a newline holds no one up
//! (status still answers; it is cut off after the read deadline), more
//! clients than the cap are told `busy`, a 10 MB line is refused without
//! being buffered, a client of another uid is refused (SO_PEERCRED), and
//! every forged request of the corpus in `hostile/control/` gets its typed
//! refusal and never reaches the event log.

use crate::people_host::*;
use host_control::socket::{self as control, Refusal, Reply, Request, MAX_CLIENTS, READ_DEADLINE};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MARKER: &str = "FORGED-by-hostile-corpus";
const FOREIGN_ENV: &str = "HOST_IT_FOREIGN_SOCKET";

fn socket(host: &RunningHost) -> PathBuf {
    host.path().join("data/host.sock")
}

fn read_reply(s: &UnixStream) -> Value {
    s.set_read_timeout(Some(READ_DEADLINE + Duration::from_secs(20)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .expect("a reply from the host");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// Sends `line` and a newline on a new connection; the JSON reply.
fn send_line(sock: &Path, line: &[u8]) -> Value {
    let s = UnixStream::connect(sock).unwrap();
    // a refused client may be answered and closed before it writes: read anyway
    let _ = (&s).write_all(line).and_then(|()| (&s).write_all(b"\n"));
    read_reply(&s)
}

/// Connects and sends half a request, never its newline.
fn stall(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).unwrap();
    let _ = (&s).write_all(br#"{"cmd":"sta"#); // refused busy: closed already
    s
}

fn status(sock: &Path) -> Reply {
    control::request(sock, &Request::Status)
        .unwrap()
        .expect("a host")
}

#[test]
fn the_socket_is_0600_and_a_stalled_client_holds_nobody_up() {
    let host = start("max", "", &[]);
    let sock = socket(&host);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let leftovers: Vec<_> = std::fs::read_dir(host.path().join("data"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // one client that never sends its newline: status still answers at once
    let first = stall(&sock);
    let t = Instant::now();
    assert!(matches!(status(&sock), Reply::Status(_)));
    assert!(
        t.elapsed() < READ_DEADLINE,
        "status waited {:?}",
        t.elapsed()
    );

    // every place taken by stalled clients (one more than the places left:
    // the status connection's place may not be given back yet), and the next
    // client is told so at once, typed
    let others: Vec<UnixStream> = (0..MAX_CLIENTS).map(|_| stall(&sock)).collect();
    let t = Instant::now();
    let busy = eventually(10, "a busy refusal", || match status(&sock) {
        Reply::Refused(r) => Some(r),
        _ => None,
    });
    assert_eq!(busy, Refusal::Busy { max: MAX_CLIENTS });
    assert!(t.elapsed() < READ_DEADLINE);

    // the stalled clients are cut off after the read deadline, with a typed reply
    let r = read_reply(&first);
    assert_eq!(r["reply"], "refused", "{r}");
    assert_eq!(r["error"], "timeout", "{r}");
    let errors: Vec<Value> = others
        .iter()
        .map(|s| read_reply(s)["error"].clone())
        .collect();
    let busy = errors.iter().filter(|e| *e == "busy").count();
    let timeout = errors.iter().filter(|e| *e == "timeout").count();
    assert!(
        (1..=2).contains(&busy) && busy + timeout == MAX_CLIENTS,
        "{errors:?}"
    );
    // and their places are free again
    eventually(10, "status after the stalled clients", || {
        matches!(status(&sock), Reply::Status(_)).then_some(())
    });
}

#[test]
fn a_ten_megabyte_line_is_refused_and_the_host_keeps_answering() {
    let host = start("max", "", &[]);
    let sock = socket(&host);
    let s = UnixStream::connect(&sock).unwrap();
    let w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..10 {
            if (&w).write_all(&chunk).is_err() {
                return false; // the host stopped reading: what it should do
            }
        }
        (&w).write_all(b"\n").is_ok()
    });
    let r = read_reply(&s);
    assert_eq!(r["reply"], "refused", "{r}");
    assert_eq!(r["error"], "too_long", "{r}");
    let _ = writer.join();
    assert!(matches!(status(&sock), Reply::Status(_)));
}

#[test]
fn the_hostile_corpus_is_refused_and_never_reaches_the_log() {
    let host = start("max", "", &[]);
    let sock = socket(&host);
    let dir = repo_root().join("hostile/control");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the corpus in {}", dir.display());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let e: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let line = match e["line"].as_str() {
            Some(l) => l.to_string(),
            None => serde_json::to_string(&e["request"]).unwrap(),
        };
        let reply = send_line(&sock, line.as_bytes());
        for (k, v) in e["expect"].as_object().unwrap() {
            assert_eq!(&reply[k], v, "{name} ({}): reply {reply}", e["about"]);
        }
        // a refusal reads back as the typed error
        if reply["reply"] == "refused" {
            let typed: Reply = serde_json::from_value(reply.clone()).unwrap();
            assert!(matches!(typed, Reply::Refused(_)), "{name}");
        }
    }
    let conn = rusqlite::Connection::open(host.path().join("data/host.db")).unwrap();
    let forged: Vec<(String, String)> = conn
        .prepare("SELECT kind, detail FROM events WHERE instr(detail, ?1) > 0")
        .unwrap()
        .query_map([MARKER], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(forged.is_empty(), "forged events in the log: {forged:?}");
    let recorded: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'telegram_unauthorized'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 1, "the positive control is recorded");
}

/// Not a test of its own: `a_client_of_another_uid_is_refused` runs this
/// binary as another uid with only this selected, and reads what it prints.
#[test]
fn foreign_uid_client_helper() {
    let Some(sock) = std::env::var_os(FOREIGN_ENV) else {
        return;
    };
    let reply = send_line(Path::new(&sock), br#"{"cmd":"status"}"#);
    println!("FOREIGN-REPLY {reply}");
}

#[test]
fn a_client_of_another_uid_is_refused() {
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if me != 0 {
        eprintln!("skipped: running a client as another uid needs root");
        return;
    }
    let host = start("max", "", &[]);
    let sock = socket(&host);
    // open every file door to uid 65534: only the peer check stands in its way
    for d in [host.path().to_path_buf(), host.path().join("data")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "control_socket::foreign_uid_client_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FOREIGN_ENV, &sock)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .split_once("FOREIGN-REPLY ")
        .and_then(|(_, rest)| rest.lines().next())
        .unwrap_or_else(|| {
            panic!(
                "the helper printed no reply: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let reply: Reply = serde_json::from_str(line).unwrap();
    match reply {
        Reply::Refused(Refusal::ForeignUser { uid, host }) => {
            assert_eq!((uid, host), (65534, 0));
        }
        other => panic!("another uid got {other:?}"),
    }
    // the host's own user is still served
    assert!(matches!(status(&sock), Reply::Status(_)));
}
