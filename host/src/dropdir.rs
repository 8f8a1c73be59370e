//! The drop folder: a `.wasm` placed in `data/drop/` is deployed through the
//! same path as `host deploy`, then moved to `drop/done/` or `drop/failed/`
//! (with a `.reason` file).

use crate::config::{RiskFile, Settings};
use host_control::{prepare, Command, Paths};
use host_sandbox::Runtime;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;

fn settle(path: &Path, outcome: Result<String, String>) {
    let (sub, note) = match &outcome {
        Ok(n) => ("done", n.clone()),
        Err(e) => ("failed", e.clone()),
    };
    let Some(dir) = path.parent().map(|d| d.join(sub)) else {
        return;
    };
    let _ = std::fs::create_dir_all(&dir);
    if let Some(name) = path.file_name() {
        let _ = std::fs::rename(path, dir.join(name));
        let _ = std::fs::write(dir.join(format!("{}.reason", name.to_string_lossy())), note);
    }
}

fn deploy_file(
    rt: &Arc<Runtime>,
    settings: &Settings,
    risk: &RiskFile,
    commands: &Sender<Command>,
    path: PathBuf,
) {
    let outcome = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            let p = prepare(
                rt,
                bytes,
                risk,
                &settings.symbols,
                settings.strategy_params.clone(),
                &format!("drop {}", path.display()),
            )
            .map_err(|e| e.to_string())?;
            let (tx, rx) = std::sync::mpsc::channel();
            commands
                .send(Command::Deploy(Box::new(p), tx))
                .map_err(|_| "host is shutting down".to_string())?;
            let o = rx.recv().map_err(|_| "host did not answer".to_string())??;
            Ok(format!("deployed as v{}", o.version))
        });
    match &outcome {
        Ok(n) => tracing::info!(file = %path.display(), "drop folder: {n}"),
        Err(e) => tracing::error!(file = %path.display(), "drop folder: deploy refused: {e}"),
    }
    settle(&path, outcome);
}

/// Watches `data/drop/`; keep the returned watcher alive.
pub fn watch(
    rt: Arc<Runtime>,
    paths: &Paths,
    settings: &Settings,
    risk: &RiskFile,
    commands: Sender<Command>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let dir = paths.drop_dir();
    std::fs::create_dir_all(&dir)?;
    let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if matches!(
                ev.kind,
                notify::EventKind::Create(_)
                    | notify::EventKind::Modify(_)
                    | notify::EventKind::Access(notify::event::AccessKind::Close(_))
            ) {
                for p in ev.paths {
                    let _ = tx.send(p);
                }
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    let (settings, risk) = (settings.clone(), risk.clone());
    std::thread::Builder::new()
        .name("drop-folder".into())
        .spawn(move || {
            let mut seen = std::collections::HashSet::new();
            while let Ok(p) = rx.recv() {
                // a file is deployed once, after it stops changing
                std::thread::sleep(std::time::Duration::from_millis(200));
                while rx.try_recv().is_ok() {}
                if p.extension().is_some_and(|e| e == "wasm")
                    && p.exists()
                    && p.parent() == Some(dir.as_path())
                    && seen.insert(p.clone())
                {
                    deploy_file(&rt, &settings, &risk, &commands, p.clone());
                    seen.remove(&p);
                }
            }
        })?;
    Ok(watcher)
}
