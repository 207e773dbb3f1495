//! raftsched's linearizability harness: a history checker and (later) a fault-injecting runner.
