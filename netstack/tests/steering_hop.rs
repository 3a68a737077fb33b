//! The cost of one hop of port steering, measured (not asserted): a 1500-byte frame forwarded
//! through [`Forwarder`] to another core that sleeps in its ring's wait on an eventfd, as a
//! scheduler core does, and forwarded back. Run:
//!
//! ```text
//! cargo test -p netstack --release --test steering_hop -- --ignored --nocapture
//! ```
//!
//! The figures are in docs/why-port-steering.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel_shim::EventFd;
use kernel_shim::ring::{CompletionData, Op, Ring, RingConfig};
use netstack::Forwarder;

const ROUND_TRIPS: usize = 20_000;

/// Sleeps in the ring until woken, then hands every frame in the inbox to `handle`.
struct Core {
    ring: Ring,
    wake: Arc<Vec<EventFd>>,
    index: usize,
}

impl Core {
    fn new(wake: Arc<Vec<EventFd>>, index: usize) -> Core {
        let ring = Ring::new(RingConfig { entries: 8, recv_buffers: 0, recv_buffer_bytes: 0 }).unwrap();
        let mut core = Core { ring, wake, index };
        core.arm(Vec::with_capacity(EventFd::READ_BYTES));
        core
    }

    fn arm(&mut self, mut buf: Vec<u8>) {
        buf.clear();
        self.ring.submit(Op::Read { fd: self.wake[self.index].fd(), buf }, 0);
    }

    fn sleep(&mut self) {
        let mut completions = Vec::new();
        self.ring.wait(None, &mut completions).unwrap();
        for completion in completions {
            if let CompletionData::Buffer(buf) = completion.data {
                self.arm(buf);
            }
        }
    }
}

#[test]
#[ignore = "a measurement: cargo test -p netstack --release --test steering_hop -- --ignored --nocapture"]
fn one_hop_of_port_steering() {
    let cpus = kernel_shim::cpu::usable_cpus().unwrap();
    let wake: Arc<Vec<EventFd>> = Arc::new((0..2).map(|_| EventFd::new().unwrap()).collect());
    let notify = Arc::clone(&wake);
    let mut mesh = Forwarder::mesh(2, 1024, Arc::new(move |core| notify[core].notify().unwrap()));
    let mut second = mesh.pop().unwrap();
    let mut first = mesh.pop().unwrap();

    let echo_wake = Arc::clone(&wake);
    let echo_cpu = cpus.get(1).copied();
    let echo = std::thread::spawn(move || {
        if let Some(cpu) = echo_cpu {
            kernel_shim::cpu::pin_current_thread(cpu).unwrap();
        }
        let mut core = Core::new(echo_wake, 1);
        let mut echoed = 0;
        while echoed < ROUND_TRIPS {
            core.sleep();
            while let Some(frame) = second.try_recv() {
                assert!(second.send(0, frame));
                echoed += 1;
            }
            second.flush_wakes();
        }
    });

    kernel_shim::cpu::pin_current_thread(cpus[0]).unwrap();
    let mut core = Core::new(Arc::clone(&wake), 0);
    let frame = vec![0x5a; 1500];
    let mut hops = Vec::with_capacity(ROUND_TRIPS);
    let mut sender = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        // What the receiving core pays to steer one frame away: the copy, the channel, the wake.
        assert!(first.send(1, frame.clone()));
        first.flush_wakes();
        sender.push(start.elapsed());
        let back = loop {
            if let Some(back) = first.try_recv() {
                break back;
            }
            core.sleep();
        };
        assert_eq!(back.len(), 1500);
        hops.push(start.elapsed() / 2);
    }
    echo.join().unwrap();
    let percentile = |samples: &mut Vec<Duration>, p: usize| {
        samples.sort();
        samples[samples.len() * p / 100]
    };
    println!(
        "one hop, frame to a sleeping core ({ROUND_TRIPS} round trips / 2): p50 {:?}, p90 {:?}, p99 {:?}",
        percentile(&mut hops, 50),
        percentile(&mut hops, 90),
        percentile(&mut hops, 99),
    );
    println!(
        "the forwarding core's own cost (copy + channel + eventfd wake): p50 {:?}, p99 {:?}",
        percentile(&mut sender, 50),
        percentile(&mut sender, 99),
    );
}
