//! `host run`: start the shell on a replay or the venue's feed, with its control socket, API, bot and drop directory.

#[allow(unused_imports)]
use crate::prelude::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    paths: Paths,
    settings: Settings,
    risk: RiskFile,
    replay: Option<PathBuf>,
    symbol: &str,
    interval: &str,
    speed: &str,
    exit_at_end: bool,
    api_addr: Option<&str>,
    orchestrate: Option<String>,
) -> Result<()> {
    let interval = Interval::parse(interval)
        .with_context(|| format!("--interval {interval:?}: expected 5m, 1h or 1d"))?;
    let speed = match speed {
        "max" => None,
        s => Some(
            s.parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0)
                .with_context(|| format!("--speed {s:?}: expected a positive number or max"))?,
        ),
    };
    // live mode without --replay trades on the exchange's own market feed
    let live_feed = replay.is_none() && settings.mode == host::config::Mode::Live;
    let replay = if live_feed {
        None
    } else {
        let replay = replay
            .or_else(|| Some(PathBuf::from("data/sample/BTCUSD-1h.csv")).filter(|p| p.exists()));
        let Some(replay) = replay else {
            bail!(
                "no market feed: pass --replay FILE.csv, or set mode = \"live\" in settings.toml"
            );
        };
        Some(replay)
    };
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
    let people = host_control::handle::HostHandle::new(ctx, shell.bus.clone());
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
    host_api::serve(
        people.clone(),
        &settings.api,
        std::sync::Arc::new(settings.clone()),
        api_addr,
    )?;
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
    let mut feed: Box<dyn Feed> = match &replay {
        Some(file) => {
            let bars = shell::read_replay(file, symbol, interval)?;
            tracing::info!(bars = bars.len(), file = %file.display(), "replaying candles");
            Box::new(ReplayFeed::new(bars, speed))
        }
        None => {
            tracing::info!(venue = ?shell.settings.venue, "live market feed");
            shell.wall_clock = true;
            shell.backfill();
            Box::new(host_trading::live::ExchangeFeed::connect(
                shell.settings.venue,
                &shell.settings.exchanges,
                &shell.settings.symbols,
                shell.wall.clone(),
            )?)
        }
    };
    shell.run(feed.as_mut(), &rx, exit_at_end);
    let _ = std::fs::remove_file(paths.socket());
    println!("stopped after {} scans", shell.scan_seq);
    Ok(())
}
