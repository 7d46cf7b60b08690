"""A release-shaped Dense Connector checkpoint's language model as a llama.cpp GGUF (the benchmark's yardstick).

    python -m loupe_dc.llamacpp_gguf --checkpoint DIR --converter LLAMA_CPP_DIR --out FILE.gguf [--type Q4_0]

llama.cpp's own converter (`convert_hf_to_gguf.py`, from the llama.cpp source vendored in the llama-cpp-python
sdist that bench:real builds) writes an f16 GGUF, then llama.cpp's quantizer (`llama_model_quantize`, through
llama-cpp-python) makes the int4 file; the f16 file is deleted (Q8_0 instead of f16 where the disk lacks room). Two things stand between a LLaVA checkpoint and
that converter, and this module handles both without touching its code:

- the architecture is `LlavaLlamaForCausalLM`: the converter reads a folder view of the checkpoint (the shards
  linked, config.json saying `LlamaForCausalLM`); it drops the `mm_projector` tensors itself, as for LLaVA;
- a random checkpoint's tokenizer is synthetic: the converter names a BPE vocabulary's pre-tokenizer by hashing
  how it splits a test text, and refuses hashes it does not know. For a synthetic Llama-3 vocabulary the name is
  the release's own ("llama-bpe"). The benchmark feeds token ids, so no text is tokenized by llama.cpp.

Needs torch, transformers and llama-cpp-python (the reference venv, with llama-cpp-python on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

QUANT_TYPES = {"Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q4_K_M": 15}  # llama_ftype values


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def checkpoint_view(checkpoint: Path, view: Path) -> None:
    """A folder the converter reads as a plain Llama checkpoint: the shards linked, the config renamed."""
    view.mkdir(parents=True, exist_ok=True)
    for f in checkpoint.iterdir():
        if f.name != "config.json":
            os.symlink(f.resolve(), view / f.name)
    cfg = json.loads((checkpoint / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("mm_")}
    cfg.update(architectures=["LlamaForCausalLM"], model_type="llama")
    (view / "config.json").write_text(json.dumps(cfg, indent=2))


def convert_to_gguf(converter_dir: Path, view: Path, out: Path, pre_tokenizer: str, outtype: str = "f16") -> None:
    """Runs the vendored convert_hf_to_gguf.py in this process, with the pre-tokenizer name supplied."""
    sys.path.insert(0, str(converter_dir / "gguf-py"))
    sys.path.insert(0, str(converter_dir))
    import convert_hf_to_gguf  # noqa: F401  (imports the conversion package and registers the models)
    from conversion import base

    known = base.TextModel.get_vocab_base_pre

    def vocab_base_pre(self, tokenizer) -> str:
        try:
            return known(self, tokenizer)
        except NotImplementedError:
            log(f"llamacpp_gguf: a synthetic BPE vocabulary; its pre-tokenizer is named {pre_tokenizer!r} as the release's")
            return pre_tokenizer

    base.TextModel.get_vocab_base_pre = vocab_base_pre
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(view), "--outfile", str(out), "--outtype", outtype]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv


def quantize(f16: Path, out: Path, qtype: str, threads: int, requantize: bool = False) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[qtype]
    params.nthread = threads
    params.allow_requantize = requantize
    rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--converter", type=Path, required=True, help="the llama.cpp source folder (convert_hf_to_gguf.py)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--type", choices=sorted(QUANT_TYPES), default="Q4_0")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    cfg = json.loads((args.checkpoint / "config.json").read_text())
    pre = "llama-bpe" if cfg.get("vocab_size", 0) > 100_000 else "default"
    t0 = time.monotonic()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    index = args.checkpoint / "model.safetensors.index.json"
    f16_bytes = json.loads(index.read_text())["metadata"]["total_size"] if index.exists() else 0
    # the f16 file is as big as the fp16 checkpoint (16 GB for 8B): where the disk lacks room for it, the
    # converter writes Q8_0 (half that), which the quantizer takes down to the target type
    outtype = "f16" if shutil.disk_usage(args.out.parent).free > 1.3 * f16_bytes else "q8_0"
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        view, first = Path(tmp) / "view", Path(tmp) / f"model-{outtype}.gguf"
        checkpoint_view(args.checkpoint, view)
        convert_to_gguf(args.converter, view, first, pre, outtype)
        log(f"llamacpp_gguf: {outtype} GGUF in {time.monotonic() - t0:.0f} s; quantizing to {args.type} …")
        part = Path(tmp) / args.out.name
        quantize(first, part, args.type, args.threads, requantize=outtype != "f16")
        shutil.move(str(part), args.out)
    print(json.dumps({"gguf": str(args.out), "type": args.type, "from": outtype, "seconds": round(time.monotonic() - t0, 1),
                      "bytes": args.out.stat().st_size}))


if __name__ == "__main__":
    main()
