//! Deliberate bugs the jepsen-like harness must catch (cargo feature `fault-injection`).
//!
//! `raftsched server --fault NAME` turns one on. A build without the feature refuses the flag, so
//! a release binary cannot be talked into any of them. Each fault breaks one named guarantee:
//!
//! - `stale-reads`: linearizable reads are served from local state without the read index;
//! - `skip-fsync`: log appends are acknowledged from memory and written a second later, votes
//!   are not flushed (see `raftsched_store::fault`);
//! - `unfenced-reports`: a worker's report is applied with the task's current fencing token
//!   instead of the one it carries, so a stale attempt can record a result.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether this build can inject faults at all.
pub const AVAILABLE: bool = cfg!(feature = "fault-injection");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    StaleReads,
    SkipFsync,
    UnfencedReports,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::StaleReads, Fault::SkipFsync, Fault::UnfencedReports];

    pub fn name(self) -> &'static str {
        match self {
            Fault::StaleReads => "stale-reads",
            Fault::SkipFsync => "skip-fsync",
            Fault::UnfencedReports => "unfenced-reports",
        }
    }

    pub fn parse(text: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == text)
    }
}

static STALE_READS: AtomicBool = AtomicBool::new(false);
static UNFENCED_REPORTS: AtomicBool = AtomicBool::new(false);

/// Turns `fault` on for this process. Fails in a build without the `fault-injection` feature.
pub fn enable(fault: Fault) -> Result<(), String> {
    if !AVAILABLE {
        return Err(format!(
            "--fault {}: this raftsched was built without fault injection (cargo build -p raftsched --features fault-injection)",
            fault.name()
        ));
    }
    tracing::warn!(fault = fault.name(), "fault injection is ON: this replica is deliberately broken");
    match fault {
        Fault::StaleReads => STALE_READS.store(true, Ordering::Relaxed),
        Fault::UnfencedReports => UNFENCED_REPORTS.store(true, Ordering::Relaxed),
        Fault::SkipFsync => {
            #[cfg(feature = "fault-injection")]
            raftsched_store::fault::set_skip_fsync(true);
        }
    }
    Ok(())
}

pub(crate) fn stale_reads() -> bool {
    AVAILABLE && STALE_READS.load(Ordering::Relaxed)
}

pub(crate) fn unfenced_reports() -> bool {
    AVAILABLE && UNFENCED_REPORTS.load(Ordering::Relaxed)
}
