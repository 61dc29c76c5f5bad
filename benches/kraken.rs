//! Micro-benchmarks of the work one refresh and one scrape do, without I/O: signing a private
//! call, parsing a BalanceEx answer, and rendering the exposition.
//!
//! Run with `cargo bench --bench kraken`; `cargo bench --bench kraken -- render` runs a subset.
//! Method and results: docs/benchmarks.md.

#[path = "../bench/common.rs"]
mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kraken::parse;
use kraken::secret::ApiSecret;
use kraken::sign::sign;
use kraken_exporter::metrics::{self, AccountView, BuildInfo, ReloadView, RequestMetrics};

/// One BalanceEx call's signature, with a 64-byte secret like Kraken's.
fn signing(c: &mut Criterion) {
    let secret = ApiSecret::from_bytes(
        STANDARD
            .decode("kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==")
            .expect("valid base64"),
    );
    let nonce = 1_616_492_376_594_u64;
    let body = format!("nonce={nonce}");
    c.bench_function("sign/BalanceEx", |b| {
        b.iter(|| {
            sign(
                black_box("/0/private/BalanceEx"),
                black_box(nonce),
                black_box(body.as_bytes()),
                &secret,
            )
        })
    });
}

/// Parsing a BalanceEx answer of 100 assets (decimal strings, as Kraken sends them).
fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_balance_ex");
    for assets in [10, 100] {
        let body = common::balance_ex_body(assets);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(assets), &body, |b, body| {
            b.iter(|| parse::balance_ex(200, black_box(body)).expect("valid answer"))
        });
    }
    group.finish();
}

/// Rendering the whole exposition of `accounts` accounts holding `assets` assets each, as a
/// `/metrics` scrape does after the statuses are read.
fn render_case(c: &mut Criterion, group: &str, cases: &[(usize, usize)]) {
    let mut group = c.benchmark_group(group);
    group.measurement_time(Duration::from_secs(4));
    let build = BuildInfo::current();
    let reload = ReloadView {
        ok: true,
        last_success: SystemTime::now(),
    };
    let no_thresholds = BTreeMap::new();
    for &(accounts, assets) in cases {
        if accounts * assets >= 10_000 {
            group.sample_size(20);
        }
        let requests = common::request_metrics(accounts);
        let statuses: Vec<_> = (0..accounts)
            .map(|i| common::account_status(&common::account_name(i), assets))
            .collect();
        group.throughput(Throughput::Elements((accounts * assets) as u64));
        group.bench_function(format!("{accounts}x{assets}"), |b| {
            b.iter(|| {
                // The exporter builds the views from fresh statuses at every scrape; cloning
                // them here keeps that cost in the measurement.
                let views: Vec<AccountView<'_>> = statuses
                    .iter()
                    .map(|status| AccountView {
                        status: status.clone(),
                        min_balance: &no_thresholds,
                        unknown_assets: &[],
                        max_outflow: &common::NO_LIMITS,
                    })
                    .collect();
                metrics::render(&views, None, Some(reload), None, &requests, &build)
            })
        });
    }
    group.finish();
}

/// The account families alone, as `metrics::render` builds them: no request counters, so only
/// the per-account part of the exposition is timed.
fn rendering_account_families(c: &mut Criterion) {
    let mut group = c.benchmark_group("render_account_families");
    group.measurement_time(Duration::from_secs(4));
    let build = BuildInfo::current();
    let reload = ReloadView {
        ok: true,
        last_success: SystemTime::now(),
    };
    let no_requests = RequestMetrics::new();
    let thresholds: BTreeMap<String, f64> = [("XBT".to_owned(), 0.5), ("USD".to_owned(), 100.0)]
        .into_iter()
        .collect();
    for (accounts, assets) in [(1, 100), (100, 50), (1000, 50)] {
        if accounts * assets >= 10_000 {
            group.sample_size(20);
        }
        let statuses: Vec<_> = (0..accounts)
            .map(|i| common::account_status(&common::account_name(i), assets))
            .collect();
        let views = || -> Vec<AccountView<'_>> {
            statuses
                .iter()
                .map(|status| AccountView {
                    status: status.clone(),
                    min_balance: &thresholds,
                    unknown_assets: &[],
                    max_outflow: &common::NO_LIMITS,
                })
                .collect()
        };
        group.throughput(Throughput::Elements((accounts * assets) as u64));
        group.bench_function(format!("current/{accounts}x{assets}"), |b| {
            b.iter(|| metrics::render(&views(), None, Some(reload), None, &no_requests, &build))
        });
    }
    group.finish();
}

/// The two typical shapes (one large account, a fleet), then the growth with the number of
/// accounts at 50 assets each.
fn rendering(c: &mut Criterion) {
    render_case(c, "render", &[(1, 100), (100, 50)]);
    render_case(c, "render_accounts_x50", &[(10, 50), (100, 50), (1000, 50)]);
}

criterion_group!(
    benches,
    signing,
    parsing,
    rendering,
    rendering_account_families
);
criterion_main!(benches);
