//! The `fixrx-realtime` binary: configuration from the environment, bind, serve.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use fixrx_realtime::{Config, telemetry};

/// Real-time event server for FixRX (Socket.IO). Configured with environment
/// variables and an optional `.env` file; see docs/configuration.md and .env.example.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Validate the configuration, print it (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("fixrx-realtime: .env: {e}");
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fixrx-realtime: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("{config:#?}");
        return ExitCode::SUCCESS;
    }
    telemetry::init(&config.log);

    // Built after the configuration is read: WORKER_THREADS sizes it.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        runtime.worker_threads(n);
    }
    match runtime.enable_all().build() {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(e) => {
            eprintln!("fixrx-realtime: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// One glibc malloc arena for the whole process, unless `MALLOC_ARENA_MAX` says otherwise.
/// glibc gives threads that contend for the heap arenas of their own (up to 8 per core),
/// and idle connections' memory then spreads over partly empty arenas: one arena holds
/// about 500 bytes less per idle connection, at no CPU cost the benchmarks can measure
/// (docs/benchmarks.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn one_malloc_arena() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: runs first in `main`, before any other thread exists; `mallopt` only sets
        // a parameter of glibc's allocator, which glibc itself applied already when the
        // variable is set.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

async fn serve(config: Config) -> ExitCode {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fixrx-realtime: cannot listen on {addr} (PORT/HOST): {e}");
            return ExitCode::from(1);
        }
    };
    let internal = match config.internal_port {
        None => None,
        Some(port) => {
            let addr = SocketAddr::new(config.host, port);
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("fixrx-realtime: cannot listen on {addr} (INTERNAL_PORT/HOST): {e}");
                    return ExitCode::from(1);
                }
            }
        }
    };
    let listeners = fixrx_realtime::Listeners { public: listener, internal };
    match fixrx_realtime::run(listeners, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fixrx-realtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
