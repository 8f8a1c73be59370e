//! The API's front door, run before every route: per-client-IP rate limiting
//! (a token bucket refilled continuously; an empty bucket answers 429 with
//! `Retry-After`), the `Host` check against DNS rebinding and the `Origin`
//! check against cross-site WebSockets and POSTs (both 403, see
//! [`crate::site`]), then the bearer token (401), which is always required
//! except for the health check, the OpenAPI document and the dashboard's
//! static files. The WebSocket also accepts `?token=` because browsers
//! cannot set headers on it.

use super::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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

fn query_token(req: &Request) -> Option<String> {
    let q = req.uri().query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

fn public(path: &str) -> bool {
    matches!(path, "/api/v1/health" | "/api/v1/openapi.json")
        || super::routes::STATIC_FILES
            .iter()
            .any(|(p, _, _)| *p == path)
}

/// The `Host` a request names: its header, else (HTTP/2) the URI's authority.
fn host_of(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// A WebSocket handshake, or a request that can change something: these
/// must come from no browser page at all (no `Origin`) or from our own.
fn origin_matters(req: &Request) -> bool {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade
        || req.uri().path() == "/api/v1/ws"
        || !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Rate limit; refuse a `Host` that is not this server (DNS rebinding) and
/// a foreign `Origin` on WebSocket handshakes and POSTs (cross-site pages);
/// then, outside the public paths, require the bearer token.
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
    if !host_of(&req).is_some_and(|h| state.site.host_allowed(h)) {
        return error(
            StatusCode::FORBIDDEN,
            "the Host header does not name this server (add the name to [api] allowed_hosts)",
        );
    }
    if origin_matters(&req) {
        let origin = req.headers().get(header::ORIGIN);
        let foreign =
            origin.is_some_and(|o| !o.to_str().is_ok_and(|o| state.site.origin_allowed(o)));
        if foreign {
            return error(
                StatusCode::FORBIDDEN,
                "cross-origin request refused: the Origin is not this server",
            );
        }
    }
    let path = req.uri().path();
    if !public(path) {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|s| s.trim().to_string());
        let given = bearer.or_else(|| (path == "/api/v1/ws").then(|| query_token(&req)).flatten());
        match given {
            None => {
                return unauthorized(
                    "missing bearer token: send Authorization: Bearer <token> (HOST_API_TOKEN, or data/api.token)",
                )
            }
            Some(t) if state.token.matches(&t) => {}
            Some(_) => return unauthorized("invalid bearer token"),
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
}
