//! Records the git revision for `kraken_exporter_build_info`, and which external tools the
//! tests can use.
//!
//! Tests that run `promtool`, `amtool`, `prometheus` or `alertmanager` are marked
//! `#[cfg_attr(missing_<tool>, ignore = "...")]`: when a tool is not on `PATH` at build time
//! they show as *ignored* in the test summary instead of passing silently. With `CI=true` no
//! tool is ever reported missing, so CI runs those tests and they fail naming the package to
//! install when the tool is absent.

use std::path::Path;
use std::process::Command;

/// Each tool a test needs, with the executable names it goes by (Debian calls Alertmanager
/// `prometheus-alertmanager`).
const TOOLS: [(&str, &[&str]); 4] = [
    ("promtool", &["promtool"]),
    ("amtool", &["amtool"]),
    ("prometheus", &["prometheus"]),
    ("alertmanager", &["alertmanager", "prometheus-alertmanager"]),
];

fn main() {
    record_revision();
    detect_tools();
}

fn record_revision() {
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
