"""Sample images for ``assetry demo``: small procedural landscapes that look like what their prompts say.

Each PNG carries a real WebUI-style ``parameters`` text chunk, so ingesting the samples exercises the
generation-parameter extractor exactly as a file from Stable Diffusion WebUI would. The set is
deterministic for a seed and, when there are enough images, includes two byte-identical copies of earlier
images (deduplication) and one near-duplicate (same theme and seed, slightly altered).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
from PIL import Image, ImageChops, ImageDraw, ImageFilter, PngImagePlugin

SIZE = 256
DEMO_MODEL = "assetry-demo-v1"
NEGATIVE_PROMPT = "blurry, low quality, watermark, text, oversaturated"

RGB = tuple[int, int, int]
Painter = Callable[[random.Random], Image.Image]


@attrs.frozen(kw_only=True)
class SampleImage:
    """One generated sample and what its embedded parameters say."""

    path: Path
    prompt: str
    negative_prompt: str
    seed: int
    model: str
    theme: str
    tags: tuple[str, ...]


# -- drawing helpers ---------------------------------------------------------------------------------------


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    t = min(1.0, max(0.0, t))
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def _jitter(color: RGB, rng: random.Random, amount: int = 12) -> RGB:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in color)  # type: ignore[return-value]


def _gradient(stops: Sequence[tuple[float, RGB]], height: int = SIZE) -> Image.Image:
    """A vertical gradient through colour stops at fractions of the height."""
    strip = Image.new("RGB", (1, height))
    pixels = []
    for y in range(height):
        f = y / (height - 1)
        for (f0, c0), (f1, c1) in itertools.pairwise(stops):
            if f <= f1:
                pixels.append(_mix(c0, c1, (f - f0) / (f1 - f0) if f1 > f0 else 0.0))
                break
        else:
            pixels.append(stops[-1][1])
    strip.putdata(pixels)
    return strip.resize((SIZE, height))


def _ridge(rng: random.Random, base: float, roughness: float, step: int = 4) -> list[tuple[float, float]]:
    """A mountain ridge line by midpoint displacement, as points from the left edge to the right."""
    count = 64
    heights = [0.0] * (count + 1)
    heights[0] = base + rng.uniform(-roughness, roughness)
    heights[count] = base + rng.uniform(-roughness, roughness)
    span, scale = count, roughness
    while span > 1:
        half = span // 2
        for start in range(0, count, span):
            mid = (heights[start] + heights[start + span]) / 2
            heights[start + half] = mid + rng.uniform(-scale, scale)
        span, scale = half, scale * 0.55
    return [(i * SIZE / count, h) for i, h in enumerate(heights)]


def _fill_below(image: Image.Image, ridge: list[tuple[float, float]], color: RGB) -> None:
    ImageDraw.Draw(image).polygon([*ridge, (SIZE, SIZE), (0, SIZE)], fill=color)


def _glow(
    image: Image.Image, center: tuple[float, float], radius: float, color: RGB, blur: float
) -> Image.Image:
    layer = Image.new("RGB", image.size)
    x, y = center
    ImageDraw.Draw(layer).ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)
    return ImageChops.screen(image, layer.filter(ImageFilter.GaussianBlur(blur)))


def _stars(image: Image.Image, rng: random.Random, count: int, max_y: int) -> None:
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        x, y = rng.randrange(SIZE), rng.randrange(max_y)
        level = rng.randint(150, 255)
        draw.point((x, y), fill=(level, level, min(255, level + 20)))


# -- themes ------------------------------------------------------------------------------------------------


def _sunset(rng: random.Random) -> Image.Image:
    image = _gradient(
        [
            (0.0, _jitter((58, 28, 92), rng)),
            (0.35, _jitter((196, 72, 88), rng)),
            (0.6, _jitter((250, 150, 70), rng)),
            (0.75, _jitter((255, 214, 120), rng)),
            (1.0, (255, 230, 160)),
        ]
    )
    sun_x, sun_y = rng.uniform(60, 196), rng.uniform(118, 132)
    image = _glow(image, (sun_x, sun_y), rng.uniform(18, 26), (255, 170, 80), 12)
    ImageDraw.Draw(image).ellipse((sun_x - 13, sun_y - 13, sun_x + 13, sun_y + 13), fill=(255, 236, 170))
    far, near = (120, 52, 92), (28, 12, 38)
    for layer in range(3):
        t = layer / 2
        ridge = _ridge(rng, 160 + layer * 28, 30 - layer * 6)
        _fill_below(image, ridge, _mix(far, near, t))
    return image


def _ocean(rng: random.Random) -> Image.Image:
    horizon = rng.randint(80, 110)
    image = _gradient(
        [
            (0.0, _jitter((86, 150, 220), rng)),
            (horizon / SIZE, (196, 226, 245)),
            (horizon / SIZE + 0.01, (30, 96, 160)),
            (1.0, _jitter((6, 28, 80), rng)),
        ]
    )
    draw = ImageDraw.Draw(image)
    phase = rng.uniform(0, math.tau)
    for band in range(14):
        y0 = horizon + 6 + band * (SIZE - horizon) / 14
        amp = 1.5 + band * 0.7
        freq = rng.uniform(0.035, 0.06)
        points = [(x, y0 + amp * math.sin(x * freq + phase + band)) for x in range(0, SIZE + 4, 4)]
        shade = _mix((70, 140, 200), (20, 60, 130), band / 14)
        draw.polygon([*points, (SIZE, SIZE), (0, SIZE)], fill=shade)
        draw.line(points, fill=_mix((200, 230, 250), shade, 0.5), width=1)
    for _ in range(40):
        x, y = rng.randrange(SIZE), rng.randrange(horizon + 20, SIZE)
        draw.ellipse((x, y, x + rng.randint(2, 5), y + 1), fill=(225, 240, 250))
    return image


def _pine_tree(draw: ImageDraw.ImageDraw, x: float, base: float, height: float, color: RGB) -> None:
    width = height * 0.36
    tiers = 4
    for tier in range(tiers):
        top = base - height + tier * height / (tiers + 1)
        bottom = top + height / 2.2
        spread = width * (0.45 + tier * 0.18)
        draw.polygon([(x, top), (x - spread / 2, bottom), (x + spread / 2, bottom)], fill=color)
    draw.rectangle((x - 1, base - height * 0.12, x + 1, base), fill=color)


def _forest(rng: random.Random) -> Image.Image:
    mist: RGB = _jitter((214, 206, 214), rng, 8)
    image = _gradient([(0.0, _jitter((150, 170, 196), rng)), (0.45, (238, 204, 190)), (1.0, mist)])
    image = _glow(image, (rng.uniform(70, 186), 90), 26, (255, 214, 170), 22)
    draw = ImageDraw.Draw(image)
    for layer in range(4):
        t = layer / 3
        color = _mix(_mix((40, 70, 60), mist, 0.75), (16, 34, 28), t)
        base = 150 + layer * 34
        x = rng.uniform(-10, 10)
        while x < SIZE + 10:
            _pine_tree(draw, x, base + rng.uniform(-6, 6), rng.uniform(26, 46) + layer * 16, color)
            x += rng.uniform(10, 20) + layer * 4
        if layer < 3:
            veil = Image.new("RGB", image.size, mist)
            mask = Image.new("L", image.size, 0)
            ImageDraw.Draw(mask).rectangle((0, base - 40, SIZE, SIZE), fill=70)
            image = Image.composite(veil, image, mask.filter(ImageFilter.GaussianBlur(14)))
            draw = ImageDraw.Draw(image)
    return image


def _city(rng: random.Random) -> Image.Image:
    image = _gradient([(0.0, (8, 4, 26)), (0.6, _jitter((48, 12, 84), rng)), (1.0, (90, 20, 110))])
    _stars(image, rng, 50, 120)
    image = _glow(image, (rng.uniform(40, 216), 70), 30, (255, 60, 160), 18)
    buildings = Image.new("RGB", image.size)
    lights = Image.new("RGB", image.size)
    mask = Image.new("L", image.size)
    draw_b, draw_l, draw_m = ImageDraw.Draw(buildings), ImageDraw.Draw(lights), ImageDraw.Draw(mask)
    neon: list[RGB] = [(255, 42, 109), (5, 217, 232), (255, 211, 25), (180, 90, 255)]
    for depth in range(2):
        x = rng.randint(-20, 0)
        while x < SIZE:
            width = rng.randint(18, 40)
            top = rng.randint(70, 150) + depth * 40
            body = (10 + depth * 6, 8 + depth * 4, 24 + depth * 10)
            draw_b.rectangle((x, top, x + width, SIZE), fill=body)
            draw_m.rectangle((x, top, x + width, SIZE), fill=255)
            for wy in range(top + 6, SIZE - 20, 8):
                for wx in range(x + 4, x + width - 4, 6):
                    if rng.random() < 0.35:
                        draw_l.rectangle((wx, wy, wx + 2, wy + 3), fill=rng.choice(neon))
            x += width + rng.randint(2, 8)
    image = Image.composite(buildings, image, mask)
    image = ImageChops.add(image, lights)
    image = ImageChops.screen(image, lights.filter(ImageFilter.GaussianBlur(4)))
    ImageDraw.Draw(image).line((0, 236, SIZE, 236), fill=(5, 217, 232), width=2)
    return image.filter(ImageFilter.SMOOTH)


def _dunes(rng: random.Random) -> Image.Image:
    image = _gradient([(0.0, _jitter((70, 150, 225), rng)), (0.45, (200, 230, 248)), (1.0, (240, 220, 190))])
    image = _glow(image, (rng.uniform(60, 196), 40), 18, (255, 255, 235), 14)
    draw = ImageDraw.Draw(image)
    lit, shade = (246, 196, 120), (196, 110, 52)
    for layer in range(5):
        t = layer / 4
        base = 120 + layer * 28
        freq, phase = rng.uniform(0.012, 0.025), rng.uniform(0, math.tau)
        amp = 10 + layer * 4
        crest = [(x, base - amp * math.sin(x * freq + phase)) for x in range(0, SIZE + 4, 4)]
        draw.polygon([*crest, (SIZE, SIZE), (0, SIZE)], fill=_jitter(_mix(lit, (232, 160, 88), t), rng, 6))
        # The slip face: a shadowed band under the crest, widest where the dune falls away from the sun.
        lower = [(x, y + 3 + 12 * max(0.0, math.cos(x * freq + phase))) for x, y in crest]
        draw.polygon([*crest, *reversed(lower)], fill=_mix(lit, shade, 0.35 + 0.2 * t))
    return image


def _peaks(rng: random.Random) -> Image.Image:
    image = _gradient([(0.0, _jitter((20, 80, 180), rng)), (0.5, (120, 180, 235)), (1.0, (200, 230, 255))])
    for layer in range(3):
        t = layer / 2
        ridge = _ridge(rng, 120 + layer * 40, 60 - layer * 15)
        rock = _mix((120, 140, 170), (60, 72, 96), t)
        mountain = Image.new("L", image.size)
        ImageDraw.Draw(mountain).polygon([*ridge, (SIZE, SIZE), (0, SIZE)], fill=255)
        image.paste(rock, (0, 0), mountain)
        snowline = min(y for _, y in ridge) + rng.uniform(30, 45)
        above = Image.new("L", image.size)
        wobble = [(x, snowline + rng.uniform(-8, 8)) for x in range(0, SIZE + 8, 8)]
        ImageDraw.Draw(above).polygon([(0, 0), (SIZE, 0), *reversed(wobble)], fill=255)
        snow = ImageChops.multiply(mountain, above)
        image.paste(_mix((250, 252, 255), (200, 215, 235), t * 0.5), (0, 0), snow)
    ImageDraw.Draw(image).rectangle((0, 236, SIZE, SIZE), fill=(236, 244, 252))
    return image.filter(ImageFilter.SMOOTH)


def _aurora(rng: random.Random) -> Image.Image:
    image = _gradient([(0.0, (4, 12, 30)), (0.6, _jitter((10, 40, 60), rng)), (1.0, (16, 50, 70))], 160)
    _stars(image, rng, 70, 140)
    curtains = Image.new("RGB", (SIZE, 160))
    draw = ImageDraw.Draw(curtains)
    for band in range(3):
        phase, freq = rng.uniform(0, math.tau), rng.uniform(0.015, 0.03)
        y0 = 40 + band * 22
        color = _mix((60, 255, 160), (120, 90, 255), band / 3)
        points = [(x, y0 + 18 * math.sin(x * freq + phase)) for x in range(0, SIZE + 4, 4)]
        for x, y in points:
            draw.line((x, y, x, y + rng.uniform(20, 50)), fill=color, width=4)
    image = ImageChops.screen(image, curtains.filter(ImageFilter.GaussianBlur(6)))
    _fill_below(image, _ridge(rng, 140, 10), (6, 14, 20))
    lake = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).crop((0, 0, SIZE, SIZE - 160))
    lake = Image.blend(lake, Image.new("RGB", lake.size, (4, 16, 28)), 0.45)
    full = Image.new("RGB", (SIZE, SIZE))
    full.paste(image, (0, 0))
    full.paste(lake.filter(ImageFilter.GaussianBlur(1.5)), (0, 160))
    return full


@attrs.frozen
class _Theme:
    name: str
    prompt: str
    tags: tuple[str, ...]
    paint: Painter


THEMES: tuple[_Theme, ...] = (
    _Theme("sunset", "sunset over mountains", ("landscape", "sunset", "mountains", "warm"), _sunset),
    _Theme("ocean", "deep blue ocean waves", ("seascape", "ocean", "waves", "blue"), _ocean),
    _Theme("forest", "misty pine forest at dawn", ("landscape", "forest", "mist", "dawn"), _forest),
    _Theme("city", "neon city at night", ("cityscape", "night", "neon"), _city),
    _Theme("desert", "desert dunes at noon", ("landscape", "desert", "dunes", "warm"), _dunes),
    _Theme("snow", "snowy peaks under a clear sky", ("landscape", "mountains", "snow", "blue"), _peaks),
    _Theme("aurora", "aurora over a frozen lake", ("landscape", "night", "aurora", "lake"), _aurora),
)
"""Every sample theme: name, base prompt, tags and painter."""

_STYLES = (
    "highly detailed",
    "digital painting",
    "soft light",
    "wide angle",
    "cinematic",
    "matte painting",
    "35mm photo",
)


def _parameters(prompt: str, seed: int) -> str:
    return (
        f"{prompt}\nNegative prompt: {NEGATIVE_PROMPT}\n"
        f"Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: {seed}, Size: {SIZE}x{SIZE}, "
        f"Model: {DEMO_MODEL}"
    )


def _save(image: Image.Image, path: Path, parameters: str) -> None:
    png_info = PngImagePlugin.PngInfo()
    png_info.add_text("parameters", parameters)
    image.save(path, "PNG", pnginfo=png_info)


def _slug(text: str) -> str:
    return "-".join(text.lower().replace(",", " ").split())


def make_sample_images(directory: Path, count: int = 12, *, seed: int = 0) -> list[SampleImage]:
    """Write ``count`` sample PNG images into ``directory`` (created if missing) and describe them.

    Themes cycle; each image's drawing and style words vary with a per-image seed derived from ``seed``.
    With six or more images, the last three are a near-duplicate of the first image (same prompt and seed,
    slightly altered) and byte-identical copies of the second and third.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    directory.mkdir(parents=True, exist_ok=True)
    specials = 3 if count >= 6 else 0
    originals = count - specials
    rng = random.Random(seed)
    samples: list[SampleImage] = []
    first_image: Image.Image | None = None
    for index in range(originals):
        theme = THEMES[(index + seed) % len(THEMES)]
        image_seed = rng.randrange(2**32)
        style = _STYLES[rng.randrange(len(_STYLES))]
        prompt = f"{theme.prompt}, {style}"
        image = theme.paint(random.Random(image_seed))
        if first_image is None:
            first_image = image
        path = directory / f"sample-{index + 1:02d}-{_slug(theme.prompt)}.png"
        _save(image, path, _parameters(prompt, image_seed))
        samples.append(
            SampleImage(
                path=path,
                prompt=prompt,
                negative_prompt=NEGATIVE_PROMPT,
                seed=image_seed,
                model=DEMO_MODEL,
                theme=theme.name,
                tags=theme.tags,
            )
        )
    if specials:
        assert first_image is not None
        base = samples[0]
        # Near-duplicate: a touch brighter and a small bird in the sky, as an img2img pass might leave it.
        near = Image.eval(first_image, lambda v: min(255, v + 6))
        draw = ImageDraw.Draw(near)
        draw.line([(40, 40), (45, 44), (50, 40)], fill=(30, 20, 30), width=2)
        path = (
            directory / f"sample-{originals + 1:02d}-{_slug(THEMES[seed % len(THEMES)].prompt)}-variant.png"
        )
        _save(near, path, _parameters(base.prompt, base.seed))
        samples.append(attrs.evolve(base, path=path))
        for offset, source in enumerate(samples[1:3]):
            path = directory / f"sample-{originals + 2 + offset:02d}-copy-of-{offset + 2:02d}.png"
            path.write_bytes(source.path.read_bytes())
            samples.append(attrs.evolve(source, path=path))
    return samples
