use std::fmt;

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
}
