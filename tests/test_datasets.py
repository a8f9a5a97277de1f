"""The catalog's datasets write whole files: the content appears under its name only when complete."""

from __future__ import annotations

import pandas as pd
import yaml

from dinoflow.datasets import AtomicCSVDataset, AtomicJSONDataset, AtomicParquetDataset
from tests.project_copy import PROJECT_ROOT


def test_every_file_the_catalog_writes_is_written_then_renamed():
    catalog = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog.yml").read_text())
    types = {entry["type"] for entry in catalog.values()}
    assert types <= {
        f"dinoflow.datasets.{cls.__name__}" for cls in (AtomicCSVDataset, AtomicJSONDataset, AtomicParquetDataset)
    }


def test_saved_files_load_back_and_leave_no_temporary_file(tmp_path):
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "label": [0, 1]})
    AtomicParquetDataset(filepath=str(tmp_path / "m.parquet")).save(frame)
    AtomicCSVDataset(filepath=str(tmp_path / "q.csv"), save_args={"index": False}).save(frame)
    AtomicJSONDataset(filepath=str(tmp_path / "r.json")).save({"success": True})
    pd.testing.assert_frame_equal(AtomicParquetDataset(filepath=str(tmp_path / "m.parquet")).load(), frame)
    pd.testing.assert_frame_equal(AtomicCSVDataset(filepath=str(tmp_path / "q.csv")).load(), frame)
    assert AtomicJSONDataset(filepath=str(tmp_path / "r.json")).load() == {"success": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parquet", "q.csv", "r.json"]
