"""Embeddings on disk: rows in manifest order; a rerun computes only the (model version, sha256)
pairs not on disk, whether they come from the finished file or from the chunks a killed run
flushed; another model version recomputes everything."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dinoflow.curation.embedding_store import EMBEDDINGS_FILE, PARTS_DIR, read_embeddings, update_embeddings

DIM = 4


class FakeModel:
    """Embeds a file as a function of its name (so any run gives the same rows); counts the files
    it embedded, and can die after a number of batches as a killed process would."""

    def __init__(self, die_after_batches: int | None = None) -> None:
        self.embedded: list[str] = []
        self.die_after = die_after_batches

    def __call__(self, files: list[Path]) -> np.ndarray:
        if self.die_after is not None and len(self.embedded) >= self.die_after * len(files):
            raise KeyboardInterrupt("killed")
        self.embedded += [f.name for f in files]
        return np.array([[int(f.stem), 1.0, -int(f.stem), 0.5] for f in files], np.float32)


def manifest(n: int, root: Path = Path("/data")) -> tuple[list[Path], list[str], list[str]]:
    paths = [f"{i}.png" for i in range(n)]
    return [root / p for p in paths], paths, [f"sha-{i}" for i in range(n)]


def run(folder, model, n=10, version="models:/m/1", batch_size=2, flush_every=1, **changes):
    files, paths, sha = manifest(n)
    for i, (path, digest) in changes.get("rows", {}).items():
        files[i], paths[i], sha[i] = Path("/data") / path, path, digest
    return update_embeddings(folder, files, paths, sha, version, model, DIM, batch_size, flush_every)


def test_the_file_holds_every_row_in_manifest_order(tmp_path):
    model = FakeModel()
    result = run(tmp_path, model)
    assert (result.computed, result.reused) == (10, 0) and len(model.embedded) == 10
    rows, vectors = read_embeddings(tmp_path / EMBEDDINGS_FILE)
    assert list(rows.columns) == ["path", "sha256", "model_version"]
    assert rows["path"].tolist() == [f"{i}.png" for i in range(10)] and set(rows["model_version"]) == {"models:/m/1"}
    np.testing.assert_array_equal(vectors, result.vectors)
    assert vectors.dtype == np.float32 and vectors[:, 0].tolist() == list(range(10))
    assert pq.read_schema(tmp_path / EMBEDDINGS_FILE).field("embedding").type.list_size == DIM
    assert not (tmp_path / PARTS_DIR).exists()


def test_a_rerun_computes_only_new_content(tmp_path):
    run(tmp_path, FakeModel())
    again = FakeModel()
    assert run(tmp_path, again).computed == 0 and again.embedded == []
    # a renamed file (same content) is reused under its new name; a changed file is embedded again
    changed = FakeModel()
    result = run(tmp_path, changed, n=11, rows={3: ("renamed.png", "sha-3"), 5: ("5.png", "sha-5-edited")})
    assert sorted(changed.embedded) == ["10.png", "5.png"] and (result.computed, result.reused) == (2, 9)
    rows, _ = read_embeddings(tmp_path / EMBEDDINGS_FILE)
    assert rows["path"][3] == "renamed.png" and len(rows) == 11


def test_another_model_version_recomputes_every_row(tmp_path):
    run(tmp_path, FakeModel())
    model = FakeModel()
    assert run(tmp_path, model, version="models:/m/2").computed == 10 and len(model.embedded) == 10
    assert set(read_embeddings(tmp_path / EMBEDDINGS_FILE)[0]["model_version"]) == {"models:/m/2"}


@pytest.mark.parametrize("flush_every", [1, 2])
def test_a_killed_run_loses_at_most_one_chunk_and_the_rerun_equals_an_uninterrupted_one(tmp_path, flush_every):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, FakeModel(die_after_batches=3), flush_every=flush_every)  # 3 batches of 2 embedded
    flushed = sum(pq.read_metadata(p).num_rows for p in (tmp_path / PARTS_DIR).glob("part-*.parquet"))
    assert flushed == 3 * 2 // (2 * flush_every) * (2 * flush_every)  # whole chunks only: 6 or 4 rows
    assert not (tmp_path / EMBEDDINGS_FILE).exists()
    (tmp_path / PARTS_DIR / "part-000009.parquet.tmp").write_bytes(b"half a write")  # debris of a killed write
    resumed = FakeModel()
    result = run(tmp_path, resumed, flush_every=flush_every)
    assert (result.computed, result.reused) == (10 - flushed, flushed) and len(resumed.embedded) == 10 - flushed
    uninterrupted = run(tmp_path / "other", FakeModel(), flush_every=flush_every)
    np.testing.assert_array_equal(result.vectors, uninterrupted.vectors)
    assert read_embeddings(tmp_path / EMBEDDINGS_FILE)[0].equals(
        read_embeddings(tmp_path / "other" / EMBEDDINGS_FILE)[0]
    )
    assert not (tmp_path / PARTS_DIR).exists()


def test_an_empty_folder_gives_an_empty_file(tmp_path):
    result = update_embeddings(tmp_path, [], [], [], "models:/m/1", FakeModel(), DIM)
    assert result.vectors.shape == (0, DIM) and result.computed == 0
    assert read_embeddings(tmp_path / EMBEDDINGS_FILE)[1].shape == (0, DIM)
