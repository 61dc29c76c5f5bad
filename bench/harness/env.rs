//! The bench environment: binary, CPUs, runtime of the simulated Krakens, scratch directory,
//! exporter child processes.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kraken::Endpoint;
use kraken::sim::{SimKraken, SimOptions};

use crate::common;
use crate::http::get_once;

/// What every scenario needs.
pub(crate) struct Bench {
    /// The exporter binary under test.
    pub(crate) exporter_bin: PathBuf,
    /// CPU of the server under test (`None`: no pinning).
    pub(crate) server_cpu: Option<usize>,
    /// Runtime of the simulated Krakens and of the in-process exporter of `alloc`.
    pub(crate) runtime: tokio::runtime::Runtime,
    /// Scratch files; removed at exit.
    pub(crate) work: TempDir,
}

impl Bench {
    pub(crate) fn new() -> Result<Bench, String> {
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
    pub(crate) fn server_command(&self, program: &Path) -> Command {
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
    pub(crate) fn spawn_exporter(&self, config: &Path, extra: &[&str]) -> Result<Exporter, String> {
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
    pub(crate) fn fleet(
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
pub(crate) struct Fleet {
    /// One per account, in the order of the config file.
    pub(crate) sims: Vec<SimKraken>,
    /// The config file.
    pub(crate) config: PathBuf,
}

impl Fleet {
    /// Calls of `method` that reached all the simulated Krakens together.
    pub(crate) fn calls(&self, method: Endpoint) -> u64 {
        self.sims.iter().map(|sim| sim.calls(method)).sum()
    }
}

/// A running exporter.
pub(crate) struct Exporter {
    /// The child process.
    pub(crate) process: Process,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// When it was spawned.
    pub(crate) started: Instant,
    /// Its log file.
    pub(crate) log: PathBuf,
}

impl Exporter {
    /// Waits until `/-/ready` answers 200; returns the time since spawning.
    pub(crate) fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, String> {
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

    pub(crate) fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// One `/metrics` body, which must answer 200.
    pub(crate) fn metrics(&self) -> Result<String, String> {
        match get_once(self.addr, "/metrics") {
            Ok((200, body)) => String::from_utf8(body).map_err(|e| e.to_string()),
            Ok((status, _)) => Err(format!("/metrics answered {status}")),
            Err(error) => Err(format!("/metrics: {error}")),
        }
    }

    /// Resident memory now (VmRSS) and at its peak (VmHWM), in KiB.
    pub(crate) fn memory(&self) -> (u64, u64) {
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
pub(crate) struct Process {
    pub(crate) child: Child,
}

impl Process {
    pub(crate) fn spawn(mut command: Command, log: &Path, what: &str) -> Result<Process, String> {
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
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> Result<TempDir, String> {
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
pub(crate) fn write_private(path: &Path, text: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    Ok(path.to_owned())
}

/// The last lines of a log file, for error messages.
pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// A port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> Result<SocketAddr, String> {
    let listener = StdListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// Raises the soft limit of open files to the hard limit: 1,000 simulated Krakens and 1,000
/// `wrk` connections need a few thousand descriptors. Children inherit it.
pub(crate) fn raise_open_files_limit() {
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
pub(crate) fn pin_this_process(cpu: usize) {
    // SAFETY: the set is zero-initialised and filled by the libc macros before use.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
