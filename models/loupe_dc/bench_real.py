"""Speed yardsticks for real models (`npm run bench:real`): onnxruntime-genai and llama.cpp on the same model.

    python -m loupe_dc.bench_real --genai DIR --gguf FILE --prompt-tokens 512 --new-tokens 128 --threads 2

Needs `onnxruntime-genai` and `llama-cpp-python` (a separate venv: see docs/real-models.md); neither is a
Loupe dependency. Each runtime gets the same prompt length, the same number of greedy tokens (end-of-turn
ignored) and the same threads. Prints JSON: per runtime, median prefill and decode tokens/s over --repeats.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def prompt_ids(vocab: int, n: int) -> list[int]:
    """A fixed, ordinary-looking token sequence (speed does not depend on which tokens)."""
    return [100 + (i * 7919) % (vocab - 200) for i in range(n)]


def bench_genai(folder: Path, n_prompt: int, n_new: int, threads: int, repeats: int) -> dict:
    import onnxruntime_genai as og

    with tempfile.TemporaryDirectory() as tmp:  # a copy whose config pins the thread count
        work = Path(tmp) / "model"
        shutil.copytree(folder, work)
        cfg_path = work / "genai_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["model"]["decoder"]["session_options"].update(intra_op_num_threads=threads, inter_op_num_threads=1)
        cfg_path.write_text(json.dumps(cfg))
        model = og.Model(str(work))
        vocab = cfg["model"]["vocab_size"]
        prefill, decode = [], []
        for _ in range(repeats):
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=n_prompt + n_new, min_length=n_prompt + n_new, do_sample=False)
            gen = og.Generator(model, params)
            t0 = time.perf_counter()
            gen.append_tokens(prompt_ids(vocab, n_prompt))
            t1 = time.perf_counter()
            for _ in range(n_new):
                gen.generate_next_token()
            t2 = time.perf_counter()
            prefill.append(n_prompt / (t1 - t0))
            decode.append(n_new / (t2 - t1))
            del gen
    return {"prefill_tok_s": statistics.median(prefill), "decode_tok_s": statistics.median(decode), "version": og.__version__}


def bench_llama_cpp(gguf: Path, n_prompt: int, n_new: int, threads: int, repeats: int) -> dict:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf), n_threads=threads, n_threads_batch=threads, n_ctx=n_prompt + n_new + 16,
                          n_batch=512, verbose=False)
    ids = prompt_ids(llm.n_vocab(), n_prompt)
    prefill, decode = [], []
    for _ in range(repeats):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        vocab = llm.n_vocab()
        for _ in range(n_new):  # greedy, one token at a time, as the other runtimes do
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))  # the last position's logits
            llm.eval([int(logits.argmax())])
        t2 = time.perf_counter()
        prefill.append(n_prompt / (t1 - t0))
        decode.append(n_new / (t2 - t1))
    return {"prefill_tok_s": statistics.median(prefill), "decode_tok_s": statistics.median(decode), "version": llama_cpp.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genai", type=Path, help="an onnxruntime-genai model folder (the builder's output)")
    ap.add_argument("--gguf", type=Path, help="a GGUF file for llama.cpp")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    out = {}
    if args.genai:
        out["onnxruntime_genai"] = bench_genai(args.genai, args.prompt_tokens, args.new_tokens, args.threads, args.repeats)
    if args.gguf:
        out["llama_cpp"] = bench_llama_cpp(args.gguf, args.prompt_tokens, args.new_tokens, args.threads, args.repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
