//! When the orchestrator runs: the nightly window in America/New_York time
//! (US daylight-saving rule computed here, no time-zone database), tuning
//! triggers with priority, cooldown and episodes (a condition that holds for
//! hours — a losing streak, a daily loss, an ATR spike, a winning streak —
//! starts one cycle when it begins, and can start another only after it has
//! ended), and the rollback rule for a deployed candidate that trails its
//! backtest. Pure functions of the state they are given.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

/// "HH:MM" as a time of day.
pub fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    let (h, m) = s.trim().split_once(':')?;
    NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

fn nth_sunday(year: i32, month: u32, n: u32) -> Option<NaiveDate> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let offset = (7 - first.weekday().num_days_from_sunday()) % 7;
    first.checked_add_signed(Duration::days(i64::from(offset + 7 * (n - 1))))
}

/// Is US daylight saving time in effect at `t`? From the second Sunday of
/// March 02:00 EST (07:00 UTC) to the first Sunday of November 02:00 EDT (06:00 UTC).
pub fn us_eastern_dst(t: DateTime<Utc>) -> bool {
    let y = t.year();
    let (Some(start), Some(end)) = (nth_sunday(y, 3, 2), nth_sunday(y, 11, 1)) else {
        return false;
    };
    let start = Utc.from_utc_datetime(&start.and_hms_opt(7, 0, 0).unwrap_or_default());
    let end = Utc.from_utc_datetime(&end.and_hms_opt(6, 0, 0).unwrap_or_default());
    t >= start && t < end
}

/// New York wall-clock time of `t`.
pub fn new_york(t: DateTime<Utc>) -> chrono::NaiveDateTime {
    let offset = if us_eastern_dst(t) { -4 } else { -5 };
    (t + Duration::hours(offset)).naive_utc()
}

/// Is `t` inside the nightly window `[start, end)` New York time? A window
/// crossing midnight (start > end) is allowed.
pub fn in_window(t: DateTime<Utc>, start: NaiveTime, end: NaiveTime) -> bool {
    let local = new_york(t).time();
    if start <= end {
        local >= start && local < end
    } else {
        local >= start || local < end
    }
}

/// What asks for a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Manual,
    LossThreshold,
    ConsecutiveLosses,
    ConsecutiveWins,
    AtrSpike,
    EveryNTrades,
    Nightly,
}

impl TriggerKind {
    /// 0 is the most urgent.
    pub fn priority(self) -> u8 {
        match self {
            TriggerKind::Manual => 0,
            TriggerKind::LossThreshold | TriggerKind::ConsecutiveLosses => 1,
            TriggerKind::AtrSpike | TriggerKind::ConsecutiveWins => 2,
            TriggerKind::EveryNTrades | TriggerKind::Nightly => 3,
        }
    }

    /// Kinds whose condition lasts (an episode): they fire once per episode.
    pub fn episodic(self) -> bool {
        matches!(
            self,
            TriggerKind::LossThreshold
                | TriggerKind::ConsecutiveLosses
                | TriggerKind::ConsecutiveWins
                | TriggerKind::AtrSpike
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Manual => "manual",
            TriggerKind::LossThreshold => "loss_threshold",
            TriggerKind::ConsecutiveLosses => "consecutive_losses",
            TriggerKind::ConsecutiveWins => "consecutive_wins",
            TriggerKind::AtrSpike => "atr_spike",
            TriggerKind::EveryNTrades => "every_n_trades",
            TriggerKind::Nightly => "nightly",
        }
    }
}

/// A due trigger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub priority: u8,
    pub detail: String,
}

/// Thresholds of the triggers.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConfig {
    pub window_start: NaiveTime,
    pub window_end: NaiveTime,
    pub loss_threshold_pct: f64,
    pub consecutive_losses: u32,
    /// A winning streak this long is a trigger too (0: off).
    pub consecutive_wins: u32,
    pub every_n_trades: u64,
    pub atr_spike_pct: f64,
    /// A trigger kind that fired fires again only after this long (manual: never held back).
    pub cooldown: Duration,
}

impl TriggerConfig {
    pub fn from_settings(s: &super::OrchestratorSettings) -> Option<Self> {
        Some(TriggerConfig {
            window_start: parse_hhmm(&s.window_start)?,
            window_end: parse_hhmm(&s.window_end)?,
            loss_threshold_pct: s.loss_threshold_pct,
            consecutive_losses: s.consecutive_losses,
            consecutive_wins: s.consecutive_wins,
            every_n_trades: s.every_n_trades,
            atr_spike_pct: s.atr_spike_pct,
            cooldown: Duration::minutes(s.cooldown_minutes.max(0)),
        })
    }
}

/// What the shell knows when it asks which triggers are due.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerState {
    pub config: TriggerConfig,
    /// Today's realised + unrealised result, percent of the day's opening value.
    pub session_pnl_pct: f64,
    pub consecutive_losses: u32,
    pub consecutive_wins: u32,
    pub closed_trades: u64,
    /// `closed_trades` at the last review.
    pub trades_at_last_review: u64,
    /// Current ATR and its baseline (e.g. the 30-day mean), per symbol.
    pub atr: BTreeMap<String, (f64, f64)>,
    pub manual_requested: bool,
    /// When each kind last fired.
    pub last_fired: BTreeMap<TriggerKind, DateTime<Utc>>,
    /// New York date of the last nightly cycle.
    pub last_nightly: Option<NaiveDate>,
    /// Episodic kinds that fired and whose condition still held when last
    /// observed: they do not fire again until it has ended.
    pub open_episodes: std::collections::BTreeSet<TriggerKind>,
}

/// The triggers due at `now`, most urgent first (cooldowns applied, open
/// episodes held back).
pub fn due_triggers(state: &TriggerState, now: DateTime<Utc>) -> Vec<Trigger> {
    conditions(state, now)
        .into_iter()
        .filter(|t| !state.open_episodes.contains(&t.kind))
        .collect()
}

/// Observes the state at `now`: closes the episodes whose condition has
/// ended, returns the triggers due, and records them as fired (cooldown,
/// episode, nightly date, manual request and trade count reset).
pub fn fire(state: &mut TriggerState, now: DateTime<Utc>) -> Vec<Trigger> {
    let holding: std::collections::BTreeSet<TriggerKind> = conditions(
        &TriggerState {
            last_fired: BTreeMap::new(),
            ..state.clone()
        },
        now,
    )
    .into_iter()
    .map(|t| t.kind)
    .collect();
    state.open_episodes.retain(|k| holding.contains(k));
    let due = due_triggers(state, now);
    for t in &due {
        state.last_fired.insert(t.kind, now);
        if t.kind.episodic() {
            state.open_episodes.insert(t.kind);
        }
        if t.kind == TriggerKind::Nightly {
            state.last_nightly = Some(new_york(now).date());
        }
    }
    if !due.is_empty() {
        state.manual_requested = false;
        state.trades_at_last_review = state.closed_trades;
    }
    due
}

/// Every trigger whose condition holds at `now`, cooldowns applied.
fn conditions(state: &TriggerState, now: DateTime<Utc>) -> Vec<Trigger> {
    let cfg = &state.config;
    let mut out = Vec::new();
    let cooled = |k: TriggerKind| {
        k == TriggerKind::Manual
            || state
                .last_fired
                .get(&k)
                .is_none_or(|t| now - *t >= cfg.cooldown)
    };
    let mut push = |kind: TriggerKind, detail: String| {
        if cooled(kind) {
            out.push(Trigger {
                kind,
                priority: kind.priority(),
                detail,
            });
        }
    };
    if state.manual_requested {
        push(TriggerKind::Manual, "requested by the user".into());
    }
    if cfg.loss_threshold_pct > 0.0 && state.session_pnl_pct <= -cfg.loss_threshold_pct {
        push(
            TriggerKind::LossThreshold,
            format!(
                "session result {:.2}% is below -{}%",
                state.session_pnl_pct, cfg.loss_threshold_pct
            ),
        );
    }
    if cfg.consecutive_losses > 0 && state.consecutive_losses >= cfg.consecutive_losses {
        push(
            TriggerKind::ConsecutiveLosses,
            format!("{} losing trades in a row", state.consecutive_losses),
        );
    }
    if cfg.consecutive_wins > 0 && state.consecutive_wins >= cfg.consecutive_wins {
        push(
            TriggerKind::ConsecutiveWins,
            format!(
                "{} winning trades in a row: time to check the edge is real",
                state.consecutive_wins
            ),
        );
    }
    for (sym, (now_atr, base)) in &state.atr {
        if *base > 0.0 && now_atr.is_finite() && (now_atr / base - 1.0) * 100.0 > cfg.atr_spike_pct
        {
            push(
                TriggerKind::AtrSpike,
                format!(
                    "{sym}: ATR {now_atr:.4} is {:.0}% above its baseline {base:.4}",
                    (now_atr / base - 1.0) * 100.0
                ),
            );
            break;
        }
    }
    if cfg.every_n_trades > 0
        && state.closed_trades >= state.trades_at_last_review + cfg.every_n_trades
    {
        push(
            TriggerKind::EveryNTrades,
            format!(
                "{} trades closed since the last review",
                state.closed_trades - state.trades_at_last_review
            ),
        );
    }
    let today = new_york(now).date();
    if in_window(now, cfg.window_start, cfg.window_end) && state.last_nightly != Some(today) {
        push(
            TriggerKind::Nightly,
            format!(
                "nightly window {}–{} New York",
                cfg.window_start.format("%H:%M"),
                cfg.window_end.format("%H:%M")
            ),
        );
    }
    out.sort_by_key(|t| (t.priority, t.kind));
    out
}

// What a deployed version promised, how it has done since, and why it is
// rolled back: the types the `auto_rollback` event stores.
pub use host_store::payloads::{
    LiveRecord as Live, Promise as Expected, RollbackCause as RollbackReason,
};

/// Roll back when, after `min_days` or `min_trades` closed trades (0: days
/// only), the live return trails the expectation's pro-rata return, or the
/// live drawdown exceeds the expected one, by more than `allowed_pct`
/// percentage points.
pub fn check_rollback(
    expected: &Expected,
    live: &Live,
    allowed_pct: f64,
    min_days: f64,
    min_trades: u64,
) -> Option<RollbackReason> {
    if live.days.is_nan() {
        return None;
    }
    let judged = live.days >= min_days || (min_trades > 0 && live.trades >= min_trades);
    if !judged {
        return None;
    }
    let expected_pct = expected.return_pct_per_day * live.days;
    if live.return_pct < expected_pct - allowed_pct {
        return Some(RollbackReason::TrailsBacktest {
            expected_pct,
            live_pct: live.return_pct,
            allowed_pct,
        });
    }
    if live.max_drawdown_pct > expected.max_drawdown_pct + allowed_pct {
        return Some(RollbackReason::DeeperDrawdown {
            expected_pct: expected.max_drawdown_pct,
            live_pct: live.max_drawdown_pct,
            allowed_pct,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn state() -> TriggerState {
        TriggerState {
            config: TriggerConfig {
                window_start: parse_hhmm("03:30").unwrap(),
                window_end: parse_hhmm("06:00").unwrap(),
                loss_threshold_pct: 2.0,
                consecutive_losses: 3,
                consecutive_wins: 5,
                every_n_trades: 20,
                atr_spike_pct: 50.0,
                cooldown: Duration::minutes(60),
            },
            session_pnl_pct: 0.0,
            consecutive_losses: 0,
            consecutive_wins: 0,
            closed_trades: 0,
            trades_at_last_review: 0,
            atr: BTreeMap::new(),
            manual_requested: false,
            last_fired: BTreeMap::new(),
            last_nightly: None,
            open_episodes: Default::default(),
        }
    }

    /// Regression: a losing streak that lasted all day started a cycle every
    /// hour (each time the cooldown ran out).
    #[test]
    fn a_losing_streak_lasting_all_day_starts_one_cycle() {
        let mut s = state();
        let start = utc(2024, 1, 15, 12, 0); // outside the nightly window
        s.consecutive_losses = 4;
        let mut fired = Vec::new();
        for h in 0..24 {
            for t in fire(&mut s, start + Duration::hours(h)) {
                fired.push((h, t.kind));
            }
        }
        let losses: Vec<i64> = fired
            .iter()
            .filter(|(_, k)| *k == TriggerKind::ConsecutiveLosses)
            .map(|(h, _)| *h)
            .collect();
        assert_eq!(losses, vec![0], "{fired:?}");
        // the streak ends (a win), a new one begins: a new episode, a new cycle
        s.consecutive_losses = 0;
        assert!(fire(&mut s, start + Duration::hours(25)).is_empty());
        s.consecutive_losses = 3;
        let again: Vec<TriggerKind> = fire(&mut s, start + Duration::hours(26))
            .iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(again, vec![TriggerKind::ConsecutiveLosses]);
        // a manual request is never held back by an episode
        s.manual_requested = true;
        let m: Vec<TriggerKind> = fire(&mut s, start + Duration::hours(27))
            .iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(m, vec![TriggerKind::Manual]);
        assert!(!s.manual_requested);
    }

    #[test]
    fn a_winning_streak_is_a_trigger_once_per_episode() {
        let mut s = state();
        let t0 = utc(2024, 1, 15, 12, 0);
        s.consecutive_wins = 4;
        assert!(fire(&mut s, t0).is_empty());
        s.consecutive_wins = 5;
        let k: Vec<TriggerKind> = fire(&mut s, t0 + Duration::hours(1))
            .iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(k, vec![TriggerKind::ConsecutiveWins]);
        s.consecutive_wins = 9;
        assert!(fire(&mut s, t0 + Duration::hours(5)).is_empty());
        s.config.consecutive_wins = 0;
        s.open_episodes.clear();
        assert!(fire(&mut s, t0 + Duration::hours(9)).is_empty());
    }

    #[test]
    fn dst_boundaries_2024() {
        // 2024: DST from Sun 10 March 07:00 UTC to Sun 3 November 06:00 UTC
        assert!(!us_eastern_dst(utc(2024, 3, 10, 6, 59)));
        assert!(us_eastern_dst(utc(2024, 3, 10, 7, 0)));
        assert!(us_eastern_dst(utc(2024, 11, 3, 5, 59)));
        assert!(!us_eastern_dst(utc(2024, 11, 3, 6, 0)));
        assert_eq!(
            new_york(utc(2024, 7, 1, 8, 0)).format("%H:%M").to_string(),
            "04:00"
        );
        assert_eq!(
            new_york(utc(2024, 1, 1, 8, 0)).format("%H:%M").to_string(),
            "03:00"
        );
    }

    #[test]
    fn window_follows_new_york_time() {
        let (s, e) = (parse_hhmm("03:30").unwrap(), parse_hhmm("06:00").unwrap());
        // winter: 03:30 EST = 08:30 UTC
        assert!(!in_window(utc(2024, 1, 15, 8, 29), s, e));
        assert!(in_window(utc(2024, 1, 15, 8, 30), s, e));
        assert!(!in_window(utc(2024, 1, 15, 11, 0), s, e));
        // summer: 03:30 EDT = 07:30 UTC
        assert!(in_window(utc(2024, 7, 15, 7, 30), s, e));
        assert!(!in_window(utc(2024, 7, 15, 10, 0), s, e));
        // across midnight
        assert!(in_window(
            utc(2024, 1, 15, 5, 0),
            parse_hhmm("23:00").unwrap(),
            parse_hhmm("01:00").unwrap()
        ));
        assert_eq!(parse_hhmm("25:00"), None);
        assert_eq!(parse_hhmm("3"), None);
    }

    #[test]
    fn triggers_priority_cooldown_and_nightly_once_a_day() {
        let now = utc(2024, 1, 15, 9, 0); // 04:00 New York
        let mut s = state();
        assert_eq!(
            due_triggers(&s, now)
                .iter()
                .map(|t| t.kind)
                .collect::<Vec<_>>(),
            vec![TriggerKind::Nightly]
        );
        s.last_nightly = Some(NaiveDate::from_ymd_opt(2024, 1, 15).unwrap());
        assert!(due_triggers(&s, now).is_empty());
        s.session_pnl_pct = -2.5;
        s.consecutive_losses = 3;
        s.closed_trades = 25;
        s.trades_at_last_review = 5;
        s.manual_requested = true;
        s.atr.insert("BTCUSD".into(), (160.0, 100.0));
        let kinds: Vec<TriggerKind> = due_triggers(&s, now).iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![
                TriggerKind::Manual,
                TriggerKind::LossThreshold,
                TriggerKind::ConsecutiveLosses,
                TriggerKind::AtrSpike,
                TriggerKind::EveryNTrades
            ]
        );
        // fired 30 minutes ago: held back by the 60-minute cooldown, manual never is
        for k in kinds {
            s.last_fired.insert(k, now - Duration::minutes(30));
        }
        assert_eq!(
            due_triggers(&s, now)
                .iter()
                .map(|t| t.kind)
                .collect::<Vec<_>>(),
            vec![TriggerKind::Manual]
        );
        let later = now + Duration::minutes(31);
        assert_eq!(due_triggers(&s, later).len(), 5);
        // a 40% ATR rise is not a spike
        s.atr.insert("BTCUSD".into(), (140.0, 100.0));
        assert!(!due_triggers(&s, later)
            .iter()
            .any(|t| t.kind == TriggerKind::AtrSpike));
    }

    #[test]
    fn rollback_rule() {
        let e = Expected {
            return_pct_per_day: 0.5,
            max_drawdown_pct: 4.0,
        };
        let ok = Live {
            days: 4.0,
            trades: 2,
            return_pct: 0.0,
            max_drawdown_pct: 5.0,
        };
        assert_eq!(check_rollback(&e, &ok, 5.0, 3.0, 10), None);
        let trailing = Live {
            return_pct: -3.5,
            ..ok
        };
        assert!(
            matches!(check_rollback(&e, &trailing, 5.0, 3.0, 10), Some(RollbackReason::TrailsBacktest { expected_pct, .. }) if expected_pct == 2.0)
        );
        let deep = Live {
            max_drawdown_pct: 9.5,
            ..ok
        };
        assert!(matches!(
            check_rollback(&e, &deep, 5.0, 3.0, 10),
            Some(RollbackReason::DeeperDrawdown { .. })
        ));
        // too early to judge
        assert_eq!(
            check_rollback(
                &e,
                &Live {
                    days: 1.0,
                    ..trailing
                },
                5.0,
                3.0,
                10
            ),
            None
        );
        // ... unless enough trades closed: one day, ten trades, trailing by 4.0 points
        let (expected_pct, live_pct) = (0.5, -3.5);
        assert_eq!(
            check_rollback(
                &e,
                &Live {
                    days: 1.0,
                    trades: 10,
                    ..trailing
                },
                3.0,
                3.0,
                10
            ),
            Some(RollbackReason::TrailsBacktest {
                expected_pct,
                live_pct,
                allowed_pct: 3.0
            })
        );
        assert_eq!(
            check_rollback(
                &e,
                &Live {
                    days: f64::NAN,
                    ..trailing
                },
                5.0,
                3.0,
                10
            ),
            None
        );
    }
}
