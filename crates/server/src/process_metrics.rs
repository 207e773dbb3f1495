//! The standard `process_*` series (Prometheus's process collector), read from `/proc/self` on
//! Linux; elsewhere, and for any file that cannot be read, the series is left out.

use std::fmt::Write;

/// Kernel clock ticks per second for `/proc/self/stat` times (USER_HZ: 100 on every Linux ABI
/// this runs on; `sysconf(_SC_CLK_TCK)` would say the same).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_BYTES: u64 = 4096;

pub fn render(out: &mut String) {
    if let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| Stat::parse(&s)) {
        line(out, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter");
        let _ = writeln!(out, "process_cpu_seconds_total {:.2}", (stat.utime + stat.stime) as f64 / TICKS_PER_SECOND);
        line(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge");
        let _ = writeln!(out, "process_resident_memory_bytes {}", stat.rss_pages * PAGE_BYTES);
        line(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge");
        let _ = writeln!(out, "process_virtual_memory_bytes {}", stat.vsize);
        if let Some(boot) = boot_time_seconds() {
            line(
                out,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                "gauge",
            );
            let _ =
                writeln!(out, "process_start_time_seconds {:.2}", boot + stat.start_ticks as f64 / TICKS_PER_SECOND);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        line(out, "process_open_fds", "Number of open file descriptors.", "gauge");
        let _ = writeln!(out, "process_open_fds {}", fds.count());
    }
    if let Some(max) = max_fds() {
        line(out, "process_max_fds", "Maximum number of open file descriptors.", "gauge");
        let _ = writeln!(out, "process_max_fds {max}");
    }
}

struct Stat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

impl Stat {
    /// Fields after the command name (which may hold spaces and parentheses: split at the last
    /// `)`); numbering from proc(5): utime 14, stime 15, starttime 22, vsize 23, rss 24.
    fn parse(text: &str) -> Option<Stat> {
        let rest = &text[text.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
        Some(Stat {
            utime: field(14)?,
            stime: field(15)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

fn boot_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A series' HELP and TYPE lines, in Prometheus text format (shared by `metrics.rs`).
pub(crate) fn line(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_survives_odd_command_names() {
        let text =
            "42 (a) b) c) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 12345 1000000 300 18446744073709551615";
        let s = Stat::parse(text).unwrap();
        assert_eq!((s.utime, s.stime, s.start_ticks, s.vsize, s.rss_pages), (250, 50, 12345, 1000000, 300));
        assert!(Stat::parse("garbage").is_none() && Stat::parse("1 (x) S").is_none());
    }

    #[test]
    fn renders_on_linux() {
        let mut out = String::new();
        render(&mut out);
        if cfg!(target_os = "linux") {
            assert!(out.contains("process_cpu_seconds_total ") && out.contains("process_open_fds "), "{out}");
        }
    }
}
