"""The embedded ``synthetic`` dataset: procedural colour images of small shapes on textures.

No files are needed: images are generated on the fly, deterministically from ``seed`` and
the split, fully vectorised with numpy (thousands of 32x32 images per second).

Each image shows one *main* object (its class is the label; radius 0.15-0.31 of the image
side) and, with probability 0.5 and 0.25, a first and second smaller *distractor* of another
class (radius 0.35-0.55 of the main one, drawn behind it), on a textured background: a
linear gradient between two random colours, two oriented sinusoidal gratings (period
2.5-12 px at 32x32) and Gaussian sensor noise (sigma 0-10). Objects get a random position,
rotation and colour (in 30 % of the cases close to the mean background colour), a soft
shading ramp and anti-aliased edges. 64x64 images are the same scenes at twice the detail.

Eight shape classes; two of them differ from others only by fine texture, so compression
(which removes high frequencies and subsamples chroma) visibly hurts a classifier:

=========  ==================================================================
class      what is drawn
=========  ==================================================================
disc       filled disc
square     filled square
triangle   filled equilateral triangle
ring       annulus (hole about 0.4 of the radius)
cross      plus sign with thick arms
star       five-pointed star
stripes    disc filled with fine two-colour stripes (period 2.8-4 px at 32x32)
checker    square filled with a fine two-colour checkerboard (cells 1.8-2.6 px at 32x32)
=========  ==================================================================

Label and mask convention (one index space, ``ImageSet.classes == CLASSES``):
``CLASSES[0] = "background"`` and ``CLASSES[i + 1]`` is shape class ``i`` of
``SHAPE_CLASSES``. ``labels[n]`` is the class id (``1..8``) of image ``n``'s main object;
``masks[n, y, x]`` is the class id of the object covering that pixel (``0`` = background,
objects count where their anti-aliased coverage is at least one half). The label id
``0`` (background) never occurs in ``labels``.

Images are made in chunks of ``CHUNK`` images, each chunk from its own random stream
``SeedSequence([seed, split_id, chunk])``: the first ``n`` images of a split do not depend
on how many are asked for, and ``train`` / ``val`` / ``test`` come from independent streams.
Main-object classes come in shuffled blocks of eight (one of each class), so the first ``n``
images are class-balanced.
"""

from __future__ import annotations

import math

import numpy as np

from simlink.data.base import ImageSet
from simlink.data.loaders.transforms import normalize_size, size_record

SHAPE_CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "ring", "cross", "star", "stripes", "checker")
CLASSES: tuple[str, ...] = ("background",) + SHAPE_CLASSES
SPLIT_SIZES: dict[str, int] = {"train": 10000, "val": 1000, "test": 1000}
ALLOWED_SIZES: tuple[int, ...] = (32, 64)
DEFAULT_SIZE = 32
CHUNK = 128  # images per random stream; a request for n images renders ceil(n / CHUNK) chunks
_SPLIT_IDS = {"train": 1, "val": 2, "test": 3}

# Geometry, in units of the image side S (so 64x64 images are 32x32 ones at twice the detail).
_MAIN_RADIUS = (0.15, 0.31)
_DISTRACTOR_RADIUS = (0.35, 0.55)  # relative to the main object's radius: it stays the largest object
_DISTRACTOR_PROB = (0.5, 0.25)
_NEAR_BACKGROUND_PROB = 0.3


def generate(n: int, size: int = DEFAULT_SIZE, seed: int = 0, split: str = "test"):
    """Generate the first ``n`` images of a synthetic split.

    Args:
        n: number of images (``>= 0``).
        size: image side, one of ``ALLOWED_SIZES``.
        seed: non-negative integer; same ``(seed, split, size)`` gives bit-identical output
            (on one platform: numpy's SIMD float32 math may differ in the last bit across CPUs).
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        ``(images, labels, masks)``: ``uint8[n, size, size, 3]`` RGB, ``int64[n]`` class ids
        in ``1..len(SHAPE_CLASSES)``, ``uint8[n, size, size]`` per-pixel class ids.
    """
    if size not in ALLOWED_SIZES:
        raise ValueError(f"synthetic image_size must be one of {list(ALLOWED_SIZES)}, got {size}")
    if split not in _SPLIT_IDS:
        raise ValueError(f"synthetic split must be one of {list(_SPLIT_IDS)}, got {split!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    masks = np.empty((n, size, size), np.uint8)
    for chunk, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_IDS[split], chunk]))
        img, lab, msk = _generate_chunk(rng, CHUNK, size)
        stop = min(n, start + CHUNK)
        images[start:stop] = img[: stop - start]
        labels[start:stop] = lab[: stop - start]
        masks[start:stop] = msk[: stop - start]
    return images, labels, masks


def square_side(image_size) -> int:
    """The generated side for a requested ``image_size``.

    Args:
        image_size: ``None`` (``DEFAULT_SIZE``), an int ``s`` or ``[s, s]`` / ``(s, s)`` with ``s``
            one of ``ALLOWED_SIZES`` (synthetic images are squares).

    Returns:
        ``s`` as an int.

    Raises:
        ValueError: an invalid size, a non-square ``[H, W]`` or a side not in ``ALLOWED_SIZES``
            (the allowed sizes are named).
    """
    hw = normalize_size(image_size)
    if hw is None:
        return DEFAULT_SIZE
    if hw[0] != hw[1] or hw[0] not in ALLOWED_SIZES:
        shown = list(image_size) if isinstance(image_size, tuple) else image_size
        raise ValueError(f"synthetic image_size must be one of {list(ALLOWED_SIZES)} (squares only; "
                         f"[s, s] is the same as s), got {shown}")
    return hw[0]


def load_synthetic(split: str = "test", n_images: int | None = None,
                   image_size: int | tuple[int, int] | None = None,
                   root=None, seed: int = 0, download: bool = False) -> ImageSet:
    """Registry loader for ``synthetic`` (``root`` and ``download`` are ignored: nothing to read).

    ``n_images`` defaults to the split's size in ``SPLIT_SIZES`` and may not exceed it;
    ``image_size`` defaults to 32 and is an int or ``[s, s]`` (squares only, see
    :func:`square_side`). Scenes are independent and the main-object classes come in
    shuffled blocks of ``len(SHAPE_CLASSES)``, so the first ``n`` images are a class-balanced
    sample (counts differ by at most one).

    Returns:
        :class:`ImageSet`: ``uint8[n, s, s, 3]`` images, ``int64[n]`` labels, ``uint8[n, s, s]``
        masks; ``meta["image_size"]`` is ``s`` for an int (or ``None``) request, ``[s, s]`` for a pair.
    """
    available = SPLIT_SIZES[split]
    n = available if n_images is None else int(n_images)
    if n < 0 or n > available:
        raise ValueError(f"synthetic/{split}: n_images={n_images} but the split has {available} images")
    size = square_side(image_size)
    images, labels, masks = generate(n, size=size, seed=seed, split=split)
    return ImageSet(
        images=images, labels=labels, masks=masks, classes=list(CLASSES), name="synthetic", split=split,
        ignore_index=None,
        meta={"seed": seed, "image_size": size if image_size is None else size_record(image_size),
              "n_available": available, "shape_classes": list(SHAPE_CLASSES),
              "label_convention": "labels and masks index classes; classes[0] = background"},
    )


# ----------------------------------------------------------------------------- rendering


def _generate_chunk(rng: np.random.Generator, n: int, size: int):
    """Render ``n`` images of side ``size`` from ``rng``; returns ``(uint8 images, int64 labels, uint8 masks)``."""
    k = len(SHAPE_CLASSES)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    img = _background(rng, n, size, yy, xx)
    bg_mean = img.mean(axis=(1, 2))  # (n, 3)
    masks = np.zeros((n, size, size), np.uint8)

    # Class-balanced: every run of k consecutive images is a random permutation of the k classes.
    main_cls = np.argsort(rng.random((-(-n // k), k)), axis=1).ravel()[:n]
    main_r = rng.uniform(*_MAIN_RADIUS, n).astype(np.float32) * size
    # Distractors first (behind), then the main object on top.
    for prob in _DISTRACTOR_PROB:
        present = rng.random(n) < prob
        cls = (main_cls + rng.integers(1, k, n)) % k
        r = rng.uniform(*_DISTRACTOR_RADIUS, n).astype(np.float32) * main_r
        _draw_layer(rng, img, masks, cls, r, present, bg_mean, yy, xx)
    _draw_layer(rng, img, masks, main_cls, main_r, np.ones(n, bool), bg_mean, yy, xx)

    noise_sigma = rng.uniform(0.0, 10.0, n).astype(np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * noise_sigma[:, None, None, None]
    images = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, (main_cls + 1).astype(np.int64), masks


def _background(rng: np.random.Generator, n: int, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Textured backgrounds, ``float32[n, size, size, 3]`` in about ``[0, 255]``.

    A linear gradient between two random colours in a random direction, plus two oriented
    sinusoidal gratings (period 2.5-12 px at 32x32, random phase, amplitude up to 40 along a
    random colour direction).
    """
    c0 = rng.uniform(0, 255, (n, 3)).astype(np.float32)
    c1 = rng.uniform(0, 255, (n, 3)).astype(np.float32)
    phi = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    # Basis images (n, S*S, 4): constant, gradient ramp, grating 1, grating 2; colours (n, 4, 3).
    basis = np.empty((n, size * size, 4), np.float32)
    basis[..., 0] = 1.0
    proj = (xx - size / 2).ravel()[None] * np.cos(phi)[:, None] + (yy - size / 2).ravel()[None] * np.sin(phi)[:, None]
    basis[..., 1] = np.clip(proj / (0.8 * size) + 0.5, 0.0, 1.0)
    coef = np.empty((n, 4, 3), np.float32)
    coef[:, 0] = c0
    coef[:, 1] = c1 - c0
    scale = size / 32.0
    for g in range(2):
        period = rng.uniform(2.5, 12.0, n).astype(np.float32) * scale
        theta = rng.uniform(0, np.pi, n).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        amp = rng.uniform(0, 40, n).astype(np.float32)
        direction = rng.standard_normal((n, 3)).astype(np.float32)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-6
        arg = (xx.ravel()[None] * np.cos(theta)[:, None] + yy.ravel()[None] * np.sin(theta)[:, None]) \
            * (2 * np.pi / period)[:, None] + phase[:, None]
        basis[..., 2 + g] = np.sin(arg)
        coef[:, 2 + g] = amp[:, None] * direction
    return np.matmul(basis, coef).reshape(n, size, size, 3)


def _draw_layer(rng, img, masks, cls, r, present, bg_mean, yy, xx) -> None:
    """Composite one object per image onto ``img`` (in place) and write its id into ``masks``.

    Args:
        cls: ``int[n]`` shape class (0-based into ``SHAPE_CLASSES``).
        r: ``float32[n]`` object radius in pixels.
        present: ``bool[n]``; images with ``False`` are left untouched (all random draws are
            made for every image, so the stream does not depend on which objects are present).
        bg_mean: ``float32[n, 3]`` mean background colour (for low-contrast objects).
        yy, xx: ``float32[S, S]`` pixel-centre coordinates.
    """
    n, size = img.shape[0], img.shape[1]
    cx = rng.uniform(0, 1, n).astype(np.float32) * (size - 2 * r) + r
    cy = rng.uniform(0, 1, n).astype(np.float32) * (size - 2 * r) + r
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    colour = rng.uniform(0, 255, (n, 3)).astype(np.float32)
    near = rng.random(n) < _NEAR_BACKGROUND_PROB
    near_colour = bg_mean + rng.normal(0, 35, (n, 3)).astype(np.float32)
    colour = np.where(near[:, None], near_colour, colour)
    # Second (texture) colour: a random colour step with a luminance part pointing towards mid-grey,
    # so textures do not live in chroma alone.
    direction = rng.standard_normal((n, 3)).astype(np.float32)
    towards_mid = np.where(colour.mean(axis=1) > 127.5, -1.0, 1.0).astype(np.float32)
    direction += (towards_mid * rng.uniform(0.6, 1.2, n).astype(np.float32))[:, None] / math.sqrt(3.0)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-6
    colour2 = colour + direction * rng.uniform(70, 130, n).astype(np.float32)[:, None]
    tex_period = rng.uniform(2.8, 4.0, n).astype(np.float32) * (size / 32.0)
    shade = rng.uniform(-0.25, 0.25, n).astype(np.float32)

    # Only the images that show this object: object-frame coordinates (m, S, S).
    on = np.flatnonzero(present)
    dx = xx[None] - cx[on, None, None]
    dy = yy[None] - cy[on, None, None]
    cos, sin = np.cos(angle[on])[:, None, None], np.sin(angle[on])[:, None, None]
    u = dx * cos + dy * sin
    v = dy * cos - dx * sin
    rr = r[on, None, None]
    sdf = np.empty(dx.shape, np.float32)
    tex = np.zeros(dx.shape, np.float32)
    cls_on = cls[on]
    for k in range(len(SHAPE_CLASSES)):
        idx = np.flatnonzero(cls_on == k)
        if idx.size:
            sdf[idx], tex[idx] = _shape(k, u[idx], v[idx], rr[idx], tex_period[on][idx, None, None])
    alpha = np.clip(0.5 - sdf, 0.0, 1.0)

    # Composite only the covered pixels. Solid shapes get a soft shading ramp along u;
    # textured ones mix their two colours by the texture weight.
    b, y, x = np.nonzero(alpha > 0)
    a = alpha[b, y, x]
    g = on[b]
    ramp = 1.0 + shade[g] * np.clip(u[b, y, x] / r[g], -1.0, 1.0)
    fill = colour[g] * ramp[:, None] + (colour2[g] - colour[g]) * tex[b, y, x][:, None]
    img[g, y, x] += (np.clip(fill, 0, 255) - img[g, y, x]) * a[:, None]
    solid = a >= 0.5
    masks[g[solid], y[solid], x[solid]] = (cls[g[solid]] + 1).astype(np.uint8)


def _shape(k: int, u: np.ndarray, v: np.ndarray, r: np.ndarray, period: np.ndarray):
    """Signed distance (pixels, negative inside) and texture weight in ``[0, 1]`` of shape class ``k``.

    ``u, v``: ``float32[m, S, S]`` object-frame coordinates (pixels); ``r``, ``period``:
    ``float32[m, 1, 1]``. Returns two ``float32[m, S, S]`` arrays.
    """
    name = SHAPE_CLASSES[k]
    zero = np.zeros_like(u)
    rho = np.sqrt(u * u + v * v)
    if name == "disc":
        return rho - r, zero
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8 * r, zero
    if name == "triangle":
        normals = (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)
        d = np.maximum.reduce([u * math.cos(a) + v * math.sin(a) for a in normals])
        return d - 0.55 * r, zero
    if name == "ring":
        return np.abs(rho - 0.72 * r) - 0.28 * r, zero
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        arm1 = np.maximum(au - r, av - 0.3 * r)
        arm2 = np.maximum(au - 0.3 * r, av - r)
        return np.minimum(arm1, arm2), zero
    if name == "star":
        theta = np.arctan2(v, u)
        boundary = r * (0.5 + 0.5 * ((np.cos(5 * theta) + 1) / 2) ** 2)
        return (rho - boundary) * 0.7, zero
    if name == "stripes":
        tex = np.clip(0.5 + 1.5 * np.sin(u * (2 * np.pi) / period), 0.0, 1.0)
        return rho - 0.95 * r, tex
    if name == "checker":
        p = 1.3 * period
        tex = np.clip(0.5 + 3.0 * np.sin(u * (2 * np.pi) / p) * np.sin(v * (2 * np.pi) / p), 0.0, 1.0)
        return np.maximum(np.abs(u), np.abs(v)) - 0.8 * r, tex
    raise ValueError(f"unknown shape class {k}")
