"""Shards keep every image's aspect and pixels; building is incremental and parallel."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinoflow.data.shards import (
    CorruptShardError,
    ImageRecord,
    ShardReader,
    StaleManifestError,
    build_dataset,
    file_sha256,
    plan_shards,
    stored_shape,
)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((500, 375), (256, 341)),  # landscape photo: shorter side to 256, aspect kept
        ((375, 500), (341, 256)),
        ((100, 80), (80, 100)),  # smaller than max_side: never enlarged
        ((1000, 200), (200, 600)),  # panorama: longer side cropped to 3x the shorter
    ],
)
def test_stored_shape(size, expected):
    assert stored_shape(*size, max_side=256, max_aspect=3.0) == expected


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[ImageRecord]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        records.append(ImageRecord(path, label=i % 3, width=w, height=h, sha256=file_sha256(path)))
    return records


def test_shards_split_by_size_and_read_back_every_image(tmp_path):
    sizes = [(40, 30), (30, 40), (20, 20), (64, 16), (33, 27)] * 4
    records = write_images(tmp_path / "images", sizes)
    assert [len(g) for g in plan_shards(records, 24, 3.0, max_bytes=3 * 24 * 32 * 4)] == [4] * 5
    index = build_dataset({"train": records}, ["a", "b", "c"], tmp_path / "ds", [("x", "y", "z", "train")],
                          max_side=24, max_shard_mb=3 * 24 * 32 * 4 / 2**20, workers=2, progress=False)  # fmt: skip
    assert len(index["splits"]["train"]["shards"]) == 5
    reader = ShardReader.from_index(tmp_path / "ds", "train")
    assert len(reader) == 20 and reader.labels().tolist() == [i % 3 for i in range(20)]
    for i, (w, h) in enumerate(sizes):
        assert tuple(reader.image(i).shape) == (3, *stored_shape(w, h, 24, 3.0))
    # Unscaled images are stored bit-exact.
    square = np.asarray(Image.open(records[2].path))
    assert np.array_equal(reader.image(2).permute(1, 2, 0).numpy(), square)


def test_unchanged_content_is_not_rebuilt_and_changed_settings_are(tmp_path):
    records = write_images(tmp_path / "images", [(20, 20)] * 3)
    rows = [("a", "1", "", "train")]
    build = lambda side: build_dataset({"train": records}, [], tmp_path / "ds", rows, max_side=side,  # noqa: E731
                                       workers=1, progress=False)  # fmt: skip
    build(16)
    shard = tmp_path / "ds" / "train-00000.pt"
    stamp = shard.stat().st_mtime_ns
    build(16)
    assert shard.stat().st_mtime_ns == stamp
    build(12)
    assert ShardReader.from_index(tmp_path / "ds", "train").image(0).shape == (3, 12, 12)


def test_a_reader_survives_pickling_for_spawned_workers(tmp_path):
    import pickle

    records = write_images(tmp_path / "images", [(20, 20)] * 2)
    build_dataset({"val": records}, [], tmp_path / "ds", [], max_side=16, workers=1, progress=False)
    reader = ShardReader.from_index(tmp_path / "ds", "val")
    first = reader.image(1).clone()
    assert torch.equal(pickle.loads(pickle.dumps(reader)).image(1), first)
    with pytest.raises(KeyError, match="no 'train' split"):
        ShardReader.from_index(tmp_path / "ds", "train")


def test_transparency_is_stored_on_the_background_asked_for_and_a_new_background_rebuilds(tmp_path):
    (tmp_path / "images").mkdir()
    path = tmp_path / "images" / "clear.png"
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(path)
    records = [ImageRecord(path, width=16, height=16, sha256=file_sha256(path))]
    build = lambda background: build_dataset({"train": records}, [], tmp_path / "ds", [], max_side=16,  # noqa: E731
                                             workers=1, progress=False, background=background)  # fmt: skip
    assert build((255, 255, 255))["settings"]["background"] == [255, 255, 255]
    assert ShardReader.from_index(tmp_path / "ds", "train").image(0).min() == 255
    build((0, 0, 0))
    assert ShardReader.from_index(tmp_path / "ds", "train").image(0).max() == 0


def test_a_manifest_older_than_its_files_stops_the_build_with_the_file_named(tmp_path):
    """The fingerprint names the manifest's content: shards of other bytes under it would let a
    later run reuse a model trained on different images."""
    records = write_images(tmp_path / "images", [(16, 16), (20, 20)])
    Image.new("RGB", (16, 16), (9, 9, 9)).save(records[1].path)  # the source changed after ingestion
    with pytest.raises(StaleManifestError, match=r"1\.png has sha256 .* manifest .* lists .*`kedro run`"):
        build_dataset({"train": records}, ["a"], tmp_path / "ds", [], max_side=16, workers=1, progress=False)
    assert not (tmp_path / "ds" / "index.json").exists()


def _corrupt(shard: Path, how: str) -> None:
    data = bytearray(shard.read_bytes())
    if how == "flipped byte":
        data[len(data) // 2] ^= 0x01  # one bit, in the middle of the pixels
    elif how == "truncated":
        data = data[: len(data) - 100]
    shard.write_bytes(bytes(data))


@pytest.mark.faults
@pytest.mark.parametrize(("how", "message"), [("flipped byte", "damaged bytes"), ("truncated", "truncated")])
def test_a_damaged_shard_is_named_when_opened_and_rebuilt_when_the_dataset_is_built_again(tmp_path, how, message):
    records = write_images(tmp_path / "images", [(20, 20)] * 4)
    build = lambda: build_dataset({"train": records}, [], tmp_path / "ds", [("a", "1", "", "train")],  # noqa: E731
                                  max_side=16, workers=1, progress=False)  # fmt: skip
    build()
    shard = tmp_path / "ds" / "train-00000.pt"
    pixels = ShardReader.from_index(tmp_path / "ds", "train").image(3).clone()
    _corrupt(shard, how)
    with pytest.raises(CorruptShardError, match=f"{shard}.*{message}.*rebuild the dataset: delete .*index.json"):
        ShardReader.from_index(tmp_path / "ds", "train")
    build()  # the dataset node finds the damage and writes the shard again
    assert torch.equal(ShardReader.from_index(tmp_path / "ds", "train").image(3), pixels)


@pytest.mark.faults
def test_a_missing_shard_or_an_index_without_checksums_is_refused_in_words(tmp_path):
    import json

    records = write_images(tmp_path / "images", [(20, 20)] * 2)
    build_dataset({"train": records}, [], tmp_path / "ds", [], max_side=16, workers=1, progress=False)
    index_path = tmp_path / "ds" / "index.json"
    index = json.loads(index_path.read_text())
    del index["splits"]["train"]["shards"][0]["sha256"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(CorruptShardError, match="no checksums .*older dinoflow"):
        ShardReader.from_index(tmp_path / "ds", "train")
    (tmp_path / "ds" / "train-00000.pt").unlink()
    index["splits"]["train"]["shards"][0]["sha256"] = "0" * 64
    index_path.write_text(json.dumps(index))
    with pytest.raises(CorruptShardError, match="train-00000.pt is missing"):
        ShardReader.from_index(tmp_path / "ds", "train")
