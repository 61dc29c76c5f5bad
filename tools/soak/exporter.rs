//! One exporter process of the soak: its configuration file and nonce file, start, kill -9 and
//! restart, reloads (applied and broken), and its resident memory and open fds.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kraken::sim::SimKraken;
use tokio::process::{Child, Command};

use crate::Tally;

/// How far ahead of the clock the nonce file starts.
const NONCE_LEAD_MS: u64 = 3_600_000;
/// How long a start or restart may take to answer `/-/healthy`.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a SIGHUP reload may take to show.
const RELOAD_LIMIT: Duration = Duration::from_secs(15);

/// Which start of the exporter serves now; scrapes overlapping a restart are not counted.
pub(crate) struct Generation {
    /// Even while serving, odd while down.
    value: AtomicU64,
    address: String,
}

impl Generation {
    /// The current start, or `None` while the exporter is down.
    pub(crate) fn current(&self) -> Option<u64> {
        let value = self.value.load(Ordering::SeqCst);
        value.is_multiple_of(2).then_some(value)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn flip(&self) {
        self.value.fetch_add(1, Ordering::SeqCst);
    }
}

/// An exporter process with a one-account configuration file.
pub(crate) struct Exporter {
    dir: PathBuf,
    lifecycle: bool,
    credentials: (String, String),
    api_url: String,
    /// Toggled by reloads that rebuild the account.
    balance_ex: bool,
    child: Child,
    generation: Arc<Generation>,
    http: reqwest::Client,
}

impl Exporter {
    /// Writes the configuration and a nonce file an hour ahead of the clock, and starts the
    /// exporter against `api_url` (the proxy to `sim`); `lifecycle` enables `POST /-/reload`.
    pub(crate) async fn start(name: &str, sim: &SimKraken, api_url: &str, lifecycle: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("kraken-soak-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        std::fs::write(
            dir.join("alpha.nonce"),
            (now_ms + NONCE_LEAD_MS).to_string(),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let creds = sim.credentials();
        let credentials = (
            creds.key.expose().to_owned(),
            STANDARD.encode(creds.secret.expose()),
        );
        let generation = Arc::new(Generation {
            value: AtomicU64::new(1),
            address: format!("127.0.0.1:{port}"),
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let child = Command::new("true").spawn().unwrap();
        let mut exporter = Exporter {
            dir,
            lifecycle,
            credentials,
            api_url: api_url.to_owned(),
            balance_ex: false,
            child,
            generation,
            http,
        };
        exporter.write_config();
        exporter.spawn().await;
        exporter
    }

    pub(crate) fn address(&self) -> &str {
        &self.generation.address
    }

    pub(crate) fn generation(&self) -> Arc<Generation> {
        Arc::clone(&self.generation)
    }

    pub(crate) fn log_dir(&self) -> &Path {
        &self.dir
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.yml")
    }

    fn write_config(&self) {
        let endpoint = if self.balance_ex {
            "balance-ex"
        } else {
            "auto"
        };
        let config = format!(
            "kraken:\n  api_url: {}\n  timeout: 5s\nrefresh:\n  min_interval: 10s\naccounts:\n  - name: alpha\n    key_env: SOAK_KEY\n    secret_env: SOAK_SECRET\n    balance_endpoint: {endpoint}\n    nonce_file: {}\n",
            self.api_url,
            self.dir.join("alpha.nonce").display()
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// Starts the process and waits until it answers; counts as a new generation.
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("exporter.log"))
            .unwrap();
        let config = self.config_path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kraken_exporter"));
        command
            .args(["--config.file", config.to_str().unwrap()])
            .args(["--web.listen-address", &self.generation.address])
            .args(["--log.level", "warn"])
            .env_clear()
            .env("SOAK_KEY", &self.credentials.0)
            .env("SOAK_SECRET", &self.credentials.1)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if self.lifecycle {
            command.arg("--web.enable-lifecycle");
        }
        self.child = command.spawn().expect("the exporter starts");
        let started = Instant::now();
        while !self
            .http
            .get(self.generation.url("/-/healthy"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                started.elapsed() < START_LIMIT,
                "the exporter never answered"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.generation.flip();
    }

    /// Kills the process with SIGKILL (no chance to save anything) and starts it again.
    pub(crate) async fn kill_and_restart(&mut self) {
        self.generation.flip();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.spawn().await;
    }

    /// Stops the process; its clients no longer count.
    pub(crate) async fn stop(mut self) {
        self.generation.flip();
        let _ = self.child.kill().await;
    }

    /// Resident memory (KiB) and open file descriptors of the process.
    pub(crate) fn resources(&self) -> (u64, u64) {
        let pid = self.child.id().unwrap_or(0);
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
        (rss, fds)
    }

    /// `POST /-/reload`: the status, or 0 without an answer.
    async fn post_reload(&self) -> u16 {
        self.http
            .post(self.generation.url("/-/reload"))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// `/metrics` with a short scrape timeout, or an empty string without an answer.
    async fn metrics(&self) -> String {
        match self
            .http
            .get(self.generation.url("/metrics"))
            .header("X-Prometheus-Scrape-Timeout-Seconds", "2")
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// A configuration with a mistake: the reload must be refused and the old one keep running.
    pub(crate) async fn broken_reload(&self, tally: &Tally) {
        std::fs::write(
            self.config_path(),
            "accounts:\n  - name: alpha\n    bogus: 1\n",
        )
        .unwrap();
        let status = self.post_reload().await;
        let body = self.metrics().await;
        self.write_config();
        let kept = body.contains("kraken_exporter_config_last_reload_successful 0")
            && body.contains("kraken_up{account=\"alpha\"}");
        if status == 500 && kept {
            tally.bump(&tally.reloads_refused);
        } else {
            tally.bump(&tally.reload_failures);
            eprintln!("soak: broken reload answered {status}; old configuration kept: {kept}");
        }
    }

    /// Two reloads in a row that rebuild the account: the second while the first one's refresh
    /// is in flight.
    pub(crate) async fn rebuilding_reloads(&mut self, tally: &Tally) {
        for _ in 0..2 {
            self.balance_ex = !self.balance_ex;
            self.write_config();
            match self.post_reload().await {
                200 => tally.bump(&tally.reloads_ok),
                status => {
                    tally.bump(&tally.reload_failures);
                    eprintln!("soak: a valid reload answered {status}");
                }
            }
        }
    }

    /// A SIGHUP reload that rebuilds the account (sent while a call hangs); it must show in the
    /// reload timestamp.
    pub(crate) async fn sighup_reload(&mut self, tally: &Tally) {
        let stamp = |body: &str| {
            body.lines()
                .find_map(|l| {
                    l.strip_prefix("kraken_exporter_config_last_reload_success_timestamp_seconds ")
                })
                .map(str::to_owned)
        };
        let before = stamp(&self.metrics().await);
        self.balance_ex = !self.balance_ex;
        self.write_config();
        let pid = self.child.id().unwrap_or(0) as i32;
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let started = Instant::now();
        loop {
            let now = stamp(&self.metrics().await);
            if now.is_some() && now != before {
                return tally.bump(&tally.reloads_ok);
            }
            if started.elapsed() > RELOAD_LIMIT {
                tally.bump(&tally.reload_failures);
                return eprintln!("soak: SIGHUP reload not applied within {RELOAD_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
