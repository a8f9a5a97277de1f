"""A corpus with every kind of odd or bad input: each is marked correctly, nothing good is lost."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinoflow.data.decode import to_rgb
from dinoflow.data.manifest import build_manifest
from dinoflow.data.shards import ImageRecord, ShardReader, build_dataset

KEPT = {"rgb.png", "cmyk.jpg", "sixteen.png", "palette_alpha.png", "grey.png", "rotated.jpg", "a_original.png"}


def make_corpus(root: Path, outside: Path) -> None:
    cls = root / "things"
    cls.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(cls / "rgb.png")
    Image.new("CMYK", (40, 40), (10, 200, 30, 0)).save(cls / "cmyk.jpg")
    Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(cls / "sixteen.png")
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(cls / "palette_alpha.png", transparency=0)
    Image.new("L", (40, 40), 99).save(cls / "grey.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)).save(cls / "rotated.jpg", exif=exif)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(cls / "a_original.png")
    (cls / "b_copy.png").write_bytes((cls / "a_original.png").read_bytes())
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(cls / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (8, 8)).save(cls / "tiny.png")
    Image.new("L", (1100, 1000)).save(cls / "bomb.png")
    (cls / "empty.jpg").write_bytes(b"")
    (cls / "notes.jpg").write_text("this is text, not a JPEG")
    (cls / "truncated.png").write_bytes((cls / "rgb.png").read_bytes()[:200])
    Image.new("RGB", (40, 40)).save(outside / "secret.png")
    os.symlink(outside / "secret.png", cls / "escape.png")
    os.symlink(cls / "missing-target.png", cls / "dangling.png")


@pytest.fixture
def corpus(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    make_corpus(tmp_path / "data", outside)
    return tmp_path / "data"


def test_every_bad_kind_has_its_own_reason_and_good_files_are_kept(corpus, tmp_path):
    rows = {
        Path(r["path"]).name: r
        for r in build_manifest(corpus, min_size=16, max_pixels=1_000_000, workers=1, progress=False)
    }
    reasons = {name: r["status"] for name, r in rows.items() if r["status"] != "ok"}
    assert set(rows) - set(reasons) == KEPT
    assert reasons["b_copy.png"] == "duplicate of things/a_original.png"
    assert reasons["animated.gif"] == "animated or multi-frame image (2 frames)"
    assert reasons["tiny.png"] == "smaller than 16 px"
    assert reasons["bomb.png"].startswith("too many pixels (1100x1000 > 1000000)")
    assert reasons["empty.jpg"] == "zero-byte file"
    assert reasons["notes.jpg"].startswith("not decodable")
    assert reasons["truncated.png"].startswith("not decodable")
    assert reasons["escape.png"] == "symlink pointing outside the data root"
    assert reasons["dangling.png"].startswith("unreadable: FileNotFoundError")
    assert rows["cmyk.jpg"]["note"] == "CMYK converted to RGB"
    assert rows["sixteen.png"]["note"].endswith("(16-bit) scaled to 8-bit RGB")
    assert "transparency" in rows["palette_alpha.png"]["note"]
    assert rows["rotated.jpg"]["exif_orientation"] == 6
    assert (rows["rotated.jpg"]["width"], rows["rotated.jpg"]["height"]) == (30, 50)  # as displayed

    kept = [r for r in rows.values() if r["status"] == "ok"]
    records = {"train": [ImageRecord(corpus / r["path"], sha256=r["sha256"]) for r in kept]}
    rows_ = [(r["path"], r["sha256"], "", "train") for r in kept]
    index = build_dataset(records, [], tmp_path / "shards", rows_, max_side=24, workers=1, progress=False)
    reader = ShardReader.from_index(Path(index["dir"]), "train")
    assert len(reader) == len(KEPT) == index["splits"]["train"]["count"]
    contents = (Path(index["dir"]) / "contents.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[3] for line in contents) == sorted(r["sha256"] for r in kept)
    rotated = next(i for i, line in enumerate(contents) if line.endswith("rotated.jpg"))
    assert reader.image(rotated).shape == (3, 40, 24)  # EXIF applied: 30x50 as displayed, shorter side 24


def test_conversions_to_rgb():
    sixteen = to_rgb(Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)))
    assert sixteen.mode == "RGB" and np.asarray(sixteen).min() == 255  # scaled, not clipped to garbage
    half = to_rgb(Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)))
    assert abs(int(np.asarray(half)[0, 0, 0]) - 128) <= 1
    transparent = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(to_rgb(transparent)).min() == 255  # composited on white by default
    assert np.asarray(to_rgb(transparent, (0, 0, 0))).max() == 0  # or on the colour asked for
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = Image.new("RGB", (6, 2))
    rotated.info["exif"] = exif.tobytes()
    assert to_rgb(rotated).size == (2, 6)
