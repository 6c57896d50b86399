//! The operator's own metrics (`/metrics`) and `/healthz`.

use std::sync::Arc;

use axum::{routing::get, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use prometheus_client::registry::Registry;

pub struct Metrics {
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub reconcile_seconds: Histogram,
    /// The events the operator recorded, per job and reason: `JobFailed`
    /// and `Recovering` count a job's failures and recoveries across its
    /// pods' lives, which the pods' own restart counters cannot.
    pub events: Family<JobEvent, Counter>,
}

/// A job's event. The labels are not `namespace` and `job`: Prometheus
/// gives those to the scraped target (the operator's pod) and would rename
/// these.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobEvent {
    pub streamjob_namespace: String,
    pub streamjob: String,
    pub reason: &'static str,
}

impl Metrics {
    /// Counts one event of the job `namespace/name`.
    pub fn event(&self, namespace: &str, name: &str, reason: &'static str) {
        self.events
            .get_or_create(&JobEvent {
                streamjob_namespace: namespace.to_string(),
                streamjob: name.to_string(),
                reason,
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Counter::default(),
            reconcile_errors: Counter::default(),
            reconcile_seconds: Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0]),
            events: Family::default(),
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of the metrics.
    pub fn encode(&self) -> String {
        let mut registry = Registry::with_prefix("streamjob_operator");
        registry.register("reconciles", "Reconciles run", self.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile took",
            self.reconcile_seconds.clone(),
        );
        registry.register(
            "events",
            "Events recorded on StreamJobs, by job and reason (JobFailed, Recovering, UpgradeCompleted, ...)",
            self.events.clone(),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String");
        text
    }
}

/// `/metrics` and `/healthz` on `address`.
pub async fn serve(address: String, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move { metrics.encode() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(address.as_str()).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's Grafana dashboard names only operator series that
    /// `encode` exports (the runtime's are checked in its tests).
    #[test]
    fn the_grafana_dashboard_names_only_series_the_operator_exports() {
        let dashboard: serde_json::Value = serde_json::from_str(include_str!(
            "../../charts/streamjob-operator/dashboards/streamjob.json"
        ))
        .expect("the dashboard is JSON");
        let text = dashboard.to_string();
        let named: std::collections::BTreeSet<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("streamjob_operator_"))
            .collect();
        assert!(named.len() >= 3, "{named:?}");
        let metrics = Metrics::default();
        metrics.reconcile_seconds.observe(0.2);
        metrics.event("default", "visits", "Recovering");
        let exported = metrics.encode();
        for name in named {
            assert!(
                exported
                    .lines()
                    .any(|l| l.starts_with(&format!("{name} "))
                        || l.starts_with(&format!("{name}{{"))),
                "the dashboard names {name}, which the operator does not export:\n{exported}"
            );
        }
    }
}
