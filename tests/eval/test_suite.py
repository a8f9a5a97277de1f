"""The evaluation suite's raw-pixel baseline: the same k-NN whether the views are bytes or floats."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from dinoflow.eval.suite import EvalSettings, raw_pixel_knn


def test_raw_pixel_knn_is_the_same_on_bytes_and_on_float_views():
    generator = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 3, (120,), generator=generator)
    prototypes = torch.randint(0, 256, (3, 3, 8, 8), generator=generator)
    noise = torch.randint(-60, 61, (120, 3, 8, 8), generator=generator)
    images = (prototypes[labels] + noise).clamp(0, 255).to(torch.uint8)  # classes a pixel k-NN can tell apart
    settings = EvalSettings(image_size=8, k=5, ks=(5, 10))

    def split_set(views):
        return SimpleNamespace(views=(views[:90], views[90:]), labels=(labels[:90], labels[90:]), num_classes=3)

    on_bytes = raw_pixel_knn(split_set(images), settings)
    on_floats = raw_pixel_knn(split_set(images.float() / 255), settings)
    mixed = split_set(images)  # a split whose images needed resizing has float views, the other bytes
    mixed.views = (images[:90], images[90:].float() / 255)
    on_mixed = raw_pixel_knn(mixed, settings)
    assert on_bytes.keys() == on_floats.keys() == on_mixed.keys()
    for name, value in on_bytes.items():
        assert abs(value - on_floats[name]) < 1e-6 and abs(value - on_mixed[name]) < 1e-6, name
    assert on_bytes["top1"] > 0.8  # the set is not trivially at chance, so the comparison means something
