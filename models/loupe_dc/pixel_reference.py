"""The released checkpoints' own image preparation, for parity tests: LLaVA's `expand2square` with the processor's
mean colour, then the tower's transformers image processor (CLIPImageProcessor / SiglipImageProcessor, from the
tower folder's preprocessor_config.json), exactly as the Dense Connector repository calls them.

    python -m loupe_dc.pixel_reference JOBS.json      # writes each job's pixels, prints [{"shape": [...]}, ...]

A job: {"tower": DIR, "out": FILE (raw float32, 3 x S x S), and either "image": FILE (opened with PIL, as the
reference opens stills) or "rgb": FILE with "width" and "height" (a decoded video frame, 8-bit RGB, HWC)}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def expand2square(img: Image.Image, background: tuple[int, ...]) -> Image.Image:
    """LLaVA's `expand2square`: the picture pasted at ((long - short) // 2) on a square of its longer side."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), background)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def processor_pixels(processor, img: Image.Image) -> np.ndarray:
    """(3, S, S) float32, as the reference's `process_images` with image_aspect_ratio "pad"."""
    background = tuple(int(x * 255) for x in processor.image_mean)
    square = expand2square(img.convert("RGB"), background)
    return processor.preprocess(square, return_tensors="np")["pixel_values"][0].astype(np.float32)


def main() -> None:
    from transformers import AutoImageProcessor

    jobs = json.loads(Path(sys.argv[1]).read_text())
    processors: dict[str, object] = {}
    results = []
    for job in jobs:
        if job["tower"] not in processors:
            processors[job["tower"]] = AutoImageProcessor.from_pretrained(job["tower"])
        if "image" in job:
            img = Image.open(job["image"])
            img.load()
        else:
            raw = Path(job["rgb"]).read_bytes()
            img = Image.frombytes("RGB", (job["width"], job["height"]), raw)
        px = processor_pixels(processors[job["tower"]], img)
        px.tofile(job["out"])
        results.append({"shape": list(px.shape)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
