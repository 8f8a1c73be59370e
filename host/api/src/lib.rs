//! The people's side over HTTP: a REST API and a WebSocket event stream under
//! `/api/v1/`, the OpenAPI document describing them, and the dashboard at `/`.
//! Served by axum on a background thread with its own tokio runtime; every
//! call into the host goes through a [`HostHandle`] on a blocking thread.

pub mod auth;
pub mod openapi;
mod routes;
mod ws;

use host_control::handle::HostHandle;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// `[api]` in settings.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// `HOST:PORT`, or `off`.
    #[serde(default = "ApiSettings::default_addr")]
    pub addr: String,
    /// Requests per minute per client IP (token bucket; bursts up to this many).
    #[serde(default = "ApiSettings::default_rate")]
    pub rate_per_minute: u32,
}

impl ApiSettings {
    fn default_addr() -> String {
        "127.0.0.1:8080".into()
    }
    fn default_rate() -> u32 {
        600
    }

    pub fn validate(&self) -> Result<(), String> {
        parse_addr(&self.addr).map_err(|e| e.to_string())?;
        if self.rate_per_minute == 0 {
            return Err("rate_per_minute must be at least 1".into());
        }
        Ok(())
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            addr: Self::default_addr(),
            rate_per_minute: Self::default_rate(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api address {0:?}: expected IP:PORT like 127.0.0.1:8080, or off")]
    BadAddr(String),
    #[error("refusing to serve the API on {0} without HOST_API_TOKEN: set the token, or bind to a loopback address")]
    NoToken(SocketAddr),
    #[error("api: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("api: cannot start its thread: {0}")]
    Thread(std::io::Error),
}

/// `off` → None; otherwise an `IP:PORT`.
pub fn parse_addr(s: &str) -> Result<Option<SocketAddr>, ApiError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let s2 = s
        .strip_prefix("localhost:")
        .map(|p| format!("127.0.0.1:{p}"));
    s2.as_deref()
        .unwrap_or(s)
        .parse()
        .map(Some)
        .map_err(|_| ApiError::BadAddr(s.to_string()))
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    pub addr: SocketAddr,
    /// The bearer token (`HOST_API_TOKEN`); None only on loopback.
    pub token: Option<String>,
    pub rate_per_minute: u32,
}

impl ApiOptions {
    /// Checks the token rule: without a token only a loopback address is served.
    pub fn new(
        addr: SocketAddr,
        token: Option<String>,
        rate_per_minute: u32,
    ) -> Result<ApiOptions, ApiError> {
        let token = token.filter(|t| !t.is_empty());
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(ApiError::NoToken(addr));
        }
        Ok(ApiOptions {
            addr,
            token,
            rate_per_minute: rate_per_minute.max(1),
        })
    }
}

/// The effective configuration as `GET /api/v1/config` shows it: the binary's
/// typed settings, serialised only here, at the API's edge.
pub trait ShowConfig: Send + Sync {
    fn show(&self) -> serde_json::Result<serde_json::Value>;
}

impl<T: serde::Serialize + Send + Sync> ShowConfig for T {
    fn show(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(self)
    }
}

pub(crate) struct AppState {
    pub handle: HostHandle,
    pub config: Arc<dyn ShowConfig>,
    pub token: Option<String>,
    pub limiter: auth::RateLimiter,
}

/// The whole application: API routes, WebSocket, dashboard, auth and rate limiting.
pub fn router(handle: HostHandle, config: Arc<dyn ShowConfig>, opts: &ApiOptions) -> axum::Router {
    let state = Arc::new(AppState {
        handle,
        config,
        token: opts.token.clone(),
        limiter: auth::RateLimiter::new(opts.rate_per_minute),
    });
    routes::router(state)
}

/// Binds `opts.addr` now (errors are returned) and serves on a background
/// thread for the life of the process. Returns the bound address.
pub fn spawn(
    handle: HostHandle,
    config: Arc<dyn ShowConfig>,
    opts: ApiOptions,
) -> Result<SocketAddr, ApiError> {
    let listener = std::net::TcpListener::bind(opts.addr).map_err(|source| ApiError::Bind {
        addr: opts.addr,
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| ApiError::Bind {
        addr: opts.addr,
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ApiError::Bind {
            addr: opts.addr,
            source,
        })?;
    if opts.token.is_none() {
        tracing::warn!(%bound, "HOST_API_TOKEN is not set: the API on this loopback address needs no token");
    }
    let app = router(handle, config, &opts);
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("api-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("api runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("api listener: {e}");
                        return;
                    }
                };
                let svc = app.into_make_service_with_connect_info::<SocketAddr>();
                if let Err(e) = axum::serve(listener, svc).await {
                    tracing::error!("api server stopped: {e}");
                }
            });
        })
        .map_err(ApiError::Thread)?;
    tracing::info!(%bound, "api listening (dashboard at http://{bound}/)");
    Ok(bound)
}

/// What `host run` calls: the address from `--api-addr` (when given) or
/// `[api] addr`, the token from `HOST_API_TOKEN`. An address given on the
/// command line that cannot be bound is an error; the configured default
/// only logs one (the host keeps trading without its API).
pub fn serve(
    handle: HostHandle,
    settings: &ApiSettings,
    config: Arc<dyn ShowConfig>,
    cli_addr: Option<&str>,
) -> Result<Option<SocketAddr>, ApiError> {
    let Some(addr) = parse_addr(cli_addr.unwrap_or(&settings.addr))? else {
        tracing::info!("api disabled (address off)");
        return Ok(None);
    };
    let opts = ApiOptions::new(
        addr,
        std::env::var("HOST_API_TOKEN").ok(),
        settings.rate_per_minute,
    )?;
    match spawn(handle, config, opts) {
        Ok(a) => Ok(Some(a)),
        Err(e @ ApiError::Bind { .. }) if cli_addr.is_none() => {
            tracing::error!("{e}; the host runs without its API (set [api] addr or --api-addr)");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_the_token_rule() {
        assert_eq!(parse_addr("off").unwrap(), None);
        assert_eq!(
            parse_addr("127.0.0.1:8080").unwrap(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("localhost:9").unwrap(),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert!(matches!(parse_addr("nowhere"), Err(ApiError::BadAddr(_))));
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(matches!(
            ApiOptions::new(public, None, 60),
            Err(ApiError::NoToken(_))
        ));
        assert!(matches!(
            ApiOptions::new(public, Some(String::new()), 60),
            Err(ApiError::NoToken(_))
        ));
        assert!(ApiOptions::new(public, Some("t".into()), 60).is_ok());
        assert!(ApiOptions::new("[::1]:1".parse().unwrap(), None, 60).is_ok());
    }
}
