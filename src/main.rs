//! `kraken_exporter`: parses flags, sets up logging, and hands over to the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use kraken_exporter::cli::{Cli, Command};
use kraken_exporter::{app, check, config, logging, mixin};

/// Configuration mistakes exit with 2, like flag errors.
const EXIT_CONFIG: u8 = 2;
/// A failed `check` or a failure to start serving.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Mixin(args)) = &cli.command {
        return write_mixin(args);
    }
    logging::init(cli.flags.log_level, cli.flags.log_format);
    let flags = cli.flags.clone();
    let env: app::SharedEnv = Arc::new(|name: &str| std::env::var(name).ok());
    let config = match config::resolve(cli, &*env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kraken_exporter: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Test builds only: a panic with the whole configuration in scope, so the tests can show
    // that a panic message never carries a credential. Release builds have no such switch.
    #[cfg(debug_assertions)]
    if std::env::var_os("KRAKEN_EXPORTER_TEST_PANIC").is_some() {
        panic!("forced panic for testing, configuration: {config:?}");
    }
    if config.check_config {
        let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
        println!(
            "configuration OK: {} account(s): {}",
            names.len(),
            names.join(", ")
        );
        for account in &config.accounts {
            println!("  {}: {}", account.name, account.thresholds_summary());
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("kraken_exporter: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        if config.check {
            let ok = check::run(
                config,
                flags,
                env,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            )
            .await?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            });
        }
        let listener = bind(config.web.listen_address).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e}; choose another --web.listen-address",
                config.web.listen_address
            )
        })?;
        app::run(config, flags, env, listener, shutdown_signal()).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kraken_exporter: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `kraken_exporter mixin`: needs no configuration, credentials or network.
fn write_mixin(args: &kraken_exporter::cli::MixinArgs) -> ExitCode {
    let settings = mixin::MixinSettings {
        job_selector: args.job_selector.clone(),
        runbook_url: args.runbook_url.clone(),
        key_rotation_days: args.key_rotation_days,
    };
    match mixin::write(&args.out, &settings) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error @ mixin::MixinError::Write { .. }) => {
            eprintln!("kraken_exporter mixin: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(error) => {
            eprintln!("kraken_exporter mixin: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Binds the listener. Every interface (`[::]`) falls back to every IPv4 interface on a host
/// without IPv6.
async fn bind(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(address).await {
        Err(error) if address.ip() == std::net::Ipv6Addr::UNSPECIFIED => {
            let v4 = std::net::SocketAddr::from(([0, 0, 0, 0], address.port()));
            tokio::net::TcpListener::bind(v4).await.map_err(|_| error)
        }
        other => other,
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutdown signal received");
}
