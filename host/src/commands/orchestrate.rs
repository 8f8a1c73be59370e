//! `host orchestrate`: one nightly review-and-improve cycle.

#[allow(unused_imports)]
use crate::prelude::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn orchestrate(
    paths: Paths,
    settings: Settings,
    risk: RiskFile,
    now: bool,
    proposer: Option<String>,
    seed: Option<u64>,
    repo_root: PathBuf,
    json: bool,
) -> Result<()> {
    use host_orchestrator::{self as orch, schedule};
    let o = settings.orchestrator.clone();
    let t = chrono::DateTime::from_timestamp(now_unix(), 0)
        .context("the wall clock is out of range")?;
    let (start, end) = (
        schedule::parse_hhmm(&o.window_start).context("window_start")?,
        schedule::parse_hhmm(&o.window_end).context("window_end")?,
    );
    if !now && !schedule::in_window(t, start, end) {
        println!(
            "outside the nightly window ({}–{} New York, now {}); pass --now to run anyway",
            o.window_start,
            o.window_end,
            schedule::new_york(t).format("%H:%M")
        );
        return Ok(());
    }
    let choice = orch::choose_proposer(proposer.as_deref().unwrap_or(&o.proposer))?;
    std::fs::create_dir_all(&paths.data_dir)?;
    let runtime = host_sandbox::Runtime::new(settings.sandbox.clone(), Some(&paths.cache()))?;
    let opts = orch::CycleOptions {
        deployer: std::sync::Arc::new(host_control::SocketOrOffline {
            paths: paths.clone(),
            runtime,
            risk: risk.clone(),
            symbols: settings.symbols.clone(),
        }),
        paths,
        orchestrator: o,
        market: settings.market(),
        risk,
        repo_root,
        proposer: choice,
        seed: seed.unwrap_or(t.timestamp() as u64),
        trigger: if now {
            "manual".into()
        } else {
            "nightly".into()
        },
        now: t,
        api_key: None,
    };
    let report = orch::run_cycle(&opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.headline());
        println!("report: {}", report.report_path.display());
        println!("candidate: {}", report.candidate_dir.display());
    }
    Ok(())
}
