//! The compiled binary, run the way an operator runs it: flags, `KRAKEN_*` environment
//! variables and credential files, exit codes, standard output and error, the HTTP front and
//! signals. Each child process gets an empty environment plus `PATH`, talks to a simulated Kraken
//! started in the test process, and is killed when its guard is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use kraken::Endpoint;
use kraken::secret::{ApiSecret, Credentials, SecretText};
use kraken::sim::{Fault, SimKraken, SimOptions};
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The exporter binary, built by Cargo for the integration tests.
const BIN: &str = env!("CARGO_BIN_EXE_kraken_exporter");

/// Longest a run that should end by itself may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Longest the exporter may take to start listening or to become ready.
const START_LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// The binary with `args`, an environment holding only `PATH` and `env`, and no standard input.
fn exporter_command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A run that ended by itself.
struct Finished {
    /// Exit status code; `None` when a signal ended the process.
    code: Option<i32>,
    /// Everything written to standard output.
    stdout: Vec<u8>,
    /// Everything written to standard error.
    stderr: Vec<u8>,
}

impl Finished {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Both streams, for failure messages.
    fn both(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.out(), self.err())
    }
}

/// Runs the binary until it exits (at most [`RUN_LIMIT`]).
async fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let child = exporter_command(args, env)
        .spawn()
        .expect("the binary starts");
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} did not exit within {RUN_LIMIT:?}"))
        .expect("waiting for the binary");
    Finished {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: output.stderr,
    }
}

/// Copies a child's output stream into `buffer`, line by line; sends the port of the
/// `listening` log line on `port` when it appears.
fn capture(
    stream: impl AsyncRead + Unpin + Send + 'static,
    buffer: Arc<Mutex<Vec<u8>>>,
    mut port: Option<oneshot::Sender<u16>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if let Some(found) = listening_port(&String::from_utf8_lossy(&line))
                && let Some(sender) = port.take()
            {
                let _ = sender.send(found);
            }
            buffer.lock().unwrap().extend_from_slice(&line);
        }
    })
}

/// The port in the start-up line `msg=listening address=127.0.0.1:PORT` (logfmt) or
/// `"msg":"listening","address":"127.0.0.1:PORT"` (JSON).
fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("listening") {
        return None;
    }
    let after_address = &line[line.find("address")?..];
    let after_host = &after_address[after_address.find("127.0.0.1:")? + "127.0.0.1:".len()..];
    let digits: String = after_host
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A serving exporter. Dropping it kills the process.
struct Serving {
    child: Child,
    /// Where it listens on 127.0.0.1.
    port: u16,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// One HTTP answer of the exporter.
struct Reply {
    status: u16,
    content_type: String,
    /// Every header as `name: value` lines.
    headers: String,
    body: String,
}

impl Reply {
    /// Headers and body, for the leak checks.
    fn evidence(&self) -> Vec<u8> {
        format!("{}\n{}", self.headers, self.body).into_bytes()
    }
}

/// Starts the binary on `127.0.0.1:0` and waits until it logs the port it listens on.
async fn spawn_serving(args: &[&str], env: &[(&str, &str)]) -> Serving {
    let mut argv = args.to_vec();
    argv.extend(["--web.listen-address", "127.0.0.1:0"]);
    let mut child = exporter_command(&argv, env)
        .spawn()
        .expect("the binary starts");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let (port_tx, port_rx) = oneshot::channel();
    let readers = vec![
        capture(child.stdout.take().unwrap(), Arc::clone(&stdout), None),
        capture(
            child.stderr.take().unwrap(),
            Arc::clone(&stderr),
            Some(port_tx),
        ),
    ];
    let mut serving = Serving {
        child,
        port: 0,
        stdout,
        stderr,
        readers,
    };
    match tokio::time::timeout(START_LIMIT, port_rx).await {
        Ok(Ok(port)) => serving.port = port,
        Ok(Err(_)) => {
            let (_, stderr) = serving.stop().await;
            panic!(
                "{argv:?} ended without listening:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        Err(_) => panic!(
            "{argv:?} did not log a listening address within {START_LIMIT:?}:\n{}",
            String::from_utf8_lossy(&serving.stderr.lock().unwrap())
        ),
    }
    serving
}

/// An HTTP client that never goes through a proxy and gives up after 30 s.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl Serving {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `method path` with `headers`.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = http().request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the exporter answers");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let content_type = header("content-type");
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        let body = response.text().await.expect("a complete body");
        Reply {
            status,
            content_type,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(reqwest::Method::GET, path, headers).await
    }

    /// Waits until `/-/ready` answers 200: the first refresh succeeded.
    async fn wait_ready(&self) {
        let ready = crate::poll_until(START_LIMIT, async || {
            self.get("/-/ready", &[]).await.status == 200
        })
        .await;
        assert!(
            ready,
            "the exporter never became ready within {START_LIMIT:?}:\n{}",
            String::from_utf8_lossy(&self.stderr.lock().unwrap())
        );
    }

    /// Waits until the landing page reports `text` (at most [`START_LIMIT`]) and returns it.
    async fn wait_landing_contains(&self, text: &str) -> Reply {
        let mut page = None;
        let shown = crate::poll_until(START_LIMIT, async || {
            let reply = self.get("/", &[]).await;
            let done = reply.body.contains(text);
            page = Some(reply);
            done
        })
        .await;
        let page = page.expect("the landing page was fetched");
        assert!(
            shown,
            "the landing page never showed {text:?} within {START_LIMIT:?}:\n{}",
            page.body
        );
        page
    }

    /// Waits for the process to exit by itself, at most `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|status| status.expect("waiting for the binary"))
    }

    /// Kills the process (if still running), waits for it and returns its stdout and stderr.
    async fn stop(&mut self) -> (Vec<u8>, Vec<u8>) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.await;
        }
        (
            self.stdout.lock().unwrap().clone(),
            self.stderr.lock().unwrap().clone(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials and files
// ---------------------------------------------------------------------------------------------

fn random_alnum(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Credentials that are easy to recognise in any output: a key starting with `CANARYKEY`, a
/// 64-byte secret starting with the bytes `CANARYSECRET`, and a 2FA password starting with
/// `CANARYOTP`. The rest is random, so no other test shares them.
struct Canary {
    key: String,
    secret: Vec<u8>,
    otp: String,
}

impl Canary {
    fn new() -> Canary {
        let mut secret = b"CANARYSECRET".to_vec();
        let mut rest = [0u8; 52];
        rand::thread_rng().fill_bytes(&mut rest);
        secret.extend_from_slice(&rest);
        Canary {
            key: format!("CANARYKEY{}", random_alnum(47)),
            secret,
            otp: format!("CANARYOTP{}", random_alnum(11)),
        }
    }

    /// The secret as Kraken shows it: 88 characters of base64.
    fn secret_base64(&self) -> String {
        STANDARD.encode(&self.secret)
    }

    /// The environment of an exporter using these credentials; `secret` is
    /// [`Canary::secret_base64`].
    fn env<'a>(&'a self, secret: &'a str) -> [(&'static str, &'a str); 3] {
        [
            ("KRAKEN_API_KEY", &self.key),
            ("KRAKEN_API_SECRET", secret),
            ("KRAKEN_API_OTP", &self.otp),
        ]
    }

    /// What the simulated Kraken accepts; `with_otp` makes the 2FA password mandatory.
    fn credentials(&self, with_otp: bool) -> Credentials {
        Credentials {
            key: SecretText::new(self.key.clone()),
            secret: ApiSecret::from_bytes(self.secret.clone()),
            otp: with_otp.then(|| SecretText::new(self.otp.clone())),
        }
    }

    /// Every string that would reveal a credential: each value whole, every 12-character
    /// window of the secret's base64 (standard and URL-safe), every 12-byte window of the raw
    /// secret, of its hex form and of its decimal `Debug` form, and the word "canary" itself.
    fn needles(&self) -> Vec<(String, Vec<u8>)> {
        let mut needles = vec![
            ("the word canary".to_owned(), b"canary".to_vec()),
            ("the API key".to_owned(), self.key.clone().into_bytes()),
            ("the 2FA password".to_owned(), self.otp.clone().into_bytes()),
            (
                "the secret as lossy UTF-8".to_owned(),
                String::from_utf8_lossy(&self.secret)
                    .into_owned()
                    .into_bytes(),
            ),
        ];
        let mut windows = |what: &str, text: &[u8], width: usize| {
            for (at, window) in text.windows(width).enumerate() {
                needles.push((format!("{what} at {at}"), window.to_vec()));
            }
        };
        windows("base64 secret", self.secret_base64().as_bytes(), 12);
        windows(
            "URL-safe base64 secret",
            URL_SAFE.encode(&self.secret).as_bytes(),
            12,
        );
        windows("raw secret", &self.secret, 12);
        let hex: String = self.secret.iter().map(|b| format!("{b:02x}")).collect();
        windows("hex secret", hex.as_bytes(), 24);
        windows("HEX secret", hex.to_uppercase().as_bytes(), 24);
        for (at, bytes) in self.secret.windows(6).enumerate() {
            let listed = format!("{bytes:?}");
            needles.push((
                format!("decimal secret bytes at {at}"),
                listed.trim_matches(['[', ']']).as_bytes().to_vec(),
            ));
        }
        needles
    }

    /// Fails when any piece of evidence contains a needle (compared case-insensitively for the
    /// word "canary", exactly otherwise). Each haystack is read once per needle length, its
    /// windows looked up in a set: the trace logs are large.
    fn assert_absent(&self, evidence: &[(String, Vec<u8>)]) {
        let needles = self.needles();
        let mut by_length: std::collections::BTreeMap<
            usize,
            std::collections::HashMap<&[u8], &str>,
        > = std::collections::BTreeMap::new();
        for (what, needle) in &needles {
            if needle.as_slice() != b"canary" && !needle.is_empty() {
                by_length
                    .entry(needle.len())
                    .or_default()
                    .insert(needle.as_slice(), what.as_str());
            }
        }
        for (label, haystack) in evidence {
            let lowered = haystack.to_ascii_lowercase();
            let mut found = contains(&lowered, b"canary").then_some("the word canary");
            for (length, set) in &by_length {
                found =
                    found.or_else(|| haystack.windows(*length).find_map(|w| set.get(w).copied()));
            }
            if let Some(what) = found {
                panic!(
                    "{what} leaked into {label}:\n{}",
                    String::from_utf8_lossy(haystack)
                );
            }
        }
    }
}

/// The leak detector finds each form a credential could take in output, and nothing else.
#[test]
fn the_leak_detector_finds_every_form_of_the_canary() {
    let canary = Canary::new();
    let base64 = canary.secret_base64();
    let hex: String = canary.secret.iter().map(|b| format!("{b:02X}")).collect();
    let forms: Vec<(&str, Vec<u8>)> = vec![
        ("the key", format!("api_key={}", canary.key).into_bytes()),
        (
            "the 2FA password",
            format!("otp={}&", canary.otp).into_bytes(),
        ),
        (
            "12 characters of base64",
            format!("x{}y", &base64[31..43]).into_bytes(),
        ),
        ("12 raw bytes", canary.secret[20..32].to_vec()),
        ("12 bytes in hex", hex.as_bytes()[10..34].to_vec()),
        (
            "bytes as a Debug list",
            format!("{:?}", &canary.secret[40..50]).into_bytes(),
        ),
        ("the word", b"message=\"Canary\"".to_vec()),
    ];
    for (what, bytes) in forms {
        let evidence = [(what.to_owned(), bytes)];
        let caught = std::panic::catch_unwind(|| canary.assert_absent(&evidence)).is_err();
        assert!(caught, "{what} went unnoticed");
    }
    canary.assert_absent(&[(
        "an ordinary exposition".into(),
        b"kraken_up{account=\"default\"} 1\nkraken_balance{asset=\"XBT\"} 1.5\n".to_vec(),
    )]);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// A directory under the system temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "kraken-exporter-it-{}-{}",
            std::process::id(),
            random_alnum(10)
        ));
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }

    /// Writes `name` with `contents` and the permission bits `mode`.
    fn file(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A simulated Kraken accepting `credentials`.
async fn sim_with(credentials: Credentials) -> SimKraken {
    SimKraken::start(SimOptions {
        credentials: Some(credentials),
        ..SimOptions::default()
    })
    .await
    .expect("the simulated Kraken starts")
}

// ---------------------------------------------------------------------------------------------
// Start-up refusals
// ---------------------------------------------------------------------------------------------

/// A configuration the exporter must refuse: what is wrong, extra flags, environment, and the
/// phrases the message must contain.
type Refusal<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);

/// Every refused configuration exits with 2 before binding its listen address, names the
/// variable, file or flag at fault with the fix, and shows no part of the secret.
#[tokio::test]
async fn bad_credentials_and_flags_exit_2_before_listening_and_name_the_fix() {
    let canary = Canary::new();
    let secret = canary.secret_base64();
    let key = canary.key.as_str();
    let dir = TempDir::new();
    let good_secret_file = dir.file("secret", format!("{secret}\n").as_bytes(), 0o600);
    let missing_file = dir.path("missing-secret");
    let missing = text(&missing_file);

    // Held for the whole test: an exporter that got as far as binding would fail with exit 1.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_address = held.local_addr().unwrap().to_string();
    let listen = ["--web.listen-address", held_address.as_str()];

    let control = run_to_end(&[&listen[..], &["--demo"]].concat(), &[]).await;
    assert_eq!(control.code, Some(1), "{}", control.both());
    assert!(
        control.err().contains("cannot listen on")
            && control.err().contains("--web.listen-address"),
        "{}",
        control.both()
    );

    let not_base64 = format!("{}$${}", &secret[..40], &secret[42..]);
    let short = STANDARD.encode(&canary.secret[..32]);
    let inner_space = format!("{} {}", &secret[..44], &secret[44..]);
    let wrapped = format!("{}\n{}", &secret[..76], &secret[76..]);
    let newline_after = format!("{secret}\n");
    let python = format!("b\"{secret}\"");
    let typographic = format!("\u{201c}{secret}\u{201d}");

    let from_variable = format!("file {missing} (from KRAKEN_API_SECRET_FILE): cannot be read");
    let from_flag = format!("file {missing} (from --kraken.api-secret-file): cannot be read");
    let with_secret = |value| vec![("KRAKEN_API_KEY", key), ("KRAKEN_API_SECRET", value)];
    let cases: Vec<Refusal> = vec![
        (
            "missing key",
            vec![],
            vec![("KRAKEN_API_SECRET", &secret)],
            vec![
                "no API key is set",
                "set KRAKEN_API_KEY or KRAKEN_API_KEY_FILE (or --kraken.api-key-file)",
                "'Funds: Query'",
                "or run with --demo",
            ],
        ),
        (
            "missing secret",
            vec![],
            vec![("KRAKEN_API_KEY", key)],
            vec![
                "no API private key is set",
                "set KRAKEN_API_SECRET or KRAKEN_API_SECRET_FILE (or --kraken.api-secret-file)",
            ],
        ),
        (
            "secret not base64",
            vec![],
            with_secret(&not_base64),
            vec![
                "environment variable KRAKEN_API_SECRET: is not valid base64",
                "copy the 'Private key' exactly as Kraken showed it",
            ],
        ),
        (
            "secret of 32 bytes",
            vec![],
            with_secret(&short),
            vec![
                "environment variable KRAKEN_API_SECRET: decodes to 32 bytes, but a Kraken private key decodes to 64",
                "not the API key",
            ],
        ),
        (
            "secret with a space inside",
            vec![],
            with_secret(&inner_space),
            vec![
                "environment variable KRAKEN_API_SECRET: contains whitespace inside",
                "copy the value again as one unbroken line",
            ],
        ),
        (
            "secret wrapped at 76 columns",
            vec![],
            with_secret(&wrapped),
            vec![
                "environment variable KRAKEN_API_SECRET: contains a line break inside",
                "copy it again as one unbroken line",
            ],
        ),
        (
            "secret with a newline after it",
            vec![],
            with_secret(&newline_after),
            vec![
                "environment variable KRAKEN_API_SECRET: starts or ends with a newline",
                "printf '%s' instead of echo",
            ],
        ),
        (
            "secret as a Python bytes literal",
            vec![],
            with_secret(&python),
            vec![
                "environment variable KRAKEN_API_SECRET: looks like a Python bytes literal",
                "remove the b and the quotes",
            ],
        ),
        (
            "secret in typographic quotes",
            vec![],
            with_secret(&typographic),
            vec![
                "environment variable KRAKEN_API_SECRET: is wrapped in quotes (straight or typographic)",
                "remove the quotes",
            ],
        ),
        (
            "secret as value and file",
            vec![],
            vec![
                ("KRAKEN_API_KEY", key),
                ("KRAKEN_API_SECRET", &secret),
                ("KRAKEN_API_SECRET_FILE", text(&good_secret_file)),
            ],
            vec![
                "both KRAKEN_API_SECRET and KRAKEN_API_SECRET_FILE are set: keep only one of them",
            ],
        ),
        (
            "unreadable KRAKEN_API_SECRET_FILE",
            vec![],
            vec![("KRAKEN_API_KEY", key), ("KRAKEN_API_SECRET_FILE", missing)],
            vec![
                &from_variable,
                "check the path and that the exporter's user may read it",
            ],
        ),
        (
            "unreadable --kraken.api-secret-file",
            vec!["--kraken.api-secret-file", missing],
            vec![("KRAKEN_API_KEY", key)],
            vec![&from_flag, "check the path"],
        ),
        (
            "API URL with a path",
            vec!["--kraken.api-url", "http://127.0.0.1:9/0/private"],
            with_secret(&secret),
            vec![
                "--kraken.api-url",
                "give the base URL only, like https://api.kraken.com",
            ],
        ),
        (
            "duration without a unit",
            vec!["--refresh.min-interval", "10"],
            with_secret(&secret),
            vec![
                "--refresh.min-interval",
                "without a unit",
                "like 500ms, 10s, 5m or 1h30m",
            ],
        ),
    ];

    let mut evidence = Vec::new();
    for (name, flags, env, phrases) in &cases {
        let args = [&listen[..], &flags[..]].concat();
        let started = Instant::now();
        let run = run_to_end(&args, env).await;
        let stderr = run.err();
        assert_eq!(run.code, Some(2), "{name}: {}", run.both());
        for phrase in phrases {
            assert!(
                stderr.contains(phrase),
                "{name}: expected {phrase:?} in:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("cannot listen") && !stderr.contains("listening"),
            "{name}: got as far as the listener:\n{stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{name}: took {:?} to refuse",
            started.elapsed()
        );
        evidence.push((format!("{name}: stdout"), run.stdout));
        evidence.push((format!("{name}: stderr"), run.stderr));
    }
    canary.assert_absent(&evidence);
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// `check`
// ---------------------------------------------------------------------------------------------

/// Credential files written by `echo` or an editor end with a newline; the exporter reads the
/// value without it, whether the file is named by a variable or a flag.
#[tokio::test]
async fn credential_files_with_a_trailing_newline_are_accepted() {
    let canary = Canary::new();
    let dir = TempDir::new();
    let key = dir.file("key", format!("{}\n", canary.key).as_bytes(), 0o600);
    let secret_lf = dir.file(
        "secret-lf",
        format!("{}\n", canary.secret_base64()).as_bytes(),
        0o600,
    );
    let secret_crlf = dir.file(
        "secret-crlf",
        format!("{}\r\n", canary.secret_base64()).as_bytes(),
        0o644,
    );
    let otp = dir.file("otp", format!("{}\n", canary.otp).as_bytes(), 0o600);

    // Named by variables.
    let sim = sim_with(canary.credentials(true)).await;
    let run = run_to_end(
        &["check", "--kraken.api-url", &sim.url()],
        &[
            ("KRAKEN_API_KEY_FILE", text(&key)),
            ("KRAKEN_API_SECRET_FILE", text(&secret_lf)),
            ("KRAKEN_API_OTP_FILE", text(&otp)),
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.both());
    assert!(run.out().contains("The key works"), "{}", run.both());
    assert!(sim.calls(Endpoint::BalanceEx) >= 1);
    assert!(!run.err().contains("chmod"), "{}", run.both());

    // Named by flags, with a CRLF ending and a file others may read.
    let sim = sim_with(canary.credentials(true)).await;
    let run = run_to_end(
        &[
            "check",
            "--kraken.api-url",
            &sim.url(),
            "--kraken.api-key-file",
            text(&key),
            "--kraken.api-secret-file",
            text(&secret_crlf),
            "--kraken.api-otp-file",
            text(&otp),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.both());
    assert!(run.out().contains("The key works"), "{}", run.both());
    assert!(
        run.err().contains(&format!(
            "is accessible to other users (group or other permission bits are set): run chmod 600 {}",
            text(&secret_crlf)
        )),
        "{}",
        run.both()
    );
    canary.assert_absent(&[
        ("check stdout".into(), run.stdout),
        ("check stderr".into(), run.stderr),
    ]);
}

/// `check` prints an aligned table of the balances the key sees and exits 0.
#[tokio::test]
async fn check_prints_the_balance_table_and_exits_0() {
    let canary = Canary::new();
    let sim = sim_with(canary.credentials(false)).await;
    let secret = canary.secret_base64();
    let run = run_to_end(
        &["check", "--kraken.api-url", &sim.url()],
        &[
            ("KRAKEN_API_KEY", &canary.key),
            ("KRAKEN_API_SECRET", &secret),
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.both());
    let out = run.out();
    assert!(
        out.contains("The key works: account \"default\", 8 assets from BalanceEx."),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let header_at = lines
        .iter()
        .position(|line| line.starts_with("ASSET"))
        .unwrap_or_else(|| panic!("no table header in:\n{out}"));
    let table: Vec<&str> = lines[header_at..]
        .iter()
        .take_while(|line| !line.is_empty() && !line.starts_with("Available for trading"))
        .copied()
        .collect();
    assert_eq!(
        table[0].split_whitespace().collect::<Vec<_>>(),
        [
            "ASSET",
            "CODE",
            "TOTAL",
            "HOLD",
            "AVAILABLE",
            "FOR",
            "TRADING",
            "(ASSET)"
        ],
        "{out}"
    );
    assert!(
        out.contains("Available for trading is per asset (kraken_balance_available)"),
        "{out}"
    );
    assert_eq!(table.len(), 1 + 8, "{out}");
    let row = |code: &str| {
        table
            .iter()
            .find(|line| line.split_whitespace().nth(1) == Some(code))
            .unwrap_or_else(|| panic!("no row for {code} in:\n{out}"))
    };
    let xbt = row("XXBT");
    assert_eq!(
        xbt.split_whitespace().collect::<Vec<_>>(),
        ["XBT", "XXBT", "1.2345678901", "0.1", "1.1345678901"],
        "{out}"
    );
    assert!(
        out.contains("Key permissions (GetApiKeyInfo): funds_query\n"),
        "check prints the key audit: {out}"
    );
    assert_eq!(
        row("ZEUR").split_whitespace().collect::<Vec<_>>(),
        ["EUR", "ZEUR", "0", "0", "0"],
        "{out}"
    );
    assert_eq!(
        row("ZUSD").split_whitespace().take(4).collect::<Vec<_>>(),
        ["USD", "ZUSD", "25000.1234", "1500"],
        "{out}"
    );
    // Text columns are left-aligned, numbers right-aligned: every line has the same width and
    // the code column starts at the same place.
    let code_at = table[0].find("CODE").unwrap();
    assert_eq!(xbt.find("XXBT"), Some(code_at), "{out}");
    assert!(
        table
            .iter()
            .all(|line| line.chars().count() == table[0].chars().count()),
        "{out}"
    );
    assert!(!out.contains("DEMO"), "{out}");

    let demo = run_to_end(&["check", "--demo"], &[]).await;
    assert_eq!(demo.code, Some(0), "{}", demo.both());
    assert!(
        demo.out()
            .contains("DEMO MODE: these balances come from a simulated Kraken"),
        "{}",
        demo.both()
    );
    assert!(demo.out().contains("ASSET"), "{}", demo.both());
}

/// `check` prints a WARNING with what to do for every key hygiene finding and still exits 0;
/// `check --strict` exits 1 for them, and 0 once the key's purpose allows what it holds and its
/// expiry, age and allowlist are fine.
#[tokio::test]
async fn check_strict_exits_1_for_a_key_hygiene_finding() {
    let canary = Canary::new();
    let sim = SimKraken::start(SimOptions {
        credentials: Some(canary.credentials(false)),
        permissions: vec!["query-funds".into(), "withdraw-funds".into()],
        ..SimOptions::default()
    })
    .await
    .expect("the simulated Kraken starts");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = 86_400;
    let key_info = |valid_for: u64, age: u64, allowlist: &[&str]| kraken::sim::SimKeyInfo {
        name: "treasury".into(),
        valid_until: now + valid_for + 3600,
        created: now - age,
        ip_allowlist: allowlist.iter().map(|a| (*a).to_owned()).collect(),
        last_used: None,
    };
    sim.set_key_info(key_info(9 * day, 200 * day, &[]));
    let secret = canary.secret_base64();
    let env = [
        ("KRAKEN_API_KEY", canary.key.as_str()),
        ("KRAKEN_API_SECRET", secret.as_str()),
    ];
    let url = sim.url();
    let lenient = run_to_end(&["check", "--kraken.api-url", &url], &env).await;
    assert_eq!(lenient.code, Some(0), "{}", lenient.both());
    let out = lenient.out();
    for warning in [
        "WARNING: the key has funds_withdraw, which allowed_permissions does not allow (it can move funds or trade). What to do: ",
        "WARNING: the key expires in 9 days (less than 14). What to do: ",
        "WARNING: the key is 200 days old, older than the rotation age of 90 days. What to do: ",
        "WARNING: the key has no IP allowlist: it works from any IP address. What to do: ",
    ] {
        assert!(out.contains(warning), "{warning:?} missing:\n{out}");
    }
    assert_eq!(out.matches("WARNING: ").count(), 4, "{out}");
    assert!(out.contains("funds_withdraw (NOT ALLOWED)"), "{out}");

    let strict = run_to_end(&["check", "--strict", "--kraken.api-url", &url], &env).await;
    assert_eq!(strict.code, Some(1), "{}", strict.both());
    assert!(
        strict
            .err()
            .contains("check --strict failed: 4 key hygiene finding(s)"),
        "{}",
        strict.both()
    );

    // A hot-wallet key withdraws on purpose; the rotation age is the operator's.
    sim.set_key_info(key_info(60 * day, 200 * day, &["192.0.2.7"]));
    let allowed = run_to_end(
        &[
            "--key.allowed-permissions",
            "funds_query,websocket,funds_withdraw",
            "--audit.rotation-days",
            "365",
            "check",
            "--strict",
            "--kraken.api-url",
            &url,
        ],
        &env,
    )
    .await;
    assert_eq!(allowed.code, Some(0), "{}", allowed.both());
    assert!(!allowed.out().contains("WARNING"), "{}", allowed.both());
    assert!(
        allowed
            .out()
            .contains("Key permissions (GetApiKeyInfo): funds_query, funds_withdraw\n"),
        "{}",
        allowed.both()
    );
}

/// A failing key makes `check` exit 1 with the reason and what to do, and print no table.
#[tokio::test]
async fn check_explains_a_wrong_secret_and_a_lockout_and_exits_1() {
    let canary = Canary::new();
    let sim = sim_with(canary.credentials(false)).await;
    let mut other = [0u8; 64];
    rand::thread_rng().fill_bytes(&mut other);
    let wrong_secret = STANDARD.encode(other);
    let run = run_to_end(
        &["check", "--kraken.api-url", &sim.url()],
        &[
            ("KRAKEN_API_KEY", &canary.key),
            ("KRAKEN_API_SECRET", &wrong_secret),
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.both());
    let err = run.err();
    assert!(
        err.contains("check failed for account \"default\""),
        "{err}"
    );
    assert!(err.contains("reason: invalid_signature"), "{err}");
    assert!(
        err.contains("what to do: the private key does not match the API key"),
        "{err}"
    );
    assert!(!run.out().contains("ASSET"), "{}", run.both());

    let sim = sim_with(canary.credentials(false)).await;
    for method in [Endpoint::BalanceEx, Endpoint::Balance] {
        sim.inject(
            method,
            Fault::KrakenError("EGeneral:Temporary lockout".into()),
            None,
        );
    }
    let secret = canary.secret_base64();
    let run = run_to_end(
        &["check", "--kraken.api-url", &sim.url()],
        &[
            ("KRAKEN_API_KEY", &canary.key),
            ("KRAKEN_API_SECRET", &secret),
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.both());
    let err = run.err();
    assert!(err.contains("reason: lockout"), "{err}");
    assert!(err.contains("wait about 15 minutes"), "{err}");
    assert!(!run.out().contains("ASSET"), "{}", run.both());
}

// ---------------------------------------------------------------------------------------------
// Credentials never leave the process
// ---------------------------------------------------------------------------------------------

const FORMATS: [&str; 2] = ["logfmt", "json"];

/// Faults injected on both balance endpoints, with the reason the landing page then shows.
fn faults() -> Vec<(Fault, &'static str)> {
    vec![
        (Fault::KrakenError("EAPI:Invalid key".into()), "invalid_key"),
        (
            Fault::KrakenError("EAPI:Invalid signature".into()),
            "invalid_signature",
        ),
        (
            Fault::Status(
                502,
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>".into(),
            ),
            "unavailable",
        ),
        (Fault::RawBody(b"not json".to_vec()), "decode"),
        (Fault::Hang, "timeout"),
        (Fault::Trickle, "timeout"),
        (
            Fault::Status(500, "Internal Server Error".into()),
            "unavailable",
        ),
        (
            Fault::Status(
                520,
                include_str!("../fixtures/kraken/cloudflare_520.html").into(),
            ),
            "unavailable",
        ),
        (
            Fault::RawBody(include_bytes!("../fixtures/kraken/truncated.json").to_vec()),
            "decode",
        ),
        (Fault::RawBody(vec![b'x'; 8 * 1024 * 1024]), "decode"),
        (
            Fault::KrakenError("EAPI:Rate limit exceeded".into()),
            "rate_limited",
        ),
        (
            Fault::KrakenError("EService:Throttled:4102444800".into()),
            "rate_limited",
        ),
        (
            Fault::KrakenError("EGeneral:Temporary lockout".into()),
            "lockout",
        ),
        (
            Fault::KrakenError("EAPI:Invalid nonce".into()),
            "invalid_nonce",
        ),
        (
            Fault::KrakenError("EGeneral:Permission denied".into()),
            "permission_denied",
        ),
    ]
}

/// A panic forced in a test build with the whole configuration in scope, and the config checker
/// on broken files holding the canary inline: neither prints a credential.
#[tokio::test]
async fn canary_credentials_never_appear_in_a_panic_or_the_config_checker() {
    let canary = Canary::new();
    let secret = canary.secret_base64();
    let env = canary.env(&secret);
    let mut evidence: Vec<(String, Vec<u8>)> = Vec::new();

    let mut panic_env = env.to_vec();
    panic_env.push(("KRAKEN_EXPORTER_TEST_PANIC", "1"));
    panic_env.push(("RUST_BACKTRACE", "1"));
    let run = run_to_end(&["--log.level", "trace"], &panic_env).await;
    assert_ne!(run.code, Some(0), "{}", run.both());
    assert!(
        run.err().contains("forced panic for testing"),
        "{}",
        run.both()
    );
    assert!(
        run.err().contains("<redacted>"),
        "credentials print as placeholders: {}",
        run.both()
    );
    evidence.push(("forced panic".into(), [run.stdout, run.stderr].concat()));

    let dir = std::env::temp_dir().join(format!("kraken-check-{}", random_alnum(12)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kraken.yml");
    let configs = [
        // Inline credentials in a file others can read: refused.
        (
            format!(
                "accounts:\n  - name: cold\n    key: {}\n    secret: \"{secret}\"\n    otp: {}\n",
                canary.key, canary.otp
            ),
            0o644,
        ),
        // A secret with a space inside, and a key in quotes.
        (
            format!(
                "accounts:\n  - name: cold\n    key: \"'{}'\"\n    secret: \"{} {}\"\n",
                canary.key,
                &secret[..40],
                &secret[40..]
            ),
            0o600,
        ),
        // Unknown field next to a canary value.
        (
            format!(
                "accounts:\n  - name: cold\n    key: {}\n    secret: \"{secret}\"\n    secret_fil: x\n",
                canary.key
            ),
            0o600,
        ),
        // Truncated secret.
        (
            format!(
                "accounts:\n  - name: cold\n    key: {}\n    secret: \"{}\"\n",
                canary.key,
                &secret[..60]
            ),
            0o600,
        ),
    ];
    for (yaml, mode) in configs {
        std::fs::write(&file, yaml).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let run = run_to_end(
            &[
                "--config.file",
                file.to_str().unwrap(),
                "--config.check",
                "--log.level",
                "trace",
            ],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(2), "{}", run.both());
        assert!(run.err().contains("accounts[0] (cold)"), "{}", run.both());
        evidence.push(("--config.check".into(), [run.stdout, run.stderr].concat()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    canary.assert_absent(&evidence);
}

/// Serving at trace level in both log formats, through a normal scrape, every page, and one
/// process per fault, nothing written or served contains any piece of the credentials.
#[tokio::test]
async fn canary_credentials_never_appear_while_serving() {
    let canary = Canary::new();
    let secret = canary.secret_base64();
    let env = canary.env(&secret);
    let mut evidence: Vec<(String, Vec<u8>)> = Vec::new();
    for format in FORMATS {
        // A healthy key: every page.
        let sim = sim_with(canary.credentials(true)).await;
        let url = sim.url();
        let args = at_trace(
            format,
            &[
                "--kraken.api-url",
                &url,
                "--kraken.timeout",
                "2s",
                "--web.enable-lifecycle",
            ],
        );
        let mut exporter = spawn_serving(&args, &env).await;
        exporter.wait_ready().await;
        let metrics = exporter.get("/metrics", &[]).await;
        assert_eq!(metrics.status, 200);
        assert!(
            metrics.body.contains("kraken_up{account=\"default\"} 1"),
            "the canary key must work, or the test proves nothing:\n{}",
            metrics.body
        );
        let pages = [
            ("GET /", exporter.get("/", &[]).await, 200),
            ("GET /-/ready", exporter.get("/-/ready", &[]).await, 200),
            ("GET /-/healthy", exporter.get("/-/healthy", &[]).await, 200),
            ("GET /nowhere", exporter.get("/nowhere", &[]).await, 404),
            (
                "GET /probe",
                exporter.get("/probe?account=default", &[]).await,
                200,
            ),
            (
                "POST /-/reload",
                exporter
                    .request(reqwest::Method::POST, "/-/reload", &[])
                    .await,
                200,
            ),
            (
                "POST /metrics",
                exporter
                    .request(reqwest::Method::POST, "/metrics", &[])
                    .await,
                405,
            ),
        ];
        evidence.push((format!("{format}: GET /metrics"), metrics.evidence()));
        for (name, reply, status) in pages {
            assert_eq!(reply.status, status, "{name}: {}", reply.body);
            evidence.push((format!("{format}: {name}"), reply.evidence()));
        }
        let (stdout, stderr) = exporter.stop().await;
        assert_log_format(format, &stderr);
        evidence.push((format!("{format}: stdout"), stdout));
        evidence.push((format!("{format}: stderr"), stderr));
    }
    // One process per format and fault (after a failure the exporter backs off for a while),
    // all at once: each waits for its own refresh to fail.
    let runs = FORMATS.iter().flat_map(|format| {
        let (canary, env) = (&canary, &env);
        faults()
            .into_iter()
            .map(move |(fault, reason)| fault_evidence(canary, env, format, fault, reason))
    });
    for found in futures_util::future::join_all(runs).await {
        evidence.extend(found);
    }
    canary.assert_absent(&evidence);
}

/// The evidence of one exporter process serving while Kraken answers every balance call with
/// `fault`: its pages and its output, checked for the failure's `reason`.
async fn fault_evidence(
    canary: &Canary,
    env: &[(&str, &str)],
    format: &str,
    fault: Fault,
    reason: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut evidence = Vec::new();
    let name = format!("{format}, {reason}");
    let sim = sim_with(canary.credentials(true)).await;
    for method in [Endpoint::BalanceEx, Endpoint::Balance] {
        sim.inject(method, fault.clone(), None);
    }
    let url = sim.url();
    let args = at_trace(
        format,
        &["--kraken.api-url", &url, "--kraken.timeout", "2s"],
    );
    let mut exporter = spawn_serving(&args, env).await;
    let first = exporter
        .get("/metrics", &[("X-Prometheus-Scrape-Timeout-Seconds", "1")])
        .await;
    assert_eq!(first.status, 200, "{name}: {}", first.body);
    let landing = exporter
        .wait_landing_contains(&format!("last error: {reason}"))
        .await;
    let after = exporter
        .get("/metrics", &[("X-Prometheus-Scrape-Timeout-Seconds", "1")])
        .await;
    assert!(
        after.body.contains("kraken_up{account=\"default\"} 0"),
        "{name}: {}",
        after.body
    );
    let ready = exporter.get("/-/ready", &[]).await;
    assert_eq!(ready.status, 503, "{name}: {}", ready.body);
    for (page, reply) in [
        ("first /metrics", first),
        ("/", landing),
        ("later /metrics", after),
        ("/-/ready", ready),
    ] {
        evidence.push((format!("{name}: {page}"), reply.evidence()));
    }
    let (stdout, stderr) = exporter.stop().await;
    let logged = String::from_utf8_lossy(&stderr);
    assert!(
        logged.contains("refreshing balances failed") && logged.contains(reason),
        "{name}: the failure was not logged:\n{logged}"
    );
    assert_log_format(format, &stderr);
    evidence.push((format!("{name}: stdout"), stdout));
    evidence.push((format!("{name}: stderr"), stderr));
    evidence
}

/// `--log.level trace --log.format <format>` followed by `rest`.
fn at_trace<'a>(format: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--log.level", "trace", "--log.format", format];
    args.extend_from_slice(rest);
    args
}

/// Every log line is in the chosen format, keyed like Prometheus' Go programs: a flat JSON
/// object with `ts`, `level` and `msg`, or logfmt starting with `ts=… level=… msg=`.
fn assert_log_format(format: &str, stderr: &[u8]) {
    let text = String::from_utf8_lossy(stderr);
    assert!(!text.trim().is_empty(), "nothing was logged");
    for line in text.lines() {
        match format {
            "json" => {
                let value = serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
                let object = value.as_object().expect("a JSON object");
                for key in ["ts", "level", "msg"] {
                    assert!(object.contains_key(key), "no {key}: {line}");
                }
                assert!(
                    object.values().all(|v| !v.is_object()),
                    "nested JSON: {line}"
                );
            }
            _ => {
                let keys: Vec<&str> = line
                    .split(' ')
                    .filter_map(|part| part.split_once('=').map(|(key, _)| key))
                    .take(3)
                    .collect();
                assert_eq!(keys, ["ts", "level", "msg"], "not a logfmt line: {line}");
            }
        }
    }
}

/// `check` at trace level, when it succeeds and in each way it fails, prints no piece of the
/// credentials.
#[tokio::test]
async fn canary_credentials_never_appear_in_check_output() {
    let canary = Canary::new();
    let secret = canary.secret_base64();
    let env = canary.env(&secret);
    // A port with nothing behind it: bound, read, released.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut evidence = Vec::new();
    for format in FORMATS {
        let healthy = sim_with(canary.credentials(true)).await;
        let refusing = sim_with(canary.credentials(true)).await;
        refusing.inject(
            Endpoint::BalanceEx,
            Fault::KrakenError("EAPI:Invalid signature".into()),
            None,
        );
        let stranger = SimKraken::start(SimOptions::default()).await.unwrap();
        let runs = [
            ("works", healthy.url(), Some(0), "The key works"),
            (
                "refused",
                refusing.url(),
                Some(1),
                "reason: invalid_signature",
            ),
            (
                "unknown key",
                stranger.url(),
                Some(1),
                "reason: invalid_key",
            ),
            (
                "unreachable",
                format!("http://127.0.0.1:{closed_port}"),
                Some(1),
                "reason: http",
            ),
        ];
        for (name, url, code, expected) in runs {
            let args = at_trace(format, &["check", "--kraken.api-url", &url]);
            let run = run_to_end(&args, &env).await;
            assert_eq!(run.code, code, "{format}, {name}: {}", run.both());
            assert!(
                run.both().contains(expected),
                "{format}, {name}: expected {expected:?} in {}",
                run.both()
            );
            evidence.push((format!("{format}, {name}: stdout"), run.stdout));
            evidence.push((format!("{format}, {name}: stderr"), run.stderr));
        }
    }
    canary.assert_absent(&evidence);
}

/// Mistyped credentials built from the canary are refused at start-up without quoting them.
#[tokio::test]
async fn canary_credentials_never_appear_in_start_up_errors() {
    let canary = Canary::new();
    let secret = canary.secret_base64();
    let dir = TempDir::new();
    let spaced_file = dir.file(
        "spaced",
        format!("{} {}\n", &secret[..30], &secret[30..]).as_bytes(),
        0o600,
    );
    let raw_file = dir.file("raw", &canary.secret, 0o600);
    let key = canary.key.as_str();
    let otp = canary.otp.as_str();

    let mistyped_secrets = [
        (
            "a space inside",
            format!("{} {}", &secret[..20], &secret[20..]),
        ),
        ("straight double quotes", format!("\"{secret}\"")),
        ("straight single quotes", format!("'{secret}'")),
        ("typographic quotes", format!("\u{201c}{secret}\u{201d}")),
        ("a Python bytes literal", format!("b\"{secret}\"")),
        ("a single-quoted bytes literal", format!("b'{secret}'")),
        ("cut to 80 characters", secret[..80].to_owned()),
        ("missing its padding", secret[..86].to_owned()),
        ("a leading space", format!(" {secret}")),
        ("a trailing space", format!("{secret} ")),
        (
            "a line break",
            format!("{}\n{}", &secret[..76], &secret[76..]),
        ),
        ("a trailing tab", format!("{secret}\t")),
    ];
    let spaced_key = format!("{} {}", &key[..20], &key[20..]);
    let quoted_key = format!("\"{key}\"");
    let quoted_otp = format!("\u{2018}{otp}\u{2019}");
    let spaced_otp = format!("{otp} ");
    let env = |key, secret, otp| {
        vec![
            ("KRAKEN_API_KEY", key),
            ("KRAKEN_API_SECRET", secret),
            ("KRAKEN_API_OTP", otp),
        ]
    };
    let secret_file = |path| vec![("KRAKEN_API_KEY", key), ("KRAKEN_API_SECRET_FILE", path)];

    let mut runs: Vec<(String, Vec<(&str, &str)>)> = mistyped_secrets
        .iter()
        .map(|(what, bad)| (format!("secret with {what}"), env(key, bad, otp)))
        .collect();
    runs.extend([
        ("key with a space".into(), env(&spaced_key, &secret, otp)),
        ("key in quotes".into(), env(&quoted_key, &secret, otp)),
        (
            "2FA password in quotes".into(),
            env(key, &secret, &quoted_otp),
        ),
        (
            "2FA password with a trailing space".into(),
            env(key, &secret, &spaced_otp),
        ),
        (
            "secret file with a space".into(),
            secret_file(text(&spaced_file)),
        ),
        (
            "secret file holding the decoded bytes".into(),
            secret_file(text(&raw_file)),
        ),
    ]);

    let mut evidence = Vec::new();
    for format in FORMATS {
        for (name, env) in &runs {
            let run = run_to_end(&at_trace(format, &[]), env).await;
            assert_eq!(run.code, Some(2), "{format}, {name}: {}", run.both());
            assert!(
                run.err().contains("KRAKEN_API_"),
                "{format}, {name}: the message does not name the variable: {}",
                run.both()
            );
            evidence.push((format!("{format}, {name}: stdout"), run.stdout));
            evidence.push((format!("{format}, {name}: stderr"), run.stderr));
        }
    }
    canary.assert_absent(&evidence);
}

// ---------------------------------------------------------------------------------------------
// Signals, exposition and landing page
// ---------------------------------------------------------------------------------------------

/// SIGTERM stops the exporter cleanly: exit 0, the shutdown logged, the port closed.
#[tokio::test]
async fn sigterm_shuts_down_cleanly() {
    let mut exporter = spawn_serving(&["--demo"], &[]).await;
    exporter.wait_ready().await;
    let pid = exporter.child.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = exporter
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the exporter exits within 15 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let (_, stderr) = exporter.stop().await;
    let logged = String::from_utf8_lossy(&stderr);
    assert!(logged.contains("shutdown signal received"), "{logged}");
    assert!(
        logged.contains("shutting down: finishing requests in progress"),
        "{logged}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", exporter.port)).is_err(),
        "the port still accepts connections"
    );
}

/// SIGHUP re-reads the config file: a broken file is refused and the running accounts stay; a
/// valid one is taken.
#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let dir = std::env::temp_dir().join(format!("kraken-reload-{}", random_alnum(12)));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kraken.yml");
    std::fs::write(&file, "accounts:\n  - name: cold\n").unwrap();
    let path = file.to_str().unwrap().to_owned();
    let mut exporter = spawn_serving(&["--demo", "--config.file", &path], &[]).await;
    exporter.wait_ready().await;
    let pid = exporter.child.id().expect("still running").to_string();
    let hup = || {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    };
    let metrics_until = |wanted: &'static str| {
        let exporter = &exporter;
        async move {
            let limit = Duration::from_secs(10);
            let mut body = String::new();
            let appeared = crate::poll_until(limit, async || {
                body = exporter.get("/metrics", &[]).await.body;
                body.contains(wanted)
            })
            .await;
            assert!(
                appeared,
                "{wanted:?} never appeared within {limit:?}:\n{body}"
            );
            body
        }
    };
    std::fs::write(&file, "accounts:\n  - name: cold\n    bogus: 1\n").unwrap();
    hup();
    let body = metrics_until("kraken_exporter_config_last_reload_successful 0").await;
    assert!(body.contains("kraken_up{account=\"cold\"} 1"), "{body}");
    std::fs::write(
        &file,
        "accounts:\n  - name: cold\n  - name: hot\n    min_balance: {XBT: 2}\n",
    )
    .unwrap();
    hup();
    let body = metrics_until("kraken_balance_min{account=\"hot\",asset=\"XBT\"} 2").await;
    assert!(
        body.contains("kraken_exporter_config_last_reload_successful 1"),
        "{body}"
    );
    assert!(
        exporter.child.id().is_some(),
        "SIGHUP must not end the process"
    );
    let (_, stderr) = exporter.stop().await;
    let logged = String::from_utf8_lossy(&stderr);
    assert!(logged.contains("SIGHUP received"), "{logged}");
    assert!(logged.contains("configuration reload refused"), "{logged}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `promtool check metrics` accepts the exposition, with balances (demo) and without them
/// (every balance call failing). Ignored where promtool is missing, except in CI.
#[tokio::test]
#[cfg_attr(
    missing_promtool,
    ignore = "needs promtool (apt-get install prometheus)"
)]
async fn promtool_accepts_the_exposition() {
    let promtool = crate::rules::require_tool(&["promtool"], "prometheus");
    let demo = spawn_serving(&["--demo"], &[]).await;
    demo.wait_ready().await;
    let with_balances = demo.get("/metrics", &[]).await;
    assert!(
        with_balances.body.contains("kraken_balance{"),
        "{}",
        with_balances.body
    );

    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    for method in [Endpoint::BalanceEx, Endpoint::Balance] {
        sim.inject(method, Fault::Status(503, "unavailable".into()), None);
    }
    let credentials = sim.credentials();
    let secret = STANDARD.encode(credentials.secret.expose());
    let url = sim.url();
    let failing = spawn_serving(
        &["--kraken.api-url", &url],
        &[
            ("KRAKEN_API_KEY", credentials.key.expose()),
            ("KRAKEN_API_SECRET", &secret),
        ],
    )
    .await;
    failing
        .wait_landing_contains("last error: unavailable")
        .await;
    let without_balances = failing.get("/metrics", &[]).await;
    assert!(
        without_balances
            .body
            .contains("kraken_up{account=\"default\"} 0")
            && !without_balances.body.contains("kraken_balance{"),
        "{}",
        without_balances.body
    );

    let dir = TempDir::new();
    for (name, exposition) in [("demo", with_balances), ("failing", without_balances)] {
        let file = dir.file(name, exposition.body.as_bytes(), 0o600);
        let output = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .expect("promtool runs");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && said.trim().is_empty(),
            "promtool check metrics on the {name} exposition: {:?}\n{said}\n{}",
            output.status,
            exposition.body
        );
    }
}

/// `/metrics` carries the text format's content type; the landing page shows the version and,
/// in demo mode, says the balances are not real.
#[tokio::test]
async fn metrics_content_type_and_demo_landing_page() {
    let exporter = spawn_serving(&["--demo"], &[]).await;
    exporter.wait_ready().await;
    let metrics = exporter.get("/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        metrics.body.contains(&format!(
            "kraken_exporter_build_info{{version=\"{}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        metrics.body
    );
    let landing = exporter.get("/", &[]).await;
    assert_eq!(landing.status, 200);
    assert_eq!(landing.content_type, "text/html; charset=utf-8");
    assert!(
        landing
            .body
            .contains(&format!("Version {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        landing.body
    );
    assert!(landing.body.contains("Demo mode"), "{}", landing.body);
    assert!(
        landing.body.contains("href=\"/metrics\""),
        "{}",
        landing.body
    );
}

/// `--version` names the revision, build date, compiler and target, like Prometheus' own
/// programs; `-V` stays one short line.
#[tokio::test]
async fn version_names_revision_build_date_compiler_and_target() {
    let long = run_to_end(&["--version"], &[]).await;
    assert_eq!(long.code, Some(0), "{}", long.both());
    let out = long.out();
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "kraken_exporter {} (revision: ",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
    for wanted in ["\n  build date: 20", "\n  rustc: rustc 1.", "\n  target: "] {
        assert!(out.contains(wanted), "{wanted:?} missing:\n{out}");
    }
    let short = run_to_end(&["-V"], &[]).await;
    assert_eq!(
        short.out().trim(),
        format!("kraken_exporter {}", env!("CARGO_PKG_VERSION"))
    );
}

// ---------------------------------------------------------------------------------------------
// Thresholds
// ---------------------------------------------------------------------------------------------

/// A name that is no Kraken asset is logged once, however often it is scraped; `check` lists it
/// and exits 1; `--config.check` prints the thresholds as normalised, offline.
#[tokio::test]
async fn an_unknown_asset_name_is_logged_once_and_fails_check() {
    let args = [
        "--demo",
        "--balance.min",
        "ETHH=1",
        "--balance.min",
        "btc=0.5",
    ];
    let mut exporter = spawn_serving(&args, &[]).await;
    exporter.wait_ready().await;
    for _ in 0..3 {
        let metrics = exporter.get("/metrics", &[]).await;
        assert!(
            metrics
                .body
                .contains("kraken_config_unknown_asset{account=\"default\",asset=\"ETHH\"} 1"),
            "{}",
            metrics.body
        );
        exporter.get("/", &[]).await;
    }
    let (_, stderr) = exporter.stop().await;
    let stderr = String::from_utf8_lossy(&stderr);
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("is not a Kraken asset"))
        .collect();
    assert_eq!(logged.len(), 1, "{stderr}");
    assert!(
        logged[0].contains("level=error") && logged[0].contains("did you mean ETH?"),
        "{stderr}"
    );

    let check = run_to_end(&[&["check"], &args[..]].concat(), &[]).await;
    assert_eq!(check.code, Some(1), "{}", check.both());
    assert!(
        check.err().contains(
            "check failed for account \"default\": \"ETHH\" in min_balance or watch is not a Kraken asset (did you mean ETH?)"
        ),
        "{}",
        check.both()
    );
    let xbt = check
        .out()
        .lines()
        .find(|line| line.starts_with("XBT: available "))
        .map(str::to_owned);
    assert!(
        xbt.as_deref()
            .is_some_and(|line| line.ends_with("against a minimum of 0.5: ok")),
        "the known threshold is still compared, with the auto-earn funds: {}",
        check.both()
    );

    let config_check = run_to_end(&[&["--config.check"], &args[..]].concat(), &[]).await;
    assert_eq!(config_check.code, Some(0), "{}", config_check.both());
    assert!(
        config_check
            .out()
            .contains("  default: min_balance ETHH=1, XBT=0.5; key may hold funds_query, ledger_query, websocket\n"),
        "{}",
        config_check.both()
    );
}

/// Thresholds from the environment of a container, and bad ones refused with exit 2.
#[tokio::test]
async fn thresholds_from_the_environment_and_bad_ones_exit_2() {
    let env = [
        ("KRAKEN_BALANCE_MIN", "XBT=0.5,USD=1000"),
        ("KRAKEN_BALANCE_WATCH", "ETH"),
    ];
    let checked = run_to_end(&["--demo", "--config.check"], &env).await;
    assert_eq!(checked.code, Some(0), "{}", checked.both());
    assert!(
        checked
            .out()
            .contains("  default: min_balance USD=1000, XBT=0.5; watch ETH; key may hold funds_query, ledger_query, websocket\n"),
        "{}",
        checked.both()
    );
    for (args, env, expected) in [
        (
            vec!["--demo", "--balance.min", "XBT"],
            vec![],
            "--balance.min \"XBT\": \"XBT\" has no '='",
        ),
        (
            vec!["--demo"],
            vec![("KRAKEN_BALANCE_MIN", "XBT=-1")],
            "KRAKEN_BALANCE_MIN \"XBT=-1\": the minimum of XBT is \"-1\", not a balance",
        ),
        (
            vec![
                "--demo",
                "--balance.min",
                "BTC=1",
                "--balance.min",
                "XXBT=2",
            ],
            vec![],
            "\"BTC\" and \"XXBT\" both name XBT, with different minimums (1 and 2)",
        ),
    ] {
        let run = run_to_end(&args, &env).await;
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.both());
        assert!(run.err().contains(expected), "{args:?}: {}", run.both());
    }
}
