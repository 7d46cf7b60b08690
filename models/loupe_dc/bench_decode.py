"""Decode-speed references for `npm run bench`: the PyTorch model, and the same ONNX decoder driven by
a minimal Python onnxruntime greedy loop (the native ceiling for our per-token overhead).

    python -m loupe_dc.bench_decode --checkpoint DIR --pack DIR --prompt-tokens 300 --new-tokens 64 --threads 2

Prints JSON: decode_tok_s_pytorch, decode_tok_s_ort_python (medians over --repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .modeling import load_checkpoint


def ort_loop(pack: Path, prompt: np.ndarray, new_tokens: int, threads: int) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    dec = ort.InferenceSession(str(pack / "decoder_model_merged.onnx"), opts, providers=["CPUExecutionProvider"])
    emb = ort.InferenceSession(str(pack / "embed_tokens.onnx"), opts, providers=["CPUExecutionProvider"])
    manifest = json.loads((pack / "manifest.json").read_text())["decoder"]
    L, kvh, hd = manifest["numLayers"], manifest["numKeyValueHeads"], manifest["headDim"]
    past = {f"past_key_values.{i}.{kv}": np.zeros((1, kvh, 0, hd), np.float32) for i in range(L) for kv in ("key", "value")}
    n = prompt.shape[1]
    out = dec.run(None, {"inputs_embeds": prompt, "attention_mask": np.ones((1, n), np.int64),
                         "position_ids": np.arange(n, dtype=np.int64)[None], **past})
    start = time.perf_counter()
    for step in range(new_tokens):
        nxt = int(out[0][0, -1].argmax())
        e = emb.run(None, {"input_ids": np.array([[nxt]], np.int64)})[0]
        past = {f"past_key_values.{i}.{kv}": out[1 + 2 * i + j] for i in range(L) for j, kv in enumerate(("key", "value"))}
        total = n + step + 1
        out = dec.run(None, {"inputs_embeds": e, "attention_mask": np.ones((1, total), np.int64),
                             "position_ids": np.array([[total - 1]], np.int64), **past})
    return new_tokens / (time.perf_counter() - start)


@torch.no_grad()
def torch_loop(checkpoint: Path, prompt: np.ndarray, new_tokens: int) -> float:
    model, _ = load_checkpoint(checkpoint)
    llm, embed = model.llm, model.llm.get_input_embeddings()
    out = llm(inputs_embeds=torch.from_numpy(prompt), use_cache=True)
    start = time.perf_counter()
    for _ in range(new_tokens):
        nxt = int(out.logits[0, -1].argmax())
        out = llm(inputs_embeds=embed(torch.tensor([[nxt]])), past_key_values=out.past_key_values, use_cache=True)
    return new_tokens / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--pack", type=Path, required=True)
    ap.add_argument("--prompt-tokens", type=int, default=300)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hidden = json.loads((args.pack / "manifest.json").read_text())["decoder"]["hiddenSize"]
    prompt = np.random.default_rng(0).normal(0, 0.02, (1, args.prompt_tokens, hidden)).astype(np.float32)
    ort_runs = [ort_loop(args.pack, prompt, args.new_tokens, args.threads) for _ in range(args.repeats)]
    torch_runs = [torch_loop(args.checkpoint, prompt, args.new_tokens) for _ in range(args.repeats)]
    print(json.dumps({"decode_tok_s_ort_python": statistics.median(ort_runs), "decode_tok_s_pytorch": statistics.median(torch_runs)}))


if __name__ == "__main__":
    main()
