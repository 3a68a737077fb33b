//! Scenario 7, Cron Triggers' firing jitter (issue 10's "Measure"): `isobar serve` with
//! several cores and one tenant whose `crons = ["* * * * *"]`, watched over N minute
//! boundaries (10 in full mode; it takes that long in wall time, so it runs only when asked
//! for with `--only cron`). The tenant's `scheduled()` reads `Date.now()` first (isobar freezes
//! it while an event runs, so it is the time the handler started) and reports it with
//! `controller.scheduledTime` by a `fetch()` to a listener the harness runs on loopback (the
//! tenant's `[egress] allow` names 127.0.0.1, which `serve` refuses otherwise).
//!
//! Jitter is handler start minus the minute it stood for; the listener's own clock gives the
//! arrival of the report as well (jitter plus the subrequest). Every boundary in the window
//! must fire exactly once however many cores there are: the result lists the missing and the
//! duplicated ones. The machine is not otherwise loaded by the harness while it waits.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::Context;
use crate::measure::{Spread, on_client};
use crate::servers::{IsobarTenants, Launcher, Placement, Ports};

/// Reports the listener takes at most (ten minutes fire ten; anything far beyond is a bug).
const REPORTS_MAX: usize = 1000;
/// How long after the last boundary a late or duplicated firing is still waited for.
const GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Serialize)]
pub struct CronResults {
    /// Minute boundaries watched.
    pub minutes: usize,
    pub cores: usize,
    pub error: Option<String>,
    /// The boundaries watched (ms since the epoch), first and last.
    pub window_ms: Option<(u64, u64)>,
    /// Every report the listener received, in order.
    pub firings: Vec<Firing>,
    /// Boundaries that fired exactly once.
    pub fired_once: usize,
    pub missing: Vec<u64>,
    pub duplicated: Vec<u64>,
    /// Reports for minutes outside the window (the one isobar may fire while it starts).
    pub outside_window: usize,
    /// Handler start minus scheduledTime, over the window's firings.
    pub jitter_ms: Option<Spread>,
    /// The listener's receipt minus scheduledTime.
    pub arrival_ms: Option<Spread>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Firing {
    pub cron: String,
    pub scheduled_ms: u64,
    /// `Date.now()` at the start of `scheduled()`.
    pub handler_ms: u64,
    /// When the listener accepted the report (microsecond precision: `Date.now()` counts whole
    /// milliseconds, so a jitter of 0 means under 1 ms, and this bounds it from above).
    pub received_ms: f64,
}

pub fn run(ctx: &mut Context) -> CronResults {
    let cores = ctx.usable_cpus.len().clamp(1, 2);
    let mut results = CronResults {
        minutes: ctx.plan.cron_minutes,
        cores,
        error: None,
        window_ms: None,
        firings: vec![],
        fired_once: 0,
        missing: vec![],
        duplicated: vec![],
        outside_window: 0,
        jitter_ms: None,
        arrival_ms: None,
    };
    if let Err(error) = watch(ctx, cores, &mut results) {
        results.error = Some(format!("{error:#}"));
    }
    results
}

fn watch(ctx: &mut Context, cores: usize, results: &mut CronResults) -> Result<()> {
    let listener_addr = SocketAddr::new(ctx.launcher.ip, ctx.launcher.ports.take(1)?);
    let listener = TcpListener::bind(listener_addr).with_context(|| format!("listen on {listener_addr}"))?;
    let reports = std::thread::spawn(move || listen(listener));

    // The server may use every CPU the harness may (not just the server CPU): several cores.
    let mut launcher = Launcher {
        work: ctx.work.join("cron"),
        ports: Ports::new(),
        placement: Placement { cpus: ctx.usable_cpus[..cores].to_vec(), netns: None },
        ip: ctx.launcher.ip,
    };
    let mut spec = IsobarTenants::new("cron", &ctx.isobar, 1);
    spec.cores = cores;
    spec.script = Box::new(move |_| script(listener_addr));
    spec.config_toml = format!("[egress]\nallow = [\"{}/32\"]\n", listener_addr.ip());
    spec.tenant_toml = "crons = [\"* * * * *\"]\n".into();
    let watched = launcher.isobar_tenants(&spec).and_then(|mut server| {
        on_client(&ctx.client, || {
            server.wait_listening(Duration::from_secs(60))?;
            server.warm_up("/", Some("cron bench\n"))
        })?;
        let ready = now_ms();
        let first = (ready / 60_000 + 1) * 60_000;
        let last = first + (results.minutes.max(1) as u64 - 1) * 60_000;
        results.window_ms = Some((first, last));
        let deadline = Instant::now() + Duration::from_millis(last - ready) + GRACE;
        eprintln!(
            "harness: cron: watching {} minute boundaries on {cores} cores, until {}",
            results.minutes,
            humantime::format_rfc3339_seconds(SystemTime::now() + deadline.saturating_duration_since(Instant::now()))
        );
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now())));
            server.check_alive()?;
        }
        Ok(())
    });
    // Stop the listener (one request to itself) whatever happened, and take its reports.
    // Without the stop request the listener would wait in accept forever: it is left to end
    // with the process then, unjoined.
    TcpStream::connect_timeout(&listener_addr, Duration::from_secs(5))
        .and_then(|mut s| s.write_all(b"GET /stop HTTP/1.1\r\nhost: harness\r\n\r\n"))
        .context("stop the cron listener")?;
    let Ok(firings) = reports.join() else { bail!("the cron listener panicked") };
    results.firings = firings;
    watched?;
    analyse(results);
    Ok(())
}

/// The tenant: `scheduled()` reports its start and its minute to the harness.
fn script(report: SocketAddr) -> String {
    format!(
        "// The cron scenario's Worker (bench/src/bin/harness/cron.rs).\n\
         export default {{\n  async fetch() {{\n    return new Response(\"cron bench\\n\");\n  }},\n  \
         async scheduled(controller, env, ctx) {{\n    const now = Date.now();\n    \
         const query = `cron=${{encodeURIComponent(controller.cron)}}&scheduled=${{controller.scheduledTime}}&now=${{now}}`;\n    \
         const response = await fetch(`http://{report}/fired?${{query}}`);\n    await response.arrayBuffer();\n  }},\n}};\n"
    )
}

/// Takes reports until `/stop` (or `REPORTS_MAX`): one request per connection.
fn listen(listener: TcpListener) -> Vec<Firing> {
    let mut firings = Vec::new();
    for _ in 0..REPORTS_MAX {
        let Ok((mut stream, _)) = listener.accept() else { continue };
        let received_ms = now_us() as f64 / 1000.0;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let Some(target) = read_target(&mut stream) else { continue };
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        if target.starts_with("/stop") {
            break;
        }
        if let Some(firing) = parse_report(&target, received_ms) {
            firings.push(firing);
        }
    }
    firings
}

/// The request target of one request (its head read whole, at most 8 KiB).
fn read_target(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    while buffer.len() < 8 * 1024 {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer) {
            Ok(httparse::Status::Complete(_)) => return request.path.map(str::to_string),
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return None,
        }
    }
    None
}

fn parse_report(target: &str, received_ms: f64) -> Option<Firing> {
    let query = target.strip_prefix("/fired?")?;
    let param = |name: &str| {
        query.split('&').find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    };
    let cron = param("cron")?.replace("%20", " ").replace("%2F", "/").replace("%2A", "*");
    Some(Firing {
        cron,
        scheduled_ms: param("scheduled")?.parse().ok()?,
        handler_ms: param("now")?.parse().ok()?,
        received_ms,
    })
}

fn analyse(results: &mut CronResults) {
    let Some((first, last)) = results.window_ms else { return };
    let inside: Vec<&Firing> =
        results.firings.iter().filter(|f| f.scheduled_ms >= first && f.scheduled_ms <= last).collect();
    results.outside_window = results.firings.len() - inside.len();
    for minute in (first..=last).step_by(60_000) {
        match inside.iter().filter(|f| f.scheduled_ms == minute).count() {
            0 => results.missing.push(minute),
            1 => results.fired_once += 1,
            _ => results.duplicated.push(minute),
        }
    }
    let ms = |f: &dyn Fn(&Firing) -> f64| -> Vec<f64> { inside.iter().map(|x| f(x) - x.scheduled_ms as f64).collect() };
    results.jitter_ms = Spread::of(&ms(&|f| f.handler_ms as f64));
    results.arrival_ms = Spread::of(&ms(&|f| f.received_ms));
}

fn now_ms() -> u64 {
    now_us() / 1000
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_parsed_and_minutes_checked() {
        let firing = parse_report("/fired?cron=*%20*%20*%20*%20*&scheduled=120000&now=120004", 120_009.5).unwrap();
        assert_eq!((firing.cron.as_str(), firing.scheduled_ms, firing.handler_ms), ("* * * * *", 120_000, 120_004));
        assert!(parse_report("/other", 0.0).is_none());
        let f = |scheduled_ms: u64, late: u64| Firing {
            cron: "* * * * *".into(),
            scheduled_ms,
            handler_ms: scheduled_ms + late,
            received_ms: (scheduled_ms + late) as f64 + 0.5,
        };
        let mut results = CronResults {
            minutes: 3,
            cores: 2,
            error: None,
            window_ms: Some((60_000, 180_000)),
            firings: vec![f(0, 1), f(60_000, 2), f(60_000, 9), f(180_000, 4)],
            fired_once: 0,
            missing: vec![],
            duplicated: vec![],
            outside_window: 0,
            jitter_ms: None,
            arrival_ms: None,
        };
        analyse(&mut results);
        assert_eq!((results.fired_once, results.outside_window), (1, 1));
        assert_eq!((results.missing.as_slice(), results.duplicated.as_slice()), (&[120_000][..], &[60_000][..]));
        let jitter = results.jitter_ms.unwrap();
        assert_eq!((jitter.median, jitter.max, jitter.count), (4.0, 9.0, 3));
    }
}
