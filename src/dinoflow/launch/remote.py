"""What the pipeline holds of a training run that lives on a cluster: where its checkpoint is and
how to bring it here, and the sentence that says so when a later node needs the run's files."""

from __future__ import annotations

from pathlib import Path

from dinoflow.config.pipeline_params import LauncherParams
from dinoflow.contracts import PretrainResult
from dinoflow.launch.manifests import job_name


class RunNotHereError(RuntimeError):
    """The training ran (or was only rendered) on Kubernetes and its folder is not mounted here."""


def remote_result(
    launcher: LauncherParams, key: str, job: str | None, mlflow_run_id: str, lineage: dict[str, str]
) -> PretrainResult:
    """The pretrain result of a run on the checkpoints claim (``job`` None: only rendered)."""
    params = launcher.kubernetes
    return PretrainResult(
        dry_run=job is None,
        job=job,
        checkpoint=f"pvc://{params.checkpoints_claim}/{key}/checkpoint.pt",
        config_hash=key,
        mlflow_run_id=mlflow_run_id,
        manifests=str(Path(params.manifests_dir) / f"{job_name(key)}.yaml"),
        output_root=launcher.output_root,
        **lineage,
    )


def require_local_run(pretrain_result: PretrainResult, needed_by: str) -> None:
    """Raises ``RunNotHereError`` naming what to do when the run's folder is not on this machine."""
    if pretrain_result.is_local:
        return
    where = pretrain_result.output_root or "pretrain_launcher.output_root"
    if pretrain_result.dry_run:
        happened = (f"pretrain_launcher.kubernetes.dry_run is true: the training Job was only rendered to "
                    f"{pretrain_result.manifests}, nothing was trained")  # fmt: skip
        todo = "apply it (`kubectl apply -f` that file) and re-run once the claim is mounted, or set dry_run: false"
    else:
        happened = f"the training ran on Kubernetes as Job {pretrain_result.job}"
        todo = "mount that claim there (the scheduled overlay does) and re-run: the finished run is reused"
    raise RunNotHereError(
        f"{needed_by} needs the trained run's files, and {happened}; its checkpoint is "
        f"{pretrain_result.checkpoint}, which is not mounted at {where} (pretrain_launcher.output_root) "
        f"on this machine. To evaluate it here, {todo}."
    )
