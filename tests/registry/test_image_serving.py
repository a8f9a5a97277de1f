"""``mlflow models serve`` of a registered version, for real: PNG bytes in (base64 in JSON), the
same CLS embeddings as the backbone computes in process on the evaluation views; a corrupt image
gets HTTP 400 naming it, and the server keeps answering."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request

import mlflow
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dinoflow.config import save_config
from dinoflow.data.multicrop import normalize
from dinoflow.registry.mlflow_registry import register_backbone
from dinoflow.train.builders import build_backbone_from_config
from dinoflow.train.run_files import BACKBONE_NAME
from tests.eval.test_features import PREPROCESSING, encoded, stored_views
from tests.project_copy import PROJECT_ROOT
from tests.servers import model_server

NAME = "served-backbone"
# Served and in-process embeddings come from the same fp32 weights and views; they differ only by
# the float order of a batched forward (both sides batch the same images) and by JSON, which
# writes float32 values exactly. Measured: 0 on CPU.
TOLERANCE = 1e-5


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/invocations", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def split(images: list[bytes]) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(d).decode()] for d in images]}}


@pytest.mark.slow
def test_served_champion_embeds_png_bytes_like_evaluation(tmp_path, mlflow_tmp, tiny_config):
    backbone = build_backbone_from_config(tiny_config, drop_path=False)
    files = [save_config(tiny_config, tmp_path / "config.yaml"), tmp_path / BACKBONE_NAME]
    save_file(backbone.state_dict(), files[1])
    example = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)).numpy()
    register_backbone(backbone, example, NAME, "champion", {}, files, preprocessing=PREPROCESSING)
    mlflow.end_run()

    shapes = [(40, 28, "RGB"), (20, 20, "RGBA"), (33, 70, "L"), (64, 64, "RGB")]
    images = [encoded(w, h, mode, "PNG", seed=i) for i, (w, h, mode) in enumerate(shapes)]
    for i, data in enumerate(images):
        (tmp_path / f"{i}.png").write_bytes(data)
    with torch.no_grad():
        views = stored_views([tmp_path / f"{i}.png" for i in range(len(images))], PREPROCESSING)
        expected = backbone(normalize(views)).numpy()

    with model_server(f"models:/{NAME}@champion", os.environ["MLFLOW_TRACKING_URI"], tmp_path) as url:
        status, body = post(url, split(images))
        assert status == 200, body
        served = np.asarray(body["predictions"], dtype=np.float32)
        gap = float(np.abs(served - expected).max())
        print(f"max |served - in-process| = {gap:.2e} (tolerance {TOLERANCE:g})")  # noqa: T201
        assert served.shape == (4, 32) and gap <= TOLERANCE

        status, body = post(url, split([images[0], b"\x89PNG\r\n\x1a\n cut short", images[1]]))
        assert status == 400
        assert "image in row 1 of 3 (18 bytes starting" in body["message"]
        assert "could not be read as an image" in body["message"]

        # The server goes on answering, in both JSON forms.
        status, body = post(url, split(images[:1]))
        assert status == 200 and np.abs(np.asarray(body["predictions"]) - expected[:1]).max() <= TOLERANCE
        status, body = post(url, {"inputs": {"image": [base64.b64encode(images[3]).decode()]}})
        assert status == 200 and np.abs(np.asarray(body["predictions"]) - expected[3:]).max() <= TOLERANCE

    # The same version still loads as the pt2 backbone.
    program = mlflow.pytorch.load_model(f"models:/{NAME}@champion")
    torch.testing.assert_close(program(torch.from_numpy(example)), backbone(torch.from_numpy(example)))


def test_make_serve_serves_the_champion_on_loopback():
    dry_run = subprocess.run(
        ["make", "-n", "serve", "PORT=5123", "MODEL=some-model"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "mlflow models serve -m models:/some-model@champion --env-manager local" in dry_run.stdout
    assert "--host 127.0.0.1 --port 5123" in dry_run.stdout
