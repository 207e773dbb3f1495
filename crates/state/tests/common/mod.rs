//! A log of commands applied to a fresh state machine at consecutive indexes, for the `apply`
//! tests. Each test file adds the helpers it needs in its own `impl Log`.

use raftsched_state::{Command, Op, Response, StateMachine};

pub struct Log {
    pub sm: StateMachine,
    pub index: u64,
}

impl Log {
    pub fn new() -> Log {
        Log { sm: StateMachine::new(), index: 0 }
    }

    /// Applies `op` at the next index with the leader's time `now_ms`; the invariants must hold
    /// after it (as `apply` itself checks in debug builds).
    pub fn apply(&mut self, now_ms: u64, op: Op) -> Response {
        self.index += 1;
        let response = self.sm.apply(self.index, &Command { now_ms, op });
        assert_eq!(self.sm.check_invariants(), Ok(()));
        response
    }
}
