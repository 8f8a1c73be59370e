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

/// `host bench scan`: the latency from a close to the signals through the
/// shell's real per-bar path (store, roll-up, engine, wait for every
/// symbol's bar, scan, commit) for 1, 50 and 500 symbols running
/// sma-crossover over hourly bars: per close, the time to take in every
/// symbol's bar and scan (all bars arrive at once), and the scan alone (the
/// last symbol's bar, which completes the close). Medians of 30 closes.
pub fn scan_latency(wasm_dir: &Path, settings: &Settings, risk: &RiskFile) -> anyhow::Result<()> {
    let sma_path = wasm_dir.join("sma-crossover.wasm");
    if !sma_path.exists() {
        anyhow::bail!(
            "{}: missing (run deploy/build-guests.sh)",
            sma_path.display()
        );
    }
    println!("scan latency, sma-crossover on 1h bars (median of 30 closes)");
    println!(
        "{:>8} {:>16} {:>16}",
        "symbols", "close → signals", "scan (last bar)"
    );
    for n in [1usize, 50, 500] {
        let tmp = std::env::temp_dir().join(format!("host-bench-scan-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let paths = Paths {
            data_dir: tmp.join("data"),
            archive_dir: tmp.join("archive"),
        };
        let symbols: Vec<String> = (0..n).map(|i| format!("S{i:04}USD")).collect();
        let mut s = settings.clone();
        s.symbols = symbols.clone();
        s.default_strategy = Some(sma_path.clone());
        s.strategy_params = vec![("fast".into(), "5".into()), ("slow".into(), "20".into())];
        let history = 100;
        let closes = 30;
        let bars = synthetic(history + closes);
        let mut shell = Shell::start(paths, s, risk.clone())?;
        for (k, sym) in symbols.iter().enumerate() {
            // a different phase per symbol, so crosses happen at different bars
            let shifted: Vec<Candle> = bars
                .iter()
                .map(|c| Candle {
                    close: c.close * (1.0 + 0.001 * k as f64),
                    ..*c
                })
                .collect();
            Arc::make_mut(&mut shell.data).set_series(
                sym,
                Interval::H1,
                shifted[..history].to_vec(),
            );
        }
        let mut whole = Vec::new();
        let mut last = Vec::new();
        for c in &bars[history..history + closes] {
            let t = Instant::now();
            let mut t_last = t;
            for (k, sym) in symbols.iter().enumerate() {
                if k + 1 == n {
                    t_last = Instant::now();
                }
                let c = *c;
                shell.on_bar(
                    sym,
                    Interval::H1,
                    Candle {
                        close: c.close * (1.0 + 0.001 * k as f64),
                        ..c
                    },
                );
            }
            whole.push(t.elapsed());
            last.push(t_last.elapsed());
        }
        let scans = shell.scan_seq;
        if shell.active.is_none() {
            anyhow::bail!("{}: the strategy did not load", sma_path.display());
        }
        drop(shell);
        let _ = std::fs::remove_dir_all(&tmp);
        if scans < closes as i64 {
            anyhow::bail!("{n} symbols: {scans} scans for {closes} closes (the bench did not scan every close)");
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        println!(
            "{n:>8} {:>16} {:>16}",
            per(median(&mut whole), 1),
            per(median(&mut last), 1)
        );
    }
    println!("goals: 500 symbols under 1 s per scan; 50 under 10 s (seed 002)");
    Ok(())
}

/// `host bench idle`: a real `host run` (this binary) with a replay that has
/// ended and the API on, left alone: its resident memory and the CPU it uses
/// over 20 s of wall time (from /proc; Linux only).
pub fn idle(settings_path: Option<&Path>) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let tmp = std::env::temp_dir().join(format!("host-bench-idle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let csv = tmp.join("BTCUSD-1h.csv");
    let mut text = String::from("ts,open,high,low,close,volume\n");
    for c in synthetic(200) {
        text.push_str(&format!(
            "{},{},{},{},{},{}\n",
            c.ts, c.open, c.high, c.low, c.close, c.volume
        ));
    }
    std::fs::write(&csv, text)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["run", "--replay"])
        .arg(&csv)
        .args(["--api-addr", "127.0.0.1:0"])
        .env("HOST_DATA_DIR", tmp.join("data"))
        .env("HOST_ARCHIVE_DIR", tmp.join("archive"))
        .env("HOST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(p) = settings_path {
        cmd.env("HOST_CONFIG", p);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let ticks = |pid: u32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    let rss_kib = |pid: u32| -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    // the replay of 200 bars ends within seconds; then the host idles
    std::thread::sleep(Duration::from_secs(10));
    let (Some(t0), start) = (ticks(pid), Instant::now()) else {
        let _ = child.kill();
        anyhow::bail!("the host exited early (see `host run` on the same settings)");
    };
    std::thread::sleep(Duration::from_secs(20));
    let t1 = ticks(pid).unwrap_or(t0);
    let rss = rss_kib(pid).unwrap_or(0);
    let wall = start.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&tmp);
    // clock ticks are 1/100 s on Linux
    let cpu_pct = (t1 - t0) as f64 / 100.0 / wall * 100.0;
    println!("idle host run: RSS {:.1} MB, CPU {cpu_pct:.2}% of one core over {wall:.0} s (goals: < 100 MB, < 1%)", rss as f64 / 1024.0);
    Ok(())
}
