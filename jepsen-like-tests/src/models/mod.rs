//! The sequential specifications: [`register`] (etcd's Jepsen test), [`kv`] (Porcupine's kv test)
//! and [`scheduler`] (raftsched's client API).

pub mod kv;
pub mod register;
pub mod scheduler;

use serde_json::Value;

use crate::history::{HistoryError, Operation};
use crate::model::{op_error, result_error};

/// An integer argument.
pub(crate) fn int_arg(h: &Operation, v: &Value, what: &str) -> Result<i64, HistoryError> {
    v.as_i64().ok_or_else(|| op_error(h, format!("{what} {v} is not an integer")))
}

/// An integer or `null` result.
pub(crate) fn opt_int_result(h: &Operation, v: &Value) -> Result<Option<i64>, HistoryError> {
    match v {
        Value::Null => Ok(None),
        v => v.as_i64().map(Some).ok_or_else(|| result_error(h, format!("result {v} is not an integer or nil"))),
    }
}
