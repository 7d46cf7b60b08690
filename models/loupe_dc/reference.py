"""PyTorch reference answers for the parity test: the checkpoint, not the pack, on given pixels.

    python -m loupe_dc.reference --checkpoint DIR --pixels frames.f32 --count 8 --question "..." [--frames]

Prints JSON: prompt token ids (visual tokens marked -200 as in the reference repo), the logits at the
last prompt position, and the greedy answer (token ids and text).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from .infer import Reference


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--pixels", type=Path, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--question", required=True)
    ap.add_argument("--frames", action="store_true", help="video path: pool each frame by 2 and concatenate")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ref = Reference(args.checkpoint)
    s = ref.image_size
    px = torch.from_numpy(np.fromfile(args.pixels, dtype="<f4").reshape(args.count, 3, s, s))
    a = ref.answer(px, args.question, args.frames, args.max_new_tokens)
    print(json.dumps({"prompt": a.prompt, "input_ids": a.input_ids, "logits": a.first_logits.tolist(),
                      "answer_ids": a.ids, "answer": a.text}))


if __name__ == "__main__":
    main()
