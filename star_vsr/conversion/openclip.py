"""Convert an OpenCLIP text tower (e.g. ViT-H-14 ``open_clip_pytorch_model.bin``) to ``CLIPTextModel``.

STAR uses the penultimate layer's output followed by ``ln_final``; the converted model keeps
the first ``num_layers - 1`` transformer layers so its ``last_hidden_state`` is exactly that.
The vision tower, the last text layer, ``text_projection`` and ``logit_scale`` are not needed.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
from transformers import CLIPTextConfig, CLIPTextModel

from ..errors import InputError
from ..text import MAX_TOKENS, TOKENIZER_VOCAB, openclip_vit_h14_text_config
from .star_checkpoint import unwrap_state_dict

_LAYER = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_LAYER_PARAMS = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
#: Tensors of an OpenCLIP checkpoint that the penultimate-layer text encoder does not use.
_UNUSED = re.compile(r"^(visual\.|logit_scale$|logit_bias$|text_projection$|attn_mask$)")


def convert_openclip_text_encoder(state_dict: Mapping[str, torch.Tensor], layers_used: Optional[int] = None
                                  ) -> dict[str, torch.Tensor]:
    """Rename an OpenCLIP CLIP state dict into ``CLIPTextModel`` keys, keeping ``layers_used`` layers.

    Keys are relative to the text transformer (``embeddings.*``, ``encoder.layers.*``,
    ``final_layer_norm.*``); ``load_text_encoder_weights`` adds the prefix the installed
    transformers version uses (``text_model.`` in transformers 4).

    Args:
        state_dict: OpenCLIP weights (``torch.load("open_clip_pytorch_model.bin")``).
        layers_used: text layers to keep; default: all but the last (the penultimate output).

    Raises:
        InputError: if tensors are neither mapped nor known to be unused, or text weights are missing.
    """
    state_dict = unwrap_state_dict(state_dict)  # (OpenCLIP's own training checkpoints: "module." in "state_dict")
    num_layers = 1 + max((int(m.group(1)) for k in state_dict if (m := _LAYER.match(k))), default=-1)
    if num_layers == 0 or "token_embedding.weight" not in state_dict:
        raise InputError("this is not an OpenCLIP CLIP checkpoint: no 'token_embedding.weight' / "
                         "'transformer.resblocks.*' tensors found")
    layers_used = num_layers - 1 if layers_used is None else layers_used
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, tensor in state_dict.items():
        if _UNUSED.match(name):
            continue
        if name == "token_embedding.weight":
            out["embeddings.token_embedding.weight"] = tensor
        elif name == "positional_embedding":
            out["embeddings.position_embedding.weight"] = tensor
        elif name.startswith("ln_final."):
            out["final_layer_norm." + name.split(".", 1)[1]] = tensor
        elif m := _LAYER.match(name):
            layer, rest = int(m.group(1)), m.group(2)
            if layer >= layers_used:
                continue
            prefix = f"encoder.layers.{layer}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]  # weight / bias
                for proj, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{proj}.{kind}"] = part
            else:
                module, param = rest.rsplit(".", 1)
                if module not in _LAYER_PARAMS:
                    unknown.append(name)
                    continue
                out[f"{prefix}{_LAYER_PARAMS[module]}.{param}"] = tensor
        else:
            unknown.append(name)
    if unknown:
        raise InputError(f"unexpected tensors in the OpenCLIP checkpoint: {sorted(unknown)}")
    return out


def text_config_from_openclip(state_dict: Mapping[str, torch.Tensor], layers_used: Optional[int] = None,
                              heads: Optional[int] = None) -> CLIPTextConfig:
    """``CLIPTextConfig`` whose shapes match a converted OpenCLIP text tower.

    Widths come from the tensors; the head count cannot be read from shapes, so it defaults to
    width / 64 (OpenCLIP's convention: 16 heads for ViT-H-14's 1024-wide text tower).
    """
    converted = convert_openclip_text_encoder(state_dict, layers_used)
    if "encoder.layers.0.mlp.fc1.weight" not in converted or "embeddings.position_embedding.weight" not in converted:
        raise InputError("this OpenCLIP text tower is incomplete: star-vsr uses its penultimate layer, which needs "
                         "2 or more text layers and the position embedding")  # (a KeyError)
    vocab, width = converted["embeddings.token_embedding.weight"].shape
    positions = converted["embeddings.position_embedding.weight"].shape[0]
    if (vocab, positions) != (TOKENIZER_VOCAB, MAX_TOKENS):  # (converted, then failed at the first upscale)
        raise InputError(f"this OpenCLIP text tower embeds {vocab} tokens at {positions} positions; OpenCLIP's "
                         f"tokenizer, which star-vsr uses, needs {TOKENIZER_VOCAB} at {MAX_TOKENS} (is the file "
                         f"damaged, or of another model?)")
    hidden = converted["encoder.layers.0.mlp.fc1.weight"].shape[0]
    layers = 1 + max(int(k.split(".")[2]) for k in converted if k.startswith("encoder.layers."))
    return openclip_vit_h14_text_config(
        vocab_size=vocab, hidden_size=width, intermediate_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads or max(1, width // 64), max_position_embeddings=positions, projection_dim=width)


def load_text_encoder_weights(model: CLIPTextModel, converted: Mapping[str, torch.Tensor]) -> None:
    """Load ``convert_openclip_text_encoder`` output into ``model`` strictly (any transformers version)."""
    expected = [k for k in model.state_dict() if not k.endswith("position_ids")]
    prefix = "text_model." if expected and expected[0].startswith("text_model.") else ""
    try:
        result = model.load_state_dict({prefix + k: v for k, v in converted.items()}, strict=False)
    except RuntimeError as error:  # tensors of other sizes (a traceback)
        details = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        raise InputError(f"text encoder weights do not fit the model: {'; '.join(details[:2]) or error}") from None
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise InputError(f"text encoder weights do not fit the model: missing {missing}, "
                         f"unexpected {result.unexpected_keys}")


def load_openclip_text_encoder(path: str, heads: Optional[int] = None) -> CLIPTextModel:
    """Read an OpenCLIP checkpoint file and return the penultimate-layer ``CLIPTextModel`` (float32)."""
    return openclip_text_encoder(torch.load(path, map_location="cpu", weights_only=True), heads)


def openclip_text_encoder(state_dict: Mapping[str, torch.Tensor], heads: Optional[int] = None) -> CLIPTextModel:
    """The penultimate-layer ``CLIPTextModel`` (float32) of OpenCLIP weights already read."""
    model = CLIPTextModel(text_config_from_openclip(state_dict, heads=heads))
    load_text_encoder_weights(model, convert_openclip_text_encoder(state_dict))
    return model.eval()
