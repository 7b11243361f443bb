"""Convert STAR's released checkpoint (``light_deg.pt`` / ``heavy_deg.pt``) to star-vsr's models.

The released file is the state dict of STAR's ``ControlledV2VUNet``: the UNet's parameters at the
top level and the ControlNet's under ``VideoControlNet.``. ``convert_star_checkpoint`` renames
every tensor to exactly one parameter of ``StarVSRUNetModel`` or ``StarVSRControlNetModel``;
a missing parameter or a shape mismatch raises an error that lists the keys, and tensors with no
destination are left out with a warning (STAR's own loader skips them too). The only reshape is the
temporal transformers' ``proj_in``/``proj_out``, stored as kernel-size-1 ``Conv1d`` weights
(o, i, 1) in the release and as ``Linear`` weights (o, i) here.

Pure renaming and views, so it works on meta tensors: the mapping can be checked at full size
without loading 8 GB.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Optional

import torch

from ..errors import InputError, option
from ..user_warnings import warn_user

#: Prefix of the ControlNet's parameters inside the released checkpoint.
CONTROLNET_PREFIX = "VideoControlNet."

#: Structure of the released model (the defaults of StarVSRUNetModel); the mapping depends only on it.
RELEASED_STRUCTURE: dict[str, Any] = {
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_levels": (True, True, True, False),
}

_RESBLOCK = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
    "temopral_conv.conv1.0": "temporal_conv.stages.0.0",
    "temopral_conv.conv1.2": "temporal_conv.stages.0.2",
    "temopral_conv.conv2.0": "temporal_conv.stages.1.0",
    "temopral_conv.conv2.3": "temporal_conv.stages.1.3",
    "temopral_conv.conv3.0": "temporal_conv.stages.2.0",
    "temopral_conv.conv3.3": "temporal_conv.stages.2.3",
    "temopral_conv.conv4.0": "temporal_conv.stages.3.0",
    "temopral_conv.conv4.3": "temporal_conv.stages.3.3",
}

_TRANSFORMER_BLOCK = {
    "attn1.to_q": "attn1.to_q",
    "attn1.to_k": "attn1.to_k",
    "attn1.to_v": "attn1.to_v",
    "attn1.to_out.0": "attn1.to_out.0",
    "attn2.to_q": "attn2.to_q",
    "attn2.to_k": "attn2.to_k",
    "attn2.to_v": "attn2.to_v",
    "attn2.to_out.0": "attn2.to_out.0",
    "ff.net.0.proj": "ff.net.0.proj",
    "ff.net.2": "ff.net.2",
    "norm1": "norm1",
    "norm2": "norm2",
    "norm3": "norm3",
}


def _module_pairs(structure: Mapping[str, Any], controlnet: bool) -> Iterator[tuple[str, str, str]]:
    """Yield (released module prefix, star-vsr module prefix, kind) for every module with weights.

    ``kind`` selects the parameter renaming: "plain", "resblock", "spatial", "temporal".
    """
    levels = len(structure["block_out_channels"])
    layers = structure["layers_per_block"]
    attention = list(structure["attention_levels"])

    yield "time_embed.0", "time_embedding.mlp.linear_1", "plain"
    yield "time_embed.2", "time_embedding.mlp.linear_2", "plain"
    yield "input_blocks.0.0", "encoder.conv_in", "plain"
    yield "input_blocks.0.1", "encoder.temporal_in", "temporal"
    k = 1
    for level in range(levels):
        for j in range(layers):
            ours = f"encoder.down_blocks.{level}"
            yield f"input_blocks.{k}.0", f"{ours}.resnets.{j}", "resblock"
            if attention[level]:
                yield f"input_blocks.{k}.1", f"{ours}.attentions.{j}.spatial", "spatial"
                yield f"input_blocks.{k}.2", f"{ours}.attentions.{j}.temporal", "temporal"
            k += 1
        if level < levels - 1:
            yield f"input_blocks.{k}.op", f"encoder.down_blocks.{level}.downsampler.conv", "plain"
            k += 1
    yield "middle_block.0", "encoder.mid_block.resnet1", "resblock"
    yield "middle_block.1", "encoder.mid_block.attention.spatial", "spatial"
    yield "middle_block.2", "encoder.mid_block.attention.temporal", "temporal"
    yield "middle_block.3", "encoder.mid_block.resnet2", "resblock"

    if controlnet:
        yield "input_hint_block", "hint_conv", "plain"
        for i in range(k):
            yield f"zero_convs.{i}.0", f"zero_convs.{i}", "plain"
        yield "middle_block_out.0", "mid_zero_conv", "plain"
        return

    k = 0
    for level, has_attention in enumerate(reversed(attention)):
        for j in range(layers + 1):
            ours = f"up_blocks.{level}"
            yield f"output_blocks.{k}.0", f"{ours}.resnets.{j}", "resblock"
            if has_attention:
                yield f"output_blocks.{k}.1", f"{ours}.attentions.{j}.spatial", "spatial"
                yield f"output_blocks.{k}.2", f"{ours}.attentions.{j}.temporal", "temporal"
            if j == layers and level < levels - 1:
                yield f"output_blocks.{k}.{3 if has_attention else 1}.conv", f"{ours}.upsampler.conv", "plain"
            k += 1
    yield "out.0", "conv_norm_out", "plain"
    yield "out.2", "conv_out", "plain"


def _param_renames(kind: str) -> dict[str, str]:
    """Released sub-module name -> star-vsr sub-module name inside one module of ``kind``."""
    if kind == "plain":
        return {"": ""}
    if kind == "resblock":
        return dict(_RESBLOCK)
    renames = {"norm": "norm", "proj_in": "proj_in", "proj_out": "proj_out"}
    for ref, ours in _TRANSFORMER_BLOCK.items():
        renames[f"transformer_blocks.0.{ref}"] = f"transformer_blocks.0.{ours}"
    if kind == "spatial":
        renames["transformer_blocks.0.local1.conv1"] = "transformer_blocks.0.liem1.conv"
    else:
        renames["transformer_blocks.0.local1.conv1"] = "transformer_blocks.0.liem1.proj"
        renames["transformer_blocks.0.local2.conv1"] = "transformer_blocks.0.liem2.proj"
    return renames


def _convert_tensor(kind: str, ref_module: str, tensor: torch.Tensor) -> torch.Tensor:
    """Kernel-size-1 Conv1d weights of temporal proj_in/proj_out become Linear weights."""
    if kind == "temporal" and ref_module in ("proj_in", "proj_out") and tensor.ndim == 3:
        return tensor.squeeze(-1)
    return tensor


#: What ``torch.optim.swa_utils.AveragedModel`` (an EMA or SWA copy) saves beside its ``module.`` weights.
AVERAGED_MODEL_BUFFERS = ("n_averaged",)


#: Keys under which training code saves a model's weights beside its other state, in the order looked for:
#: ``"state_dict"`` (Lightning, OpenCLIP's own training checkpoints), ``"module"`` (DeepSpeed's
#: ``mp_rank_00_model_states.pt``), ``"model"`` (a copy re-saved as ``{"model": model.state_dict(), ...}``, which
#: was refused as "holds no tensors": black-box hunt).
WRAPPER_KEYS = ("state_dict", "module", "model")


def wrapper_key(checkpoint: Any) -> Optional[str]:
    """The first of `WRAPPER_KEYS` under which the dict ``checkpoint`` holds a mapping (the weights); None for a
    bare state dict, whose values are tensors."""
    if isinstance(checkpoint, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return key
    return None


def unwrap_state_dict(state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """The weights of a checkpoint file as training code wraps them: under one of `WRAPPER_KEYS`, with the
    ``module.`` prefix of DataParallel / DistributedDataParallel, and an ``AveragedModel``'s (its ``n_averaged``
    count left out: it was "745 tensors have no destination"), also nested (an ``AveragedModel`` of a
    DistributedDataParallel model: ``module.module.``)."""
    key = wrapper_key(state_dict)
    if key is not None:
        state_dict = state_dict[key]
    weights = [k for k in state_dict if k not in AVERAGED_MODEL_BUFFERS]
    while weights and all(k.startswith("module.") for k in weights):
        state_dict = {k[len("module."):]: state_dict[k] for k in weights}
        weights = [k for k in state_dict if k not in AVERAGED_MODEL_BUFFERS]
    return state_dict


def star_key_mapping(structure: Optional[Mapping[str, Any]] = None) -> dict[str, tuple[str, str, str, str]]:
    """Every released parameter name -> (component, star-vsr name, kind, released sub-module).

    ``component`` is "unet" or "controlnet". ``structure`` holds ``block_out_channels``,
    ``layers_per_block`` and ``attention_levels`` (default: the released model).
    """
    structure = dict(RELEASED_STRUCTURE if structure is None else structure)
    mapping: dict[str, tuple[str, str, str, str]] = {}
    for component, prefix in (("unet", ""), ("controlnet", CONTROLNET_PREFIX)):
        for ref_prefix, our_prefix, kind in _module_pairs(structure, controlnet=component == "controlnet"):
            for ref_sub, our_sub in _param_renames(kind).items():
                for param in ("weight", "bias"):
                    ref_name = ".".join(p for p in (prefix + ref_prefix, ref_sub, param) if p)
                    our_name = ".".join(p for p in (our_prefix, our_sub, param) if p)
                    mapping[ref_name] = (component, our_name, kind, ref_sub)
    return mapping


def released_unet_config(**overrides: Any) -> dict[str, Any]:
    """``StarVSRUNetModel`` config of the released checkpoints (released LIEM placement)."""
    config = {**RELEASED_STRUCTURE, "liem_placement": "before_norm"}
    config.update(overrides)
    return config


def _expected_shapes(unet_config: Mapping[str, Any]) -> dict[str, dict[str, torch.Size]]:
    """Parameter names and shapes of the destination models, built on the meta device (no memory)."""
    from ..models import StarVSRControlNetModel, StarVSRUNetModel

    with torch.device("meta"):
        unet = StarVSRUNetModel.from_config(dict(unet_config))
        controlnet = StarVSRControlNetModel.from_unet(unet, load_weights_from_unet=False)
    return {
        "unet": {k: v.shape for k, v in unet.state_dict().items()},
        "controlnet": {k: v.shape for k, v in controlnet.state_dict().items()},
    }


def convert_star_checkpoint(state_dict: Mapping[str, torch.Tensor],
                            unet_config: Optional[Mapping[str, Any]] = None) -> dict[str, dict[str, torch.Tensor]]:
    """Split and rename a released STAR state dict into ``{"unet": ..., "controlnet": ...}``.

    Args:
        state_dict: the released checkpoint (``torch.load(path)``), optionally wrapped in
            ``{"state_dict": ...}``. Tensors may live on the meta device.
        unet_config: config of the ``StarVSRUNetModel`` the weights are for (its structure decides the
            mapping); defaults to ``released_unet_config()``.

    Returns:
        State dicts that load with ``strict=True`` into ``StarVSRUNetModel.from_config(unet_config)``
        and ``StarVSRControlNetModel.from_unet(unet)``.

    Raises:
        InputError: when the checkpoint lacks a model parameter or has one of another shape, listing
            those and any tensors with no destination.

    Warns:
        UserWarning: naming tensors with no destination in a checkpoint that has every parameter
            (leftovers STAR's own loader ignores with ``strict=False``); they are left out.
    """
    unet_config = released_unet_config() if unet_config is None else unet_config
    state_dict = unwrap_state_dict(state_dict)
    mapping = star_key_mapping(unet_config)
    expected = _expected_shapes(unet_config)
    out: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "controlnet": {}}
    unmapped, mismatched = [], []
    for name, tensor in state_dict.items():
        if name not in mapping or mapping[name][1] not in expected[mapping[name][0]]:
            unmapped.append(name)
            continue
        component, our_name, kind, ref_sub = mapping[name]
        converted = _convert_tensor(kind, ref_sub, tensor)
        if converted.shape != expected[component][our_name]:
            mismatched.append(f"{name} {tuple(tensor.shape)} -> {component}.{our_name} "
                              f"{tuple(expected[component][our_name])}")
        out[component][our_name] = converted
    missing = [f"{component}.{k}" for component in out for k in expected[component] if k not in out[component]]
    unused = (f"{len(unmapped)} checkpoint tensors have no destination: {_first(sorted(unmapped))}"
              if unmapped else "")
    problems = [unused + " (is this a STAR I2VGen-XL checkpoint with this structure?)"] if unmapped else []
    if missing:
        problems.append(f"{len(missing)} model parameters are not in the checkpoint: {_first(sorted(missing))}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_first(mismatched)}")
    if missing or mismatched:  # (said what, not what to do: black-box hunt)
        config = option("unet_config", "--unet-config FILE")
        raise InputError("cannot convert the STAR checkpoint:\n" + "\n".join(problems) + "\nIs it STAR's "
                         "light_deg.pt or heavy_deg.pt, downloaded whole (compare its size with the release's)? "
                         f"Weights of a UNet of another structure convert with that UNet's config ({config}).")
    if unmapped:  # every parameter found: leftovers STAR's own loader skips too (load_state_dict(strict=False))
        warn_user(f"{unused}; they are not part of the model and were left out, as STAR's loader does")
    return out


#: Names listed per kind of conversion problem (a checkpoint of another model has thousands).
LISTED_NAMES = 5


def _first(names: list[str]) -> str:
    """The first ``LISTED_NAMES`` names, and how many more there are."""
    more = len(names) - LISTED_NAMES
    return ", ".join(names[:LISTED_NAMES]) + (f", ... ({more} more)" if more > 0 else "")
