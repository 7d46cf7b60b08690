"""PyTorch reference answers for a released-layout checkpoint, independent of the converter's loader.

    python -m loupe_dc.official_reference JOBS.json      # prints a JSON list, one result per job

A job: {"checkpoint", "tower", "convMode", "pixels" (raw float32 file), "count", "frames", "question",
"maxNewTokens"}. transformers' own classes run it the way the Dense Connector repository does: the whole
Hub tower (SiglipVisionModel / CLIPVisionModel) with output_hidden_states — for SigLIP the last layer's
output is left out, which is what deleting that layer does — the connector from the reference's fixed
indices, the mlp2x_gelu projector, LlamaForCausalLM, AutoTokenizer with `tokenizer_image_token`, the prompt
from the conversation template (`templates.reference_prompt`), greedy decoding stopping on the reference's
terminators (eos, plus <|eot_id|> for llama_3).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .modeling import temporal_pool
from .templates import reference_prompt

IMAGE_TOKEN_INDEX = -200


def tokenizer_image_token(prompt: str, tokenizer) -> list[int]:
    chunks = [tokenizer(c).input_ids for c in prompt.split("<image>")]
    offset = 1 if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id else 0
    ids = [chunks[0][0]] if offset else []
    for i, c in enumerate(chunks):
        if i:  # the reference inserts offset+1 markers and slices offset of them away with the chunk's BOS
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(c[offset:])
    return ids


class Model:
    def __init__(self, checkpoint: Path, tower: Path):
        from safetensors import safe_open
        from transformers import AutoTokenizer, CLIPVisionModel, LlamaConfig, LlamaForCausalLM, SiglipVisionModel

        cfg = json.loads((checkpoint / "config.json").read_text())
        self.siglip = "siglip" in cfg["mm_vision_tower"].lower()
        cls = SiglipVisionModel if self.siglip else CLIPVisionModel
        self.tower = cls.from_pretrained(tower, torch_dtype=torch.float32, attn_implementation="eager").eval()
        self.select_layer = cfg.get("mm_vision_select_layer", -2)
        self.kind = cfg["mm_dense_connector_type"]
        llm_cfg = LlamaConfig(**{k: v for k, v in cfg.items() if not k.startswith("mm_") and k not in ("architectures", "model_type")})
        self.llm = LlamaForCausalLM.from_pretrained(checkpoint, config=llm_cfg, torch_dtype=torch.float32,
                                                    attn_implementation="eager").eval()
        w = {}
        for shard in checkpoint.glob("*.safetensors"):
            with safe_open(str(shard), framework="pt") as f:
                w.update({k: f.get_tensor(k).float() for k in f.keys() if k.startswith("model.mm_projector.")})
        self.proj = [(w["model.mm_projector.0.weight"], w["model.mm_projector.0.bias"]),
                     (w["model.mm_projector.2.weight"], w["model.mm_projector.2.bias"])]
        self.tok = AutoTokenizer.from_pretrained(checkpoint)

    def features(self, px: torch.Tensor) -> torch.Tensor:
        hs = self.tower(pixel_values=px, output_hidden_states=True).hidden_states
        if self.siglip:
            hs = hs[:-1]  # the reference's tower has its last layer deleted: 27 hidden states remain
            base, start, groups, n = hs[-1], 0, [(0, 13), (13, 26)], 13
        else:
            base, start, groups, n = hs[self.select_layer][:, 1:], 1, [(0, 12), (12, 24)], 12
        if self.kind == "dci":
            extra = [sum(hs[i][:, start:] for i in range(a, b)) / n for a, b in groups]
            x = torch.cat([base, *extra], dim=-1)
        elif self.kind == "sci":
            x = torch.cat([base, hs[7][:, start:], hs[15][:, start:]], dim=-1)
        else:  # sti
            pooled = [F.avg_pool1d(hs[i][:, start:].permute(0, 2, 1), 8, 8).permute(0, 2, 1) for i in (7, 15)]
            x = torch.cat([base, torch.cat(pooled, dim=-2)], dim=-2)
        (w0, b0), (w1, b1) = self.proj
        return F.linear(F.gelu(F.linear(x, w0, b0)), w1, b1)

    @torch.no_grad()
    def answer(self, px: torch.Tensor, question: str, frames: bool, mode: str, max_new: int) -> dict:
        prompt = reference_prompt(mode, [("<image>\n" + question, None)])
        ids = tokenizer_image_token(prompt, self.tok)
        feats = self.features(px)
        if frames:
            feats = temporal_pool(feats)
        vis = feats.reshape(-1, feats.shape[-1])
        embed = self.llm.get_input_embeddings()
        at = ids.index(IMAGE_TOKEN_INDEX)
        x = torch.cat([embed(torch.tensor(ids[:at])), vis, embed(torch.tensor(ids[at + 1:]))]).unsqueeze(0)
        stop = {self.tok.eos_token_id}
        if mode == "llama_3":
            stop.add(self.tok.convert_tokens_to_ids("<|eot_id|>"))
        out = self.llm(inputs_embeds=x, use_cache=True)
        first = out.logits[0, -1]
        past, logits, answer = out.past_key_values, first, []
        for _ in range(max_new):
            nxt = int(logits.argmax())
            if nxt in stop:
                break
            answer.append(nxt)
            out = self.llm(inputs_embeds=embed(torch.tensor([[nxt]])), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
        follow_up = reference_prompt(mode, [("<image>\n" + question, "A cat."), ("And its color?", None)])
        return {"prompt": prompt, "follow_up_prompt": follow_up, "input_ids": ids, "logits": first.tolist(), "answer_ids": answer,
                "answer": self.tok.decode(answer, skip_special_tokens=True).strip()}


def main() -> None:
    torch.set_num_threads(1)
    jobs = json.loads(Path(sys.argv[1]).read_text())
    models: dict[tuple[str, str], Model] = {}
    results = []
    for job in jobs:
        key = (job["checkpoint"], job["tower"])
        if key not in models:
            models[key] = Model(Path(job["checkpoint"]), Path(job["tower"]))
        m = models[key]
        s = m.tower.config.image_size
        px = torch.from_numpy(np.fromfile(job["pixels"], dtype="<f4").reshape(job["count"], 3, s, s))
        results.append(m.answer(px, job["question"], job["frames"], job["convMode"], job.get("maxNewTokens", 16)))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
