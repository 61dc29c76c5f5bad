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
//!   accounts, and the transient heap of one render, today and with the proposed direct writer.
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

mod common;
mod direct_render;
mod static_server;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use kraken::sim::{STARTER_RATE_LIMIT, SimKraken, SimOptions};
use kraken::{CallObserver, Endpoint};
use kraken_exporter::app::{App, SharedEnv};
use kraken_exporter::cli::Cli;
use kraken_exporter::metrics::{self, AccountView, BuildInfo, ReloadView, RequestMetrics};

// ---------------------------------------------------------------------------------------------
// Allocation counting (used by the `alloc` scenario; the cost elsewhere is two relaxed atomics).

/// The system allocator, counting calls and bytes.
struct CountingAllocator;

/// Allocations (including reallocations) since the process started.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes requested by those allocations.
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);
/// Bytes released (including the old blocks of reallocations).
static FREED_BYTES: AtomicU64 = AtomicU64::new(0);
/// Highest live heap seen since the last [`reset_peak`].
static PEAK_LIVE: AtomicU64 = AtomicU64::new(0);

/// Counts an allocation of `size` bytes and raises the peak.
fn note_allocation(size: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let total = ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed) + size as u64;
    let live = total.saturating_sub(FREED_BYTES.load(Ordering::Relaxed));
    PEAK_LIVE.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        FREED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        note_allocation(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// (allocations, bytes) so far.
fn allocation_counters() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    )
}

/// Bytes allocated and not yet freed.
fn live_bytes() -> u64 {
    ALLOCATED_BYTES
        .load(Ordering::Relaxed)
        .saturating_sub(FREED_BYTES.load(Ordering::Relaxed))
}

/// Starts a new peak measurement; returns the live heap now.
fn reset_peak() -> u64 {
    let live = live_bytes();
    PEAK_LIVE.store(live, Ordering::Relaxed);
    live
}

/// Highest live heap since the last [`reset_peak`].
fn peak_bytes() -> u64 {
    PEAK_LIVE.load(Ordering::Relaxed)
}

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
            "usage: cargo bench --bench harness -- <serve|contention|memory|coalesce|accounts|startup|alloc|profile> [--option value]..."
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
        "serve" => serve(&bench, &opts),
        "contention" => contention(&bench, &opts),
        "memory" => memory(&bench, &opts),
        "coalesce" => coalesce(&bench, &opts),
        "accounts" => accounts(&bench, &opts),
        "startup" => startup(&bench, &opts),
        "alloc" => alloc(&bench, &opts),
        "profile" => profile(&bench, &opts),
        "footprint" => footprint(&opts),
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
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
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

    fn text(&self, name: &str, default: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    fn number(&self, name: &str, default: u64) -> u64 {
        self.0
            .get(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("--{name} takes a number"))
            })
            .unwrap_or(default)
    }

    fn list(&self, name: &str, default: &[usize]) -> Vec<usize> {
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

// ---------------------------------------------------------------------------------------------
// The bench environment: binary, CPUs, runtime of the simulated Krakens, scratch directory.

/// What every scenario needs.
struct Bench {
    /// The exporter binary under test.
    exporter_bin: PathBuf,
    /// CPU of the server under test (`None`: no pinning).
    server_cpu: Option<usize>,
    /// Runtime of the simulated Krakens and of the in-process exporter of `alloc`.
    runtime: tokio::runtime::Runtime,
    /// Scratch files; removed at exit.
    work: TempDir,
}

impl Bench {
    fn new() -> Result<Bench, String> {
        raise_open_files_limit();
        let exporter_bin = match std::env::var_os("KRAKEN_EXPORTER_BIN") {
            Some(path) => PathBuf::from(path),
            // target/release/deps/harness-<hash> → target/release/kraken_exporter
            None => std::env::current_exe()
                .map_err(|e| e.to_string())?
                .parent()
                .and_then(Path::parent)
                .map(|dir| dir.join("kraken_exporter"))
                .ok_or("cannot locate the target directory")?,
        };
        if !exporter_bin.exists() {
            return Err(format!(
                "{} does not exist: run `cargo build --release` first",
                exporter_bin.display()
            ));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pin = std::env::var("BENCH_PIN").map_or(true, |v| v != "0") && cpus >= 2;
        let server_cpu = pin.then_some(cpus - 1);
        if pin {
            pin_this_process(0);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        eprintln!(
            "# exporter: {} ({} bytes); pinning: {}",
            exporter_bin.display(),
            std::fs::metadata(&exporter_bin).map_or(0, |m| m.len()),
            match server_cpu {
                Some(cpu) =>
                    format!("servers on CPU {cpu}, load generator and simulated Kraken on CPU 0"),
                None => "off".to_owned(),
            }
        );
        Ok(Bench {
            exporter_bin,
            server_cpu,
            runtime,
            work: TempDir::new()?,
        })
    }

    /// A command for a server under test, pinned to its CPU.
    fn server_command(&self, program: &Path) -> Command {
        match self.server_cpu {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpu.to_string()).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Starts the exporter with `config` and `extra` flags on a free port.
    fn spawn_exporter(&self, config: &Path, extra: &[&str]) -> Result<Exporter, String> {
        let addr = free_port()?;
        let log = self.work.0.join(format!("exporter-{}.log", addr.port()));
        let mut command = self.server_command(&self.exporter_bin);
        command
            .arg("--config.file")
            .arg(config)
            .arg("--web.listen-address")
            .arg(addr.to_string())
            .arg("--log.level")
            .arg("warn")
            .args(extra);
        for (name, _) in std::env::vars() {
            if name.starts_with("KRAKEN_") {
                command.env_remove(name);
            }
        }
        let started = Instant::now();
        let process = Process::spawn(command, &log, "exporter")?;
        Ok(Exporter {
            process,
            addr,
            started,
            log,
        })
    }

    /// Starts one simulated Kraken per account, each holding `balances`, and writes a config
    /// file naming them (key and secret files mode 0600), with `global` YAML on top.
    fn fleet(
        &self,
        name: &str,
        accounts: usize,
        options: &SimOptions,
        balances: Option<&[(String, f64, f64)]>,
        global: &str,
        account_extra: &str,
    ) -> Result<Fleet, String> {
        let dir = self.work.0.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let sims: Vec<SimKraken> = self.runtime.block_on(async {
            let mut sims = Vec::with_capacity(accounts);
            for _ in 0..accounts {
                let sim = SimKraken::start(options.clone())
                    .await
                    .map_err(|e| format!("starting a simulated Kraken: {e}"))?;
                if let Some(balances) = balances {
                    sim.set_balances(balances.to_vec());
                }
                sims.push(sim);
            }
            Ok::<_, String>(sims)
        })?;
        let mut yaml = format!(
            "kraken: {{api_url: \"{}\"}}\n{global}accounts:\n",
            sims[0].url()
        );
        for (i, sim) in sims.iter().enumerate() {
            let account = common::account_name(i);
            let credentials = sim.credentials();
            let key = write_private(
                &dir.join(format!("{account}.key")),
                &format!("{}\n", credentials.key.expose()),
            )?;
            let secret = write_private(
                &dir.join(format!("{account}.secret")),
                &format!("{}\n", STANDARD.encode(credentials.secret.expose())),
            )?;
            yaml.push_str(&format!(
                "  - name: {account}\n    key_file: {}\n    secret_file: {}\n    api_url: \"{}\"\n",
                key.display(),
                secret.display(),
                sim.url()
            ));
            for line in account_extra.lines() {
                yaml.push_str(&format!("    {line}\n"));
            }
        }
        let config = write_private(&dir.join("kraken.yml"), &yaml)?;
        Ok(Fleet { sims, config })
    }
}

/// Simulated Krakens and the config file that names them.
struct Fleet {
    /// One per account, in the order of the config file.
    sims: Vec<SimKraken>,
    /// The config file.
    config: PathBuf,
}

impl Fleet {
    /// Calls of `method` that reached all the simulated Krakens together.
    fn calls(&self, method: Endpoint) -> u64 {
        self.sims.iter().map(|sim| sim.calls(method)).sum()
    }
}

/// A running exporter.
struct Exporter {
    /// The child process.
    process: Process,
    /// Where it listens.
    addr: SocketAddr,
    /// When it was spawned.
    started: Instant,
    /// Its log file.
    log: PathBuf,
}

impl Exporter {
    /// Waits until `/-/ready` answers 200; returns the time since spawning.
    fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = get_once(self.addr, "/-/ready") {
                return Ok(self.started.elapsed());
            }
            if let Ok(Some(status)) = self.process.child.try_wait() {
                return Err(format!(
                    "the exporter exited ({status}) before it was ready: {}",
                    tail(&self.log)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the exporter was not ready after {timeout:?}: {}",
                    tail(&self.log)
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// One `/metrics` body, which must answer 200.
    fn metrics(&self) -> Result<String, String> {
        match get_once(self.addr, "/metrics") {
            Ok((200, body)) => String::from_utf8(body).map_err(|e| e.to_string()),
            Ok((status, _)) => Err(format!("/metrics answered {status}")),
            Err(error) => Err(format!("/metrics: {error}")),
        }
    }

    /// Resident memory now (VmRSS) and at its peak (VmHWM), in KiB.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// A child process, killed when dropped.
struct Process {
    child: Child,
}

impl Process {
    fn spawn(mut command: Command, log: &Path, what: &str) -> Result<Process, String> {
        let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting the {what}: {e}"))?;
        Ok(Process { child })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "kraken-exporter-bench-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `path`, readable by its owner only, as credential files must be.
fn write_private(path: &Path, text: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    Ok(path.to_owned())
}

/// The last lines of a log file, for error messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<SocketAddr, String> {
    let listener = StdListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// Raises the soft limit of open files to the hard limit: 1,000 simulated Krakens and 1,000
/// `wrk` connections need a few thousand descriptors. Children inherit it.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed by pointer, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Pins this process (the load side: simulated Krakens, clients) to `cpu`.
fn pin_this_process(cpu: usize) {
    // SAFETY: the set is zero-initialised and filled by the libc macros before use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal blocking HTTP/1.1 client: keep-alive, Content-Length bodies.

/// One keep-alive connection.
struct Http {
    reader: BufReader<TcpStream>,
}

impl Http {
    fn connect(addr: SocketAddr) -> std::io::Result<Http> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Http {
            reader: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    /// GETs `path`; returns the status and the body.
    fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = Vec::new();
        match length {
            Some(length) => {
                body.resize(length, 0);
                self.reader.read_exact(&mut body)?;
            }
            None => {
                self.reader.read_to_end(&mut body)?;
            }
        }
        Ok((status, body))
    }
}

/// One GET on a fresh connection.
fn get_once(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    Http::connect(addr)?.get(path)
}

/// `total` GETs of `/metrics` over `connections` keep-alive connections; returns the elapsed
/// time. Every answer must be 200.
fn scrape_many(addr: SocketAddr, total: u64, connections: usize) -> Result<Duration, String> {
    let next = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| -> Result<(), String> {
                    let mut http = Http::connect(addr).map_err(|e| e.to_string())?;
                    while next.fetch_add(1, Ordering::Relaxed) < total {
                        match http.get("/metrics") {
                            Ok((200, _)) => {}
                            Ok((status, _)) => return Err(format!("/metrics answered {status}")),
                            Err(error) => return Err(error.to_string()),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("scraper thread"))
    })?;
    Ok(started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// wrk.

/// What one `wrk` run measured.
#[derive(Debug, Clone, Default)]
struct WrkRun {
    /// Requests per second.
    rps: f64,
    /// Median latency, ms.
    p50: f64,
    /// 99th percentile latency, ms.
    p99: f64,
    /// Requests completed.
    requests: u64,
    /// Connect, read and write errors.
    errors: u64,
    /// Requests that timed out.
    timeouts: u64,
    /// Answers other than 2xx/3xx.
    non_2xx: u64,
}

/// Runs `wrk` against `url`.
fn wrk(
    bench: &Bench,
    url: &str,
    connections: usize,
    seconds: u64,
    timeout_secs: u64,
) -> Result<WrkRun, String> {
    let threads = match (bench.server_cpu, connections) {
        (_, 1) => 1,
        (Some(_), _) => 1,
        (None, _) => 2,
    };
    let mut command = match bench.server_cpu {
        Some(_) => {
            let mut command = Command::new("taskset");
            command.args(["-c", "0", "wrk"]);
            command
        }
        None => Command::new("wrk"),
    };
    let output = command
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            &format!("{timeout_secs}s"),
            "--latency",
            url,
        ])
        .output()
        .map_err(|e| format!("running wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {text} {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(parse_wrk(&text))
}

/// Reads the numbers out of `wrk --latency` output.
fn parse_wrk(text: &str) -> WrkRun {
    let mut run = WrkRun::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => run.rps = value.parse().unwrap_or(0.0),
            ["50%", value] => run.p50 = millis(value),
            ["99%", value] => run.p99 = millis(value),
            [count, "requests", "in", ..] => run.requests = count.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                run.non_2xx = count.parse().unwrap_or(0)
            }
            ["Socket", "errors:", ..] => {
                let numbers: Vec<u64> = words
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse().ok())
                    .collect();
                if let [connect, read, write, timeout] = numbers.as_slice() {
                    run.errors = connect + read + write;
                    run.timeouts = *timeout;
                }
            }
            _ => {}
        }
    }
    run
}

/// `1.23ms`, `456.00us`, `1.02s`, `2.00m` → milliseconds.
fn millis(text: &str) -> f64 {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let value: f64 = text[..split].parse().unwrap_or(f64::NAN);
    value
        * match &text[split..] {
            "us" => 0.001,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            _ => f64::NAN,
        }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median run of several (by requests per second), with median latencies.
fn median_run(runs: &[WrkRun]) -> WrkRun {
    let pick = |f: fn(&WrkRun) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
    WrkRun {
        rps: pick(|r| r.rps),
        p50: pick(|r| r.p50),
        p99: pick(|r| r.p99),
        requests: runs.iter().map(|r| r.requests).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
        timeouts: runs.iter().map(|r| r.timeouts).sum(),
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
    }
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Scenario: serve.

/// A server answering `/metrics` in the comparison.
struct Contender {
    name: &'static str,
    url: String,
    /// Kept alive for the scenario.
    _process: Option<Process>,
}

/// Starts the limit server with the exporter's exposition bytes.
fn spawn_static_server(bench: &Bench, body_file: &Path) -> Result<(Process, SocketAddr), String> {
    let addr = free_port()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = bench.server_command(&exe);
    command
        .arg("static-server")
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--file")
        .arg(body_file);
    let log = bench.work.0.join(format!("static-{}.log", addr.port()));
    let process = Process::spawn(command, &log, "static server")?;
    wait_answers(addr, Duration::from_secs(10))?;
    Ok((process, addr))
}

/// Starts the Python exporter with the exporter's balances.
fn spawn_python_exporter(bench: &Bench, data_file: &Path) -> Result<(Process, SocketAddr), String> {
    let addr = free_port()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/python_exporter.py");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let mut command = bench.server_command(Path::new(&python));
    command
        .arg(script)
        .arg("--port")
        .arg(addr.port().to_string())
        .arg("--data")
        .arg(data_file);
    let log = bench.work.0.join(format!("python-{}.log", addr.port()));
    let process = Process::spawn(command, &log, "Python exporter")?;
    wait_answers(addr, Duration::from_secs(20))
        .map_err(|e| format!("{e}: {} (pip install prometheus_client)", tail(&log)))?;
    Ok((process, addr))
}

/// Waits until `addr` answers `/metrics` with 200.
fn wait_answers(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok((200, _)) = get_once(addr, "/metrics") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("{addr} did not answer /metrics within {timeout:?}"))
}

/// The balance samples of an exposition, as the Python exporter's input.
fn balances_json(exposition: &str) -> serde_json::Value {
    let mut holds: HashMap<String, f64> = HashMap::new();
    let mut entries = Vec::new();
    let mut account = String::from("bench");
    for line in exposition.lines() {
        let (hold, rest) = if let Some(rest) = line.strip_prefix("kraken_balance_hold{") {
            (true, rest)
        } else if let Some(rest) = line.strip_prefix("kraken_balance{") {
            (false, rest)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        account = label("account");
        if hold {
            holds.insert(label("code"), value);
        } else {
            entries.push((label("asset"), label("code"), value));
        }
    }
    let balances: Vec<serde_json::Value> = entries
        .into_iter()
        .map(|(asset, code, total)| {
            serde_json::json!({"asset": asset, "hold": holds.get(&code), "code": code, "total": total})
        })
        .collect();
    serde_json::json!({"account": account, "balances": balances})
}

fn serve(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let asset_counts = opts.list("assets", &[10, 100, 1000]);
    let connection_counts = opts.list("connections", &[1, 16, 64]);
    let seconds = opts.number("duration", 2);
    let reps = opts.number("reps", 3) as usize;
    println!(
        "\n## serve: /metrics from the snapshot (background refresh, interval 1h; on-scrape with the default min-interval 10s); wrk {seconds}s × {reps} runs each, medians\n"
    );
    println!(
        "| assets | conns | body exporter / python | exporter req/s | p50 ms | p99 ms | on-scrape req/s | p50 ms | p99 ms | limit req/s | p50 ms | p99 ms | python req/s | p50 ms | p99 ms | exporter/limit | on-scrape/limit | exporter/python |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for assets in asset_counts {
        let balances = common::balances(assets);
        let fleet = bench.fleet(
            &format!("serve-{assets}"),
            1,
            &SimOptions::default(),
            Some(&balances),
            "refresh: {interval: 1h}\n",
            "",
        )?;
        let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
        exporter.wait_ready(Duration::from_secs(30))?;
        // The default mode: refreshes start on scrape, at most once per 10 s.
        let on_scrape_fleet = bench.fleet(
            &format!("serve-on-scrape-{assets}"),
            1,
            &SimOptions::default(),
            Some(&balances),
            "",
            "",
        )?;
        let mut on_scrape = bench.spawn_exporter(&on_scrape_fleet.config, &[])?;
        on_scrape.wait_ready(Duration::from_secs(30))?;
        // Let the first refresh's key audit land, so the exposition is the steady one.
        std::thread::sleep(Duration::from_millis(300));
        let body = exporter.metrics()?;
        let dir = bench.work.0.join(format!("serve-{assets}"));
        let body_file = dir.join("metrics.prom");
        std::fs::write(&body_file, &body).map_err(|e| e.to_string())?;
        let data_file = dir.join("balances.json");
        std::fs::write(&data_file, balances_json(&body).to_string()).map_err(|e| e.to_string())?;
        let (static_process, static_addr) = spawn_static_server(bench, &body_file)?;
        let (python_process, python_addr) = spawn_python_exporter(bench, &data_file)?;
        let python_body = get_once(python_addr, "/metrics")
            .map_err(|e| e.to_string())?
            .1;
        let contenders = [
            Contender {
                name: "exporter",
                url: exporter.url(),
                _process: None,
            },
            Contender {
                name: "on-scrape",
                url: on_scrape.url(),
                _process: None,
            },
            Contender {
                name: "limit",
                url: format!("http://{static_addr}/metrics"),
                _process: Some(static_process),
            },
            Contender {
                name: "python",
                url: format!("http://{python_addr}/metrics"),
                _process: Some(python_process),
            },
        ];
        for &connections in &connection_counts {
            let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); contenders.len()];
            for rep in 0..reps {
                // Rotate the order so drift of a noisy machine spreads over all three.
                for k in 0..contenders.len() {
                    let i = (k + rep) % contenders.len();
                    let run = wrk(bench, &contenders[i].url, connections, seconds, 10)?;
                    if run.non_2xx > 0 || run.errors > 0 {
                        eprintln!(
                            "# {} at {connections} connections: {} non-2xx, {} socket errors",
                            contenders[i].name, run.non_2xx, run.errors
                        );
                    }
                    runs[i].push(run);
                }
            }
            let [e, o, l, p] = [0, 1, 2, 3].map(|i| median_run(&runs[i]));
            println!(
                "| {assets} | {connections} | {} / {} B | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0}% | {:.0}% | {:.1}× |",
                body.len(),
                python_body.len(),
                e.rps,
                e.p50,
                e.p99,
                o.rps,
                o.p50,
                o.p99,
                l.rps,
                l.p50,
                l.p99,
                p.rps,
                p.p50,
                p.p99,
                100.0 * e.rps / l.rps,
                100.0 * o.rps / l.rps,
                e.rps / p.rps
            );
        }
        drop(contenders);
        drop(exporter);
        drop(on_scrape);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario: contention.

fn contention(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let assets = opts.number("assets", 100) as usize;
    let connections = opts.number("connections", 16) as usize;
    let seconds = opts.number("duration", 4);
    let reps = opts.number("reps", 3) as usize;
    let variants = [
        ("background, interval 1h", "refresh: {interval: 1h}\n"),
        ("background, interval 100ms", "refresh: {interval: 100ms}\n"),
        (
            "on-scrape, min-interval 1h",
            "refresh: {min_interval: 1h}\n",
        ),
        (
            "on-scrape, min-interval 100ms",
            "refresh: {min_interval: 100ms}\n",
        ),
    ];
    let balances = common::balances(assets);
    let mut running = Vec::new();
    for (i, (_, global)) in variants.iter().enumerate() {
        let fleet = bench.fleet(
            &format!("contention-{i}"),
            1,
            &SimOptions::default(),
            Some(&balances),
            global,
            "",
        )?;
        let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
        exporter.wait_ready(Duration::from_secs(30))?;
        running.push((fleet, exporter));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); variants.len()];
    let mut calls = vec![0u64; variants.len()];
    for rep in 0..reps {
        for k in 0..variants.len() {
            let i = (k + rep) % variants.len();
            let (fleet, exporter) = &running[i];
            let before = fleet.calls(Endpoint::BalanceEx);
            runs[i].push(wrk(bench, &exporter.url(), connections, seconds, 10)?);
            calls[i] += fleet.calls(Endpoint::BalanceEx) - before;
        }
    }
    println!(
        "\n## contention: {assets} assets, {connections} connections, wrk {seconds}s × {reps} runs, medians\n"
    );
    println!("| refresh | req/s | p50 ms | p99 ms | BalanceEx calls per second of load |");
    println!("|---|---|---|---|---|");
    for (i, (name, _)) in variants.iter().enumerate() {
        let run = median_run(&runs[i]);
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.1} |",
            run.rps,
            run.p50,
            run.p99,
            calls[i] as f64 / (seconds * reps as u64) as f64
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario: memory.

fn memory(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let scrapes = opts.number("scrapes", 100_000);
    let accounts = opts.number("accounts", 1000) as usize;
    let assets = opts.number("assets", 50) as usize;
    println!(
        "\n## memory: resident set (VmRSS) of the exporter, on-scrape mode (min-interval 10s)\n"
    );
    println!("| case | VmRSS MiB | peak (VmHWM) MiB | note |");
    println!("|---|---|---|---|");

    let fleet = bench.fleet("memory-one", 1, &SimOptions::default(), None, "", "")?;
    let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
    exporter.wait_ready(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(1));
    let (idle, idle_peak) = exporter.memory();
    println!(
        "| 1 account, idle after start-up | {:.2} | {:.2} | default sim balances (8 assets) |",
        kib_to_mib(idle),
        kib_to_mib(idle_peak)
    );
    scrape_many(exporter.addr, 1_000, 4)?;
    let (warm, warm_peak) = exporter.memory();
    println!(
        "| 1 account, after 1,000 scrapes | {:.2} | {:.2} | warm-up |",
        kib_to_mib(warm),
        kib_to_mib(warm_peak)
    );
    let mut previous = warm;
    for round in 1..=2 {
        let elapsed = scrape_many(exporter.addr, scrapes, 4)?;
        let (rss, peak) = exporter.memory();
        println!(
            "| 1 account, after {} more scrapes ({round}) | {:.2} | {:.2} | {:+.2} MiB since previous row, {:+.2} MiB since idle; {:.0} scrapes/s over 4 connections |",
            scrapes,
            kib_to_mib(rss),
            kib_to_mib(peak),
            kib_to_mib(rss) - kib_to_mib(previous),
            kib_to_mib(rss) - kib_to_mib(idle),
            scrapes as f64 / elapsed.as_secs_f64()
        );
        previous = rss;
    }
    drop(exporter);
    drop(fleet);

    let balances = common::balances(assets);
    let fleet = bench.fleet(
        "memory-many",
        accounts,
        &SimOptions::default(),
        Some(&balances),
        "",
        "",
    )?;
    let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
    let ready = exporter.wait_ready(Duration::from_secs(120))?;
    std::thread::sleep(Duration::from_secs(1));
    let (rss, peak) = exporter.memory();
    println!(
        "| {accounts} accounts × {assets} assets, after start-up | {:.2} | {:.2} | ready after {:.0} ms |",
        kib_to_mib(rss),
        kib_to_mib(peak),
        ms(ready)
    );
    let body = exporter.metrics()?;
    let started = Instant::now();
    scrape_many(exporter.addr, 20, 1)?;
    let per_scrape = started.elapsed() / 20;
    let (rss, peak) = exporter.memory();
    println!(
        "| {accounts} accounts × {assets} assets, after 21 scrapes | {:.2} | {:.2} | exposition {:.1} MiB, {:.0} ms per scrape |",
        kib_to_mib(rss),
        kib_to_mib(peak),
        body.len() as f64 / 1048576.0,
        ms(per_scrape)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario: coalesce.

/// Sum of the samples of `name` whose line contains `filter`.
fn sum_samples(exposition: &str, name: &str, filter: &str) -> f64 {
    exposition
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(filter))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn coalesce(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let connections = opts.number("connections", 1000) as usize;
    let seconds = opts.number("duration", 60);
    let options = SimOptions {
        rate_limit: Some(STARTER_RATE_LIMIT),
        ..SimOptions::default()
    };
    let fleet = bench.fleet("coalesce", 1, &options, None, "", "")?;
    let mut exporter = bench.spawn_exporter(&fleet.config, &["--refresh.min-interval", "10s"])?;
    exporter.wait_ready(Duration::from_secs(30))?;
    let ready_at = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    let methods = [
        Endpoint::BalanceEx,
        Endpoint::GetApiKeyInfo,
        Endpoint::Assets,
    ];
    let before: Vec<u64> = methods.iter().map(|m| fleet.calls(*m)).collect();
    let started = Instant::now();
    let run = wrk(bench, &exporter.url(), connections, seconds, 10)?;
    let load_ended = Instant::now();
    let after: Vec<u64> = methods.iter().map(|m| fleet.calls(*m)).collect();
    let body = exporter.metrics()?;
    let rate_limited = sum_samples(
        &body,
        "kraken_request_errors_total",
        "reason=\"rate_limited\"",
    );
    let all_errors = sum_samples(&body, "kraken_request_errors_total", "");
    // One refresh at start-up, then one per elapsed min-interval while scrapes keep coming.
    let expected = 1 + (load_ended - ready_at).as_secs() / 10;
    println!(
        "\n## coalesce: {connections} concurrent scrapers for {seconds}s, on-scrape mode, --refresh.min-interval 10s, Starter rate limit (15, -0.33/s)\n"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| BalanceEx calls (start-up + during load) | {} + {} = {} |",
        before[0],
        after[0] - before[0],
        after[0]
    );
    println!("| expected by the policy (1 + elapsed/10s) | {expected} |");
    println!(
        "| GetApiKeyInfo / Assets calls | {} / {} |",
        after[1], after[2]
    );
    println!("| kraken_request_errors_total{{reason=\"rate_limited\"}} | {rate_limited} |");
    println!("| kraken_request_errors_total, all reasons | {all_errors} |");
    println!(
        "| scrapes answered (wrk) | {} in {:.1}s ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms |",
        run.requests,
        started.elapsed().as_secs_f64(),
        run.rps,
        run.p50,
        run.p99
    );
    println!(
        "| wrk socket errors / timeouts / non-2xx | {} / {} / {} |",
        run.errors, run.timeouts, run.non_2xx
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario: accounts.

/// Timed GET of `/metrics`; returns the latency and the body.
fn timed_scrape(addr: SocketAddr) -> Result<(Duration, String), String> {
    let started = Instant::now();
    match get_once(addr, "/metrics") {
        Ok((200, body)) => Ok((
            started.elapsed(),
            String::from_utf8(body).map_err(|e| e.to_string())?,
        )),
        Ok((status, _)) => Err(format!("/metrics answered {status}")),
        Err(error) => Err(error.to_string()),
    }
}

fn accounts(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let counts = opts.list("accounts", &[10, 100, 1000]);
    let assets = opts.number("assets", 50) as usize;
    let latency = Duration::from_millis(opts.number("latency-ms", 50));
    let rounds = opts.number("rounds", 3) as usize;
    println!(
        "\n## accounts: simulated Kraken latency {latency:?} per call, {assets} assets per account, on-scrape mode (min-interval 2s); medians of {rounds} refreshes\n"
    );
    println!(
        "| accounts | audit | exec → ready ms | exec → audit done ms | refresh scrape ms | cached scrape ms | refresh alone ms (difference) | exposition bytes | cached scrape per account µs | VmRSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let options = SimOptions {
        latency,
        ..SimOptions::default()
    };
    let balances = common::balances(assets);
    for &count in &counts {
        for audit in [false, true] {
            let fleet = bench.fleet(
                &format!("accounts-{count}-{audit}"),
                count,
                &options,
                Some(&balances),
                &format!("refresh: {{min_interval: 2s}}\naudit: {{enabled: {audit}}}\n"),
                "",
            )?;
            let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
            let ready = exporter.wait_ready(Duration::from_secs(120))?;
            let audited = if audit {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let body = exporter.metrics()?;
                    let done = body
                        .lines()
                        .filter(|l| {
                            l.starts_with("kraken_api_key_permission{")
                                && l.contains("permission=\"funds_query\"")
                        })
                        .count();
                    if done >= count {
                        break Some(exporter.started.elapsed());
                    }
                    if Instant::now() > deadline {
                        return Err(format!("only {done} of {count} keys audited after 60s"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            } else {
                None
            };
            let mut refreshes = Vec::new();
            for _ in 0..rounds {
                std::thread::sleep(Duration::from_millis(2200));
                let before = fleet.calls(Endpoint::BalanceEx);
                let (took, body) = timed_scrape(exporter.addr)?;
                let refreshed = fleet.calls(Endpoint::BalanceEx) - before;
                let up = sum_samples(&body, "kraken_up", "");
                if refreshed != count as u64 || up != count as f64 {
                    eprintln!(
                        "# {count} accounts: a refresh scrape made {refreshed} BalanceEx calls and saw {up} accounts up"
                    );
                }
                refreshes.push(ms(took));
            }
            let mut cached = Vec::new();
            let mut size = 0;
            for _ in 0..9 {
                let (took, body) = timed_scrape(exporter.addr)?;
                size = body.len();
                cached.push(ms(took));
            }
            let refresh = median(&mut refreshes);
            let cached = median(&mut cached);
            let (rss, _) = exporter.memory();
            println!(
                "| {count} | {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {size} | {:.1} | {:.1} |",
                if audit { "on" } else { "off" },
                ms(ready),
                audited.map_or("–".to_owned(), |d| format!("{:.0}", ms(d))),
                refresh,
                cached,
                refresh - cached,
                1000.0 * cached / count as f64,
                kib_to_mib(rss)
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario: startup.

fn startup(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let runs = opts.number("runs", 20) as usize;
    let fleet = bench.fleet("startup", 1, &SimOptions::default(), None, "", "")?;
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
        times.push(ms(exporter.wait_ready(Duration::from_secs(30))?));
    }
    let mut sorted = times.clone();
    let med = median(&mut sorted);
    println!(
        "\n## startup: exec → /-/ready 200, one account, local simulated Kraken, {runs} runs\n"
    );
    println!("| median ms | min ms | max ms | binary bytes |");
    println!("|---|---|---|---|");
    println!(
        "| {med:.1} | {:.1} | {:.1} | {} |",
        sorted[0],
        sorted[sorted.len() - 1],
        std::fs::metadata(&bench.exporter_bin).map_or(0, |m| m.len())
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario: alloc (in-process).

/// Allocations, bytes and wall time per call of `f`, over `n` calls.
fn per_call(n: u64, mut f: impl FnMut() -> usize) -> (f64, f64, f64, usize) {
    let mut size = f();
    let (a0, b0) = allocation_counters();
    let started = Instant::now();
    for _ in 0..n {
        size = f();
    }
    let elapsed = started.elapsed();
    let (a1, b1) = allocation_counters();
    (
        (a1 - a0) as f64 / n as f64,
        (b1 - b0) as f64 / n as f64,
        elapsed.as_secs_f64() * 1e6 / n as f64,
        size,
    )
}

fn alloc(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let cases: Vec<(usize, usize, bool)> = match opts.0.get("cases") {
        Some(text) => text
            .split(',')
            .filter_map(|c| {
                let (a, b) = c.split_once('x')?;
                let watched = b.ends_with('w');
                Some((
                    a.parse().ok()?,
                    b.trim_end_matches('w').parse().ok()?,
                    watched,
                ))
            })
            .collect(),
        None => vec![
            (1, 10, false),
            (1, 100, false),
            (1, 100, true),
            (1, 1000, false),
            (100, 50, false),
            (1000, 50, false),
        ],
    };
    println!(
        "\n## alloc: one scrape in-process (Exporter::render, background mode, no HTTP), per scrape\n"
    );
    println!(
        "| accounts × assets | samples | body bytes | allocations | allocated bytes | µs | allocations per sample | metrics::render share of allocations / time | request families only: allocations / µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (accounts, assets, watched) in cases {
        let balances = common::balances(assets);
        // `w`: each account watches an asset it does not hold and has a threshold, so every
        // scrape adds a zero balance for it.
        let account_extra = if watched {
            "watch: [NOTHELD]\nmin_balance: {XBT: 0.5}\n"
        } else {
            ""
        };
        let fleet = bench.fleet(
            &format!(
                "alloc-{accounts}x{assets}{}",
                if watched { "w" } else { "" }
            ),
            accounts,
            &SimOptions::default(),
            Some(&balances),
            "refresh: {interval: 1h}\n",
            account_extra,
        )?;
        let env: SharedEnv = Arc::new(|_: &str| None);
        let config_path = fleet.config.to_string_lossy().into_owned();
        let cli = Cli::try_parse_from([
            "kraken_exporter",
            "--config.file",
            &config_path,
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .map_err(|e| e.to_string())?;
        let flags = cli.flags.clone();
        let config = kraken_exporter::config::resolve(cli, &*env).map_err(|e| e.to_string())?;
        let (app, _reloads) = bench
            .runtime
            .block_on(App::start(config, flags, env))
            .map_err(|e| format!("{e:#}"))?;
        let exporter = Arc::clone(&app.exporter);
        let deadline = Instant::now() + Duration::from_secs(60);
        while exporter.first_unready().is_some()
            || exporter.statuses().iter().any(|s| s.audit.is_none())
        {
            if Instant::now() > deadline {
                return Err("the in-process exporter was not ready after 60s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let n = (200_000 / (accounts * assets) as u64).clamp(5, 2_000);
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let (allocs, bytes, micros, size) = per_call(n, || {
            bench.runtime.block_on(exporter.render(far, None)).len()
        });
        let statuses = exporter.statuses();
        let no_thresholds = std::collections::BTreeMap::new();
        let reload = ReloadView {
            ok: true,
            last_success: SystemTime::now(),
        };
        let (render_allocs, _, render_micros, _) = per_call(n, || {
            let views: Vec<AccountView<'_>> = statuses
                .iter()
                .map(|s| AccountView {
                    status: s.clone(),
                    min_balance: &no_thresholds,
                    unknown_assets: &[],
                })
                .collect();
            metrics::render(
                &views,
                None,
                Some(reload),
                None,
                &exporter.requests,
                &exporter.build,
            )
            .len()
        });
        let (request_allocs, _, request_micros, _) = per_call(n, || {
            metrics::render(
                &[],
                None,
                Some(reload),
                None,
                &exporter.requests,
                &exporter.build,
            )
            .len()
        });
        let samples = accounts * assets;
        println!(
            "| {accounts} × {assets}{} | {samples} | {size} | {allocs:.0} | {bytes:.0} | {micros:.1} | {:.1} | {:.0}% / {:.0}% | {request_allocs:.0} / {request_micros:.1} |",
            if watched {
                ", watching a missing asset"
            } else {
                ""
            },
            allocs / samples as f64,
            100.0 * render_allocs / allocs,
            100.0 * render_micros / micros,
        );
        drop(exporter);
        drop(app);
        drop(fleet);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario: profile.

/// A group of symbols: its name, and whether a `perf report` symbol belongs to it.
type ProfileGroup = (&'static str, fn(&str) -> bool);

/// How `profile` groups symbols: the first group whose test matches takes the sample; the last
/// takes the rest.
const PROFILE_GROUPS: &[ProfileGroup] = &[
    ("kernel (network, page faults, scheduling)", |s| {
        s.starts_with("[k]")
    }),
    (
        "allocator (malloc, free, realloc and glibc internals)",
        |s| {
            [
                "malloc",
                "free",
                "realloc",
                "unlink_chunk",
                "sysmalloc",
                "alloc_perturb",
                "finish_grow",
                "do_reserve_and_handle",
                "__rust_",
            ]
            .iter()
            .any(|k| s.contains(k))
        },
    ),
    ("float formatting (f64 to text)", |s| {
        s.contains("flt2dec") || s.contains("float_to_decimal") || s.contains("fmt::Formatter")
    }),
    ("memcpy/memmove", |s| {
        s.contains("memmove") || s.contains("memcpy")
    }),
    (
        "prometheus text encoder (write_sample, escape_string, memchr)",
        |s| s.contains("prometheus::encoder") || s.contains("memchr") || s.contains("WriteUtf8"),
    ),
    ("prometheus registry gather (request counters)", |s| {
        s.contains("prometheus::")
    }),
    (
        "exporter: building metric families (metrics::render, family)",
        |s| s.contains("kraken_exporter::metrics"),
    ),
    ("exporter: other (statuses, server)", |s| {
        s.contains("kraken_exporter::")
    }),
    ("hyper and tokio (HTTP, runtime)", |s| {
        s.contains("hyper") || s.contains("tokio")
    }),
    ("other", |_| true),
];

fn profile(bench: &Bench, opts: &Opts) -> Result<(), String> {
    let assets = opts.number("assets", 100) as usize;
    let connections = opts.number("connections", 16) as usize;
    let seconds = opts.number("duration", 6);
    let balances = common::balances(assets);
    let fleet = bench.fleet(
        "profile",
        1,
        &SimOptions::default(),
        Some(&balances),
        "refresh: {interval: 1h}\n",
        "",
    )?;
    let mut exporter = bench.spawn_exporter(&fleet.config, &[])?;
    exporter.wait_ready(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(300));
    let pid = exporter.process.child.id().to_string();
    let data = bench.work.0.join("perf.data");
    let record = Command::new("perf")
        .args(["record", "-F", "1999", "-o"])
        .arg(&data)
        .args(["-p", &pid, "--", "sleep", &(seconds - 1).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf record: {e}"))?;
    let stat_out = bench.work.0.join("perf-stat.txt");
    let stat = Command::new("perf")
        .args([
            "stat",
            "-e",
            "task-clock,context-switches,cpu-migrations,page-faults",
            "-o",
        ])
        .arg(&stat_out)
        .args(["-p", &pid, "--", "sleep", &(seconds - 1).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf stat: {e}"))?;
    let run = wrk(bench, &exporter.url(), connections, seconds, 10)?;
    for mut child in [record, stat] {
        let _ = child.wait();
    }
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--sort",
            "symbol",
            "--fields",
            "overhead,sym",
            "-i",
        ])
        .arg(&data)
        .output()
        .map_err(|e| format!("perf report: {e}"))?;
    let text = String::from_utf8_lossy(&report.stdout);
    let mut samples: Vec<(f64, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (percent, symbol) = l.trim().split_once('%')?;
            // perf pads the line with columns of `-` for the fields it was told to leave out.
            let symbol = symbol.trim().trim_end_matches([' ', '-']);
            Some((percent.trim().parse().ok()?, symbol.to_owned()))
        })
        .collect();
    samples.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups: Vec<(&str, f64)> = PROFILE_GROUPS
        .iter()
        .map(|(name, _)| (*name, 0.0))
        .collect();
    for (percent, symbol) in &samples {
        let group = PROFILE_GROUPS
            .iter()
            .position(|(_, matches)| matches(symbol))
            .unwrap_or(PROFILE_GROUPS.len() - 1);
        groups[group].1 += percent;
    }
    println!(
        "\n## profile: {assets} assets, {connections} connections, {seconds}s; {:.0} req/s during sampling\n",
        run.rps
    );
    println!("| where | share of samples |");
    println!("|---|---|");
    for (name, percent) in groups {
        println!("| {name} | {percent:.1}% |");
    }
    println!("\nTop symbols and `perf stat`:\n");
    println!("```");
    for (percent, symbol) in samples.iter().take(25) {
        println!("{percent:6.2}%  {symbol}");
    }
    print!("{}", std::fs::read_to_string(&stat_out).unwrap_or_default());
    println!("```");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scenario: footprint (in-process).

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn footprint(opts: &Opts) -> Result<(), String> {
    let accounts = opts.number("accounts", 1000) as usize;
    let assets = opts.number("assets", 50) as usize;
    println!(
        "\n## footprint: live heap in-process (counting allocator), {accounts} accounts × {assets} assets\n"
    );
    println!("| what | live heap MiB | per account KiB | allocations |");
    println!("|---|---|---|---|");
    let row = |what: &str, bytes: u64, allocations: u64| {
        println!(
            "| {what} | {:.1} | {:.1} | {allocations} |",
            mib(bytes),
            bytes as f64 / 1024.0 / accounts as f64
        );
    };
    let counters = |endpoints: &[Endpoint], observed: &[Endpoint]| {
        let (a0, _) = allocation_counters();
        let before = live_bytes();
        let requests = RequestMetrics::new();
        for i in 0..accounts {
            let name = common::account_name(i);
            requests.prepare(&name, endpoints);
            for endpoint in observed {
                requests.observe(&name, *endpoint, Duration::from_millis(50), None);
            }
        }
        let (a1, _) = allocation_counters();
        (requests, live_bytes() - before, a1 - a0)
    };
    let (_, bytes, allocations) = counters(
        &[Endpoint::BalanceEx, Endpoint::Balance],
        &[Endpoint::BalanceEx],
    );
    row(
        "request counters, audit off (2 endpoints × 12 counters, 1 histogram)",
        bytes,
        allocations,
    );
    let (requests, bytes, allocations) = counters(
        &[
            Endpoint::BalanceEx,
            Endpoint::Balance,
            Endpoint::GetApiKeyInfo,
            Endpoint::WithdrawMethods,
        ],
        &[Endpoint::BalanceEx, Endpoint::GetApiKeyInfo],
    );
    row(
        "request counters, audit on (4 endpoints × 12 counters, 2 histograms)",
        bytes,
        allocations,
    );
    let (a0, _) = allocation_counters();
    let before = live_bytes();
    let statuses: Vec<_> = (0..accounts)
        .map(|i| common::account_status(&common::account_name(i), assets))
        .collect();
    let (a1, _) = allocation_counters();
    row(
        "account statuses (snapshot of the balances, key audit)",
        live_bytes() - before,
        a1 - a0,
    );

    let build = BuildInfo::current();
    let reload = ReloadView {
        ok: true,
        last_success: SystemTime::now(),
    };
    let no_thresholds = std::collections::BTreeMap::new();
    let views = || -> Vec<AccountView<'_>> {
        statuses
            .iter()
            .map(|status| AccountView {
                status: status.clone(),
                min_balance: &no_thresholds,
                unknown_assets: &[],
            })
            .collect()
    };
    let transient = |render: &dyn Fn() -> Vec<u8>| {
        let before = reset_peak();
        let (a0, _) = allocation_counters();
        let body = render();
        let (a1, _) = allocation_counters();
        (peak_bytes() - before, a1 - a0, body)
    };
    let (bytes, allocations, body) =
        transient(&|| metrics::render(&views(), None, Some(reload), None, &requests, &build));
    row(
        &format!(
            "one render today, transient peak (exposition {:.1} MiB)",
            mib(body.len() as u64)
        ),
        bytes,
        allocations,
    );
    let no_requests = RequestMetrics::new();
    let (bytes, allocations, body) =
        transient(&|| metrics::render(&views(), None, Some(reload), None, &no_requests, &build));
    row(
        "account families only, today, transient peak",
        bytes,
        allocations,
    );
    let help = direct_render::help_texts(&String::from_utf8_lossy(&body));
    let (bytes, allocations, direct) =
        transient(&|| direct_render::render(&views(), reload, &build, &help, body.len()));
    if direct != body {
        return Err("the direct writer must produce the same bytes".into());
    }
    row(
        "account families only, direct writer (bench/direct_render.rs), transient peak",
        bytes,
        allocations,
    );
    Ok(())
}
