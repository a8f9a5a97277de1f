"""Kubernetes launcher: submit a run's Job, follow it, surface failures, cancel on Ctrl-C.

The one module that talks to a cluster (kubernetes Python client). Credentials come from the
kubeconfig (``context``) or, inside a pod, from its service account (the scheduled overlay's
Role allows exactly what is used here: Jobs, Services, ConfigMaps, pods, pod logs, events).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from tqdm import tqdm

from dinoflow.launch.local import TrainingFailedError

log = logging.getLogger(__name__)
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class JobOutcome:
    name: str
    namespace: str
    seconds: float


def api_client(context: str | None) -> client.ApiClient:
    """In a pod without an explicit context: its service account; elsewhere: the kubeconfig."""
    if context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
        return client.ApiClient()
    # KUBECONFIG is read here, not when the client library was imported; never written back.
    return config.new_client_from_config(
        config_file=os.environ.get("KUBECONFIG"), context=context, persist_config=False
    )


class TrainingJob:
    """One submitted run: ``submit``, then ``wait`` (streams rank 0's log), ``cancel`` on demand."""

    def __init__(self, api: client.ApiClient, documents: list[dict[str, Any]]) -> None:
        self.core, self.batch = client.CoreV1Api(api), client.BatchV1Api(api)
        self.documents = {doc["kind"]: doc for doc in documents}
        job = self.documents["Job"]
        self.name, self.namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        self.nodes = job["spec"]["completions"]
        self._streams: dict[str, threading.Thread] = {}

    def submit(self) -> None:
        """Create the Job first, then its ConfigMap and Service owned by it, so that deleting the
        Job (cancel, or the TTL after it finishes) removes all three."""
        created = self.batch.create_namespaced_job(self.namespace, self.documents["Job"])
        # No blockOwnerDeletion: setting it needs update rights on jobs/finalizers, which the
        # launcher's Role does not grant (and garbage collection does not need).
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": self.name, "uid": created.metadata.uid}
        for kind, create in (("ConfigMap", self.core.create_namespaced_config_map),
                             ("Service", self.core.create_namespaced_service)):  # fmt: skip
            body = {**self.documents[kind]}
            body["metadata"] = {**body["metadata"], "ownerReferences": [owner]}
            create(self.namespace, body)
        log.info("submitted Job %s/%s (%d pods)", self.namespace, self.name, self.nodes)

    def wait(self, timeout_s: float, poll_s: float, interrupted: threading.Event | None = None) -> JobOutcome:
        """Poll until the Job completes (returns) or fails (raises ``TrainingFailedError`` with
        each failed pod's state, events and last log lines); past ``timeout_s`` the Job is deleted.
        ``interrupted`` set (Ctrl-C) raises KeyboardInterrupt at the next poll."""
        interrupted = interrupted or threading.Event()
        start = time.monotonic()
        with tqdm(total=self.nodes, desc=f"job {self.name}", unit="pod", disable=None) as progress:
            while True:
                status = self.batch.read_namespaced_job_status(self.name, self.namespace).status
                pods = self._pods()
                self._follow_rank0(pods)
                done = status.succeeded or 0
                progress.n = done
                progress.set_postfix_str(_phases(pods), refresh=False)
                progress.refresh()
                if _condition(status, "Complete"):
                    for stream in self._streams.values():  # let rank 0's last lines arrive
                        stream.join(timeout=10)
                    return JobOutcome(self.name, self.namespace, time.monotonic() - start)
                if _condition(status, "Failed"):
                    raise TrainingFailedError(f"Job {self.namespace}/{self.name} failed\n" + self._failure_report(pods))
                if time.monotonic() - start > timeout_s:
                    self.cancel()
                    raise TrainingFailedError(f"Job {self.name} exceeded its {timeout_s} s limit and was deleted")
                if interrupted.wait(poll_s):
                    raise KeyboardInterrupt

    def cancel(self) -> None:
        """Delete the Job and everything it owns (pods included); a missing object is fine."""
        for delete in (lambda: self.batch.delete_namespaced_job(self.name, self.namespace, propagation_policy="Foreground"),
                       lambda: self.core.delete_namespaced_service(self.name, self.namespace),
                       lambda: self.core.delete_namespaced_config_map(self.name, self.namespace)):  # fmt: skip
            try:
                delete()
            except ApiException as error:
                if error.status != 404:
                    raise
        log.warning("deleted Job %s/%s and its pods", self.namespace, self.name)

    def _pods(self) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={self.name}").items

    def _follow_rank0(self, pods: list[client.V1Pod]) -> None:
        """Stream the log of each new pod of index 0 (the one that hosts rank 0) as it starts."""
        for pod in pods:
            labels = pod.metadata.labels or {}
            name = pod.metadata.name
            if labels.get(INDEX_LABEL) == "0" and pod.status.phase != "Pending" and name not in self._streams:
                self._streams[name] = threading.Thread(target=self._stream, args=(name,), daemon=True)
                self._streams[name].start()

    def _stream(self, pod: str) -> None:
        try:
            for line in watch.Watch().stream(self.core.read_namespaced_pod_log, name=pod, namespace=self.namespace):
                log.info("[%s] %s", pod, line)
        except Exception as error:  # noqa: BLE001 (a broken log stream must not stop the wait)
            log.debug("log stream of %s ended: %s", pod, error)

    def _failure_report(self, pods: list[client.V1Pod]) -> str:
        lines = []
        for pod in pods:
            name = pod.metadata.name
            for state in pod.status.container_statuses or []:
                ended = state.state.terminated if state.state else None
                if ended is not None and ended.exit_code:
                    lines.append(f"pod {name}: container {state.name} exited {ended.exit_code} ({ended.reason})")
            if pod.status.phase != "Failed":
                continue
            events = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}")
            lines += [f"  event {e.type} {e.reason}: {e.message}" for e in events.items]
            try:
                tail = self.core.read_namespaced_pod_log(name, self.namespace, tail_lines=30)
            except ApiException as error:
                tail = f"(no log: {error.reason})"
            lines += [f"  | {line}" for line in tail.splitlines()]
        return "\n".join(lines) or "(no pod reported a failure; see `kubectl describe job`)"


def _condition(status: client.V1JobStatus, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in status.conditions or [])


def _phases(pods: list[client.V1Pod]) -> str:
    counts: dict[str, int] = {}
    for pod in pods:
        counts[pod.status.phase] = counts.get(pod.status.phase, 0) + 1
    return " ".join(f"{phase.lower()}={n}" for phase, n in sorted(counts.items()))


@contextlib.contextmanager
def _ctrl_c_checked_between_polls():
    """While waiting, Ctrl-C only sets a flag that the poll loop turns into KeyboardInterrupt:
    raised at an arbitrary point, it can land in a client library's ``__del__`` or cleanup code,
    where Python swallows it (one Ctrl-C went unanswered in a test run, most likely so)."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.set())
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def run_job(documents: list[dict[str, Any]], context: str | None, timeout_s: float, poll_s: float) -> JobOutcome:
    """Submit, follow to the end; Ctrl-C (or any error while waiting) deletes the Job."""
    job = TrainingJob(api_client(context), documents)
    job.submit()
    try:
        with _ctrl_c_checked_between_polls() as ctrl_c:
            return job.wait(timeout_s, poll_s, ctrl_c)
    except BaseException as error:
        if not isinstance(error, TrainingFailedError):  # a failed Job stays for `kubectl describe`
            job.cancel()
        raise
