from pathlib import Path

import numpy as np
from PIL import Image

from dinoflow.data.manifest import build_manifest, hash_split


def _png(path: Path, size=(32, 32), colour=(10, 20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_synthetic_layout_gives_labels_splits_and_masks(tiny_dataset_root):
    rows = build_manifest(tiny_dataset_root, progress=False)
    assert len(rows) == 4 * (12 + 6)
    assert {r["split"] for r in rows} == {"train", "val"}
    assert all(r["status"] == "ok" and r["decodable"] for r in rows)
    assert all(r["mask_path"].startswith("masks/") for r in rows)
    assert len({r["label"] for r in rows}) == 4
    assert all(len(r["sha256"]) == 64 for r in rows)


def test_bad_files_are_quarantined_with_a_reason(tmp_path):
    _png(tmp_path / "cats" / "good.png")
    _png(tmp_path / "cats" / "copy.png")  # same bytes as good.png
    _png(tmp_path / "cats" / "tiny.png", size=(8, 8))
    (tmp_path / "cats" / "empty.jpg").write_bytes(b"")
    (tmp_path / "cats" / "text.png").write_text("not an image")
    good = (tmp_path / "cats" / "good.png").read_bytes()
    (tmp_path / "cats" / "truncated.png").write_bytes(good[: len(good) // 2])
    rows = {Path(r["path"]).name: r for r in build_manifest(tmp_path, min_size=16, progress=False)}
    assert rows["good.png"]["status"] == "ok" or rows["copy.png"]["status"] == "ok"
    duplicate = "good.png" if rows["good.png"]["status"] != "ok" else "copy.png"
    assert rows[duplicate]["status"].startswith("duplicate of")
    assert rows["tiny.png"]["status"] == "smaller than 16 px"
    assert rows["empty.jpg"]["status"] == "zero-byte file"
    assert rows["text.png"]["status"].startswith("not decodable")
    assert rows["truncated.png"]["status"].startswith("not decodable")
    assert {r["label"] for r in rows.values()} == {"cats"}


def test_flat_folder_is_unlabelled_with_a_stable_hash_split(tmp_path):
    for i in range(20):
        _png(tmp_path / f"img{i:02d}.png", colour=(i, 2 * i, 3 * i))
    rows = build_manifest(tmp_path, val_ratio=0.3, progress=False)
    assert all(r["label"] == "" and r["mask_path"] == "" for r in rows)
    assert [r["split"] for r in rows] == [hash_split(r["path"], 0.3) for r in rows]
    assert np.mean([r["split"] == "val" for r in rows]) < 0.8


def test_parallel_ingest_equals_sequential(tiny_dataset_root):
    sequential = build_manifest(tiny_dataset_root, workers=1, progress=False)
    assert build_manifest(tiny_dataset_root, workers=2, progress=False) == sequential


def test_reingest_reads_only_changed_files_and_matches_a_fresh_ingest(tmp_path, monkeypatch):
    import os

    import dinoflow.data.manifest as manifest

    for i in range(6):
        _png(tmp_path / "data" / "cls" / f"{i}.png", colour=(i, i, i))
    cache = tmp_path / "cache.json"
    build_manifest(tmp_path / "data", workers=1, progress=False, cache_path=cache)

    _png(tmp_path / "data" / "cls" / "3.png", colour=(200, 1, 1))  # new content
    os.utime(tmp_path / "data" / "cls" / "3.png", ns=(1, 1))  # and a different mtime
    hashed = []
    real_sha256 = manifest._sha256
    monkeypatch.setattr(manifest, "_sha256", lambda path: hashed.append(path.name) or real_sha256(path))
    again = build_manifest(tmp_path / "data", workers=1, progress=False, cache_path=cache)
    assert hashed == ["3.png"]
    monkeypatch.setattr(manifest, "_sha256", real_sha256)
    assert again == build_manifest(tmp_path / "data", workers=1, progress=False)
    # Changed limits apply to cached rows too.
    strict = build_manifest(tmp_path / "data", min_size=64, workers=1, progress=False, cache_path=cache)
    assert {r["status"] for r in strict} == {"smaller than 64 px"}
