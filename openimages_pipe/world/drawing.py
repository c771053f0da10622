"""Drawing a world image's upright scene: pure Pillow, deterministic from the image's seed.

Owns the pixels of the scene a viewer should see, before any variant turns or re-encodes it: a
muted gradient background with low-frequency noise, then each `SceneObject` as its shape's mask,
a dark outline and its texture, coarse enough to survive a downscale to ~64 px. Where objects
sit (`plan_canvas`) and how the pixels are stored and written are `render`'s.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from openimages_pipe.world.classes import Shape, Texture


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene: its class (MID), how that class looks, and where it sits."""

    mid: str
    shape: Shape
    colour: tuple[int, int, int]
    texture: Texture
    box: tuple[int, int, int]  # left, top, side in pixels of the upright canvas


def draw_scene(seed: int, size: tuple[int, int], objects: tuple[SceneObject, ...]) -> Image.Image:
    """The scene as a viewer should see it: background, then the objects in order."""
    rng = random.Random(seed)
    canvas = _background(rng, size)
    for obj in objects:
        x, y, side = obj.box
        outline = _shape_mask(obj.shape, side, grow=max(1, side // 40))
        dark = tuple(c // 3 for c in obj.colour)
        canvas.paste(dark, (x, y), outline)
        canvas.paste(_fill(obj.texture, obj.colour, side), (x, y), _shape_mask(obj.shape, side, 0))
    return canvas


def _background(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A muted two-colour gradient with low-frequency noise, composed at 1/8 scale and blown up
    once (full-resolution resizes dominated the render time; smooth pixels keep JPEGs small)."""
    c1, c2 = (tuple(rng.randint(60, 190) for _ in range(3)) for _ in range(2))
    small = (max(2, size[0] // 8), max(2, size[1] // 8))
    if rng.random() < 0.3:
        ramp = Image.radial_gradient("L")
    else:
        ramp = Image.linear_gradient("L").rotate(rng.choice((0, 90, 180, 270)))
    ramp = ramp.resize(small, Image.Resampling.BILINEAR)
    base = Image.composite(Image.new("RGB", small, c1), Image.new("RGB", small, c2), ramp)
    grain = (max(2, size[0] // 32), max(2, size[1] // 32))
    noise = Image.frombytes("L", grain, rng.randbytes(grain[0] * grain[1]))
    noise = noise.resize(small, Image.Resampling.BICUBIC).convert("RGB")
    return Image.blend(base, noise, 0.08).resize(size, Image.Resampling.BILINEAR)


def _shape_mask(shape: Shape, side: int, grow: int) -> Image.Image:
    """An L mask of `shape` in a `side` square; `grow` > 0 widens it to make an outline."""
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    c = side / 2
    r = side * 0.45 - 2 + grow  # outer radius
    box = (c - r, c - r, c + r, c + r)
    if shape is Shape.CIRCLE:
        draw.ellipse(box, fill=255)
    elif shape is Shape.SQUARE:
        draw.rectangle(box, fill=255)
    elif shape is Shape.RING:
        hole = side * 0.22 - grow
        draw.ellipse(box, fill=255)
        draw.ellipse((c - hole, c - hole, c + hole, c + hole), fill=0)
    elif shape is Shape.CROSS:
        bar = side * 0.17 + grow
        draw.rectangle((c - r, c - bar, c + r, c + bar), fill=255)
        draw.rectangle((c - bar, c - r, c + bar, c + r), fill=255)
    else:
        draw.polygon(_star(c, r, 3 if shape is Shape.TRIANGLE else 5), fill=255)
    return mask


def _star(centre: float, radius: float, tips: int) -> list[tuple[float, float]]:
    """A regular polygon with `tips` corners pointing up (3: a triangle) or, from 5 tips, a star
    (inner corners at 0.45 of the radius)."""
    corners = tips if tips == 3 else 2 * tips
    radii = (radius,) if tips == 3 else (radius, radius * 0.45)
    points = []
    for k in range(corners):
        r, a = radii[k % len(radii)], 2 * math.pi * k / corners
        points.append((centre + r * math.sin(a), centre - r * math.cos(a)))
    return points


def _fill(texture: Texture, colour: tuple[int, int, int], side: int) -> Image.Image:
    """The object's colour with its texture, coarse enough to survive a downscale to ~64 px."""
    img = Image.new("RGB", (side, side), colour)
    draw = ImageDraw.Draw(img)
    light = tuple(min(255, c // 2 + 120) for c in colour)
    step = max(4, side // 5)
    cells = [(i, j) for i in range(0, side, step) for j in range(0, side, step)]
    if texture is Texture.STRIPES:
        for i in range(0, side, step):
            draw.rectangle((0, i, side, i + step // 2), fill=light)
    elif texture is Texture.DOTS:
        for i, j in cells:
            q = step // 4
            draw.ellipse((i + q, j + q, i + step - q, j + step - q), fill=light)
    elif texture is Texture.CHECKS:
        for i, j in cells:
            if (i // step + j // step) % 2:
                draw.rectangle((i, j, i + step - 1, j + step - 1), fill=light)
    return img
