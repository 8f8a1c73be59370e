//! Parsers of outside input never panic (issue 16): the user's
//! `settings.toml` (with its `[orchestrator.compile]`, `[api]`, `[telegram]`
//! and `[exchanges]` sections), the user's `risk_limits.toml`, and the control
//! socket's request decoder, each fed arbitrary text and mutations of valid
//! input. What a parser accepts must also be what its validation promises.
//! (CSV: host/core/tests/props.rs; exchange payloads:
//! host/exchange/tests/it/parsers.rs; Telegram updates: telegram.rs; API
//! bodies: host-api's unit tests.)

use host::config::{RiskFile, Settings, DEFAULT_RISK, DEFAULT_SETTINGS};
use host_control::socket::Request;
use host_control::socket::{decode, RecordKind};
use proptest::prelude::*;

/// Values that break naive parsers: out of range, wrong type, non-finite,
/// huge, nested, empty, unterminated.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1e308".to_string()),
        Just("18446744073709551616".to_string()),
        Just("9223372036854775807".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("\"\"".to_string()),
        Just("\"\\u0000\"".to_string()),
        Just("[]".to_string()),
        Just("[[[[[[[[1]]]]]]]]".to_string()),
        Just("{}".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("true".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"unterminated".to_string()),
        Just("\"99999999999999999999999999999.5\"".to_string()),
        Just("\"-0\"".to_string()),
        Just("\"0.0000000000000000000000000001\"".to_string()),
        Just("[\"BTCUSD\", \"\"]".to_string()),
        Just("[[\"a\", \"b\", \"c\"]]".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "\"[ -~]{0,40}\"",
    ]
}

/// A valid document with one value replaced, one line dropped or a stray line added.
fn mutated(doc: &'static str) -> impl Strategy<Value = String> {
    let lines: Vec<&'static str> = doc.lines().collect();
    let n = lines.len();
    (0..n, hostile_value(), 0..3u8, "[ -~]{0,30}").prop_map(move |(i, v, how, stray)| {
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        match how {
            0 => {
                // replace the value of the first `key = value` line at or after i
                if let Some(j) = (i..n).chain(0..i).find(|&j| {
                    let t = out[j].trim_start();
                    !t.starts_with('#') && !t.starts_with('[') && t.contains('=')
                }) {
                    let key = out[j].split('=').next().unwrap_or_default().to_string();
                    out[j] = format!("{key}= {v}");
                }
            }
            1 => {
                out.remove(i);
            }
            _ => out.insert(i, stray),
        }
        out.join("\n")
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn settings_parse_never_panics_on_any_text(text in "(?s).{0,600}") {
        let _ = Settings::parse(&text, "settings.toml");
    }

    #[test]
    fn settings_parse_never_panics_on_a_mutated_default(text in mutated(DEFAULT_SETTINGS)) {
        if let Ok(s) = Settings::parse(&text, "settings.toml") {
            // what parse accepts is what validation promises
            prop_assert!(!s.symbols.is_empty());
            prop_assert!(s.starting_capital > rust_decimal::Decimal::ZERO);
            prop_assert!(s.fee_bps <= 1_000 && s.slippage_bps <= 1_000);
            prop_assert!(s.orchestrator.validate().is_ok());
            prop_assert!(s.orchestrator.compile.memory_mb >= 512);
        }
    }

    #[test]
    fn the_compile_section_never_panics_and_is_validated(
        key in prop_oneof![Just("sandbox".to_string()), Just("memory_mb".to_string()), Just("cpu_secs".to_string()), Just("max_file_mb".to_string()), Just("tmp_mb".to_string()), Just("max_output_bytes".to_string()), Just("bwrap_path".to_string()), Just("unknown_key".to_string())],
        v in prop_oneof![hostile_value(), Just("\"none\"".to_string()), Just("\"bwrap\"".to_string()), Just("\"BWRAP\"".to_string())],
    ) {
        let text = format!("[orchestrator.compile]\n{key} = {v}\n");
        if let Ok(s) = Settings::parse(&text, "settings.toml") {
            let c = &s.orchestrator.compile;
            prop_assert!(c.memory_mb >= 512 && c.cpu_secs > 0 && c.max_file_mb > 0 && c.tmp_mb > 0);
            prop_assert_ne!(key.as_str(), "unknown_key");
        }
    }

    #[test]
    fn risk_file_parse_never_panics_on_any_text(text in "(?s).{0,400}") {
        let _ = RiskFile::parse(&text, "risk_limits.toml");
    }

    #[test]
    fn an_accepted_risk_file_holds_its_limits(text in mutated(DEFAULT_RISK)) {
        if let Ok(r) = RiskFile::parse(&text, "risk_limits.toml") {
            for v in [r.max_trade_pct, r.default_trade_pct, r.max_daily_loss_pct, r.max_drawdown_pct] {
                prop_assert!(v.is_finite() && v > 0.0 && v <= 100.0, "{v}");
            }
            prop_assert!(r.default_trade_pct <= r.max_trade_pct);
            prop_assert!(r.max_open_positions >= 1);
        }
    }

    #[test]
    fn control_decode_never_panics_on_any_bytes(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&line);
    }

    #[test]
    fn control_decode_never_panics_on_request_shapes(
        cmd in prop_oneof![Just("status".to_string()), Just("deploy".to_string()), Just("record".to_string()), Just("halt".to_string()), Just("kill".to_string()), Just("RECORD".to_string()), "[a-z]{0,8}"],
        kind in prop_oneof![Just("telegram_unauthorized".to_string()), Just("fill".to_string()), Just("Telegram_Unauthorized".to_string()), "[ -~]{0,80}"],
        extra in proptest::collection::vec(("[a-z_]{1,10}", hostile_value()), 0..5),
    ) {
        let mut fields = vec![format!("\"cmd\": {cmd:?}"), format!("\"kind\": {kind:?}")];
        for (k, v) in &extra {
            fields.push(format!("{k:?}: {v}"));
        }
        let line = format!("{{{}}}", fields.join(", "));
        if let Ok(Request::Record { kind: k, .. }) = decode(line.as_bytes()) {
            // only a kind on the fixed list is ever recorded
            prop_assert!(RecordKind::ALL.contains(&k));
        }
    }
}
