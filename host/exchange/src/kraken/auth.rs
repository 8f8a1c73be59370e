//! Kraken REST signing: `API-Sign = base64(HMAC-SHA512(base64decode(secret), path +
//! SHA256(nonce + postdata)))`, with a nonce that strictly increases across calls and restarts.

use crate::{ExResult, ExchangeError};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use trading_core::Clock;

/// The `API-Sign` header for a private call to `path` (`/0/private/AddOrder`).
pub fn sign(path: &str, nonce: &str, postdata: &str, secret: &[u8]) -> String {
    let mut inner = Sha256::new();
    inner.update(nonce.as_bytes());
    inner.update(postdata.as_bytes());
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(path.as_bytes());
    mac.update(&inner.finalize());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// How far ahead of the last nonce the persisted high-water mark is
/// reserved (microseconds): the file is written about once a minute of
/// nonces, and a restart starts above anything already sent.
const RESERVE_MICROS: u64 = 60_000_000;

#[derive(Debug)]
struct NonceState {
    last: u64,
    /// Every nonce up to this one may have been sent (persisted when a file is set).
    reserved: u64,
}

/// Strictly increasing nonces: clock microseconds, or the last nonce + 1 if
/// the clock has not moved on (or went back). With a file, the high-water
/// mark is reserved ahead and written (synced) before any nonce above the
/// old mark is handed out, so a restart after the clock was stepped back
/// still goes up.
#[derive(Debug)]
pub struct NonceSource {
    clock: Arc<dyn Clock>,
    file: Option<PathBuf>,
    state: Mutex<NonceState>,
}

impl NonceSource {
    /// Starts above the mark stored in `file` (if any). A file that does not
    /// hold a number is an error, never a silent restart from zero.
    pub fn new(clock: Arc<dyn Clock>, file: Option<PathBuf>) -> ExResult<NonceSource> {
        let floor = match &file {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => text
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| ExchangeError::NonceStore {
                        path: p.clone(),
                        kind: std::io::ErrorKind::InvalidData,
                    })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => {
                    return Err(ExchangeError::NonceStore {
                        path: p.clone(),
                        kind: e.kind(),
                    })
                }
            },
            None => 0,
        };
        Ok(NonceSource {
            clock,
            file,
            state: Mutex::new(NonceState {
                last: floor,
                reserved: floor,
            }),
        })
    }

    fn persist(&self, mark: u64) -> ExResult<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let err = |e: std::io::Error| ExchangeError::NonceStore {
            path: path.clone(),
            kind: e.kind(),
        };
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(mark.to_string().as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)
    }

    pub fn next(&self) -> ExResult<u64> {
        let now = u64::try_from(self.clock.now_micros()).unwrap_or(0);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let n = now.max(st.last.saturating_add(1));
        if n > st.reserved {
            let mark = n.saturating_add(RESERVE_MICROS);
            self.persist(mark)?;
            st.reserved = mark;
        }
        st.last = n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example published in Kraken's "Spot REST Authentication" guide.
    #[test]
    fn kraken_documented_example() {
        let secret = base64::engine::general_purpose::STANDARD
            .decode("kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==")
            .unwrap();
        let sig = sign(
            "/0/private/AddOrder",
            "1616492376594",
            "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25",
            &secret,
        );
        assert_eq!(
            sig,
            "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
        );
    }

    #[test]
    fn nonces_strictly_increase() {
        let n = NonceSource::new(trading_core::clock::wall(), None).unwrap();
        let mut last = 0;
        for _ in 0..10_000 {
            let x = n.next().unwrap();
            assert!(x > last);
            last = x;
        }
    }

    /// Issue 18: a clock stepped back across a restart gave `EAPI:Invalid nonce`.
    #[test]
    fn a_clock_stepped_back_across_a_restart_still_gives_a_higher_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kraken.nonce");
        let clock = Arc::new(trading_core::ManualClock::at(1_800_000_000));
        let first = NonceSource::new(clock.clone(), Some(file.clone())).unwrap();
        let mut last = 0;
        for _ in 0..1_000 {
            last = first.next().unwrap();
            clock.advance(1);
        }
        drop(first);
        clock.set(1_700_000_000); // stepped back a hundred million seconds
        let second = NonceSource::new(clock.clone(), Some(file.clone())).unwrap();
        assert!(second.next().unwrap() > last);
        std::fs::write(&file, "not a number").unwrap();
        assert!(matches!(
            NonceSource::new(clock, Some(file)),
            Err(ExchangeError::NonceStore { .. })
        ));
    }
}
