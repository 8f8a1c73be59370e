//! Bearer-token authentication and per-client-IP rate limiting (a token
//! bucket refilled continuously; an empty bucket answers 429 with
//! `Retry-After`). The health check, the OpenAPI document and the dashboard's
//! static files need no token; the WebSocket also accepts `?token=` because
//! browsers cannot set headers on it.

use super::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A token bucket per client IP.
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute: f64::from(per_minute.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip` at `now`; Err(seconds to wait) when empty.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > 10_000 {
            // Forget clients whose bucket is full again.
            let cap = self.per_minute;
            let rate = cap / 60.0;
            b.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < cap);
        }
        let (tokens, at) = b.entry(ip).or_insert((self.per_minute, now));
        let rate = self.per_minute / 60.0;
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate)
            .min(self.per_minute);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Compares digests so the time taken does not reveal how much of the token matched.
fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (digest(given), digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn query_token(req: &Request) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

fn public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/index.html" | "/app.js" | "/style.css" | "/api/v1/health" | "/api/v1/openapi.json"
    )
}

/// Rate limit, then (outside the public paths) require the bearer token.
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if let Err(wait) = state.limiter.check(ip, Instant::now()) {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit reached: retry in {wait} s"),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let path = req.uri().path();
    if let (Some(expected), false) = (&state.token, public(path)) {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|s| s.trim().to_string());
        let given = bearer.or_else(|| (path == "/api/v1/ws").then(|| query_token(&req)).flatten());
        let ok = match given {
            None => Err("missing bearer token: send Authorization: Bearer <HOST_API_TOKEN>"),
            Some(t) if same_token(&t, expected) => Ok(()),
            Some(_) => Err("invalid bearer token"),
        };
        if let Err(m) = ok {
            let mut r = error(StatusCode::UNAUTHORIZED, m);
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_and_reports_the_wait() {
        let l = RateLimiter::new(60);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let t0 = Instant::now();
        for _ in 0..60 {
            assert!(l.check(ip, t0).is_ok());
        }
        assert_eq!(l.check(ip, t0), Err(1));
        assert!(
            l.check(IpAddr::from([127, 0, 0, 2]), t0).is_ok(),
            "buckets are per client"
        );
        assert!(l.check(ip, t0 + Duration::from_millis(1000)).is_ok());
        assert!(l.check(ip, t0 + Duration::from_millis(1000)).is_err());
        let slow = RateLimiter::new(2);
        assert!(slow.check(ip, t0).is_ok() && slow.check(ip, t0).is_ok());
        assert_eq!(slow.check(ip, t0), Err(30));
    }

    #[test]
    fn token_comparison() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abd", "abc"));
        assert!(!same_token("", "abc"));
    }
}
