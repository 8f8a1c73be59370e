//! A minimal Telegram Bot API client over reqwest: `getUpdates` long polling
//! and `sendMessage` (HTML parse mode), honouring `429 retry_after`. The
//! token is part of every URL, so errors are stripped of URLs before they
//! are shown or logged.

use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("bot api transport: {0}")]
    Transport(String),
    #[error("bot api: {method} answered {code}: {description}")]
    Api {
        method: &'static str,
        code: i64,
        description: String,
    },
    #[error("bot api: rate limited, retry after {0} s")]
    RetryAfter(u64),
    #[error("bot api: {method}: unreadable answer: {message}")]
    Decode {
        method: &'static str,
        message: String,
    },
}

fn transport(e: reqwest::Error) -> BotError {
    BotError::Transport(e.without_url().to_string())
}

/// The parts of a Telegram `Update` the bot uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub update_id: i64,
    pub message: Option<Message>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub message_id: i64,
    pub chat: Chat,
    pub from: Option<User>,
    pub date: Option<i64>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel` (None when absent: never trusted as private).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: Option<String>,
}

/// One entry of a `getUpdates` answer: parsed, or malformed (with its id when readable).
#[derive(Debug)]
pub enum Incoming {
    Update(Update),
    Malformed {
        update_id: Option<i64>,
        error: String,
    },
}

/// Reads one entry of a `getUpdates` answer; never fails, never panics.
pub fn parse_update(item: Value) -> Incoming {
    let id = item.get("update_id").and_then(Value::as_i64);
    match serde_json::from_value::<Update>(item) {
        Ok(u) => Incoming::Update(u),
        Err(e) => Incoming::Malformed {
            update_id: id,
            error: e.to_string(),
        },
    }
}

pub struct BotApi {
    client: reqwest::Client,
    /// `{api_url}/bot{token}`: never logged.
    base: String,
}

impl BotApi {
    pub fn new(api_url: &str, token: &str, poll_timeout_s: u32) -> Result<BotApi, BotError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(u64::from(poll_timeout_s) + 15))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(transport)?;
        Ok(BotApi {
            client,
            base: format!("{}/bot{token}", api_url.trim_end_matches('/')),
        })
    }

    async fn call(&self, method: &'static str, body: &Value) -> Result<Value, BotError> {
        let resp = self
            .client
            .post(format!("{}/{method}", self.base))
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let v: Value = resp.json().await.map_err(|e| BotError::Decode {
            method,
            message: format!("HTTP {status}: {}", e.without_url()),
        })?;
        if v["ok"].as_bool() == Some(true) {
            return Ok(v["result"].clone());
        }
        let code = v["error_code"]
            .as_i64()
            .unwrap_or(i64::from(status.as_u16()));
        if code == 429 {
            let wait = v["parameters"]["retry_after"].as_u64().unwrap_or(1);
            return Err(BotError::RetryAfter(wait));
        }
        Err(BotError::Api {
            method,
            code,
            description: v["description"]
                .as_str()
                .unwrap_or("no description")
                .to_string(),
        })
    }

    /// Updates from `offset` on, waiting up to `timeout_s` for one.
    pub async fn get_updates(
        &self,
        offset: i64,
        timeout_s: u32,
    ) -> Result<Vec<Incoming>, BotError> {
        let v = self
            .call(
                "getUpdates",
                &json!({ "offset": offset, "timeout": timeout_s, "allowed_updates": ["message"] }),
            )
            .await?;
        let Value::Array(items) = v else {
            return Err(BotError::Decode {
                method: "getUpdates",
                message: "result is not a list".into(),
            });
        };
        Ok(items.into_iter().map(parse_update).collect())
    }

    /// Registers the bot's command list (`setMyCommands`): the menu the
    /// Telegram clients show; `commands` are (name, description).
    pub async fn set_my_commands(&self, commands: &[(&str, String)]) -> Result<(), BotError> {
        let list: Vec<Value> = commands
            .iter()
            .map(|(c, d)| json!({ "command": c, "description": d }))
            .collect();
        self.call("setMyCommands", &json!({ "commands": list }))
            .await
            .map(|_| ())
    }

    /// Sends one message (at most 4096 characters), waiting out 429s (up to 5 times).
    pub async fn send_message(&self, chat_id: i64, html: &str) -> Result<(), BotError> {
        let body = json!({ "chat_id": chat_id, "text": html, "parse_mode": "HTML", "disable_web_page_preview": true });
        let mut tries = 0;
        loop {
            match self.call("sendMessage", &body).await {
                Err(BotError::RetryAfter(s)) if tries < 5 => {
                    tries += 1;
                    tracing::warn!(retry_after = s, "telegram rate limit: waiting");
                    tokio::time::sleep(Duration::from_secs(s.min(300))).await;
                }
                other => return other.map(|_| ()),
            }
        }
    }
}
