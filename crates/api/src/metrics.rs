//! Prometheus metrics, hand-rolled with atomics (no metrics framework): requests by
//! route template and status, a latency histogram per route, appended events,
//! erasures, idempotent replays, and the projection lag computed at scrape time.
//!
//! Labels are route templates (`/v1/customers/{id}`) and status codes, never a
//! concrete path: ids (and anything else a client puts in a URL) stay out.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct RouteStats {
    /// Counts by status code (index = status - 100).
    by_status: Vec<AtomicU64>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl RouteStats {
    fn new() -> Self {
        Self {
            by_status: (0..500).map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    routes: RwLock<HashMap<(String, &'static str), Arc<RouteStats>>>,
    pub appends: AtomicU64,
    pub erasures: AtomicU64,
    pub erasure_refusals: AtomicU64,
    pub idempotent_replays: AtomicU64,
}

/// Figures read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub log_head: u64,
    pub read_model_position: u64,
    pub pending_destructions: u64,
    pub oldest_pending_destruction_seconds: f64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn route(&self, route: &str, method: &'static str) -> Option<Arc<RouteStats>> {
        if let Some(r) = self.routes.read().ok()?.get(&(route.to_owned(), method)) {
            return Some(r.clone());
        }
        let mut w = self.routes.write().ok()?;
        Some(
            w.entry((route.to_owned(), method))
                .or_insert_with(|| Arc::new(RouteStats::new()))
                .clone(),
        )
    }

    /// Records one finished request.
    pub fn observe(&self, route: &str, method: &'static str, status: u16, elapsed: Duration) {
        let Some(r) = self.route(route, method) else {
            return;
        };
        if let Some(c) = r.by_status.get(usize::from(status.saturating_sub(100))) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                r.buckets[i].fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        r.count.fetch_add(1, Ordering::Relaxed);
        r.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let routes: Vec<((String, &'static str), Arc<RouteStats>)> = self
            .routes
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut routes = routes;
        routes.sort_by(|a, b| a.0.cmp(&b.0));

        out.push_str("# HELP ledger_http_requests_total HTTP requests by route template, method and status.\n");
        out.push_str("# TYPE ledger_http_requests_total counter\n");
        for ((route, method), r) in &routes {
            for (i, c) in r.by_status.iter().enumerate() {
                let n = c.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "ledger_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{}\"}} {n}",
                        i + 100
                    );
                }
            }
        }
        out.push_str(
            "# HELP ledger_http_request_duration_seconds Request latency by route template.\n",
        );
        out.push_str("# TYPE ledger_http_request_duration_seconds histogram\n");
        for ((route, method), r) in &routes {
            let mut cum = 0u64;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += r.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "ledger_http_request_duration_seconds_bucket{{route=\"{route}\",method=\"{method}\",le=\"{b}\"}} {cum}"
                );
            }
            let count = r.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "ledger_http_request_duration_seconds_bucket{{route=\"{route}\",method=\"{method}\",le=\"+Inf\"}} {count}"
            );
            let sum = r.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "ledger_http_request_duration_seconds_sum{{route=\"{route}\",method=\"{method}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "ledger_http_request_duration_seconds_count{{route=\"{route}\",method=\"{method}\"}} {count}"
            );
        }
        let counters = [
            (
                "ledger_events_appended_total",
                "Events appended to the log by API commands.",
                &self.appends,
            ),
            (
                "ledger_erasures_total",
                "Customers anonymized through the API (idempotent repeats not counted).",
                &self.erasures,
            ),
            (
                "ledger_erasure_refusals_total",
                "Erasure requests refused with a blocker.",
                &self.erasure_refusals,
            ),
            (
                "ledger_idempotent_replays_total",
                "Write requests answered from the idempotency cache.",
                &self.idempotent_replays,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", c.load(Ordering::Relaxed));
        }
        let gauges = [
            (
                "ledger_log_head_position",
                "Position of the last event in the log.",
                g.log_head,
            ),
            (
                "ledger_read_model_position",
                "Position the read model has folded up to.",
                g.read_model_position,
            ),
            (
                "ledger_projection_lag_events",
                "Events in the log not yet folded into the read model.",
                g.log_head.saturating_sub(g.read_model_position),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP ledger_pending_destructions Erasures whose data key is not destroyed yet.\n# TYPE ledger_pending_destructions gauge\nledger_pending_destructions {}",
            g.pending_destructions
        );
        let _ = writeln!(
            out,
            "# HELP ledger_oldest_pending_destruction_seconds Age of the oldest pending key destruction (0 if none).\n# TYPE ledger_oldest_pending_destruction_seconds gauge\nledger_oldest_pending_destruction_seconds {}",
            g.oldest_pending_destruction_seconds
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_lag() {
        let m = Metrics::new();
        m.observe("/v1/customers/{id}", "GET", 200, Duration::from_micros(300));
        m.observe("/v1/customers/{id}", "GET", 404, Duration::from_millis(3));
        let text = m.render(Gauges {
            log_head: 10,
            read_model_position: 7,
            pending_destructions: 2,
            oldest_pending_destruction_seconds: 1.5,
        });
        assert!(text.contains(
            "ledger_http_requests_total{route=\"/v1/customers/{id}\",method=\"GET\",status=\"404\"} 1"
        ));
        assert!(text.contains("le=\"0.0005\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("ledger_projection_lag_events 3"));
        assert!(text.contains("ledger_pending_destructions 2"));
        assert!(text.contains("ledger_oldest_pending_destruction_seconds 1.5"));
    }
}
