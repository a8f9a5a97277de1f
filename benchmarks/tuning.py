"""Does tuning pay on real data? The Optuna study over the teacher temperature and momentum
schedules (``kedro run --pipelines tune``) on the quality benchmark's Fashion-MNIST folder, with a
proxy budget of a fifth of the training budget and pruning on the online k-NN; then, at the full
budget and through the real pipeline:

- the preset and the best trial's values (applied with ``pretrain_tuned.use=true``), on every seed;
- a few more trials spread over the study's ranking (pruned ones included), seed 0, for the rank
  correlation between the study's ranking and the full budget's k-NN (Spearman; the preset is the
  study's trial 0).

Writes benchmarks/results/tuning.json and prints a table with the CPU kind and the GEMM peaks
measured in the same run.

    python benchmarks/tuning.py [--minutes 10] [--proxy-share 0.2] [--trials 8] [--seeds 0 1] [--check 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import optuna
import yaml
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import fresh_clone  # noqa: E402
from fashion_mnist import DatasetUnavailable, write_folder  # noqa: E402
from quality import kedro_run, run_pipeline  # noqa: E402
from quality_common import RESULTS, machine, write_report  # noqa: E402

STORAGE = "data/07_model_output/optuna.db"


def tune(project: Path, minutes: float, proxy_share: float, trials: int, probe_images: int) -> list[dict]:
    """The study in the clone, its proxy a ``proxy_share`` of the budget; every trial as a dict."""
    settings = project / "conf" / "base" / "parameters_tune.yml"  # the clone's own: nothing else reads it
    params = yaml.safe_load(settings.read_text())["tune"]
    params.update(
        storage=f"sqlite:///{STORAGE}", n_trials=trials, probe_images=probe_images, timeout_s=36000,
        # Only the budget changes: the preset's nominal epochs keep every schedule's shape, so the
        # proxy is the full run at a smaller scale.
        proxy={"optim.time_budget_minutes": minutes * proxy_share, "run.log_every": 20,
               "run.checkpoint_every": 1_000_000},
    )  # fmt: skip
    settings.write_text(yaml.safe_dump({"tune": params}))
    kedro_run(project, "--pipelines", "tune", "--params",
              f"pretrain.preset=small,pretrain.optim.time_budget_minutes={minutes}")  # fmt: skip
    study = optuna.load_study(study_name=params["study_name"], storage=f"sqlite:///{project / STORAGE}")
    return [{"number": t.number, "state": t.state.name, "proxy_knn": t.value, "params": t.params,
             "online_knn_by_epoch": t.intermediate_values, "pruned_reason": t.user_attrs.get("pruned_reason")}
            for t in study.trials if t.value is not None]  # fmt: skip


def study_rank(trial: dict) -> tuple:
    """How the study ranks a trial (larger is better): complete trials by their final online k-NN,
    then pruned ones by how far they got and the k-NN they were pruned at."""
    return trial["state"] == "COMPLETE", len(trial["online_knn_by_epoch"]), trial["proxy_knn"]


def spread_over_ranking(trials: list[dict], count: int, taken: set[int]) -> list[dict]:
    """``count`` trials not yet ``taken``, pruned ones included, evenly spaced over the study's
    ranking: whether pruning discarded what the full budget would have kept is part of the question."""
    rest = sorted((t for t in trials if t["number"] not in taken), key=study_rank)
    if count <= 0 or not rest:
        return []
    step = (len(rest) - 1) / max(count - 1, 1)
    return [rest[round(i * step)] for i in range(min(count, len(rest)))]


def as_params(values: dict) -> list[str]:
    return [f"pretrain.{key}={value}" for key, value in values.items()]


def table(report: dict) -> str:
    rows = ["| arm | seed | proxy online k-NN | k-NN top-1 | linear top-1 | steps |", "|---|---|---|---|---|---|"]
    for arm in report["full_budget"]:
        proxy = "–" if arm["proxy_knn"] is None else f"{arm['proxy_knn']:.3f}"
        rows.append(f"| {arm['arm']} | {arm['seed']} | {proxy} | {arm['knn_top1']:.3f} | {arm['linear_top1']:.3f} "
                    f"| {arm['iterations']:,} |")  # fmt: skip
    m, corr = report["machine"], report["rank_correlation"]
    rows.append(f"\nSpearman rank correlation, the study's ranking vs full budget (seed 0, {corr['trials']} trials): "
                f"{corr['spearman']}")  # fmt: skip
    rows.append(f"{m['cpu']} ({m['kind']}), {m['threads']} threads; GEMM peak {m['gemm_peak_tflops_bf16']} TFLOP/s "
                f"bf16, {m['gemm_peak_tflops_fp32']} fp32; budget {report['minutes']} min, proxy "
                f"{report['minutes'] * report['proxy_share']:.1f} min")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="full training budget")
    parser.add_argument("--proxy-share", type=float, default=0.2, help="proxy budget as a share of the full one")
    parser.add_argument("--trials", type=int, default=8, help="trials of the study, the preset's own values first")
    parser.add_argument("--probe-images", type=int, default=2000, help="train and val images of the online k-NN")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the preset and best arms")
    parser.add_argument("--check", type=int, default=4, help="more trials re-run at the full budget (seed 0)")
    parser.add_argument("--data", type=Path, default=RESULTS / "fashion-mnist", help="where the folder is written")
    parser.add_argument("--out", type=Path, default=RESULTS / "tuning.json")
    args = parser.parse_args()
    try:
        folder = write_folder(args.data, {"train": 60000, "val": 10000})
    except DatasetUnavailable as error:
        sys.exit(f"error: {error}")
    report = {"benchmark": "tuning", "dataset": "fashion-mnist", "minutes": args.minutes,
              "proxy_share": args.proxy_share, "machine": machine(), "full_budget": []}  # fmt: skip

    def full(arm: str, seed: int, proxy_knn: float | None, params: list[str]) -> dict:
        result = {"arm": arm, "proxy_knn": proxy_knn, **run_pipeline(project, folder, args.minutes, seed, params)}
        report["full_budget"].append(result)
        print(json.dumps(result), flush=True)  # noqa: T201
        return result

    with tempfile.TemporaryDirectory() as tmp:
        project = fresh_clone(Path(tmp) / "project")
        preset_runs = [full("preset", args.seeds[0], None, [])]  # also builds the dataset the study reads
        report["trials"] = tune(project, args.minutes, args.proxy_share, args.trials, args.probe_images)
        complete = [t for t in report["trials"] if t["state"] == "COMPLETE"]
        if not complete:
            sys.exit(f"no trial completed: {report['trials']}")
        best = max(complete, key=lambda t: t["proxy_knn"])
        baseline = report["trials"][0]  # the preset's own values, enqueued first
        preset_runs[0]["proxy_knn"] = baseline["proxy_knn"]
        checked = [(baseline, preset_runs[0])]
        if best["number"] != baseline["number"]:
            checked.append((best, full(f"best (trial {best['number']})", args.seeds[0], best["proxy_knn"],
                                       ["pretrain_tuned.use=true"])))  # fmt: skip
        for trial in spread_over_ranking(report["trials"], args.check, {baseline["number"], best["number"]}):
            checked.append((trial, full(f"trial {trial['number']}", args.seeds[0], trial["proxy_knn"],
                                        as_params(trial["params"]))))  # fmt: skip
        for seed in args.seeds[1:]:
            full("preset", seed, baseline["proxy_knn"], [])
            if best["number"] != baseline["number"]:
                full(f"best (trial {best['number']})", seed, best["proxy_knn"], ["pretrain_tuned.use=true"])
    order = sorted(report["trials"], key=study_rank)
    pairs = [(order.index(t), run["knn_top1"]) for t, run in checked]  # the study's rank, 0 = worst
    rho = spearmanr(*zip(*pairs, strict=True)).statistic if len(pairs) >= 3 else None
    report["rank_correlation"] = {"trials": len(pairs), "spearman": None if rho is None else round(float(rho), 3),
                                  "study_rank_and_full_knn": pairs}  # fmt: skip
    arms = {arm: [r["knn_top1"] for r in report["full_budget"] if r["arm"] == arm and r["seed"] in args.seeds]
            for arm in ("preset", f"best (trial {best['number']})")}  # fmt: skip
    report["mean_knn"] = {arm: sum(v) / len(v) for arm, v in arms.items() if v}
    write_report(args.out, report, table(report))


if __name__ == "__main__":
    main()
