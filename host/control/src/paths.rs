//! Where a host keeps its state: the data directory (database, precompiled
//! cache, control socket, drop folder) and the archive of strategy versions.

use std::path::PathBuf;

/// Where a host keeps its state.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_dir: PathBuf,
    pub archive_dir: PathBuf,
}

impl Paths {
    pub fn db(&self) -> PathBuf {
        self.data_dir.join("host.db")
    }
    pub fn cache(&self) -> PathBuf {
        self.data_dir.join("cache")
    }
    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("host.sock")
    }
    pub fn drop_dir(&self) -> PathBuf {
        self.data_dir.join("drop")
    }
}
