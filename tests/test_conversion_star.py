"""Conversion of STAR's released checkpoint: full-size coverage and reference equivalence.

Fixtures (see tests/fixtures/README.md for how they were made from the reference code):
- star_released_param_shapes.json: every tensor name and shape of the released model.
- star_tiny_reference_*: a tiny random model of STAR's own code, an input and its output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from star_vsr.conversion.star_checkpoint import convert_star_checkpoint, released_unet_config
from star_vsr.errors import InputError
from star_vsr.models import StarVSRControlNetModel, StarVSRUNetModel

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def released_meta_state_dict() -> dict[str, torch.Tensor]:
    spec = json.loads((FIXTURES / "star_released_param_shapes.json").read_text())
    return {k: torch.empty(shape, device="meta") for k, shape in spec["params"].items()}


def test_every_released_tensor_maps_to_one_parameter_at_full_size(released_meta_state_dict):
    converted = convert_star_checkpoint(released_meta_state_dict)
    with torch.device("meta"):
        unet = StarVSRUNetModel.from_config(released_unet_config())
        controlnet = StarVSRControlNetModel.from_unet(unet, load_weights_from_unet=False)
    for name, model in (("unet", unet), ("controlnet", controlnet)):
        expected = {k: v.shape for k, v in model.state_dict().items()}
        got = {k: v.shape for k, v in converted[name].items()}
        assert got == expected
    n_in = sum(math.prod(t.shape) for t in released_meta_state_dict.values())
    n_out = sum(math.prod(t.shape) for part in converted.values() for t in part.values())
    assert n_in == n_out == 2_041_121_910
    assert len(released_meta_state_dict) == len(converted["unet"]) + len(converted["controlnet"])
    # the load itself works (strict) on meta models
    unet.load_state_dict(converted["unet"], strict=True, assign=True)
    controlnet.load_state_dict(converted["controlnet"], strict=True, assign=True)


def test_unmapped_and_missing_keys_are_listed(released_meta_state_dict):
    sd = dict(released_meta_state_dict)
    sd["VideoControlNet.y_embedder.y_proj.fc1.weight"] = torch.empty(4, 4, device="meta")
    del sd["out.2.weight"]
    with pytest.raises(InputError) as info:
        convert_star_checkpoint(sd)
    message = str(info.value)
    assert "VideoControlNet.y_embedder.y_proj.fc1.weight" in message
    assert "unet.conv_out.weight" in message


def test_leftover_tensors_are_left_out_with_a_warning(released_meta_state_dict):
    """STAR loads its checkpoint with strict=False, so a released file may hold tensors of modules its code no
    longer builds (VEnhancer's y_embedder); with every parameter present they are skipped, not fatal."""
    sd = {**released_meta_state_dict, "VideoControlNet.y_embedder.y_proj.fc1.weight": torch.empty(4, 4, device="meta")}
    with pytest.warns(UserWarning, match=r"1 checkpoint tensors have no destination: VideoControlNet\.y_embedder"):
        converted = convert_star_checkpoint(sd)
    assert len(converted["unet"]) + len(converted["controlnet"]) == len(released_meta_state_dict)


def test_state_dict_wrapper_and_module_prefix_are_accepted(released_meta_state_dict):
    wrapped = {"state_dict": {f"module.{k}": v for k, v in released_meta_state_dict.items()}}
    converted = convert_star_checkpoint(wrapped)
    assert "conv_out.weight" in converted["unet"]
    # torch.optim.swa_utils.AveragedModel's (an EMA copy): "745 checkpoint tensors have no destination" (black-box
    # hunt); its n_averaged count is no weight
    averaged = {**{f"module.{k}": v for k, v in released_meta_state_dict.items()}, "n_averaged": torch.tensor(5)}
    assert convert_star_checkpoint(averaged)["unet"].keys() == converted["unet"].keys()
    # an AveragedModel of a DistributedDataParallel model: module.module. (was every tensor "has no destination")
    nested = {**{f"module.module.{k}": v for k, v in released_meta_state_dict.items()}, "n_averaged": torch.tensor(5)}
    assert convert_star_checkpoint({"state_dict": nested})["unet"].keys() == converted["unet"].keys()
    # DeepSpeed's {"module": ...} and a re-saved {"model": ...}, beside other state: were "holds no tensors"
    # (black-box hunt)
    for key in ("module", "model"):
        other = {key: released_meta_state_dict, "optimizer": {}, "epoch": 3}
        assert convert_star_checkpoint(other)["unet"].keys() == converted["unet"].keys()


def test_a_checkpoint_missing_parameters_is_refused_with_what_to_do(released_meta_state_dict):
    """Missing parameters or other shapes were listed with nothing said of what to do (black-box hunt)."""
    sd = dict(released_meta_state_dict)
    del sd["out.2.weight"]
    with pytest.raises(InputError, match=r"(?s)1 model parameters are not in the checkpoint: unet\.conv_out\.weight\n"
                                         r"Is it STAR's light_deg\.pt or heavy_deg\.pt, downloaded whole "
                                         r".*\(unet_config\)"):
        convert_star_checkpoint(sd)


def test_converted_tiny_model_reproduces_reference_output():
    meta = json.loads((FIXTURES / "star_tiny_reference.json").read_text())
    weights = {k: v.float() for k, v in load_file(FIXTURES / "star_tiny_reference_weights.safetensors").items()}
    io = load_file(FIXTURES / "star_tiny_reference_io.safetensors")
    config = meta["star_vsr_unet_config"]
    assert config["liem_placement"] == "before_norm"
    converted = convert_star_checkpoint(weights, config)
    unet = StarVSRUNetModel.from_config(config).eval()
    unet.load_state_dict(converted["unet"], strict=True)
    controlnet = StarVSRControlNetModel.from_unet(unet, load_weights_from_unet=False).eval()
    controlnet.load_state_dict(converted["controlnet"], strict=True)

    # the reference lays clips out as (b, c, f, h, w); star-vsr as (b, n, c, h, w)
    x, hint = io["x"].permute(0, 2, 1, 3, 4), io["hint"].permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        res = controlnet(x, io["t"], io["y"], hint)
        out = unet(x, io["t"], io["y"], down_block_additional_residuals=res.down_block_res_samples,
                   mid_block_additional_residual=res.mid_block_res_sample).sample
    reference = io["output"].permute(0, 2, 1, 3, 4)
    assert (out - reference).abs().max().item() <= 1e-4
    assert reference.abs().max().item() > 0.5  # the reference output is not trivially small
