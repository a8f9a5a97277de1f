"""Model registry on MLflow: register backbones, move the ``champion`` alias, roll back.

A registered version carries its evidence as tags (git sha, data hashes, config hash, evaluation
metrics, validation status, collapse flag) and its run holds ``backbone_files/`` (the resolved
training config, the safetensors weights, the ONNX export), so any version can be rebuilt and
re-scored. Promotion decisions are tags on the challenger version (``promotion.*``); the
champion's ``promotion.previous_champion`` tag is what a rollback returns to. Descriptions, written
from those tags, are for people: each version's scorecard and the registered model's overview.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from requests import RequestException

from dinoflow.atomic import WriteFailedError
from dinoflow.registry.gates import Decision
from dinoflow.registry.scorecard import model_description, version_description
from dinoflow.tracking.mlflow_run import metric_name

if TYPE_CHECKING:
    import numpy as np
    import torch

    from dinoflow.eval.features import ImagePreprocessing

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"
FILES_DIR = "backbone_files"
# What a registry or artifact store that is down, full or read-only raises through the client.
REGISTRY_ERRORS = (MlflowException, RequestException, OSError)


class RegistrationFailedError(RuntimeError):
    """The registry or its artifact store refused the model on every try; nothing was registered."""


@contextmanager
def _one_request_per_try() -> Iterator[None]:
    """MLflow's client retries each request up to 7 times with growing waits (minutes when the
    server is gone); under :func:`with_retries` a try is one request, so its bound holds."""
    previous = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = previous


def with_retries(action: Callable[[], Any], attempts: int, first_wait_s: float, kept: str) -> Any:
    """``action()``, tried ``attempts`` times with waits of ``first_wait_s``, then doubled, between
    tries, while the registry or its artifact store fails (``REGISTRY_ERRORS``).

    Args:
        kept: what the failure message tells the user is kept and how to register it later.

    Raises:
        RegistrationFailedError: every try failed; the message names the last error and the limit.
    """
    wait, attempt = first_wait_s, 1
    while True:
        try:
            with _one_request_per_try():
                return action()
        except WriteFailedError:
            raise  # a local file (the ONNX export) could not be written: not the registry's fault
        except REGISTRY_ERRORS as error:
            cause = f"{type(error).__name__}: {error}".splitlines()[0][:500]
            if attempt >= attempts:
                raise RegistrationFailedError(
                    f"the model registry at {mlflow.get_tracking_uri()} failed on all {attempts} tries to register the model "
                    f"(register.attempts = {attempts}, waits from register.retry_wait_s = {first_wait_s:g} s); "
                    f"last error: {cause}. The registration did not complete. {kept}"
                ) from error
            log.warning("registration try %d of %d failed (%s); trying again in %.0f s", attempt, attempts, cause, wait)
        time.sleep(wait)
        wait, attempt = wait * 2, attempt + 1


def register_backbone(
    backbone: torch.nn.Module,
    input_example: np.ndarray,
    model_name: str,
    alias: str,
    tags: Mapping[str, Any],
    files: Sequence[Path],
    metrics: Mapping[str, float] = {},  # noqa: B006 (read-only)
    preprocessing: ImagePreprocessing | None = None,
) -> dict[str, Any]:
    """Log ``backbone`` in the active run as one model with a pt2 (torch.export) ``pytorch`` flavour
    and an image-in ``python_function`` flavour (``registry.image_model``), with ``files`` under
    ``backbone_files/``, register it and point ``alias`` at the new version. ``metrics`` (the
    evaluation's flat keys) are linked to the logged model, so MLflow 3's model pages and the
    experiment's model list show its scores.

    Args:
        input_example: (B, 3, S, S) float32 with B >= 2, normalised like training images.
        files: must hold ``config.yaml`` and the safetensors weights (the image-in flavour's data).
        preprocessing: how served images are prepared, from the dataset's storage settings; None:
            as a dataset stored at the evaluation size S (max_side S, max_aspect 3, white background).

    Returns:
        ``{"name", "version", "alias", "model_uri", "logged_model_uri", "logged_model_id"}``.
    """
    from dinoflow.eval.features import ImagePreprocessing  # noqa: F811 (torch: imported where a model is logged)
    from dinoflow.registry import image_model

    for path in files:
        mlflow.log_artifact(str(path), FILES_DIR)
    size = int(input_example.shape[-1])
    info = image_model.log_model(
        backbone.eval(), input_example, files, preprocessing or ImagePreprocessing(image_size=size, max_side=size)
    )
    if metrics:
        mlflow.log_metrics({metric_name(k): float(v) for k, v in metrics.items()}, model_id=info.model_id)
    # The version is created with its tags in one call: a registration cut short after it is found
    # again by ``identical_version`` (its run key and weights tags) instead of registered twice.
    registered = mlflow.register_model(info.model_uri, model_name, tags={k: str(v) for k, v in tags.items()})
    version = str(registered.version)
    MlflowClient().set_registered_model_alias(model_name, alias, version)
    describe(model_name, version)
    return {
        "name": model_name,
        "version": version,
        "alias": alias,
        "model_uri": f"models:/{model_name}@{alias}",
        "logged_model_uri": info.model_uri,
        "logged_model_id": info.model_id,  # MLflow 3's logged model: holds the linked evaluation scores
    }


def identical_version(model_name: str, run_key: str, weights_sha256: str) -> ModelVersion | None:
    """The oldest version of ``model_name`` registered from the same run key (``config_hash`` tag:
    config, data and training code) with the same weights (``weights_sha256`` tag), or None."""
    query = f"name = '{model_name}' and tags.config_hash = '{run_key}' and tags.weights_sha256 = '{weights_sha256}'"
    found = MlflowClient().search_model_versions(query)
    return min(found, key=lambda v: int(v.version)) if found else None


def link_version(version: ModelVersion, alias: str) -> dict[str, Any]:
    """Point ``alias`` at an already registered ``version`` instead of registering a duplicate.

    Returns:
        what :func:`register_backbone` returns, with ``"linked": True``.
    """
    name, number = version.name, str(version.version)
    MlflowClient().set_registered_model_alias(name, alias, number)
    describe(name, number)
    return {
        "name": name,
        "version": number,
        "alias": alias,
        "model_uri": f"models:/{name}@{alias}",
        "logged_model_uri": version.source,
        "logged_model_id": logged_model_id(version),
        "linked": True,
    }


def version_by_alias(model_name: str, alias: str) -> ModelVersion | None:
    try:
        return MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def registered_version(uri: str) -> ModelVersion:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` → that version; a sentence
    naming the URI when the form is wrong or the registry has no such version."""
    body = uri.removeprefix("models:/")
    name, alias = body.split("@", 1) if "@" in body else (body.rsplit("/", 1)[0], None)
    if body == uri or not name or (alias is None and not body.rsplit("/", 1)[-1].isdigit()):
        raise ValueError(
            f"{uri!r} is not a registered model URI: use models:/<name>@<alias> or models:/<name>/<version>"
        )
    try:
        if alias is not None:
            return MlflowClient().get_model_version_by_alias(name, alias)
        return MlflowClient().get_model_version(name, body.rsplit("/", 1)[-1])
    except MlflowException as err:
        raise LookupError(f"the registry at {mlflow.get_tracking_uri()} has no {uri}: {err.message}") from err


def download_backbone_files(version: ModelVersion, destination: Path) -> Path:
    """The version's ``backbone_files/`` (config.yaml, teacher_backbone.safetensors, backbone.onnx)."""
    local = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path=FILES_DIR, dst_path=str(destination)
    )
    return Path(local)


def logged_model_id(version: ModelVersion) -> str | None:
    """The MLflow 3 logged model a version was registered from: its source is ``models:/<id>`` (the
    version's own ``model_id`` field stays empty in this MLflow); None for one registered from run files."""
    return version.source.removeprefix("models:/") if version.source.startswith("models:/") else None


def recorded_scores(version: ModelVersion) -> dict[str, float]:
    """The evaluation scores linked to the version's logged model (``register_backbone``'s
    ``metrics``), as numbers by their flat keys (``knn_top1``, ``seg_miou_random_init``, ...);
    empty for a version without them (registered from files, or without an evaluation)."""
    model_id = logged_model_id(version)
    return dict(_logged_model_metrics(model_id)) if model_id is not None else {}


@functools.lru_cache(maxsize=64)
def _logged_model_metrics(model_id: str) -> tuple[tuple[str, float], ...]:
    """One request per logged model and process: promote asks for the challenger's scores up to three
    times (its own, its random-init twin's, raw pixels'). Safe to keep: ids are unique and
    ``register_backbone`` links the metrics before the version exists."""
    metrics = MlflowClient().get_logged_model(model_id).metrics or []
    return tuple((metric.key.rsplit("/", 1)[-1], float(metric.value)) for metric in metrics)


def record_decision(
    model_name: str, challenger: str, champion: str | None, decision: Decision, tags: Mapping[str, Any]
) -> None:
    """Tag the challenger version with the decision; on promotion move ``champion`` to it."""
    client = MlflowClient()
    record = {
        "promotion.decision": "promoted" if decision.promote else "rejected",
        "promotion.reasons": "; ".join(decision.reasons),
        "promotion.compared_with": champion or "none (first promotion)",
        "promotion.time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **tags,
    }
    if decision.promote:
        record["promotion.previous_champion"] = champion or "none"
    for key, value in record.items():
        client.set_model_version_tag(model_name, challenger, key, str(value))
    if decision.promote:
        client.set_registered_model_alias(model_name, CHAMPION, challenger)
    describe(model_name, challenger)


def describe(model_name: str, version: str) -> None:
    """Write the version's scorecard and the registered model's overview (its aliases) from tags."""
    client = MlflowClient()
    tags = client.get_model_version(model_name, version).tags
    client.update_model_version(model_name, version, description=version_description(model_name, version, tags))
    aliases = dict(client.get_registered_model(model_name).aliases)
    tags_by_version = {v: client.get_model_version(model_name, v).tags for v in set(aliases.values())}
    client.update_registered_model(model_name, description=model_description(model_name, aliases, tags_by_version))


def rollback(model_name: str, to_version: str | None = None) -> dict[str, str]:
    """Point ``champion`` back at ``to_version``, by default the champion it replaced.

    Returns:
        ``{"name", "from", "to"}``.
    """
    client = MlflowClient()
    current = version_by_alias(model_name, CHAMPION)
    if current is None:
        raise ValueError(f"model '{model_name}' has no @{CHAMPION} to roll back")
    target = to_version or current.tags.get("promotion.previous_champion", "none")
    if target == "none":
        raise ValueError(
            f"v{current.version} was the first champion of '{model_name}': name a version with --to-version"
        )
    client.get_model_version(model_name, target)  # fails clearly when the version does not exist
    client.set_registered_model_alias(model_name, CHAMPION, target)
    client.set_model_version_tag(
        model_name, current.version, "promotion.rolled_back", f"champion moved back to v{target}"
    )
    describe(model_name, current.version)
    return {"name": model_name, "from": current.version, "to": target}
