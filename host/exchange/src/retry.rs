//! Shared retry policy and client-side rate limiter: 429/5xx/timeouts retried with exponential
//! backoff and jitter (a `Retry-After` wins), and order placement that looks an order up by its
//! client id after an ambiguous failure instead of blindly sending it again.

use super::{ExResult, ExchangeError, OrderAck, OrderSpec, OrderStatus};
use rand::Rng;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often and how long to wait between attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0-based) after `err`: the venue's `Retry-After`
    /// when it sent one, else `base · 2^attempt` capped at `max_delay`, jittered into [½, 1]×.
    pub fn delay(&self, attempt: u32, err: &ExchangeError) -> Duration {
        if let ExchangeError::RateLimited {
            retry_after: Some(d),
        } = err
        {
            return *d;
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let half = exp / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }

    /// Runs an idempotent call, retrying retryable errors.
    pub async fn run<T, F, Fut>(&self, limiter: &RateLimiter, mut op: F) -> ExResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ExResult<T>>,
    {
        let mut attempt = 0;
        loop {
            limiter.acquire().await;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    tracing::debug!(error = %e, attempt, "retrying venue call");
                    tokio::time::sleep(self.delay(attempt, &e)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Places an order at most once. A clear refusal (429, connection refused) is retried as is;
    /// an ambiguous failure (timeout, 5xx, connection lost after sending) first asks the venue
    /// for the client id, and only sends again when the venue does not know the order.
    pub async fn place_once<S, SF, L, LF>(
        &self,
        limiter: &RateLimiter,
        spec: &OrderSpec,
        mut send: S,
        mut lookup: L,
    ) -> ExResult<OrderAck>
    where
        S: FnMut() -> SF,
        SF: Future<Output = ExResult<OrderAck>>,
        L: FnMut() -> LF,
        LF: Future<Output = ExResult<Option<OrderStatus>>>,
    {
        let mut attempt = 0;
        loop {
            limiter.acquire().await;
            let err = match send().await {
                Ok(ack) => return Ok(ack),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => e,
            };
            tracing::warn!(client_id = %spec.client_id, error = %err, attempt, "order placement failed");
            tokio::time::sleep(self.delay(attempt, &err)).await;
            if err.is_ambiguous() {
                match self.run(limiter, &mut lookup).await {
                    Ok(Some(found)) => {
                        return Ok(OrderAck {
                            order_id: found.order_id,
                            client_id: spec.client_id.clone(),
                            recovered: true,
                        })
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(ExchangeError::Unresolved {
                            client_id: spec.client_id.clone(),
                            message: format!("placement: {err}; lookup: {e}"),
                        })
                    }
                }
            }
            if attempt >= self.max_retries {
                return Err(err);
            }
            attempt += 1;
        }
    }
}

/// A token bucket: `rate` requests per second on average, bursts up to `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: u32) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            rate: rate_per_sec,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits until a token is available and takes it. A non-positive rate never waits.
    pub async fn acquire(&self) {
        if !self.rate.is_finite() || self.rate <= 0.0 {
            return;
        }
        loop {
            let wait = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(st.1).as_secs_f64() * self.rate;
                st.0 = (st.0 + refill).min(self.burst);
                st.1 = now;
                if st.0 >= 1.0 {
                    st.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - st.0) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OrderKind, OrderState, Side};
    use rust_decimal::Decimal;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    fn spec() -> OrderSpec {
        OrderSpec {
            client_id: "c1".into(),
            symbol: "BTCUSD".into(),
            side: Side::Buy,
            kind: OrderKind::Market,
            qty: Decimal::ONE,
        }
    }

    fn status() -> OrderStatus {
        OrderStatus {
            order_id: "O1".into(),
            client_id: Some("c1".into()),
            symbol: "BTCUSD".into(),
            side: Side::Buy,
            kind: OrderKind::Market,
            qty: Decimal::ONE,
            filled_qty: Decimal::ONE,
            avg_price: None,
            state: OrderState::Filled,
        }
    }

    #[test]
    fn delays_grow_are_capped_and_honour_retry_after() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let e = ExchangeError::Timeout;
        for _ in 0..50 {
            let d0 = p.delay(0, &e);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d3 = p.delay(3, &e);
            assert!(d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(800));
            assert!(p.delay(20, &e) <= Duration::from_secs(1));
        }
        let rl = ExchangeError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(p.delay(0, &rl), Duration::from_secs(7));
    }

    #[tokio::test]
    async fn ambiguous_failure_is_looked_up_not_resent() {
        let sends = AtomicU32::new(0);
        let limiter = RateLimiter::new(0.0, 1);
        let ack = fast()
            .place_once(
                &limiter,
                &spec(),
                || async {
                    sends.fetch_add(1, Ordering::SeqCst);
                    Err(ExchangeError::Timeout)
                },
                || async { Ok(Some(status())) },
            )
            .await
            .unwrap();
        assert_eq!(sends.load(Ordering::SeqCst), 1);
        assert!(ack.recovered);
        assert_eq!(ack.order_id, "O1");
    }

    #[tokio::test]
    async fn unknown_after_ambiguous_failure_is_resent() {
        let sends = AtomicU32::new(0);
        let lookups = AtomicU32::new(0);
        let limiter = RateLimiter::new(0.0, 1);
        let ack = fast()
            .place_once(
                &limiter,
                &spec(),
                || async {
                    if sends.fetch_add(1, Ordering::SeqCst) == 0 {
                        Err(ExchangeError::Http {
                            status: 502,
                            body: String::new(),
                        })
                    } else {
                        Ok(OrderAck {
                            order_id: "O2".into(),
                            client_id: "c1".into(),
                            recovered: false,
                        })
                    }
                },
                || async {
                    lookups.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                },
            )
            .await
            .unwrap();
        assert_eq!(
            (sends.load(Ordering::SeqCst), lookups.load(Ordering::SeqCst)),
            (2, 1)
        );
        assert!(!ack.recovered);
    }

    #[tokio::test]
    async fn failed_lookup_reports_unresolved_and_refusals_are_final() {
        let limiter = RateLimiter::new(0.0, 1);
        let e = fast()
            .place_once(
                &limiter,
                &spec(),
                || async { Err(ExchangeError::Transport("reset".into())) },
                || async { Err(ExchangeError::Auth("bad key".into())) },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ExchangeError::Unresolved { .. }), "{e}");
        let sends = AtomicU32::new(0);
        let e = fast()
            .place_once(
                &limiter,
                &spec(),
                || async {
                    sends.fetch_add(1, Ordering::SeqCst);
                    Err(ExchangeError::Venue {
                        code: "EOrder:Insufficient funds".into(),
                        message: String::new(),
                    })
                },
                || async { Ok(None) },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ExchangeError::Venue { .. }));
        assert_eq!(sends.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn token_bucket_spaces_requests() {
        let l = RateLimiter::new(200.0, 1);
        let t0 = Instant::now();
        for _ in 0..21 {
            l.acquire().await;
        }
        // One token up front, then one every 5 ms: never faster than the rate.
        assert!(Instant::now() - t0 >= Duration::from_millis(100));
    }
}
