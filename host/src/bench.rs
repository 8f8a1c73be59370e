//! `host bench`: figures for the sandbox — component compile and cached load,
//! instantiation, the cost of one analyze call, and the time from deploy to
//! the new module serving. Prints numbers; asserts nothing.

use crate::config::{RiskFile, Settings};
use crate::shell::Shell;
use host_control::{prepare, Paths};
use host_sandbox::Runtime;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trading_core::{Candle, Interval, MarketData, MarketView};

fn per(d: Duration, n: u32) -> String {
    let ns = d.as_nanos() as f64 / n as f64;
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} µs", ns / 1e3)
    }
}

fn synthetic(n: usize) -> Vec<Candle> {
    (0..n)
        .map(|i| {
            let p = 20_000.0 + 2_000.0 * ((i as f64) / 50.0).sin();
            Candle {
                ts: 1_600_000_000 + i as i64 * 3_600,
                open: p,
                high: p * 1.01,
                low: p * 0.99,
                close: p,
                volume: 10.0,
            }
        })
        .collect()
}

pub fn run(wasm_dir: &Path, settings: &Settings, risk: &RiskFile) -> anyhow::Result<()> {
    let sma_path = wasm_dir.join("sma-crossover.wasm");
    let bytes = std::fs::read(&sma_path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run deploy/build-guests.sh)", sma_path.display()))?;
    let tmp = std::env::temp_dir().join(format!("host-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let symbols = vec!["BTCUSD".to_string()];

    // compile: cold, then from the on-disk precompiled cache in a new runtime
    let rt = Runtime::new(settings.sandbox.clone(), Some(&tmp.join("cache")))?;
    let t = Instant::now();
    rt.compile(&bytes)?;
    let cold = t.elapsed();
    let rt2 = Runtime::new(settings.sandbox.clone(), Some(&tmp.join("cache")))?;
    let t = Instant::now();
    let module = rt2.load_strategy(&bytes)?;
    let cached = t.elapsed();
    println!("component compile (cold)          {:>10}", per(cold, 1));
    println!("component load (precompiled)      {:>10}", per(cached, 1));

    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        let mut i = module.instantiate()?;
        i.initialize(&risk.contract_view(), &symbols, &[])?;
    }
    println!(
        "instantiate + initialize          {:>10}",
        per(t.elapsed(), n)
    );

    let mut data = MarketData::new();
    data.set_series("BTCUSD", Interval::H1, synthetic(5_000));
    let data = Arc::new(data);
    let mut inst = module.instantiate()?;
    inst.initialize(&risk.contract_view(), &symbols, &[])?;
    let portfolio = host_sandbox::bindings::Portfolio {
        cash: 10_000.0,
        total_value: 10_000.0,
        positions: vec![],
        daily_pnl: 0.0,
        total_pnl: 0.0,
        fees_paid: 0.0,
        closed_trade_count: 0,
    };
    let calls = 20_000u32;
    let t0 = 1_600_000_000 + 100 * 3_600;
    let t = Instant::now();
    for k in 0..calls {
        let now = t0 + (k as i64 % 4_800) * 3_600;
        inst.host().view = Some(MarketView::new(data.clone(), now));
        inst.analyze(now, &portfolio)?;
    }
    println!(
        "analyze (sma-crossover, 31 candles pulled) {:>10}",
        per(t.elapsed(), calls)
    );
    let fuel = inst.fuel_used();
    println!("fuel per analyze                  {fuel:>10}");

    if let Ok(counter) = std::fs::read(wasm_dir.join("counter.wasm")) {
        let m = rt2.load_strategy(&counter)?;
        let mut c = m.instantiate()?;
        c.initialize(&risk.contract_view(), &symbols, &[])?;
        let t = Instant::now();
        for k in 0..calls {
            c.analyze(t0 + k as i64, &portfolio)?;
        }
        println!(
            "analyze (empty strategy, call overhead) {:>10}",
            per(t.elapsed(), calls)
        );
    }

    // deploy to serving: a running shell, a new (precompiled) module prepared,
    // swapped in with its state, and its first scan answered
    let paths = Paths {
        data_dir: tmp.join("data"),
        archive_dir: tmp.join("archive"),
    };
    let mut s = settings.clone();
    s.default_strategy = Some(sma_path.clone());
    let mut shell = Shell::start(paths, s, risk.clone())?;
    Arc::make_mut(&mut shell.data).set_series("BTCUSD", Interval::H1, synthetic(500));
    let swaps = 20u32;
    let mut total = Duration::ZERO;
    for k in 0..swaps {
        let t = Instant::now();
        let p = prepare(
            &shell.runtime,
            bytes.clone(),
            risk,
            &symbols,
            vec![],
            "bench",
        )?;
        shell.swap(p).map_err(|e| anyhow::anyhow!(e))?;
        shell.scan(1_600_000_000 + (400 + k as i64) * 3_600);
        total += t.elapsed();
    }
    println!(
        "deploy -> serving (precompiled)   {:>10}   (goal < 50 ms)",
        per(total, swaps)
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
