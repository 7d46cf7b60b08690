"""Image QA accuracy on held-out synthetic stills (and sets of stills), by question type.

    python -m loupe_dc.evaluate --checkpoint DIR [--n 300] [--seed 20261124] [--set-size 8] [--probes 450]

Held-out means another seed than training; exact match after lowercasing and stripping.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from .infer import Reference
from .shapes import HONEST_ANSWER, Sample, letterbox, make_sample, order_left_to_right, qa_for_set, to_pixels


def question_type(q: str, a: str) -> str:
    if a == HONEST_ANSWER:
        return "honest"
    if a in ("yes", "no"):
        return "presence"
    if a.isdigit():
        return "count"
    if a.endswith("."):
        return "describe" if a[0].isupper() and ("circle" in a or "square" in a or "triangle" in a) and not a.startswith(("There", "Nothing")) else "absent"
    return "color" if a in ("red", "green", "blue", "yellow", "purple", "orange", "white", "black") else "shape"


def evaluate(ref: Reference, n: int, seed: int, set_size: int | None) -> dict[str, tuple[int, int]]:
    rng = random.Random(seed)
    score: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _ in range(n):
        s: Sample = make_sample(rng, None, 16)
        if set_size is not None:  # force a set of stills of this size on the frames path
            while len(s.stills) != set_size:
                s = make_sample(rng, None, 16)
        elif len(s.stills) != 1:
            s = Sample(s.stills[:1], False, [])
            s.turns = [qa_for_set(rng, order_left_to_right(s.stills))]
        pixels = torch.from_numpy(np.stack([to_pixels(letterbox(st.image, ref.image_size)) for st in s.stills]))
        q, a = s.turns[0] if set_size is None else s.turns[0]
        got = ref.answer(pixels, q, frames=s.pooled or set_size is not None).text
        t = question_type(q, a)
        score[t][0] += int(got.strip().lower() == a.strip().lower())
        score[t][1] += 1
    return {k: (v[0], v[1]) for k, v in score.items()}


def print_table(title: str, score: dict[str, tuple[int, int]]) -> float:
    total = sum(v[0] for v in score.values()), sum(v[1] for v in score.values())
    print(f"\n{title}\n| type | correct | n | accuracy |\n|---|---|---|---|")
    for k in sorted(score):
        c, m = score[k]
        print(f"| {k} | {c} | {m} | {100 * c / m:.1f}% |")
    print(f"| **overall** | {total[0]} | {total[1]} | **{100 * total[0] / total[1]:.1f}%** |")
    return total[0] / total[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=20261124)
    ap.add_argument("--set-size", type=int, default=8)
    ap.add_argument("--probes", type=int, default=0, help="also the tower diagnostics (loupe_dc.probe) on this many test stills")
    ap.add_argument("--min-accuracy", type=float, default=0.0, help="exit 1 below this (a smoke check for CI)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    ref = Reference(args.checkpoint)
    acc = print_table(f"Single stills (image path), n={args.n}, seed={args.seed}", evaluate(ref, args.n, args.seed, None))
    if args.set_size:
        print_table(f"Sets of {args.set_size} independent stills (frames path)", evaluate(ref, args.n // 2, args.seed + 1, args.set_size))
    if args.probes:
        from .probe import print_probes, probe

        print_probes(probe(ref.model, 2 * args.probes, args.probes, 20261201), args.probes)
    if acc < args.min_accuracy:
        raise SystemExit(f"image QA accuracy {acc:.3f} is below {args.min_accuracy}")


if __name__ == "__main__":
    main()
