"""Text side of STAR: OpenCLIP ViT-H-14's tokenizer and text tower as transformers classes.

STAR conditions on the *penultimate* layer of OpenCLIP ViT-H-14's text transformer followed by
its final LayerNorm, 77 tokens x 1024. A transformers ``CLIPTextModel`` with 23 of the 24
layers computes exactly that as ``last_hidden_state`` (its ``final_layer_norm`` is OpenCLIP's
``ln_final``). The tokenizer is rebuilt from the BPE vocabulary that ships inside the
``open-clip-torch`` package, so tokenising works offline. OpenCLIP pads with token 0 (which is
"!" in its vocabulary); ``tokenize`` does the same. The tokenizer's own pad token is
"<|endoftext|>" so that a "!" in a prompt stays ordinary text.
"""

from __future__ import annotations

import gzip
import html
import json
import tempfile
from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTokenizer

#: Tokens per prompt (OpenCLIP's context length).
MAX_TOKENS = 77
#: Tokens of OpenCLIP's BPE tokenizer (the ids the text encoder's embedding must cover).
TOKENIZER_VOCAB = 49408
#: Id OpenCLIP pads prompts with.
OPENCLIP_PAD_ID = 0
#: OpenCLIP's BPE vocabulary: 256 byte symbols, the same with "</w>", 48,894 merges, 2 specials.
NUM_BPE_MERGES = 49152 - 256 - 2

#: STAR's fixed suffix, appended to the user's prompt exactly as STAR does (no separator).
STAR_POSITIVE_PROMPT = (
    "Cinematic, High Contrast, highly detailed, taken using a Canon EOS R camera, hyper detailed photo - "
    "realistic maximum detail, 32k, Color Grading, ultra HD, extreme meticulous detailing, skin pore "
    "detailing, hyper sharpness, perfect without deformations."
)
#: STAR's fixed negative prompt.
STAR_NEGATIVE_PROMPT = (
    "painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, 3D render, "
    "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, jpeg "
    "artifacts, deformed, lowres, over-smooth"
)


def openclip_vit_h14_text_config(**overrides: object) -> CLIPTextConfig:
    """``CLIPTextConfig`` of OpenCLIP ViT-H-14's text tower cut at its penultimate layer."""
    config = dict(
        vocab_size=TOKENIZER_VOCAB, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
        num_attention_heads=16, max_position_embeddings=MAX_TOKENS, hidden_act="gelu", layer_norm_eps=1e-5,
        projection_dim=1024, bos_token_id=49406, eos_token_id=49407, pad_token_id=0,
    )
    config.update(overrides)
    return CLIPTextConfig(**config)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def build_openclip_tokenizer(bpe_path: str | Path | None = None) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` with OpenCLIP's vocabulary, read from the installed ``open-clip-torch``.

    Use it through ``tokenize`` to get OpenCLIP's exact ids (``open_clip.tokenize``).
    """
    if bpe_path is None:
        from open_clip.tokenizer import default_bpe

        bpe_path = default_bpe()
    lines = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1:NUM_BPE_MERGES + 1]]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
        return CLIPTokenizer(str(vocab_file), str(merges_file), pad_token="<|endoftext|>",
                             model_max_length=MAX_TOKENS)


def words_left_out(tokenizer: CLIPTokenizer, prompt: str) -> str:
    """The end of ``prompt`` that ``tokenize`` cuts off (its tokens past the ``MAX_TOKENS`` the text encoder reads,
    start and end tokens included), as text; "" when it fits."""
    tokens = tokenizer(html.unescape(html.unescape(prompt)), verbose=False).input_ids  # [start, ..., end] (no
    # "longer than the specified maximum sequence length" log line)
    if len(tokens) <= MAX_TOKENS:
        return ""
    return tokenizer.decode(tokens[MAX_TOKENS - 1:-1]).strip()


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids (len(prompts), 77) as ``open_clip.tokenize`` makes them: start, BPE, end, zeros."""
    ids = torch.full((len(prompts), MAX_TOKENS), OPENCLIP_PAD_ID, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        prompt = html.unescape(html.unescape(prompt))  # OpenCLIP's basic_clean decodes HTML entities
        tokens = tokenizer(prompt, truncation=True, max_length=MAX_TOKENS).input_ids
        ids[i, :len(tokens)] = torch.tensor(tokens)
    return ids
