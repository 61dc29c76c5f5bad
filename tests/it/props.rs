//! Property tests of every parser that reads outside input: Kraken's answers, the config file,
//! the web config file, durations and the scrape-timeout header. None may panic, and each either returns a value
//! that satisfies its contract or a classified error.
//!
//! The case count follows `PROPTEST_CASES` (256 by default); a long run is
//! `PROPTEST_CASES=100000 cargo test --release --test it props`.

use std::time::Duration;

use hyper::header::HeaderValue;
use kraken::{Reason, error, parse};
use kraken_exporter::config::file;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Arbitrary JSON, a few levels deep, with the shapes Kraken uses (strings that look like
/// amounts, numbers, nulls, nested maps and lists).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<i64>().prop_map(|i| json!(i)),
        "[0-9]{0,12}(\\.[0-9]{0,12})?".prop_map(Value::String),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[A-Z.0-9a-z_]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A Kraken envelope around arbitrary content: errors that may or may not be Kraken's, and a
/// result that may or may not have the expected shape.
fn envelope() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            prop_oneof![
                "[EW][A-Za-z]{2,10}:[A-Za-z ]{0,20}(:[0-9]{0,12})?",
                ".{0,30}",
            ],
            0..3,
        ),
        prop::option::of(json_value()),
        any::<bool>(),
    )
        .prop_map(|(errors, result, with_errors)| {
            let mut object = Map::new();
            if with_errors {
                object.insert("error".into(), json!(errors));
            }
            if let Some(result) = result {
                object.insert("result".into(), result);
            }
            serde_json::to_vec(&Value::Object(object)).unwrap()
        })
}

/// Runs every Kraken parser on one body with one status; none may panic, and every error must
/// carry one of the closed set of reasons.
fn parse_everything(status: u16, body: &[u8]) {
    let reasons = |e: &error::KrakenError| assert!(Reason::ALL.contains(&e.reason()));
    if let Ok(balances) = parse::balance_ex(status, body) {
        assert!(
            balances
                .iter()
                .all(|b| b.total.is_finite() && b.hold.is_some_and(f64::is_finite))
        );
    } else if let Err(e) = parse::balance_ex(status, body) {
        reasons(&e);
    }
    if let Ok(balances) = parse::balance(status, body) {
        assert!(
            balances
                .iter()
                .all(|b| b.total.is_finite() && b.hold.is_none())
        );
    }
    for result in [
        parse::assets(status, body).map(|_| ()),
        parse::asset_pairs(status, body).map(|_| ()),
        parse::ticker(status, body).map(|_| ()),
        parse::trade_balance(status, body).map(|_| ()),
        parse::withdraw_methods(status, body),
        parse::api_key_info(status, body).map(|_| ()),
    ] {
        if let Err(e) = result {
            reasons(&e);
            assert!(
                e.to_string().len() < 600,
                "error text is bounded: {}",
                e.to_string().len()
            );
        }
    }
}

proptest! {
    #[test]
    fn kraken_parsers_never_panic_on_arbitrary_bytes(status in prop_oneof![Just(200u16), 100u16..600], body in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(status, &body);
    }

    #[test]
    fn kraken_parsers_never_panic_on_arbitrary_envelopes(body in envelope()) {
        parse_everything(200, &body);
    }

    #[test]
    fn balance_ex_keeps_every_amount_it_accepts(entries in prop::collection::btree_map("[A-Z]{3,5}(\\.[SMFB])?", (0u64..10_000_000_000_000, 0u64..1_000_000), 0..20)) {
        let result: Map<String, Value> = entries
            .iter()
            .map(|(code, (total, hold))| {
                let total = format!("{}.{:010}", total / 10_000_000_000, total % 10_000_000_000);
                (code.clone(), json!({"balance": total, "hold_trade": hold.to_string()}))
            })
            .collect();
        let body = serde_json::to_vec(&json!({"error": [], "result": result})).unwrap();
        let parsed = parse::balance_ex(200, &body).unwrap();
        prop_assert_eq!(parsed.len(), entries.len());
        for balance in parsed {
            let (total, hold) = entries[&balance.code];
            prop_assert!((balance.total - total as f64 / 1e10).abs() <= 1e-9 * (1.0 + balance.total.abs()));
            prop_assert_eq!(balance.hold, Some(hold as f64));
        }
    }

    #[test]
    fn error_classification_never_panics(message in ".{0,200}") {
        let (reason, retry_at) = error::classify(&message);
        prop_assert!(Reason::ALL.contains(&reason));
        if retry_at.is_some() {
            prop_assert_eq!(reason, Reason::RateLimited);
        }
    }

    #[test]
    fn the_config_file_parser_never_panics(text in ".{0,400}") {
        let _ = file::parse(&text);
    }

    #[test]
    fn config_files_built_from_real_fields_parse_or_name_a_place(
        name in "[a-z_]{0,8}",
        key in prop_oneof![Just("key_file"), Just("key_env"), Just("kye_file"), Just("key")],
        min in prop_oneof![Just("1".to_owned()), Just("-3".to_owned()), Just("x".to_owned()), "[0-9.e+-]{1,6}"],
        interval in prop_oneof![Just("10s".to_owned()), Just("10".to_owned()), "[0-9a-z.]{0,6}"],
    ) {
        let text = format!(
            "refresh:\n  min_interval: \"{interval}\"\naccounts:\n  - name: \"{name}\"\n    {key}: /x\n    min_balance: {{XBT: {min}}}\n"
        );
        if let Err(problem) = file::parse(&text) {
            prop_assert!(!problem.place.is_empty());
            prop_assert!(!problem.message.is_empty());
        }
    }

    #[test]
    fn the_web_config_parser_never_panics(text in ".{0,300}") {
        let _ = kraken_exporter::web::security::WebSecurity::from_text(&text, std::path::Path::new("/nonexistent"));
    }

    #[test]
    fn web_configs_built_from_real_fields_load_or_name_the_field(
        field in prop_oneof![Just("basic_auth_users".to_owned()), Just("http_server_config".to_owned()), Just("tls_server_config".to_owned()), Just("rate_limit".to_owned()), "[a-z_]{1,12}"],
        key in prop_oneof![Just("admin".to_owned()), Just("headers".to_owned()), Just("min_version".to_owned()), Just("cert_file".to_owned()), Just("interval".to_owned()), "[A-Za-z_-]{1,10}"],
        value in prop_oneof![Just("$2y$10$abcdefghijklmnopqrstuu5Jx0M2Yy1Y3lq7Yx0y4sS2mB8Zq9yV6".to_owned()), Just("TLS13".to_owned()), Just("1s".to_owned()), "[ -~]{0,20}"],
    ) {
        let text = format!("{field}:\n  {key}: \"{}\"\n", value.replace('"', ""));
        if let Err(problems) = kraken_exporter::web::security::WebSecurity::from_text(&text, std::path::Path::new("/nonexistent")) {
            prop_assert!(!problems.is_empty());
            for problem in problems {
                let message = format!("{}: {}", problem.place, problem.message);
                prop_assert!(!problem.place.is_empty() && !problem.message.is_empty());
                prop_assert!(!message.contains("abcdefghijklmnopqrstuu5Jx0M2Yy1Y3lq7Yx0y4sS2mB8Zq9yV6"), "a hash leaked: {}", message);
            }
        }
    }

    #[test]
    fn durations_parse_or_explain_and_round_trip(text in ".{0,16}", secs in 0u64..10_000_000) {
        if let Err(message) = kraken_exporter::duration::parse(&text) {
            prop_assert!(message.contains("like 500ms"));
        }
        let d = Duration::from_secs(secs);
        prop_assert_eq!(kraken_exporter::duration::parse(&kraken_exporter::duration::format(d)), Ok(d));
    }

    #[test]
    fn the_scrape_timeout_header_always_gives_a_bounded_wait(text in "[ -~]{0,24}") {
        let wait = match HeaderValue::from_str(&text) {
            Ok(value) => kraken_exporter::web::scrape_wait(Some(&value)),
            Err(_) => kraken_exporter::web::scrape_wait(None),
        };
        prop_assert!(wait > Duration::ZERO);
        prop_assert!(wait <= Duration::from_secs(120));
    }
}
