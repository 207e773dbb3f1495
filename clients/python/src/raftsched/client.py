"""A small typed client for raftsched's gRPC API, with the Rust client's behaviour.

- Any replica: give every replica's address; calls go to one and move on when it is unavailable.
- Leader hint: a follower's answer to a write names the leader (response metadata
  ``raftsched-leader``); the next writes go straight there.
- Retries: UNAVAILABLE and DEADLINE_EXCEEDED are retried on the next replica, with backoff, until
  the call's timeout. A submit keeps its idempotency key across retries, so a retried submit never
  creates a second task.
- Submit and wait: ``submit(..., wait_s=N)`` and ``wait(id)`` loop over the server's long polls
  (each at most 30 s) until the task has ended or the time is up.
- TLS (a CA, and a client certificate and key) and a bearer token, as the CLI's flags.
"""

from __future__ import annotations

import enum
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence

import grpc

from . import raftsched_pb2 as pb
from . import raftsched_pb2_grpc as pb_grpc

LEADER_HINT_KEY = "raftsched-leader"
# The longest a replica holds one long poll (long_poll_ms_max); longer waits are several polls.
LONG_POLL_MS_MAX = 30_000
RETRY_BACKOFF_S_MAX = 1.0


class TaskState(str, enum.Enum):
    """A task's state (the wire carries it as a string)."""

    WAITING = "waiting"  # for its dependencies (submit(..., after=[...]))
    SCHEDULED = "scheduled"
    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # a dependency it needed to succeed did not
    UNKNOWN = "unknown"  # a state from a newer server than this package

    @classmethod
    def _missing_(cls, value):
        return cls.UNKNOWN

    @property
    def ended(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED)


class RaftschedError(Exception):
    """A refused or failed call: ``code`` is the gRPC status code, ``message`` the server's words."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class NotFound(RaftschedError):
    pass


class AlreadyExists(RaftschedError):
    """The idempotency key names a task with a different spec."""


class InvalidArgument(RaftschedError):
    pass


class FailedPrecondition(RaftschedError):
    """E.g. cancelling a task that already runs or ended."""


class ResourceExhausted(RaftschedError):
    """A limit was reached (the message names it); try again later."""


class Unavailable(RaftschedError):
    """No replica answered within the timeout (no leader, no quorum, all down)."""


class Unauthenticated(RaftschedError):
    pass


class PermissionDenied(RaftschedError):
    pass


_ERRORS = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}

_RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _error(e: grpc.RpcError) -> RaftschedError:
    code, message = e.code(), e.details() or ""
    return _ERRORS.get(code, RaftschedError)(code, message)


@dataclass
class Attempt:
    worker_id: str
    token: int
    assigned_at_ms: int
    started_at_ms: Optional[int]
    ended_at_ms: Optional[int]
    outcome: Optional[str]


@dataclass
class Task:
    id: int
    key: str
    state: TaskState
    created_at_ms: int
    updated_at_ms: int
    attempt: int
    worker_id: Optional[str]
    exit_code: Optional[int]
    output_tail: Optional[str]
    attempts: List[Attempt] = field(default_factory=list)
    # Set when the result keeps stdout and stderr apart (format 5): output_tail is then stdout's
    # tail alone; a stream's byte count above its tail's length means the tail was cut.
    after: List[int] = field(default_factory=list)
    after_policy: Optional[str] = None
    skipped_by: Optional[int] = None
    streams_apart: bool = False
    stderr_tail: Optional[str] = None
    stdout_bytes: Optional[int] = None
    stderr_bytes: Optional[int] = None
    version: int = 0
    schedule: Optional[str] = None

    @property
    def ended(self) -> bool:
        return self.state.ended

    @classmethod
    def from_pb(cls, t: "pb.Task") -> "Task":
        return cls(
            id=t.id,
            key=t.key,
            state=TaskState(t.state),
            created_at_ms=t.created_at_ms,
            updated_at_ms=t.updated_at_ms,
            attempt=t.attempt,
            worker_id=t.worker_id or None,
            exit_code=t.exit_code if t.has_result else None,
            output_tail=t.output_tail if t.has_result else None,
            after=list(t.after),
            after_policy=t.after_policy or None,
            skipped_by=t.skipped_by or None,
            streams_apart=t.streams_apart,
            stderr_tail=t.stderr_tail if t.streams_apart else None,
            stdout_bytes=t.stdout_bytes if t.streams_apart else None,
            stderr_bytes=t.stderr_bytes if t.streams_apart else None,
            attempts=[
                Attempt(
                    worker_id=a.worker_id,
                    token=a.token,
                    assigned_at_ms=a.assigned_at_ms,
                    started_at_ms=a.started_at_ms or None,
                    ended_at_ms=a.ended_at_ms or None,
                    outcome=a.outcome or None,
                )
                for a in t.attempts
            ],
            version=t.version,
            schedule=t.schedule or None,
        )


@dataclass
class Submitted:
    id: int
    created: bool
    """False when the key already named this task (a retry)."""
    task: Optional[Task] = None
    """With ``wait_s``: the task when answered (ended, unless the wait ran out)."""


def spec(
    command: Optional[Sequence[str]] = None,
    builtin: Optional[str] = None,
    arg: str = "",
    priority: int = 0,
    constraints: Optional[Dict[str, str]] = None,
    env: Optional[Dict[str, str]] = None,
    cwd: str = "",
    timeout_ms: int = 0,
    max_attempts: int = 0,
    run_at_ms: int = 0,
) -> "pb.TaskSpec":
    """A task spec: a command line (``command=["make", "test"]``) or a builtin (``builtin="echo"``)."""
    if (command is None) == (builtin is None):
        raise ValueError("give exactly one of command and builtin")
    s = pb.TaskSpec(
        priority=priority,
        constraints=constraints or {},
        env=env or {},
        cwd=cwd,
        timeout_ms=timeout_ms,
        max_attempts=max_attempts,
        run_at_ms=run_at_ms,
    )
    if command is not None:
        s.command.argv.extend(command)
    else:
        s.builtin.name, s.builtin.arg = builtin, arg
    return s


class Client:
    """A client of a raftsched cluster: ``Client(["10.0.0.1:7001", "10.0.0.2:7001", ...])``."""

    def __init__(
        self,
        addrs: Sequence[str],
        timeout_s: float = 10.0,
        token: Optional[str] = None,
        tls_ca: Optional[bytes] = None,
        tls_cert: Optional[bytes] = None,
        tls_key: Optional[bytes] = None,
    ):
        if not addrs:
            raise ValueError("give at least one replica address (HOST:PORT)")
        self._addrs = list(addrs)
        self._timeout_s = timeout_s
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(tls_ca, tls_key, tls_cert)
            self._channels = {a: grpc.secure_channel(a, creds) for a in self._addrs}
        else:
            self._channels = {a: grpc.insecure_channel(a) for a in self._addrs}
        self._stubs = {a: pb_grpc.SchedulerStub(c) for a, c in self._channels.items()}
        self._preferred = 0
        self._leader: Optional[str] = None

    def close(self) -> None:
        for c in self._channels.values():
            c.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- tasks --------------------------------------------------------------------------------

    def submit(
        self,
        task_spec: "pb.TaskSpec",
        key: Optional[str] = None,
        wait_s: float = 0,
        after: Sequence[int] = (),
        after_keys: Sequence[str] = (),
        after_policy: str = "",
        concurrency_key: str = "",
        concurrency_limit: int = 0,
    ) -> Submitted:
        """Submits a task. ``key`` (generated when absent) makes retries safe: the same key returns
        the same task. With ``wait_s``, answers once the task has ended or ``wait_s`` has passed.
        With ``after`` (task ids) or ``after_keys``, it waits until those have ended; under
        ``after_policy`` "success" (the default) one that does not succeed skips it. With
        ``concurrency_key`` and ``concurrency_limit``, at most that many tasks with the key run at once."""
        key = key or f"py-{uuid.uuid4()}"
        wait_ms = min(int(wait_s * 1000), LONG_POLL_MS_MAX)
        request = pb.SubmitRequest(
            key=key,
            spec=task_spec,
            wait_ms=wait_ms,
            after=list(after),
            after_keys=list(after_keys),
            after_policy=after_policy,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
        )
        reply = self._call("Submit", request, write=True, extra_s=wait_ms / 1000)
        task = Task.from_pb(reply.task) if reply.HasField("task") else None
        if wait_s > 0 and (task is None or not task.ended) and wait_s * 1000 > wait_ms:
            task = self.wait(reply.id, timeout_s=wait_s - wait_ms / 1000)
        return Submitted(id=reply.id, created=reply.created, task=task)

    def get(self, task_id: int, stale: bool = False) -> Task:
        return Task.from_pb(self._call("GetTask", pb.GetTaskRequest(id=task_id, stale=stale)))

    def list(self, state: Optional[TaskState] = None, after: int = 0, page_size: int = 0) -> Iterator[Task]:
        """Every task (in a state), oldest first, fetched page by page."""
        while True:
            request = pb.ListTasksRequest(state=TaskState(state).value if state else "", after_id=after, limit=page_size)
            page = self._call("ListTasks", request)
            for t in page.tasks:
                yield Task.from_pb(t)
            if page.next_after == 0:
                return
            after = page.next_after

    def cancel(self, task_id: int) -> None:
        self._call("Cancel", pb.CancelRequest(id=task_id), write=True)

    def wait(self, task_id: int, timeout_s: float = 60.0) -> Task:
        """The task once it has ended, or as it is when ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            wait_ms = max(0, min(left_ms, LONG_POLL_MS_MAX))
            request = pb.WaitTaskRequest(id=task_id, wait_ms=wait_ms, until_ended=True)
            task = Task.from_pb(self._call("WaitTask", request, extra_s=wait_ms / 1000))
            if task.ended or left_ms <= wait_ms:
                return task

    def logs(
        self,
        task_id: int,
        attempt: int = 0,
        stderr: bool = False,
        follow: bool = False,
        offset: int = 0,
    ) -> Iterator[bytes]:
        """An attempt's whole stdout (or ``stderr``) as the worker that ran it kept it, in chunks,
        relayed by a replica: the latest attempt unless ``attempt`` (1 for the first); with
        ``follow``, the chunks keep coming until the attempt ends. Raises ``NotFound`` (no such
        task or attempt, not run yet, the output was removed), ``Unavailable`` (the worker cannot be
        reached now; ask again with ``offset`` to go on)."""
        request = pb.ReadOutputRequest(task_id=task_id, attempt=attempt, stderr=stderr, offset=offset, follow=follow)
        last: Optional[grpc.RpcError] = None
        for addr in self._order(False):
            try:
                for chunk in self._stubs[addr].ReadOutput(request, metadata=self._metadata):
                    yield chunk.data
                    # A retry through the next replica goes on where this one stopped, on this
                    # attempt.
                    request.offset += len(chunk.data)
                    request.attempt = chunk.attempt or request.attempt
                    if chunk.ended:
                        return
                return
            except grpc.RpcError as e:
                if e.code() not in _RETRIED:
                    raise _error(e) from None
                last = e
        if last is not None:
            raise _error(last) from None

    # --- one call, any replica ----------------------------------------------------------------

    def _order(self, write: bool) -> List[str]:
        """Replicas to try, in order: the known leader first for writes, else the preferred one."""
        n = len(self._addrs)
        order = [self._addrs[(self._preferred + i) % n] for i in range(n)]
        if write and self._leader in order:
            order.remove(self._leader)
            order.insert(0, self._leader)
        return order

    def _call(self, method: str, request, write: bool = False, extra_s: float = 0.0):
        deadline = time.monotonic() + self._timeout_s + extra_s
        backoff, last = 0.05, None
        while True:
            for addr in self._order(write):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    reply, call = getattr(self._stubs[addr], method).with_call(
                        request, timeout=left, metadata=self._metadata
                    )
                except grpc.RpcError as e:
                    if e.code() not in _RETRIED:
                        raise _error(e) from None
                    last = e
                    self._preferred = (self._addrs.index(addr) + 1) % len(self._addrs)
                    if self._leader == addr:
                        self._leader = None
                    continue
                hint = dict(call.initial_metadata() or ()).get(LEADER_HINT_KEY)
                if write and hint in self._addrs:
                    self._leader = hint
                return reply
            if time.monotonic() >= deadline:
                if last is not None:
                    raise _error(last) from None
                raise Unavailable(grpc.StatusCode.DEADLINE_EXCEEDED, f"no replica answered {method} in time")
            time.sleep(min(backoff, max(0.0, deadline - time.monotonic())) * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, RETRY_BACKOFF_S_MAX)
