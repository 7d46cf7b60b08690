"""A fixed pool of rendered stills with the frozen CNN front computed once (training on cached features).

    python -m loupe_dc.pool --out ~/.cache/loupe/pool --groups 3000 --seed 1 [--shard 0/2]

The pool is made of *groups*: a cast of 1-3 shapes rendered `--renderings` times (the first rendering shows the
whole cast, the others a random subset of it, as `shapes.make_sample` draws the stills of a set), or a group of
out-of-domain stills. A training sample is one still of a group (the image path) or several (a set of stills on the
frames path); its questions are drawn afresh from the stills' metadata at every use, so a finite pool of pictures
meets an endless stream of questions.

Per still it stores what does not change while training: the frozen EfficientNet-Lite0 stem and blocks 0-7
(`HybridVisionTower.front`, fp16 (80, 8, 8) at 128 px), the 4x-pooled pixels of the colour path (fp16 (3, 32, 32)),
and labels: the shapes it shows (kind, colour, x centre), its background's colour word, per-cell cover classes and the
cell holding each shape's centre (for the tower's object-centred auxiliary loss). One thread: ~18 ms a still.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from .modeling import HybridVisionConfig, HybridVisionTower, lite0_weights_path
from .shapes import COLORS, SHAPES, Still, letterbox, patch_class, patch_labels, random_cast, render_distractor, render_scene, to_pixels

IMAGE_SIZE = 128
GRID = IMAGE_SIZE // 16
NO_CENTRE = 0  # centre classes: 0 = no shape's centre in this cell, 1 + kind * 8 + colour otherwise
COLOR_NAMES = list(COLORS)


def centre_cells(still: Still, grid: int) -> np.ndarray:
    """(grid*grid,) int8: the (kind, colour) class of the shape whose centre lies in each cell of the letterboxed square."""
    w, h = still.image.size
    side = max(w, h)
    ox, oy = (side - w) / 2, (side - h) / 2
    out = np.zeros(grid * grid, dtype=np.int8)
    for spec, outline in still.outlines:
        if outline[0] == "ellipse":
            cx, cy = outline[1], outline[2]
        else:
            pts = outline[1]
            cx, cy = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
        i = min(grid - 1, max(0, int((cy + oy) / side * grid)))
        j = min(grid - 1, max(0, int((cx + ox) / side * grid)))
        out[i * grid + j] = patch_class(spec) - 1  # patch classes start at 2 (background, other)
    return out


def render_group(rng: random.Random, renderings: int, distractor: bool, bank: list) -> list[Still]:
    if distractor:
        return [render_distractor(rng, bank) for _ in range(renderings)]
    cast = random_cast(rng)
    subsets = [list(cast)] + [[s for s in cast if rng.random() < 0.8] for _ in range(renderings - 1)]
    return [render_scene(rng, sub, cast) for sub in subsets]


def build(out: Path, groups: int, seed: int, renderings: int, distractor_share: float, shard: int, shards: int, bank_dir: Path) -> Path:
    from .train import distractor_bank

    torch.set_num_threads(1)
    tower = HybridVisionTower(HybridVisionConfig(image_size=IMAGE_SIZE, pixel_path=True)).eval()
    tower.load_lite0(lite0_weights_path())
    bank = distractor_bank(bank_dir)
    rng = random.Random(seed * 1_000_003 + shard)
    mine = [g for g in range(groups) if g % shards == shard]
    n = len(mine) * renderings
    front = np.zeros((n, 80, GRID, GRID), np.float16)
    cells = np.zeros((n, 3, IMAGE_SIZE // 4, IMAGE_SIZE // 4), np.float16)
    members = np.full((n, 3, 3), -1, np.int16)  # (kind, colour, x * 1000) per shape shown, -1 padding
    background = np.full(n, -1, np.int8)  # colour index of a background close to a named colour, else -1
    in_domain = np.zeros(n, np.bool_)
    cover = np.zeros((n, GRID * GRID), np.int8)
    centre = np.zeros((n, GRID * GRID), np.int8)
    group = np.zeros(n, np.int32)
    t0, k = time.time(), 0
    for gi, g in enumerate(mine):
        stills = render_group(rng, renderings, rng.random() < distractor_share, bank)
        px = torch.from_numpy(np.stack([to_pixels(letterbox(st.image, IMAGE_SIZE, rng)) for st in stills]))
        with torch.no_grad():
            front[k : k + renderings] = tower.front(px).numpy().astype(np.float16)
            cells[k : k + renderings] = tower.pixel_cells(px).numpy().astype(np.float16)
        for st in stills:
            for m, (spec, x) in enumerate(st.placed.items()):
                members[k, m] = (SHAPES.index(spec.kind), COLOR_NAMES.index(spec.color), int(round(x * 1000)))
            background[k] = COLOR_NAMES.index(st.background) if st.background else -1
            in_domain[k] = st.in_domain
            cover[k] = patch_labels(st, GRID)
            centre[k] = centre_cells(st, GRID)
            group[k] = g
            k += 1
        if gi % 200 == 0:
            print(f"shard {shard}: {gi}/{len(mine)} groups, {(time.time() - t0) / max(1, k) * 1000:.1f} ms a still", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pool-s{seed}-{shard}of{shards}.npz"
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, front=front, cells=cells, members=members, background=background, in_domain=in_domain,
             cover=cover, centre=centre, group=group, renderings=np.int32(renderings))
    os.replace(tmp, path)
    print(f"wrote {path}: {n} stills in {time.time() - t0:.0f} s", flush=True)
    return path


class Pool:
    """The stills of one or more pool files, by group."""

    def __init__(self, paths: list[Path]):
        parts = [np.load(p) for p in paths]
        cat = lambda key: np.concatenate([p[key] for p in parts])  # noqa: E731
        self.front, self.cells = cat("front"), cat("cells")
        self.members, self.background, self.in_domain = cat("members"), cat("background"), cat("in_domain")
        self.cover, self.centre = cat("cover"), cat("centre")
        group = np.concatenate([p["group"] + 10_000_000 * i for i, p in enumerate(parts)])
        order = np.argsort(group, kind="stable")
        starts = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1]])
        self.groups = [order[a:b] for a, b in zip(starts, list(starts[1:]) + [len(order)])]

    def __len__(self) -> int:
        return len(self.front)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--groups", type=int, default=3000)
    ap.add_argument("--renderings", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--distractor-share", type=float, default=0.1)
    ap.add_argument("--shard", default="0/1", help="K/N: this process renders groups g with g % N == K")
    ap.add_argument("--bank", type=Path, default=Path(__file__).resolve().parent.parent / "data" / "distractors")
    args = ap.parse_args()
    k, n = (int(v) for v in args.shard.split("/"))
    build(args.out, args.groups, args.seed, args.renderings, args.distractor_share, k, n, args.bank)


if __name__ == "__main__":
    main()
