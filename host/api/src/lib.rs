//! The people's side over HTTP: a REST API and a WebSocket event stream under
//! `/api/v1/`, the OpenAPI document describing them, and the dashboard at `/`.
//! Served by axum on a background thread with its own tokio runtime; every
//! call into the host goes through a [`HostHandle`] on a blocking thread.
//! Owns `[api]` in settings.toml and the start of the server: the token is
//! always required ([`token`]), the `Host` and `Origin` are checked
//! ([`site`]), and bodies are JSON only with `application/json`.

pub mod auth;
pub mod diff;
pub mod openapi;
mod routes;
pub mod site;
pub mod token;
mod ws;

pub use token::{Token, TokenError, TokenSource};

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
    /// Extra names the server answers to in the `Host` header (`name` or
    /// `name:port`, e.g. behind a reverse proxy); the bound address (and
    /// `localhost` on loopback) always works. Default: none.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl ApiSettings {
    fn default_addr() -> String {
        "127.0.0.1:8080".into()
    }
    fn default_rate() -> u32 {
        600
    }

    pub fn validate(&self) -> Result<(), ApiError> {
        parse_addr(&self.addr)?;
        if self.rate_per_minute == 0 {
            return Err(ApiError::BadRate);
        }
        if let Some(bad) = self.allowed_hosts.iter().find(|h| !site::valid_name(h)) {
            return Err(ApiError::BadHostName(bad.clone()));
        }
        Ok(())
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            addr: Self::default_addr(),
            rate_per_minute: Self::default_rate(),
            allowed_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api address {0:?}: expected IP:PORT like 127.0.0.1:8080, or off")]
    BadAddr(String),
    #[error("rate_per_minute must be at least 1")]
    BadRate,
    #[error("allowed_hosts: {0:?} is not a host name (expected name or name:port)")]
    BadHostName(String),
    #[error(transparent)]
    Token(#[from] TokenError),
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
    /// The bearer token, always required.
    pub token: Token,
    pub rate_per_minute: u32,
    /// `[api] allowed_hosts`.
    pub allowed_hosts: Vec<String>,
}

impl ApiOptions {
    pub fn new(addr: SocketAddr, token: Token, rate_per_minute: u32) -> ApiOptions {
        ApiOptions {
            addr,
            token,
            rate_per_minute: rate_per_minute.max(1),
            allowed_hosts: Vec::new(),
        }
    }
}

/// A running API: where it listens and the dashboard URL that logs in.
#[derive(Debug, Clone)]
pub struct Serving {
    pub addr: SocketAddr,
    token: Token,
    pub source: TokenSource,
}

impl Serving {
    /// `http://ADDR/?token=...`: the page keeps the token and drops it from
    /// the address bar. A secret: print it to stdout, never log it.
    pub fn dashboard_url(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("token", self.token.expose());
        // Bound to every interface: the loopback address works from here.
        let mut at = self.addr;
        if at.ip().is_unspecified() {
            at.set_ip(match at.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{at}/?{}", q.finish())
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
    pub token: Token,
    pub site: site::Site,
    pub limiter: auth::RateLimiter,
}

/// The whole application: API routes, WebSocket, dashboard, auth and rate
/// limiting, answering to the names of `bound` (the address actually bound).
pub fn router(
    handle: HostHandle,
    config: Arc<dyn ShowConfig>,
    opts: &ApiOptions,
    bound: SocketAddr,
) -> axum::Router {
    let state = Arc::new(AppState {
        handle,
        config,
        token: opts.token.clone(),
        site: site::Site::new(bound, &opts.allowed_hosts),
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
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "the API listens beyond loopback: anyone who can reach it and has the token controls the host");
    }
    let app = router(handle, config, &opts, bound);
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
/// `[api] addr`, the token from `HOST_API_TOKEN` or else `data_dir/api.token`
/// (generated at the first start). An address given on the command line
/// that cannot be bound is an error; the configured default only logs one
/// (the host keeps trading without its API).
pub fn serve(
    handle: HostHandle,
    settings: &ApiSettings,
    config: Arc<dyn ShowConfig>,
    cli_addr: Option<&str>,
    data_dir: &std::path::Path,
) -> Result<Option<Serving>, ApiError> {
    let Some(addr) = parse_addr(cli_addr.unwrap_or(&settings.addr))? else {
        tracing::info!("api disabled (address off)");
        return Ok(None);
    };
    let env = std::env::var("HOST_API_TOKEN").ok();
    let (token, source) = token::resolve(env.as_deref(), data_dir)?;
    match &source {
        TokenSource::Env => tracing::info!("api token from HOST_API_TOKEN"),
        TokenSource::File(p) => tracing::info!(file = %p.display(), "api token from its file"),
        TokenSource::Generated(p) => {
            tracing::info!(file = %p.display(), "api token generated (HOST_API_TOKEN is not set)")
        }
    }
    let mut opts = ApiOptions::new(addr, token.clone(), settings.rate_per_minute);
    opts.allowed_hosts = settings.allowed_hosts.clone();
    match spawn(handle, config, opts) {
        Ok(addr) => Ok(Some(Serving {
            addr,
            token,
            source,
        })),
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
    fn addresses_and_settings() {
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
        let mut s = ApiSettings::default();
        assert!(s.validate().is_ok());
        s.allowed_hosts = vec!["trader.lan".into(), "proxy.example:443".into()];
        assert!(s.validate().is_ok());
        s.allowed_hosts.push("http://evil/".into());
        assert!(matches!(s.validate(), Err(ApiError::BadHostName(h)) if h == "http://evil/"));
        s.allowed_hosts.clear();
        s.rate_per_minute = 0;
        assert!(matches!(s.validate(), Err(ApiError::BadRate)));
        let none: ApiSettings = toml_free_default();
        assert_eq!(none, ApiSettings::default());
    }

    /// `[api]` with no keys at all gets every default.
    fn toml_free_default() -> ApiSettings {
        serde_json::from_str("{}").unwrap()
    }

    #[test]
    fn the_dashboard_url_carries_the_token_and_nothing_else_prints_it() {
        let s = Serving {
            addr: "127.0.0.1:8080".parse().unwrap(),
            token: Token::new("a+b/c").unwrap(),
            source: TokenSource::Env,
        };
        assert_eq!(s.dashboard_url(), "http://127.0.0.1:8080/?token=a%2Bb%2Fc");
        assert!(!format!("{s:?}").contains("a+b/c"));
        let any = Serving {
            addr: "0.0.0.0:9".parse().unwrap(),
            ..s
        };
        assert!(any
            .dashboard_url()
            .starts_with("http://127.0.0.1:9/?token="));
    }
}
