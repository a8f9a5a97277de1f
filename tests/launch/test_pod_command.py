"""The pods' exact command and environment, taken from the Job the launcher renders, run as two
local "nodes" (one torchrun agent each, gloo, c10d rendezvous on 127.0.0.1): they train to the
end; and when one node is killed mid-run and comes back (as the Job recreates a lost pod), the
group restarts and finishes from the last checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dinoflow.config import resolve_config, save_config, to_dict
from dinoflow.config.pipeline_params import KubernetesParams
from dinoflow.launch.manifests import CONFIG_DIR, RENDEZVOUS_PORT, pod_output_dir, render_training_job
from dinoflow.train.checkpoint import load_checkpoint
from dinoflow.train.run_files import CHECKPOINT_NAME
from tests.faults.test_preemption import logged_steps
from tests.project_copy import PROJECT_ROOT
from tests.servers import free_port

pytestmark = [pytest.mark.slow]
KEY = "localnodes"


def node_commands(config: Path, dataset: str, out: Path) -> tuple[list[list[str]], dict[str, str]]:
    """Command and env of the rendered pod, with the cluster's names mapped to this machine:
    the pod-0 DNS name → 127.0.0.1, the claims and the ConfigMap → local folders and files."""
    params = KubernetesParams(nodes=2, dataset_path="/data/dataset", max_restarts=2)
    job = render_training_job(PROJECT_ROOT / "k8s" / "base", KEY, config.read_text(), params, 1)[2]
    container = job["spec"]["template"]["spec"]["containers"][0]
    name = job["metadata"]["name"]
    port = free_port()
    mapping = {
        f"{name}-0.{name}:{RENDEZVOUS_PORT}": f"127.0.0.1:{port}",
        f"{CONFIG_DIR}/config.yaml": str(config),
        params.dataset_path: dataset,
        pod_output_dir(KEY): str(out),
    }
    args = []
    for arg in container["args"]:  # whole values, or the value of --flag=value
        flag, _, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
        args.append(f"{flag}={mapping[value]}" if flag and value in mapping else mapping.get(arg, arg))
    assert container["command"] == ["torchrun"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    env = {
        **os.environ,
        **{e["name"]: e["value"] for e in container["env"] if "value" in e},
        "HOME": os.environ["HOME"],
    }
    return [[torchrun, *args] for _ in range(2)], env


def start_node(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True)


def start_nodes(commands: list[list[str]], env: dict[str, str], logs: list[Path]) -> list[subprocess.Popen]:
    """Node 0 first: it hosts the rendezvous store, as pod 0 (the endpoint's DNS name) does."""
    first = start_node(commands[0], env, logs[0])
    endpoint = next(a for a in commands[0] if a.startswith("--rdzv-endpoint=")).split("=", 1)[1]
    host, port = endpoint.rsplit(":", 1)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
            break  # the store is up
        assert time.monotonic() < deadline and first.poll() is None, logs[0].read_text()[-3000:]
        time.sleep(0.05)
    return [first, start_node(commands[1], env, logs[1])]


@pytest.fixture
def setup(tiny_config, tiny_shards, tmp_path):
    def make(epochs: int):  # 3 iterations per epoch: 48 images, 8 per rank, 2 ranks
        section = to_dict(tiny_config)
        section["optim"]["epochs"] = epochs
        section["run"].update(checkpoint_every=3, loader_workers=0)
        config = save_config(resolve_config(section, {}), tmp_path / "config.yaml")
        out = tmp_path / "checkpoints"
        commands, env = node_commands(config, str(tiny_shards["dir"]), out)
        return commands, env, out

    return make


def lose_node(node: subprocess.Popen) -> None:
    """SIGKILL the agent and every process under it, as losing the pod does (torchrun starts its
    workers in sessions of their own, so the process group alone would leave them running)."""
    tree = psutil.Process(node.pid)
    for process in [tree, *tree.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    node.wait()


def wait_all(nodes: list[subprocess.Popen], timeout: float, logs: list[Path]) -> None:
    for node, log in zip(nodes, logs, strict=True):
        assert node.wait(timeout=timeout) == 0, log.read_text()[-4000:]


def test_two_nodes_from_the_rendered_job_train_to_the_end(setup, tmp_path):
    commands, env, out = setup(epochs=4)
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = start_nodes(commands, env, logs)
    wait_all(nodes, 300, logs)
    assert json.loads((out / "summary.json").read_text())["iterations"] == 12
    assert logged_steps(out) == list(range(1, 13))


def test_a_killed_node_comes_back_and_the_group_resumes_from_the_checkpoint(setup, tmp_path):
    commands, env, out = setup(epochs=15)
    logs = [tmp_path / f"node{i}.log" for i in range(2)]
    nodes = start_nodes(commands, env, logs)
    deadline = time.monotonic() + 240
    while not (out / CHECKPOINT_NAME).exists() or load_checkpoint(out / CHECKPOINT_NAME)["iteration"] < 6:
        assert time.monotonic() < deadline and nodes[0].poll() is None, logs[0].read_text()[-4000:]
        time.sleep(0.05)
    lose_node(nodes[1])
    killed_at = load_checkpoint(out / CHECKPOINT_NAME)["iteration"]
    # The Job recreates the pod a little later; by then node 0's agent has seen its worker fail.
    deadline = time.monotonic() + 120
    while "failed (exitcode" not in logs[0].read_text():
        assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
        time.sleep(0.05)
    nodes[1] = start_node(commands[1], env, logs[1])
    wait_all(nodes, 400, logs)
    text = logs[0].read_text()
    resumed = [int(line.rsplit(" ", 1)[-1]) for line in text.splitlines() if "resumed from" in line]
    assert resumed and resumed[-1] >= killed_at and resumed[-1] < 45
    assert json.loads((out / "summary.json").read_text())["iterations"] == 45
    assert logged_steps(out)[-1] == 45
