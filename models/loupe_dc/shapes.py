"""Synthetic still-image QA data for the built-in model: 1-3 flat shapes on a solid background.

The domain is a contract other parts of Loupe test against: shape types, color words, question
forms and exact answer forms live here and nowhere else. Only still images are rendered; a
multi-image sample is a set of independently rendered stills (own background, layout, size and
rendering) that share one cast of objects, so every question about the set has exactly one answer.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SHAPES = ("circle", "square", "triangle")
COLORS = {
    "red": (215, 35, 35),
    "green": (40, 165, 60),
    "blue": (35, 70, 215),
    "yellow": (240, 215, 40),
    "purple": (130, 45, 170),
    "orange": (245, 135, 25),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
HONEST_ANSWER = "This built-in model only knows simple shapes and colors."

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ShapeSpec:
    kind: str  # one of SHAPES
    color: str  # one of COLORS


@dataclass
class Still:
    """One rendered still and where each cast member sits in it (x center in [0, 1])."""

    image: Image.Image
    placed: dict[ShapeSpec, float] = field(default_factory=dict)
    in_domain: bool = True  # False for noise, text, test patterns...
    # Where each shape is drawn, in the still's pixels: (spec, outline test) for patch labels.
    outlines: list = field(default_factory=list)
    background: str | None = None  # the color word of a solid background close to a named color


# ---------------------------------------------------------------- rendering


def _jitter_color(rng: random.Random, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c + rng.randint(-amount, amount)))) for c in rgb)  # type: ignore[return-value]


def _color_distance(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def nearest_color_name(rgb: tuple[int, int, int]) -> str:
    return min(COLORS, key=lambda name: _color_distance(COLORS[name], rgb))


def pick_background(rng: random.Random, cast: list[ShapeSpec]) -> tuple[int, int, int]:
    """A solid color that is none of the cast's colors and far enough from each to be visible."""
    for _ in range(200):
        mode = rng.random()
        if mode < 0.3:  # grays, from dark to light
            g = rng.randint(30, 225)
            bg = (g + rng.randint(-8, 8), g + rng.randint(-8, 8), g + rng.randint(-8, 8))
        elif mode < 0.45:  # one of the named colors, as a background
            bg = _jitter_color(rng, COLORS[rng.choice(list(COLORS))], 25)
        else:
            bg = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        bg = tuple(min(255, max(0, c)) for c in bg)
        if all(_color_distance(bg, COLORS[s.color]) > 110 for s in cast) and all(
            nearest_color_name(bg) != s.color for s in cast
        ):
            return bg  # type: ignore[return-value]
    return (128, 128, 128)


def _shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        half = r * 0.9
    else:  # triangle, pointing up before rotation
        corners = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        half = r
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + half * (x * ca - y * sa), cy + half * (x * sa + y * ca)) for x, y in corners]


def _place(rng: random.Random, n: int, w: int, h: int) -> list[tuple[float, float, float]] | None:
    short = min(w, h)
    placed: list[tuple[float, float, float]] = []
    for _ in range(n):
        for _attempt in range(60):
            r = rng.uniform(0.08, 0.20) * short
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            if all(math.hypot(cx - x, cy - y) > (r + q) * 1.08 + 1 for x, y, q in placed):
                placed.append((cx, cy, r))
                break
        else:
            return None
    return placed


def render_scene(rng: random.Random, members: list[ShapeSpec], cast: list[ShapeSpec]) -> Still:
    """Draw `members` (a subset of `cast`, possibly empty) on a background none of the cast's colors."""
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.4)))
    short = rng.randint(48, 220)
    w, h = (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))
    for _ in range(20):
        spots = _place(rng, len(members), w, h)
        if spots is not None:
            break
    else:  # pragma: no cover - 3 shapes always fit eventually
        raise RuntimeError("could not place shapes")
    ss = rng.choice((1, 2, 3, 4))  # 1 = aliased edges, >1 = supersampled anti-aliasing
    bg = pick_background(rng, cast)
    canvas = Image.new("RGB", (w * ss, h * ss), bg)
    draw = ImageDraw.Draw(canvas)
    placed: dict[ShapeSpec, float] = {}
    outlines: list = []
    for spec, (cx, cy, r) in zip(members, spots):
        fill = _jitter_color(rng, COLORS[spec.color], 28)
        x, y, rr = cx * ss, cy * ss, r * ss
        if spec.kind == "circle":
            squash = rng.uniform(0.93, 1.07)
            draw.ellipse((x - rr * squash, y - rr / squash, x + rr * squash, y + rr / squash), fill=fill)
            outlines.append((spec, ("ellipse", cx, cy, r * squash, r / squash)))
        else:
            angle = rng.gauss(0, 0.12) if rng.random() < 0.6 else rng.uniform(-math.pi, math.pi) * 0.25
            draw.polygon(_shape_polygon(spec.kind, x, y, rr, angle), fill=fill)
            outlines.append((spec, ("polygon", _shape_polygon(spec.kind, cx, cy, r, angle))))
        placed[spec] = cx / w
    image = canvas if ss == 1 else canvas.resize((w, h), rng.choice((Image.BOX, Image.BILINEAR, Image.LANCZOS)))
    named = nearest_color_name(bg)
    return Still(degrade(rng, image), placed, True, outlines, named if _color_distance(bg, COLORS[named]) < 70 else None)


def degrade(rng: random.Random, image: Image.Image) -> Image.Image:
    """Camera/codec-like damage so the model does not learn one renderer."""
    if rng.random() < 0.35:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.4)))
    arr = np.asarray(image).astype(np.float32)
    if rng.random() < 0.5:  # global brightness/contrast/tint
        arr = (arr - 128) * rng.uniform(0.85, 1.15) + 128 + rng.uniform(-15, 15)
        arr += np.array([rng.uniform(-8, 8) for _ in range(3)], dtype=np.float32)
    if rng.random() < 0.5:
        arr += np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(1, 10), arr.shape)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.45:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=rng.randint(15, 90), subsampling=rng.choice((0, 1, 2)))
        image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return image


# ------------------------------------------------------------ out-of-domain stills

_WORDS = "loupe video frame hello exit sale open news score coffee river north station 2024 ACME".split()


def render_distractor(rng: random.Random, bank: list[Image.Image] | None = None) -> Still:
    """An image with none of the domain's shapes: noise, gradients, textures, text, test patterns, clutter."""
    w, h = rng.choice(((160, 90), (128, 128), (192, 108), (120, 160), (200, 80), (144, 108)))
    kind = rng.randrange(8 if bank else 7)
    rnd = np.random.default_rng(rng.getrandbits(32))
    if kind == 0:  # noise
        arr = rnd.integers(0, 256, (h, w, 3)) if rng.random() < 0.5 else rnd.normal(128, 60, (h, w, 1)).repeat(3, 2)
        image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    elif kind == 1:  # linear or radial gradient
        a, b = rnd.integers(0, 256, 3), rnd.integers(0, 256, 3)
        yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
        t = np.hypot(xx - rng.random(), yy - rng.random()) if rng.random() < 0.4 else xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
        image = Image.fromarray((a * (1 - t[..., None]) + b * t[..., None]).astype(np.uint8))
    elif kind == 2:  # stripes / checkerboard
        yy, xx = np.mgrid[0:h, 0:w]
        period = rng.randint(3, 24)
        mask = ((xx // period + (yy // period if rng.random() < 0.5 else 0)) % 2).astype(bool)
        a, b = rnd.integers(0, 256, 3), rnd.integers(0, 256, 3)
        image = Image.fromarray(np.where(mask[..., None], a, b).astype(np.uint8))
    elif kind == 3:  # smooth blotchy texture
        small = rnd.integers(0, 256, (rng.randint(3, 12), rng.randint(3, 12), 3)).astype(np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    elif kind == 4:  # text
        image = Image.new("RGB", (w, h), tuple(int(c) for c in rnd.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default()
        for _ in range(rng.randint(1, 6)):
            draw.text((rng.randint(0, w - 20), rng.randint(0, h - 10)), " ".join(rng.sample(_WORDS, 2)), fill=tuple(int(c) for c in rnd.integers(0, 256, 3)), font=font)
        image = image.resize((w * 2, h * 2)) if rng.random() < 0.3 else image
    elif kind == 5:  # color bars
        n = rng.randint(5, 9)
        bars = rnd.integers(0, 256, (n, 3)) if rng.random() < 0.5 else np.array([[192, 192, 192], [192, 192, 0], [0, 192, 192], [0, 192, 0], [192, 0, 192], [192, 0, 0], [0, 0, 192]])
        cols = (np.arange(w) * len(bars) // w)
        image = Image.fromarray(np.repeat(bars[cols][None].astype(np.uint8), h, 0))
    elif kind == 6:  # clutter, a stand-in for real footage: many overlapping things
        image = Image.fromarray(rnd.integers(0, 256, (4, 4, 3)).astype(np.uint8)).resize((w, h), Image.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(12, 40)):
            x, y, s = rng.randint(0, w), rng.randint(0, h), rng.randint(3, max(4, w // 5))
            fill = tuple(int(c) for c in rnd.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.3 else draw.rectangle)((x, y, x + s * rng.uniform(0.3, 3), y + s), fill=fill)
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
    else:  # a still from the bank (ffmpeg test sources etc.)
        image = rng.choice(bank).copy()  # type: ignore[arg-type]
    return Still(degrade(rng, image.convert("RGB")), {}, False)


# ---------------------------------------------------------------- preprocessing


def letterbox(image: Image.Image, size: int, rng: random.Random | None = None) -> Image.Image:
    """Pad to square with the processor's mean color (LLaVA's expand2square), then resize."""
    w, h = image.size
    side = max(w, h)
    pad = tuple(int(round(m * 255)) for m in CLIP_MEAN)
    square = Image.new("RGB", (side, side), pad)
    square.paste(image, ((side - w) // 2, (side - h) // 2))
    resample = rng.choice((Image.BICUBIC, Image.BILINEAR, Image.LANCZOS, Image.BOX)) if rng else Image.BICUBIC
    return square.resize((size, size), resample)


def to_pixels(image: Image.Image) -> np.ndarray:
    """(3, S, S) float32, CLIP-normalized."""
    arr = np.asarray(image, dtype=np.float32) / 255.0
    return ((arr - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)).transpose(2, 0, 1).copy()


# ---------------------------------------------------------------- questions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(cast_in_order: list[ShapeSpec]) -> str:
    parts = [f"{_article(s.color)} {s.color} {s.kind}" for s in cast_in_order]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return text[0].upper() + text[1:] + "."


_MEDIA = ("", "", " in the image", " in the video", " in this clip", " in the picture")

OUT_OF_DOMAIN = [
    "Who is in the video?", "What is the man doing?", "How many people are there?", "What does the sign say?",
    "What is the woman wearing?", "What sound can you hear?", "Is there music in the video?", "What is the weather like?",
    "What color is the car?", "Is there a dog?", "What text appears on screen?", "Where was this filmed?",
    "What is the person saying?", "How many cars are there?", "What animal is this?", "Is it day or night?",
    "What is the name of the song?", "What color is the hexagon?", "Is there a red star?", "What brand is the phone?",
    "Translate the subtitles.", "What is the capital of France?", "Write a poem about the sea.", "Who won the game?",
    "What color is the sky?", "How old is the child?", "What language are they speaking?", "Is anyone smiling?",
    "What happens at the end?", "Is there a blue rectangle?", "What shape is the table?", "How loud is it?",
    "What time is shown on the clock?", "Describe the people.", "What is written on the board?", "Why is he running?",
]
_OOD_SUBJECTS = ["dog", "cat", "car", "man", "woman", "tree", "house", "star", "hexagon", "person", "ball", "sky", "shirt", "phone", "bird"]


def random_ood_question(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.55:
        return rng.choice(OUT_OF_DOMAIN)
    subject = rng.choice(_OOD_SUBJECTS)
    color = rng.choice(list(COLORS))
    return rng.choice(
        [
            f"What color is the {subject}?",
            f"Is there a {color} {subject}?",
            f"How many {subject}s are there?",
            f"What is the {subject} doing?",
            f"Where is the {subject}?",
        ]
    )


def color_question(rng: random.Random, kind: str) -> str:
    media = rng.choice(_MEDIA)
    return rng.choice(
        [f"What color is the {kind}?", f"What color is the {kind}{media}?", f"What is the color of the {kind}?",
         f"Which color is the {kind}?", f"What colour is the {kind}?", f"The {kind} is what color?"]
    )


def shape_question(rng: random.Random, color: str) -> str:
    return rng.choice(
        [f"What shape is {color}?", f"What shape is the {color} one?", f"Which shape is {color}?",
         f"What is the {color} shape?", f"What shape is the {color} object?", f"What {color} shape is there?"]
    )


def count_question(rng: random.Random) -> str:
    media = rng.choice(_MEDIA)
    return rng.choice(
        [f"How many shapes are there?", f"How many shapes are there{media}?", "How many shapes do you see?",
         "Count the shapes.", "How many objects are there?", f"How many shapes appear{media}?"]
    )


def presence_question(rng: random.Random, color: str, kind: str) -> str:
    media = rng.choice(_MEDIA)
    return rng.choice(
        [f"Is there a {color} {kind}?", f"Is there a {color} {kind}{media}?", f"Do you see a {color} {kind}?",
         f"Can you see a {color} {kind}?", f"Is there any {color} {kind}?"]
    )


def describe_question(rng: random.Random) -> str:
    return rng.choice(
        ["Describe the image.", "Describe the video.", "Summarize the video.", "What is in the image?",
         "What do you see?", "Describe what you see.", "What is in the video?", "Summarize the image.", "Describe this clip."]
    )


def honest_question(rng: random.Random) -> str:
    """Any question, asked about stills with no shape of the domain (its answer is HONEST_ANSWER)."""
    pick = rng.random()
    return (random_ood_question(rng) if pick < 0.3 else describe_question(rng) if pick < 0.45 else count_question(rng)
            if pick < 0.6 else color_question(rng, rng.choice(SHAPES)) if pick < 0.75
            else shape_question(rng, rng.choice(list(COLORS))) if pick < 0.87
            else presence_question(rng, rng.choice(list(COLORS)), rng.choice(SHAPES)))


def qa_for_set(rng: random.Random, cast_in_order: list[ShapeSpec], backgrounds: tuple[str, ...] = (), background_share: float = 0.0) -> tuple[str, str]:
    """One question about a set of stills whose shapes (union, left to right) are `cast_in_order`.

    backgrounds: color words of the stills' backgrounds (never a shape's color); with `background_share`, that
    many of the presence and shape questions that could name one do ("Is there a blue square?" on blue -> no)."""
    if not cast_in_order:  # no shape of the domain anywhere: every question gets the honest answer
        return honest_question(rng), HONEST_ANSWER
    by_kind = {s.kind: s for s in cast_in_order}
    by_color = {s.color: s for s in cast_in_order}
    r = rng.random()
    if background_share and backgrounds and 0.2 <= r < 0.77 and not 0.4 <= r < 0.55 and rng.random() < background_share:
        color = rng.choice(backgrounds)
        if r < 0.4:
            return shape_question(rng, color), f"Nothing is {color}."
        return presence_question(rng, color, rng.choice(SHAPES)), "no"
    if r < 0.2:
        kind = rng.choice(list(by_kind)) if rng.random() < 0.88 else rng.choice(SHAPES)
        return color_question(rng, kind), by_kind[kind].color if kind in by_kind else f"There is no {kind}."
    if r < 0.4:
        color = rng.choice(list(by_color)) if rng.random() < 0.88 else rng.choice(list(COLORS))
        return shape_question(rng, color), by_color[color].kind if color in by_color else f"Nothing is {color}."
    if r < 0.55:
        return count_question(rng), str(len(cast_in_order))
    if r < 0.77:
        if rng.random() < 0.5:
            s = rng.choice(cast_in_order)
            return presence_question(rng, s.color, s.kind), "yes"
        s = rng.choice(cast_in_order)  # hard negatives: right shape wrong color, or right color wrong shape
        color, kind = (rng.choice(list(COLORS)), s.kind) if rng.random() < 0.5 else (s.color, rng.choice(SHAPES))
        if rng.random() < 0.3:
            color, kind = rng.choice(list(COLORS)), rng.choice(SHAPES)
        present = ShapeSpec(kind, color) in cast_in_order
        return presence_question(rng, color, kind), "yes" if present else "no"
    if r < 0.9:
        return describe_question(rng), describe(cast_in_order)
    return random_ood_question(rng), HONEST_ANSWER


def random_cast(rng: random.Random) -> list[ShapeSpec]:
    n = rng.choice((1, 2, 3))
    return [ShapeSpec(k, c) for k, c in zip(rng.sample(SHAPES, n), rng.sample(list(COLORS), n))]


@dataclass
class Sample:
    stills: list[Still]
    pooled: bool  # frames path (max-pool by 2, as for video) or the single-image path
    turns: list[tuple[str, str]]


def order_left_to_right(stills: list[Still]) -> list[ShapeSpec]:
    xs: dict[ShapeSpec, list[float]] = {}
    for still in stills:
        for spec, x in still.placed.items():
            xs.setdefault(spec, []).append(x)
    return sorted(xs, key=lambda s: sum(xs[s]) / len(xs[s]))


def make_sample(rng: random.Random, bank: list[Image.Image] | None = None, max_images: int = 16, background_share: float = 0.0) -> Sample:
    """A training sample: one still (image path) or a set of independent stills (frames path), 1-4 QA turns.
    background_share: see qa_for_set (0 keeps the evaluation's question stream as it always was)."""
    r = rng.random()
    k = 1 if r < 0.4 else rng.randint(2, 8) if r < 0.85 else rng.randint(9, max_images)
    pooled = k > 1 or rng.random() < 0.25
    if rng.random() < 0.12:  # nothing of the domain in any still
        stills = [render_distractor(rng, bank) for _ in range(k)]
    else:
        cast = random_cast(rng)
        while True:
            subsets = [[s for s in cast if rng.random() < 0.8] if k > 1 else list(cast) for _ in range(k)]
            if {s for sub in subsets for s in sub} == set(cast):
                break
        stills = [render_scene(rng, sub, cast) for sub in subsets]
    ordered = order_left_to_right(stills)
    backgrounds = tuple(sorted({st.background for st in stills if st.background}))
    turns = [qa_for_set(rng, ordered, backgrounds, background_share) for _ in range(rng.choice((1, 2, 2, 3, 4)))]
    return Sample(stills, pooled, turns)


def corpus_for_tokenizer(rng: random.Random, n: int) -> list[str]:
    texts = list(OUT_OF_DOMAIN) + [HONEST_ANSWER, "USER: ASSISTANT:"]
    for _ in range(n):
        cast = random_cast(rng)
        for _ in range(3):
            q, a = qa_for_set(rng, cast)
            texts.append(f"USER: {q} ASSISTANT: {a}")
        texts.append(random_ood_question(rng))
    return texts


# ------------------------------------------------------- patch labels (vision pretraining)

PATCH_BACKGROUND, PATCH_OTHER = 0, 1  # then 2 + kind * 8 + color for each (kind, color)
PATCH_CLASSES = 2 + len(SHAPES) * len(COLORS)


def patch_class(spec: ShapeSpec) -> int:
    return 2 + SHAPES.index(spec.kind) * len(COLORS) + list(COLORS).index(spec.color)


def _inside(outline: tuple, x: float, y: float) -> bool:
    if outline[0] == "ellipse":
        _, cx, cy, rx, ry = outline
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0
    poly = outline[1]
    inside = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def patch_labels(still: Still, grid: int) -> np.ndarray:
    """(grid*grid,) class per patch of the letterboxed square: which shape covers it, background, or other content.

    A patch takes the shape that covers most of its 4x4 sample points (any coverage counts, so small shapes
    still label the patches they touch); patches in the letterbox padding are background.
    """
    w, h = still.image.size
    side = max(w, h)
    ox, oy = (side - w) / 2, (side - h) / 2
    labels = np.zeros(grid * grid, dtype=np.int64)
    step = side / grid
    offsets = [(k + 0.5) / 4 for k in range(4)]
    for i in range(grid):
        for j in range(grid):
            hits: dict[int, int] = {}
            in_image = False
            for dy in offsets:
                for dx in offsets:
                    x, y = (j + dx) * step - ox, (i + dy) * step - oy
                    if not (0 <= x < w and 0 <= y < h):
                        continue
                    in_image = True
                    for spec, outline in still.outlines:
                        if _inside(outline, x, y):
                            c = patch_class(spec)
                            hits[c] = hits.get(c, 0) + 1
            if hits:
                labels[i * grid + j] = max(hits, key=hits.get)
            elif in_image and not still.in_domain:
                labels[i * grid + j] = PATCH_OTHER
    return labels
