//! SIGTERM / SIGINT as a clean stop.
//!
//! The handlers are installed when [`StopSignal::install`] is called, which every long-running
//! command does before it starts anything: a signal that arrives while a replica is still starting
//! must be a clean stop (exit 0), not the default action of the signal (killed, exit by signal).

/// Installed SIGTERM and SIGINT handlers; [`StopSignal::recv`] resolves on the first of either.
pub struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    /// Installs the handlers. Needs a tokio runtime.
    pub fn install() -> StopSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let watch = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch {name}");
                    None
                }
            };
            StopSignal {
                term: watch(SignalKind::terminate(), "SIGTERM"),
                int: watch(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            StopSignal {}
        }
    }

    /// Resolves on SIGTERM or SIGINT (Ctrl-C).
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
