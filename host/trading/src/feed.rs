//! Where the shell's bars come from: the [`Feed`] trait, its events, and the
//! replay of stored or file candles in close order (paced, or as fast as
//! possible). Live venue feeds implement the same trait (`live::ExchangeFeed`).

use trading_core::{Candle, Interval};

/// What a market feed yields.
pub enum FeedEvent {
    /// A closed candle.
    Bar(String, Interval, Candle),
    /// A symbol's best bid and ask (live feeds): price and spread of the market view.
    Quote {
        symbol: String,
        bid: f64,
        ask: f64,
        last: f64,
    },
    /// The venue's connection came back after a drop: candles closed while
    /// it was down may be missing and are fetched over REST.
    Reconnected,
    /// Time passed with no bar (live feeds): run due jobs at this wall time,
    /// or (`None`, a feed clock) at the clock of the last bar.
    Tick(Option<i64>),
}

/// Where candles come from: a replayed file, or (live) an exchange feed.
pub trait Feed {
    /// The next event, or None at the end of the feed.
    fn next_event(&mut self) -> Option<FeedEvent>;
}

/// Replays candles in time order, paced at `speed`× real time (None = as fast as possible).
pub struct ReplayFeed {
    bars: std::vec::IntoIter<(String, Interval, Candle)>,
    speed: Option<f64>,
    last_ts: Option<i64>,
}

impl ReplayFeed {
    pub fn new(mut bars: Vec<(String, Interval, Candle)>, speed: Option<f64>) -> Self {
        bars.sort_by_key(|(s, i, c)| (c.ts + i.secs(), s.clone()));
        ReplayFeed {
            bars: bars.into_iter(),
            speed,
            last_ts: None,
        }
    }

    /// Drops every bar closing at or before `ts` (a restarted replay resumes after what it saw).
    pub fn skip_through(&mut self, ts: i64) {
        let rest: Vec<_> = self
            .bars
            .by_ref()
            .filter(|(_, i, c)| c.ts + i.secs() > ts)
            .collect();
        self.bars = rest.into_iter();
    }
}

impl Feed for ReplayFeed {
    fn next_event(&mut self) -> Option<FeedEvent> {
        let bar = self.bars.next()?;
        if let (Some(speed), Some(last)) = (self.speed, self.last_ts) {
            let dt = (bar.2.ts - last).max(0) as f64 / speed;
            if dt > 0.0 {
                std::thread::sleep(std::time::Duration::from_secs_f64(dt.min(60.0)));
            }
        }
        self.last_ts = Some(bar.2.ts);
        Some(FeedEvent::Bar(bar.0, bar.1, bar.2))
    }
}
