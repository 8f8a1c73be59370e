use crate::Interval;
use std::fmt;

/// The minutes of one candle of `i` (a strategy scanning at its interval returns this).
pub fn interval_minutes(i: Interval) -> u32 {
    match i {
        Interval::M5 => 5,
        Interval::H1 => 60,
        Interval::D1 => 1_440,
    }
}

/// Named strategy parameters (`--param fast=10`), parsed on demand.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub name: String,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter {}={:?}: expected {}", self.name, self.value, self.expected)
    }
}

impl From<ParamError> for String {
    fn from(e: ParamError) -> String {
        e.to_string()
    }
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params(pairs)
    }

    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A finite number, or `default` when the parameter is absent.
    pub fn f64_or(&self, name: &str, default: f64) -> Result<f64, ParamError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| ParamError {
                name: name.into(),
                value: v.into(),
                expected: "a finite number",
            }),
        }
    }

    /// A candle interval written `5m`, `1h` or `1d`, or `default` when absent.
    pub fn interval_or(&self, name: &str, default: Interval) -> Result<Interval, ParamError> {
        match self.raw(name).map(str::trim) {
            None => Ok(default),
            Some("5m") => Ok(Interval::M5),
            Some("1h") => Ok(Interval::H1),
            Some("1d") => Ok(Interval::D1),
            Some(v) => Err(ParamError { name: name.into(), value: v.into(), expected: "5m, 1h or 1d" }),
        }
    }

    /// A positive whole number, or `default` when absent.
    pub fn usize_or(&self, name: &str, default: usize) -> Result<usize, ParamError> {
        match self.raw(name) {
            None => Ok(default),
            Some(v) => v.trim().parse::<usize>().ok().filter(|&x| x > 0).ok_or_else(|| ParamError {
                name: name.into(),
                value: v.into(),
                expected: "a positive whole number",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_value_wins_and_bad_values_are_named() {
        let p = Params::new(vec![("fast".into(), "5".into()), ("fast".into(), "7".into()), ("x".into(), "nan".into())]);
        assert_eq!(p.usize_or("fast", 1).unwrap(), 7);
        assert_eq!(p.usize_or("slow", 30).unwrap(), 30);
        let e = p.f64_or("x", 0.0).unwrap_err();
        assert_eq!(e.name, "x");
        assert!(p.usize_or("x", 1).is_err());
    }

    #[test]
    fn intervals_parse_by_their_names() {
        let p = Params::new(vec![("a".into(), "5m".into()), ("b".into(), " 1d ".into()), ("c".into(), "60".into())]);
        assert_eq!(p.interval_or("a", Interval::H1).unwrap(), Interval::M5);
        assert_eq!(p.interval_or("b", Interval::H1).unwrap(), Interval::D1);
        assert_eq!(p.interval_or("none", Interval::H1).unwrap(), Interval::H1);
        assert_eq!(p.interval_or("c", Interval::H1).unwrap_err().expected, "5m, 1h or 1d");
        assert_eq!(interval_minutes(Interval::D1), 1_440);
    }
}
