"""Every overlay renders with kustomize, validates strictly against the Kubernetes 1.33 schemas
offline, meets the "restricted" Pod Security Standard, sets resources and holds no secret value."""

from __future__ import annotations

import copy
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.k8s.pod_security import restricted_violations
from tests.project_copy import PROJECT_ROOT

K8S_VERSION = "1.33.0"
OVERLAYS = sorted(p.name for p in (PROJECT_ROOT / "k8s" / "overlays").iterdir() if p.is_dir())
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|CREDENTIAL|API_KEY|ACCESS_KEY", re.I)


def render(overlay: str) -> list[dict]:
    result = subprocess.run(["kubectl", "kustomize", str(PROJECT_ROOT / "k8s" / "overlays" / overlay)],
                            capture_output=True, text=True, check=True)  # fmt: skip
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pod_specs(docs: list[dict]) -> list[dict]:
    specs = []
    for doc in docs:
        if doc["kind"] == "Job":
            specs.append(doc["spec"]["template"]["spec"])
        elif doc["kind"] == "CronJob":
            specs.append(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return specs


def test_there_are_overlays_for_cpu_and_gpu():
    assert {"cpu-smoke", "gpu"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly_offline(overlay):
    docs = render(overlay)
    assert "PersistentVolumeClaim" in {d["kind"] for d in docs}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_restricted_with_resources_and_no_secret_values(overlay):
    docs = render(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"]
    specs = pod_specs(docs)
    assert specs
    for spec in specs:
        assert restricted_violations(spec) == []
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (container["name"], kind)
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{env['name']} must come from a Secret"


def test_a_typo_in_a_field_fails_validation():
    job = next(d for d in render("cpu-smoke") if d["kind"] == "Job")
    job["spec"]["completionMod"] = job["spec"].pop("completionMode")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


def test_the_checker_catches_each_kind_of_violation():
    spec = pod_specs(render("cpu-smoke"))[0]
    for mutate, expected in [
        (lambda s: s["containers"][0]["securityContext"].update(privileged=True), "privileged"),
        (lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
        (lambda s: s["containers"][0]["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
        (lambda s: s["containers"][0]["securityContext"].update(runAsUser=0), "UID 0"),
        (lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccompProfile"),
        (lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "adds capabilities"),
        (lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda s: s.update(hostNetwork=True), "hostNetwork"),
    ]:  # fmt: skip
        broken = copy.deepcopy(spec)
        mutate(broken)
        assert any(expected in problem for problem in restricted_violations(broken)), expected


def test_scheduled_overlay_runs_the_whole_pipeline_without_overlaps():
    docs = render("scheduled")
    assert not [d for d in docs if d["kind"] in ("Job", "Service")]  # the launcher creates those per run
    (cron,) = [d for d in docs if d["kind"] == "CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["successfulJobsHistoryLimit"] >= 1 and cron["spec"]["failedJobsHistoryLimit"] >= 1
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kedro", "run"]  # every pipeline, not only pretraining
    overrides = dict(
        item.split("=", 1) for item in container["args"][container["args"].index("--params") + 1].split(",")
    )
    assert overrides["pretrain_launcher.kind"] == "kubernetes"
    parameters = {}
    for path in (PROJECT_ROOT / "conf" / "base").glob("parameters*.yml"):
        parameters.update(yaml.safe_load(path.read_text()) or {})
    # Each weekly run continues pretraining from the champion of the model the pipeline registers.
    assert overrides["pretrain.init_from"] == f"models:/{parameters['register']['model_name']}@champion"
    for key in overrides:  # each override names a real parameter
        node = parameters
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, key
            node = node[part]


def test_the_launcher_role_grants_only_what_the_launcher_uses():
    (role,) = [d for d in render("scheduled") if d["kind"] == "Role"]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}  # fmt: skip
    assert not [g for g in granted if "*" in g or g[1] == "secrets"]
    assert ("batch", "jobs", "create") in granted and ("", "pods/log", "get") in granted
