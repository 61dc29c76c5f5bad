//! `--web.config.file`: HTTPS with certificates made by the test (a CA, a server certificate for
//! 127.0.0.1 and localhost, client certificates from that CA and from another one), client
//! certificate policies, TLS versions, basic auth on every path, extra headers, refusals of
//! invalid files by the binary, and the limits that keep idle or slow clients from starving a
//! scrape. Everything listens on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use kraken::Endpoint;
use kraken::sim::{Fault, SimKraken, SimOptions};
use kraken_exporter::app::{App, SharedEnv};
use kraken_exporter::cli::Cli;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Served, client};

/// The exporter binary, built by Cargo for the integration tests.
const BIN: &str = env!("CARGO_BIN_EXE_kraken_exporter");

/// The server's header read timeout and TLS handshake timeout.
const SERVER_TIMEOUT: Duration = Duration::from_secs(10);

/// A directory of certificates and keys made for one test, removed on drop.
struct Pki {
    dir: PathBuf,
    /// The CA that signs the server and the trusted client certificates.
    ca_pem: String,
    /// Client certificate and key (PEM, concatenated) signed by the CA, SAN `scraper.example`.
    client_pem: String,
    /// Another client signed by the CA, SAN `intruder.example`.
    other_name_pem: String,
    /// A client signed by a CA the server does not know.
    foreign_pem: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed CA.
fn make_ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).unwrap().pem();
    (Issuer::new(params, key), pem)
}

/// A leaf certificate for `names`, signed by `issuer`: (certificate PEM, key PEM).
fn make_leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    (
        params.signed_by(&key, issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

impl Pki {
    /// Makes the CAs and certificates, and writes `ca.pem`, `server.pem`, `server.key`,
    /// `client.pem` and `client.key` into a fresh directory.
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "kraken-web-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, ca_pem) = make_ca("kraken exporter test CA");
        let (foreign_ca, _) = make_ca("some other CA");
        let (server_cert, server_key) = make_leaf(
            &ca,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = make_leaf(
            &ca,
            &["scraper.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (other_cert, other_key) = make_leaf(
            &ca,
            &["intruder.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (foreign_cert, foreign_key) = make_leaf(
            &foreign_ca,
            &["scraper.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        for (name, contents) in [
            ("ca.pem", &ca_pem),
            ("server.pem", &server_cert),
            ("server.key", &server_key),
            ("client.pem", &client_cert),
            ("client.key", &client_key),
        ] {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        Pki {
            dir,
            ca_pem,
            client_pem: format!("{client_cert}{client_key}"),
            other_name_pem: format!("{other_cert}{other_key}"),
            foreign_pem: format!("{foreign_cert}{foreign_key}"),
        }
    }

    /// Writes a web configuration file into the directory (paths in it may be relative).
    fn web_config(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// An HTTPS client trusting the test CA, presenting `identity` (PEM certificate and key)
    /// and speaking at most TLS 1.2 when `tls12_only`.
    fn client(&self, identity: Option<&str>, tls12_only: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(20));
        if let Some(pem) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        if tls12_only {
            builder = builder.max_tls_version(reqwest::tls::Version::TLS_1_2);
        }
        builder.build().unwrap()
    }
}

/// No environment: demo mode needs no credentials.
fn no_env() -> SharedEnv {
    Arc::new(|_: &str| None)
}

/// Starts the exporter in demo mode with the web configuration file `path`.
async fn serve_with(path: &Path) -> Served {
    Served::start(
        &["--demo", "--web.config.file", path.to_str().unwrap()],
        no_env(),
    )
    .await
}

fn https(served: &Served, path: &str) -> String {
    format!("https://localhost:{}{path}", served.addr.port())
}

/// The status of a GET, or the error's full chain when the request failed.
async fn status(client: &reqwest::Client, url: &str) -> Result<u16, String> {
    match client.get(url).send().await {
        Ok(response) => Ok(response.status().as_u16()),
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            Err(text)
        }
    }
}

const PLAIN_TLS: &str = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

#[tokio::test]
async fn https_scrape_works_and_plain_http_to_the_tls_port_fails() {
    let pki = Pki::new();
    let served = serve_with(&pki.web_config("web.yml", PLAIN_TLS)).await;
    let response = pki
        .client(None, false)
        .get(https(&served, "/metrics"))
        .send()
        .await
        .expect("HTTPS scrape");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
    );
    assert!(response.text().await.unwrap().contains("kraken_"));
    let by_ip = format!("https://127.0.0.1:{}/-/healthy", served.addr.port());
    assert_eq!(status(&pki.client(None, false), &by_ip).await, Ok(200));
    let plain = status(&client(), &served.url("/metrics")).await;
    assert!(plain.is_err(), "plain HTTP to the TLS port: {plain:?}");
    served.stop().await;
}

#[tokio::test]
async fn require_and_verify_client_cert_accepts_only_certificates_from_the_ca() {
    let pki = Pki::new();
    let yaml = format!(
        "{PLAIN_TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
    );
    let served = serve_with(&pki.web_config("web.yml", &yaml)).await;
    let url = https(&served, "/metrics");
    let without = status(&pki.client(None, false), &url).await;
    assert!(without.is_err(), "no client certificate: {without:?}");
    let foreign = status(&pki.client(Some(&pki.foreign_pem), false), &url).await;
    assert!(foreign.is_err(), "certificate from another CA: {foreign:?}");
    let foreign12 = status(&pki.client(Some(&pki.foreign_pem), true), &url).await;
    assert!(foreign12.is_err(), "another CA over TLS 1.2: {foreign12:?}");
    assert_eq!(
        status(&pki.client(Some(&pki.client_pem), false), &url).await,
        Ok(200)
    );
    assert_eq!(
        status(&pki.client(Some(&pki.client_pem), true), &url).await,
        Ok(200)
    );
    served.stop().await;
}

#[tokio::test]
async fn client_allowed_sans_admits_only_the_listed_names() {
    let pki = Pki::new();
    let yaml = format!(
        "{PLAIN_TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [scraper.example]\n"
    );
    let served = serve_with(&pki.web_config("web.yml", &yaml)).await;
    let url = https(&served, "/metrics");
    assert_eq!(
        status(&pki.client(Some(&pki.client_pem), false), &url).await,
        Ok(200)
    );
    let other = status(&pki.client(Some(&pki.other_name_pem), false), &url).await;
    assert!(
        other.is_err(),
        "a name not in client_allowed_sans: {other:?}"
    );
    served.stop().await;
}

#[tokio::test]
async fn verify_client_cert_if_given_admits_anonymous_clients_but_not_foreign_certificates() {
    let pki = Pki::new();
    let yaml = format!(
        "{PLAIN_TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n"
    );
    let served = serve_with(&pki.web_config("web.yml", &yaml)).await;
    let url = https(&served, "/metrics");
    assert_eq!(status(&pki.client(None, false), &url).await, Ok(200));
    assert_eq!(
        status(&pki.client(Some(&pki.client_pem), false), &url).await,
        Ok(200)
    );
    let foreign = status(&pki.client(Some(&pki.foreign_pem), false), &url).await;
    assert!(foreign.is_err(), "certificate from another CA: {foreign:?}");
    served.stop().await;
}

#[tokio::test]
async fn require_any_client_cert_needs_a_certificate_but_does_not_verify_it() {
    let pki = Pki::new();
    let yaml = format!("{PLAIN_TLS}  client_auth_type: RequireAnyClientCert\n");
    let served = serve_with(&pki.web_config("web.yml", &yaml)).await;
    let url = https(&served, "/metrics");
    let without = status(&pki.client(None, false), &url).await;
    assert!(without.is_err(), "no client certificate: {without:?}");
    // As in Go: any certificate whose key the client holds is enough.
    assert_eq!(
        status(&pki.client(Some(&pki.foreign_pem), false), &url).await,
        Ok(200)
    );
    assert_eq!(
        status(&pki.client(Some(&pki.client_pem), true), &url).await,
        Ok(200)
    );
    served.stop().await;
}

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_only_client() {
    let pki = Pki::new();
    let yaml = format!("{PLAIN_TLS}  min_version: TLS13\n");
    let served = serve_with(&pki.web_config("web.yml", &yaml)).await;
    let url = https(&served, "/metrics");
    let old = status(&pki.client(None, true), &url).await;
    assert!(old.is_err(), "a TLS 1.2-only client: {old:?}");
    assert_eq!(status(&pki.client(None, false), &url).await, Ok(200));
    served.stop().await;

    // And the other way round: a TLS 1.2-only server still serves TLS 1.2 clients.
    let yaml = format!(
        "{PLAIN_TLS}  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [CurveP256, X25519]\n"
    );
    let served = serve_with(&pki.web_config("web12.yml", &yaml)).await;
    let url = https(&served, "/metrics");
    assert_eq!(status(&pki.client(None, true), &url).await, Ok(200));
    assert_eq!(status(&pki.client(None, false), &url).await, Ok(200));
    served.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_the_tls_handshake_is_disconnected() {
    let pki = Pki::new();
    let served = serve_with(&pki.web_config("web.yml", PLAIN_TLS)).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(served.addr).await.unwrap();
    // Half a ClientHello record header, then nothing.
    let mut partial = TcpStream::connect(served.addr).await.unwrap();
    partial.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    for stream in [&mut silent, &mut partial] {
        let closed = tokio::time::timeout(
            SERVER_TIMEOUT + Duration::from_secs(5),
            until_closed(stream),
        )
        .await;
        assert!(
            closed.is_ok(),
            "still open {:?} after connecting",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() >= SERVER_TIMEOUT - Duration::from_secs(1),
        "closed too early: {:?}",
        started.elapsed()
    );
    // Meanwhile and afterwards, real clients are served.
    assert_eq!(
        status(&pki.client(None, false), &https(&served, "/-/healthy")).await,
        Ok(200)
    );
    served.stop().await;
}

/// Reads until the peer closes the connection (end of file or reset).
async fn until_closed(stream: &mut TcpStream) {
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A GET with optional basic-auth credentials: (status, `WWW-Authenticate`).
async fn get_as(
    client: &reqwest::Client,
    url: &str,
    credentials: Option<(&str, &str)>,
) -> (u16, Option<String>) {
    let mut request = client.get(url);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("exporter answers");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), challenge)
}

#[tokio::test]
async fn basic_auth_guards_every_path() {
    let pki = Pki::new();
    let yaml = format!(
        "basic_auth_users:\n  prometheus: '{}'\n  other: '{}'\n",
        bcrypt::hash("correct horse", 4).unwrap(),
        bcrypt::hash("battery staple", 4).unwrap()
    );
    let served = serve_with(&pki.web_config("web.yml", &yaml)).await;
    let client = client();
    let challenge = Some("Basic realm=\"kraken_exporter\"".to_owned());
    for path in ["/metrics", "/-/healthy", "/-/ready", "/", "/nowhere"] {
        let url = served.url(path);
        let (status, _) = get_as(&client, &url, Some(("prometheus", "correct horse"))).await;
        assert!(
            status == 200
                || (path == "/-/ready" && status == 503)
                || (path == "/nowhere" && status == 404),
            "{path}: right password got {status}"
        );
        for (what, credentials) in [
            ("wrong password", Some(("prometheus", "wrong"))),
            (
                "another user's password",
                Some(("prometheus", "battery staple")),
            ),
            ("missing credentials", None),
            ("unknown user", Some(("nobody", "correct horse"))),
            ("empty password", Some(("prometheus", ""))),
        ] {
            assert_eq!(
                get_as(&client, &url, credentials).await,
                (401, challenge.clone()),
                "{path}: {what}"
            );
        }
    }
    // The second user works too, and repeated scrapes keep working (served from the cache).
    for _ in 0..3 {
        assert_eq!(
            get_as(
                &client,
                &served.url("/metrics"),
                Some(("other", "battery staple"))
            )
            .await
            .0,
            200
        );
    }
    served.stop().await;
}

#[tokio::test]
async fn configured_headers_are_added_to_every_response() {
    let pki = Pki::new();
    let yaml = format!(
        "{PLAIN_TLS}http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000\n    Content-Security-Policy: \"default-src 'self'\"\nbasic_auth_users:\n  prometheus: '{}'\n",
        bcrypt::hash("pw", 4).unwrap()
    );
    let served = serve_with(&pki.web_config("web.yml", &yaml)).await;
    let client = pki.client(None, false);
    for (path, credentials, expected) in [
        ("/metrics", Some(("prometheus", "pw")), 200),
        ("/nowhere", Some(("prometheus", "pw")), 404),
        ("/metrics", None, 401),
    ] {
        let mut request = client.get(https(&served, path));
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{path}");
        let headers = response.headers();
        assert_eq!(headers["x-frame-options"], "deny", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            headers["strict-transport-security"], "max-age=31536000",
            "{path}"
        );
        assert_eq!(
            headers["content-security-policy"], "default-src 'self'",
            "{path}"
        );
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
    }
    served.stop().await;
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let served = Served::start(&["--demo"], no_env()).await;
    let client = client();
    let big_body = client
        .get(served.url("/metrics"))
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(big_body.status(), 413);
    let small_body = client
        .get(served.url("/-/healthy"))
        .body("a few bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(small_body.status(), 200);
    let big_head = client
        .get(served.url("/metrics"))
        .header("x-padding", "p".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(big_head.status(), 431);
    // A chunked body (no Content-Length) is bounded too.
    let mut raw = TcpStream::connect(served.addr).await.unwrap();
    let chunk = vec![b'y'; 8 * 1024];
    raw.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n",
    )
    .await
    .unwrap();
    raw.write_all(&chunk).await.unwrap();
    let mut answer = vec![0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    served.stop().await;
}

#[tokio::test]
async fn idle_and_slow_clients_cannot_starve_a_scrape() {
    let served = Served::start(&["--demo"], no_env()).await;
    let opened = Instant::now();
    // More connections than the server serves at once (512): most send nothing, some a request
    // head that never ends (slowloris).
    let mut idle = Vec::new();
    for i in 0..600 {
        let mut stream = TcpStream::connect(served.addr).await.unwrap();
        if i % 10 == 0 {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .unwrap();
        }
        idle.push(stream);
    }
    // A real scrape is answered, long before the header timeout could free a slot.
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(15),
        client().get(served.url("/metrics")).send(),
    )
    .await
    .expect("the scrape answers within 15 s")
    .expect("the scrape succeeds");
    assert_eq!(response.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited < SERVER_TIMEOUT - Duration::from_secs(2),
        "the scrape waited {waited:?}: idle connections held the slots"
    );

    // A kept-alive connection that goes quiet after one request.
    let mut kept_alive = TcpStream::connect(served.addr).await.unwrap();
    kept_alive
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), kept_alive.read(&mut answer))
        .await
        .expect("the kept-alive request is answered")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200"));

    // The idle connections are closed after the header timeout rather than held forever.
    let deadline = tokio::time::Instant::from_std(opened + SERVER_TIMEOUT + Duration::from_secs(8));
    for (i, stream) in idle.iter_mut().enumerate() {
        assert!(
            tokio::time::timeout_at(deadline, until_closed(stream))
                .await
                .is_ok(),
            "idle connection {i} still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    assert!(
        tokio::time::timeout_at(deadline, until_closed(&mut kept_alive))
            .await
            .is_ok(),
        "the quiet kept-alive connection is still open"
    );
    // And the server still serves.
    assert_eq!(
        client()
            .get(served.url("/-/healthy"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    served.stop().await;
}

/// The exporter served in-process against `sim` with at most `cap` connections at once.
struct Capped {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Capped {
    async fn start(sim: &SimKraken, cap: usize, args: &[&str]) -> Capped {
        let creds = sim.credentials();
        let key = creds.key.expose().to_owned();
        let secret = STANDARD.encode(creds.secret.expose());
        let env: SharedEnv = Arc::new(move |name: &str| match name {
            "KRAKEN_API_KEY" => Some(key.clone()),
            "KRAKEN_API_SECRET" => Some(secret.clone()),
            _ => None,
        });
        let url = sim.url();
        let mut argv = vec!["kraken_exporter", "--kraken.api-url", &url];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("flags parse");
        let flags = cli.flags.clone();
        let config = kraken_exporter::config::resolve(cli, &*env).expect("config resolves");
        let (app, _reloads) = App::start(config, flags, env).await.expect("starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(kraken_exporter::web::serve(
            Arc::clone(&app.exporter),
            listener,
            None,
            cap,
            async move {
                let _ = stopped.await;
            },
        ));
        Capped { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Reads one HTTP answer (head and a body of its `Content-Length`) from `stream`: the head and
/// the body, or what happened instead (a reset, or the connection closed without an answer).
async fn read_answer(stream: &mut TcpStream) -> Result<(String, String), String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|value| value.trim().parse().unwrap())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return Ok((text[..end].to_owned(), text[end + 4..].to_owned()));
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) if received.is_empty() => return Err("closed without an answer".into()),
            Ok(0) => return Err(format!("closed within the answer: {text:?}")),
            Ok(read) => received.extend_from_slice(&buffer[..read]),
            Err(error) => return Err(format!("{error} after {} bytes", received.len())),
        }
    }
}

#[tokio::test]
async fn scrapes_beyond_the_connection_cap_wait_for_a_slot_while_kraken_hangs() {
    const CAP: usize = 4;
    const SCRAPES: usize = 12;
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    sim.inject(Endpoint::BalanceEx, Fault::Hang, None);
    let served = Capped::start(&sim, CAP, &["--kraken.timeout", "3s"]).await;
    // Every client connects before any sends its request: the connections the server takes
    // first are not read yet when the others arrive, and must not give their slots to them.
    let mut streams = Vec::new();
    for _ in 0..SCRAPES {
        streams.push(TcpStream::connect(served.addr).await.unwrap());
    }
    let scrapes: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut stream)| {
            tokio::spawn(async move {
                // Half keep their connection open, as Prometheus does.
                let close = if i % 2 == 0 { "" } else { "Connection: close\r\n" };
                let head = format!(
                    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Prometheus-Scrape-Timeout-Seconds: 60\r\n{close}\r\n"
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                tokio::time::timeout(Duration::from_secs(60), read_answer(&mut stream))
                    .await
                    .unwrap_or_else(|_| Err("no answer within 60 s".into()))
            })
        })
        .collect();
    for (i, scrape) in scrapes.into_iter().enumerate() {
        let (head, body) = scrape
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("scrape {i} got no HTTP answer: {error}"));
        assert!(head.starts_with("HTTP/1.1 200"), "scrape {i}: {head}");
        // Answered once the hung call ended (timed out), not before.
        let timeouts = crate::sample(
            &body,
            "kraken_request_errors_total",
            r#"account="default",endpoint="BalanceEx",reason="timeout""#,
        );
        assert!(timeouts >= Some(1.0), "scrape {i}:\n{body}");
    }
    served.stop().await;
}

#[tokio::test]
async fn a_silent_connection_gives_its_slot_to_a_scrape_with_a_503() {
    let sim = SimKraken::start(SimOptions::default()).await.unwrap();
    let served = Capped::start(&sim, 2, &[]).await;
    let mut first = TcpStream::connect(served.addr).await.unwrap();
    let mut second = TcpStream::connect(served.addr).await.unwrap();
    let response = client()
        .get(format!("http://{}/metrics", served.addr))
        .send()
        .await
        .expect("the scrape is answered");
    assert_eq!(response.status(), 200);
    // The silent connection that made room was answered before it was closed; a request sent
    // on it now would read that answer.
    let (head, body) = tokio::select! {
        answer = read_answer(&mut first) => answer,
        answer = read_answer(&mut second) => answer,
    }
    .expect("the evicted connection got an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(body.contains("Too many connections"), "{body}");
    served.stop().await;
}

/// Runs the binary with `--demo --web.config.file <path>` until it exits: (code, stderr).
async fn run_with_web_config(path: &Path) -> (Option<i32>, String) {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args([
            "--demo",
            "--web.config.file",
            path.to_str().unwrap(),
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(search_path) = std::env::var_os("PATH") {
        command.env("PATH", search_path);
    }
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        command.spawn().unwrap().wait_with_output(),
    )
    .await
    .expect("the binary exits on an invalid web config file")
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn invalid_web_config_files_stop_start_up_with_exit_2() {
    let pki = Pki::new();
    let hash_like_value = "$2y$10$not-really-a-hash";
    let cases: &[(&str, String, &[&str])] = &[
        (
            "unknown field",
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  cert_fiel: x\n"
                .into(),
            &["tls_server_config", "cert_fiel", "fix the spelling"],
        ),
        (
            "unreadable certificate",
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n".into(),
            &[
                "tls_server_config.cert_file",
                "missing.pem",
                "check the path",
            ],
        ),
        (
            "key of another certificate",
            "tls_server_config:\n  cert_file: server.pem\n  key_file: client.key\n".into(),
            &["tls_server_config.key_file", "does not match", "client.key"],
        ),
        (
            "not a bcrypt hash",
            format!("basic_auth_users:\n  alice: '{hash_like_value}'\n"),
            &["basic_auth_users.alice", "bcrypt", "htpasswd"],
        ),
        (
            "CA missing for RequireAndVerifyClientCert",
            format!("{PLAIN_TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
            &[
                "tls_server_config.client_ca_file",
                "RequireAndVerifyClientCert",
            ],
        ),
        (
            "unknown client_auth_type",
            format!("{PLAIN_TLS}  client_auth_type: RequireSomething\n"),
            &[
                "tls_server_config.client_auth_type",
                "RequireAndVerifyClientCert",
            ],
        ),
        (
            "TLS 1.0",
            format!("{PLAIN_TLS}  min_version: TLS10\n"),
            &["tls_server_config.min_version", "TLS12 or TLS13"],
        ),
        (
            "CBC cipher suite",
            format!("{PLAIN_TLS}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
            &[
                "tls_server_config.cipher_suites",
                "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            ],
        ),
        (
            "header that breaks HTTP",
            "http_server_config:\n  headers:\n    Content-Length: '0'\n".into(),
            &["http_server_config.headers.Content-Length", "remove it"],
        ),
        (
            "client CA without a client auth type",
            format!("{PLAIN_TLS}  client_ca_file: ca.pem\n"),
            &["tls_server_config.client_ca_file", "NoClientCert"],
        ),
        (
            "TLS settings without a certificate",
            "tls_server_config:\n  min_version: TLS13\n".into(),
            &["tls_server_config.cert_file", "is missing"],
        ),
    ];
    for (i, (what, yaml, expected)) in cases.iter().enumerate() {
        let path = pki.web_config(&format!("invalid-{i}.yml"), yaml);
        let (code, stderr) = run_with_web_config(&path).await;
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!("web config file {}", path.display())),
            "{what}: names the file: {stderr}"
        );
        for needle in *expected {
            assert!(stderr.contains(needle), "{what}: {needle:?} in {stderr}");
        }
        assert!(!stderr.contains(hash_like_value), "{what}: {stderr}");
        assert!(!stderr.contains("PRIVATE KEY"), "{what}: {stderr}");
    }
    let missing = pki.dir.join("no-such-web.yml");
    let (code, stderr) = run_with_web_config(&missing).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no-such-web.yml") && stderr.contains("--web.config.file"),
        "{stderr}"
    );
}
