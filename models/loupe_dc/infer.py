"""Greedy answers from a checkpoint in PyTorch: the reference the ONNX pack is compared to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from jinja2 import Template
from tokenizers import Tokenizer

from .modeling import DenseConnectorMLLM, load_checkpoint, temporal_pool

IMAGE_TOKEN_INDEX = -200  # the reference repo's marker for "visual tokens go here"


def tokenizer_image_token(tok: Tokenizer, prompt: str, bos_id: int) -> list[int]:
    """As the reference: each piece around <image> tokenized with BOS, BOS kept once."""
    chunks = [tok.encode(c, add_special_tokens=True).ids for c in prompt.split("<image>")]
    offset = 1 if chunks and chunks[0] and chunks[0][0] == bos_id else 0
    ids = [bos_id] if offset else []
    for i, c in enumerate(chunks):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(c[offset:])
    return ids


@dataclass
class Answer:
    prompt: str
    input_ids: list[int]
    first_logits: torch.Tensor
    ids: list[int]
    text: str


class Reference:
    def __init__(self, checkpoint: Path):
        self.model, _ = load_checkpoint(checkpoint)
        self.tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
        cfg = json.loads((checkpoint / "tokenizer_config.json").read_text())
        self.template = Template(cfg["chat_template"])
        self.bos_token, self.eos_token = cfg["bos_token"], cfg["eos_token"]
        self.bos, self.eos = self.tok.token_to_id(self.bos_token), self.tok.token_to_id(self.eos_token)

    @property
    def image_size(self) -> int:
        return self.model.vision.config.image_size

    @torch.no_grad()
    def answer(self, pixels: torch.Tensor, question: str, frames: bool, max_new_tokens: int = 32) -> Answer:
        """pixels: (T, 3, S, S). frames=True: pool each frame by 2 and concatenate (the video path)."""
        model: DenseConnectorMLLM = self.model
        prompt = self.template.render(messages=[{"role": "user", "content": "<image>\n" + question}],
                                      add_generation_prompt=True, bos_token=self.bos_token, eos_token=self.eos_token)
        ids = tokenizer_image_token(self.tok, prompt, self.bos)
        feats = model.encode_images(pixels)  # (T, P, D)
        if frames:
            feats = temporal_pool(feats)
        vis = feats.reshape(-1, feats.shape[-1])
        embed = model.llm.get_input_embeddings()
        at = ids.index(IMAGE_TOKEN_INDEX)
        x = torch.cat([embed(torch.tensor(ids[:at])), vis, embed(torch.tensor(ids[at + 1:]))]).unsqueeze(0)
        out = model.llm(inputs_embeds=x, use_cache=True)
        first = out.logits[0, -1]
        past, logits, answer = out.past_key_values, first, []
        for _ in range(max_new_tokens):
            nxt = int(logits.argmax())
            if nxt == self.eos:
                break
            answer.append(nxt)
            out = model.llm(inputs_embeds=embed(torch.tensor([[nxt]])), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
        return Answer(prompt, ids, first, answer, self.tok.decode(answer, skip_special_tokens=True).strip())
