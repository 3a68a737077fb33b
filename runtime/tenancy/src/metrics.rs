//! The `/metrics` endpoint's text: every core's counters in the Prometheus/OpenMetrics text
//! format, encoded by the `prometheus-client` crate from the reports the cores send.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::stats::{CACHE_VERBS, CoreStats, KV_VERBS, LimitKind};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the cores' reports as a metrics page.
pub fn render(stats: Vec<CoreStats>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Reports(stats)));
    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Reports(Vec<CoreStats>);

type Labels = Vec<(&'static str, String)>;

/// One metric family: a name, its help, and its samples.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (Labels, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Reports {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cores = &self.0;
        let per_tenant = || {
            cores.iter().flat_map(|core| {
                core.tenants
                    .iter()
                    .map(move |t| (vec![("tenant", t.name.to_string()), ("core", core.core.to_string())], t))
            })
        };
        counter(
            &mut encoder,
            "isobar_tenant_cpu_seconds",
            "CPU time spent in the tenant's isolates (timed around every entry): what the tenant is billed.",
            per_tenant().map(|(l, t)| (l, t.counters.cpu.as_secs_f64())),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_wall_seconds",
            "Wall time from dispatch to response, summed over the tenant's requests.",
            per_tenant().map(|(l, t)| (l, t.counters.wall.as_secs_f64())),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_requests",
            "Requests answered, by response status class.",
            per_tenant().flat_map(|(l, t)| {
                ["1xx", "2xx", "3xx", "4xx", "5xx"].into_iter().zip(t.counters.requests).map(move |(class, n)| {
                    let mut labels = l.clone();
                    labels.push(("class", class.to_string()));
                    (labels, n as f64)
                })
            }),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_bytes_in",
            "Request body bytes received.",
            per_tenant().map(|(l, t)| (l, t.counters.bytes_in as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_bytes_out",
            "Response body bytes sent.",
            per_tenant().map(|(l, t)| (l, t.counters.bytes_out as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_websocket_messages_in",
            "WebSocket messages the tenant's sockets received.",
            per_tenant().map(|(l, t)| (l, t.counters.ws_messages_in as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_websocket_messages_out",
            "WebSocket messages the tenant's scripts sent.",
            per_tenant().map(|(l, t)| (l, t.counters.ws_messages_out as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_subrequests",
            "Subrequests (fetch) started by the tenant.",
            per_tenant().map(|(l, t)| (l, t.counters.subrequests as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_subrequest_bytes_out",
            "Request body bytes the tenant's subrequests sent (bodies given whole).",
            per_tenant().map(|(l, t)| (l, t.counters.subrequest_bytes_out as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_subrequest_bytes_in",
            "Response body bytes the tenant's scripts read from subrequests.",
            per_tenant().map(|(l, t)| (l, t.counters.subrequest_bytes_in as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_scheduled",
            "Cron Trigger firings run (scheduled handler).",
            per_tenant().map(|(l, t)| (l, t.counters.scheduled as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_scheduled_failed",
            "Cron Trigger firings that threw, rejected or hit a limit.",
            per_tenant().map(|(l, t)| (l, t.counters.scheduled_failed as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_kv_operations",
            "KV operations the tenant's scripts made, by verb (get, put, delete, list).",
            per_tenant().flat_map(|(l, t)| {
                KV_VERBS.into_iter().zip(t.counters.kv_operations).map(move |(verb, n)| {
                    let mut labels = l.clone();
                    labels.push(("verb", verb.to_string()));
                    (labels, n as f64)
                })
            }),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_kv_errors",
            "KV operations that failed (a Workers limit, or the store unavailable).",
            per_tenant().map(|(l, t)| (l, t.counters.kv_errors as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_kv_bytes_read",
            "Value and metadata bytes the tenant's KV gets returned.",
            per_tenant().map(|(l, t)| (l, t.counters.kv_bytes_read as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_kv_bytes_written",
            "Key, value and metadata bytes the tenant's KV puts stored.",
            per_tenant().map(|(l, t)| (l, t.counters.kv_bytes_written as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_cache_operations",
            "Cache API operations the tenant's scripts made, by verb (match, put, delete).",
            per_tenant().flat_map(|(l, t)| {
                CACHE_VERBS.into_iter().zip(t.counters.cache_operations).map(move |(verb, n)| {
                    let mut labels = l.clone();
                    labels.push(("verb", verb.to_string()));
                    (labels, n as f64)
                })
            }),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_cache_hits",
            "Cache API matches that found a fresh entry.",
            per_tenant().map(|(l, t)| (l, t.counters.cache_hits as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_cache_misses",
            "Cache API lookups (GET matches, or any with ignoreMethod) that found nothing fresh.",
            per_tenant().map(|(l, t)| (l, t.counters.cache_misses as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_cache_errors",
            "Cache API operations that failed (a response over the entry limit, the store's queue full).",
            per_tenant().map(|(l, t)| (l, t.counters.cache_errors as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_tenant_limit_exceeded",
            "Requests stopped by a limit (cpu, heap, wall, concurrency).",
            per_tenant().flat_map(|(l, t)| {
                LimitKind::ALL.into_iter().zip(t.counters.limits_exceeded).map(move |(kind, n)| {
                    let mut labels = l.clone();
                    labels.push(("limit", kind.label().to_string()));
                    (labels, n as f64)
                })
            }),
        )?;
        gauge(
            &mut encoder,
            "isobar_tenant_isolates",
            "The tenant's isolates alive on the core.",
            per_tenant().map(|(l, t)| (l, t.isolates as i64)),
        )?;
        gauge(
            &mut encoder,
            "isobar_tenant_heap_bytes",
            "V8 heap in use plus ArrayBuffer memory of the tenant's isolates.",
            per_tenant().map(|(l, t)| (l, t.heap_bytes as i64)),
        )?;
        gauge(
            &mut encoder,
            "isobar_tenant_in_flight",
            "The tenant's requests in flight on the core.",
            per_tenant().map(|(l, t)| (l, t.in_flight as i64)),
        )?;
        let per_core = || cores.iter().map(|c| (vec![("core", c.core.to_string())], c));
        gauge(
            &mut encoder,
            "isobar_core_isolates",
            "Isolates alive on the core, pooled ones included.",
            per_core().map(|(l, c)| (l, c.isolates as i64)),
        )?;
        gauge(
            &mut encoder,
            "isobar_core_pool_isolates",
            "Isolates made ahead of need, waiting for a tenant.",
            per_core().map(|(l, c)| (l, c.pool as i64)),
        )?;
        gauge(
            &mut encoder,
            "isobar_core_connections",
            "Open client connections.",
            per_core().map(|(l, c)| (l, c.open_conns as i64)),
        )?;
        counter(
            &mut encoder,
            "isobar_core_isolates_created",
            "Tenant isolates created.",
            per_core().map(|(l, c)| (l, c.isolates_created as f64)),
        )?;
        counter(
            &mut encoder,
            "isobar_core_isolates_evicted",
            "Tenant isolates evicted to stay within the core's budget.",
            per_core().map(|(l, c)| (l, c.isolates_evicted as f64)),
        )?;
        gauge(
            &mut encoder,
            "isobar_core_isolate_groups",
            "Isolate groups alive, each a pointer-compression cage (0 without pointer compression).",
            per_core().map(|(l, c)| (l, c.isolate_groups as i64)),
        )?;
        counter(
            &mut encoder,
            "isobar_unrouted_requests",
            "Requests no route matched (answered 404 by isobar).",
            per_core().map(|(l, c)| (l, c.unrouted as f64)),
        )?;
        let refused = || {
            cores.iter().flat_map(|c| {
                let r = c.conns_refused;
                [("table_full", r.table_full), ("per_client", r.per_client), ("total", r.total)]
                    .map(|(reason, n)| (vec![("core", c.core.to_string()), ("reason", reason.to_string())], n as f64))
            })
        };
        counter(
            &mut encoder,
            "isobar_connections_refused",
            "Connections closed or reset at accept: the core's table full, the client at its cap, the process at its cap.",
            refused(),
        )?;
        counter(
            &mut encoder,
            "isobar_tls_handshakes",
            "TLS handshakes completed on the HTTPS listener.",
            per_core().map(|(l, c)| (l, c.tls.handshakes as f64)),
        )?;
        let tls_failures = || {
            cores.iter().flat_map(|c| {
                [("error", c.tls.errors), ("handshake_timeout", c.tls.handshake_timeouts)]
                    .map(|(reason, n)| (vec![("core", c.core.to_string()), ("reason", reason.to_string())], n as f64))
            })
        };
        counter(
            &mut encoder,
            "isobar_tls_failures",
            "TLS connections closed by the server: their session failed (a bad ClientHello, no certificate for the name, a broken record) or their handshake did not finish in time.",
            tls_failures(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::render;
    use crate::stats::{CoreStats, TenantCounters, TenantStats};

    #[test]
    fn renders_tenant_and_core_series() {
        let mut counters = TenantCounters { cpu: Duration::from_millis(1500), ..Default::default() };
        counters.count_status(200);
        counters.count_status(503);
        counters.count_limit(crate::stats::LimitKind::Cpu);
        counters.count_cache("put");
        counters.count_cache("match");
        counters.count_cache("match");
        counters.cache_hits = 1;
        counters.cache_misses = 1;
        let stats = vec![CoreStats {
            core: 1,
            tenants: vec![TenantStats { name: "shop".into(), counters, isolates: 2, heap_bytes: 4096, in_flight: 0 }],
            isolates: 5,
            pool: 3,
            isolates_created: 7,
            isolates_evicted: 4,
            isolate_groups: 2,
            unrouted: 9,
            open_conns: 1,
            conns_refused: crate::stats::RefusedConns { table_full: 0, per_client: 6, total: 2 },
            tls: crate::stats::TlsCounters { handshakes: 11, errors: 3, handshake_timeouts: 1 },
        }];
        let text = render(stats);
        assert!(text.contains("isobar_tenant_cpu_seconds_total{tenant=\"shop\",core=\"1\"} 1.5"), "{text}");
        assert!(text.contains("isobar_tenant_requests_total{tenant=\"shop\",core=\"1\",class=\"2xx\"} 1"), "{text}");
        assert!(text.contains("isobar_tenant_requests_total{tenant=\"shop\",core=\"1\",class=\"5xx\"} 1"), "{text}");
        assert!(
            text.contains("isobar_tenant_limit_exceeded_total{tenant=\"shop\",core=\"1\",limit=\"cpu\"} 1"),
            "{text}"
        );
        assert!(text.contains("isobar_tenant_isolates{tenant=\"shop\",core=\"1\"} 2"), "{text}");
        assert!(
            text.contains("isobar_tenant_cache_operations_total{tenant=\"shop\",core=\"1\",verb=\"match\"} 2"),
            "{text}"
        );
        assert!(text.contains("isobar_tenant_cache_hits_total{tenant=\"shop\",core=\"1\"} 1"), "{text}");
        assert!(text.contains("isobar_tenant_cache_misses_total{tenant=\"shop\",core=\"1\"} 1"), "{text}");
        assert!(text.contains("isobar_core_isolates_evicted_total{core=\"1\"} 4"), "{text}");
        assert!(text.contains("isobar_core_isolate_groups{core=\"1\"} 2"), "{text}");
        assert!(text.contains("isobar_unrouted_requests_total{core=\"1\"} 9"), "{text}");
        assert!(text.contains("isobar_connections_refused_total{core=\"1\",reason=\"per_client\"} 6"), "{text}");
        assert!(text.contains("isobar_connections_refused_total{core=\"1\",reason=\"total\"} 2"), "{text}");
        assert!(text.contains("isobar_tls_handshakes_total{core=\"1\"} 11"), "{text}");
        assert!(text.contains("isobar_tls_failures_total{core=\"1\",reason=\"error\"} 3"), "{text}");
        assert!(text.contains("isobar_tls_failures_total{core=\"1\",reason=\"handshake_timeout\"} 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
