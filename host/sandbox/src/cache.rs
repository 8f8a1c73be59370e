//! The precompiled-component cache on disk. A `.cwasm` is native code that
//! wasmtime maps and runs without checking it, so this module owns the one
//! rule that makes the cache safe to keep in a directory others may write:
//! a `.cwasm` is loaded only if its HMAC-SHA256, under a key only this host
//! holds, matches the `.mac` file written beside it when the host compiled it.
//!
//! Layout: `<dir>/<hash>.cwasm` and `<dir>/<hash>.mac` (hex HMAC over a
//! domain tag, the wasm's hash and the `.cwasm` bytes, so a valid file cannot
//! be renamed to stand for another module); the key is 32 random bytes in
//! `<dir>.key` (a sibling of the cache directory, i.e. in the data
//! directory), created 0600 on first start. A key that cannot be read or
//! created, or that others may read, disables the disk cache (every module
//! is compiled from its wasm) rather than trusting anything in it.
//! Invariants: bytes are verified in memory and the same bytes are
//! deserialized (no second read of the file); a mismatch is logged, counted
//! and replaced by a fresh compile.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Component;
use wasmtime::Engine;

type HmacSha256 = Hmac<Sha256>;

const KEY_BYTES: usize = 32;
const DOMAIN: &[u8] = b"host-sandbox precompiled component v1\0";

/// Why the cache key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheKeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {found} bytes, a cache key is {KEY_BYTES}")]
    WrongLength { path: PathBuf, found: usize },
    #[error("{path}: mode {mode:o} lets others read or write the cache key (want 0600)")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
}

/// What the cache did since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `.cwasm` files that verified and were loaded.
    pub loaded: u64,
    /// `.cwasm` files refused: missing or wrong MAC, or wasmtime refused them.
    pub rejected: u64,
    /// Components compiled from their wasm (and written to the cache).
    pub compiled: u64,
}

#[derive(Default)]
struct Counters {
    loaded: AtomicU64,
    rejected: AtomicU64,
    compiled: AtomicU64,
}

/// The verified disk cache (or none).
pub(crate) struct DiskCache {
    dir: Option<(PathBuf, [u8; KEY_BYTES])>,
    counters: Counters,
}

/// The key file of cache directory `dir`.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.with_extension("key")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheKeyError + '_ {
    move |source| CacheKeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the key at `path`, creating it (0600, random) if absent.
fn load_or_create_key(path: &Path) -> Result<[u8; KEY_BYTES], CacheKeyError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            let mut key = [0u8; KEY_BYTES];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            f.write_all(&key).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
            return Ok(key);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(path)(e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(io(path))?;
    if !meta.file_type().is_file() {
        return Err(CacheKeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CacheKeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| CacheKeyError::WrongLength {
            path: path.to_path_buf(),
            found: bytes.len(),
        })
}

impl DiskCache {
    /// A cache in `dir` (created if needed), or no disk cache.
    pub(crate) fn open(dir: Option<&Path>) -> std::io::Result<DiskCache> {
        let dir = match dir {
            None => None,
            Some(d) => {
                std::fs::create_dir_all(d)?;
                match load_or_create_key(&key_path(d)) {
                    Ok(key) => Some((d.to_path_buf(), key)),
                    Err(e) => {
                        tracing::warn!(
                            "precompiled cache disabled, every module is compiled from its wasm: {e}"
                        );
                        None
                    }
                }
            }
        };
        Ok(DiskCache {
            dir,
            counters: Counters::default(),
        })
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            loaded: self.counters.loaded.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
            compiled: self.counters.compiled.load(Ordering::Relaxed),
        }
    }

    fn mac(key: &[u8; KEY_BYTES], hash: &str, bytes: &[u8]) -> HmacSha256 {
        let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        m.update(DOMAIN);
        m.update(hash.as_bytes());
        m.update(b"\0");
        m.update(bytes);
        m
    }

    /// The verified precompiled component for `hash`, if there is one.
    pub(crate) fn load(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let (dir, key) = self.dir.as_ref()?;
        let path = dir.join(format!("{hash}.cwasm"));
        let bytes = std::fs::read(&path).ok()?;
        let verified = std::fs::read_to_string(dir.join(format!("{hash}.mac")))
            .ok()
            .and_then(|t| hex::decode(t.trim()).ok())
            .is_some_and(|tag| Self::mac(key, hash, &bytes).verify_slice(&tag).is_ok());
        if !verified {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "{}: not written by this host (no valid MAC); refusing to load it, recompiling",
                path.display()
            );
            return None;
        }
        // SAFETY: these exact bytes carry a MAC under a key only this host
        // holds, written when this host serialized the component itself;
        // wasmtime still checks the header and engine compatibility.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => {
                self.counters.loaded.fetch_add(1, Ordering::Relaxed);
                Some(c)
            }
            Err(e) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{}: {e:#}; recompiling", path.display());
                None
            }
        }
    }

    /// Counts a compile and stores its serialized form (best effort).
    pub(crate) fn store(&self, hash: &str, component: &Component) {
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        let Some((dir, key)) = self.dir.as_ref() else {
            return;
        };
        let Ok(bytes) = component.serialize() else {
            return;
        };
        let tag = hex::encode(Self::mac(key, hash, &bytes).finalize().into_bytes());
        let write = |name: String, data: &[u8]| {
            let p = dir.join(&name);
            let tmp = dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, data).and_then(|()| std::fs::rename(&tmp, &p))
        };
        if let Err(e) = write(format!("{hash}.cwasm"), &bytes)
            .and_then(|()| write(format!("{hash}.mac"), tag.as_bytes()))
        {
            tracing::warn!("precompiled cache {}: {e}", dir.display());
        }
    }
}
