//! How the simulated Kraken answers each method, in Kraken's documented format.
//!
//! Owns one answer body per method: amounts as decimal strings, Assets and AssetPairs entries,
//! Ticker's arrays, TradeBalance's valuation, Time's `rfc1123`; `funding.rs` writes those of
//! GetWebSocketsToken, DepositStatus, WithdrawStatus and SystemStatus.
//! Must not: authenticate (that is `auth.rs`) or talk HTTP (that is `server.rs`).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::auth::{PrivateParams, percent_decode};
use super::data::{
    ASSETS, PAIRS, SimEarn, SimKeyInfo, WITHDRAW_METHODS, asset_altname, asset_class,
    asset_decimals, canonical_pair, usd_value,
};
use super::funding;
use super::ledger::{civil_from_days, rfc3339};
use super::response::{envelope_error, envelope_ok};
use super::state::Shared;
use crate::endpoint::Endpoint;

/// The answer body of a public method.
pub(super) fn public(shared: &Shared, endpoint: Endpoint, query: Option<&str>) -> Vec<u8> {
    match endpoint {
        Endpoint::Assets => envelope_ok(assets_result(query_param(query, "aclass"))),
        Endpoint::AssetPairs => envelope_ok(asset_pairs_result(query_param(query, "aclass_base"))),
        Endpoint::Ticker => match ticker_result(query, &shared.current_prices()) {
            Ok(result) => envelope_ok(result),
            Err(message) => envelope_error(message),
        },
        Endpoint::Time => envelope_ok(time_result()),
        Endpoint::SystemStatus => envelope_ok(funding::system_status_result(shared)),
        private => unreachable!("{private} is private"),
    }
}

/// The answer body of an authenticated private call.
pub(super) fn private(shared: &Shared, endpoint: Endpoint, params: &PrivateParams) -> Vec<u8> {
    match endpoint {
        Endpoint::BalanceEx => envelope_ok(balance_ex_result(&shared.current_balances())),
        Endpoint::Balance => envelope_ok(balance_result(&shared.current_balances())),
        Endpoint::TradeBalance => {
            let asset = params.asset.as_deref().unwrap_or("ZUSD");
            let balances = shared.current_balances();
            let prices = shared.current_prices();
            match trade_balance_result(&balances, &prices, asset) {
                Ok(result) => envelope_ok(result),
                Err(message) => envelope_error(message),
            }
        }
        Endpoint::GetApiKeyInfo => {
            let (last_nonce, key_info) = {
                let state = shared.state();
                (state.key.last_nonce, state.key_info.clone())
            };
            envelope_ok(api_key_info_result(
                &shared.permissions,
                shared.credentials.key.expose(),
                last_nonce,
                &key_info,
            ))
        }
        Endpoint::EarnAllocations => envelope_ok(earn_allocations_result(&shared.state().earn)),
        Endpoint::WithdrawMethods => envelope_ok(withdraw_methods_result()),
        Endpoint::GetWebSocketsToken => envelope_ok(funding::websocket_token_result(shared)),
        Endpoint::DepositStatus => envelope_ok(funding::deposit_status_result(shared)),
        Endpoint::WithdrawStatus => envelope_ok(funding::withdraw_status_result(shared)),
        public => unreachable!("{public} is public"),
    }
}

/// Kraken's amount format: a decimal string with 10 decimals.
fn amount(value: f64) -> Value {
    Value::String(format!("{value:.10}"))
}

fn balance_result(balances: &[(String, f64, f64)]) -> Value {
    let map: Map<String, Value> = balances
        .iter()
        .map(|(code, balance, _)| (code.clone(), amount(*balance)))
        .collect();
    Value::Object(map)
}

fn balance_ex_result(balances: &[(String, f64, f64)]) -> Value {
    let map: Map<String, Value> = balances
        .iter()
        .map(|(code, balance, hold)| {
            (
                code.clone(),
                json!({ "balance": amount(*balance), "hold_trade": amount(*hold) }),
            )
        })
        .collect();
    Value::Object(map)
}

/// The value of one query parameter (`aclass=tokenized_asset` → `tokenized_asset`).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|field| {
        let (key, value) = field.split_once('=')?;
        (key == name).then(|| percent_decode(value.as_bytes()))
    })
}

/// Assets of one class (`aclass`, `currency` when not asked), as Kraken lists them: tokenized
/// assets only when asked for by their class.
fn assets_result(aclass: Option<String>) -> Value {
    let aclass = aclass.as_deref().unwrap_or("currency");
    let map: Map<String, Value> = ASSETS
        .iter()
        .filter(|&&(code, _)| asset_class(code) == aclass)
        .map(|&(code, altname)| {
            (
                code.to_owned(),
                json!({
                    "aclass": asset_class(code),
                    "altname": altname,
                    "decimals": asset_decimals(code),
                    "display_decimals": 5,
                    "status": "enabled",
                }),
            )
        })
        .collect();
    Value::Object(map)
}

/// Decimals Kraken would show for a price of this size: about six significant digits.
fn price_decimals(price: f64) -> usize {
    if price > 0.0 && price.is_finite() {
        (5 - price.log10().floor() as i64).clamp(2, 10) as usize
    } else {
        2
    }
}

/// Pairs whose base is of one class (`aclass_base`, `currency` when not asked).
fn asset_pairs_result(aclass_base: Option<String>) -> Value {
    let aclass_base = aclass_base.as_deref().unwrap_or("currency");
    let map: Map<String, Value> = PAIRS
        .iter()
        .filter(|&&(_, _, base, _)| asset_class(base) == aclass_base)
        .map(|&(name, altname, base, quote)| {
            let decimals = price_decimals(usd_value(base) / usd_value(quote));
            (
                name.to_owned(),
                json!({
                    "altname": altname,
                    "wsname": format!("{}/{}", asset_altname(base), asset_altname(quote)),
                    "aclass_base": asset_class(base),
                    "base": base,
                    "aclass_quote": asset_class(quote),
                    "quote": quote,
                    "lot": "unit",
                    "cost_decimals": 5,
                    "pair_decimals": decimals,
                    "lot_decimals": 8,
                    "lot_multiplier": 1,
                    "leverage_buy": [],
                    "leverage_sell": [],
                    "fees": [[0, 0.4], [10000, 0.35]],
                    "fees_maker": [[0, 0.25], [10000, 0.2]],
                    "fee_volume_currency": "ZUSD",
                    "ordermin": "0.0001",
                    "costmin": "0.5",
                    "tick_size": format!("{:.*}", decimals, 10f64.powi(-(decimals as i32))),
                    "status": "online",
                }),
            )
        })
        .collect();
    Value::Object(map)
}

/// The Ticker answer for `?pair=A,B` (every pair without it); `Err` for an unknown pair.
fn ticker_result(
    query: Option<&str>,
    prices: &HashMap<String, f64>,
) -> Result<Value, &'static str> {
    let requested = query.and_then(|q| {
        q.split('&').find_map(|field| {
            field
                .strip_prefix("pair=")
                .map(|list| percent_decode(list.as_bytes()))
        })
    });
    let names: Vec<&'static str> = match requested {
        None => PAIRS.iter().map(|p| p.0).collect(),
        Some(list) => list
            .split(',')
            .map(|name| canonical_pair(name.trim()).ok_or("EQuery:Unknown asset pair"))
            .collect::<Result<_, _>>()?,
    };
    let map: Map<String, Value> = names
        .into_iter()
        .map(|name| {
            let price = prices.get(name).copied().unwrap_or(0.0);
            let decimals = price_decimals(price);
            let text = |value: f64| Value::String(format!("{value:.decimals$}"));
            (
                name.to_owned(),
                json!({
                    "a": [text(price * 1.0005), "1", "1.000"],
                    "b": [text(price * 0.9995), "2", "2.000"],
                    "c": [text(price), "0.10000000"],
                    "v": ["1200.00000000", "3400.00000000"],
                    "p": [text(price), text(price)],
                    "t": [12000, 34000],
                    "l": [text(price * 0.98), text(price * 0.97)],
                    "h": [text(price * 1.02), text(price * 1.03)],
                    "o": text(price),
                }),
            )
        })
        .collect();
    Ok(Value::Object(map))
}

/// The code an asset is valued as in TradeBalance: the part before a `.` suffix, by code or
/// altname, then without trailing digits (`DOT28.S` → `DOT`, `ETH2.S` → `XETH`).
fn sim_value_code(code: &str) -> Option<&'static str> {
    let stem = code.split('.').next().unwrap_or(code);
    let lookup = |name: &str| {
        ASSETS
            .iter()
            .find(|a| !a.0.contains('.') && (a.0 == name || a.1 == name))
            .map(|a| a.0)
    };
    lookup(stem).or_else(|| lookup(stem.trim_end_matches(|c: char| c.is_ascii_digit())))
}

/// USD value of one unit of `code` at the current prices: its USD pair, or the inverse of a USD
/// pair quoted in it; `None` without either.
fn usd_price(code: &str, prices: &HashMap<String, f64>) -> Option<f64> {
    if code == "ZUSD" {
        return Some(1.0);
    }
    PAIRS.iter().find_map(|&(name, _, base, quote)| {
        let price = *prices.get(name)?;
        if base == code && quote == "ZUSD" {
            Some(price)
        } else if base == "ZUSD" && quote == code && price > 0.0 {
            Some(1.0 / price)
        } else {
            None
        }
    })
}

/// TradeBalance: every balance valued in `asset` at the current prices (assets without a USD
/// market count as nothing), with no margin positions open.
fn trade_balance_result(
    balances: &[(String, f64, f64)],
    prices: &HashMap<String, f64>,
    asset: &str,
) -> Result<Value, &'static str> {
    let quote = sim_value_code(asset)
        .filter(|code| *code == asset || asset_altname(code) == asset)
        .ok_or("EQuery:Unknown asset")?;
    let quote_usd = usd_price(quote, prices)
        .filter(|p| *p > 0.0)
        .ok_or("EQuery:Unknown asset")?;
    let equivalent: f64 = balances
        .iter()
        .filter_map(|(code, balance, _)| {
            let usd = usd_price(sim_value_code(code)?, prices)?;
            Some(balance * usd / quote_usd)
        })
        .sum();
    let text = |value: f64| Value::String(format!("{value:.4}"));
    Ok(json!({
        "eb": text(equivalent),
        "tb": text(equivalent),
        "m": text(0.0),
        "n": text(0.0),
        "c": text(0.0),
        "v": text(0.0),
        "e": text(equivalent),
        "mf": text(equivalent),
        "uv": text(0.0),
    }))
}

/// GetApiKeyInfo's documented answer (docs.kraken.com/api-reference/account-data/
/// get-api-key-info): the key itself is echoed as Kraken does, so tests can check that the
/// exporter never keeps it; name, expiry, creation, allowlist and last use come from `info`.
fn api_key_info_result(
    permissions: &[String],
    key: &str,
    last_nonce: Option<u64>,
    info: &SimKeyInfo,
) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({
        "apiKeyName": info.name,
        "apiKey": key,
        "nonce": last_nonce.unwrap_or(0).to_string(),
        "nonceWindow": 0,
        "permissions": permissions,
        "iban": "AA00 SIMU LATE DKRK",
        "validUntil": info.valid_until.to_string(),
        "queryFrom": "0",
        "queryTo": "0",
        "createdTime": info.created.to_string(),
        "modifiedTime": info.created.to_string(),
        "ipAllowlist": info.ip_allowlist,
        "lastUsed": info.last_used.unwrap_or(now).to_string(),
    })
}

/// Earn/Allocations' documented answer (api-specs `/private/Earn/Allocations`): per strategy
/// the native amounts of each state that has allocations, with each allocation's expiry, and
/// the total. Converted amounts are in USD at the sim's default values.
fn earn_allocations_result(earn: &[SimEarn]) -> Value {
    let usd = |asset: &str, native: f64| {
        let code = ASSETS.iter().find(|a| a.1 == asset).map_or(asset, |a| a.0);
        format!("{:.4}", native * usd_value(code))
    };
    let state = |asset: &str, allocations: &[(f64, u64)]| -> Option<Value> {
        if allocations.is_empty() {
            return None;
        }
        let native: f64 = allocations.iter().map(|(amount, _)| amount).sum();
        let items: Vec<Value> = allocations
            .iter()
            .map(|&(part, expires)| {
                json!({
                    "created_at": rfc3339(expires.saturating_sub(7 * 86_400)),
                    "expires": rfc3339(expires),
                    "native": amount(part),
                    "converted": usd(asset, part),
                })
            })
            .collect();
        Some(json!({
            "native": amount(native),
            "converted": usd(asset, native),
            "allocation_count": items.len(),
            "allocations": items,
        }))
    };
    let mut total_allocated = 0.0;
    let items: Vec<Value> = earn
        .iter()
        .map(|strategy| {
            let asset = strategy.native_asset.as_str();
            let mut allocated = Map::new();
            for (name, allocations) in [
                ("bonding", &strategy.bonding),
                ("exit_queue", &strategy.exit_queue),
                ("unbonding", &strategy.unbonding),
            ] {
                if let Some(value) = state(asset, allocations) {
                    allocated.insert(name.to_owned(), value);
                }
            }
            allocated.insert(
                "total".to_owned(),
                json!({ "native": amount(strategy.total), "converted": usd(asset, strategy.total) }),
            );
            total_allocated += usd(asset, strategy.total).parse::<f64>().unwrap_or(0.0);
            json!({
                "strategy_id": strategy.strategy_id,
                "native_asset": asset,
                "amount_allocated": allocated,
                "total_rewarded": { "native": amount(0.0), "converted": "0.0000" },
            })
        })
        .collect();
    json!({
        "converted_asset": "USD",
        "total_allocated": format!("{total_allocated:.4}"),
        "total_rewarded": "0.0000",
        "items": items,
    })
}

fn withdraw_methods_result() -> Value {
    Value::Array(
        WITHDRAW_METHODS
            .iter()
            .map(|&(asset, method, network, minimum)| {
                let network = if network.is_empty() {
                    Value::Null
                } else {
                    Value::String(network.to_owned())
                };
                json!({ "asset": asset, "method": method, "network": network, "minimum": minimum })
            })
            .collect(),
    )
}

fn time_result() -> Value {
    let unixtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    json!({ "unixtime": unixtime, "rfc1123": rfc1123(unixtime) })
}

/// Kraken's `rfc1123` field, which uses a two-digit year: `Tue, 23 Mar 21 09:39:36 +0000`.
fn rfc1123(unixtime: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unixtime / 86_400;
    let secs = unixtime % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    format!(
        "{weekday}, {day:02} {} {:02} {:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        year % 100,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::testing::*;
    use super::*;
    use crate::endpoint::Endpoint;
    use crate::sim::SimOptions;
    use crate::sim::data::{DEFAULT_BALANCES, drifted};
    use crate::sim::state::SimState;

    #[tokio::test]
    async fn signed_balance_ex_returns_ten_decimal_strings_with_hold_trade() {
        let sim = start_with_key(None).await;
        let answer = call(&sim, Endpoint::BalanceEx, 1).await;
        assert_eq!(errors(&answer), Vec::<&str>::new());
        let result = &answer["result"];
        assert_eq!(result["XXBT"]["balance"], "1.2345678901");
        assert_eq!(result["XXBT"]["hold_trade"], "0.1000000000");
        assert_eq!(result["ZUSD"]["balance"], "25000.1234000000");
        assert_eq!(result["ZUSD"]["hold_trade"], "1500.0000000000");
        assert_eq!(result["ZEUR"]["balance"], "0.0000000000");
        assert_eq!(result["DOT.S"]["balance"], "300.7500000000");
        assert_eq!(result.as_object().unwrap().len(), DEFAULT_BALANCES.len());
        assert_eq!(sim.last_nonce(), Some(1));
    }

    #[tokio::test]
    async fn balance_returns_plain_strings_and_set_balances_replaces_all() {
        let sim = start_with_key(None).await;
        sim.set_balances(vec![("XXBT".into(), 0.5, 0.25), ("USDC".into(), 10.0, 0.0)]);
        let answer = call(&sim, Endpoint::Balance, 1).await;
        assert_eq!(
            answer["result"],
            json!({"XXBT": "0.5000000000", "USDC": "10.0000000000"})
        );
        let answer = call(&sim, Endpoint::BalanceEx, 2).await;
        assert_eq!(
            answer["result"]["XXBT"],
            json!({"balance": "0.5000000000", "hold_trade": "0.2500000000"})
        );
    }

    #[tokio::test]
    async fn assets_lists_codes_with_altnames_and_is_get_only() {
        let sim = start(SimOptions::default()).await;
        let url = format!("{}/0/public/Assets", sim.url());
        let response = http().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(errors(&answer).is_empty());
        let result = &answer["result"];
        for (code, altname) in [
            ("XXBT", "XBT"),
            ("XETH", "ETH"),
            ("ZUSD", "USD"),
            ("ZEUR", "EUR"),
            ("DOT", "DOT"),
            ("DOT.S", "DOT.S"),
            ("ETH2.S", "ETH2.S"),
            ("USD.M", "USD.M"),
            ("USDC", "USDC"),
            ("XXDG", "XDG"),
            ("DOT28.S", "DOT28.S"),
        ] {
            assert_eq!(result[code]["altname"], altname, "{code}");
            assert_eq!(result[code]["aclass"], "currency", "{code}");
        }
        // Kraken's decimals: fiat keeps 4, stablecoins 8, crypto 10.
        for (code, decimals) in [("ZUSD", 4), ("ZEUR", 4), ("USDC", 8), ("XXBT", 10)] {
            assert_eq!(result[code]["decimals"], decimals, "{code}");
        }
        assert!(
            result.get("AAPLx").is_none(),
            "tokenized assets need their class"
        );

        let response = http().post(&url).send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "GET");
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(errors(&answer), ["EGeneral:Invalid arguments"]);
    }

    #[tokio::test]
    async fn tokenized_assets_and_their_pairs_are_listed_only_under_their_class() {
        let sim = start(SimOptions::default()).await;
        let answer = get_json(&sim, "/0/public/Assets?aclass=tokenized_asset").await;
        let result = answer["result"].as_object().unwrap();
        assert_eq!(result.keys().collect::<Vec<_>>(), ["AAPLx"]);
        assert_eq!(result["AAPLx"]["aclass"], "tokenized_asset");
        let answer = get_json(&sim, "/0/public/Assets?aclass=currency").await;
        assert!(answer["result"].get("AAPLx").is_none());
        assert_eq!(answer["result"]["XXBT"]["altname"], "XBT");

        let answer = get_json(&sim, "/0/public/AssetPairs?aclass_base=tokenized_asset").await;
        let result = answer["result"].as_object().unwrap();
        assert_eq!(result.keys().collect::<Vec<_>>(), ["AAPLxUSD"]);
        assert_eq!(result["AAPLxUSD"]["base"], "AAPLx");
        assert_eq!(result["AAPLxUSD"]["quote"], "ZUSD");
        assert_eq!(result["AAPLxUSD"]["aclass_base"], "tokenized_asset");
        assert_eq!(result["AAPLxUSD"]["aclass_quote"], "currency");
        let answer = get_json(&sim, "/0/public/Ticker?pair=AAPLxUSD").await;
        assert_eq!(last_price(&answer, "AAPLxUSD"), 230.0);
    }

    #[tokio::test]
    async fn time_answers_unixtime_and_rfc1123() {
        let sim = start(SimOptions::default()).await;
        let answer: Value = http()
            .get(format!("{}/0/public/Time", sim.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap();
        let unixtime = answer["result"]["unixtime"].as_u64().unwrap();
        assert!(unixtime > 1_700_000_000);
        assert_eq!(answer["result"]["rfc1123"], rfc1123(unixtime));
    }

    #[test]
    fn rfc1123_uses_krakens_two_digit_year() {
        assert_eq!(rfc1123(1_616_492_376), "Tue, 23 Mar 21 09:39:36 +0000");
        assert_eq!(rfc1123(951_782_400), "Tue, 29 Feb 00 00:00:00 +0000");
        assert_eq!(rfc1123(0), "Thu, 01 Jan 70 00:00:00 +0000");
    }

    #[tokio::test]
    async fn moving_balances_drift_within_five_percent_and_keep_zero_and_hold() {
        let sim = start(SimOptions {
            moving: true,
            ..SimOptions::default()
        })
        .await;
        let answer = call(&sim, Endpoint::BalanceEx, 1).await;
        for (index, &(code, balance, hold)) in DEFAULT_BALANCES.iter().enumerate() {
            let served: f64 = answer["result"][code]["balance"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((served - balance).abs() <= balance * 0.05 + 1e-9, "{code}");
            if index > 0 && balance > 0.0 {
                assert_ne!(served, balance, "{code} should drift");
            }
            assert_eq!(
                answer["result"][code]["hold_trade"],
                format!("{hold:.10}"),
                "{code}"
            );
        }
        assert_eq!(answer["result"]["ZEUR"]["balance"], "0.0000000000");
    }

    #[test]
    fn drift_is_smooth_bounded_and_positive() {
        let mut previous = drifted(100.0, 3, 0.0);
        for step in 1..=10_000 {
            let t = f64::from(step);
            let now = drifted(100.0, 3, t);
            assert!((95.0..=105.0).contains(&now));
            assert!((now - previous).abs() < 0.1, "jump at {t}s");
            previous = now;
        }
        assert_ne!(drifted(100.0, 0, 0.0), drifted(100.0, 0, 30.0));
        assert_eq!(drifted(0.0, 2, 123.0), 0.0);
    }

    #[tokio::test]
    async fn asset_pairs_list_base_and_quote_codes_and_are_get_only() {
        let sim = start(SimOptions::default()).await;
        let answer = get_json(&sim, "/0/public/AssetPairs").await;
        let result = &answer["result"];
        for (pair, altname, base, quote) in [
            ("XXBTZUSD", "XBTUSD", "XXBT", "ZUSD"),
            ("XETHZUSD", "ETHUSD", "XETH", "ZUSD"),
            ("XXBTZEUR", "XBTEUR", "XXBT", "ZEUR"),
            ("XETHZEUR", "ETHEUR", "XETH", "ZEUR"),
            ("DOTUSD", "DOTUSD", "DOT", "ZUSD"),
            ("DOTEUR", "DOTEUR", "DOT", "ZEUR"),
            ("ZEURZUSD", "EURUSD", "ZEUR", "ZUSD"),
            ("USDCUSD", "USDCUSD", "USDC", "ZUSD"),
            ("XXDGZUSD", "XDGUSD", "XXDG", "ZUSD"),
            ("XETHXXBT", "ETHXBT", "XETH", "XXBT"),
        ] {
            assert_eq!(result[pair]["altname"], altname, "{pair}");
            assert_eq!(result[pair]["base"], base, "{pair}");
            assert_eq!(result[pair]["quote"], quote, "{pair}");
        }
        assert_eq!(result["XXBTZUSD"]["wsname"], "XBT/USD");
        assert_eq!(result.as_object().unwrap().len(), PAIRS.len() - 1);
        assert!(
            result.get("AAPLxUSD").is_none(),
            "tokenized pairs need their class"
        );
        assert_eq!(sim.calls(Endpoint::AssetPairs), 1);
        let response = http()
            .post(format!("{}/0/public/AssetPairs", sim.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }

    #[tokio::test]
    async fn ticker_prices_are_consistent_by_default_and_settable() {
        let sim = start(SimOptions::default()).await;
        let answer = get_json(
            &sim,
            "/0/public/Ticker?pair=XXBTZUSD,XETHZUSD,DOTUSD,ZEURZUSD,XXDGZUSD,USDCUSD,XXBTZEUR,DOTEUR",
        )
        .await;
        assert!(errors(&answer).is_empty(), "{answer}");
        assert_eq!(last_price(&answer, "XXBTZUSD"), 65000.0);
        assert_eq!(last_price(&answer, "XETHZUSD"), 3500.0);
        assert_eq!(last_price(&answer, "DOTUSD"), 7.5);
        assert_eq!(last_price(&answer, "ZEURZUSD"), 1.08);
        assert_eq!(last_price(&answer, "XXDGZUSD"), 0.15);
        assert_eq!(last_price(&answer, "USDCUSD"), 1.0);
        // EUR pairs agree with the USD ones through EURUSD.
        let xbt_eur = last_price(&answer, "XXBTZEUR");
        assert!((xbt_eur * 1.08 - 65000.0).abs() < 0.1, "{xbt_eur}");
        assert!((last_price(&answer, "DOTEUR") * 1.08 - 7.5).abs() < 1e-4);
        assert_eq!(answer["result"]["XXBTZUSD"]["c"][1], "0.10000000");

        sim.set_price("DOTUSD", 9.25);
        sim.set_price("XBTUSD", 70000.0);
        let answer = get_json(&sim, "/0/public/Ticker?pair=DOTUSD,XXBTZUSD").await;
        assert_eq!(last_price(&answer, "DOTUSD"), 9.25);
        assert_eq!(last_price(&answer, "XXBTZUSD"), 70000.0);
        assert_eq!(sim.calls(Endpoint::Ticker), 2);
    }

    #[tokio::test]
    async fn ticker_answers_altnames_under_the_canonical_name_and_refuses_unknown_pairs() {
        let sim = start(SimOptions::default()).await;
        let answer = get_json(&sim, "/0/public/Ticker?pair=XBTUSD%2CEURUSD").await;
        let result = answer["result"].as_object().unwrap();
        let mut names: Vec<_> = result.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["XXBTZUSD", "ZEURZUSD"]);

        let answer = get_json(&sim, "/0/public/Ticker?pair=XXBTZUSD,NOPEUSD").await;
        assert_eq!(errors(&answer), ["EQuery:Unknown asset pair"]);
        assert!(answer.get("result").is_none());

        let answer = get_json(&sim, "/0/public/Ticker").await;
        assert_eq!(answer["result"].as_object().unwrap().len(), PAIRS.len());
        // Tiny cross prices keep their significant digits.
        assert!(last_price(&answer, "XXDGXXBT") > 0.0);
    }

    #[tokio::test]
    async fn moving_prices_drift_within_five_percent() {
        let sim = start(SimOptions {
            moving: true,
            ..SimOptions::default()
        })
        .await;
        let answer = get_json(&sim, "/0/public/Ticker?pair=XXBTZUSD,DOTUSD").await;
        let xbt = last_price(&answer, "XXBTZUSD");
        assert!((xbt - 65000.0).abs() <= 65000.0 * 0.05 + 1.0, "{xbt}");
        assert_ne!(xbt, 65000.0);
        let dot = last_price(&answer, "DOTUSD");
        assert!((dot - 7.5).abs() <= 7.5 * 0.05 + 1e-4, "{dot}");
    }

    #[tokio::test]
    async fn get_api_key_info_lists_the_configured_permissions() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            permissions: vec!["query-funds".into(), "withdraw-funds".into()],
            ..SimOptions::default()
        })
        .await;
        let answer = call(&sim, Endpoint::GetApiKeyInfo, 1).await;
        assert_eq!(answer["result"]["apiKeyName"], "exporter");
        assert_eq!(answer["result"]["nonce"], "1");
        assert_eq!(
            answer["result"]["permissions"],
            json!(["query-funds", "withdraw-funds"])
        );
        assert_eq!(sim.calls(Endpoint::GetApiKeyInfo), 1);
        let mut bad = Call::new(&sim, Endpoint::GetApiKeyInfo, 2);
        bad.key = "nobody".into();
        assert_eq!(errors(&bad.send(&sim).await), ["EAPI:Invalid key"]);
    }

    #[tokio::test]
    async fn earn_allocations_answer_as_the_fixture_they_model_parses() {
        let sim = start_with_key(None).await;
        let answer = call(&sim, Endpoint::EarnAllocations, 1).await;
        let body = serde_json::to_vec(&answer).unwrap();
        let served = crate::parse::earn_allocations(200, &body).unwrap();
        let fixture = crate::parse::earn_allocations(
            200,
            include_bytes!("../../../tests/fixtures/kraken/earn_allocations_states.json"),
        )
        .unwrap();
        // The fixture's one unbonding expiry with milliseconds is served to the second.
        let to_second = |mut items: Vec<crate::EarnAllocation>| {
            for item in &mut items {
                item.unbonding_until = item.unbonding_until.map(|at| {
                    UNIX_EPOCH
                        + std::time::Duration::from_secs(
                            at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
                        )
                });
            }
            items
        };
        assert_eq!(to_second(served), to_second(fixture));
        assert_eq!(
            answer["result"]["items"][0]["amount_allocated"]["unbonding"]["allocations"][0]["expires"],
            "2026-12-18T08:00:00Z"
        );
        sim.set_earn(vec![]);
        let answer = call(&sim, Endpoint::EarnAllocations, 2).await;
        assert_eq!(answer["result"]["items"], json!([]));
        assert_eq!(sim.calls(Endpoint::EarnAllocations), 2);
    }

    #[tokio::test]
    async fn get_api_key_info_tells_the_configured_expiry_allowlist_and_creation() {
        let sim = start_with_key(None).await;
        sim.set_key_info(SimKeyInfo {
            name: "backup-monitor".into(),
            valid_until: 1_800_000_000,
            created: 1_790_000_000,
            ip_allowlist: vec!["192.0.2.1/32".into()],
            last_used: Some(1_795_000_000),
        });
        let answer = call(&sim, Endpoint::GetApiKeyInfo, 1).await;
        let info = crate::parse::api_key_info(200, &serde_json::to_vec(&answer).unwrap()).unwrap();
        assert_eq!(info.name.as_deref(), Some("backup-monitor"));
        assert_eq!(
            info.valid_until,
            Some(crate::KeyExpiry::At(
                UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)
            ))
        );
        assert_eq!(info.ip_allowlist, Some(vec!["192.0.2.1/32".to_owned()]));
        assert_eq!(
            info.last_used,
            Some(UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000))
        );
    }

    #[tokio::test]
    async fn trade_balance_values_every_balance_in_the_requested_asset() {
        let sim = start(SimOptions {
            credentials: Some(test_credentials(None)),
            trade_balance_enabled: true,
            ..SimOptions::default()
        })
        .await;
        sim.set_balances(vec![
            ("XXBT".into(), 1.0, 0.0),
            ("DOT28.S".into(), 100.0, 0.0),
            ("ETH2.S".into(), 2.0, 0.0),
            ("ZUSD".into(), 500.0, 0.0),
            ("NEWCOIN".into(), 1000.0, 0.0),
        ]);
        let eb =
            |answer: &Value| -> f64 { answer["result"]["eb"].as_str().unwrap().parse().unwrap() };
        let answer = call(&sim, Endpoint::TradeBalance, 1).await;
        let usd = 65000.0 + 750.0 + 7000.0 + 500.0;
        assert!((eb(&answer) - usd).abs() < 0.01, "{answer}");
        assert_eq!(answer["result"]["m"], "0.0000");

        let mut in_eur = Call::new(&sim, Endpoint::TradeBalance, 2);
        in_eur.params = "asset=ZEUR";
        let answer = in_eur.send(&sim).await;
        assert!((eb(&answer) - usd / 1.08).abs() < 0.01, "{answer}");

        let mut by_altname = Call::new(&sim, Endpoint::TradeBalance, 3);
        by_altname.params = "asset=XBT";
        let answer = by_altname.send(&sim).await;
        // Kraken's four decimals.
        assert!((eb(&answer) - usd / 65000.0).abs() < 1e-4, "{answer}");

        let mut unknown = Call::new(&sim, Endpoint::TradeBalance, 4);
        unknown.params = "asset=NOPE";
        assert_eq!(errors(&unknown.send(&sim).await), ["EQuery:Unknown asset"]);
    }

    #[test]
    fn every_pair_has_a_default_price_and_known_assets() {
        let state = SimState::new();
        for &(name, _, base, quote) in PAIRS {
            assert!(state.prices[name] > 0.0, "{name}");
            for code in [base, quote] {
                assert!(ASSETS.iter().any(|a| a.0 == code), "{name}: {code}");
            }
        }
    }
}
