//! End-to-end benchmarks of the `kraken_exporter` release binary against simulated Krakens.
//!
//! `cargo bench --bench harness -- <scenario> [--option value]...` runs one scenario and prints
//! its results as a Markdown table; `bench/run-all.sh` runs them all. Scenarios:
//!
//! - `serve`: `/metrics` throughput and latency with `wrk`, served from the snapshot, against the
//!   limit (a minimal hyper server returning the same bytes) and a Python `prometheus_client`
//!   exporter serving the same balances.
//! - `contention`: the same load while refreshes run (background and on-scrape modes).
//! - `memory`: resident memory idle, across 100,000 scrapes, and with 1,000 accounts × 50 assets.
//! - `coalesce`: 1,000 concurrent scrapers for 60 s against one account on a Starter-tier rate
//!   limit; counts the calls that reach Kraken.
//! - `accounts`: refresh and render time for 10, 100 and 1,000 accounts behind 50 ms of latency,
//!   with the key audit off and on.
//! - `startup`: time from exec to `/-/ready` answering 200.
//! - `alloc`: allocations and time per scrape, in-process, split between the exposition
//!   encoding and the rest of the scrape.
//! - `footprint`: live heap, in-process, of the request counters and account statuses of 1,000
//!   accounts, and the transient heap of one render.
//! - `stream`: the balances stream: time from a ledger event to the new balance on `/metrics`
//!   (single events, a burst, a sustained run), and REST calls per hour in stream vs polling
//!   mode (a simulated hour in-process on paused tokio time, and real minutes of the release
//!   binaries extrapolated).
//! - `profile`: `perf` samples of the exporter under `wrk` load (needs a binary with symbols,
//!   given by `KRAKEN_EXPORTER_BIN`).
//! - `static-server --addr A --file F`: the limit server itself (started by `serve`).
//!
//! The simulated Krakens run inside this process; the exporter runs as a child process, the way
//! it runs in production. Unless `BENCH_PIN=0`, the exporter and the servers it is compared with
//! are pinned to the last CPU and this process and `wrk` to the first, so the server under test
//! always has one core of its own.
//!
//! Must not: send traffic anywhere but 127.0.0.1, or leave a child process running (every child
//! is killed when its handle drops).
//!
//! One module per scenario; `env` (binary, CPUs, child processes), `http` (a blocking client),
//! `measure` (`wrk`, medians, units) and `allocator` (the counting allocator) serve them all.

mod accounts;
mod alloc;
mod allocator;
mod coalesce;
#[path = "../common.rs"]
mod common;
mod contention;
mod env;
mod footprint;
mod http;
mod measure;
mod memory;
mod profile;
mod serve;
mod startup;
#[path = "../static_server.rs"]
mod static_server;
mod stream;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::env::Bench;

// ---------------------------------------------------------------------------------------------
// Entry point.

fn main() -> ExitCode {
    // `cargo bench` appends `--bench` to the arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--bench")
        .collect();
    let Some((scenario, rest)) = args.split_first() else {
        eprintln!(
            "usage: cargo bench --bench harness -- <serve|contention|memory|coalesce|accounts|startup|alloc|profile|footprint|stream> [--option value]..."
        );
        return ExitCode::from(2);
    };
    let opts = match Opts::parse(rest) {
        Ok(opts) => opts,
        Err(error) => {
            eprintln!("harness: {error}");
            return ExitCode::from(2);
        }
    };
    if scenario == "static-server" {
        let addr = opts.text("addr", "127.0.0.1:0").parse().expect("--addr");
        let file = PathBuf::from(opts.text("file", "metrics.prom"));
        return match static_server::run(addr, &file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("static-server: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let bench = match Bench::new() {
        Ok(bench) => bench,
        Err(error) => {
            eprintln!("harness: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match scenario.as_str() {
        "serve" => serve::serve(&bench, &opts),
        "contention" => contention::contention(&bench, &opts),
        "memory" => memory::memory(&bench, &opts),
        "coalesce" => coalesce::coalesce(&bench, &opts),
        "accounts" => accounts::accounts(&bench, &opts),
        "startup" => startup::startup(&bench, &opts),
        "alloc" => alloc::alloc(&bench, &opts),
        "profile" => profile::profile(&bench, &opts),
        "footprint" => footprint::footprint(&opts),
        "stream" => stream::stream(&bench, &opts),
        other => Err(format!("unknown scenario {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("harness: {scenario}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` options.
pub(crate) struct Opts(HashMap<String, String>);

impl Opts {
    pub(crate) fn parse(args: &[String]) -> Result<Opts, String> {
        let mut map = HashMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {arg:?}"))?;
            let value = iter
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_owned(), value.clone());
        }
        Ok(Opts(map))
    }

    pub(crate) fn text(&self, name: &str, default: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    pub(crate) fn number(&self, name: &str, default: u64) -> u64 {
        self.0
            .get(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("--{name} takes a number"))
            })
            .unwrap_or(default)
    }

    pub(crate) fn list(&self, name: &str, default: &[usize]) -> Vec<usize> {
        match self.0.get(name) {
            Some(text) => text
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("--{name} takes numbers"))
                })
                .collect(),
            None => default.to_vec(),
        }
    }
}
