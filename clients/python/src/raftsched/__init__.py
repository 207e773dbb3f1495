"""raftsched's Python client: ``from raftsched import Client, spec``.

The generated gRPC stubs are ``raftsched.raftsched_pb2`` and ``raftsched.raftsched_pb2_grpc``
(regenerate with ``generate.sh`` after changing ``proto/raftsched.proto``).
"""

from .client import (
    AlreadyExists,
    Attempt,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RaftschedError,
    ResourceExhausted,
    Submitted,
    Task,
    TaskState,
    Unauthenticated,
    Unavailable,
    spec,
)

__all__ = [
    "AlreadyExists",
    "Attempt",
    "Client",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RaftschedError",
    "ResourceExhausted",
    "Submitted",
    "Task",
    "TaskState",
    "Unauthenticated",
    "Unavailable",
    "spec",
]
