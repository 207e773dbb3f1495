"""The package against a real trio: `raftsched dev` (three replicas over real sockets, two workers),
started by this test from the binary in RAFTSCHED_BIN."""

import os
import socket
import subprocess
import time
import unittest

import raftsched
from raftsched import Client, TaskState, spec


def free_base_port(n: int) -> int:
    """A port with the n - 1 after it free as well."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 65000:
            continue
        held = []
        try:
            for i in range(n):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                held.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free consecutive ports")


class AgainstADevTrio(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        base = free_base_port(3)
        cls.dev = subprocess.Popen(
            [os.environ["RAFTSCHED_BIN"], "dev", "--base-port", str(base), "--http-base-port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "RAFTSCHED_LOG": "warn"},
        )
        for line in cls.dev.stdout:
            if "Ctrl-C stops" in line:
                break
        else:
            raise RuntimeError("raftsched dev ended before it was up")
        cls.addrs = [f"127.0.0.1:{base + i}" for i in range(3)]

    @classmethod
    def tearDownClass(cls):
        cls.dev.terminate()
        cls.dev.wait(timeout=30)

    def client(self, addrs=None, **kw) -> Client:
        c = Client(addrs or self.addrs, timeout_s=20, **kw)
        self.addCleanup(c.close)
        return c

    def test_submit_and_wait_runs_on_a_worker(self):
        done = self.client().submit(spec(command=["echo", "from-python"]), wait_s=30)
        self.assertTrue(done.created)
        self.assertEqual(done.task.state, TaskState.SUCCEEDED)
        self.assertEqual(done.task.exit_code, 0)
        self.assertIn("from-python", done.task.output_tail)
        self.assertTrue(done.task.attempts and done.task.attempts[0].worker_id.startswith("dev-worker-"))

    def test_the_same_key_is_the_same_task_through_any_replica(self):
        first = self.client(self.addrs[:1]).submit(spec(builtin="echo", arg="k"), key="py-same")
        again = self.client(self.addrs[2:]).submit(spec(builtin="echo", arg="k"), key="py-same")
        self.assertEqual((again.id, again.created), (first.id, False))
        with self.assertRaises(raftsched.AlreadyExists):
            self.client().submit(spec(builtin="echo", arg="other"), key="py-same")

    def test_a_dead_replica_in_the_list_is_skipped(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{s.getsockname()[1]}"
        c = self.client([dead] + self.addrs)
        submitted = c.submit(spec(builtin="echo", arg="x"))
        self.assertEqual(c.get(submitted.id).id, submitted.id)

    def test_list_cancel_and_errors(self):
        c = self.client()
        later = int(time.time() * 1000) + 3_600_000
        s = c.submit(spec(command=["true"], run_at_ms=later))
        self.assertEqual(c.get(s.id).state, TaskState.SCHEDULED)
        c.cancel(s.id)
        self.assertEqual(c.wait(s.id, timeout_s=10).state, TaskState.CANCELLED)
        self.assertIn(s.id, [t.id for t in c.list(state=TaskState.CANCELLED)])
        self.assertIn(s.id, [t.id for t in c.list(page_size=1)])
        with self.assertRaises(raftsched.NotFound):
            c.get(10**12)
        c.cancel(s.id)  # cancelling again changes nothing
        done = c.submit(spec(builtin="echo", arg="x"), wait_s=30)
        self.assertEqual(done.task.state, TaskState.SUCCEEDED)
        with self.assertRaises(raftsched.FailedPrecondition):
            c.cancel(done.id)
        with self.assertRaises(ValueError):
            spec()

    def test_a_failed_task_keeps_its_exit_code(self):
        done = self.client().submit(spec(builtin="fail", arg="3", max_attempts=1), wait_s=30)
        self.assertEqual((done.task.state, done.task.exit_code), (TaskState.FAILED, 3))

    # grpcio-reflection's client speaks reflection v1alpha, as grpcurl 1.8 does.
    def test_reflection_v1alpha_lists_and_describes_the_services(self):
        import grpc
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase,
        )

        with grpc.insecure_channel(self.addrs[0]) as channel:
            db = ProtoReflectionDescriptorDatabase(channel)
            services = list(db.get_services())
            self.assertIn("raftsched.v1.Scheduler", services)
            self.assertIn("raftsched.v1.Worker", services)
            file = db.FindFileContainingSymbol("raftsched.v1.Scheduler")
            self.assertIn("Scheduler", [s.name for s in file.service])
            self.assertTrue(file.options.go_package.endswith(";raftschedv1"))


    def test_logs_give_the_whole_output_of_an_attempt(self):
        with self.client() as c:
            lines = "".join(f"line {i}\n" for i in range(2000))
            sub = c.submit(spec(command=["sh", "-c", f"printf '{lines}'; echo oops >&2"]), wait_s=30)
            self.assertEqual(sub.task.state, TaskState.SUCCEEDED)
            self.assertEqual(b"".join(c.logs(sub.id)).decode(), lines)
            self.assertEqual(b"".join(c.logs(sub.id, stderr=True)), b"oops\n")
            self.assertEqual(b"".join(c.logs(sub.id, attempt=1, offset=len(lines) - 10)).decode(), lines[-10:])
            with self.assertRaises(raftsched.NotFound):
                list(c.logs(sub.id, attempt=2))

    def test_dependencies_run_after_and_a_failure_skips(self):
        c = self.client()
        first = c.submit(spec(builtin="echo", arg="first"), key="py-first")
        # A fresh trio raises its cluster version within seconds; until then --after is refused.
        deadline = time.monotonic() + 30
        while True:
            try:
                second = c.submit(spec(builtin="echo", arg="second"), key="py-second", after=[first.id], wait_s=30)
                break
            except raftsched.FailedPrecondition:
                self.assertLess(time.monotonic(), deadline, "the cluster version never allowed dependencies")
                time.sleep(0.2)
        self.assertEqual((second.task.state, second.task.after), (TaskState.SUCCEEDED, [first.id]))
        failed = c.submit(spec(builtin="fail", arg="2", max_attempts=1), key="py-fails")
        skipped = c.submit(spec(builtin="echo", arg="never"), key="py-skipped", after_keys=["py-fails"], wait_s=30)
        self.assertEqual((skipped.task.state, skipped.task.skipped_by), (TaskState.SKIPPED, failed.id))

if __name__ == "__main__":
    unittest.main()
