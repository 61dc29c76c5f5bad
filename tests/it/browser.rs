//! The status page as an operator sees it: the exporter serves a key that holds a permission it
//! is not allowed, expires soon, is old and works from any IP address; a real headless browser
//! (Debian's `chromium`) loads `/`, and the test reads the page the browser rendered (its DOM
//! after parsing, reduced to the text on screen, and a screenshot), not the HTML the exporter
//! sent.
//!
//! Ignored where chromium is missing (the summary says why), except with `CI=true`, where it
//! runs and fails naming the package to install.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kraken::sim::{SimKeyInfo, SimKraken, SimOptions};

use crate::rules::require_tool;
use crate::{Clock, Harness, wait_until};

/// Longest the browser may take to load and render the page.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

/// The DOM chromium rendered for `url`, and the screenshot it took, in `dir`.
async fn render(url: &str, dir: &Path) -> (String, Vec<u8>) {
    let chromium = require_tool(&["chromium", "chromium-browser"], "chromium");
    let screenshot = dir.join("status-page.png");
    let output = tokio::time::timeout(
        BROWSER_LIMIT,
        tokio::process::Command::new(&chromium)
            .args([
                "--headless",
                // CI runs as root, where chromium refuses its sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,2000",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--screenshot={}", screenshot.display()))
            .arg("--dump-dom")
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("chromium did not render {url} within {BROWSER_LIMIT:?}"))
    .expect("chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("</html>"),
        "chromium failed ({}):\n{dom}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    (dom, png)
}

/// The text a reader sees in a DOM: the body without its tags, entities decoded, whitespace
/// collapsed, and block elements on lines of their own.
fn visible_text(dom: &str) -> String {
    let body = dom.split_once("<body").map_or(dom, |(_, body)| body);
    let mut text = String::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let close = rest[open..].find('>').map_or(rest.len(), |c| open + c + 1);
        let tag = &rest[open..close];
        let block = ["<h", "</h", "<p", "<li", "<tr", "<table", "<ul"]
            .iter()
            .any(|t| tag.starts_with(t));
        text.push_str(if block {
            "\n"
        } else if tag.starts_with("<td") || tag.starts_with("<th") {
            " | "
        } else {
            ""
        });
        rest = &rest[close..];
    }
    text.push_str(rest);
    let decoded = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    decoded
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A scratch directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
#[cfg_attr(
    missing_chromium,
    ignore = "needs chromium (apt-get install -y chromium); CI installs it and runs this test"
)]
async fn the_status_page_shows_the_key_its_unexpected_permission_and_what_to_do_in_a_browser() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = 86_400;
    let sim = SimKraken::start(SimOptions {
        permissions: vec!["query-funds".into(), "withdraw-funds".into()],
        ..SimOptions::default()
    })
    .await
    .unwrap();
    sim.set_key_info(SimKeyInfo {
        name: "treasury-monitor".into(),
        valid_until: now + 5 * day + 3600,
        created: now - 200 * day,
        ip_allowlist: vec![],
        last_used: None,
    });
    let harness = Harness::serve(Clock::Real, sim, &["--balance.min", "XBT=0.5"]).await;
    harness.wait_ready().await;
    wait_until(
        "the key audit on the status page",
        Duration::from_secs(20),
        async || harness.get("/", &[]).await.2.contains("treasury-monitor"),
    )
    .await;

    let dir = TempDir(std::env::temp_dir().join(format!(
        "kraken-exporter-browser-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (dom, png) = render(&harness.url("/"), &dir.0).await;
    harness.stop().await;
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "the screenshot is not a rendered page ({} bytes)",
        png.len()
    );
    let text = visible_text(&dom);

    // Headings: the account, its key, the findings, and one above every table.
    for heading in [
        "Account default",
        "API key",
        "Key findings and what to do",
        "Available for trading against minimums",
        "Balances by Kraken code",
    ] {
        assert!(
            text.lines().any(|line| line == heading),
            "no heading {heading:?} on the rendered page:\n{text}"
        );
    }
    let tables = dom.matches("<table").count();
    let headed = dom
        .split("<table")
        .skip(1)
        .zip(dom.split("<table"))
        .filter(|(_, before)| before.trim_end().ends_with("</h3>"))
        .count();
    assert!(tables >= 3, "{dom}");
    assert_eq!(
        headed, tables,
        "a table without a heading right above it:\n{dom}"
    );

    // The key, with the permission it may not hold highlighted.
    for row in [
        "Name | treasury-monitor",
        "Permissions | funds_query, funds_withdraw (not allowed)",
        "May hold (allowed_permissions) | funds_query, websocket",
        "Expires | in 5 days",
        "Age | 200 days",
        "IP allowlist | none: usable from any IP address",
    ] {
        assert!(
            text.contains(row),
            "no {row:?} on the rendered page:\n{text}"
        );
    }
    assert!(
        dom.contains("<mark class=\"unexpected\">funds_withdraw (not allowed)</mark>"),
        "the unexpected permission is not highlighted:\n{dom}"
    );
    assert!(
        text.contains("key: 4 finding(s), see below"),
        "the status line does not point at the findings:\n{text}"
    );

    // One line of advice per finding.
    for advice in [
        "The key has funds_withdraw, which allowed_permissions does not allow (it can move funds or trade). What to do: create a key without funds_withdraw and replace this one, or add funds_withdraw to allowed_permissions",
        "The key expires in 5 days (less than 14). What to do: create a new key",
        "The key is 200 days old, older than the rotation age of 90 days. What to do: create a new key",
        "The key has no IP allowlist: it works from any IP address. What to do: restrict the key",
    ] {
        assert!(
            text.lines().any(|line| line.starts_with(advice)),
            "no advice {advice:?} on the rendered page:\n{text}"
        );
    }
}
