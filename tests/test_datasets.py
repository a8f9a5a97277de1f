"""The catalog's datasets write whole files: the content appears under its name only when complete."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from dinoflow.contracts import DatasetIndex, PretrainResult
from dinoflow.datasets import (
    AtomicCSVDataset,
    AtomicImageDataset,
    AtomicJSONDataset,
    AtomicParquetDataset,
    ContractJSONDataset,
    DatasetFolderIndex,
    OptionalYAMLDataset,
)
from tests.project_copy import PROJECT_ROOT


def test_every_file_the_catalog_writes_is_written_then_renamed():
    catalog = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog.yml").read_text())
    # A folder of pictures is a partitioned dataset: each of its files is written as the others are.
    types = {entry["dataset"] if entry["type"] == "partitions.PartitionedDataset" else entry["type"]
             for entry in catalog.values()}  # fmt: skip
    assert types <= {
        f"dinoflow.datasets.{cls.__name__}"
        for cls in (
            AtomicCSVDataset,
            AtomicJSONDataset,
            AtomicParquetDataset,
            ContractJSONDataset,
            DatasetFolderIndex,
            AtomicImageDataset,
            OptionalYAMLDataset,
        )
    }


def test_saved_files_load_back_and_leave_no_temporary_file(tmp_path):
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "label": [0, 1]})
    AtomicParquetDataset(filepath=str(tmp_path / "m.parquet")).save(frame)
    AtomicCSVDataset(filepath=str(tmp_path / "q.csv"), save_args={"index": False}).save(frame)
    AtomicJSONDataset(filepath=str(tmp_path / "r.json")).save({"success": True})
    pd.testing.assert_frame_equal(AtomicParquetDataset(filepath=str(tmp_path / "m.parquet")).load(), frame)
    pd.testing.assert_frame_equal(AtomicCSVDataset(filepath=str(tmp_path / "q.csv")).load(), frame)
    assert AtomicJSONDataset(filepath=str(tmp_path / "r.json")).load() == {"success": True}
    AtomicImageDataset(filepath=str(tmp_path / "p.png")).save(Image.new("RGB", (5, 3), (10, 200, 30)))
    with Image.open(tmp_path / "p.png") as picture:  # a PNG: the format comes from the final name
        assert picture.format == "PNG" and picture.getpixel((4, 2)) == (10, 200, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parquet", "p.png", "q.csv", "r.json"]


INDEX = {"fingerprint": "f" * 64, "settings": {"max_side": 64}, "classes": ["a", "b"], "dir": "data/ds",
         "splits": {s: {"count": 1, "has_masks": True, "shards": [{"path": f"{s}-00000.pt", "count": 1, "bytes": 9,
                                                                   "sha256": "0" * 64}]} for s in ("train", "val")}}  # fmt: skip


def test_a_contract_round_trips_through_its_file_and_a_file_missing_a_field_fails_on_load_naming_it(tmp_path):
    dataset = ContractJSONDataset(filepath=str(tmp_path / "index.json"), contract="dinoflow.contracts.DatasetIndex")
    dataset.save(INDEX)  # a dict is validated into the contract on the way out
    loaded = dataset.load()
    assert isinstance(loaded, DatasetIndex) and loaded.splits["val"].shards[0].count == 1 and loaded.has_masks()
    dataset.save(loaded)
    assert json.loads((tmp_path / "index.json").read_text()) == INDEX
    (tmp_path / "index.json").write_text(json.dumps({k: v for k, v in INDEX.items() if k != "fingerprint"}))
    with pytest.raises(Exception, match=r"(?s)fingerprint.*Field required"):
        dataset.load()


def test_the_dataset_index_is_declared_not_rewritten_and_loads_with_its_folder(tmp_path):
    folder = tmp_path / "moved" / "dataset"
    folder.mkdir(parents=True)
    written = {k: v for k, v in INDEX.items() if k != "dir"}
    (folder / "index.json").write_text(json.dumps(written))  # as the shard writer leaves it
    stamp = (folder / "index.json").stat().st_mtime_ns
    dataset = DatasetFolderIndex(filepath=str(folder / "index.json"), contract="dinoflow.contracts.DatasetIndex")
    dataset.save({**INDEX, "dir": str(folder)})
    assert (folder / "index.json").stat().st_mtime_ns == stamp and json.loads(
        (folder / "index.json").read_text()
    ) == written
    assert dataset.load().dir == str(folder)  # where the file is now, not where it was written
    elsewhere = DatasetFolderIndex(filepath=str(tmp_path / "index.json"), contract="dinoflow.contracts.DatasetIndex")
    with pytest.raises(
        Exception, match=r"wrote its folder at data/ds \(parameter dataset.output_dir\).*no index there"
    ):
        elsewhere.save(INDEX)
    (tmp_path / "index.json").write_text(json.dumps({**written, "classes": ["c"]}))
    with pytest.raises(Exception, match="another index there"):
        elsewhere.save(INDEX)


def test_a_pretrain_result_says_whether_its_run_is_here_and_carries_only_the_lineage_it_has():
    remote = PretrainResult(config_hash="k", checkpoint="pvc://c/k/checkpoint.pt", mlflow_run_id="r", dry_run=True)
    assert not remote.is_local and remote.lineage() == {}
    local = PretrainResult(config_hash="k", checkpoint="runs/k/checkpoint.pt", mlflow_run_id="r", output_dir="runs/k",
                           config="runs/k/config.yaml", parent_model_version="m/3",
                           summary={"iterations": 4, "loop_seconds": 1.0, "iters_per_epoch": 2, "peak_lr": 1e-3,
                                    "loss": 5.5})  # fmt: skip
    assert local.is_local and local.lineage() == {"parent_model_version": "m/3"}
    assert local.summary.iterations == 4 and local.summary.model_dump()["loss"] == 5.5
    with pytest.raises(ValidationError, match="unknown_key"):
        PretrainResult.model_validate({**local.model_dump(), "unknown_key": 1})


def test_an_optional_input_loads_as_none_until_written(tmp_path):
    tuned = OptionalYAMLDataset(filepath=str(tmp_path / "tuned.yml"))
    assert tuned.load() is None
    tuned.save({"overrides": {"loss.teacher_temp": 0.05}})
    assert tuned.load() == {"overrides": {"loss.teacher_temp": 0.05}}
