//! A tiny, dependency-free state encoding for `get-state` / `load-state`:
//! `key=value` lines of numbers, stable across versions that share keys.

use std::collections::BTreeMap;

/// Numeric key/value state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State(pub BTreeMap<String, f64>);

impl State {
    /// The state of a strategy that only counts its scans (`scans=N`).
    pub fn scans(n: u64) -> Vec<u8> {
        let mut s = State::default();
        s.set("scans", n as f64);
        s.encode()
    }
    /// The scan count of a [`State::scans`] blob (0 when absent).
    pub fn decode_scans(bytes: &[u8]) -> Result<u64, String> {
        Ok(State::decode(bytes)?.get("scans").unwrap_or(0.0) as u64)
    }
    pub fn set(&mut self, key: &str, value: f64) {
        self.0.insert(key.to_string(), value);
    }
    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.get(key).copied()
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        for (k, v) in &self.0 {
            out.push_str(k);
            out.push('=');
            out.push_str(&format!("{v:?}"));
            out.push('\n');
        }
        out.into_bytes()
    }
    pub fn decode(bytes: &[u8]) -> Result<State, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("state is not UTF-8: {e}"))?;
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| format!("state line {}: no '='", i + 1))?;
            let v: f64 = v.parse().map_err(|_| format!("state line {}: {v:?} is not a number", i + 1))?;
            map.insert(k.to_string(), v);
        }
        Ok(State(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut s = State::default();
        s.set("scans", 42.0);
        s.set("last", 0.1 + 0.2);
        assert_eq!(State::decode(&s.encode()).unwrap(), s);
        assert!(State::decode(b"scans").is_err());
        assert!(State::decode(b"scans=x").is_err());
        assert_eq!(State::decode(b"").unwrap(), State::default());
    }
}
