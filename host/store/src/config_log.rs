//! What configuration the host last ran with: the effective settings and
//! risk limits (as JSON, in `system_meta`), compared at each start so a
//! change becomes a `config_change` event. Invariant: the stored text is
//! replaced only after the comparison, so every change is reported once.

use crate::db::{get_meta, set_meta};
use crate::payloads::{ConfigChange, ConfigFile};
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn key(file: ConfigFile) -> &'static str {
    match file {
        ConfigFile::Settings => "config.settings",
        ConfigFile::RiskLimits => "config.risk_limits",
    }
}

fn sha(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The top-level keys whose values differ between two JSON objects (all keys
/// of either when one is not an object).
fn changed_keys(previous: &str, current: &str) -> Vec<String> {
    type Obj = BTreeMap<String, serde_json::Value>;
    let (Ok(a), Ok(b)) = (
        serde_json::from_str::<Obj>(previous),
        serde_json::from_str::<Obj>(current),
    ) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Compares `json` (the effective configuration of `file`) with the last
/// run's and stores it. Returns the change; None when equal, and on the
/// first run seen (there is no last run to differ from).
pub fn observe(
    conn: &Connection,
    file: ConfigFile,
    json: &str,
) -> rusqlite::Result<Option<ConfigChange>> {
    let previous = get_meta(conn, key(file))?;
    if previous.as_deref() == Some(json) {
        return Ok(None);
    }
    set_meta(conn, key(file), json)?;
    Ok(previous.map(|p| ConfigChange {
        file,
        previous: sha(&p),
        current: sha(json),
        changed: changed_keys(&p, json),
    }))
}

/// The effective configuration of `file` the host last started with (JSON).
pub fn current(conn: &Connection, file: ConfigFile) -> rusqlite::Result<Option<String>> {
    get_meta(conn, key(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_reported_once_with_its_changed_keys() {
        let c = crate::db::open_in_memory().unwrap();
        assert_eq!(
            observe(&c, ConfigFile::RiskLimits, r#"{"a":1,"b":2}"#).unwrap(),
            None
        );
        assert_eq!(
            observe(&c, ConfigFile::RiskLimits, r#"{"a":1,"b":2}"#).unwrap(),
            None
        );
        let ch = observe(&c, ConfigFile::RiskLimits, r#"{"a":1,"b":3,"c":0}"#)
            .unwrap()
            .unwrap();
        assert_eq!(ch.changed, ["b", "c"]);
        assert_eq!(ch.previous, sha(r#"{"a":1,"b":2}"#));
        assert_eq!(ch.current, sha(r#"{"a":1,"b":3,"c":0}"#));
        assert_eq!(
            observe(&c, ConfigFile::RiskLimits, r#"{"a":1,"b":3,"c":0}"#).unwrap(),
            None
        );
        // the two files are kept apart
        assert_eq!(
            observe(&c, ConfigFile::Settings, r#"{"a":1}"#).unwrap(),
            None
        );
        assert!(observe(&c, ConfigFile::Settings, r#"{"a":2}"#)
            .unwrap()
            .is_some());
    }
}
