//! Records what `--version` and `kraken_exporter_build_info` report: the git revision, the build
//! date, the compiler and the target; and which external tools the tests can use.
//!
//! Tests that run `promtool`, `amtool`, `prometheus`, `alertmanager` or `chromium` are marked
//! `#[cfg_attr(missing_<tool>, ignore = "...")]`: when a tool is not on `PATH` at build time
//! they show as *ignored* in the test summary instead of passing silently. With `CI=true` no
//! tool is ever reported missing, so CI runs those tests and they fail naming the package to
//! install when the tool is absent.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Each tool a test needs, with the executable names it goes by (Debian calls Alertmanager
/// `prometheus-alertmanager`).
const TOOLS: [(&str, &[&str]); 5] = [
    ("promtool", &["promtool"]),
    ("amtool", &["amtool"]),
    ("prometheus", &["prometheus"]),
    ("alertmanager", &["alertmanager", "prometheus-alertmanager"]),
    ("chromium", &["chromium", "chromium-browser"]),
];

fn main() {
    detect_tools();
    let revision = std::env::var("KRAKEN_EXPORTER_REVISION")
        .ok()
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| String::from_utf8(out.stdout).ok())
                .map(|s| s.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KRAKEN_EXPORTER_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=KRAKEN_EXPORTER_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");

    // SOURCE_DATE_EPOCH (reproducible builds) wins over the clock.
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!(
        "cargo:rustc-env=KRAKEN_EXPORTER_BUILD_DATE={}",
        rfc3339(epoch)
    );
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=KRAKEN_EXPORTER_RUSTC={rustc_version}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=KRAKEN_EXPORTER_TARGET={target}");
}

/// Sets `missing_<tool>` for every tool absent from `PATH`, unless `CI=true`.
fn detect_tools() {
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=CI");
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = std::env::split_paths(&path).collect();
    for (tool, names) in TOOLS {
        println!("cargo::rustc-check-cfg=cfg(missing_{tool})");
        let found = dirs
            .iter()
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .any(|candidate| is_executable(&candidate));
        if !found && !in_ci {
            println!("cargo:rustc-cfg=missing_{tool}");
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch (proleptic Gregorian, UTC).
fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let seconds = epoch % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60
    )
}
