"""StarVSRPipeline on tiny random components (star_vsr.testing)."""

from __future__ import annotations

import copy
import json
import logging
import re

import numpy as np
import pytest
import torch

from star_vsr import StarVSRPipeline
from star_vsr.color_fix import adain_color_fix, wavelet_color_fix
from star_vsr.errors import DeviceError, InputError, MissingWeightsError
from star_vsr.testing import safetensors_modes, tiny_star_pipeline
from star_vsr.tiling import blend_weights, window_starts

STEPS = 2


@pytest.fixture(scope="module")
def pipe() -> StarVSRPipeline:
    return tiny_star_pipeline(seed=0)


def video(n: int = 4, h: int = 8, w: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, h, w, generator=g)
    return (base + 0.05 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)  # a slowly varying clip


def run(pipe, clip, seed=0, **kwargs):
    kwargs.setdefault("num_inference_steps", STEPS)
    return pipe(clip, generator=torch.Generator().manual_seed(seed), **kwargs).frames


def test_output_shape_is_frames_times_upscale(pipe):
    out = run(pipe, video(n=3, h=8, w=12), upscale=4)
    assert out.shape == (1, 3, 3, 32, 48)
    assert 0.0 <= out.min() and out.max() <= 1.0
    out = run(pipe, video(n=2, h=7, w=9), upscale=2)  # odd sizes: canvas padded, output cropped
    assert out.shape == (1, 2, 3, 14, 18)


def test_deterministic_with_generator(pipe):
    clip = video()
    a, b = run(pipe, clip, seed=1), run(pipe, clip, seed=1)
    assert torch.equal(a, b)
    assert not torch.equal(a, run(pipe, clip, seed=2))
    # diffusers' list form, one generator per video
    assert torch.equal(a, pipe(clip, generator=[torch.Generator().manual_seed(1)], num_inference_steps=STEPS).frames)
    for generator in (0, [torch.Generator(), torch.Generator()]):
        with pytest.raises(InputError, match="generator must be a torch.Generator"):
            pipe(clip, generator=generator, num_inference_steps=STEPS)


def test_without_a_generator_the_global_seed_decides_and_is_not_reseeded(pipe):
    clip = video(n=2)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        frames = pipe(clip, num_inference_steps=STEPS).frames
        runs.append((frames, torch.rand(3)))  # the caller's own draws after the call
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_a_tensor_in_another_memory_layout_gives_the_same_frames(pipe, tmp_path):
    """A (n, h, w, 3) uint8 array and the same frames as a permuted float tensor differed by 1.6e-5 (other
    convolution kernels for the non-contiguous input; black-box hunt), and a file's frames from the array's by
    1e-5 (review). The student's output did not."""
    u8 = (video(n=3) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (n, h, w, 3)
    permuted = u8.permute(0, 3, 1, 2).float() / 255  # (n, 3, h, w), strides of (n, h, w, 3)
    assert not permuted.is_contiguous()
    expected = run(pipe, u8.numpy(), upscale=2)
    assert torch.equal(run(pipe, permuted, upscale=2), expected)
    assert torch.equal(run(pipe, permuted.contiguous(), upscale=2), expected)
    from PIL import Image

    for i, frame in enumerate(u8.numpy()):  # the same frames as a folder of lossless images
        Image.fromarray(frame).save(tmp_path / f"{i}.png")
    assert torch.equal(run(pipe, str(tmp_path), upscale=2), expected)


def test_output_types(pipe):
    clip = video(n=2)
    np_frames = run(pipe, clip, output_type="np")
    assert np_frames.shape == (1, 2, 32, 48, 3)
    pil = run(pipe, clip, output_type="pil")
    assert len(pil) == 1 and len(pil[0]) == 2 and pil[0][0].size == (48, 32)
    latents = run(pipe, clip, output_type="latent")
    assert latents.shape == (1, 2, 4, 16, 24)  # 2x VAE of the tiny pipeline
    tuple_out = pipe(clip, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), return_dict=False)
    assert isinstance(tuple_out, tuple) and tuple_out[0].shape == (1, 2, 3, 32, 48)


def test_save_load_round_trip(pipe, tmp_path, umask_022):
    pipe.save_pretrained(tmp_path / "star")
    assert safetensors_modes(tmp_path / "star") == {umask_022}  # every component's weights, not 0600
    loaded = StarVSRPipeline.from_pretrained(tmp_path / "star")
    loaded.set_progress_bar_config(disable=True)
    clip = video(n=3)
    assert torch.equal(run(pipe, clip), run(loaded, clip))


def test_a_home_folder_path_is_expanded(pipe, tmp_path, monkeypatch):
    """from_pretrained("~/star") said "~/star does not exist"; save_pretrained wrote a folder named "~"."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    pipe.save_pretrained("~/star")
    assert (tmp_path / "home" / "star" / "model_index.json").is_file() and not (tmp_path / "~").exists()
    assert isinstance(StarVSRPipeline.from_pretrained("~/star"), StarVSRPipeline)


def test_fresh_controlnet_or_zero_scale_leaves_unet_prediction_unchanged():
    fresh = tiny_star_pipeline(seed=0, trained_controlnet=False)
    g = torch.Generator().manual_seed(0)
    x, hint = torch.randn(3, 4, 6, 8, generator=g), torch.randn(3, 4, 6, 8, generator=g)
    embeds = torch.randn(2, 77, 16, generator=g)
    t = torch.tensor(500)

    def unet_only(p):
        v = p.unet(x[None].expand(2, -1, -1, -1, -1), t, embeds).sample
        v_uncond, v_text = v.chunk(2)
        return (v_uncond + 7.5 * (v_text - v_uncond))[0]

    torch.testing.assert_close(fresh.predict_v(x, hint, t, embeds, 7.5, 0.0, 1.0), unet_only(fresh))
    trained = tiny_star_pipeline(seed=0)
    assert not torch.allclose(trained.predict_v(x, hint, t, embeds, 7.5, 0.0, 1.0), unet_only(trained))
    torch.testing.assert_close(trained.predict_v(x, hint, t, embeds, 7.5, 0.0, 0.0), unet_only(trained))


def test_one_chunk_covering_the_clip_equals_unchunked(pipe):
    clip = video(n=5)
    whole = run(pipe, clip, chunk_frames=5, chunk_overlap=0)
    assert torch.equal(whole, run(pipe, clip, chunk_frames=64, chunk_overlap=8))


def test_a_tile_overlap_under_the_vae_factor_still_overlaps(pipe):
    """tile_overlap is in output pixels and was floored to latent pixels: under the VAE's factor (8 for STAR, 2 for
    the tiny model) it was no overlap at all, with hard seams between the tiles (black-box test)."""
    from star_vsr.frames import as_frame_source

    source = as_frame_source(torch.rand(2, 3, 8, 8))
    rows = pipe.plan_geometry(source, 4, 16, 1)["rows"]
    assert [(a, b) for a, b, _ in rows] == [(a, b) for a, b, _ in pipe.plan_geometry(source, 4, 16, 2)["rows"]]
    assert rows[1][0] < rows[0][1]  # the second tile starts inside the first
    # overlaps of a whole latent pixel or more keep the layout earlier versions gave them (rounded down), which
    # their saved runs resume with
    source = as_frame_source(torch.rand(2, 3, 16, 16))
    assert [(a, b) for a, b, _ in pipe.plan_geometry(source, 4, 32, 3)["cols"]] == \
        [(a, b) for a, b, _ in pipe.plan_geometry(source, 4, 32, 2)["cols"]]


def test_a_chunk_or_tile_size_alone_gets_an_overlap_that_fits(pipe):
    """chunk_frames=4 or tile_size=16 alone worked only with an overlap given too (the defaults, 8 frames and 128
    pixels, did not fit); an overlap not given is now 8 / 128 or half the size when that is less."""
    clip = video(n=6)
    small = run(pipe, clip, num_inference_steps=1, chunk_frames=4, tile_size=16)
    assert torch.equal(small, run(pipe, clip, num_inference_steps=1, chunk_frames=4, chunk_overlap=2, tile_size=16,
                                  tile_overlap=8))
    with pytest.raises(InputError, match=r"got chunk_frames 4, chunk_overlap 4"):  # given, it must still fit
        run(pipe, clip, chunk_frames=4, chunk_overlap=4)
    with pytest.raises(InputError, match=r"got tile_size 16, tile_overlap 16"):
        run(pipe, clip, tile_size=16, tile_overlap=16)
    from star_vsr.pipelines.pipeline_star_vsr import resolve_overlaps

    assert resolve_overlaps(32, None, None, None) == (8, 128)  # the defaults, as before
    assert resolve_overlaps(4, None, 16, None) == (2, 8)
    assert resolve_overlaps(20, None, 512, None) == (8, 128)
    assert resolve_overlaps(4, 3, 16, 15) == (3, 15)  # given: kept


@pytest.mark.parametrize("n", range(1, 10))
def test_every_frame_count_up_to_three_chunks_works(pipe, n):
    out = run(pipe, video(n=n, h=4, w=6), num_inference_steps=1, chunk_frames=3, chunk_overlap=1)
    assert out.shape == (1, n, 3, 16, 24)
    assert torch.isfinite(out).all()


def test_blend_weights_sum_to_one():
    for length in (1, 2, 31, 32, 33, 40, 57, 100, 257):
        for size, overlap in ((32, 8), (16, 15), (5, 0), (8, 4)):
            total = torch.zeros(length, dtype=torch.float64)
            covered = torch.zeros(length, dtype=torch.long)
            for start, stop, w in blend_weights(length, size, overlap):
                assert stop - start == min(size, length) and (w > 0).all()
                total[start:stop] += w
                covered[start:stop] += 1
            torch.testing.assert_close(total, torch.ones(length, dtype=torch.float64))
            starts = window_starts(length, size, overlap)
            assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:])), "overlap below the minimum"
    assert window_starts(57, 32, 8) == [0, 12, 25]  # evenly spread, no short tail


def _pointwise_predictor(pipe):
    """A stand-in denoiser with no spatial/temporal context: windowing must not change its result."""

    def predict_v(latents, hint, t, prompt_embeds, *args):
        return 0.6 * latents - 0.4 * hint + 0.001 * t.float()

    return predict_v


@pytest.mark.parametrize("kwargs", [
    dict(chunk_frames=3, chunk_overlap=1),                 # 3 overlapping temporal chunks
    dict(tile_size=16, tile_overlap=8),                    # 3 x 3 spatial tiles
    dict(chunk_frames=4, chunk_overlap=2, tile_size=16, tile_overlap=4),
])
def test_blending_is_exact_for_a_context_free_denoiser(pipe, monkeypatch, kwargs):
    """Windowed sampling equals whole-clip sampling when the denoiser is pointwise: the windows,
    indices and weights (which sum to one) are right, and only the model's own context differs."""
    monkeypatch.setattr(pipe, "predict_v", _pointwise_predictor(pipe))
    clip = video(n=7, h=8, w=8)  # 32x32 output, 16x16 latent canvas
    whole = run(pipe, clip, chunk_frames=7, chunk_overlap=0, output_type="latent")
    windowed = run(pipe, clip, output_type="latent", **kwargs)
    torch.testing.assert_close(windowed, whole, atol=1e-5, rtol=1e-5)


def test_tiling_matches_untiled_within_tolerance(pipe):
    """With the real (tiny, random) model tiles see less context and their own GroupNorm statistics;
    blended with wide overlaps the result stays close to the untiled one and has no seams."""
    clip = video(n=3, h=16, w=16)
    whole = run(pipe, clip)
    assert torch.equal(whole, run(pipe, clip, tile_size=256))  # one tile covering the frame
    tiled = run(pipe, clip, tile_size=40, tile_overlap=24)
    diff = (tiled - whole).abs()
    assert diff.mean() < 0.05 and diff.mean() < 0.25 * whole.std()


def test_color_fix_restores_input_statistics():
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(3, 3, 8, 8, generator=g) * 0.5 + 0.25
    sr = (torch.rand(3, 3, 32, 32, generator=g) * 0.3 + 0.6)  # brighter, lower contrast
    fixed = adain_color_fix(sr, lr)
    torch.testing.assert_close(fixed.mean((2, 3)), lr.mean((2, 3)), atol=2e-3, rtol=0)
    torch.testing.assert_close(fixed.std((2, 3)), lr.std((2, 3)), atol=3e-3, rtol=0)
    smooth_lr = torch.nn.functional.interpolate(lr, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    wave = wavelet_color_fix(sr, lr)
    # the wavelet fix takes the low frequencies (here: the means) from the LR frame
    assert (wave.mean((2, 3)) - smooth_lr.mean((2, 3))).abs().max() < 0.02
    assert (sr.mean((2, 3)) - smooth_lr.mean((2, 3))).abs().max() > 0.2


def test_color_fix_refuses_what_it_would_turn_into_garbage():
    """uint8 or 0..255 frames came out as 0s and 1s, a one-pixel LR frame made AdaIN's output NaN (the unbiased
    variance of one value), an empty frame failed deep in interpolate."""
    g = torch.Generator().manual_seed(0)
    sr, lr = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    fixed = adain_color_fix(sr[:1], lr[:1, :, :1, :1])
    assert torch.isfinite(fixed).all()
    torch.testing.assert_close(fixed.mean((2, 3)), lr[:1, :, 0, 0], atol=1e-3, rtol=0)  # the pixel's colour
    for fix in (adain_color_fix, wavelet_color_fix):
        with pytest.raises(InputError, match=r"target frames \(the upscaled frames\) must be float in \[0, 1\], got "
                                             r"torch.uint8"):
            fix((sr * 255).to(torch.uint8), lr)
        with pytest.raises(InputError, match=r"source frames \(the LR frames\) must have values in \[0, 1\], got "
                                             r".* divide by 255"):
            fix(sr, lr * 255)
        with pytest.raises(InputError, match="hold NaN or infinite values"):
            fix(sr, torch.full_like(lr, float("inf")))
        with pytest.raises(InputError, match="colour fix needs frames of at least one pixel"):
            fix(sr[:, :, :0], lr)


def test_pipeline_applies_color_fix(pipe):
    clip = video(n=2)
    out = run(pipe, clip, color_fix="adain")[0]
    torch.testing.assert_close(out.mean((2, 3)), clip.mean((2, 3)), atol=0.02, rtol=0)


def test_hint_is_streamed_a_few_frames_at_a_time(pipe, monkeypatch):
    """The upsampled LR video is never built for the whole clip: the VAE sees small batches."""
    seen = []
    encode = pipe.vae.encode

    def spy(x, *a, **k):
        seen.append(x.shape[0])
        return encode(x, *a, **k)

    monkeypatch.setattr(pipe.vae, "encode", spy)
    run(pipe, video(n=11), num_inference_steps=1)
    assert sum(seen) == 11 and max(seen) <= 4


def test_frame_sink_streams_frames(pipe):
    chunks = []
    result = pipe(video(n=5), num_inference_steps=1, generator=torch.Generator().manual_seed(0),
                  decode_chunk_size=2, frame_sink=chunks.append)
    assert result.frames is None
    assert [c.shape[0] for c in chunks] == [2, 2, 1]
    assert torch.equal(torch.cat(chunks)[None], run(pipe, video(n=5), num_inference_steps=1, decode_chunk_size=2))


def test_callback_on_step_end_sees_and_can_replace_latents(pipe):
    steps = []

    def callback(p, i, t, kwargs):
        steps.append((i, int(t), tuple(kwargs["latents"].shape)))
        return {"latents": kwargs["latents"] * 0}

    run(pipe, video(n=2), num_inference_steps=3, callback_on_step_end=callback)
    assert [s[0] for s in steps] == [0, 1, 2] and steps[0][2] == (2, 4, 16, 24)


def test_callback_on_step_end_may_change_the_latents_in_place(pipe):
    """diffusers' pipelines hand the callback their live latents; an in-place change was lost here (the callback
    sees a copy gathered from the windows)."""
    clip = video(n=2)

    def zero_in_place(p, i, t, kwargs):
        kwargs["latents"].zero_()

    zeroed = run(pipe, clip, output_type="latent", callback_on_step_end=zero_in_place)
    assert torch.equal(zeroed, torch.zeros_like(zeroed))
    with pytest.raises(InputError, match=r"^the latents callback_on_step_end changed hold NaN or infinite values$"):
        run(pipe, clip, callback_on_step_end=lambda p, i, t, kw: [kw["latents"].fill_(float("nan"))] and None)
    # the callback seeing no latents, or changing nothing, leaves the result as it is
    plain = run(pipe, clip)
    assert torch.equal(run(pipe, clip, callback_on_step_end=lambda p, i, t, kw: None), plain)
    assert torch.equal(run(pipe, clip, callback_on_step_end=lambda p, i, t, kw: kw.clear(),
                           callback_on_step_end_tensor_inputs=[]), plain)
    # one that returns no dict: refused (a tuple was passed over without a word; black-box hunt)
    with pytest.raises(InputError, match=r"^callback_on_step_end must return a dict of the tensors it changes \(or "
                                         r"None\), not tuple$"):
        run(pipe, clip, callback_on_step_end=lambda p, i, t, kw: (kw["latents"] * 0,))


def test_diffusers_interrupt_flag_is_refused_not_ignored(pipe):
    """diffusers' pipelines skip the steps left once a callback sets pipe._interrupt; here every step still ran
    without a word (black-box hunt). It is refused at the step that set it, and the flag does not stay set."""
    steps = []

    def interrupt_at_step_0(p, i, t, kw):
        steps.append(i)
        p._interrupt = True
        return kw

    with pytest.raises(InputError, match=r"^StarVSRPipeline does not stop at pipe._interrupt = True"):
        run(pipe, video(n=1), callback_on_step_end=interrupt_at_step_0)
    assert steps == [0]
    run(pipe, video(n=1), callback_on_step_end=lambda p, i, t, kw: kw)  # the flag left set is not this call's
    # set from another thread, without a callback (a "Stop" button), as diffusers' pipelines take it (review)
    evaluations, denoise_window = [], pipe.denoise_window

    def stop_button_after_the_first_window(*args):
        evaluations.append(1)
        pipe._interrupt = True
        return denoise_window(*args)

    pipe.denoise_window = stop_button_after_the_first_window
    try:
        with pytest.raises(InputError, match=r"^StarVSRPipeline does not stop at pipe._interrupt = True"):
            run(pipe, video(n=1))
    finally:
        del pipe.denoise_window
    assert evaluations == [1]


def test_diffusers_callback_classes_get_their_tensor_inputs_and_num_timesteps(pipe):
    """SDCFGCutoffCallback read pipe.num_timesteps and changed prompt_embeds: an AttributeError after the first step
    (black-box hunt); a PipelineCallback subclass that works with the latents is diffusers' way to write one."""
    from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback, SDCFGCutoffCallback

    cutoff = SDCFGCutoffCallback(cutoff_step_ratio=0.5)
    for callback in (cutoff, MultiPipelineCallbacks([cutoff])):
        with pytest.raises(InputError, match=r"^(SDCFGCutoffCallback|MultiPipelineCallbacks) works with "
                                             r"\['prompt_embeds'\], which this pipeline does not hand to callbacks"):
            run(pipe, video(n=1), callback_on_step_end=callback)
    seen = []

    class Halve(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            # guidance_scale and do_classifier_free_guidance, as diffusers' pipelines have them (AttributeError)
            seen.append((step_index, pipeline.num_timesteps, pipeline.guidance_scale,
                         pipeline.do_classifier_free_guidance))
            callback_kwargs["latents"].mul_(0.5)  # in place
            return callback_kwargs

    clip = video(n=2)
    halved = run(pipe, clip, output_type="latent", num_inference_steps=3, callback_on_step_end=Halve(),
                 callback_on_step_end_tensor_inputs=[])  # (the callback's own tensor_inputs count)
    assert seen == [(0, 3, 7.5, True), (1, 3, 7.5, True), (2, 3, 7.5, True)]
    run(pipe, clip, output_type="latent", num_inference_steps=1, guidance_scale=1, callback_on_step_end=Halve())
    assert seen[-1] == (0, 1, 1, False)
    assert torch.equal(halved, run(pipe, clip, output_type="latent", num_inference_steps=3,
                                   callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * 0.5}))


def test_path_input(pipe, tmp_path):
    from star_vsr.io.synthetic import write_test_video

    path = write_test_video(tmp_path / "in.mp4", num_frames=3, size=(8, 12))
    assert run(pipe, str(path)).shape == (1, 3, 3, 32, 48)


@pytest.mark.parametrize("kwargs, match", [
    (dict(upscale=16), "unsupported scale"),
    (dict(upscale=0.5), "unsupported scale"),
    (dict(chunk_frames=4, chunk_overlap=4), "chunk_overlap"),
    (dict(tile_size=2), "tile_size"),
    (dict(tile_size=0), r"^tile_size must be >= 1, got 0$"),  # not an overlap derived from it
    (dict(chunk_frames=-2), r"^chunk_frames must be >= 1, got -2$"),
    (dict(color_fix="sepia"), "color_fix"),
    (dict(output_type="gif"), "output_type"),
    (dict(guidance_rescale=2.0), "guidance_rescale"),
    (dict(noise_level=0), "noise_level"),
    (dict(prompt=None), "prompt must be a string"),
    (dict(positive_prompt=None), r"positive_prompt must be a string \(\"\" for none\), got NoneType"),  # a TypeError
    (dict(tile_size=32, tile_overlap=64), "lower tile_overlap"),
    (dict(tile_size=4, tile_overlap=0), "tile_size must be >= 8 output pixels for this model"),
    (dict(num_inference_steps=1.5), "num_inference_steps must be an integer"),
    (dict(num_inference_steps="2"), "num_inference_steps must be an integer"),
    (dict(upscale="4"), "upscale must be a finite number"),
    (dict(upscale=float("nan")), "upscale must be a finite number"),
    (dict(controlnet_conditioning_scale=float("nan")), "controlnet_conditioning_scale must be a finite number"),
    (dict(guidance_scale=float("inf")), "guidance_scale must be a finite number"),
    (dict(guidance_scale="7"), "guidance_scale must be a finite number"),
    (dict(timesteps=[]), "timesteps must be"),
    (dict(timesteps=[200, 500]), "timesteps must be"),
    (dict(timesteps=[1500, 200]), "timesteps must be"),
    (dict(timesteps=[500, 500]), "timesteps must be"),
    # noise_level was ignored without a word next to timesteps, which set where sampling starts
    (dict(timesteps=[500, 200], noise_level=900), r"^noise_level 900 starts sampling at t = 899, but the timesteps "
                                                  r"start at 500: with timesteps, leave noise_level out"),
    (dict(output_type="latent", frame_sink=print), "frame_sink"),
    # found only after the denoising (a TypeError), or taken as 1 without a word
    (dict(frame_sink=5), r"^frame_sink must be a callable taking each chunk of frames, got 5$"),
    (dict(state_sink="state.pt"), r"^state_sink must be a callable, got 'state.pt'$"),
    (dict(guidance_scale=0.5), r"^guidance_scale must be >= 1 \(1 turns classifier-free guidance off\), got 0.5$"),
    # black-box hunt of the Python API: ignored without a word; "['l', 'a', 't', ...] not in ['latents']"
    (dict(tile_overlap=1000), r"^tile_overlap 1000 goes with tile_size \(without it the frames are not tiled\)$"),
    (dict(callback_on_step_end_tensor_inputs="latents"), r"^callback_on_step_end_tensor_inputs must be a list of "
                                                         r"names, e.g. \['latents'\], got 'latents'$"),
])
def test_bad_arguments_are_clear_errors(pipe, kwargs, match):
    with pytest.raises(InputError, match=match):
        run(pipe, video(n=2), **kwargs)


def test_start_latents_must_have_the_documented_shape(pipe):
    """Only their number of values was checked: latents with swapped axes were reshaped into noise without a word,
    and a NumPy array was an AttributeError."""
    clip = video(n=3, h=8, w=12)
    shape = run(pipe, clip, upscale=2, output_type="latent").shape[1:]  # (n, 4, h, w) of this video at x2
    start = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(run(pipe, clip, upscale=2, latents=start),
                               run(pipe, clip, upscale=2, latents=start[None]))
    n, c, h, w = shape
    for bad in (start.reshape(n, c, w, h), start.permute(1, 0, 2, 3), start.numpy()):
        got = f"shape {tuple(bad.shape)}" if isinstance(bad, torch.Tensor) else "ndarray"
        message = (rf"^latents must be a tensor of shape \({n}, {c}, {h}, {w}\) or \(1, {n}, {c}, {h}, {w}\) for this "
                   rf"video, upscale and tile_size \(the latent canvas: .*\), got {re.escape(got)}$")
        with pytest.raises(InputError, match=message):
            run(pipe, clip, upscale=2, latents=bad)
    # NaN latents gave NaN (or, as PIL images, black) frames without an error; the shape of those a callback
    # returns was not checked (extra frames dropped, a (1, n, ...) tensor or too few frames failed in the
    # ControlNet, a NumPy array was an AttributeError) nor that it is callable (found after a whole step)
    with pytest.raises(InputError, match=r"^latents must be a floating-point tensor, got torch.int64$"):
        run(pipe, clip, upscale=2, latents=start.round().long())  # (cast to float without a word)
    with pytest.raises(InputError, match=r"^latents hold NaN or infinite values$"):
        run(pipe, clip, upscale=2, latents=torch.full(shape, float("nan")), color_fix=None)
    replaced = run(pipe, clip, upscale=2, latents=start, callback_on_step_end=lambda p, i, t, kw: {"latents": start})
    assert torch.equal(replaced, run(pipe, clip, upscale=2, latents=start,
                                     callback_on_step_end=lambda p, i, t, kw: {"latents": start[None]}))
    for bad, got in ((torch.cat([start, start[:1]]), f"shape {(n + 1, c, h, w)}"), (start[:1], f"shape {(1, c, h, w)}"),
                     (start.numpy(), "ndarray")):
        with pytest.raises(InputError, match=r"^the latents callback_on_step_end returned must be a tensor of shape "
                                             rf".* for this video, upscale and tile_size .*, got {re.escape(got)}$"):
            run(pipe, clip, upscale=2, callback_on_step_end=lambda p, i, t, kw: {"latents": bad})
    with pytest.raises(InputError, match=r"^the latents callback_on_step_end returned hold NaN or infinite values$"):
        run(pipe, clip, upscale=2, callback_on_step_end=lambda p, i, t, kw: {"latents": kw["latents"] * float("inf")})
    with pytest.raises(InputError, match=r"^callback_on_step_end must be a callable fn\(pipe, step, timestep, "
                                         r"tensors\) -> dict, got 5$"):
        run(pipe, clip, upscale=2, callback_on_step_end=5)


def test_noise_level_none_is_900_or_where_the_timesteps_start(pipe):
    torch.testing.assert_close(run(pipe, video(n=2)), run(pipe, video(n=2), noise_level=900))
    torch.testing.assert_close(run(pipe, video(n=2), timesteps=[599, 300]),
                               run(pipe, video(n=2), timesteps=[599, 300], noise_level=600))
    assert not torch.equal(run(pipe, video(n=2), noise_level=600), run(pipe, video(n=2)))
    # a tensor of them, as a numpy array is taken (refused: "got [tensor(599), tensor(300)]")
    torch.testing.assert_close(run(pipe, video(n=2), timesteps=torch.tensor([599, 300])),
                               run(pipe, video(n=2), timesteps=[599, 300]))
    # a spacing with timesteps spaces nothing: it was taken without a word, a typo too (black-box hunt)
    for spacing in ("star_fast", "bogus"):
        with pytest.raises(InputError, match=f"timestep_spacing='{spacing}' spaces the steps num_inference_steps "
                                             f"makes; timesteps are the steps themselves: leave timestep_spacing out"):
            run(pipe, video(n=2), timesteps=[599, 300], timestep_spacing=spacing)


def test_a_required_component_given_as_none_is_refused_when_loading(pipe, tmp_path):
    """from_pretrained(folder, unet=None) failed with "'NoneType' object has no attribute 'dtype'", text_encoder=None
    loaded and failed when called, StarStudentPipeline(student=None) with "... has no attribute 'to'"."""
    from star_vsr import StarStudentPipeline

    pipe.save_pretrained(tmp_path / "star")
    for given, named in (({"unet": None}, "unet is None: pass it"),
                         ({"text_encoder": None, "tokenizer": None}, "text_encoder, tokenizer are None: pass them")):
        with pytest.raises(InputError, match=f"a StarVSRPipeline needs every component, and {named}, or leave"):
            StarVSRPipeline.from_pretrained(tmp_path / "star", **given)
    with pytest.raises(InputError, match="a StarStudentPipeline needs every component, and student is None"):
        StarStudentPipeline(student=None)


def test_components_of_another_class_or_that_do_not_fit_together_are_refused_when_the_pipeline_is_made(pipe,
                                                                                                        tmp_path):
    """A UNet and ControlNet swapped, or a string, failed deep inside (an AttributeError in the call or in diffusers'
    registration), and a UNet of other widths than its ControlNet loaded, then failed mid-denoising with "The size
    of tensor a (8) must match the size of tensor b (16)" (black-box hunt)."""
    from star_vsr import StarStudentPipeline
    from star_vsr.models import StarVSRUNetModel
    from star_vsr.testing import TINY_UNET_CONFIG, tiny_star_components

    parts = tiny_star_components(seed=0)
    for given, found in (({"unet": parts["controlnet"], "controlnet": parts["unet"]}, "StarVSRControlNetModel"),
                         ({"unet": "unet"}, "str")):
        with pytest.raises(InputError, match=rf"a StarVSRPipeline's unet must be of class StarVSRUNetModel, not "
                                             rf"{found}$"):
            StarVSRPipeline(**{**parts, **given})
    with pytest.raises(InputError, match=r"a StarStudentPipeline's student must be of class StarStudentModel, not "
                                         r"StarVSRUNetModel"):
        StarStudentPipeline(student=parts["unet"])
    narrow = StarVSRUNetModel(**{**TINY_UNET_CONFIG, "block_out_channels": (8, 16)})
    pipe.save_pretrained(tmp_path / "star")
    with pytest.raises(InputError, match=r"the networks given to a StarVSRPipeline do not fit together: controlnet "
                                         r"block_out_channels \[16, 32\] against unet block_out_channels \[8, 16\]"):
        StarVSRPipeline.from_pretrained(tmp_path / "star", unet=narrow)


def test_a_prompt_cut_off_by_the_text_encoder_is_said(pipe, recwarn):
    """A long prompt was cut at 77 tokens without a word, STAR's appended quality phrases first: two prompts that
    differed after their 20th word gave the same video (black-box test of upscale --prompt). The warning is the
    caller's line's, not the out-of-memory wrapper's in star_vsr/errors.py (black-box hunt)."""
    with pytest.warns(UserWarning, match=r"longer than the 77 tokens the text encoder reads; left out: \".*"
                                         r"perfect without deformations \.\" \(shorten prompt to about \d+ tokens\)"
                      ) as said:
        run(pipe, video(n=1), prompt=" ".join(["word"] * 40))
    assert [w.filename for w in said if "text encoder reads" in str(w.message)] == [__file__]
    recwarn.clear()
    run(pipe, video(n=1), prompt="a good video")
    assert not [w for w in recwarn if "text encoder reads" in str(w.message)]


def test_a_negative_prompt_cut_off_by_the_text_encoder_is_said(pipe, recwarn):
    """A user's negative prompt past 77 tokens was cut without a word (``upscale --negative-prompt``); without guidance
    it is not read, so there is nothing to say."""
    long = " ".join(["blurry"] * 80)
    with pytest.warns(UserWarning, match=r"the negative prompt is longer than the 77 tokens the text encoder reads; "
                                         r"left out: \"blurry"):
        run(pipe, video(n=1), negative_prompt=long)
    recwarn.clear()
    run(pipe, video(n=1), negative_prompt=long, guidance_scale=1.0)
    run(pipe, video(n=1))  # STAR's own fits
    assert not [w for w in recwarn if "text encoder reads" in str(w.message)]


def test_upscale_none_is_star_s_own_scale(pipe):
    """None is 4, as the student pipeline takes None for its own scale."""
    torch.testing.assert_close(run(pipe, video(n=2), upscale=None), run(pipe, video(n=2), upscale=4))


@pytest.mark.parametrize("bad", [torch.rand(2, 8, 12), torch.rand(2, 4, 8, 12), torch.zeros(2, 3, 8, 12, dtype=torch.uint8)])
def test_bad_video_tensors_are_clear_errors(pipe, bad):
    with pytest.raises(InputError):
        run(pipe, bad)


def test_pipelines_import_from_the_package_and_its_pipelines_module():
    import star_vsr
    import star_vsr.pipelines as pipelines

    assert star_vsr.StarVSRPipeline is pipelines.StarVSRPipeline is StarVSRPipeline
    assert star_vsr.StarStudentPipeline is pipelines.StarStudentPipeline
    with pytest.raises(AttributeError):
        pipelines.NoSuchPipeline
    for module in (star_vsr, pipelines):  # tab completion offers them
        assert {"StarVSRPipeline", "StarStudentPipeline"} <= set(dir(module))


def test_folder_saved_in_float16_loads_in_one_precision(tmp_path):
    """convert-star saves float16; loaded with no dtype, diffusers' models come in float32 and transformers'
    text encoder would stay float16."""
    tiny_star_pipeline(seed=0).to(torch.float16).save_pretrained(tmp_path / "star")
    loaded = StarVSRPipeline.from_pretrained(tmp_path / "star")
    assert {m.dtype for m in (loaded.unet, loaded.controlnet, loaded.vae, loaded.text_encoder)} == {torch.float32}
    loaded = StarVSRPipeline.from_pretrained(tmp_path / "star", dtype=torch.bfloat16)
    assert {m.dtype for m in (loaded.unet, loaded.controlnet, loaded.vae, loaded.text_encoder)} == {torch.bfloat16}


def test_missing_weights_folder_says_what_to_download(tmp_path):
    with pytest.raises(MissingWeightsError, match="convert-star"):
        StarVSRPipeline.from_pretrained(tmp_path / "nothing-here")


def test_an_incomplete_folder_names_the_missing_part(tmp_path):
    """A half-copied download: the component and the help, not diffusers' "no file named ....bin"."""
    import shutil

    from star_vsr.testing import tiny_star_pipeline

    folder = tmp_path / "star"
    tiny_star_pipeline(seed=0).save_pretrained(folder)
    for weights in (folder / "vae").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(MissingWeightsError, match=r"vae has a config.json but no weights(.|\n)*convert-star"):
        StarVSRPipeline.from_pretrained(folder)
    shutil.rmtree(folder / "vae")
    with pytest.raises(MissingWeightsError, match=r"lists 'vae', but .*vae is missing"):
        StarVSRPipeline.from_pretrained(folder)
    # a part given to from_pretrained is not loaded from the folder, which need not hold it (as in diffusers; it was
    # refused: black-box hunt), its variant and weights neither
    vae = tiny_star_pipeline(seed=0).vae
    loaded = StarVSRPipeline.from_pretrained(folder, vae=vae, variant=None, use_safetensors=True)
    assert loaded.vae is vae
    (folder / "model_index.json").write_text("{")
    with pytest.raises(MissingWeightsError, match=r"model_index.json is not valid JSON"):
        StarVSRPipeline.from_pretrained(folder)


def test_a_scheduler_the_sampler_cannot_drive_is_refused_before_any_work(pipe):
    """``pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)``, the usual diffusers swap, failed
    inside the call with DDIMScheduler.set_timesteps' TypeError (black-box hunt)."""
    from diffusers import DDIMScheduler

    kept = pipe.scheduler
    try:
        pipe.scheduler = DDIMScheduler.from_config(kept.config)
        with pytest.raises(InputError, match=r"samples with a DPMSolverMultistepScheduler .*not DDIMScheduler: set "
                                             r"pipe.scheduler = star_vsr.scheduling.make_star_scheduler\(\)"):
            run(pipe, video())
    finally:
        pipe.scheduler = kept


@pytest.mark.parametrize("change, message", [
    (dict(prediction_type="epsilon"), "prediction_type is 'epsilon'; STAR's UNet predicts v"),  # ran: noise out
    (dict(use_karras_sigmas=True), "use_karras_sigmas cannot be used here"),  # diffusers' ValueError mid-call
    (dict(use_flow_sigmas=True), "use_flow_sigmas cannot be used here"),  # a TypeError mid-call
])
def test_scheduler_settings_the_sampler_cannot_use_are_refused_before_any_work(pipe, change, message):
    """A DPM-Solver of another prediction type ran and gave wrong pictures; sigma spacings that refuse given
    timesteps failed after the text encoder had run (black-box hunt)."""
    from diffusers import DPMSolverMultistepScheduler

    kept = pipe.scheduler
    try:
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(kept.config, **change)
        with pytest.raises(InputError, match=message):
            run(pipe, video())
    finally:
        pipe.scheduler = kept


def test_components_in_different_dtypes_run_together():
    """from_pretrained(..., torch_dtype={"unet": torch.bfloat16, "default": torch.float32}) loads them apart; the
    ControlNet took the UNet's dtype inputs: "mat1 and mat2 must have the same dtype" mid-call (black-box hunt)."""
    for part in ("controlnet", "unet"):
        mixed = tiny_star_pipeline(seed=0)
        getattr(mixed, part).to(torch.bfloat16)
        out = run(mixed, video(n=2), num_inference_steps=1)
        assert out.shape == (1, 2, 3, 32, 48) and torch.isfinite(out).all()


def test_callback_tensor_inputs_none_and_a_frame_sink_with_other_output_types(pipe):
    """callback_on_step_end_tensor_inputs=None (diffusers' pipelines take it) was "'NoneType' object is not
    iterable"; a frame_sink with output_type 'np' or 'pil' got tensors all the same, without a word (hunt)."""
    assert torch.equal(run(pipe, video(n=2), callback_on_step_end_tensor_inputs=None), run(pipe, video(n=2)))
    for output_type in ("np", "pil"):
        with pytest.raises(InputError, match=f"leave output_type at 'pt' with it, got '{output_type}'"):
            run(pipe, video(n=2), frame_sink=lambda frames: None, output_type=output_type)


@pytest.mark.parametrize("betas", [dict(beta_end=float("nan")), dict(beta_start=-0.5), dict(beta_end=1.5),
                                   dict(trained_betas=[float("inf")] * 1000),
                                   dict(trained_betas=np.full(1000, np.nan))])  # (an array: the message's own test)
def test_a_noise_schedule_that_is_no_schedule_is_refused_before_any_work(pipe, betas):
    """A scheduler_config.json without trained_betas and with beta_end NaN ran every denoising step, then said "colour
    fix target frames (the upscaled frames) hold NaN" (black-box hunt)."""
    from diffusers import DPMSolverMultistepScheduler

    kept = pipe.scheduler
    try:
        settings = {key: value for key, value in kept.config.items() if not key.startswith("_")}  # (its
        # _use_default_values: keys from_config takes the defaults of)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config({**settings, "trained_betas": None, **betas})
        with pytest.raises(InputError, match=r"the scheduler's noise schedule is no schedule \(its cumulative alphas "
                                             r"must lie in \(0, 1\]; beta_start .*: from a folder, its "
                                             r"scheduler_config.json is damaged; copy the folder again"):
            run(pipe, video())
    finally:
        pipe.scheduler = kept


def test_a_settings_file_that_is_no_json_object_is_named_at_once(tmp_path, monkeypatch):
    """A config.json or scheduler_config.json holding a JSON string ("x") was taken by diffusers for a Hub
    repository's name: five tries to reach huggingface.co (50 s offline), then an error about "x"; a damaged
    tokenizer config's error named no file (black-box hunt)."""
    import shutil

    import huggingface_hub

    from star_vsr.models import StarVSRUNetModel
    from star_vsr.testing import tiny_star_pipeline

    def no_hub(*args, **kwargs):
        raise AssertionError("a local folder's load asked the Hub")

    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", no_hub)
    good = tmp_path / "good"
    tiny_star_pipeline(seed=0).save_pretrained(good)
    for name, text, found in (("unet/config.json", '"x"', 'holds str "x", not a mapping of settings'),
                              ("unet/config.json", "[1]", "holds list [1], not a mapping of settings"),
                              ("scheduler/scheduler_config.json", '"x"', 'holds str "x", not a mapping'),
                              ("tokenizer/tokenizer_config.json", '{"a": ', "is not valid JSON (Expecting value"),
                              # arrays nested 100,000 deep: a RecursionError traceback (black-box hunt)
                              ("unet/config.json", "[" * 100_000 + "]" * 100_000, "is not valid JSON (nested too "
                                                                                   "deep to read"),
                              ("model_index.json", "[" * 100_000 + "]" * 100_000, "is not valid JSON (nested too "
                                                                                  "deep to read"),
                              # 600 deep parses, then diffusers' deepcopy of it was the RecursionError (review)
                              ("unet/config.json", '{"a": ' + "[" * 600 + "]" * 600 + "}",
                               "nests lists or objects 601 deep (saved settings nest a few)"),
                              ("model_index.json", '{"a": ' + "[" * 600 + "]" * 600 + "}",
                               "nests lists or objects 601 deep; it is damaged")):
        folder = tmp_path / "damaged"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(good, folder)
        (folder / name).write_text(text)
        with pytest.raises(MissingWeightsError, match=rf"^{re.escape(str(folder / name))} {re.escape(found)}"):
            StarVSRPipeline.from_pretrained(folder)
        if name.startswith("unet"):
            with pytest.raises(MissingWeightsError, match=re.escape(found)):
                StarVSRUNetModel.from_pretrained(folder / "unet")


def test_a_damaged_folder_is_a_missing_weights_error_with_the_reason(tmp_path):
    """Truncated weights, a broken config, a lost scheduler config or tokenizer vocabulary (which loaded
    as a 2-token tokenizer that garbled every prompt): one error naming the folder, the reason, the help."""
    import shutil

    from star_vsr.testing import tiny_star_pipeline

    good = tmp_path / "good"
    tiny_star_pipeline(seed=0).save_pretrained(good)

    def truncate(component):
        def damage(folder):
            weights = next((folder / component).glob("*.safetensors"))
            weights.write_bytes(weights.read_bytes()[:500])
        return damage

    def edit_config(component, key, value):
        def damage(folder):
            config = json.loads((folder / component / "config.json").read_text())
            (folder / component / "config.json").write_text(json.dumps({**config, key: value}))
        return damage

    def drop_decoder(folder):
        from safetensors.torch import load_file, save_file

        weights = next((folder / "vae").glob("*.safetensors"))
        save_file({k: v for k, v in load_file(weights).items() if not k.startswith("decoder.")}, weights)

    def bin_without(component, key_part):  # .bin weights (not checked before), one tensor left out
        def damage(folder):
            from safetensors.torch import load_file

            weights = next((folder / component).glob("*.safetensors"))
            tensors = load_file(weights)
            tensors.pop(next(key for key in tensors if key_part in key))
            name = "pytorch_model.bin" if weights.name == "model.safetensors" else "diffusion_pytorch_model.bin"
            torch.save(tensors, folder / component / name)
            weights.unlink()
        return damage

    def widen_text_encoder(folder):
        config = json.loads((folder / "text_encoder" / "config.json").read_text())
        (folder / "text_encoder" / "config.json").write_text(json.dumps({**config,
                                                                         "hidden_size": config["hidden_size"] * 2}))

    def schedule(folder):
        config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "num_train_timesteps": -5}))

    damages = {
        "truncated": (truncate("unet"), "could not be loaded .Unable to load weights"),
        # transformers lets safetensors' own error through (it was a traceback)
        "truncated_text_encoder": (truncate("text_encoder"), "could not be loaded .Error while deserializing header"),
        "bad_json": (lambda f: (f / "unet" / "config.json").write_text("{"),
                     r"unet/config.json is not valid JSON \(Expecting"),
        "no_scheduler": (lambda f: (f / "scheduler" / "scheduler_config.json").unlink(), "scheduler_config.json"),
        "no_vocabulary": (lambda f: (f / "tokenizer" / "tokenizer.json").unlink(), "tokenizer holds no vocabulary"),
        # a component's class edited to another one: diffusers built it from the other's config (a traceback)
        "other_unet_class": (lambda f: (f / "model_index.json").write_text(json.dumps(
            {**json.loads((f / "model_index.json").read_text()), "unet": ["diffusers", "UNet2DConditionModel"]})),
            "names diffusers.UNet2DConditionModel for 'unet', but unet/config.json is a "),
        # a scheduler the sampler cannot drive: loaded, then a TypeError traceback mid-call (black-box hunt)
        "ddim_scheduler": (lambda f: (f / "model_index.json").write_text(json.dumps(
            {**json.loads((f / "model_index.json").read_text()), "scheduler": ["diffusers", "DDIMScheduler"]})),
            "names diffusers.DDIMScheduler for 'scheduler', where a StarVSRPipeline needs a "
            "DPMSolverMultistepScheduler"),
        # transformers parses the tokenizer's JSON itself; a broken one was a traceback (a black-box test)
        "bad_tokenizer_json": (lambda f: (f / "tokenizer" / "tokenizer_config.json").write_text('{\n  "add'),
                               r"tokenizer_config.json is not valid JSON \(Unterminated string"),
        # ... and its vocabulary's: the error said why, not in which file (black-box hunt)
        "bad_tokenizer_vocabulary": (lambda f: (f / "tokenizer" / "tokenizer.json").write_text("{\n"),
                                     r"could not be loaded \(tokenizer/tokenizer.json is not valid JSON \(Expecting"),
        # the VAE and the text encoder loaded such damage with random weights and only a log line
        "vae_config": (edit_config("vae", "layers_per_block", 2), r"vae: config.json does not fit the weights \(\d+ "
                                                                  r"parameters of the model are not in the weights"),
        "text_encoder_config": (edit_config("text_encoder", "num_hidden_layers", 3),
                                "text_encoder: config.json does not fit the weights"),
        "vae_without_decoder": (drop_decoder, r"vae: config.json does not fit the weights .*e.g. decoder\."),
        # a weight of another shape: named with its component (was diffusers' advice to load random weights)
        "vae_channels": (edit_config("vae", "block_out_channels", [32, 64]),
                         r"vae: config.json does not fit the weights \(\S+ has shape \[\d+\S*\] in the weights, "
                         r"\[\d+\S*\] in the model\)"),
        # .bin weights missing a tensor loaded: the text encoder's left random, the VAE's on the meta device
        "vae_bin": (bin_without("vae", "decoder.conv_in.bias"), r"vae: config.json does not fit the weights \(1 "
                                                                r"parameters .*e.g. decoder.conv_in.bias"),
        "text_encoder_bin": (bin_without("text_encoder", "position_embedding"),
                             "text_encoder: config.json does not fit the weights .*position_embedding"),
        # configs that build no model: TypeError / RuntimeError / ValueError tracebacks from deep in a constructor
        "unet_head_dim": (edit_config("unet", "attention_head_dim", "x"), r"unet: StarVSRUNetModel could not be "
                                                                          r"loaded \(config.json builds no "
                                                                          r"StarVSRUNetModel: "),
        "vae_latents": (edit_config("vae", "latent_channels", "four"),
                        r"vae/config.json builds no AutoencoderKLTemporalDecoder: "),
        "text_encoder_layers": (edit_config("text_encoder", "num_hidden_layers", "two"),
                                r"text_encoder/config.json builds no CLIPTextModel: Validation error for field "
                                r"'num_hidden_layers': \S"),
        "scheduler_steps": (schedule, r"scheduler/scheduler_config.json builds no DPMSolverMultistepScheduler: "
                                      r"Number of samples, -5"),
        # transformers' error pointed at a report it does not show ("look at the above report")
        "text_encoder_wider": (widen_text_encoder, r"text_encoder/config.json does not fit the weights \(\S+ has "
                                                   r"shape \[77, \d+\] in the weights"),
        "text_encoder_no_config": (lambda f: (f / "text_encoder" / "config.json").unlink(),
                                   "text_encoder holds weights but no config.json"),
        # named as the fallback diffusers did not find ("no file named diffusion_pytorch_model.bin")
        "vae_renamed": (lambda f: (f / "vae" / "diffusion_pytorch_model.safetensors").rename(
            f / "vae" / "model.safetensors"), "vae holds weights named model.safetensors, which from_pretrained "
                                              "does not read: it reads diffusion_pytorch_model.safetensors"),
    }
    for name, (damage, reason) in damages.items():
        folder = tmp_path / name
        shutil.copytree(good, folder)
        damage(folder)
        records: list[logging.LogRecord] = []  # the loaders' logs of every random parameter, shown before the error
        collect = logging.Handler()
        collect.emit = records.append
        loggers = [logging.getLogger(library) for library in ("diffusers", "transformers")]
        for logger in loggers:
            logger.addHandler(collect)
        try:
            with pytest.raises(MissingWeightsError, match=rf"{reason}(.|\n)*convert-star") as caught:
                StarVSRPipeline.from_pretrained(folder)
            assert "ignore_mismatched_sizes" not in str(caught.value), name
        finally:
            for logger in loggers:
                logger.removeHandler(collect)
        logged = " ".join(str(record.msg) for record in records)
        assert "Some weights of" not in logged and "LOAD REPORT" not in logged, name


def test_text_encoder_weights_of_older_transformers_and_files_beside_them_load(tmp_path):
    """Checking .bin weights too must not refuse what the loaders take: a transformers 4 text encoder (keys under
    text_model., a position_ids buffer saved), a trainer's file beside the weights (was an AttributeError)."""
    import shutil

    from safetensors.torch import load_file

    from star_vsr.testing import tiny_star_pipeline

    tiny_star_pipeline(seed=0).save_pretrained(tmp_path / "good")
    folder = tmp_path / "old"
    shutil.copytree(tmp_path / "good", folder)
    weights = load_file(folder / "text_encoder" / "model.safetensors")
    (folder / "text_encoder" / "model.safetensors").unlink()
    old_style = {**{f"text_model.{key}": value for key, value in weights.items()},
                 "text_model.embeddings.position_ids": torch.arange(77)[None]}
    torch.save(old_style, folder / "text_encoder" / "pytorch_model.bin")
    torch.save({"global_step": 3}, folder / "text_encoder" / "training_state.bin")
    pipe = StarVSRPipeline.from_pretrained(folder)
    key = "embeddings.position_embedding.weight"
    assert torch.equal(pipe.text_encoder.state_dict()[key], weights[key].to(pipe.text_encoder.dtype))
    old_style.pop(f"text_model.{key}")  # and one missing is still found
    torch.save(old_style, folder / "text_encoder" / "pytorch_model.bin")
    with pytest.raises(MissingWeightsError, match=rf"text_encoder: config.json does not fit the weights .*{key}"):
        StarVSRPipeline.from_pretrained(folder)
    # one key under another name is no old layout: the loaders leave that parameter random (a review)
    from safetensors.torch import save_file

    for component, name in (("text_encoder", "model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors")):
        renamed = tmp_path / f"renamed_{component}"
        shutil.copytree(tmp_path / "good", renamed)
        tensors = load_file(renamed / component / name)
        first = sorted(tensors)[0]
        tensors[f"module.{first}"] = tensors.pop(first)
        save_file(tensors, renamed / component / name)
        with pytest.raises(MissingWeightsError, match=rf"{component}: config.json does not fit the weights \(1 "
                                                      rf"parameters .*e.g. {re.escape(first)}"):
            StarVSRPipeline.from_pretrained(renamed)


def test_a_student_folder_is_named_as_such(tmp_path):
    from star_vsr.student import build_student_pipeline

    build_student_pipeline("tiny").save_pretrained(tmp_path / "student")
    with pytest.raises(InputError, match="holds a StarStudentPipeline, not a StarVSRPipeline"):
        StarVSRPipeline.from_pretrained(tmp_path / "student")


def test_a_training_checkpoint_given_as_a_pipeline_says_what_it_is(tmp_path):
    """It got STAR's download guide ("has no model_index.json")."""
    from star_vsr.upscale import load_upscaler

    checkpoint = tmp_path / "run" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.bin").write_bytes(b"state")
    for load in (StarVSRPipeline.from_pretrained, load_upscaler):
        with pytest.raises(InputError, match="checkpoint-3 is a training checkpoint .*, not a pipeline folder: a run "
                                             "writes its pipeline to its output folder .*run"):
            load(checkpoint)


def test_a_component_folder_or_a_checkpoint_file_given_as_a_pipeline_says_what_to_pass(tmp_path, capsys):
    """A pipeline's unet/ got "has no model_index.json" and STAR's download guide, STAR's light_deg.pt "is a file"
    without a word of converting it, SVD's whole folder as convert-star --vae "download the vae folder" (black-box
    hunt)."""
    from star_vsr.cli import main
    from star_vsr.testing import tiny_star_pipeline
    from star_vsr.upscale import load_upscaler

    tiny_star_pipeline(seed=0).save_pretrained(tmp_path / "star")
    for load in (StarVSRPipeline.from_pretrained, load_upscaler):
        with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path / 'star' / 'unet'))} is the unet folder of "
                                             rf"the pipeline {re.escape(str(tmp_path / 'star'))}: pass that folder$"):
            load(tmp_path / "star" / "unet")
    (tmp_path / "light_deg.pt").write_bytes(b"weights")
    with pytest.raises(InputError, match=r"light_deg.pt is a file; a StarVSR pipeline is a folder .*; a checkpoint "
                                         r"file is converted into one first.\n(.|\n)*star-vsr convert-star"):
        StarVSRPipeline.from_pretrained(tmp_path / "light_deg.pt")
    svd = tmp_path / "svd"
    (svd / "vae").mkdir(parents=True)
    (svd / "model_index.json").write_text("{}")
    (svd / "vae" / "config.json").write_text("{}")
    assert main(["convert-star", "--checkpoint", str(tmp_path / "light_deg.pt"), "--openclip",
                 str(tmp_path / "light_deg.pt"), "--vae", str(svd), "-o", str(tmp_path / "out")]) == 2
    assert f"--vae {svd} is the whole Stable Video Diffusion folder; pass its vae folder: --vae {svd / 'vae'}" in \
        capsys.readouterr().err


def test_a_save_stopped_between_its_moves_leaves_a_folder_that_does_not_load(tmp_path, monkeypatch):
    from star_vsr.student import build_student_pipeline

    """A training run killed while its final save moved the components into place left the new ControlNet beside
    the old UNet under the old model_index.json: a folder that loaded without a word (black-box review)."""
    import star_vsr.model_folder

    folder = tmp_path / "model"
    tiny_star_pipeline(seed=0).save_pretrained(folder)
    new = tiny_star_pipeline(seed=1)
    move = star_vsr.model_folder.move_into_place
    moved = []

    def killed_after_one_move(source, target, *args, **kwargs):
        if moved:
            raise KeyboardInterrupt
        moved.append(target.name)
        move(source, target, *args, **kwargs)

    monkeypatch.setattr(star_vsr.model_folder, "move_into_place", killed_after_one_move)
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(folder)
    assert len(moved) == 1 and not (folder / "model_index.json").exists()
    with pytest.raises(MissingWeightsError, match="model_index.json"):
        StarVSRPipeline.from_pretrained(folder)
    # the old index, kept aside, still says what the folder's components are: no student is saved among them
    assert (folder / ".model_index.json.replacing").is_file()
    with pytest.raises(InputError, match="it holds a StarVSRPipeline"):
        build_student_pipeline("tiny").save_pretrained(folder)
    monkeypatch.undo()
    new.save_pretrained(folder)  # saved again: whole
    assert not (folder / ".model_index.json.replacing").exists()
    loaded = StarVSRPipeline.from_pretrained(folder)
    for name in ("unet", "controlnet", "vae"):
        saved, now = getattr(new, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(saved[key], now[key]) for key in saved), name


def test_a_pipeline_is_not_saved_over_another_pipeline_or_a_file(tmp_path):
    """Saving one kind over the other's folder would leave a folder that loads as neither; a file is no folder."""
    from star_vsr.student import build_student_pipeline

    student, star = build_student_pipeline("tiny"), tiny_star_pipeline(seed=0)
    student.save_pretrained(tmp_path / "student")
    star.save_pretrained(tmp_path / "star")
    before = sorted(p.name for p in (tmp_path / "star").iterdir())
    with pytest.raises(InputError, match="cannot save a StarStudentPipeline into .*star: it holds a StarVSRPipeline"):
        student.save_pretrained(tmp_path / "star")
    with pytest.raises(InputError, match="cannot save a StarVSRPipeline into .*: it holds a StarStudentPipeline"):
        star.save_pretrained(tmp_path / "student")
    assert sorted(p.name for p in (tmp_path / "star").iterdir()) == before
    (tmp_path / "clip.mp4").write_bytes(b"video")
    with pytest.raises(InputError, match="clip.mp4: it is a file"):
        student.save_pretrained(tmp_path / "clip.mp4")
    student.save_pretrained(tmp_path / "student")  # over its own kind: saved again
    StarVSRPipeline.from_pretrained(tmp_path / "star")


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 8, 12) * 255, "look like 0..255 values: divide by 255"),
    (torch.full((2, 3, 8, 12), float("nan")), "NaN"),
    (torch.ones(2, 3, 8, 12, dtype=torch.int64), "must be float"),
    (torch.rand(0, 3, 8, 12), "no frames"),
    ([torch.rand(3, 8, 12) - 2], r"values in \[0, 1\]"),
    (np.random.default_rng(0).random((2, 8, 12, 3)) * 255, "divide by 255"),
    (torch.rand(2, 3, 8, 12) * 65535, "look like 16-bit values: divide by 65535"),
    (torch.zeros(2, 3, 8, 12, dtype=torch.uint16), "divide uint16 frames by 65535"),
    (np.full((2, 8, 12, 3), 0.5, dtype=object), r"must hold numbers \(uint8, uint16, or float in \[0, 1\]\), got an "
     "array of numpy dtype object"),  # (torch's TypeError, which listed torch's dtypes)
    ([np.full((8, 12, 3), "0.5")], "got an array of numpy dtype <U3"),
    ([np.ones((8, 12, 3), np.int16)], "image frames that are not uint8 or uint16 must be float"),
    ([None], "each frame of a list must be a PIL image, a numpy array or a tensor, got NoneType"),
    (["a.png"], "got str \\(a video file or frame folder is passed as one path, not a list\\)"),
    ([np.zeros((8, 12, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)],
     "all frames of a video must have the same size, got 10x8, 12x8"),
    (torch.rand(2, 3, 0, 5), "the frames are 5x0: a frame needs at least one pixel"),  # not a deep torch error
    (np.zeros((2, 0, 0, 3), np.uint8), "the frames are 0x0"),
    ("", "the video path is empty"),  # not the current folder
    (b"clip.mp4", "not bytes"),  # not a list of ints
    # diffusers' (batch, channels, frames, h, w): the shape passed (it quoted (3, 2, 8, 12)) and the axes to swap
    (torch.rand(1, 3, 2, 8, 12), r"got shape \(1, 3, 2, 8, 12\); channels come before frames here \(diffusers' "
                                 r"\(batch, channels, frames, h, w\) layout\): pass video.transpose\(1, 2\)$"),
    (torch.rand(3, 2, 8, 12), r"got shape \(3, 2, 8, 12\); channels .* pass video.transpose\(0, 1\)$"),
    (torch.rand(2, 4, 8, 12), r"got shape \(2, 4, 8, 12\)$"),  # no layout to suggest
    (torch.rand(3, 1, 8, 12), r"got shape \(3, 1, 8, 12\)$"),  # 3 grey frames as likely: no transpose to suggest
])
def test_video_values_outside_the_unit_range_are_refused(bad, match):
    """Every pipeline reads its input through star_vsr.frames.as_frame_source."""
    from star_vsr.frames import as_frame_source

    with pytest.raises(InputError, match=match):
        list(as_frame_source(bad).iter_chunks(4))
    assert as_frame_source(torch.rand(2, 3, 8, 12) * 1.02).num_frames == 2  # resampling overshoot is fine


def test_array_like_frames_are_frames():
    """Objects with __array__ (xarray, JAX...) in a list are read as their arrays, as np.asarray reads them."""
    from star_vsr.frames import as_frame_source

    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return np.full((8, 12, 3), 255, np.uint8)

    assert next(as_frame_source([ArrayLike()]).iter_chunks(1)).min() == 1.0


def test_grey_frames_are_read_in_every_layout():
    """A list of (h, w) arrays was read as grey, but (h, w, 1) frames and a (frames, h, w, 1) array were refused
    (black-box hunt); a (frames, h, w) array stays refused: a single (h, w, 3) frame has that shape too."""
    from star_vsr.frames import as_frame_source

    grey = np.arange(2 * 5 * 7, dtype=np.uint8).reshape(2, 5, 7) * 3
    expected = torch.from_numpy(grey).float().div(255)[:, None].expand(2, 3, 5, 7)  # (n, 3, h, w), R = G = B
    for video in (list(grey), list(grey[..., None]), grey[..., None]):
        torch.testing.assert_close(next(as_frame_source(video).iter_chunks(2)), expected, rtol=0, atol=0)
    with pytest.raises(InputError, match=r"grey: \(frames, h, w, 1\); one frame: frame\[None\]\), got shape "
                                         r"\(2, 5, 7\)"):
        as_frame_source(grey)


@pytest.mark.parametrize("mode", ["P", "CMYK", "YCbCr", "RGBA", "LA", "L"])
def test_pil_frames_of_any_mode_are_read_as_rgb(mode):
    """In-memory PIL frames were read with np.asarray: palette indices as grey, CMYK and YCbCr as RGB."""
    import warnings

    from PIL import Image

    from star_vsr.frames import as_frame_source

    red = Image.new("RGB", (4, 4), (255, 0, 0)).convert(mode)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixel = next(as_frame_source([red]).iter_chunks(1))[0, :, 0, 0]
    expected = [0.299] * 3 if mode in ("L", "LA") else [1.0, 0.0, 0.0]  # BT.601 grey of red
    torch.testing.assert_close(pixel, torch.tensor(expected), atol=0.01, rtol=0)
    assert any("transparency" in str(w.message) for w in caught) == (mode in ("RGBA", "LA"))


def test_rgba_arrays_drop_alpha_with_one_warning_per_frame_stacked_or_in_a_list():
    """A list of RGBA PIL frames warned three times for two frames (the first was read twice); RGBA arrays
    dropped their alpha without a word in a list and were refused stacked."""
    import warnings

    from PIL import Image

    from star_vsr.frames import as_frame_source

    rgba = np.zeros((2, 4, 6, 4), np.uint8)
    rgba[..., 0] = 255
    for video in (rgba, list(rgba), [Image.fromarray(f) for f in rgba]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frames = torch.cat(list(as_frame_source(video).iter_chunks(1)))
        assert frames.shape == (2, 3, 4, 6) and frames[:, 0].min() == 1 and frames[:, 1:].max() == 0
        assert len(caught) == 2 and all("alpha" in str(w.message) or "transparency" in str(w.message)
                                        for w in caught), [str(w.message) for w in caught]


def test_float_pil_frames_are_read_as_float_values():
    """PIL's RGB conversion of a mode "F" image clips it to 0..255, which turned [0, 1] values into black."""
    from PIL import Image

    from star_vsr.frames import as_frame_source

    grey = Image.fromarray(np.full((4, 6), 0.8, np.float32))
    assert grey.mode == "F"
    frame = next(as_frame_source([grey]).iter_chunks(1))
    torch.testing.assert_close(frame, torch.full((1, 3, 4, 6), 0.8))
    with pytest.raises(InputError, match="divide by 255"):  # 0..255 floats, as for float arrays
        list(as_frame_source([Image.fromarray(np.full((4, 6), 200.0, np.float32))]).iter_chunks(1))


def test_16_bit_grey_pil_frames_use_their_whole_range():
    from PIL import Image

    from star_vsr.frames import as_frame_source

    grey = Image.fromarray(np.full((4, 4), 32768, np.uint16))
    assert grey.mode.startswith("I")
    pixel = next(as_frame_source([grey]).iter_chunks(1))[0, :, 0, 0]
    torch.testing.assert_close(pixel, torch.full((3,), 32768 / 65535))
    colour = np.zeros((4, 4, 3), np.uint16)
    colour[..., 0] = 65535  # a uint16 RGB array (cv2.imread(..., IMREAD_UNCHANGED) of a 16-bit PNG)
    pixel = next(as_frame_source([colour]).iter_chunks(1))[0, :, 0, 0]
    torch.testing.assert_close(pixel, torch.tensor([1.0, 0.0, 0.0]))
    # mode "I" stores no bit depth: decided once per video (a dark frame of a 16-bit fade, no value above 255,
    # was read as 8-bit and flashed 257 times too bright; black-box hunt)
    fade = [Image.fromarray(np.full((4, 4), level, np.int32)) for level in (1000, 200)]
    assert fade[1].mode == "I"
    means = next(as_frame_source(fade).iter_chunks(2)).mean((1, 2, 3))
    torch.testing.assert_close(means, torch.tensor([1000 / 65535, 200 / 65535]))
    assert next(as_frame_source(fade[1:]).iter_chunks(1)).mean() == pytest.approx(200 / 255)  # alone: 8-bit


def test_big_endian_arrays_read_as_their_values():
    """'>u2' / '>f4' arrays (FITS, np.frombuffer(..., '>u2')) failed in torch.from_numpy ("byte order different
    from the native byte order"; black-box review); now read by value, in both the uint16 and the float path."""
    from star_vsr.frames import as_frame_source

    levels = np.random.default_rng(0).integers(0, 65536, (2, 5, 7, 3)).astype(np.uint16)
    native = torch.cat(list(as_frame_source(levels).iter_chunks(2)))
    torch.testing.assert_close(torch.cat(list(as_frame_source(levels.astype(">u2")).iter_chunks(2))), native)
    unit = (levels / 65535.0).astype(np.float32)
    torch.testing.assert_close(torch.cat(list(as_frame_source(unit.astype(">f4")).iter_chunks(2))),
                               torch.cat(list(as_frame_source(unit).iter_chunks(2))))


def test_xformers_missing_is_told_how_to_install_it(pipe, monkeypatch):
    """It said `pip install star-vsr[xformers]`, and star-vsr is not on PyPI."""
    import star_vsr.models.attention

    monkeypatch.setattr(star_vsr.models.attention, "_xformers_available", lambda: False)
    with pytest.raises(DeviceError, match=r"^xformers is not installed: on a CUDA machine `pip install xformers` \(in "
                                         r"a clone of star-vsr, `pip install -e \"\.\[xformers\]\"`\)"):
        pipe.enable_xformers_memory_efficient_attention()


def test_memory_switches_that_change_nothing_say_so(pipe):
    """diffusers' enable_attention_slicing changed nothing in either pipeline (no component slices its attention),
    and the student's enable_xformers_memory_efficient_attention neither, all without a word: a user short of
    memory took them as on (black-box hunt). Each warns, naming what does save memory."""
    import warnings

    from star_vsr.student import build_student_pipeline

    with pytest.warns(UserWarning, match=r"^StarVSRPipeline has no attention slicing; enable_attention_slicing "
                                         r"changes nothing\. .*pass tile_size= \(spatial tiles\), a smaller "
                                         r"chunk_frames= or decode_chunk_size=\.$"):
        pipe.enable_attention_slicing()
    student = build_student_pipeline("tiny")
    with pytest.warns(UserWarning, match=r"^StarStudentPipeline has no attention slicing; .*The student has no "
                                         r"attention layers; its memory grows with the frame size"):
        student.enable_attention_slicing(2)
    with pytest.warns(UserWarning, match="^StarStudentPipeline has no attention layers; "
                                         "enable_xformers_memory_efficient_attention changes nothing$"):
        student.enable_xformers_memory_efficient_attention()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.disable_attention_slicing()  # off already: nothing to say
        student.disable_attention_slicing()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only guards")
def test_gpu_only_options_are_refused_on_cpu(pipe):
    with pytest.raises(DeviceError, match="GPU"):
        pipe.enable_model_cpu_offload()
    from star_vsr.student import build_student_pipeline

    for offload in (pipe.enable_sequential_cpu_offload, build_student_pipeline("tiny").enable_model_cpu_offload):
        with pytest.raises(DeviceError, match="no GPU is available"):  # diffusers' RuntimeError: "requires accelerator"
            offload()
    with pytest.raises(DeviceError):
        pipe.enable_xformers_memory_efficient_attention()
    if not torch.backends.mps.is_available():  # (torch's RuntimeError from inside the move, as cuda's was)
        with pytest.raises(DeviceError, match=r"^to\('mps'\) needs Apple's MPS, and none is available"):
            pipe.to("mps")
    half = tiny_star_pipeline(seed=0).to(torch.float16)
    with pytest.raises(DeviceError, match="bfloat16"):
        run(half, video(n=1))


def test_bfloat16_runs_on_cpu():
    pipe16 = tiny_star_pipeline(seed=0).to(torch.bfloat16)
    out = run(pipe16, video(n=2), num_inference_steps=1)
    assert out.shape == (1, 2, 3, 32, 48) and torch.isfinite(out).all()


@pytest.mark.parametrize("force_upcast", [True, False])
def test_float16_vae_encodes_in_float32_when_its_config_asks(force_upcast):
    """SVD's VAE config sets force_upcast: its encoder may overflow float16, so the hint is encoded in float32
    (as diffusers' SVD pipeline and STAR do) and the VAE is float16 again afterwards. Run on the CPU by calling
    encode_hint directly (the pipeline refuses float16 weights on the CPU)."""
    half = tiny_star_pipeline(seed=0)
    half.vae.to(torch.float16).register_to_config(force_upcast=force_upcast)
    full = tiny_star_pipeline(seed=0)
    full.vae.load_state_dict({k: v.float() for k, v in half.vae.state_dict().items()})  # the same rounded weights
    seen = []
    half.vae.encoder.conv_in.register_forward_hook(lambda module, args, output: seen.append(args[0].dtype))
    lr = video(n=3)
    eps = torch.randn(3, 4, 8, 12, generator=torch.Generator().manual_seed(1))
    hint = half.encode_hint(lr, (32, 48), (8, 12), eps, torch.device("cpu"))
    assert {p.dtype for p in half.vae.parameters()} == {torch.float16}
    if force_upcast:
        assert seen == [torch.float32]
        assert torch.equal(hint, full.encode_hint(lr, (32, 48), (8, 12), eps, torch.device("cpu")))
    else:
        assert seen == [torch.float16] and hint.dtype == torch.float32


def test_wavefront_and_synchronous_orders_give_identical_frames(pipe):
    clip = video(n=7)
    wavefront = run(pipe, clip, num_inference_steps=3, chunk_frames=3, chunk_overlap=1)
    steps = []
    synchronous = run(pipe, clip, num_inference_steps=3, chunk_frames=3, chunk_overlap=1,
                      callback_on_step_end=lambda p, i, t, kw: steps.append(i) or kw)
    assert steps == [0, 1, 2]
    assert torch.equal(wavefront, synchronous)


def test_frames_stream_out_before_the_clip_is_denoised(pipe):
    """Wavefront order: the first frames are decoded while later windows have not started."""
    events = []
    encode = pipe.encode_hint

    def spy_encode(lr, *args, **kwargs):
        events.append(("enter", len(lr)))
        return encode(lr, *args, **kwargs)

    pipe.encode_hint = spy_encode
    try:
        pipe(video(n=30, h=4, w=4), num_inference_steps=2, chunk_frames=4, chunk_overlap=1,
             generator=torch.Generator().manual_seed(0), decode_chunk_size=2,
             frame_sink=lambda chunk: events.append(("out", len(chunk))))
    finally:
        del pipe.encode_hint
    first_out = events.index(("out", 2))
    entered_before_first_output = sum(n for kind, n in events[:first_out] if kind == "enter")
    assert entered_before_first_output < 15  # far from the 30 frames of the clip
    assert sum(n for kind, n in events if kind == "out") == 30


@pytest.mark.parametrize("decode_chunk_size", [1, 2, 20])
def test_a_call_resumed_from_any_state_sink_state_gives_the_rest_of_the_uninterrupted_call(pipe, decode_chunk_size):
    """Every state: after each window evaluation and each decoded chunk (also between two chunks of one
    finished segment, with latents still waiting for the VAE)."""
    clip = video(n=7, h=8, w=12)
    settings = dict(num_inference_steps=2, chunk_frames=4, chunk_overlap=2, decode_chunk_size=decode_chunk_size,
                    tile_size=32, tile_overlap=8)  # overlapping windows and spatial tiles
    whole = run(pipe, clip, **settings)
    states = []
    run(pipe, clip, frame_sink=lambda frames: None, state_sink=lambda done, state: states.append((done, state)),
        **settings)
    done_counts = [done for done, _ in states]
    assert done_counts == sorted(done_counts) and done_counts[0] == 0 and done_counts[-1] == 7
    for done, state in states:
        # another generator: a resumed call takes its seed from the state
        rest = run(pipe, clip, seed=5, state=state, start_frame=done, **settings)
        assert torch.equal(rest, whole[:, done:]), done
    if decode_chunk_size == 1:
        return
    assert any("decode_queue" in state.tensors for _, state in states)  # latents waiting for the VAE are kept
    done, state = next((done, state) for done, state in states if done)
    with pytest.raises(InputError, match="start_frame needs the state"):
        run(pipe, clip, start_frame=done, **settings)
    with pytest.raises(InputError, match="taken after frame"):
        run(pipe, clip, state=state, start_frame=done + 1, **settings)
    with pytest.raises(InputError, match="does not fit this call"):
        run(pipe, video(n=8, h=8, w=12), state=state, start_frame=done, **settings)
    # another video of the same length and size: its rest was denoised from a state of the first (black-box API)
    with pytest.raises(InputError, match=r"the state was taken on another video: frame \d+ of this one is not"):
        run(pipe, video(n=7, h=8, w=12, seed=1), state=state, start_frame=done, **settings)
    older = copy.deepcopy(state)  # a state saved before the frame was kept: not checked
    del older.tensors["last_hint_frame"]
    assert torch.equal(run(pipe, clip, state=older, start_frame=done, **settings), whole[:, done:])
    with pytest.raises(InputError, match="other temporal windows"):
        run(pipe, clip, state=state, start_frame=done, **{**settings, "num_inference_steps": 3})
    # start latents: frames not yet in the sampler start from them, so a resume must have the same ones
    start = torch.randn(run(pipe, clip, output_type="latent", **settings).shape[1:],
                        generator=torch.Generator().manual_seed(3))
    given = []
    whole_given = run(pipe, clip, latents=start, frame_sink=lambda frames: None,
                      state_sink=lambda done, state: given.append((done, state)), **settings)
    assert whole_given is None
    done_given, state_given = given[1]
    rest = run(pipe, clip, latents=start, state=state_given, start_frame=done_given, **settings)
    assert torch.equal(rest, run(pipe, clip, latents=start, **settings)[:, done_given:])
    for latents in (None, start + 1):  # went on from the hint (or other latents) without a word
        with pytest.raises(InputError, match=r"does not fit this call \(latents differ: latents '[0-9a-f]{16}' -> "):
            run(pipe, clip, latents=latents, state=state_given, start_frame=done_given, **settings)
    with pytest.raises(InputError, match=r"does not fit this call \(latents differ: latents None -> '"):
        run(pipe, clip, latents=start, state=state, start_frame=done, **settings)
    # other tiles or guidance: the rest computed otherwise, without a word (black-box API test)
    for changed in ({"tile_size": None, "tile_overlap": None}, {"tile_overlap": 4}, {"guidance_scale": 3.0}):
        with pytest.raises(InputError, match=r"does not fit this call \((tiles|guidance) differ: \1 \["):
            run(pipe, clip, state=state, start_frame=done, **{**settings, **changed})
    # ... and so did other prompts or another colour fix (black-box API test)
    for changed in ({"prompt": "a cat"}, {"negative_prompt": None}, {"color_fix": None}, {"decode_chunk_size": 5}):
        (name, value), = changed.items()
        with pytest.raises(InputError, match=rf"does not fit this call \({name} differ: {name} .* -> "
                                             rf"{re.escape(repr(value))}\)$") as refused:
            run(pipe, clip, state=state, start_frame=done, **{**settings, **changed})
        assert name == "negative_prompt" or len(str(refused.value)) < 200  # (both records: 1,650 characters)
    # NumPy numbers, which the call takes: the state must stay JSON (upscale saves it so)
    numpy_states = []
    run(pipe, clip, frame_sink=lambda frames: None, state_sink=lambda done, state: numpy_states.append(state),
        **{**settings, "tile_size": np.int64(32), "guidance_scale": np.float32(7.5)})
    json.dumps(numpy_states[-1].metadata)
    older = copy.deepcopy(state)  # a state saved before tiles and guidance were recorded: compared on what it has
    older.metadata["run"] = {key: older.metadata["run"][key] for key in ("frames", "latent_shape", "out_size")}
    assert torch.equal(run(pipe, clip, state=older, start_frame=done, **settings), whole[:, done:])
    older.metadata["run"]["prompts"] = ["recorded by another version", None]  # an entry this version does not
    assert torch.equal(run(pipe, clip, state=older, start_frame=done, **settings), whole[:, done:])  # know ("-> None")
    with pytest.raises(InputError, match="no callback_on_step_end"):
        run(pipe, clip, state_sink=lambda done, state: None, output_type="latent", **settings)
