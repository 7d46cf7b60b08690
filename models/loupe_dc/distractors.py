"""Stills from ffmpeg's built-in test sources, used as out-of-domain images in training.

    python -m loupe_dc.distractors --out data/distractors
"""

from __future__ import annotations

import argparse
import random
import subprocess
from pathlib import Path

SOURCES = ["testsrc", "testsrc2", "smptebars", "smptehdbars", "rgbtestsrc", "yuvtestsrc", "pal75bars", "pal100bars",
           "mandelbrot", "cellauto", "life=mold=10:ratio=0.2:death_color=#C83232:life_color=#00ff00", "gradients", "colorchart"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-source", type=int, default=24)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    for src in SOURCES:
        name = src.split("=")[0]
        for i in range(args.per_source):
            w, h = rng.choice(((160, 90), (192, 108), (128, 128), (176, 144), (240, 135)))
            opts = f"size={w}x{h}" if name not in ("colorchart",) else ""
            spec = src + (":" if "=" in src else "=") + opts if opts else src
            if name == "gradients":
                spec += f":seed={rng.randint(0, 9999)}:nb_colors={rng.randint(2, 8)}"
            t = rng.uniform(0, 20)
            out = args.out / f"{name}_{i:03d}.png"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", spec, "-ss", f"{t:.2f}", "-frames:v", "1",
                            "-vf", f"scale={w}:{h}", str(out)], check=False)
    print(len(list(args.out.glob("*.png"))), "stills")


if __name__ == "__main__":
    main()
