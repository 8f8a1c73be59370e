//! The Anthropic Messages API client: POST `{base}/v1/messages` with
//! `x-api-key` and `anthropic-version: 2023-06-01`; timeouts, retries with
//! backoff (429 honours `retry-after`, 529 and 5xx back off, 400 is final), a
//! per-minute rate limit, a nightly spending cap, and every request and
//! response written to `ai_audit`. The key comes from `ANTHROPIC_API_KEY`
//! only and is never logged or stored.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Environment variable holding the key.
pub const KEY_VAR: &str = "ANTHROPIC_API_KEY";
pub const API_VERSION: &str = "2023-06-01";

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaudeError {
    #[error("{KEY_VAR} is not set")]
    NoKey,
    #[error("the nightly spending cap of ${cap:.2} is reached (spent ${spent:.4})")]
    BudgetExhausted { spent: f64, cap: f64 },
    #[error("rate limited (429) after {attempts} attempts")]
    RateLimited { attempts: u32 },
    #[error("API overloaded (529) after {attempts} attempts")]
    Overloaded { attempts: u32 },
    #[error("API error {status} {kind}: {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("request failed after {attempts} attempts: {message}")]
    Transport { attempts: u32, message: String },
    #[error("response is not a Messages API reply: {0}")]
    BadResponse(String),
    #[error("audit table: {0}")]
    Audit(#[from] rusqlite::Error),
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClaudeConfig {
    pub base_url: String,
    pub timeout: Duration,
    pub retries: u32,
    pub requests_per_minute: u32,
    /// The rate limit's window (one minute; shorter in tests).
    pub rate_window: Duration,
    pub budget_usd: f64,
    /// First backoff; doubled per attempt.
    pub backoff: Duration,
    /// Longest wait honoured from a `retry-after` header.
    pub max_retry_after: Duration,
}

/// USD per million tokens of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
}

/// One model reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub latency_ms: u64,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    max_tokens: u32,
    system: &'a str,
    messages: Vec<Message<'a>>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Deserialize)]
struct Response {
    content: Vec<ContentBlock>,
    usage: Usage,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

/// The client. Blocking: it drives its own single-thread async runtime.
pub struct Claude {
    cfg: ClaudeConfig,
    key: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    sent: VecDeque<Instant>,
    spent: f64,
    /// Time stamps of the audit rows.
    clock: std::sync::Arc<dyn trading_core::Clock>,
}

impl std::fmt::Debug for Claude {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claude")
            .field("base_url", &self.cfg.base_url)
            .field("spent", &self.spent)
            .finish_non_exhaustive()
    }
}

impl Claude {
    /// A client with the key from the environment; `spent_today` counts
    /// toward the cap (see [`spent_since`]).
    pub fn from_env(cfg: ClaudeConfig, spent_today: f64) -> Result<Claude, ClaudeError> {
        let key = std::env::var(KEY_VAR)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or(ClaudeError::NoKey)?;
        Claude::with_key(cfg, key, spent_today)
    }

    /// A client with an explicit key (tests).
    pub fn with_key(
        cfg: ClaudeConfig,
        key: String,
        spent_today: f64,
    ) -> Result<Claude, ClaudeError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClaudeError::Transport {
                attempts: 0,
                message: e.to_string(),
            })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClaudeError::Transport {
                attempts: 0,
                message: e.to_string(),
            })?;
        Ok(Claude {
            cfg,
            key,
            http,
            rt,
            sent: VecDeque::new(),
            spent: spent_today,
            clock: trading_core::clock::wall(),
        })
    }

    /// The same client stamping its audit rows from `clock`.
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn trading_core::Clock>) -> Claude {
        self.clock = clock;
        self
    }

    pub fn spent(&self) -> f64 {
        self.spent
    }

    /// Waits until one more request fits in the per-minute limit.
    fn rate_limit(&mut self) {
        let window = self.cfg.rate_window;
        loop {
            while self.sent.front().is_some_and(|t| t.elapsed() >= window) {
                self.sent.pop_front();
            }
            if self.sent.len() < self.cfg.requests_per_minute.max(1) as usize {
                break;
            }
            let wait = self
                .sent
                .front()
                .map(|t| window.saturating_sub(t.elapsed()))
                .unwrap_or_default();
            std::thread::sleep(wait.max(Duration::from_millis(10)));
        }
        self.sent.push_back(Instant::now());
    }

    /// Sends one conversation turn; every attempt is audited in `conn`.
    #[allow(clippy::too_many_arguments)]
    pub fn complete(
        &mut self,
        conn: &Connection,
        model: &str,
        price: Price,
        max_tokens: u32,
        system: &str,
        prompt: &str,
        trigger: &str,
    ) -> Result<Reply, ClaudeError> {
        if self.spent >= self.cfg.budget_usd {
            return Err(ClaudeError::BudgetExhausted {
                spent: self.spent,
                cap: self.cfg.budget_usd,
            });
        }
        let body = Request {
            model,
            max_tokens,
            system,
            messages: vec![Message {
                role: "user",
                content: prompt,
            }],
        };
        let url = format!("{}/v1/messages", self.cfg.base_url.trim_end_matches('/'));
        let attempts = self.cfg.retries + 1;
        let mut last: Option<ClaudeError> = None;
        for attempt in 1..=attempts {
            self.rate_limit();
            let started = Instant::now();
            let sent = self.rt.block_on(async {
                let r = self
                    .http
                    .post(&url)
                    .header("x-api-key", &self.key)
                    .header("anthropic-version", API_VERSION)
                    .header("content-type", "application/json")
                    .json(&body)
                    .send()
                    .await?;
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok());
                let text = r.text().await?;
                Ok::<_, reqwest::Error>((status, retry_after, text))
            });
            let latency_ms = started.elapsed().as_millis() as u64;
            let (status, retry_after, text) = match sent {
                Ok(x) => x,
                Err(e) => {
                    let message = if e.is_timeout() {
                        format!("timed out after {:?}", self.cfg.timeout)
                    } else {
                        e.to_string()
                    };
                    audit(
                        conn,
                        self.clock.now(),
                        prompt,
                        &format!("transport error: {message}"),
                        model,
                        0,
                        0,
                        latency_ms,
                        0.0,
                        trigger,
                        None,
                    )?;
                    last = Some(ClaudeError::Transport {
                        attempts: attempt,
                        message,
                    });
                    self.backoff(attempt, None);
                    continue;
                }
            };
            if status == 200 {
                let parsed: Response = match serde_json::from_str(&text) {
                    Ok(p) => p,
                    Err(e) => {
                        audit(
                            conn,
                            self.clock.now(),
                            prompt,
                            &text,
                            model,
                            0,
                            0,
                            latency_ms,
                            0.0,
                            trigger,
                            Some(status),
                        )?;
                        return Err(ClaudeError::BadResponse(e.to_string()));
                    }
                };
                let reply_text: String = parsed
                    .content
                    .iter()
                    .filter(|b| b.kind == "text")
                    .map(|b| b.text.as_str())
                    .collect::<Vec<_>>()
                    .join("");
                let cost = parsed.usage.input_tokens as f64 * price.input / 1e6
                    + parsed.usage.output_tokens as f64 * price.output / 1e6;
                self.spent += cost;
                audit(
                    conn,
                    self.clock.now(),
                    prompt,
                    &reply_text,
                    model,
                    parsed.usage.input_tokens,
                    parsed.usage.output_tokens,
                    latency_ms,
                    cost,
                    trigger,
                    Some(status),
                )?;
                return Ok(Reply {
                    text: reply_text,
                    input_tokens: parsed.usage.input_tokens,
                    output_tokens: parsed.usage.output_tokens,
                    cost_usd: cost,
                    latency_ms,
                });
            }
            audit(
                conn,
                self.clock.now(),
                prompt,
                &text,
                model,
                0,
                0,
                latency_ms,
                0.0,
                trigger,
                Some(status),
            )?;
            let detail = serde_json::from_str::<ErrorBody>(&text)
                .ok()
                .map(|b| b.error);
            match status {
                429 => {
                    last = Some(ClaudeError::RateLimited { attempts: attempt });
                    self.backoff(attempt, retry_after);
                }
                529 => {
                    last = Some(ClaudeError::Overloaded { attempts: attempt });
                    self.backoff(attempt, retry_after);
                }
                500..=599 => {
                    let d = detail.unwrap_or(ErrorDetail {
                        kind: "api_error".into(),
                        message: text.chars().take(300).collect(),
                    });
                    last = Some(ClaudeError::Api {
                        status,
                        kind: d.kind,
                        message: d.message,
                    });
                    self.backoff(attempt, retry_after);
                }
                _ => {
                    let d = detail.unwrap_or(ErrorDetail {
                        kind: "unknown".into(),
                        message: text.chars().take(300).collect(),
                    });
                    return Err(ClaudeError::Api {
                        status,
                        kind: d.kind,
                        message: d.message,
                    });
                }
            }
        }
        Err(last.unwrap_or(ClaudeError::Transport {
            attempts,
            message: "no attempt made".into(),
        }))
    }

    fn backoff(&self, attempt: u32, retry_after: Option<f64>) {
        if attempt > self.cfg.retries {
            return;
        }
        let exp = self
            .cfg
            .backoff
            .saturating_mul(1u32 << (attempt - 1).min(10));
        let wait = match retry_after.filter(|s| s.is_finite() && *s >= 0.0) {
            // a huge value (`1e20`) saturates to the cap instead of panicking
            Some(s) => Duration::try_from_secs_f64(s).map_or(self.cfg.max_retry_after, |d| {
                d.min(self.cfg.max_retry_after)
            }),
            None => exp,
        };
        std::thread::sleep(wait);
    }
}

/// Writes one audit row.
#[allow(clippy::too_many_arguments)]
fn audit(
    conn: &Connection,
    ts: i64,
    prompt: &str,
    response: &str,
    model: &str,
    tokens_in: u64,
    tokens_out: u64,
    latency_ms: u64,
    cost: f64,
    trigger: &str,
    status: Option<u16>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO ai_audit (ts, trigger, model, prompt, response, tokens_in, tokens_out, latency_ms, cost_usd, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            ts,
            trigger,
            model,
            prompt,
            response,
            tokens_in as i64,
            tokens_out as i64,
            latency_ms as i64,
            cost,
            status.map(i64::from)
        ],
    )?;
    Ok(())
}

/// USD spent since `since` (Unix seconds), from the audit table.
pub fn spent_since(conn: &Connection, since: i64) -> rusqlite::Result<f64> {
    conn.query_row(
        "SELECT COALESCE(SUM(cost_usd), 0.0) FROM ai_audit WHERE ts >= ?1",
        [since],
        |r| r.get(0),
    )
}

/// The first fenced code block (```rust or ```), if any.
pub fn code_block(text: &str) -> Option<String> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.find("```")?;
    Some(body[..end].to_string())
}

/// The value of a `KEY: value` line (case-insensitive key).
pub fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .trim_matches('*')
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_code_blocks_and_fields() {
        let t = "DECISION: tweak\nCONFIDENCE: 0.7\nSome words.\n```rust\nfn a() {}\n```\ntrailing";
        assert_eq!(code_block(t).as_deref(), Some("fn a() {}\n"));
        assert_eq!(field(t, "decision").as_deref(), Some("tweak"));
        assert_eq!(field(t, "**Confidence**").as_deref(), None);
        assert_eq!(
            field("**CONFIDENCE**: 0.7", "confidence").as_deref(),
            Some("0.7")
        );
        assert_eq!(code_block("no code"), None);
        assert_eq!(code_block("```rust\nunterminated"), None);
    }

    #[test]
    fn reply_shapes_parse() {
        let ok = r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"},{"type":"text","text":" there"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":3}}"#;
        let r: Response = serde_json::from_str(ok).unwrap();
        assert_eq!(r.content.len(), 2);
        assert_eq!(r.usage.input_tokens, 12);
        let err = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#;
        let e: ErrorBody = serde_json::from_str(err).unwrap();
        assert_eq!(e.error.kind, "invalid_request_error");
    }
}
