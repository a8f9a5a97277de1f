"""A FAKE Kubernetes API server on loopback, for the launcher's control-flow tests only.

No cluster exists on the test machines. This serves the handful of REST endpoints the launcher
calls (create Job/ConfigMap/Service, read Job status, list pods and events, pod logs, deletes)
with JSON shaped like the real API, and plays one scripted scenario per Job:

- ``succeed``: pods Pending → Running → Succeeded, Job Complete;
- ``fail``: pod 1 exits 1 with an OOM message in its log and a warning event, Job Failed;
- ``hang``: pods stay Running (for cancel tests).

Each read of the Job's status advances the script by one step. Every request is recorded.
It checks nothing about scheduling, admission or RBAC: the manifests themselves are validated
against the real schemas elsewhere.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROUTE = re.compile(
    r"^/(?:api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<kind>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|log))?$"
)  # noqa: E501
RANK0_LOG = ["INFO dinoflow.train: it 2/4 loss=5.1", "INFO dinoflow.train: it 4/4 loss=4.9"]
FAILED_LOG = ["Traceback (most recent call last):", "RuntimeError: CUDA out of memory on rank 1"]


class FakeKubeApi:
    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.objects: dict[tuple[str, str], dict] = {}  # (kind, name) → body as created
        self.requests: list[tuple[str, str]] = []
        self.step = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeKubeApi:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))  # fmt: skip
        return path

    # --- the scripted world -------------------------------------------------------------------
    def job(self) -> dict | None:
        return next((body for (kind, _), body in self.objects.items() if kind == "jobs"), None)

    def pods(self) -> list[dict]:
        job = self.job()
        if job is None:
            return []
        name, nodes = job["metadata"]["name"], job["spec"]["completions"]
        return [self._pod(name, index) for index in range(nodes)]

    def _pod(self, job: str, index: int) -> dict:
        phase = ["Pending", "Running", "Succeeded"][min(self.step, 2)]
        if self.scenario == "hang":
            phase = "Pending" if self.step == 0 else "Running"
        failed = self.scenario == "fail" and index == 1 and self.step >= 2
        if self.scenario == "fail" and self.step >= 2:
            phase = "Failed" if failed else "Running"
        state = {"terminated": {"exitCode": 1, "reason": "Error"}} if failed else {"running": {}}
        return {
            "metadata": {"name": f"{job}-{index}-abcde",
                         "labels": {"job-name": job, "batch.kubernetes.io/job-completion-index": str(index)}},
            "status": {"phase": phase, "containerStatuses": [{"name": "train", "ready": phase == "Running",
                       "restartCount": 0, "image": "x", "imageID": "x", "state": state}]},
        }  # fmt: skip

    def job_status(self) -> dict:
        with self.lock:
            self.step += 1
            step = self.step
        if self.scenario == "succeed" and step >= 2:
            return {"succeeded": self.job()["spec"]["completions"],
                    "conditions": [{"type": "Complete", "status": "True"}]}  # fmt: skip
        if self.scenario == "fail" and step >= 2:
            return {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
        return {"active": self.job()["spec"]["completions"]}

    def log(self, pod: str) -> str:
        return "\n".join(FAILED_LOG if pod.split("-")[-2] == "1" else RANK0_LOG) + "\n"

    def events(self, pod: str) -> list[dict]:
        if self.scenario == "fail" and pod.split("-")[-2] == "1":
            return [{"metadata": {"name": "e1"}, "involvedObject": {"name": pod}, "type": "Warning",
                     "reason": "BackOff", "message": "Back-off restarting failed container train"}]  # fmt: skip
        return []

    # --- HTTP -------------------------------------------------------------------------------------
    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, code: int, body, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self):
                url = urlsplit(self.path)
                api.requests.append((self.command, url.path))
                return ROUTE.match(url.path), parse_qs(url.query)

            def do_POST(self) -> None:
                match, _ = self._route()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body["metadata"]["uid"] = str(uuid.uuid4())
                api.objects[(match["kind"], body["metadata"]["name"])] = body
                self._send(201, body)

            def do_GET(self) -> None:
                match, query = self._route()
                kind, name, sub = match["kind"], match["name"], match["sub"]
                if kind == "jobs" and sub == "status":
                    if ("jobs", name) not in api.objects:
                        return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return self._send(200, {**api.objects[("jobs", name)], "status": api.job_status()})
                if kind == "pods" and sub == "log":
                    return self._send(200, api.log(name), "text/plain")
                if kind == "pods":
                    return self._send(200, {"kind": "PodList", "items": api.pods()})
                if kind == "events":
                    pod = query.get("fieldSelector", [""])[0].split("=")[-1]
                    return self._send(200, {"kind": "EventList", "items": api.events(pod)})
                self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

            def do_DELETE(self) -> None:
                match, _ = self._route()
                found = api.objects.pop((match["kind"], match["name"]), None)
                if found and match["kind"] == "services":  # the real API answers with the deleted Service
                    return self._send(200, found)
                code = 200 if found else 404
                self._send(code, {"kind": "Status", "code": code, "status": "Success" if found else "Failure"})

        return Handler
