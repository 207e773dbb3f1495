//! What a worker counts, for its own `/metrics` (`raftsched worker --http HOST:PORT`): the
//! attempts it runs, the reports it sends and how they were answered, and its lease (heartbeats
//! acknowledged, leases lost). Plain atomics; rendered in Prometheus's text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Stats {
    /// Attempts running now.
    pub running: AtomicU64,
    pub attempts_started_total: AtomicU64,
    /// Reports the cluster acknowledged (started or finished).
    pub reports_acknowledged_total: AtomicU64,
    /// Reports refused for good (a stale token: the attempt was fenced off).
    pub reports_refused_total: AtomicU64,
    /// Heartbeats acknowledged: each renews the lease.
    pub lease_renewals_total: AtomicU64,
    pub heartbeats_failed_total: AtomicU64,
    /// Times the lease ran out or the registration was lost (every attempt was killed).
    pub leases_lost_total: AtomicU64,
    pub registrations_total: AtomicU64,
    /// The current registration's epoch.
    pub epoch: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// The text format, every series labelled with the worker's id.
    pub fn render(&self, worker_id: &str, slots: u32) -> String {
        let id = worker_id.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::with_capacity(2048);
        let series: [(&str, &str, &str, u64); 10] = [
            ("raftsched_worker_running_attempts", "gauge", "Attempts running now.", self.running.load(Relaxed)),
            ("raftsched_worker_slots", "gauge", "Attempts this worker runs at once, at most.", u64::from(slots)),
            (
                "raftsched_worker_attempts_started_total",
                "counter",
                "Attempts started.",
                self.attempts_started_total.load(Relaxed),
            ),
            (
                "raftsched_worker_reports_acknowledged_total",
                "counter",
                "Reports (started, finished) the cluster acknowledged.",
                self.reports_acknowledged_total.load(Relaxed),
            ),
            (
                "raftsched_worker_reports_refused_total",
                "counter",
                "Reports refused for good: the attempt was fenced off (stale token).",
                self.reports_refused_total.load(Relaxed),
            ),
            (
                "raftsched_worker_lease_renewals_total",
                "counter",
                "Heartbeats acknowledged, each renewing the lease.",
                self.lease_renewals_total.load(Relaxed),
            ),
            (
                "raftsched_worker_heartbeats_failed_total",
                "counter",
                "Heartbeats not answered.",
                self.heartbeats_failed_total.load(Relaxed),
            ),
            (
                "raftsched_worker_leases_lost_total",
                "counter",
                "Times the lease ran out or the registration was lost (every attempt killed).",
                self.leases_lost_total.load(Relaxed),
            ),
            (
                "raftsched_worker_registrations_total",
                "counter",
                "Registrations (the first, and each after a loss).",
                self.registrations_total.load(Relaxed),
            ),
            ("raftsched_worker_epoch", "gauge", "The current registration's epoch.", self.epoch.load(Relaxed)),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{worker=\"{id}\"}} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_the_worker_label() {
        let s = Stats::default();
        Stats::add(&s.attempts_started_total, 3);
        let text = s.render("w\"1", 4);
        assert!(text.contains("raftsched_worker_attempts_started_total{worker=\"w\\\"1\"} 3"), "{text}");
        assert!(text.contains("raftsched_worker_slots{worker=\"w\\\"1\"} 4"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("# TYPE")).count(), 10);
    }
}
