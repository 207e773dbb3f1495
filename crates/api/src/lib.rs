//! raftsched's gRPC types and services, generated at build time from `proto/raftsched.proto`.
//!
//! API boundary: these types are the wire format. Internal crates convert to and from them at the
//! edge (`raftsched-server::convert`), so nothing inside depends on prost's representation.

#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("raftsched.v1");
}

pub use v1::*;

pub mod json;
pub mod security;

/// The encoded `FileDescriptorSet` of `proto/raftsched.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/raftsched_descriptor.bin"));

/// Response metadata a follower adds to its answer to a write: the leader's address
/// (`HOST:PORT`), so a client can send its next writes straight there.
pub const LEADER_HINT_KEY: &str = "raftsched-leader";
/// Response metadata of a long poll that asked for more than the server's longest wait
/// (`long_poll_ms_max`, 30 s): the wait it was served, in ms. The call is answered as if it had
/// asked for that wait (clients from before the bound was stated keep working); loop to wait longer.
pub const WAIT_CAPPED_KEY: &str = "raftsched-wait-capped-ms";

/// Whether `addr` has the `HOST:PORT` shape every replica and worker address on the wire takes.
pub fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// The canonical upper-case gRPC code name, as users see it in docs and other tools.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The enum value of a state or role the wire also carries as a string (`"pending"` →
/// `TASK_STATE_PENDING`): one rule for every such field, `UNSPECIFIED` (0) for a name the enum
/// does not have.
pub fn enum_value(prefix: &str, name: &str, from_str_name: fn(&str) -> Option<i32>) -> i32 {
    from_str_name(&format!("{prefix}_{}", name.to_ascii_uppercase())).unwrap_or(0)
}

/// `Task.state_enum` for a state name.
pub fn task_state_enum(name: &str) -> i32 {
    enum_value("TASK_STATE", name, |n| TaskState::from_str_name(n).map(|e| e as i32))
}

/// `WorkerInfo.state_enum` for a state name.
pub fn worker_state_enum(name: &str) -> i32 {
    enum_value("WORKER_STATE", name, |n| WorkerState::from_str_name(n).map(|e| e as i32))
}

/// `MemberStatus.role_enum` for a role name.
pub fn role_enum(name: &str) -> i32 {
    enum_value("ROLE", name, |n| Role::from_str_name(n).map(|e| e as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_name_has_its_enum() {
        for (name, value) in [("scheduled", 1), ("pending", 2), ("cancelled", 7), ("nope", 0)] {
            assert_eq!(task_state_enum(name), value, "{name}");
        }
        assert_eq!(worker_state_enum("draining"), WorkerState::Draining as i32);
        assert_eq!(role_enum("leader"), Role::Leader as i32);
        assert_eq!(role_enum("shutdown"), Role::Shutdown as i32);
    }
}
