"""OpenCLIP tokenizer rebuilt offline, and OpenCLIP -> CLIPTextModel conversion (penultimate layer)."""

from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.model import CLIPTextCfg, _build_text_tower
from transformers import CLIPTextModel

from star_vsr.conversion.openclip import (
    convert_openclip_text_encoder,
    load_openclip_text_encoder,
    load_text_encoder_weights,
    text_config_from_openclip,
)
from star_vsr.errors import InputError
from star_vsr.text import STAR_NEGATIVE_PROMPT, STAR_POSITIVE_PROMPT, build_openclip_tokenizer, tokenize

PROMPTS = [
    "a good video" + STAR_POSITIVE_PROMPT,
    STAR_NEGATIVE_PROMPT,
    "",
    "A cat's  café: 1080p!!  Ünïcödé 日本 <b>&amp;</b>",
    "word " * 100,  # truncated: the end token stays in the last slot
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_openclip_tokenizer()


def test_tokenizer_matches_open_clip_tokenize(tokenizer):
    assert torch.equal(tokenize(tokenizer, PROMPTS), open_clip.tokenize(PROMPTS))


def test_tokenizer_round_trips_through_save_pretrained(tokenizer, tmp_path):
    from transformers import CLIPTokenizer

    tokenizer.save_pretrained(tmp_path)
    reloaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert torch.equal(tokenize(reloaded, PROMPTS), tokenize(tokenizer, PROMPTS))


@pytest.fixture(scope="module")
def openclip_tower():
    torch.manual_seed(0)
    tower = _build_text_tower(8, CLIPTextCfg(context_length=77, vocab_size=49408, width=16, heads=2, layers=3))
    with torch.no_grad():
        for p in tower.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return tower.eval()


def star_embedding(tower, ids):
    """What STAR's FrozenOpenCLIPEmbedder computes: all layers but the last, then ln_final."""
    x = tower.token_embedding(ids) + tower.positional_embedding
    for block in tower.transformer.resblocks[:-1]:
        x = block(x, attn_mask=tower.attn_mask)
    return tower.ln_final(x)


def test_converted_text_encoder_equals_openclip_penultimate_layer(openclip_tower, tmp_path):
    ids = open_clip.tokenize(PROMPTS[:3])
    with torch.no_grad():
        reference = star_embedding(openclip_tower, ids)
    state_dict = {"visual.proj": torch.zeros(2), "logit_scale": torch.ones(()), **openclip_tower.state_dict()}
    model = CLIPTextModel(text_config_from_openclip(state_dict, heads=2)).eval()
    assert model.config.num_hidden_layers == 2  # penultimate of 3
    load_text_encoder_weights(model, convert_openclip_text_encoder(state_dict))
    with torch.no_grad():
        torch.testing.assert_close(model(ids).last_hidden_state, reference, atol=1e-5, rtol=1e-5)
    torch.save(state_dict, tmp_path / "open_clip_pytorch_model.bin")
    loaded = load_openclip_text_encoder(str(tmp_path / "open_clip_pytorch_model.bin"), heads=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).last_hidden_state, reference, atol=1e-5, rtol=1e-5)
    # OpenCLIP's own training checkpoint (epoch_1.pt): DDP's "module." inside "state_dict" was "not an OpenCLIP
    # CLIP checkpoint" (black-box hunt)
    torch.save({"epoch": 1, "name": "run", "state_dict": {f"module.{k}": v for k, v in state_dict.items()}},
               tmp_path / "epoch_1.pt")
    loaded = load_openclip_text_encoder(str(tmp_path / "epoch_1.pt"), heads=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).last_hidden_state, reference, atol=1e-5, rtol=1e-5)


def test_not_an_openclip_checkpoint_is_rejected():
    with pytest.raises(InputError, match="not an OpenCLIP"):
        convert_openclip_text_encoder({"conv.weight": torch.zeros(1)})


def test_a_text_tower_that_cannot_serve_the_tokenizer_is_refused_when_converted(openclip_tower):
    """Converted, then failed at the first upscale (cut embeddings: "Sequence length must be less than
    max_position_embeddings", an IndexError), or a KeyError / size-mismatch traceback (black-box hunt)."""
    from star_vsr.conversion import openclip_text_encoder

    good = openclip_tower.state_dict()
    for damage, message in (({"positional_embedding": good["positional_embedding"][:10]}, "at 10 positions"),
                            ({"token_embedding.weight": good["token_embedding.weight"][:1000]}, "embeds 1000 tokens"),
                            ({"token_embedding.weight": torch.zeros(49408, 8)}, "do not fit the model: size mismatch")):
        with pytest.raises(InputError, match=message):
            openclip_text_encoder({**good, **damage}, heads=2)
    one_layer = {k: v for k, v in good.items()
                 if not k.startswith(("transformer.resblocks.1.", "transformer.resblocks.2."))}
    with pytest.raises(InputError, match="needs 2 or more text layers"):
        openclip_text_encoder(one_layer, heads=2)


def test_unknown_text_tensor_is_listed(openclip_tower):
    sd = {**openclip_tower.state_dict(), "transformer.resblocks.0.attn.extra.weight": torch.zeros(1)}
    with pytest.raises(InputError, match="attn.extra.weight"):
        convert_openclip_text_encoder(sd)
