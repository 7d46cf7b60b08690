"""Which MatMulNBits block size the int4 decoder uses, measured at a release's widths.

    python -m loupe_dc.block_sizes --size 7b --layers 2 --out DIR [--blocks 32,64,128]

A release-shaped checkpoint with the real widths and a few layers (loupe_dc.release_shapes) is written once,
its decoder converted in fp32 and at each int4 block size (loupe_dc.stream_convert), and each decoder measured
in its own process (onnxruntime on `--threads`): memory after loading (VmHWM, the pre-packed weights included),
prefill tokens/s over `--prompt` tokens, decode ms per step, and the error of the last position's logits against
fp32 (largest error relative to fp32's largest logit) after the prompt and after each step.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .apart import add_worker_flags, run_apart
from .streamio import Shards, peak_rss_mb


def _decoder_inputs(decoder: Path):
    import onnx

    model = onnx.load(str(decoder), load_external_data=False)
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}


def _run(decoder: Path, prompt: int, steps: int, threads: int, result: Path) -> None:
    import onnxruntime as ort

    base = peak_rss_mb()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(decoder), options, providers=["CPUExecutionProvider"])
    loaded = peak_rss_mb()
    inputs = _decoder_inputs(decoder)
    hidden = inputs["inputs_embeds"][2]
    pasts = [n for n in inputs if n.startswith("past_key_values.")]
    heads, dim = inputs[pasts[0]][1], inputs[pasts[0]][3]
    rng = np.random.default_rng(0)
    embeds = (rng.standard_normal((1, prompt + steps, hidden)) * 0.02).astype(np.float32)  # the table's scale
    names = [o.name for o in session.get_outputs()]

    def run(x: np.ndarray, past: dict, start: int):
        feeds = {"inputs_embeds": x, "attention_mask": np.ones((1, start + x.shape[1]), np.int64), **past}
        out = dict(zip(names, session.run(names, feeds)))
        return out["logits"][0, -1], {p: out[p.replace("past_key_values", "present")] for p in pasts}

    empty = {p: np.zeros((1, heads, 0, dim), np.float32) for p in pasts}
    run(embeds[:, :16], empty, 0)  # warm-up
    t = time.perf_counter()
    logits, past = run(embeds[:, :prompt], empty, 0)
    prefill_s = time.perf_counter() - t
    all_logits, times = [logits], []
    for i in range(steps):
        t = time.perf_counter()
        logits, past = run(embeds[:, prompt + i:prompt + i + 1], past, prompt + i)
        times.append(time.perf_counter() - t)
        all_logits.append(logits)
    np.save(result.with_suffix(".npy"), np.stack(all_logits))
    result.write_text(json.dumps({"session_mb": round(loaded - base), "prefill_tok_s": round(prompt / prefill_s, 1),
                                  "decode_ms": round(1000 * float(np.median(times)), 1), "onnxruntime": ort.__version__}))


def measure(checkpoint: Path, out: Path, blocks: list[int], prompt: int, steps: int, threads: int) -> dict:
    from .official import read_config
    from .stream_convert import write_decoder

    cfg, shards = read_config(checkpoint), Shards(checkpoint)
    rows = {}
    for variant in ["fp32", *[str(b) for b in blocks]]:
        folder = out / f"decoder-{variant}"
        if not (folder / "decoder_model_merged.onnx").exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_decoder(shards, cfg, folder, "fp32" if variant == "fp32" else "int4", 32 if variant == "fp32" else int(variant))
        rows[variant] = run_apart("loupe_dc.block_sizes", folder / "decoder_model_merged.onnx", folder / "measured.json",
                                  prompt=prompt, steps=steps, threads=threads)
    ref = np.load(out / "decoder-fp32" / "measured.npy")
    for variant in rows:
        got = np.load(out / f"decoder-{variant}" / "measured.npy")
        rows[variant]["logit_error_vs_fp32"] = round(float(np.abs(got - ref).max() / np.abs(ref).max()), 4)
        rows[variant]["argmax_agreement"] = float((got.argmax(-1) == ref.argmax(-1)).mean())
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="7b")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--blocks", default="32,64,128")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    add_worker_flags(ap)
    args = ap.parse_args()
    if args.run:
        _run(args.run, args.prompt, args.steps, args.threads, args.result)
        return
    checkpoint = args.out / "checkpoint" / "checkpoint"
    if not (checkpoint / "config.json").exists():
        from .release_shapes import build

        build(args.out / "checkpoint", args.size, args.layers)
    print(json.dumps(measure(checkpoint, args.out, [int(b) for b in args.blocks.split(",")], args.prompt, args.steps,
                             args.threads), indent=2))


if __name__ == "__main__":
    main()
