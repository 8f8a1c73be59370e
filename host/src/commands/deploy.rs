//! `host deploy`, `host rollback` and the control-socket commands (halt, resume, kill, review).

#[allow(unused_imports)]
use crate::prelude::*;

pub(crate) fn print_deployed(r: &host_control::DeployOutcome, live: bool) {
    let v = r.version;
    match (live, r.previous) {
        (true, Some(p)) => println!(
            "deployed v{v} (was v{p}); serving from scan {}",
            r.first_scan
        ),
        (true, None) => println!("deployed v{v}; serving from scan {}", r.first_scan),
        (false, _) => println!("deployed v{v}; no host is running, the next start uses it"),
    }
}

pub(crate) fn deploy(
    paths: &Paths,
    settings: &Settings,
    risk: &RiskFile,
    path: &Path,
    params: Vec<(String, String)>,
    source: Option<&Path>,
) -> Result<()> {
    let abs = std::fs::canonicalize(path).with_context(|| format!("{}", path.display()))?;
    let code = source
        .map(std::fs::read_to_string)
        .transpose()
        .context("--source")?;
    let req = Request::Deploy {
        path: abs.clone(),
        params: params.clone(),
        source: code.clone(),
        origin: None,
    };
    match control::request(&paths.socket(), &req)? {
        Some(Reply::Deployed(r)) => print_deployed(&r, true),
        Some(Reply::Error { message }) => {
            bail!("deploy refused, the running strategy stays: {message}")
        }
        Some(Reply::Refused(r)) => {
            bail!("the control socket refused the deploy, the running strategy stays: {r}")
        }
        Some(other) => bail!("unexpected reply {other:?}"),
        None => {
            let rt = host_sandbox::Runtime::new(settings.sandbox.clone(), Some(&paths.cache()))?;
            let bytes = std::fs::read(&abs)?;
            let mut p = host_control::prepare(
                &rt,
                bytes,
                risk,
                &settings.symbols,
                params,
                &format!("deploy {}", abs.display()),
            )
            .map_err(|e| anyhow::anyhow!("deploy refused: {e}"))?;
            p.code = code;
            let o = host_control::deploy_offline(paths, p, now_unix())?;
            print_deployed(&o, false);
        }
    }
    Ok(())
}

pub(crate) fn rollback(paths: &Paths, settings: &Settings, risk: &RiskFile) -> Result<()> {
    match control::request(&paths.socket(), &Request::Rollback)? {
        Some(Reply::Deployed(r)) => println!("rolled back to v{}", r.version),
        Some(Reply::Error { message }) => bail!("rollback refused: {message}"),
        Some(Reply::Refused(r)) => bail!("the control socket refused the rollback: {r}"),
        Some(other) => bail!("unexpected reply {other:?}"),
        None => {
            let rt = host_sandbox::Runtime::new(settings.sandbox.clone(), Some(&paths.cache()))?;
            let p = host_control::prepare_archived(
                &rt,
                paths,
                &settings.symbols,
                risk,
                host_control::Archived::Previous,
            )
            .map_err(|e| anyhow::anyhow!("rollback refused: {e}"))?;
            let o = host_control::deploy_offline(paths, p, now_unix())?;
            println!("rolled back to v{}; the next start uses it", o.version);
        }
    }
    Ok(())
}

/// Sends a halt/resume/kill/review request to the running host and prints its answer.
pub(crate) fn command(paths: &Paths, req: Request) -> Result<()> {
    match control::request(&paths.socket(), &req)? {
        None => bail!("no host is running (start one with `host run`)"),
        Some(Reply::Halted { newly: true }) => {
            println!("halted: new entries are refused until `host resume`")
        }
        Some(Reply::Halted { newly: false }) => println!("entries were already halted"),
        Some(Reply::Resumed { cleared: true }) => {
            println!("resumed: halts and the kill switch are cleared")
        }
        Some(Reply::Resumed { cleared: false }) => println!("nothing to resume"),
        Some(Reply::SymbolToggled {
            symbol,
            paused,
            changed,
        }) => match (paused, changed) {
            (true, true) => println!("{symbol} paused: no new entries; exits still run"),
            (true, false) => println!("{symbol} was paused already"),
            (false, true) => println!("{symbol} resumed: entries allowed again"),
            (false, false) => println!("{symbol} was not paused"),
        },
        Some(Reply::ForceExit { symbol, qty }) => match qty {
            Some(q) => println!("{symbol}: closing {q} at market on the next bar"),
            None => println!("{symbol}: no open position"),
        },
        Some(Reply::Killed(k)) => println!(
            "KILLED: cancelled {} orders; closing at market: {}",
            k.cancelled_orders,
            if k.closing.is_empty() {
                "no positions".to_string()
            } else {
                k.closing.join(", ")
            }
        ),
        Some(Reply::Recorded { seq }) => match seq {
            Some(seq) => println!("review requested (event {seq})"),
            None => println!("review requested (event null)"),
        },
        Some(Reply::Error { message }) => bail!("{message}"),
        Some(Reply::Refused(r @ control::Refusal::NotOrchestrating)) => bail!("{r}"),
        Some(Reply::Refused(r)) => bail!("the control socket refused it: {r}"),
        Some(other) => bail!("unexpected reply: {other:?}"),
    }
    Ok(())
}
