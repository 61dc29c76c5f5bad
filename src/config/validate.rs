//! The checks of single settings: account names, API URLs, durations, the listen address, the
//! telemetry path, the quote currency, the allowed permissions and the nonce file.
//!
//! Each check returns the value it accepts, or what is wrong and the fix, without the place:
//! the caller knows whether the value came from a flag or a field of the config file.
//! Must not: read the environment or credentials; the only file it looks at is the nonce file's
//! directory (through [`kraken::nonce::check_state_file`]).

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::audit;
use crate::cli::DEFAULT_PORT;
use kraken::BalanceEndpoint;

/// Names become label values and `/probe?account=` arguments: keep them plain. Names starting
/// with `_` are reserved (`_public` counts calls to Kraken's public endpoints).
pub(super) fn account_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.starts_with('_') {
        return Some(format!(
            "{name:?} starts with _, which is reserved: choose another name"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some(format!(
            "{name:?} may contain only letters, digits, '-', '_' and '.'"
        ));
    }
    None
}

/// `balance_endpoint` of an account entry, spelled as the flag `--kraken.balance-endpoint`.
pub(super) fn balance_endpoint(text: &str) -> Option<BalanceEndpoint> {
    match text {
        "auto" => Some(BalanceEndpoint::Auto),
        "balance-ex" => Some(BalanceEndpoint::BalanceEx),
        "balance" => Some(BalanceEndpoint::Balance),
        _ => None,
    }
}

/// Plain HTTP would send the key and signatures in clear text, so it is accepted only for a
/// Kraken on this machine (the simulated one, or a local proxy that adds TLS). The URL is the
/// base the client appends `/0/private/BalanceEx` to, so a path other than `/`, a query or a
/// fragment is a mistake (`.../0/private` would call `/0/private/0/private/BalanceEx`). Returns
/// the URL without trailing slash.
pub(super) fn api_url(url: &str) -> Result<String, &'static str> {
    let trimmed = url.trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err("is not a URL: write it like https://api.kraken.com");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err("has no host: write it like https://api.kraken.com");
    }
    if host.len() < rest.len() {
        return Err(
            "has a path, query or fragment: give the base URL only, like https://api.kraken.com (the exporter adds /0/private/... itself)",
        );
    }
    let host_name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    match scheme {
        "https" => Ok(trimmed.to_owned()),
        "http" if matches!(host_name, "127.0.0.1" | "localhost" | "[::1]") => {
            Ok(trimmed.to_owned())
        }
        "http" => {
            Err("uses plain http to another machine, which would expose the API key: use https")
        }
        _ => Err("must start with https://"),
    }
}

/// `--kraken.ws-url`: a WebSocket URL, `wss://`, or `ws://` only to this machine (the token
/// would cross the network in clear otherwise).
pub(super) fn ws_url(url: &str) -> Result<String, &'static str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not a URL: write it like wss://ws-auth.kraken.com/v2");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err("has no host: write it like wss://ws-auth.kraken.com/v2");
    }
    let host_name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    match scheme {
        "wss" => Ok(url.to_owned()),
        "ws" if matches!(host_name, "127.0.0.1" | "localhost" | "[::1]") => Ok(url.to_owned()),
        "ws" => {
            Err("uses plain ws to another machine, which would expose the WebSocket token: use wss")
        }
        _ => Err("must start with wss://"),
    }
}

/// `--funding.interval`: each fetch costs two calls.
pub(super) fn funding_interval(interval: Duration) -> Result<(), &'static str> {
    if interval < Duration::from_secs(60) {
        return Err("must be at least 1m (each fetch costs two calls of the key's rate budget)");
    }
    Ok(())
}

/// `--kraken.stream-poll-interval`.
pub(super) fn stream_poll_interval(interval: Duration) -> Result<(), &'static str> {
    if interval.is_zero() {
        return Err("must be longer than 0s (for example 1m)");
    }
    Ok(())
}

/// `--kraken.timeout`.
pub(super) fn timeout(timeout: Duration) -> Result<(), &'static str> {
    if timeout.is_zero() {
        return Err("must be longer than 0s (for example 10s)");
    }
    Ok(())
}

/// `--refresh.interval` (background mode), when given.
pub(super) fn background_interval(interval: Duration) -> Result<(), &'static str> {
    if interval.is_zero() {
        return Err("must be longer than 0s (for example 30s); leave it out to refresh on scrape");
    }
    Ok(())
}

/// `--refresh.assets-interval`.
pub(super) fn assets_interval(interval: Duration) -> Result<(), &'static str> {
    if interval < Duration::from_secs(60) {
        return Err("must be at least 1m: the asset list changes rarely");
    }
    Ok(())
}

/// `--audit.interval`.
pub(super) fn audit_interval(interval: Duration) -> Result<(), &'static str> {
    if interval < Duration::from_secs(60) {
        return Err("must be at least 1m: permissions rarely change, and each audit costs calls");
    }
    Ok(())
}

/// `--earn.interval`.
pub(super) fn earn_interval(interval: Duration) -> Result<(), &'static str> {
    if interval < Duration::from_secs(60) {
        return Err(
            "must be at least 1m: Earn allocations change by the day, and each fetch costs a call",
        );
    }
    Ok(())
}

/// `--valuation.quote`: Kraken's short name of an asset.
pub(super) fn quote(quote: &str) -> Result<(), String> {
    if quote.is_empty() || !quote.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        return Err(format!(
            "{quote:?} is not an asset name: use Kraken's short name, like USD or EUR"
        ));
    }
    Ok(())
}

/// `:port` listens on every interface, IPv6 and IPv4, as Go exporters do: `[::]`, which Linux
/// serves dual-stack; `main` falls back to `0.0.0.0` where IPv6 is unavailable.
pub(super) fn listen_address(address: &str) -> Result<SocketAddr, String> {
    let full = if address.starts_with(':') {
        format!("[::]{address}")
    } else {
        address.to_owned()
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            format!(
                "{address:?} is not host:port or :port (for example :{DEFAULT_PORT} or 127.0.0.1:{DEFAULT_PORT})"
            )
        })
}

/// `--web.telemetry-path`: must not hide the other routes.
pub(super) fn telemetry_path(path: &str) -> Result<(), String> {
    if path.len() < 2 || !path.starts_with('/') || path.starts_with("/-/") || path == "/probe" {
        return Err(format!(
            "{path:?} must start with / and must not be /, /probe or a /-/ path"
        ));
    }
    Ok(())
}

/// `allowed_permissions` (or the comma-separated flag): every name one the metrics use, and
/// `funds_query`, which the exporter cannot do without, among them. Every mistake is listed.
pub(super) fn allowed_permissions<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeSet<String>, Vec<String>> {
    let mut allowed = BTreeSet::new();
    let mut problems = Vec::new();
    for name in names {
        match allowed_name(name) {
            Ok(name) => {
                allowed.insert(name);
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() && !allowed.contains(audit::FUNDS_QUERY) {
        problems.push(format!(
            "leaves out {}, which the exporter needs to read balances: add it",
            audit::FUNDS_QUERY
        ));
    }
    if problems.is_empty() {
        Ok(allowed)
    } else {
        Err(problems)
    }
}

/// Checks one name written in `allowed_permissions`: one of `audit::KNOWN` or `withdraw_addresses`.
/// The refusal lists the names, and points from Kraken's code (`withdraw-funds`) or another
/// spelling to the name it stands for.
fn allowed_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let allowable = audit::KNOWN.iter().chain(&[audit::WITHDRAW_ADDRESSES]);
    if allowable.clone().any(|known| *known == name) {
        return Ok(name.to_owned());
    }
    let meant = audit::normalise_permission(name);
    let hint = if allowable.clone().any(|known| *known == meant) {
        format!(" (write {meant}, the name the metrics use)")
    } else {
        String::new()
    };
    let names: Vec<&str> = allowable.copied().collect();
    Err(format!(
        "{name:?} is not a permission name{hint}: use {}",
        names.join(", ")
    ))
}

/// A nonce file must be usable before the first call spends a nonce.
pub(super) fn nonce_file(path: &Path) -> Result<(), String> {
    kraken::nonce::check_state_file(path).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_websocket_url_is_wss_or_plain_ws_to_this_machine_only() {
        for url in [
            "wss://ws-auth.kraken.com/v2",
            "ws://127.0.0.1:9000/v2",
            "ws://localhost:9000/v2",
            "ws://[::1]:9000/v2",
        ] {
            assert_eq!(ws_url(url).as_deref(), Ok(url));
        }
        assert!(ws_url("ws://10.0.0.5/v2").unwrap_err().contains("use wss"));
        assert!(
            ws_url("https://ws-auth.kraken.com/v2")
                .unwrap_err()
                .contains("wss://")
        );
        assert!(
            ws_url("ws-auth.kraken.com")
                .unwrap_err()
                .contains("not a URL")
        );
        assert!(ws_url("wss:///v2").unwrap_err().contains("no host"));
    }

    #[test]
    fn an_api_url_is_the_base_url_only() {
        for (given, accepted) in [
            ("https://api.kraken.com", "https://api.kraken.com"),
            ("https://api.kraken.com/", "https://api.kraken.com"),
            ("http://127.0.0.1:8080//", "http://127.0.0.1:8080"),
            ("http://localhost:9", "http://localhost:9"),
        ] {
            assert_eq!(api_url(given).as_deref(), Ok(accepted), "{given}");
        }
        for wrong in [
            "http://127.0.0.1:8080/0/private",
            "https://api.kraken.com/0/private/",
            "https://api.kraken.com/0",
            "https://api.kraken.com?x=1",
            "https://api.kraken.com/?x=1",
            "https://api.kraken.com#top",
            "https://api.kraken.com/#top",
        ] {
            let message = api_url(wrong).unwrap_err();
            assert!(
                message.contains("give the base URL only, like https://api.kraken.com"),
                "{wrong}: {message}"
            );
        }
    }
}
