"""Render the Kubernetes objects of one training run from the kustomize base in ``k8s/base``.

The launcher submits exactly what ``kubectl apply -k`` would (same pod security, volumes, failure
policy), sized and pointed by the ``pretrain_launcher.kubernetes`` parameters:

- a ConfigMap holding the resolved training config (mounted at ``/etc/dinoflow``),
- a headless Service giving pod 0 the stable name that hosts the c10d rendezvous,
- an Indexed Job of ``nodes`` pods, each running ``torchrun ... -m dinoflow.train``.

Pure YAML manipulation: nothing here talks to a cluster (``dry_run`` writes these files only).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from dinoflow.config.pipeline_params import KubernetesParams
from dinoflow.launch.local import train_args

CONFIG_DIR = "/etc/dinoflow"
CHECKPOINTS_MOUNT = "/checkpoints"
RENDEZVOUS_PORT = 29500
FINISHED_JOB_TTL_S = 7 * 24 * 3600  # finished Jobs (and their pods' logs) stay a week


def job_name(run_key: str) -> str:
    """DNS-1123 name shared by the Job, its Service and ConfigMap (pods: ``<name>-<index>-<hash>``)."""
    return f"dinoflow-{run_key}"


def pod_output_dir(run_key: str) -> str:
    """Where the pods write checkpoints: the run's folder on the checkpoints claim."""
    return f"{CHECKPOINTS_MOUNT}/{run_key}"


def torchrun_args(name: str, nodes: int, nproc_per_node: int, max_restarts: int) -> list[str]:
    """Static-size c10d rendezvous hosted by pod 0; a lost pod makes the group restart."""
    return [
        f"--nnodes={nodes}",
        f"--nproc-per-node={nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={name}-0.{name}:{RENDEZVOUS_PORT}",
        f"--rdzv-id={name}",
        f"--max-restarts={max_restarts}",
    ]


def _tracking_env(tracking_uri: str | None, run_id: str | None, secret: str) -> list[dict[str, Any]]:
    if not tracking_uri:
        return []
    if urlsplit(tracking_uri).username or urlsplit(tracking_uri).password:
        raise ValueError(
            "pretrain_launcher.kubernetes.tracking_uri must not contain credentials: "
            f"put them in the Secret '{secret}' (keys username, password)"
        )
    secret_env = [
        {"name": f"MLFLOW_TRACKING_{key.upper()}",
         "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for key in ("username", "password")
    ]  # fmt: skip
    return [
        {"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
        {"name": "MLFLOW_RUN_ID", "value": run_id or ""},
        *secret_env,
    ]


def render_training_job(
    base_dir: Path,
    run_key: str,
    config_text: str,
    params: KubernetesParams,
    nproc_per_node: int,
    tracking_uri: str | None = None,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """The ConfigMap, Service and Job of one run, in creation order.

    Args:
        base_dir: the kustomize base (``k8s/base``) the pod template comes from.
        config_text: the resolved training config (YAML) the pods train with.
        nproc_per_node: processes per pod when ``params.gpus_per_node`` is 0 (else one per GPU).
        tracking_uri / run_id: the MLflow run rank 0 logs into; None: metrics stay in the
            run's ``metrics.jsonl`` on the checkpoints claim.
    """
    name = job_name(run_key)
    labels = {
        "app.kubernetes.io/name": "dinoflow",
        "app.kubernetes.io/component": "pretrain",
        "dinoflow.io/run": run_key,
    }
    metadata = {"name": name, "namespace": params.namespace, "labels": labels}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": copy.deepcopy(metadata),
                  "data": {"config.yaml": config_text}}  # fmt: skip

    service = yaml.safe_load((Path(base_dir) / "service.yaml").read_text())
    service["metadata"] = copy.deepcopy(metadata)
    service["spec"]["selector"] = {"job-name": name}

    job = yaml.safe_load((Path(base_dir) / "job.yaml").read_text())
    job["metadata"] = copy.deepcopy(metadata)
    spec = job["spec"]
    spec["completions"] = spec["parallelism"] = params.nodes
    spec["ttlSecondsAfterFinished"] = FINISHED_JOB_TTL_S
    spec["template"]["metadata"] = {"labels": copy.deepcopy(labels)}
    pod = spec["template"]["spec"]
    pod["subdomain"] = name
    processes = params.gpus_per_node or nproc_per_node
    container = pod["containers"][0]
    container["image"] = params.image
    container["command"] = ["torchrun"]
    sinks = ["mlflow"] if tracking_uri else []
    container["args"] = [
        *torchrun_args(name, params.nodes, processes, params.max_restarts),
        "-m", "dinoflow.train",
        *train_args(f"{CONFIG_DIR}/config.yaml", params.dataset_path, pod_output_dir(run_key), sinks),
    ]  # fmt: skip
    container["env"] = [e for e in container["env"] if not e["name"].startswith("MLFLOW_")]
    container["env"] += _tracking_env(tracking_uri, run_id, params.tracking_secret)
    amounts = {"cpu": params.cpu, "memory": params.memory}
    if params.gpus_per_node:
        amounts["nvidia.com/gpu"] = str(params.gpus_per_node)
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    container["resources"] = {"requests": dict(amounts), "limits": dict(amounts)}
    container["volumeMounts"].append({"name": "config", "mountPath": CONFIG_DIR, "readOnly": True})
    claims = {"data": params.data_claim, "checkpoints": params.checkpoints_claim}
    for volume in pod["volumes"]:
        if volume["name"] in claims:
            volume["persistentVolumeClaim"]["claimName"] = claims[volume["name"]]
    pod["volumes"].append({"name": "config", "configMap": {"name": name}})
    return [config_map, service, job]


def write_manifests(documents: list[dict[str, Any]], path: Path) -> Path:
    """One multi-document YAML file, ready for ``kubectl apply -f``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path
