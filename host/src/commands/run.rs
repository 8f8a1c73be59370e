//! `host run`: start the shell on a replay or the venue's feed, with its control socket, API, bot and drop directory.

#[allow(unused_imports)]
use crate::prelude::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    paths: Paths,
    settings: Settings,
    risk: RiskFile,
    replay: Vec<PathBuf>,
    symbols: &[String],
    interval: Option<&str>,
    speed: &str,
    exit_at_end: bool,
    api_addr: Option<&str>,
    orchestrate: Option<String>,
) -> Result<()> {
    let interval = interval
        .map(|i| {
            Interval::parse(i).with_context(|| format!("--interval {i:?}: expected 5m, 1h or 1d"))
        })
        .transpose()?;
    let speed = match speed {
        "max" => None,
        s => Some(
            s.parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0)
                .with_context(|| format!("--speed {s:?}: expected a positive number or max"))?,
        ),
    };
    if symbols.len() > replay.len() {
        bail!(
            "{} --symbol values for {} --replay files: give one per file, in order",
            symbols.len(),
            replay.len()
        );
    }
    // without --replay, paper and live trade on the venue's own market feed
    let bars = replay_bars(&replay, symbols, interval, &settings)?;
    let mut shell = Shell::start(paths.clone(), settings.clone(), risk.clone())?;
    let (tx, rx) = channel();
    let ctx = ControlContext {
        runtime: shell.runtime.clone(),
        paths: paths.clone(),
        symbols: settings.symbols.clone(),
        strategy_params: settings.strategy_params.clone(),
        risk,
        commands: tx.clone(),
    };
    control::serve(ctx.clone()).context("control socket")?;
    let mut people = host_control::handle::HostHandle::new(ctx, shell.bus.clone());
    if let Some(mut early) = shell.startup_events.take() {
        // what startup published, for the bot: taken now, so the receiver
        // does not go on filling with the feed's events
        let mut startup = Vec::new();
        while let Ok(ev) = early.try_recv() {
            startup.push(ev);
        }
        people = people.with_backlog(startup);
    }
    if let Some(p) = orchestrate {
        let choice = host_orchestrator::choose_proposer(if p.is_empty() {
            &settings.orchestrator.proposer
        } else {
            &p
        })?;
        // the scan loop's own reviews deploy through its handle: the swap lands between two scans
        shell.reviews = Some(shell::Reviews::new(
            &settings,
            PathBuf::from("."),
            choice,
            std::sync::Arc::new(people.clone()),
        )?);
    }
    if let Some(api) = host_api::serve(
        people.clone(),
        &settings.api,
        std::sync::Arc::new(settings.clone()),
        api_addr,
        &paths.data_dir,
    )? {
        // The URL carries the token: stdout only, like Jupyter, never the log or the database.
        println!("dashboard: {}", api.dashboard_url());
    }
    host_telegram::spawn(people, &settings.telegram, shell.wall.clone());
    let _watcher = host::dropdir::watch(
        shell.runtime.clone(),
        &paths,
        &shell.settings,
        &shell.risk,
        tx.clone(),
    )?;
    let sig_tx = tx.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
                }
            });
        }
        let _ = sig_tx.send(host_control::Command::Shutdown);
    });
    let feed: Box<dyn Feed + Send> = match bars {
        Some(bars) => Box::new(ReplayFeed::new(bars, speed)),
        None => {
            let venue = shell.settings.venue;
            tracing::info!(?venue, mode = ?shell.settings.mode, clock = ?shell.settings.clock, "venue market feed");
            shell.wall_clock = shell.settings.clock == host::config::ClockSource::Wall;
            if shell.live.is_none() {
                // paper: the venue's public market data, no keys, no orders
                shell.market_source = Some(host_trading::live::connect_public(
                    venue,
                    &shell.settings.exchanges,
                    &shell.wall,
                )?);
            }
            shell.backfill();
            Box::new(host_trading::live::ExchangeFeed::connect(
                venue,
                &shell.settings.exchanges,
                &shell.settings.symbols,
                shell.wall.clone(),
                shell.wall_clock.then(|| shell.wall.clone()),
            )?)
        }
    };
    shell.run(feed, rx, exit_at_end);
    let _ = std::fs::remove_file(paths.socket());
    println!("stopped after {} scans", shell.scan_seq);
    Ok(())
}

/// The bars of every `--replay` file: each file's symbol is its `--symbol`
/// (in order), else the one its name carries (`BTCUSD-1h.csv`), else the
/// first configured symbol; two files of one symbol and interval are refused.
/// None when there is nothing to replay (the live feed).
fn replay_bars(
    files: &[PathBuf],
    symbols: &[String],
    interval: Option<Interval>,
    settings: &Settings,
) -> Result<Option<Vec<(String, Interval, trading_core::Candle)>>> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut bars = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let named = trading_core::series::name_parts(file);
        let symbol = symbols.get(i).cloned().or(match named {
            (Some(s), Some(_)) => Some(s),
            _ => settings.symbols.first().cloned(),
        });
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--replay {}", file.display()))?;
        let candles = trading_core::csv::parse_candles(&text)
            .with_context(|| format!("--replay {}", file.display()))?;
        let Some(symbol) = symbol else {
            bail!("--replay {}: pass --symbol for this file", file.display());
        };
        // the interval: --interval, the file name, the candles' spacing, else 1h (one bar)
        let spacing = candles
            .windows(2)
            .map(|w| w[1].ts - w[0].ts)
            .min()
            .and_then(|g| Interval::ALL.into_iter().find(|i| i.secs() == g));
        let iv = interval.or(named.1).or(spacing).unwrap_or(Interval::H1);
        let series = trading_core::series::Series {
            symbol,
            interval: iv,
            candles,
        };
        if !settings.symbols.contains(&series.symbol) {
            tracing::warn!(
                symbol = %series.symbol,
                "replayed symbol is not in settings.toml's symbols: the strategy cannot trade it"
            );
        }
        if !seen.insert((series.symbol.clone(), iv)) {
            bail!(
                "--replay {}: a second file of {} {}",
                file.display(),
                series.symbol,
                iv.name()
            );
        }
        tracing::info!(bars = series.candles.len(), file = %file.display(), symbol = %series.symbol, "replaying candles");
        bars.extend(
            series
                .candles
                .into_iter()
                .map(|c| (series.symbol.clone(), iv, c)),
        );
    }
    Ok(Some(bars))
}
