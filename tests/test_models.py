"""StarVSRUNetModel, StarVSRControlNetModel and LIEM on tiny random configs."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from star_vsr.errors import InputError, MissingWeightsError
from star_vsr.models import (
    SpatialLIEM,
    StarVSRControlNetModel,
    StarVSRUNetModel,
    TemporalLIEM,
    set_liem_placement,
    valid_latent_size,
)

TINY = dict(block_out_channels=(16, 32), layers_per_block=1, attention_levels=(True, False), attention_head_dim=8,
            temporal_in_heads=2, cross_attention_dim=24, norm_num_groups=4, dropout=0.0)


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised ones included) with seeded noise."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def inputs(b: int = 1, n: int = 3, h: int = 6, w: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n, 4, h, w, generator=g), torch.tensor([500] * b),
            torch.randn(b, 5, 24, generator=g), torch.randn(b, n, 4, h, w, generator=g))


def predict(unet, controlnet, x, t, ctx, hint, scale=1.0):
    res = controlnet(x, t, ctx, hint, conditioning_scale=scale)
    return unet(x, t, ctx, down_block_additional_residuals=res.down_block_res_samples,
                mid_block_additional_residual=res.mid_block_res_sample).sample


@pytest.fixture
def pair():
    torch.manual_seed(0)
    unet = randomize(StarVSRUNetModel(**TINY)).eval()
    return unet, StarVSRControlNetModel.from_unet(unet).eval()


def test_output_shape_and_skip_count(pair):
    unet, controlnet = pair
    x, t, ctx, hint = inputs(b=2, n=4)
    res = controlnet(x, t, ctx, hint)
    # 1 after the input transformer + 1 per ResBlock (2 levels x 1) + 1 downsample
    assert len(res.down_block_res_samples) == 4
    out = unet(x, t, ctx).sample
    assert out.shape == x.shape


def test_fresh_controlnet_leaves_unet_prediction_unchanged(pair):
    unet, controlnet = pair
    x, t, ctx, hint = inputs()
    with torch.no_grad():
        base = unet(x, t, ctx).sample
        assert torch.equal(predict(unet, controlnet, x, t, ctx, hint), base)
        randomize(controlnet, seed=3)
        assert not torch.allclose(predict(unet, controlnet, x, t, ctx, hint), base)
        # conditioning scale 0 switches a trained ControlNet off
        torch.testing.assert_close(predict(unet, controlnet, x, t, ctx, hint, scale=0.0), base)


def test_from_unet_copies_encoder_weights(pair):
    unet, controlnet = pair
    for k, v in unet.encoder.state_dict().items():
        assert torch.equal(controlnet.encoder.state_dict()[k], v), k
    assert controlnet.config.liem_placement == unet.config.liem_placement


def test_deterministic_and_batch_independent(pair):
    unet, controlnet = pair
    x, t, ctx, hint = inputs(b=2)
    with torch.no_grad():
        a = predict(unet, controlnet, x, t, ctx, hint)
        b = predict(unet, controlnet, x, t, ctx, hint)
        single = predict(unet, controlnet, x[1:], t[1:], ctx[1:], hint[1:])
    assert torch.equal(a, b)
    torch.testing.assert_close(a[1:], single, atol=1e-5, rtol=1e-5)


def test_attention_in_batch_slices_gives_the_same_prediction(pair, monkeypatch):
    """A real window has more attention sequences than a CUDA kernel call takes (one per latent pixel in the
    temporal transformers); slicing the batch must not change the result."""
    from star_vsr.models import attention

    unet, controlnet = pair
    x, t, ctx, hint = inputs(b=2)
    calls = []
    original = attention.Attention._attend
    monkeypatch.setattr(attention.Attention, "_attend", lambda self, q, k, v: calls.append(q.shape[0]) or
                        original(self, q, k, v))
    with torch.no_grad():
        whole = predict(unet, controlnet, x, t, ctx, hint)
        assert max(calls) == 2 * 6 * 8  # the temporal transformers' sequences: batch x latent pixels
        unsliced, calls[:] = Counter(calls), []
        monkeypatch.setattr(attention, "MAX_ATTENTION_BATCH", 7)
        sliced = predict(unet, controlnet, x, t, ctx, hint)
    expected = Counter()  # each batch of b sequences as b // 7 calls of 7 and one of the rest
    for batch, count in unsliced.items():
        expected[7] += batch // 7 * count
        expected[batch % 7] += count if batch % 7 else 0
    assert Counter(calls) == +expected
    torch.testing.assert_close(sliced, whole, atol=1e-6, rtol=1e-6)


def test_save_load_round_trip(pair, tmp_path):
    unet, controlnet = pair
    unet.save_pretrained(tmp_path / "unet")
    controlnet.save_pretrained(tmp_path / "controlnet")
    unet2 = StarVSRUNetModel.from_pretrained(tmp_path / "unet").eval()
    controlnet2 = StarVSRControlNetModel.from_pretrained(tmp_path / "controlnet").eval()
    for before, after in ((unet, unet2), (controlnet, controlnet2)):  # every weight bit for bit
        assert before.state_dict().keys() == after.state_dict().keys()
        assert all(torch.equal(v, after.state_dict()[k]) for k, v in before.state_dict().items())
    x, t, ctx, hint = inputs()
    with torch.no_grad():  # not bitwise: on some CPUs (AMD EPYC without AVX-512) the kernels sum in another order
        # for the loaded tensors' memory alignment (cloning them gives the original's bits), ~1e-6 apart
        torch.testing.assert_close(predict(unet2, controlnet2, x, t, ctx, hint),
                                   predict(unet, controlnet, x, t, ctx, hint), rtol=0, atol=1e-5)
    assert unet2.config.block_out_channels == list(TINY["block_out_channels"]) or \
        tuple(unet2.config.block_out_channels) == TINY["block_out_channels"]


def test_a_config_that_does_not_fit_its_weights_or_a_missing_folder_is_refused(pair, tmp_path):
    # an edited config loaded with the new blocks randomly initialised (only a log line): garbage out
    unet, controlnet = pair
    for model, kind in ((unet, StarVSRUNetModel), (controlnet, StarVSRControlNetModel)):
        folder = tmp_path / kind.__name__
        model.save_pretrained(folder)
        config = json.loads((folder / "config.json").read_text())
        config["attention_levels"] = [True, True]  # transformers on the second level too
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(MissingWeightsError, match=r"config.json does not fit the weights \(\d+ parameters of "
                                                      r"the model are not in the weights \(e.g. "):
            kind.from_pretrained(folder)
        # a name that is not a folder was looked up on the Hugging Face Hub (retries, then an OSError)
        with pytest.raises(MissingWeightsError, match=r"is not a folder: .* \(star-vsr downloads nothing\)"):
            kind.from_pretrained("someone/star-unet")


def test_invalid_latent_size_is_a_clear_error(pair):
    unet, _ = pair
    x = torch.randn(1, 2, 4, 7, 8)  # odd height cannot survive Downsample/Upsample
    with pytest.raises(ValueError, match="pad it to 8x8"):
        unet(x, 10, torch.randn(1, 5, 24))


@pytest.mark.parametrize("h,w,levels,expected", [
    (90, 160, 3, (90, 160)),   # 720x1280 frames: the released training size
    (60, 80, 3, (66, 80)),
    (23, 31, 1, (24, 32)),
    (6, 8, 1, (6, 8)),
])
def test_valid_latent_size(h, w, levels, expected):
    assert valid_latent_size(h, w, levels) == expected


def test_bad_sizes_of_the_helpers_are_input_errors():
    with pytest.raises(InputError, match="num_downsamples must be a whole number >= 0, got -1"):
        valid_latent_size(5, 5, -1)  # was (5, 5.0)
    with pytest.raises(InputError, match="SpatialLIEM: 12 tokens per frame are not a 4x4 grid"):
        SpatialLIEM()(torch.rand(2, 12, 8), 4, 4)  # was reshape's "shape '[2, 8, 4, 4]' is invalid"


def test_gradient_checkpointing_gives_same_gradients(pair):
    unet, controlnet = pair
    x, t, ctx, hint = inputs()

    def grads():
        controlnet.zero_grad()
        predict(unet, controlnet, x, t, ctx, hint).square().mean().backward()
        return [p.grad.clone() for p in controlnet.parameters()]

    plain = grads()
    controlnet.enable_gradient_checkpointing()
    unet.enable_gradient_checkpointing()
    for a, b in zip(plain, grads()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def _liem_sensitivity(placement: str) -> float:
    """How much the prediction moves when every LIEM gate's weights change."""
    torch.manual_seed(0)
    unet = randomize(StarVSRUNetModel(**{**TINY, "liem_placement": placement})).eval()
    x, t, ctx, _ = inputs()
    with torch.no_grad():
        before = unet(x, t, ctx).sample
        for m in unet.modules():
            if isinstance(m, (SpatialLIEM, TemporalLIEM)):
                for p in m.parameters():
                    p.mul_(-3.0)
        after = unet(x, t, ctx).sample
    return (after - before).abs().max().item() / before.abs().max().item()


def test_released_liem_placement_is_cancelled_by_layernorm_and_after_norm_acts():
    # Released placement: a positive per-token gate in front of a LayerNorm divides out, so
    # changing the gate barely moves the output (only through the norm's epsilon).
    assert _liem_sensitivity("before_norm") < 1e-3
    assert _liem_sensitivity("after_norm") > 1e-2


def test_set_liem_placement_moves_every_gate_and_is_saved(tmp_path):
    """Fine-tuning a converted (before_norm) model with acting gates: the same weights, the gates after the norm,
    as if built so, and the config records it for from_pretrained."""
    torch.manual_seed(0)
    released = randomize(StarVSRUNetModel(**{**TINY, "liem_placement": "before_norm"})).eval()
    built_after = StarVSRUNetModel(**{**TINY, "liem_placement": "after_norm"}).eval()
    built_after.load_state_dict(released.state_dict())
    x, t, ctx, _ = inputs()
    with torch.no_grad():
        before = released(x, t, ctx).sample
        set_liem_placement(released, "after_norm")
        assert torch.equal(released(x, t, ctx).sample, built_after(x, t, ctx).sample)
        assert not torch.equal(released(x, t, ctx).sample, before)
    released.save_pretrained(tmp_path / "unet")
    assert StarVSRUNetModel.from_pretrained(tmp_path / "unet").config.liem_placement == "after_norm"
    with pytest.raises(ValueError, match="liem_placement"):
        set_liem_placement(released, "sideways")


def test_set_liem_placement_reaches_the_config_through_a_wrapper():
    """A DDP-style wrapper (``.module``): the gates moved but the config, which save_pretrained writes, did not."""
    torch.manual_seed(0)
    unet = StarVSRUNetModel(**{**TINY, "liem_placement": "before_norm"})

    class Wrapped(torch.nn.Module):
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    set_liem_placement(Wrapped(unet), "after_norm")
    assert unet.config.liem_placement == "after_norm"
    with pytest.raises(ValueError, match="takes a StarVSR UNet or ControlNet"):
        set_liem_placement(torch.nn.Linear(2, 2), "after_norm")


def test_unknown_liem_placement_rejected():
    with pytest.raises(ValueError, match="liem_placement"):
        StarVSRUNetModel(**{**TINY, "liem_placement": "sideways"})


def test_a_model_folder_of_bin_weights_or_of_shards_without_their_index(tmp_path, caplog):
    """A folder saved with safe_serialization=False loaded after diffusers logged "An error occurred while trying
    to fetch ...: no file named diffusion_pytorch_model.safetensors"; shards without their index were "no file
    named diffusion_pytorch_model.bin found" (black-box hunt)."""
    import logging

    from star_vsr.testing import tiny_star_components

    unet = tiny_star_components(seed=0)["unet"]
    unet.save_pretrained(tmp_path / "bin", safe_serialization=False)
    with caplog.at_level(logging.INFO, logger="diffusers"):
        loaded = StarVSRUNetModel.from_pretrained(tmp_path / "bin")
    assert "error" not in caplog.text.lower()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), unet.state_dict().values()))
    from star_vsr import StarVSRPipeline
    from star_vsr.testing import tiny_star_pipeline

    tiny_star_pipeline(seed=0).save_pretrained(tmp_path / "pipeline", safe_serialization=False)  # (through the
    caplog.clear()  # pipeline's loader, which passes use_safetensors=None, and for the VAE, diffusers' own class:
    with caplog.at_level(logging.INFO, logger="diffusers"):  # the error was logged for each; review)
        StarVSRPipeline.from_pretrained(tmp_path / "pipeline")
    assert "error" not in caplog.text.lower()
    unet.save_pretrained(tmp_path / "variant_shards", variant="fp16", max_shard_size="20KB")  # their index is
    StarVSRUNetModel.from_pretrained(tmp_path / "variant_shards", variant="fp16")  # *.index.fp16.json (review)
    unet.save_pretrained(tmp_path / "shards", max_shard_size="20KB")
    for index in (tmp_path / "shards").glob("*.index.json"):
        index.unlink()
    with pytest.raises(MissingWeightsError, match=r"shards holds weight shards \(diffusion_pytorch_model-00001-of-"
                                                  r"\d+.safetensors, ...\) but not their index"):
        StarVSRUNetModel.from_pretrained(tmp_path / "shards")
