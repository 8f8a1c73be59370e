//! The Messages API client, on either provider: Anthropic (POST
//! `{base}/v1/messages` with `x-api-key` and `anthropic-version: 2023-06-01`)
//! or Vertex AI (POST `{base}/v1/projects/{project}/locations/{region}/
//! publishers/anthropic/models/{model}:rawPredict`, the same messages body
//! with `anthropic_version: vertex-2023-10-16` instead of `model`, and a
//! bearer token). Multi-turn conversations, the reply's `stop_reason`,
//! timeouts, retries with backoff (429 honours `retry-after`, 529 and 5xx
//! back off, 400 is final), a per-minute rate limit, a nightly spending cap,
//! and every request and response written to `ai_audit`. The key or token
//! comes from the environment only (`ANTHROPIC_API_KEY`, `VERTEX_ACCESS_TOKEN`)
//! and is never logged or stored.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Environment variable holding the key.
pub const KEY_VAR: &str = "ANTHROPIC_API_KEY";
pub const API_VERSION: &str = "2023-06-01";
/// Environment variable holding the Vertex AI bearer token
/// (e.g. `gcloud auth print-access-token`).
pub const VERTEX_TOKEN_VAR: &str = "VERTEX_ACCESS_TOKEN";
/// The `anthropic_version` a Vertex AI request body carries.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// Which endpoint speaks the Messages API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    Anthropic,
    /// Vertex AI's `rawPredict` for the project and region.
    Vertex {
        project: String,
        region: String,
    },
}

impl Provider {
    /// The environment variable holding this provider's credential.
    pub fn key_var(&self) -> &'static str {
        match self {
            Provider::Anthropic => KEY_VAR,
            Provider::Vertex { .. } => VERTEX_TOKEN_VAR,
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaudeError {
    #[error("{0} is not set")]
    NoKey(&'static str),
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
    pub provider: Provider,
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

/// Why the model stopped (the reply's `stop_reason`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    /// Cut at `max_tokens`: the text is incomplete.
    MaxTokens,
    StopSequence,
    ToolUse,
    PauseTurn,
    Refusal,
    #[serde(other)]
    Other,
}

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Turn {
    pub role: Role,
    pub content: String,
}

impl Turn {
    pub fn user(content: impl Into<String>) -> Turn {
        Turn {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Turn {
        Turn {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// One model reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub text: String,
    /// `None` when the reply did not say (treated like `end_turn`).
    pub stop_reason: Option<StopReason>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub latency_ms: u64,
}

#[derive(Serialize)]
struct Request<'a> {
    /// Anthropic only (Vertex names the model in the URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    /// Vertex only.
    #[serde(skip_serializing_if = "Option::is_none")]
    anthropic_version: Option<&'a str>,
    max_tokens: u32,
    system: &'a str,
    messages: &'a [Turn],
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
    #[serde(default)]
    stop_reason: Option<StopReason>,
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
        let var = cfg.provider.key_var();
        let key = std::env::var(var)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .ok_or(ClaudeError::NoKey(var))?;
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

    /// Sends one single-turn request; every attempt is audited in `conn`.
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
        self.converse(
            conn,
            model,
            price,
            max_tokens,
            system,
            &[Turn::user(prompt)],
            trigger,
        )
    }

    /// Has the nightly cap been reached?
    pub fn budget_left(&self) -> bool {
        self.spent < self.cfg.budget_usd
    }

    /// The endpoint for `model`.
    fn url(&self, model: &str) -> String {
        let base = self.cfg.base_url.trim_end_matches('/');
        match &self.cfg.provider {
            Provider::Anthropic => format!("{base}/v1/messages"),
            Provider::Vertex { project, region } => format!(
                "{base}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict"
            ),
        }
    }

    /// Sends a conversation (`turns` alternate, the first is the user's; a
    /// last assistant turn is a prefix the model continues); every attempt is
    /// audited in `conn` with the last turn as its prompt.
    #[allow(clippy::too_many_arguments)]
    pub fn converse(
        &mut self,
        conn: &Connection,
        model: &str,
        price: Price,
        max_tokens: u32,
        system: &str,
        turns: &[Turn],
        trigger: &str,
    ) -> Result<Reply, ClaudeError> {
        if self.spent >= self.cfg.budget_usd {
            return Err(ClaudeError::BudgetExhausted {
                spent: self.spent,
                cap: self.cfg.budget_usd,
            });
        }
        let vertex = matches!(self.cfg.provider, Provider::Vertex { .. });
        let body = Request {
            model: (!vertex).then_some(model),
            anthropic_version: vertex.then_some(VERTEX_VERSION),
            max_tokens,
            system,
            messages: turns,
        };
        let prompt: &str = turns.last().map(|t| t.content.as_str()).unwrap_or("");
        let url = self.url(model);
        let attempts = self.cfg.retries + 1;
        let mut last: Option<ClaudeError> = None;
        for attempt in 1..=attempts {
            self.rate_limit();
            let started = Instant::now();
            let sent = self.rt.block_on(async {
                let req = self.http.post(&url);
                let req = if vertex {
                    req.bearer_auth(&self.key)
                } else {
                    req.header("x-api-key", &self.key)
                        .header("anthropic-version", API_VERSION)
                };
                let r = req
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
                    stop_reason: parsed.stop_reason,
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

/// A fenced block of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    /// The info string after the opening fence, lowercased (`rust`, `markdown`, ``).
    pub lang: String,
    pub body: String,
    /// 1-based line of the opening fence.
    pub line: usize,
    /// 1-based line of the closing fence.
    pub end: usize,
}

/// Every complete fenced block (a fence of three or more backticks at the
/// start of a line, closed by a fence at least as long); an unterminated
/// block at the end is not returned.
pub fn fenced_blocks(text: &str) -> Vec<Fenced> {
    let mut out = Vec::new();
    let mut open: Option<(usize, String, usize, Vec<&str>)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let ticks = t.chars().take_while(|c| *c == '`').count();
        match &mut open {
            None if ticks >= 3 => {
                let lang = t[ticks..].trim().to_ascii_lowercase();
                open = Some((ticks, lang, i + 1, Vec::new()));
            }
            None => {}
            Some((n, _, _, _)) if ticks >= *n && t[ticks..].trim().is_empty() => {
                if let Some((_, lang, line, body)) = open.take() {
                    let mut b = body.join("\n");
                    b.push('\n');
                    out.push(Fenced {
                        lang,
                        body: b,
                        line,
                        end: i + 1,
                    });
                }
            }
            Some((_, _, _, body)) => body.push(line),
        }
    }
    out
}

/// The last complete ```rust block (else the last complete unlabelled one), if any.
pub fn code_block(text: &str) -> Option<String> {
    let blocks = fenced_blocks(text);
    blocks
        .iter()
        .rev()
        .find(|b| b.lang == "rust" || b.lang == "rs")
        .or_else(|| blocks.iter().rev().find(|b| b.lang.is_empty()))
        .map(|b| b.body.clone())
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
        // the last complete rust block wins; a shell block and a cut block do not
        let t2 = "```rust\nfn draft() {}\n```\n```sh\ncargo build\n```\n```rust\nfn fin() {}\n```\n```rust\nfn cut(";
        assert_eq!(code_block(t2).as_deref(), Some("fn fin() {}\n"));
        let b = fenced_blocks("x\n````markdown\n```rust\ninner\n```\n````\n");
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].lang.as_str(), b[0].line), ("markdown", 2));
        assert!(b[0].body.contains("inner"));
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
        assert_eq!(r.stop_reason, Some(StopReason::EndTurn));
        let cut = ok.replace("end_turn", "max_tokens");
        let r: Response = serde_json::from_str(&cut).unwrap();
        assert_eq!(r.stop_reason, Some(StopReason::MaxTokens));
        let odd = ok.replace("end_turn", "something_new");
        let r: Response = serde_json::from_str(&odd).unwrap();
        assert_eq!(r.stop_reason, Some(StopReason::Other));
        assert_eq!(r.usage.input_tokens, 12);
        let err = r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: too big"}}"#;
        let e: ErrorBody = serde_json::from_str(err).unwrap();
        assert_eq!(e.error.kind, "invalid_request_error");
    }
}
