"""Embedded default dataset: a deterministic procedural image generator.

Classes differ only by the *shape / structure* of one foreground object. Everything a
raw-pixel matcher could latch onto is a nuisance drawn independently of the class: object
and background colours, object texture (stripes or noise), background gradient and noise,
clutter strokes, object scale, position and rotation. Each image comes with a per-pixel
mask (class id + 1 on the object, 0 on background) for the segmentation probe.

Two class sets: ``outlines`` (ten plain silhouettes) and ``parts`` (round silhouettes told apart
by their holes, slots, spokes and notches, so raw pixels cannot match outlines). Two colour
models: ``rgb`` (object and background gradient ends uniform in RGB) and ``hue`` (random hues,
the object at a fixed lightness and saturation, the background ends darker). Random RGB colours
give two crops of one image a cue they share more reliably than the shape, and a self-supervised
teacher learns colour instead (docs/demo-experiments.md); a random hue is as random, but a hue
jitter can take it away.

The output is an ordinary image folder, so the rest of the platform cannot tell it from a
user's data::

    <root>/images/{train,val}/<class_name>/<index>.png   RGB, size x size
    <root>/masks/{train,val}/<class_name>/<index>.png    L, class id per pixel

Usage: ``python -m dinoflow.data.synthetic --out data/01_raw/synthetic``.
"""

from __future__ import annotations

import argparse
import colorsys
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dinoflow.atomic import atomic_path
from dinoflow.parallel import process_map

# Each shape is a membership test on object-centred coordinates (u, v) in [-1, 1].
ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    angle = np.arctan2(v, u)
    radius = 0.55 + 0.35 * np.cos(5 * angle)
    return np.hypot(u, v) <= radius


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (v <= 0.75) & (v >= -0.85 + 1.7 * np.abs(u))


OUTLINES: dict[str, ShapeFn] = {
    "disc": lambda u, v: np.hypot(u, v) <= 0.85,
    "ring": lambda u, v: (np.hypot(u, v) <= 0.9) & (np.hypot(u, v) >= 0.55),
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.7,
    "frame": lambda u, v: (np.maximum(np.abs(u), np.abs(v)) <= 0.85) & (np.maximum(np.abs(u), np.abs(v)) >= 0.55),
    "triangle": _triangle,
    "cross": lambda u, v: ((np.abs(u) <= 0.25) | (np.abs(v) <= 0.25)) & (np.maximum(np.abs(u), np.abs(v)) <= 0.9),
    "star": _star,
    "crescent": lambda u, v: (np.hypot(u, v) <= 0.85) & (np.hypot(u - 0.45, v) >= 0.65),
    "tee": lambda u, v: (
        ((v <= -0.5) & (v >= -0.85) & (np.abs(u) <= 0.85)) | ((np.abs(u) <= 0.2) & (v >= -0.85) & (v <= 0.85))
    ),
    "bars": lambda u, v: (np.abs(v) <= 0.85) & (np.abs(np.abs(u) - 0.5) <= 0.2),
}


def _in_disc(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v) <= 0.9


def _plus(u: np.ndarray, v: np.ndarray, width: float, length: float) -> np.ndarray:
    """Two crossing bars of half-width ``width`` and half-length ``length``."""
    return ((np.abs(u) <= width) & (np.abs(v) <= length)) | ((np.abs(v) <= width) & (np.abs(u) <= length))


# Every part shape fits the same disc (radius 0.9): what tells them apart is inside it.
PARTS: dict[str, ShapeFn] = {
    "disc": _in_disc,
    "ring": lambda u, v: _in_disc(u, v) & (np.hypot(u, v) >= 0.5),
    "target": lambda u, v: (np.hypot(u, v) <= 0.3) | ((np.hypot(u, v) >= 0.55) & _in_disc(u, v)),
    "wheel": lambda u, v: _in_disc(u, v) & ((np.hypot(u, v) >= 0.65) | _plus(u, v, 0.14, 1.0)),
    "slots": lambda u, v: _in_disc(u, v) & (np.abs(np.abs(v) - 0.3) >= 0.13),
    "perforated": lambda u, v: _in_disc(u, v) & (np.hypot(np.abs(u) - 0.4, np.abs(v) - 0.4) >= 0.2),
    "pacman": lambda u, v: _in_disc(u, v) & ~((u > 0) & (np.abs(v) < u * 0.8)),
    "split": lambda u, v: _in_disc(u, v) & (np.abs(u) >= 0.14),
    "gear": lambda u, v: _in_disc(u, v) & ((np.hypot(u, v) <= 0.6) | (np.arctan2(v, u) * 6 / (2 * np.pi) % 1 < 0.55)),
    "crosshole": lambda u, v: _in_disc(u, v) & ~_plus(u, v, 0.15, 0.6),
}
SHAPE_SETS: dict[str, dict[str, ShapeFn]] = {"outlines": OUTLINES, "parts": PARTS}
COLOUR_MODELS = ("rgb", "hue")


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; the hash of this spec names the dataset version."""

    num_classes: int = 10
    train_per_class: int = 300
    val_per_class: int = 100
    image_size: int = 64
    clutter_strokes: int = 1
    texture_strength: float = 0.2  # amplitude of the stripes/noise modulating the object colour
    background_noise: float = 0.03  # std of per-pixel background noise (images in [0, 1])
    min_contrast: float = 0.0  # rgb colours: least luminance gap between the object and its background
    min_scale: float = 0.2  # object half-size as a share of the image side, drawn in [min_scale, max_scale]
    max_scale: float = 0.45
    position_jitter: float = 1.0  # share of the free room the object centre may move into (0: centred)
    light_objects: bool = False  # rgb colours: the object is lighter than its background (hues stay random)
    shapes: str = "outlines"  # the class set: a key of SHAPE_SETS
    colours: str = "rgb"  # rgb: uniform RGB colours; hue: random hues, the object lighter than its ground
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shapes not in SHAPE_SETS:
            raise ValueError(f"shapes must be one of {sorted(SHAPE_SETS)}, got {self.shapes!r}")
        if self.colours not in COLOUR_MODELS:
            raise ValueError(f"colours must be one of {list(COLOUR_MODELS)}, got {self.colours!r}")
        if not 2 <= self.num_classes <= len(SHAPE_SETS[self.shapes]):
            raise ValueError(f"num_classes must be in [2, {len(SHAPE_SETS[self.shapes])}], got {self.num_classes}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if not 0.05 <= self.min_scale <= self.max_scale <= 0.5:
            raise ValueError(f"need 0.05 <= min_scale <= max_scale <= 0.5, got {self.min_scale}, {self.max_scale}")
        if not 0.0 <= self.position_jitter <= 1.0:
            raise ValueError(f"position_jitter must be in [0, 1], got {self.position_jitter}")
        if not 0.0 <= self.min_contrast <= 0.5:
            raise ValueError(
                f"min_contrast must be in [0, 0.5] (a larger gap cannot always be met), got {self.min_contrast}"
            )

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _texture(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray, strength: float) -> np.ndarray:
    """A class-independent (size, size) modulation in [1 - strength, 1 + strength]: stripes or blocky noise."""
    if rng.random() < 0.5:
        theta, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
        return 1.0 + strength * wave
    coarse = rng.uniform(-1, 1, (size // 8 + 1, size // 8 + 1))
    noise = np.kron(coarse, np.ones((8, 8)))[:size, :size]
    return 1.0 + strength * noise


_LUMA = np.array([0.299, 0.587, 0.114])


def _colours(rng: np.random.Generator, min_contrast: float, light_objects: bool) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random RGB colours for the object (3,) and the two background gradient ends (2, 3).

    With ``min_contrast`` > 0 both background ends are redrawn until their luminance is at least
    that far from the object's, on the same side (both lighter or both darker), so the object
    stands out along the whole gradient. ``light_objects`` puts the object on the lighter side
    (figure on ground, as in most photos); hues stay uniform. Nothing depends on the class.
    """
    while True:
        colour = rng.uniform(0, 1, 3)
        target = colour @ _LUMA
        if not light_objects or target >= min_contrast + 0.05:
            break
    ends: list[np.ndarray] = []
    while len(ends) < 2:
        candidate = rng.uniform(0, 1, 3)
        gap = candidate @ _LUMA - target
        side = -1.0 if light_objects else (np.sign(ends[0] @ _LUMA - target) if ends else np.sign(gap))
        if abs(gap) >= min_contrast and np.sign(gap) == side:
            ends.append(candidate)
    return colour, np.stack(ends)


# The hue model (HLS): the object at one lightness and saturation, the background ends darker, each
# at its own lightness. Any object hue is lighter than any background colour (luma at least 0.51
# against at most 0.44), so the figure stands on its ground as with min_contrast. The background's
# lightness varies so that distinct images of one class do not pass for copies in curation's
# colour thumbnails.
OBJECT_LIGHTNESS, OBJECT_SATURATION = 0.7, 0.8
BACKGROUND_LIGHTNESS, BACKGROUND_SATURATION = (0.15, 0.3), 0.6


def _hue_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The object's colour (3,) and the two background gradient ends (2, 3), each of a uniform
    random hue; the object at the model's fixed lightness and saturation, each end at a uniform
    random lightness in ``BACKGROUND_LIGHTNESS``."""
    hues = rng.uniform(0, 1, 3)
    colour = np.array(colorsys.hls_to_rgb(hues[0], OBJECT_LIGHTNESS, OBJECT_SATURATION))
    lightness = rng.uniform(*BACKGROUND_LIGHTNESS, 2)
    ends = np.array(
        [colorsys.hls_to_rgb(h, v, BACKGROUND_SATURATION) for h, v in zip(hues[1:], lightness, strict=True)]
    )
    return colour, ends


def _background(
    rng: np.random.Generator, ends: np.ndarray, size: int, yy: np.ndarray, xx: np.ndarray, noise: float
) -> np.ndarray:
    """(size, size, 3) float image: a gradient between the two ``ends`` colours plus pixel noise."""
    theta = rng.uniform(0, 2 * np.pi)
    t = ((xx * np.cos(theta) + yy * np.sin(theta)) / size + 1) / 2
    img = ends[0] + (ends[1] - ends[0]) * np.clip(t, 0, 1)[..., None]
    return img + rng.normal(0, noise, (size, size, 3))


def _draw_clutter(rng: np.random.Generator, img: np.ndarray, strokes: int) -> None:
    """Thin random line segments in random colours, drawn in place (under the object)."""
    size = img.shape[0]
    for _ in range(strokes):
        p0, p1 = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        ts = np.linspace(0, 1, 2 * size)
        pts = np.round(p0[None] + (p1 - p0)[None] * ts[:, None]).astype(int).clip(0, size - 1)
        img[pts[:, 1], pts[:, 0]] = rng.uniform(0, 1, 3)


def render_sample(spec: SyntheticSpec, label: int, rng: np.random.Generator):
    """Render one (image, mask) pair.

    Returns:
        image: (size, size, 3) uint8 RGB.
        mask: (size, size) uint8, ``label + 1`` on the object, 0 elsewhere.
    """
    size = spec.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if spec.colours == "hue":
        colour, ends = _hue_colours(rng)
    else:
        colour, ends = _colours(rng, spec.min_contrast, spec.light_objects)
    img = _background(rng, ends, size, yy, xx, spec.background_noise)
    _draw_clutter(rng, img, spec.clutter_strokes)

    # Object pose: scale, centre (kept mostly inside the frame) and rotation.
    half = rng.uniform(spec.min_scale, spec.max_scale) * size
    room = (size / 2 - half * 0.8) * spec.position_jitter  # how far the centre may leave the middle
    cx, cy = size / 2 + rng.uniform(-room, room, 2)
    angle = rng.uniform(0, 2 * np.pi)
    du, dv = (xx - cx) / half, (yy - cy) / half
    u = du * np.cos(angle) + dv * np.sin(angle)
    v = -du * np.sin(angle) + dv * np.cos(angle)
    shapes = SHAPE_SETS[spec.shapes]
    inside = shapes[list(shapes)[label]](u, v)

    fill = colour[None, None] * _texture(rng, size, yy, xx, spec.texture_strength)[..., None]
    img = np.where(inside[..., None], fill, img)
    image = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    mask = np.where(inside, label + 1, 0).astype(np.uint8)
    return image, mask


def class_names(spec: SyntheticSpec) -> list[str]:
    return [f"{i:02d}_{name}" for i, name in enumerate(list(SHAPE_SETS[spec.shapes])[: spec.num_classes])]


def _write_class(spec: SyntheticSpec, root: Path, split_id: int, label: int) -> None:
    """All samples of one (split, class): images/<split>/<class>/<index>.png and the masks."""
    split, per_class = [("train", spec.train_per_class), ("val", spec.val_per_class)][split_id]
    name = class_names(spec)[label]
    img_dir, mask_dir = root / "images" / split / name, root / "masks" / split / name
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for index in range(per_class):
        rng = np.random.default_rng([spec.seed, split_id, label, index])
        image, mask = render_sample(spec, label, rng)
        Image.fromarray(image, "RGB").save(img_dir / f"{index:05d}.png", optimize=False)
        Image.fromarray(mask, "L").save(mask_dir / f"{index:05d}.png", optimize=False)


def generate(spec: SyntheticSpec, root: Path, workers: int = 0) -> dict:
    """Write the dataset under ``root`` (idempotent: skipped if the stamp matches), one
    (split, class) per task on ``workers`` processes (0: one per core, 1: in this process).

    Every sample is rendered from its own generator seeded by (seed, split, class, index), so
    any one file can be regenerated alone and the result never depends on iteration order.
    """
    root = Path(root)
    stamp_path = root / "synthetic.json"
    stamp = {"generator": "dinoflow.synthetic/2", "fingerprint": spec.fingerprint(), **asdict(spec)}
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return stamp
    tasks = [(split_id, label) for split_id in (0, 1) for label in range(spec.num_classes)]
    workers = workers or os.cpu_count() or 1
    list(process_map(_write_class, *zip(*[(spec, root, s, c) for s, c in tasks], strict=True), workers=workers))
    with atomic_path(stamp_path, "synthetic data stamp") as path:  # written last: a killed run leaves none
        path.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    return stamp


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    for field, default in asdict(SyntheticSpec()).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    stamp = generate(SyntheticSpec(**args), out)
    print(json.dumps(stamp, indent=2))  # noqa: T201 - CLI output


if __name__ == "__main__":
    main()
