//! One measurement of one server (the load generator's view plus the server's CPU time and
//! context switches from /proc across the same window), and the reduction of repeated
//! measurements to a median and a spread. It owns the client thread's placement; it does not
//! start or stop servers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::load::{self, LoadSpec, Phase};
use crate::procfs;
use crate::servers::Placement;

/// What one window of load showed.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// The round it was taken in (rounds interleave the systems).
    pub round: usize,
    /// 200 responses inside the window.
    pub requests: u64,
    pub failures: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Server CPU time (every thread of every process of the server) per request.
    pub server_cpu_us_per_request: f64,
    /// OS context switches of the server's threads per request.
    pub context_switches_per_request: f64,
    /// Server CPU time over the window's wall time (1.0: its CPU was saturated).
    pub server_cpu_share: f64,
    /// The load generator's own CPU over the window (near 1.0: the client was the limit).
    pub client_cpu_share: f64,
}

impl Measurement {
    /// The figures reduced over rounds, by name.
    pub fn fields(&self) -> [(&'static str, f64); 8] {
        [
            ("requests_per_second", self.requests_per_second),
            ("p50_us", self.p50_us),
            ("p99_us", self.p99_us),
            ("server_cpu_us_per_request", self.server_cpu_us_per_request),
            ("context_switches_per_request", self.context_switches_per_request),
            ("server_cpu_share", self.server_cpu_share),
            ("client_cpu_share", self.client_cpu_share),
            ("failures", self.failures as f64),
        ]
    }
}

/// Median and range of one figure over rounds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        Some(Spread { median, min: sorted[0], max: sorted[n - 1], count: n })
    }
}

/// Repeated measurements of one configuration, round by round; serialized with its summary.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub rounds: Vec<Measurement>,
    /// Measurements that failed, with why.
    pub errors: Vec<String>,
}

impl Series {
    pub fn record(&mut self, round: usize, result: Result<Measurement>) {
        match result {
            Ok(m) => self.rounds.push(Measurement { round, ..m }),
            Err(error) => self.errors.push(format!("{error:#}")),
        }
    }

    pub fn spread(&self, field: &str) -> Option<Spread> {
        let values: Vec<f64> = self
            .rounds
            .iter()
            .filter_map(|m| m.fields().iter().find(|(name, _)| *name == field).map(|(_, v)| *v))
            .collect();
        Spread::of(&values)
    }

    pub fn median(&self, field: &str) -> Option<f64> {
        self.spread(field).map(|s| s.median)
    }

    /// The measurement of round `round`, if it succeeded.
    pub fn round(&self, round: usize) -> Option<&Measurement> {
        self.rounds.iter().find(|m| m.round == round)
    }

    /// Every figure's spread, for the results file.
    pub fn summary(&self) -> BTreeMap<&'static str, Spread> {
        let Some(first) = self.rounds.first() else { return BTreeMap::new() };
        first.fields().iter().filter_map(|(name, _)| self.spread(name).map(|s| (*name, s))).collect()
    }
}

impl Serialize for Series {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("Series", 3)?;
        s.serialize_field("summary", &self.summary())?;
        s.serialize_field("rounds", &self.rounds)?;
        s.serialize_field("errors", &self.errors)?;
        s.end()
    }
}

/// Runs `f` on a new thread placed like `client` (the client CPU, the servers' namespace).
pub fn on_client<T: Send>(client: &Placement, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                client.enter().context("place the client thread")?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the client thread panicked")))
    })
}

/// One window of `spec` against the processes `pids`, from a client thread placed on `client`.
pub fn measure(pids: &[u32], spec: &LoadSpec, client: &Placement) -> Result<Measurement> {
    measure_with_part(pids, &[], spec, client).map(|(measurement, _)| measurement)
}

/// One window, as `measure`, whose server is `pids` and `part` together (a front end and the
/// store behind it, say); the server figures are the sum, and the second value is `part`'s own
/// CPU time per request.
pub fn measure_with_part(
    pids: &[u32],
    part: &[u32],
    spec: &LoadSpec,
    client: &Placement,
) -> Result<(Measurement, f64)> {
    let all: Vec<u32> = pids.iter().chain(part).copied().collect();
    measure_beside(&all, part, client, |probe| load::run(spec, probe))
}

/// One window of whatever load `run` generates (it calls the probe at the window's edges) from
/// a client thread placed on `client`. The server figures are `pids`'; the second value is the
/// CPU time per request of `beside` (processes read apart: a store inside `pids`, or an origin
/// on another CPU outside them).
pub fn measure_beside(
    pids: &[u32],
    beside: &[u32],
    client: &Placement,
    run: impl FnOnce(&mut dyn FnMut(Phase)) -> Result<load::LoadResult> + Send,
) -> Result<(Measurement, f64)> {
    let (all, part) = (pids, beside);
    let usage = Mutex::new([procfs::Usage::default(); 4]);
    let result = on_client(client, || {
        run(&mut |phase| {
            let (now, now_part) = (procfs::usage(all), procfs::usage(part));
            if let Ok(mut edges) = usage.lock() {
                match phase {
                    Phase::Start => (edges[0], edges[2]) = (now, now_part),
                    Phase::End => (edges[1], edges[3]) = (now, now_part),
                }
            }
        })
    })?;
    let [start, end, part_start, part_end] = *usage.lock().map_err(|_| anyhow::anyhow!("usage lock poisoned"))?;
    let server = end.since(start);
    let part_cpu = part_end.since(part_start).cpu;
    let requests = result.requests.max(1) as f64;
    let seconds = result.window.as_secs_f64().max(1e-9);
    anyhow::ensure!(result.requests > 0, "no successful response in the window ({} failures)", result.failures);
    let measurement = Measurement {
        round: 0,
        requests: result.requests,
        failures: result.failures,
        seconds,
        requests_per_second: result.requests_per_second(),
        p50_us: result.percentile_us(0.5),
        p99_us: result.percentile_us(0.99),
        server_cpu_us_per_request: server.cpu.as_secs_f64() * 1e6 / requests,
        context_switches_per_request: server.context_switches as f64 / requests,
        server_cpu_share: server.cpu.as_secs_f64() / seconds,
        client_cpu_share: result.client_cpu.as_secs_f64() / seconds,
    };
    Ok((measurement, part_cpu.as_secs_f64() * 1e6 / requests))
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spread_is_median_min_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.count), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[1.0, 4.0]).unwrap().median, 2.5);
        assert!(Spread::of(&[]).is_none());
    }
}
