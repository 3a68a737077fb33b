//! Starts one scheduler thread per core and lets the main thread drain and join them.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use kernel_shim::EventFd;
use kernel_shim::ring::RingConfig;
use netstack::NetLimits;
use netstack::http1;

use crate::scheduler::{Command, Core, CoreConfig, CoreError};
use crate::worker::WorkerSpec;

/// What the main thread asks for.
#[derive(Debug)]
pub struct ServerConfig {
    pub worker: WorkerSpec,
    /// One listener per core, all bound to the same address with SO_REUSEPORT.
    pub listeners: Vec<OwnedFd>,
    /// The CPUs to pin the cores to, one per listener.
    pub cpus: Vec<usize>,
    pub http: http1::Limits,
    pub net: NetLimits,
    pub ring: RingConfig,
}

/// A core's life as the main thread sees it.
#[derive(Debug)]
pub enum CoreEvent {
    Ready {
        index: usize,
    },
    /// Start-up failed; the message names the cause.
    Failed {
        index: usize,
        error: CoreError,
    },
    /// The loop ended: `Ok` after a drain, `Err` if its ring failed.
    Exited {
        index: usize,
        result: Result<(), String>,
    },
}

#[derive(Debug)]
struct CoreHandle {
    mailbox: Sender<Command>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

/// The running cores.
#[derive(Debug)]
pub struct Server {
    cores: Vec<CoreHandle>,
    events: Receiver<CoreEvent>,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Core(CoreError),
    #[error("cannot create a core's wake-up eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot spawn a core thread: {0}")]
    Spawn(std::io::Error),
    #[error("a core thread stopped during start-up")]
    Vanished,
}

impl Server {
    /// Spawns the cores and waits until every one is ready (or one fails).
    pub fn start(config: ServerConfig) -> Result<Server, StartError> {
        assert_eq!(config.listeners.len(), config.cpus.len(), "one listener per core");
        let (events_tx, events) = bounded::<CoreEvent>(config.cpus.len() * 4 + 4);
        let mut cores = Vec::new();
        for (index, (listener, cpu)) in config.listeners.into_iter().zip(config.cpus).enumerate() {
            let (mailbox_tx, mailbox_rx) = bounded::<Command>(16);
            let wake = Arc::new(EventFd::new().map_err(StartError::EventFd)?);
            let core_config = CoreConfig {
                index,
                cpu,
                listener,
                worker: config.worker.clone(),
                http: config.http,
                net: config.net,
                ring: config.ring,
            };
            let events_tx = events_tx.clone();
            let core_wake = wake.clone();
            let thread = std::thread::Builder::new()
                .name(format!("isobar-core-{index}"))
                .spawn(move || {
                    let core = match Core::new(core_config, mailbox_rx, core_wake) {
                        Ok(core) => core,
                        Err(error) => {
                            let _ = events_tx.send(CoreEvent::Failed { index, error });
                            return;
                        }
                    };
                    let _ = events_tx.send(CoreEvent::Ready { index });
                    let result = core.run().map_err(|e| e.to_string());
                    let _ = events_tx.send(CoreEvent::Exited { index, result });
                })
                .map_err(StartError::Spawn)?;
            cores.push(CoreHandle { mailbox: mailbox_tx, wake, thread: Some(thread) });
        }
        drop(events_tx);
        let mut server = Server { cores, events };
        let mut ready = 0;
        while ready < server.cores.len() {
            match server.events.recv() {
                Ok(CoreEvent::Ready { .. }) => ready += 1,
                Ok(CoreEvent::Failed { error, .. }) => {
                    server.drain();
                    server.join(Duration::from_secs(5));
                    return Err(StartError::Core(error));
                }
                Ok(CoreEvent::Exited { .. }) | Err(_) => {
                    server.drain();
                    return Err(StartError::Vanished);
                }
            }
        }
        Ok(server)
    }

    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// Events from the cores after start-up (an unexpected exit, for instance).
    pub fn events(&self) -> &Receiver<CoreEvent> {
        &self.events
    }

    /// Asks every core to drain: stop accepting, answer what is in flight, then stop.
    pub fn drain(&self) {
        for core in &self.cores {
            // A full mailbox means a drain is already queued.
            let _ = core.mailbox.try_send(Command::Drain);
            let _ = core.wake.notify();
        }
    }

    /// Waits for the cores to stop, at most `timeout`. Returns how many were still running.
    pub fn join(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let running = self.cores.iter().filter(|c| c.thread.as_ref().is_some_and(|t| !t.is_finished())).count();
            if running == 0 {
                for core in &mut self.cores {
                    if let Some(thread) = core.thread.take() {
                        let _ = thread.join();
                    }
                }
                return 0;
            }
            if Instant::now() >= deadline {
                return running;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
