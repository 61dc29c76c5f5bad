//! Everything that knows Kraken's wire format, and the simulated Kraken that speaks it back.
//!
//! Owns the closed set of methods ([`Endpoint`]), request signing, nonces, the HTTP client, the
//! pure parsers of Kraken's answers, and [`sim`], the in-process Kraken of `--demo` and the tests.
//! Must not: import anything from the exporter above it (metrics, refresh policy, account state,
//! exporter, command line, configuration): calls are reported through [`CallObserver`], and
//! when to call is decided by the caller. No other module builds a Kraken URL, reads a Kraken
//! body or matches a Kraken error string.

pub mod client;
pub mod endpoint;
pub mod error;
pub mod nonce;
pub mod observer;
pub mod parse;
pub mod sign;
pub mod sim;

pub use client::{
    BalanceEndpoint, ClientOptions, KrakenClient, PUBLIC_CALL_SPACING, TICKER_BATCH, TickerPrices,
};
pub use endpoint::Endpoint;
pub use error::{KrakenError, Reason};
pub use observer::CallObserver;
pub use parse::{
    ApiKeyInfo, AssetBalance, AssetInfo, AssetTable, EarnAllocation, KeyExpiry, PairInfo,
    PairTable, at_kraken_precision,
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    #[test]
    fn the_wire_layer_imports_nothing_of_the_exporter_above_it() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kraken");
        let mut files = Vec::new();
        sources(&root, &mut files);
        assert!(files.len() > 10, "{files:?}");
        // Built from parts, so this test does not name them itself.
        let mut above: Vec<String> = [
            "account",
            "app",
            "check",
            "cli",
            "config",
            "exporter",
            "market",
            "metrics",
            "server",
            "status",
            "web_config",
        ]
        .iter()
        .map(|module| format!("crate::{module}"))
        .collect();
        above.push(format!("{}::", "clap"));
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for name in &above {
                    assert!(
                        !line.contains(name),
                        "{}:{}: the wire layer names {name}",
                        file.display(),
                        number + 1
                    );
                }
            }
        }
    }
}
