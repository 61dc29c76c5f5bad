//! One scrape's exposition: every account's feature families, the request counters kept across
//! scrapes, prices, and the exporter's own families (build, reload, process).
//!
//! Owns [`render`] (which units write into one [`Exposition`]), the exporter's own families
//! and [`RequestMetrics`] ([`requests`]). Each feature's families are declared and written by
//! its unit in [`crate::features`]; the [`crate::exposition`] writer puts them in name order.
//! Must not: do I/O, call Kraken, or keep balance series between scrapes (a series that vanished
//! upstream must vanish here).

pub mod requests;

use std::time::SystemTime;

use crate::exposition::{Exposition, Family, Kind, unix_seconds};
use crate::features::{balances, prices, stream, system};
use crate::process::ProcessStats;
use crate::valuation::PriceBook;
use kraken::SystemState;

pub use crate::exposition::CONTENT_TYPE;
pub use crate::status::AccountView;
pub use requests::RequestMetrics;

/// `kraken_exporter_build_info`.
const BUILD_INFO: Family = Family {
    name: "kraken_exporter_build_info",
    help: "Always 1; the labels name the exporter version and the git revision it was built from.",
    kind: Kind::Gauge,
};

/// `kraken_exporter_config_last_reload_successful`.
const RELOAD_SUCCESSFUL: Family = Family {
    name: "kraken_exporter_config_last_reload_successful",
    help: "1 if the latest configuration reload (SIGHUP or POST /-/reload) succeeded; 0 if the new configuration was refused and the previous one is still running.",
    kind: Kind::Gauge,
};

/// `kraken_exporter_config_last_reload_success_timestamp_seconds`.
const RELOAD_SUCCESS_TIMESTAMP: Family = Family {
    name: "kraken_exporter_config_last_reload_success_timestamp_seconds",
    help: "Unix time the running configuration was loaded (at start-up or by the latest successful reload).",
    kind: Kind::Gauge,
};

/// The `process_*` families, named and described as Prometheus' Go and Rust client libraries
/// export them, so the usual process dashboards and alerts work unchanged.
const PROCESS_CPU_SECONDS: Family = Family {
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    kind: Kind::Counter,
};
const PROCESS_MAX_FDS: Family = Family {
    name: "process_max_fds",
    help: "Maximum number of open file descriptors.",
    kind: Kind::Gauge,
};
const PROCESS_OPEN_FDS: Family = Family {
    name: "process_open_fds",
    help: "Number of open file descriptors.",
    kind: Kind::Gauge,
};
const PROCESS_RESIDENT_MEMORY: Family = Family {
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    kind: Kind::Gauge,
};
const PROCESS_START_TIME: Family = Family {
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
    kind: Kind::Gauge,
};
const PROCESS_THREADS: Family = Family {
    name: "process_threads",
    help: "Number of OS threads in the process.",
    kind: Kind::Gauge,
};
const PROCESS_VIRTUAL_MEMORY: Family = Family {
    name: "process_virtual_memory_bytes",
    help: "Virtual memory size in bytes.",
    kind: Kind::Gauge,
};

/// Version and revision, for `kraken_exporter_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    /// The crate version.
    pub version: &'static str,
    /// The git revision the binary was built from, or `unknown`.
    pub revision: &'static str,
}

impl BuildInfo {
    /// The build this binary was compiled from.
    pub fn current() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            revision: env!("KRAKEN_EXPORTER_REVISION"),
        }
    }
}

/// Outcome of the latest configuration reload.
#[derive(Debug, Clone, Copy)]
pub struct ReloadView {
    /// Whether it succeeded.
    pub ok: bool,
    /// When the configuration was last loaded successfully.
    pub last_success: SystemTime,
}

/// Renders the exposition: families built fresh from the account views, the request families
/// (only `only_account`'s series when set, for `/probe`), build info, prices, and the reload
/// status (`None` leaves it out, as `/probe` does), in name order.
pub fn render(
    accounts: &[AccountView<'_>],
    prices: Option<&PriceBook>,
    reload: Option<ReloadView>,
    only_account: Option<&str>,
    requests: &RequestMetrics,
    build: &BuildInfo,
) -> Vec<u8> {
    let capacity = 4096 + accounts.len() * 2048;
    let scrape = Scrape {
        accounts,
        prices,
        system: None,
        reload,
        only_account,
        process: None,
    };
    render_sized(&scrape, requests, build, capacity)
}

/// What one scrape shows besides the request counters.
#[derive(Debug)]
pub(crate) struct Scrape<'a> {
    /// The accounts, in the order configured.
    pub accounts: &'a [AccountView<'a>],
    /// Prices (`/metrics` only).
    pub prices: Option<&'a PriceBook>,
    /// Kraken's system status (`/metrics` only).
    pub system: Option<&'a SystemState>,
    /// The reload gauges (`/metrics` only).
    pub reload: Option<ReloadView>,
    /// Only this account's request series (`/probe`).
    pub only_account: Option<&'a str>,
    /// The exporter's own `process_*` families (`/metrics` only).
    pub process: Option<&'a ProcessStats>,
}

/// [`render`] into a buffer of `capacity` bytes, such as the previous exposition's size, so a
/// large exposition is written without growing (and copying) its buffer.
pub(crate) fn render_sized(
    scrape: &Scrape<'_>,
    requests: &RequestMetrics,
    build: &BuildInfo,
    capacity: usize,
) -> Vec<u8> {
    let mut out = Exposition::with_capacity(capacity);
    for view in scrape.accounts {
        balances::collect(view, &mut out);
        stream::collect_limits(view, &mut out);
        for feature in &view.status.features {
            feature.collect(&view.status.name, &mut out);
        }
    }
    if let Some(book) = scrape.prices {
        prices::collect(book, &mut out);
    }
    if let Some(state) = scrape.system {
        system::collect(state, &mut out);
    }
    requests::collect(requests, scrape.only_account, &mut out);
    out.family(&BUILD_INFO).sample(
        &[("version", build.version), ("revision", build.revision)],
        1.0,
    );
    if let Some(reload) = scrape.reload {
        out.family(&RELOAD_SUCCESS_TIMESTAMP)
            .sample(&[], unix_seconds(reload.last_success));
        out.family(&RELOAD_SUCCESSFUL).sample(&[], reload.ok);
    }
    if let Some(process) = scrape.process {
        collect_process(process, &mut out);
    }
    out.into_bytes()
}

/// The `process_*` families.
fn collect_process(process: &ProcessStats, out: &mut Exposition) {
    out.family(&PROCESS_CPU_SECONDS)
        .sample(&[], process.cpu_seconds);
    let gauges = [
        (&PROCESS_MAX_FDS, process.max_fds.map(|n| n as f64)),
        (&PROCESS_OPEN_FDS, Some(process.open_fds as f64)),
        (
            &PROCESS_RESIDENT_MEMORY,
            Some(process.resident_memory_bytes as f64),
        ),
        (&PROCESS_START_TIME, Some(process.start_time_seconds)),
        (&PROCESS_THREADS, Some(process.threads as f64)),
        (
            &PROCESS_VIRTUAL_MEMORY,
            Some(process.virtual_memory_bytes as f64),
        ),
    ];
    for (family, value) in gauges {
        if let Some(value) = value {
            out.family(family).sample(&[], value);
        }
    }
}
