//! Prometheus metrics through the [`metrics`] facade, kept and rendered by
//! `metrics-exporter-prometheus` (ADR 0020): requests by route template, method and
//! status, a latency histogram per route, appended events, erasures, refusals,
//! idempotent replays, and the gauges read at scrape time (log head, read model
//! position, projection lag, pending key destructions).
//!
//! Labels are route templates (`/v1/customers/{id}`), methods and status codes,
//! never a concrete path: ids (and anything else a client puts in a URL) stay out.
//!
//! # One recorder per [`Metrics`]
//!
//! The facade's recorder is process-global, and the in-process API tests build many
//! `ApiState`s in one process, each asserting on its own counts. So each
//! [`Metrics`] owns its own [`PrometheusRecorder`]:
//!
//! - the counters and gauges without per-request labels are registered once, at
//!   construction, and kept as handles ([`Counter`], [`Gauge`]); updating them
//!   needs no recorder in scope;
//! - the per-request series (labels known only per request) are registered through
//!   [`metrics::with_local_recorder`] with this recorder, for the length of one
//!   synchronous call;
//! - `/metrics` renders this recorder's [`PrometheusHandle`] (the exporter's HTTP
//!   listener is not compiled in).
//!
//! `ledger serve` also makes its state's recorder the global one
//! ([`Metrics::install_global`]), so a `metrics::counter!` anywhere in the process
//! (another crate, a background task) lands in the same exposition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const REQUESTS: &str = "ledger_http_requests_total";
const DURATION: &str = "ledger_http_request_duration_seconds";

/// The exporter keeps each latency sample until it is folded into its histogram,
/// at a scrape or at an upkeep: one upkeep every this many requests bounds that
/// memory when nothing scrapes.
const UPKEEP_EVERY: u64 = 4096;

/// The metrics of one API state; see the module doc.
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    requests_seen: AtomicU64,
    /// Events appended to the log by API commands.
    pub appends: Counter,
    /// Customers anonymized through the API (idempotent repeats not counted).
    pub erasures: Counter,
    /// Erasure requests refused with a blocker.
    pub erasure_refusals: Counter,
    /// Write requests answered from saved idempotent answers.
    pub idempotent_replays: Counter,
    log_head: Gauge,
    read_model_position: Gauge,
    projection_lag: Gauge,
    pending_destructions: Gauge,
    oldest_pending_destruction: Gauge,
    requests_overdue: Gauge,
    oldest_open_request: Gauge,
}

/// The gauge of erasure requests by status (labelled `status`).
const REQUESTS_BY_STATUS: &str = "ledger_erasure_requests";
/// The gauge of bulk erasure jobs by state (labelled `state`).
const JOBS_BY_STATE: &str = "ledger_erasure_jobs";

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Figures read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub log_head: u64,
    pub read_model_position: u64,
    pub pending_destructions: u64,
    pub oldest_pending_destruction_seconds: f64,
    /// Erasure requests by status, in `ledger_command::RequestStatus::ALL` order.
    pub erasure_requests: [u64; 5],
    /// Erasure requests past their due date and not ended.
    pub erasure_requests_overdue: u64,
    /// Age of the oldest open (or deferred) erasure request (0 if none).
    pub oldest_open_request_seconds: f64,
    /// Bulk erasure jobs by state, in `ledger_command::JobState::ALL` order.
    pub erasure_jobs: [u64; 6],
    /// The JetStream publisher's state and checkpoint, when one runs.
    pub publisher: Option<(ledger_app::health::SinkState, u64)>,
}

/// The publisher's gauges (registered when a publisher runs, not before).
const PUBLISH_POSITION: &str = "ledger_publish_position";
const PUBLISH_LAG: &str = "ledger_publish_lag_events";
const PUBLISH_UP: &str = "ledger_publish_up";

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.to_owned()), &BUCKETS)
            .expect("the latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        let recorder = Arc::new(recorder);
        metrics::with_local_recorder(&*recorder, || {
            metrics::describe_counter!(
                REQUESTS,
                "HTTP requests by route template, method and status."
            );
            metrics::describe_histogram!(DURATION, "Request latency by route template.");
            metrics::describe_gauge!(REQUESTS_BY_STATUS, "Erasure requests by status.");
            metrics::describe_gauge!(JOBS_BY_STATE, "Bulk erasure jobs by state.");
            metrics::describe_gauge!(
                PUBLISH_POSITION,
                "Last log position JetStream acknowledged (serve --publish)."
            );
            metrics::describe_gauge!(
                PUBLISH_LAG,
                "Events in the log not yet acknowledged by JetStream (serve --publish)."
            );
            metrics::describe_gauge!(
                PUBLISH_UP,
                "1 while the publisher is connected, 0 while it connects or retries."
            );
            let counter = |name: &'static str, help: &'static str| {
                metrics::describe_counter!(name, help);
                metrics::counter!(name)
            };
            let gauge = |name: &'static str, help: &'static str| {
                metrics::describe_gauge!(name, help);
                metrics::gauge!(name)
            };
            Self {
                appends: counter(
                    "ledger_events_appended_total",
                    "Events appended to the log by API commands.",
                ),
                erasures: counter(
                    "ledger_erasures_total",
                    "Customers anonymized through the API (idempotent repeats not counted).",
                ),
                erasure_refusals: counter(
                    "ledger_erasure_refusals_total",
                    "Erasure requests refused with a blocker.",
                ),
                idempotent_replays: counter(
                    "ledger_idempotent_replays_total",
                    "Write requests answered from the idempotency cache.",
                ),
                log_head: gauge(
                    "ledger_log_head_position",
                    "Position of the last event in the log.",
                ),
                read_model_position: gauge(
                    "ledger_read_model_position",
                    "Position the read model has folded up to.",
                ),
                projection_lag: gauge(
                    "ledger_projection_lag_events",
                    "Events in the log not yet folded into the read model.",
                ),
                pending_destructions: gauge(
                    "ledger_pending_destructions",
                    "Erasures whose data key is not destroyed yet.",
                ),
                oldest_pending_destruction: gauge(
                    "ledger_oldest_pending_destruction_seconds",
                    "Age of the oldest pending key destruction (0 if none).",
                ),
                requests_overdue: gauge(
                    "ledger_erasure_requests_overdue",
                    "Erasure requests past their due date and not ended.",
                ),
                oldest_open_request: gauge(
                    "ledger_oldest_open_erasure_request_seconds",
                    "Age of the oldest open or deferred erasure request (0 if none).",
                ),
                recorder: recorder.clone(),
                handle,
                requests_seen: AtomicU64::new(0),
            }
        })
    }

    /// Records one finished request: `route` is a route template (or `unmatched`).
    pub fn observe(&self, route: &str, method: &'static str, status: u16, elapsed: Duration) {
        metrics::with_local_recorder(&*self.recorder, || {
            let route = route.to_owned();
            metrics::counter!(REQUESTS, "route" => route.clone(), "method" => method, "status" => status.to_string())
                .increment(1);
            metrics::histogram!(DURATION, "route" => route, "method" => method)
                .record(elapsed.as_secs_f64());
        });
        if self.requests_seen.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
            self.handle.run_upkeep();
        }
    }

    /// The Prometheus text exposition format (0.0.4), with the gauges set to `g`.
    pub fn render(&self, g: Gauges) -> String {
        self.log_head.set(g.log_head as f64);
        self.read_model_position.set(g.read_model_position as f64);
        self.projection_lag
            .set(g.log_head.saturating_sub(g.read_model_position) as f64);
        self.pending_destructions.set(g.pending_destructions as f64);
        self.oldest_pending_destruction
            .set(g.oldest_pending_destruction_seconds);
        self.requests_overdue.set(g.erasure_requests_overdue as f64);
        self.oldest_open_request.set(g.oldest_open_request_seconds);
        metrics::with_local_recorder(&*self.recorder, || {
            for (status, n) in ledger_command::RequestStatus::ALL
                .iter()
                .zip(g.erasure_requests)
            {
                metrics::gauge!(REQUESTS_BY_STATUS, "status" => status.as_str()).set(n as f64);
            }
            for (state, n) in ledger_command::JobState::ALL.iter().zip(g.erasure_jobs) {
                metrics::gauge!(JOBS_BY_STATE, "state" => state.as_str()).set(n as f64);
            }
            if let Some((state, position)) = g.publisher {
                metrics::gauge!(PUBLISH_POSITION).set(position as f64);
                metrics::gauge!(PUBLISH_LAG).set(g.log_head.saturating_sub(position) as f64);
                let up = state == ledger_app::health::SinkState::Publishing;
                metrics::gauge!(PUBLISH_UP).set(if up { 1.0 } else { 0.0 });
            }
        });
        self.handle.render()
    }

    /// Makes this recorder the process's global one, so that the facade's macros
    /// called outside this crate report here too. Only the first call in a process
    /// succeeds (`false` after).
    pub fn install_global(&self) -> bool {
        metrics::set_global_recorder(self.recorder.clone()).is_ok()
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
            erasure_requests: [3, 1, 7, 2, 0],
            erasure_requests_overdue: 1,
            oldest_open_request_seconds: 86_400.0,
            erasure_jobs: [0, 0, 1, 4, 2, 0],
            publisher: Some((ledger_app::health::SinkState::Retrying, 4)),
        });
        assert!(text.contains("ledger_publish_lag_events 6"), "{text}");
        assert!(text.contains("ledger_publish_up 0"), "{text}");
        assert!(
            text.contains("ledger_erasure_requests{status=\"open\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ledger_erasure_requests{status=\"deferred\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ledger_erasure_requests{status=\"completed\"} 7"),
            "{text}"
        );
        assert!(text.contains("ledger_erasure_requests_overdue 1"), "{text}");
        assert!(
            text.contains("ledger_erasure_jobs{state=\"succeeded\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("ledger_erasure_jobs{state=\"partially_failed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ledger_oldest_open_erasure_request_seconds 86400"),
            "{text}"
        );
        assert!(text.contains(
            "ledger_http_requests_total{route=\"/v1/customers/{id}\",method=\"GET\",status=\"404\"} 1"
        ), "{text}");
        assert!(text.contains("le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("ledger_projection_lag_events 3"), "{text}");
        assert!(text.contains("ledger_pending_destructions 2"), "{text}");
        assert!(
            text.contains("ledger_oldest_pending_destruction_seconds 1.5"),
            "{text}"
        );
        // Every series is there from the start, with its help line.
        assert!(text.contains("ledger_erasures_total 0"), "{text}");
        assert!(text.contains(
            "# HELP ledger_http_request_duration_seconds Request latency by route template."
        ));
        assert!(text.contains("# TYPE ledger_http_request_duration_seconds histogram"));
    }

    #[test]
    fn two_states_in_one_process_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.appends.increment(3);
        a.observe("/healthz", "GET", 200, Duration::from_millis(1));
        let tb = b.render(Gauges::default());
        assert!(tb.contains("ledger_events_appended_total 0"), "{tb}");
        assert!(!tb.contains("route=\"/healthz\""), "{tb}");
        let ta = a.render(Gauges::default());
        assert!(ta.contains("ledger_events_appended_total 3"), "{ta}");
        assert!(ta.contains("status=\"200\"} 1"), "{ta}");
    }
}
