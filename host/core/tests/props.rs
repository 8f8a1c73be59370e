//! Property tests of the money core: random signals and bars never make the
//! engine break a risk limit or the ledger identity, runs are deterministic,
//! and the parsers never panic.

use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;
use trading_core::csv::{parse_candles, walk_forward};
use trading_core::engine::{Engine, EngineConfig, EngineEvent};
use trading_core::fill::FillConfig;
use trading_core::portfolio::{CloseReason, Fill, FillKind, OrderSide, Portfolio};
use trading_core::risk::{Decision, RiskConfig, RiskManager};
use trading_core::{Action, Candle, Intent, Interval, MarketData, MarketView, OrderType, Signal};

const H: i64 = 3600;
const T0: i64 = 1_700_000_000 - 1_700_000_000 % H;
const SYMBOLS: [&str; 3] = ["A", "B", "C"];

#[derive(Debug, Clone)]
struct Sig {
    sym: usize,
    action: usize,
    size: f64,
    order_type: usize,
    trigger_off: f64,
    sl_off: Option<f64>,
    tp_off: Option<f64>,
}

#[derive(Debug, Clone)]
struct Move {
    gap: f64,
    body: f64,
    up: f64,
    down: f64,
}

#[derive(Debug, Clone)]
struct Step {
    signals: Vec<Sig>,
    moves: [Move; 3],
    resume: bool,
    kill: bool,
}

#[derive(Debug, Clone)]
struct Setup {
    risk: RiskConfig,
    fill: FillConfig,
    capital: i64,
    /// Raw float prices (up to 17 significant digits) instead of a 4-place tick.
    raw: bool,
    steps: Vec<Step>,
}

fn sig() -> impl Strategy<Value = Sig> {
    (
        0..3usize,
        prop_oneof![3 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize), 1 => Just(3usize)],
        prop_oneof![Just(0.0), 0.0..120.0f64, Just(-1.0), Just(f64::NAN)],
        0..3usize,
        -0.6..0.6f64,
        proptest::option::of(0.5..1.2f64),
        proptest::option::of(0.9..1.6f64),
    )
        .prop_map(|(sym, action, size, order_type, trigger_off, sl_off, tp_off)| Sig {
            sym,
            action,
            size,
            order_type,
            trigger_off,
            sl_off,
            tp_off,
        })
}

fn mv() -> impl Strategy<Value = Move> {
    (-0.2..0.2f64, -0.15..0.15f64, 0.0..0.1f64, 0.0..0.1f64).prop_map(|(gap, body, up, down)| Move {
        gap,
        body,
        up,
        down,
    })
}

fn step() -> impl Strategy<Value = Step> {
    (
        proptest::collection::vec(sig(), 0..4),
        [mv(), mv(), mv()],
        proptest::bool::weighted(0.1),
        proptest::bool::weighted(0.01),
    )
        .prop_map(|(signals, moves, resume, kill)| Step { signals, moves, resume, kill })
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1..=50u32,
        1..=100u32,
        1..=3u32,
        2..=30u32,
        5..=50u32,
        1..=6u32,
        0..=30u32,
        0..=50u32,
        100..100_000i64,
        any::<bool>(),
    )
        .prop_flat_map(|(max, def_frac, pos, daily, dd, losses, fee, slip, capital, raw)| {
            let risk = RiskConfig {
                max_trade_pct: Decimal::from(max),
                default_trade_pct: Decimal::from(max) * Decimal::from(def_frac) / Decimal::ONE_HUNDRED,
                max_open_positions: pos,
                max_daily_loss_pct: Decimal::from(daily),
                max_drawdown_pct: Decimal::from(dd),
                max_consecutive_losses: losses,
                allowed_symbols: Some(vec!["A".into(), "B".into()]),
                max_price_deviation_pct: Decimal::from(50),
                min_order_notional: Decimal::ZERO,
            };
            let fill = FillConfig { fee_bps: Decimal::from(fee), slippage_bps: Decimal::from(slip) };
            proptest::collection::vec(step(), 1..40).prop_map(move |steps| Setup {
                risk: risk.clone(),
                fill,
                capital,
                raw,
                steps,
            })
        })
}

/// Prices on a 4-decimal tick (or raw), never below 0.01.
fn tick(x: f64, raw: bool) -> f64 {
    if raw {
        x.max(0.01)
    } else {
        ((x * 1e4).round() / 1e4).max(0.01)
    }
}

fn to_signal(s: &Sig, price: f64, raw: bool) -> Signal {
    let action = [Action::Buy, Action::Sell, Action::Close, Action::Modify][s.action];
    let order_type = [OrderType::Market, OrderType::Limit, OrderType::Stop][s.order_type];
    Signal {
        symbol: SYMBOLS[s.sym].to_string(),
        action,
        size_pct: s.size,
        order_type,
        limit_price: (order_type != OrderType::Market).then(|| tick(price * (1.0 + s.trigger_off), raw)),
        stop_loss: s.sl_off.map(|o| tick(price * o, raw)),
        take_profit: s.tp_off.map(|o| tick(price * o, raw)),
        intent: Intent::Swing,
        tag: format!("s{}", s.sym),
        confidence: 0.5,
        reasoning: String::new(),
        slippage_tolerance: None,
    }
}

fn d(x: f64) -> Decimal {
    trading_core::money::to_decimal(x).unwrap()
}

/// Runs the scenario, asserting the properties after every step; returns a
/// log of every decision and event, and the final engine.
fn run(setup: &Setup) -> Result<(Vec<String>, Engine), TestCaseError> {
    let risk = RiskManager::new(setup.risk.clone()).unwrap();
    let portfolio = Portfolio::new(Decimal::from(setup.capital)).unwrap();
    let mut e = Engine::new(portfolio, risk, EngineConfig { fill: setup.fill, order_ttl_bars: 5 }).unwrap();
    let max_pos = setup.risk.max_open_positions as usize;
    let mut closes = [100.0f64, 20.0, 3.0];
    let mut log = Vec::new();
    for (i, st) in setup.steps.iter().enumerate() {
        let now = T0 + i as i64 * H;
        let mut data = MarketData::new();
        for (k, sym) in SYMBOLS.iter().enumerate() {
            let c = closes[k];
            data.set_series(
                sym,
                Interval::H1,
                vec![Candle { ts: now - H, open: c, high: c, low: c, close: c, volume: 1.0 }],
            );
        }
        let view = MarketView::new(Arc::new(data), now);
        if st.resume {
            e.resume();
        }
        if st.kill {
            log.push(format!("{:?}", e.kill(now)));
        }
        let signals: Vec<Signal> = st.signals.iter().map(|s| to_signal(s, closes[s.sym], setup.raw)).collect();
        let decisions = e.submit(now, &signals, &view);
        prop_assert_eq!(decisions.len(), signals.len());
        let value = e.portfolio().equity();
        let blocked = e.risk().entries_blocked();
        for dec in &decisions {
            if let Decision::Approved(o) = dec {
                if o.side == OrderSide::Buy {
                    prop_assert!(!blocked, "entry approved while halted or killed: {:?}", o);
                    prop_assert!(setup.risk.allowed_symbols.as_ref().unwrap().contains(&o.symbol));
                    let sizing = o.trigger_price.map_or(o.decision_price, |t| t.max(o.decision_price));
                    let budget = value * setup.risk.max_trade_pct / Decimal::ONE_HUNDRED;
                    prop_assert!(
                        o.qty * sizing <= budget,
                        "entry {} × {} above {}% of {}",
                        o.qty,
                        sizing,
                        setup.risk.max_trade_pct,
                        value
                    );
                    prop_assert!(o.qty * o.decision_price <= budget);
                    prop_assert!(o.qty > Decimal::ZERO);
                }
            }
        }
        log.push(format!("{decisions:?}"));
        for (k, sym) in SYMBOLS.iter().enumerate() {
            let m = &st.moves[k];
            let open = tick(closes[k] * (1.0 + m.gap), setup.raw);
            let close = tick(open * (1.0 + m.body), setup.raw);
            let high = tick(open.max(close) * (1.0 + m.up), setup.raw);
            let low = tick(open.min(close) * (1.0 - m.down), setup.raw).min(open).min(close);
            let candle = Candle { ts: now, open, high: high.max(open).max(close), low, close, volume: 1.0 };
            let halted_before = e.risk().entries_blocked();
            let events = e.on_bar(sym, &candle).map_err(|err| TestCaseError::fail(format!("on_bar: {err}")))?;
            let mut halted = halted_before;
            for ev in &events {
                match ev {
                    EngineEvent::Halted(_) => halted = true,
                    EngineEvent::Filled(f) if f.fill.side() == OrderSide::Buy => {
                        prop_assert!(!halted, "buy filled while halted: {:?}", f);
                    }
                    _ => {}
                }
            }
            closes[k] = close;
            let p = e.portfolio();
            prop_assert!(p.positions().len() <= max_pos, "{} positions open, max {}", p.positions().len(), max_pos);
            prop_assert!(p.cash() >= Decimal::ZERO, "negative cash {}", p.cash());
            prop_assert!(p.positions().keys().all(|s| s != "C"), "entered a symbol that is not allowed");
            if let Err(v) = p.check_invariant() {
                return Err(TestCaseError::fail(format!("ledger invariant: {v}")));
            }
            log.push(format!("{events:?}"));
        }
    }
    let last: BTreeMap<String, Decimal> = SYMBOLS.iter().zip(closes).map(|(s, c)| (s.to_string(), d(c))).collect();
    let end = T0 + setup.steps.len() as i64 * H;
    log.push(format!("{:?}", e.close_all(end, &last, CloseReason::EndOfData)));
    prop_assert!(e.portfolio().positions().is_empty());
    if let Err(v) = e.portfolio().check_invariant() {
        return Err(TestCaseError::fail(format!("ledger invariant at the end: {v}")));
    }
    Ok((log, e))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_respects_limits_and_is_deterministic(setup in setup()) {
        let (log_a, engine_a) = run(&setup)?;
        let (log_b, engine_b) = run(&setup)?;
        prop_assert_eq!(log_a, log_b);
        prop_assert_eq!(engine_a, engine_b);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Buy { sym: usize, qty: u32, price: u32, fee: u32 },
    Sell { sym: usize, frac: u8, price: u32, fee: u32 },
    Mark { price: u32 },
    Deposit(u32),
    Withdraw(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2usize, 1..5_000_000u32, 1..2_000_000u32, 0..5_000u32).prop_map(|(sym, qty, price, fee)| Op::Buy {
            sym,
            qty,
            price,
            fee
        }),
        (0..2usize, 0..=100u8, 1..2_000_000u32, 0..5_000u32).prop_map(|(sym, frac, price, fee)| Op::Sell {
            sym,
            frac,
            price,
            fee
        }),
        (1..2_000_000u32).prop_map(|price| Op::Mark { price }),
        (1..1_000_000u32).prop_map(Op::Deposit),
        (1..1_000_000u32).prop_map(Op::Withdraw),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any sequence of fills, marks and cash movements keeps the ledger exact;
    /// a refused operation changes nothing.
    #[test]
    fn ledger_invariant_holds(ops in proptest::collection::vec(op(), 1..60)) {
        let mut p = Portfolio::new(Decimal::from(10_000)).unwrap();
        for (i, op) in ops.iter().enumerate() {
            let t = T0 + i as i64 * 600;
            let before = p.clone();
            // qty in 1e-8 units, prices and fees in 1e-4 units
            let res = match op {
                Op::Buy { sym, qty, price, fee } => p.apply_fill(&Fill {
                    symbol: SYMBOLS[*sym].into(),
                    qty: Decimal::new(i64::from(*qty), 8),
                    price: Decimal::new(i64::from(*price), 4),
                    fee: Decimal::new(i64::from(*fee), 4),
                    time: t,
                    kind: FillKind::Buy { intent: Intent::Day, stop_loss: None, take_profit: None, tag: String::new() },
                }).map(|_| ()),
                Op::Sell { sym, frac, price, fee } => {
                    let held = p.position(SYMBOLS[*sym]).map_or(Decimal::ONE, |x| x.qty);
                    let qty = trading_core::money::round_qty(held * Decimal::from(*frac) / Decimal::ONE_HUNDRED);
                    p.apply_fill(&Fill {
                        symbol: SYMBOLS[*sym].into(),
                        qty,
                        price: Decimal::new(i64::from(*price), 4),
                        fee: Decimal::new(i64::from(*fee), 4),
                        time: t,
                        kind: FillKind::Sell { reason: CloseReason::Signal },
                    }).map(|_| ())
                }
                Op::Mark { price } => {
                    p.mark(t, [("A", Decimal::new(i64::from(*price), 4)), ("B", Decimal::new(i64::from(*price), 3))]);
                    Ok(())
                }
                Op::Deposit(x) => p.deposit(t, Decimal::new(i64::from(*x), 2)),
                Op::Withdraw(x) => p.withdraw(t, Decimal::new(i64::from(*x), 2)),
            };
            if res.is_err() {
                prop_assert_eq!(&p, &before);
            }
            if let Err(v) = p.check_invariant() {
                return Err(TestCaseError::fail(format!("after {op:?}: {v}")));
            }
            prop_assert!(p.cash() >= Decimal::ZERO);
            prop_assert!(p.drawdown_pct() >= Decimal::ZERO);
        }
    }

    #[test]
    fn csv_parser_never_panics(text in ".{0,400}") {
        let _ = parse_candles(&text);
    }

    #[test]
    fn csv_rows_never_panic(rows in proptest::collection::vec(
        proptest::collection::vec(prop_oneof![
            Just("1".to_string()), Just("-1".to_string()), Just("NaN".to_string()), Just("inf".to_string()),
            Just(String::new()), Just("1e400".to_string()), Just("9223372036854775808".to_string()),
            (-1e6..1e6f64).prop_map(|x| x.to_string()), (0i64..1_000_000).prop_map(|x| x.to_string())
        ], 0..8), 0..20)) {
        let mut text = String::from("ts,open,high,low,close,volume\n");
        for r in &rows {
            text.push_str(&r.join(","));
            text.push('\n');
        }
        match parse_candles(&text) {
            Ok(c) => prop_assert!(c.windows(2).all(|w| w[0].ts < w[1].ts)),
            Err(e) => prop_assert!(e.line >= 2 && e.line <= rows.len() + 1),
        }
    }

    #[test]
    fn walk_forward_tiles_the_range(start in -1_000_000_000i64..1_000_000_000, len in 1i64..100_000_000, k in 1usize..50) {
        match walk_forward(start, start + len, k) {
            Ok(folds) => {
                prop_assert_eq!(folds.len(), k);
                prop_assert_eq!(folds[0].range.start, start);
                prop_assert_eq!(folds[k - 1].range.end, start + len);
                for w in folds.windows(2) {
                    prop_assert_eq!(w[0].range.end, w[1].range.start);
                }
                for f in &folds {
                    prop_assert_eq!(f.in_sample.start, f.range.start);
                    prop_assert_eq!(f.in_sample.end, f.out_of_sample.start);
                    prop_assert_eq!(f.out_of_sample.end, f.range.end);
                    prop_assert!(!f.in_sample.is_empty() && !f.out_of_sample.is_empty());
                    // the in-sample part is ⌊70%⌋ of the fold
                    let flen = i128::from(f.range.end - f.range.start);
                    prop_assert_eq!(i128::from(f.in_sample.end - f.in_sample.start), flen * 70 / 100);
                }
            }
            Err(_) => prop_assert!(2 * k as i64 > len),
        }
    }
}

proptest! {
    /// `to_decimal`'s fast path gives exactly (value and scale) what the
    /// shortest round-trip text gives, for prices with few decimals and for
    /// arbitrary floats.
    #[test]
    fn to_decimal_equals_the_printed_float(m in -10_000_000_000_000i64..10_000_000_000_000, k in 0u32..10, raw in -1e8f64..1e8) {
        for x in [m as f64 / 10f64.powi(k as i32), raw] {
            let slow: rust_decimal::Decimal = format!("{x}").parse().unwrap();
            let fast = trading_core::money::to_decimal(x).unwrap();
            prop_assert_eq!(fast, slow);
            prop_assert_eq!(fast.to_string(), slow.to_string(), "scale differs for {}", x);
        }
    }
}

proptest! {
    /// `to_f64` is the correctly rounded float of the decimal (what parsing
    /// its text gives) on its fast path, and within an ulp or two elsewhere.
    #[test]
    fn to_f64_is_the_nearest_float(lo in any::<u64>(), hi in 0u32..=u32::MAX, neg in any::<bool>(), scale in 0u32..=28, small in any::<bool>()) {
        let hi = if small { 0 } else { hi };
        let lo = if small { lo >> 11 } else { lo };
        let d = rust_decimal::Decimal::from_parts(lo as u32, (lo >> 32) as u32, hi, neg, scale);
        let exact: f64 = d.to_string().parse().unwrap();
        let got = trading_core::money::to_f64(d);
        if d.mantissa().unsigned_abs() < 1 << 53 && scale <= 22 {
            prop_assert_eq!(got, exact, "{}", d);
        } else {
            prop_assert!((got - exact).abs() <= exact.abs() * 4.0 * f64::EPSILON, "{} gave {} not {}", d, got, exact);
        }
    }
}

proptest! {
    /// The galloping cut finds exactly what a binary search finds, on
    /// evenly spaced, gappy and clustered series, whatever spacing it assumes.
    #[test]
    fn candle_cut_equals_binary_search(mut ts in proptest::collection::vec(-1_000_000i64..1_000_000, 0..200), spaced in any::<bool>(), gaps in proptest::collection::vec(0usize..200, 0..5), t in -1_100_000i64..1_100_000, step in prop_oneof![Just(3_600i64), 1i64..100_000, Just(0), Just(-300)]) {
        if spaced {
            let n = ts.len() as i64;
            ts = (0..n).map(|i| i * 3_600 - 100_000).collect();
            for g in gaps {
                if g < ts.len() {
                    ts.remove(g);
                }
            }
        }
        ts.sort_unstable();
        ts.dedup();
        let s: Vec<Candle> = ts.iter().map(|&ts| Candle { ts, open: 1.0, high: 1.0, low: 1.0, close: 1.0, volume: 0.0 }).collect();
        let want = s.partition_point(|c| c.ts <= t);
        prop_assert_eq!(trading_core::market::count_open_at_or_before(&s, t, step), want);
    }
}

proptest! {
    /// `Bar::validate` accepts and refuses exactly what `Bar::from_candle` does.
    #[test]
    fn bar_validation_matches_conversion(o in prop_oneof![0.0f64..2e7, -1.0f64..1.0, 0.0f64..1e-9, Just(f64::NAN), Just(1e16)], spread in 0.0f64..0.2, up in any::<bool>(), swap in any::<bool>()) {
        let (lo, hi) = (o * (1.0 - spread), o * (1.0 + spread));
        let (lo, hi) = if swap { (hi, lo) } else { (lo, hi) };
        let close = if up { hi } else { o };
        let c = Candle { ts: 0, open: o, high: hi, low: lo, close, volume: 1.0 };
        prop_assert_eq!(trading_core::Bar::validate(&c).is_ok(), trading_core::Bar::from_candle(&c).is_ok(), "{:?}", c);
    }
}

/// A float as a strategy might send it: ordinary, or hostile (NaN, ±inf,
/// negative, 1e308, subnormal, zero).
fn hostile(normal: std::ops::Range<f64>) -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => normal,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-1.0),
        1 => Just(1e308),
        1 => Just(-1e308),
        1 => Just(5e-324),
        1 => Just(f64::MIN_POSITIVE),
        1 => Just(0.0),
    ]
}

#[derive(Debug, Clone)]
struct Hostile {
    sym: usize,
    action: usize,
    size: f64,
    order_type: usize,
    /// Multiples of the market price (or the raw hostile value).
    trigger: f64,
    stop: Option<f64>,
    take: Option<f64>,
}

fn hostile_signal() -> impl Strategy<Value = Hostile> {
    (
        0..3usize,
        prop_oneof![4 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize), 1 => Just(3usize)],
        hostile(0.0..150.0),
        0..3usize,
        hostile(0.5..1.5),
        proptest::option::of(hostile(0.5..1.2)),
        proptest::option::of(hostile(0.9..1.6)),
    )
        .prop_map(|(sym, action, size, order_type, trigger, stop, take)| Hostile {
            sym,
            action,
            size,
            order_type,
            trigger,
            stop,
            take,
        })
}

/// `x` times `price` when `x` is an ordinary multiple, else `x` itself.
fn scaled(x: f64, price: f64) -> f64 {
    if x.is_finite() && (0.5..=1.6).contains(&x) {
        x * price
    } else {
        x
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// Issue 18: over 10,000 random signal sequences with hostile numbers, no
    /// approved entry breaks a hard limit, and none of them panics.
    #[test]
    fn no_approved_entry_breaks_a_hard_limit_over_ten_thousand_random_signal_sequences(
        signals in proptest::collection::vec(hostile_signal(), 1..12),
        held in proptest::collection::vec((0..2usize, 1..1_000u32), 0..3),
        capital in 1..1_000_000i64,
        max in 1..=50u32,
        max_pos in 1..=3u32,
        fee in 0..=50u32,
        prices in [hostile(0.001..100_000.0), hostile(0.001..100_000.0), hostile(0.001..100_000.0)],
    ) {
        let config = RiskConfig {
            max_trade_pct: Decimal::from(max),
            default_trade_pct: Decimal::from(max),
            max_open_positions: max_pos,
            allowed_symbols: Some(vec!["A".into(), "B".into()]),
            ..RiskConfig::default()
        };
        let mut portfolio = Portfolio::new(Decimal::from(capital)).unwrap();
        let now = T0;
        for (sym, qty) in &held {
            let price = prices[*sym];
            let Ok(p) = trading_core::money::to_decimal(price) else { continue };
            if p <= Decimal::ZERO || !price.is_finite() || price > 1e12 {
                continue;
            }
            let qty = Decimal::from(*qty) / Decimal::from(1000);
            if qty * p > portfolio.cash() {
                continue;
            }
            let fill = Fill {
                symbol: SYMBOLS[*sym].into(),
                qty,
                price: p,
                fee: Decimal::ZERO,
                time: now - H,
                kind: FillKind::Buy { intent: Intent::Swing, stop_loss: None, take_profit: None, tag: "held".into() },
            };
            let _ = portfolio.apply_fill(&fill);
        }
        let risk = RiskManager::new(config.clone()).unwrap();
        let fill = FillConfig { fee_bps: Decimal::from(fee), slippage_bps: Decimal::ZERO };
        let mut e = Engine::new(portfolio, risk, EngineConfig { fill, order_ttl_bars: 5 }).unwrap();
        let mut data = MarketData::new();
        for (k, sym) in SYMBOLS.iter().enumerate() {
            let c = prices[k];
            data.set_series(sym, Interval::H1, vec![Candle { ts: now - H, open: c, high: c, low: c, close: c, volume: 1.0 }]);
        }
        let view = MarketView::new(Arc::new(data), now);
        let sigs: Vec<Signal> = signals
            .iter()
            .map(|h| {
                let price = prices[h.sym];
                let order_type = [OrderType::Market, OrderType::Limit, OrderType::Stop][h.order_type];
                Signal {
                    symbol: SYMBOLS[h.sym].to_string(),
                    action: [Action::Buy, Action::Sell, Action::Close, Action::Modify][h.action],
                    size_pct: h.size,
                    order_type,
                    limit_price: (order_type != OrderType::Market).then(|| scaled(h.trigger, price)),
                    stop_loss: h.stop.map(|x| scaled(x, price)),
                    take_profit: h.take.map(|x| scaled(x, price)),
                    intent: Intent::Swing,
                    tag: "p".into(),
                    confidence: 0.5,
                    reasoning: String::new(),
                    slippage_tolerance: None,
                }
            })
            .collect();
        let equity = e.portfolio().equity();
        let cash = e.portfolio().cash();
        let held_before: Vec<String> = e.portfolio().positions().keys().cloned().collect();
        let decisions = e.submit(now, &sigs, &view);
        prop_assert_eq!(decisions.len(), sigs.len());
        let budget = equity * config.max_trade_pct / Decimal::ONE_HUNDRED;
        let fee_rate = fill.fee_rate();
        let mut reserved = Decimal::ZERO;
        let mut entered: Vec<String> = Vec::new();
        for dec in &decisions {
            let Decision::Approved(o) = dec else { continue };
            prop_assert!(o.qty > Decimal::ZERO, "approved a non-positive qty: {:?}", o);
            if o.side != OrderSide::Buy {
                continue;
            }
            prop_assert!(o.symbol != "C", "entered a symbol that is not allowed");
            prop_assert!(!entered.contains(&o.symbol), "two entries pending on {}", o.symbol);
            let sizing = o.trigger_price.map_or(o.decision_price, |t| t.max(o.decision_price));
            prop_assert!(sizing > Decimal::ZERO);
            prop_assert!(o.qty * sizing <= budget, "entry {} × {} above {}% of {}", o.qty, sizing, max, equity);
            reserved += o.qty * sizing * (Decimal::ONE + fee_rate);
            prop_assert!(reserved <= cash, "entries reserve {} with {} cash", reserved, cash);
            if let (Some(sl), Some(tp)) = (o.stop_loss, o.take_profit) {
                prop_assert!(sl < tp);
            }
            if !held_before.contains(&o.symbol) {
                entered.push(o.symbol.clone());
                prop_assert!(
                    held_before.len() + entered.len() <= max_pos as usize,
                    "{} held + {} new entries, max {}", held_before.len(), entered.len(), max_pos
                );
            }
        }
    }
}
