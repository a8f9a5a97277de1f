from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dinoflow.data.manifest import build_manifest, hash_split, quarantine_summary, reason_of


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


def _line_art(path: Path, size: int = 48) -> None:
    """Black strokes on a fully transparent background (RGBA clip art)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((10, 10, size - 10, size - 10), outline=(0, 0, 0, 255), width=3)
    image.save(path)


def test_line_art_is_kept_on_white_and_blank_images_are_quarantined_as_near_uniform(tmp_path):
    _line_art(tmp_path / "icons" / "art.png")
    Image.new("RGB", (32, 32), (250, 250, 250)).save(tmp_path / "icons" / "blank.png")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "icons" / "noise.png")
    rows = {Path(r["path"]).name: r for r in build_manifest(tmp_path, workers=1, progress=False, min_pixel_std=2.0)}
    assert rows["art.png"]["status"] == "ok"
    assert rows["art.png"]["note"] == "RGBA with transparency composited on white, then RGB"
    assert rows["art.png"]["pixel_std"] > 50
    assert rows["noise.png"]["status"] == "ok"
    assert rows["blank.png"]["pixel_std"] == 0.0
    assert rows["blank.png"]["status"] == "near-uniform image (pixel std 0.00 < 2 of 255, data.min_pixel_std)"


def test_line_art_on_a_black_background_is_blank(tmp_path):
    _line_art(tmp_path / "art.png")
    (row,) = build_manifest(tmp_path, workers=1, progress=False, min_pixel_std=2.0, background=(0, 0, 0))
    assert row["status"].startswith("near-uniform image") and row["note"].endswith("on black, then RGB")


def test_a_cached_ingest_applies_a_new_threshold_and_rereads_on_a_new_background(tmp_path):
    _line_art(tmp_path / "data" / "art.png")
    cache = tmp_path / "cache.json"
    ingest = partial(build_manifest, tmp_path / "data", workers=1, progress=False, cache_path=cache)
    (first,) = ingest(min_pixel_std=2.0)
    assert first["status"] == "ok"
    (strict,) = ingest(min_pixel_std=255.0)  # from the cache: the new limit still applies
    assert strict["status"].startswith("near-uniform image") and strict["pixel_std"] == first["pixel_std"]
    (black,) = ingest(min_pixel_std=2.0, background=(0, 0, 0))  # content depends on the background
    assert black["status"].startswith("near-uniform image") and "on black" in black["note"]
    (white,) = ingest(min_pixel_std=2.0)
    assert white == first


def test_quarantine_summary_groups_reasons_with_counts_and_three_examples(tmp_path):
    for i in range(5):
        _png(tmp_path / "cats" / f"good{i}.png", colour=(i, 0, 0))
        (tmp_path / "cats" / f"text{i}.png").write_text(f"not an image {i}")
    for i in range(2):
        (tmp_path / "cats" / f"same{i}.png").write_bytes((tmp_path / "cats" / "good0.png").read_bytes())
    _png(tmp_path / "cats" / "tiny.png", size=(8, 8))
    rows = build_manifest(tmp_path, min_size=16, workers=1, progress=False)
    reasons = {reason_of(r["status"]) for r in rows if r["status"] != "ok"}
    assert reasons == {"not decodable", "duplicate", "smaller than 16 px"}
    assert quarantine_summary(rows) == [
        ("not decodable", 5, ["cats/text0.png", "cats/text1.png", "cats/text2.png"]),
        ("duplicate", 2, ["cats/same0.png", "cats/same1.png"]),
        ("smaller than 16 px", 1, ["cats/tiny.png"]),
    ]


def test_reason_of_drops_the_details_of_each_file():
    assert reason_of("too many pixels (9x9 > 8): possible decompression bomb") == "too many pixels"
    assert reason_of("animated or multi-frame image (2 frames)") == "animated or multi-frame image"
    assert reason_of("unreadable: PermissionError: [Errno 13]") == "unreadable"
    assert reason_of("near-uniform image (pixel std 0.00 < 2 of 255, data.min_pixel_std)") == "near-uniform image"
    assert reason_of("symlink pointing outside the data root") == "symlink pointing outside the data root"


def test_label_depth_cuts_nested_folders_to_their_first_levels(tmp_path):
    _png(tmp_path / "train" / "animals" / "mammals" / "cats" / "a.png", colour=(1, 0, 0))
    _png(tmp_path / "val" / "animals" / "birds" / "b.png", colour=(2, 0, 0))
    _png(tmp_path / "train" / "computer" / "icons" / "flat-theme" / "action" / "c.png", colour=(3, 0, 0))
    _png(tmp_path / "train" / "plants" / "d.png", colour=(4, 0, 0))

    def labels(depth):
        rows = build_manifest(tmp_path, workers=1, progress=False, label_depth=depth)
        assert [r["split"] for r in rows] == ["train", "train", "train", "val"]  # the split never moves
        return [r["label"] for r in rows]

    all_levels = ["animals/mammals/cats", "computer/icons/flat-theme/action", "plants", "animals/birds"]
    assert labels(None) == all_levels
    assert labels(1) == ["animals", "computer", "plants", "animals"]
    assert labels(2) == ["animals/mammals", "computer/icons", "plants", "animals/birds"]
    assert labels(0) == ["", "", "", ""]
    assert labels(9) == all_levels
