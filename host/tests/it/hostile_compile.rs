//! The hostile compile corpus (`hostile/compile/`) through the real path:
//! each source is the loopback Claude's answer to a real
//! `host orchestrate --now --proposer claude`, run with a canary secret in
//! its environment (`KRAKEN_API_SECRET`) and another in a file of its data
//! directory. Every cycle must reject its candidate, and neither canary may
//! appear in the binary's output, any file the run wrote (database and its
//! WAL, reports, archived candidates, logs), the shared candidates' target
//! directory, or any prompt the loopback API received. The sandbox alone is
//! tested in `host/orchestrator/tests/it/sandbox_holds.rs`.

use crate::common::{guest_path, root};
use crate::orchestrator::{candidates_target, reply, serve, Api, KEY, REVIEWER, WRITER};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};

fn canary(what: &str) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("CANARY-{what}-{:016x}", h.finish())
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every file under `dir` whose bytes contain one of `needles`.
fn files_containing(dir: &Path, needles: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file()
                && needles
                    .iter()
                    .any(|n| contains(&std::fs::read(&p).unwrap_or_default(), n))
            {
                found.push(p);
            }
        }
    }
    found
}

/// The corpus: (file name, source with the placeholders replaced).
fn corpus(data_dir: &Path, canary_file: &Path) -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("hostile/compile"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                text.replace("@CANARY_FILE@", &canary_file.display().to_string())
                    .replace("@DATA_DIR@", &data_dir.display().to_string())
                    .replace("@CANARY_VAR@", "KRAKEN_API_SECRET"),
            )
        })
        .collect()
}

#[test]
fn every_hostile_source_is_refused_and_no_canary_leaks() {
    let file_canary = canary("FILE");
    let var_canary = canary("VAR");
    let needles = [file_canary.as_str(), var_canary.as_str()];
    // the bundled sample: every candidate is refused before a backtest needs more
    let data = root().join("data/sample/BTCUSD-1h.csv");
    let mut checked = 0;
    for (name, _) in corpus(Path::new("/"), Path::new("/")) {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let canary_file = data_dir.join("canary-secret.txt");
        std::fs::write(&canary_file, &file_canary).unwrap();
        let source = corpus(&data_dir, &canary_file)
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1;
        let (url, api) = serve(Api {
            writer_text: reply(&source),
            ..Api::default()
        });
        let cfg = dir.path().join("settings.toml");
        std::fs::write(
            &cfg,
            format!(
                "symbols = [\"BTCUSD\"]\n[strategy]\ndefault = {:?}\n[orchestrator]\ndata = [{:?}]\nhistory_bars = 2000\n\
                 target_dir = {:?}\nstrategy_document = {:?}\nmarket_analysis = {:?}\ntrade_performance = {:?}\n\
                 base_url = {url:?}\nwriter_model = {WRITER:?}\nreviewer_model = {REVIEWER:?}\nretries = 1\nrequests_per_minute = 100\n",
                guest_path("sma-crossover"),
                data,
                candidates_target(),
                dir.path().join("doc.md"),
                guest_path("market-analysis"),
                guest_path("trade-performance"),
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_host"))
            .current_dir(root())
            .env("ANTHROPIC_API_KEY", KEY)
            .env("KRAKEN_API_SECRET", &var_canary)
            .env("HOST_LOG", "debug")
            .args(["--data-dir", &data_dir.display().to_string()])
            .args([
                "--archive-dir",
                &dir.path().join("archive").display().to_string(),
            ])
            .args(["--config", &cfg.display().to_string()])
            .args([
                "orchestrate",
                "--now",
                "--proposer",
                "claude",
                "--seed",
                "7",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
        for n in needles {
            assert!(
                !stdout.contains(n) && !stderr.contains(n),
                "{name}: a canary reached the output:\n{stdout}\n{stderr}"
            );
        }
        let conn = host_store::db::open(&data_dir.join("host.db")).unwrap();
        let (outcome, code): (String, Option<String>) = conn
            .query_row(
                "SELECT outcome, rejection_code FROM orchestrator_runs",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        drop(conn);
        assert_eq!(
            (outcome.as_str(), code.as_deref()),
            ("rejected", Some("source_refused")),
            "{name}: {stdout}"
        );
        // the candidate's source is archived (it names the canary file, never its content)
        let left = files_containing(dir.path(), &needles);
        assert_eq!(
            left,
            vec![canary_file.clone()],
            "{name}: a canary reached a file"
        );
        let api = api.lock().unwrap();
        assert!(!api.prompts.is_empty());
        for (_, prompt) in &api.prompts {
            for n in needles {
                assert!(!prompt.contains(n), "{name}: a canary reached a prompt");
            }
        }
        checked += 1;
    }
    assert!(checked >= 17, "{checked}");
    assert_eq!(
        files_containing(&candidates_target(), &needles),
        Vec::<PathBuf>::new()
    );
}
