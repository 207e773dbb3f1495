//! raftsched's linearizability harness: a history checker (this crate's library and its `check`
//! and `bench` subcommands) and, later, a fault-injecting cluster runner that feeds it.
//!
//! # Pipeline
//!
//! 1. [`parse`] reads a history file (format picked from its first non-empty line) into
//!    [`history::Event`]s and pairs each process's invoke with its next completion into
//!    [`history::Operation`]s ([`history::History`]).
//! 2. A [`model::Model`] turns operations into typed, model-specific operations and splits them
//!    into independent partitions (P-compositionality: by key for `kv`, by task for `scheduler`).
//! 3. [`check`] runs a just-in-time linearization search ([`search`]: Wing–Gong / Lowe, with a
//!    memo of (set of linearized operations, model state)) on every partition, sharing one time
//!    budget in rounds of growing slices so that a cheap violation is never hidden behind a hard
//!    partition.
//! 4. On a violation, [`report`] explains it (the longest linearizable prefix found and the
//!    operations that could not come next) and can write it as JSON and as an HTML timeline.
//!
//! # The JSON-lines history format
//!
//! This is the format raftsched's own tools write (the future cluster runner included). A file is
//! UTF-8 text with one JSON object per line, in real-time order: an event on line *n* happened
//! after every event on lines before *n* (as observed by a single clock at the recorder). Empty
//! lines are ignored. Each object has these fields (others are ignored, for forward compatibility):
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `process` | integer ≥ 0 | the client (or worker) that issued the operation; it has at most one operation outstanding |
//! | `type` | `"invoke"`, `"ok"`, `"fail"` or `"info"` | the operation starts; or completes: took effect (`ok`), certainly did not take effect (`fail`), outcome unknown (`info`) |
//! | `f` | string | the operation's name, e.g. `"read"`, `"put"`, `"submit"` |
//! | `key` | string, optional | the object the operation addresses (register name, kv key, idempotency key) |
//! | `value` | any JSON, optional (default `null`) | on `invoke`: the argument; on a completion: the result |
//! | `time_ns` | integer ≥ 0, optional | the recorder's monotonic clock in nanoseconds; only used to draw timelines |
//!
//! An `invoke` is matched to the same process's next completion line. An `info` completion, and an
//! `invoke` with no completion before the end of the file, make the operation indeterminate: its
//! interval extends past the end of the history, so it may take effect at any instant after its
//! invoke, or in effect never. A `fail` completion means the operation did not take effect (what
//! that allows is model-specific; see [`models`]). The `value` shapes per model are in
//! [`models::register`], [`models::kv`] and [`models::scheduler`]. Example (scheduler):
//!
//! ```text
//! {"process":0,"type":"invoke","f":"submit","key":"k1","value":{"spec":"echo hi"},"time_ns":1000}
//! {"process":1,"type":"invoke","f":"get","value":{"id":7}}
//! {"process":0,"type":"ok","f":"submit","key":"k1","value":{"id":7},"time_ns":5200}
//! {"process":1,"type":"ok","f":"get","value":{"state":"pending","result_exit_code":null}}
//! ```
//!
//! [`history::History::to_jsonl`] writes this format; [`generate`] makes histories in it whose
//! verdict is known by construction (`jepsen-like-tests generate`).

pub mod bench;
pub mod check;
pub mod cli;
pub mod generate;
pub mod hash;
pub mod history;
pub mod model;
pub mod models;
pub mod parse;
pub mod report;
pub mod run;
pub mod search;
