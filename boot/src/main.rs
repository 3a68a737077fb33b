//! The `isobar` binary: parses the command line, sets up logging and the process, starts one
//! scheduler per core and turns signals into a graceful drain. Everything else lives in the
//! library crates; this file only wires them together.

mod cli;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use crossbeam_channel::{after, never, select, unbounded};
use kernel_shim::signal::{self, Signal};

use cli::{Cli, Command, Format, RunArgs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The signals the main thread handles; every thread inherits them blocked.
const HANDLED_SIGNALS: &[Signal] = &[Signal::Interrupt, Signal::Terminate, Signal::Hangup];

fn main() -> ExitCode {
    // Block before any thread exists (the logger's included), so only the main thread's
    // sigwait ever sees these signals.
    if let Err(error) = signal::block_process_signals(HANDLED_SIGNALS) {
        eprintln!("isobar: error: cannot block signals: {error}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let _log_guard = init_logging(&cli.log);
    let result = match cli.command {
        Command::Run(args) => run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("isobar: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through a bounded, lossy queue and a writer thread, so a core thread never
/// blocks on a slow terminal or pipe (a flood of console.log drops lines instead).
fn init_logging(filter: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(64 * 1024)
        .thread_name("isobar-log")
        .finish(std::io::stderr());
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("isobar: warning: bad --log filter {filter:?} ({error}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_target(true).with_ansi(ansi).init();
    guard
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let path = args.file.as_path();
    let source =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the worker script {}", path.display()))?;
    let name = args.name.clone().unwrap_or_else(|| worker_name(path));
    let format = match args.format {
        Format::Auto => runtime::ScriptFormat::Auto,
        Format::Module => runtime::ScriptFormat::Module,
        Format::ServiceWorker => runtime::ScriptFormat::ServiceWorker,
    };
    let worker = runtime::WorkerSpec { name: name.clone(), path: path.to_path_buf(), source, format };
    if let Some(flags) = &args.v8_flags {
        runtime::engine::set_extra_flags(flags);
    }

    match kernel_shim::limits::raise_open_files_limit() {
        Ok(files) => tracing::debug!(files, "open files limit"),
        Err(error) => tracing::warn!("cannot raise the open files limit: {error}"),
    }
    let usable = kernel_shim::cpu::usable_cpus().context("cannot read the CPUs this process may run on")?;
    let cores = args.cores.unwrap_or(usable.len());
    if cores == 0 || cores > usable.len() {
        bail!(
            "--cores {cores}: this process may run on {} CPU(s) ({:?}); choose 1..={}",
            usable.len(),
            usable,
            usable.len()
        );
    }
    let cpus: Vec<usize> = usable[..cores].to_vec();

    // The first listener resolves port 0; the others share its address through SO_REUSEPORT,
    // and the kernel spreads new connections over them.
    let first = kernel_shim::net::reuseport_listener(args.listen, 1024)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr =
        kernel_shim::net::local_addr(std::os::fd::AsFd::as_fd(&first)).context("cannot read the listening address")?;
    let mut listeners = vec![first];
    for _ in 1..cores {
        listeners.push(
            kernel_shim::net::reuseport_listener(addr, 1024).with_context(|| format!("cannot listen on {addr}"))?,
        );
    }

    let http = netstack::http1::Limits { body_bytes_max: args.body_limit, ..Default::default() };
    let config = runtime::ServerConfig {
        worker,
        listeners,
        cpus: cpus.clone(),
        http,
        net: Default::default(),
        ring: Default::default(),
    };
    let mut server = runtime::Server::start(config)?;

    let cpu_list: Vec<String> = cpus.iter().map(usize::to_string).collect();
    println!(
        "isobar listening on http://{addr} (worker {name} from {}, {cores} core(s) on CPU {})",
        path.display(),
        cpu_list.join(",")
    );
    let _ = std::io::stdout().flush();

    wait_and_drain(&mut server, Duration::from_secs(args.drain_timeout))
}

/// Serves until SIGINT or SIGTERM, then drains; a second signal exits at once.
fn wait_and_drain(server: &mut runtime::Server, drain_timeout: Duration) -> anyhow::Result<ExitCode> {
    let (signals_tx, signals) = unbounded::<Signal>();
    std::thread::Builder::new()
        .name("isobar-signals".into())
        .spawn(move || {
            while let Ok(sig) = signal::wait_signal(HANDLED_SIGNALS) {
                if signals_tx.send(sig).is_err() {
                    break;
                }
            }
        })
        .context("cannot start the signal thread")?;

    let mut draining_since: Option<Instant> = None;
    let mut exited = 0;
    let mut failed = false;
    loop {
        let timeout = match draining_since {
            Some(since) => after(drain_timeout.saturating_sub(since.elapsed())),
            None => never(),
        };
        select! {
            recv(signals) -> sig => match sig {
                Ok(Signal::Hangup) => tracing::info!("SIGHUP: `isobar run` has no configuration to reload"),
                Ok(sig) => {
                    if draining_since.is_some() {
                        tracing::warn!(?sig, "second signal during drain: exiting now");
                        return Ok(ExitCode::from(130));
                    }
                    tracing::info!(?sig, "draining: no new connections; in-flight requests finish (at most {}s)", drain_timeout.as_secs());
                    server.drain();
                    draining_since = Some(Instant::now());
                }
                Err(_) => bail!("the signal thread stopped"),
            },
            recv(server.events()) -> event => match event {
                Ok(runtime::CoreEvent::Exited { index, result }) => {
                    exited += 1;
                    if let Err(error) = result {
                        tracing::error!(core = index, "core stopped: {error}");
                        failed = true;
                        if draining_since.is_none() {
                            server.drain();
                            draining_since = Some(Instant::now());
                        }
                    }
                    if exited == server.cores() {
                        server.join(Duration::from_secs(1));
                        tracing::info!("drained; exiting");
                        return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
                    }
                }
                Ok(other) => tracing::debug!(?other, "core event"),
                Err(_) => bail!("every core thread is gone"),
            },
            recv(timeout) -> _ => {
                tracing::warn!("drain timeout of {}s reached with requests still in flight; exiting", drain_timeout.as_secs());
                return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
            },
        }
    }
}

/// The file stem of the script: `examples/hello.js` -> `hello`.
fn worker_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "worker".into())
}
