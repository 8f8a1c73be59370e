//! The API's bearer token, which is always required: `HOST_API_TOKEN` when it
//! is set, otherwise the token kept in `<data dir>/api.token` (mode 0600),
//! generated from the operating system's randomness at the first start, as
//! Jupyter does. A [`Token`] never prints itself (its `Debug` is redacted)
//! and compares in constant time; only [`Token::expose`] hands out the text,
//! for the dashboard URL `host run` prints to its stdout.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file name of the generated token inside the data directory.
pub const TOKEN_FILE: &str = "api.token";

/// A secret bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text; None when empty or not printable ASCII
    /// without spaces (what fits an `Authorization` header and a URL).
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty() && t.len() <= 512 && t.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Token(t.to_string()))
    }

    /// 32 random bytes from the operating system, as 64 hex digits.
    pub fn generate() -> Result<Token, TokenError> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| TokenError::Random(e.to_string()))?;
        Ok(Token(hex::encode(bytes)))
    }

    /// Whether `given` is this token. Both sides are hashed first and the
    /// digests compared without an early exit, so neither the length nor
    /// the matching prefix shows in the time taken.
    pub fn matches(&self, given: &str) -> bool {
        let a: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let b: [u8; 32] = Sha256::digest(self.0.as_bytes()).into();
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }

    /// The secret text. Only for the URL printed to `host run`'s stdout.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Where the token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `HOST_API_TOKEN`.
    Env,
    /// The file kept from an earlier start.
    File(PathBuf),
    /// Generated now and written to this file.
    Generated(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("api token file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("api token file {path} is readable by others (mode {mode:o}): run `chmod 600 {path}` or delete it to get a new token")]
    Mode { path: PathBuf, mode: u32 },
    #[error("api token file {path} holds no usable token (printable ASCII, no spaces): delete it to get a new one")]
    Malformed { path: PathBuf },
    #[error("api token: no randomness from the operating system: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `env` (the value of `HOST_API_TOKEN`) when it holds a token; else the
/// token in `data_dir/api.token`, created (0600, atomically: a second host
/// starting at once reads the first one's) when it does not exist.
pub fn resolve(env: Option<&str>, data_dir: &Path) -> Result<(Token, TokenSource), TokenError> {
    if let Some(t) = env.and_then(Token::new) {
        return Ok((t, TokenSource::Env));
    }
    let path = data_dir.join(TOKEN_FILE);
    if let Some(t) = read(&path)? {
        return Ok((t, TokenSource::File(path)));
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let token = Token::generate()?;
    let tmp = data_dir.join(format!(".{TOKEN_FILE}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(token.expose().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&tmp)(e));
    }
    // A hard link never replaces an existing file: whoever links first wins.
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok((token, TokenSource::Generated(path))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match read(&path)? {
            Some(t) => Ok((t, TokenSource::File(path))),
            None => Err(TokenError::Malformed { path }),
        },
        Err(e) => Err(io(&path)(e)),
    }
}

/// The token in `path`; None when there is no such file.
fn read(path: &Path) -> Result<Option<Token>, TokenError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Mode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    Token::new(&text)
        .map(Some)
        .ok_or_else(|| TokenError::Malformed {
            path: path.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_and_redaction() {
        let t = Token::new(" abc \n").unwrap();
        assert!(t.matches("abc"));
        assert!(!t.matches("abd"));
        assert!(!t.matches(""));
        assert!(!t.matches("abc "));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!(Token::new("").is_none());
        assert!(Token::new("a b").is_none());
        assert!(Token::new("é").is_none());
    }

    #[test]
    fn generated_once_kept_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (a, src) = resolve(None, &data).unwrap();
        assert_eq!(src, TokenSource::Generated(data.join(TOKEN_FILE)));
        assert_eq!(a.expose().len(), 64);
        let mode = std::fs::metadata(data.join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (b, src) = resolve(Some(""), &data).unwrap();
        assert_eq!(
            (a.clone(), src),
            (b, TokenSource::File(data.join(TOKEN_FILE)))
        );
        let (c, src) = resolve(Some("from-env"), &data).unwrap();
        assert_eq!((c.expose(), src), ("from-env", TokenSource::Env));
        assert_ne!(Token::generate().unwrap(), a);
    }

    #[test]
    fn a_file_others_can_read_or_an_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        std::fs::write(&path, "secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            resolve(None, dir.path()),
            Err(TokenError::Mode { mode: 0o644, .. })
        ));
        std::fs::write(&path, "  \n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            resolve(None, dir.path()),
            Err(TokenError::Malformed { .. })
        ));
    }
}
