//! Metrics in the Prometheus text format (version 0.0.4), which Cloud Foundry's metric
//! registrar and any Prometheus server scrape: counters of requests by route and status and
//! a latency histogram, kept by each server; each server adds its own figures.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// Requests answered by one server.
#[derive(Default)]
pub struct RequestMetrics {
    /// A counter per route and status; a new pair takes the write lock once, and every
    /// later request only reads the map and adds atomically, so requests do not queue here.
    by_route_and_status: RwLock<HashMap<(&'static str, u16), AtomicU64>>,
    /// Per bucket of [`BUCKETS`], then one for slower requests (not cumulative here).
    latency_counts: [AtomicU64; BUCKETS.len() + 1],
    latency_micros: AtomicU64,
}

impl RequestMetrics {
    pub fn record(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.count(route, status);
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.latency_counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn count(&self, route: &'static str, status: u16) {
        let counted = self
            .by_route_and_status
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(route, status))
            .map(|count| count.fetch_add(1, Ordering::Relaxed))
            .is_some();
        if !counted {
            self.by_route_and_status
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry((route, status))
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `PREFIX_requests_total` and `PREFIX_request_duration_seconds`.
    pub fn render(&self, prefix: &str, out: &mut String) {
        header(
            out,
            &format!("{prefix}_requests_total"),
            "counter",
            "Requests answered, by route and status.",
        );
        let counts: BTreeMap<(&str, u16), u64> = self
            .by_route_and_status
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(key, count)| (*key, count.load(Ordering::Relaxed)))
            .collect();
        for ((route, status), count) in counts {
            let _ = writeln!(
                out,
                "{prefix}_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let name = format!("{prefix}_request_duration_seconds");
        header(
            out,
            &name,
            "histogram",
            "Time from the request's head to its answer.",
        );
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.latency_counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.latency_counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let seconds = self.latency_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {seconds}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// A metric's `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One metric with a single value and no labels.
pub fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_render_as_counters_and_a_cumulative_histogram() {
        let metrics = RequestMetrics::default();
        metrics.record("catalog", 200, Duration::from_micros(300));
        metrics.record("catalog", 200, Duration::from_millis(3));
        metrics.record("provision", 201, Duration::from_secs(5));
        let mut out = String::new();
        metrics.render("x", &mut out);
        assert!(
            out.contains("x_requests_total{route=\"catalog\",status=\"200\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_request_duration_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_request_duration_seconds_bucket{le=\"0.005\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_request_duration_seconds_bucket{le=\"2.5\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("x_request_duration_seconds_count 3\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE x_request_duration_seconds histogram\n"),
            "{out}"
        );
    }
}
