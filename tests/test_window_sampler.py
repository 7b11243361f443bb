"""WindowedSampler: frames advance per segment; memory bounded in clip length; orders agree."""

from __future__ import annotations

import pytest
import torch

from star_vsr.errors import InputError
from star_vsr.scheduling import make_star_scheduler, star_timesteps
from star_vsr.tiling import blend_weights
from star_vsr.window_sampler import FrameNoise, WindowedSampler


def run_sampler(num_frames: int, order: str = "wavefront", steps: int = 4, size: int = 6, overlap: int = 2):
    scheduler = make_star_scheduler()
    scheduler.set_timesteps(timesteps=star_timesteps(900, steps))
    sampler = WindowedSampler(blend_weights(num_frames, size, overlap), scheduler, FrameNoise(7), order=order)
    alive, peak, out = set(), 0, []

    def prepare(start, stop):
        nonlocal peak
        alive.update(range(start, stop))
        peak = max(peak, len(alive))
        x = torch.arange(start, stop, dtype=torch.float32)[:, None, None, None].expand(-1, 2, 3, 3) / num_frames
        return x.clone(), x.clone()

    def denoise(x, hint, t):  # depends on the whole window, like a real model
        return 0.5 * x - 0.3 * hint + 0.1 * x.mean() + 0.001 * float(t)

    def finish(start, stop, latents):
        alive.difference_update(range(start, stop))
        out.append((start, latents))

    sampler.run(prepare, denoise, finish)
    starts = [s for s, _ in out]
    assert starts == sorted(starts)  # frames leave in order
    return torch.cat([x for _, x in out]), peak


def test_orders_agree_exactly():
    wavefront, _ = run_sampler(23, "wavefront")
    synchronous, _ = run_sampler(23, "synchronous")
    assert wavefront.shape == (23, 2, 3, 3)
    assert torch.equal(wavefront, synchronous)


def test_live_frames_do_not_grow_with_clip_length():
    _, peak_short = run_sampler(60)
    _, peak_long = run_sampler(600)
    assert peak_long == peak_short < 60
    _, peak_sync = run_sampler(60, "synchronous")
    assert peak_sync == 60  # the synchronous order holds the whole clip


def test_frame_noise_does_not_depend_on_grouping():
    a = FrameNoise(3).draw(0, 6, (2, 2))
    noise = FrameNoise(3)
    b = torch.cat([noise.draw(0, 2, (2, 2)), noise.draw(2, 6, (2, 2))])
    assert torch.equal(a, b)
    assert not torch.equal(a, FrameNoise(4).draw(0, 6, (2, 2)))


def test_single_window_single_frame():
    out, peak = run_sampler(1, steps=2)
    assert out.shape == (1, 2, 3, 3) and peak == 1


def test_unknown_order():
    with pytest.raises(ValueError):
        WindowedSampler(blend_weights(4, 4, 0), make_star_scheduler(), FrameNoise(0), order="random")


def test_a_sampler_resumed_from_any_state_finishes_exactly_as_the_uninterrupted_one():
    steps, windows = 3, blend_weights(14, 5, 2)

    def make():
        scheduler = make_star_scheduler()
        scheduler.set_timesteps(timesteps=star_timesteps(900, steps))
        return WindowedSampler(windows, scheduler, FrameNoise(7))

    entered, calls = [], []

    def prepare(start, stop):
        entered.append(start)
        x = torch.arange(start, stop, dtype=torch.float32)[:, None, None, None].expand(-1, 2, 3, 3) / 14
        return x.clone(), x.clone() + 0.5

    def denoise(x, hint, t):  # depends on the whole window, like a real model
        calls.append(1)
        return 0.5 * x - 0.3 * hint + 0.1 * x.mean() + 0.001 * float(t)

    whole, states, sampler = {}, [], make()
    sampler.run(prepare, denoise, lambda start, stop, x: whole.update({start: x}),
                after_window=lambda: states.append((sampler.evaluations_done(), sampler.state_dict())))
    total = len(windows) * steps
    assert len(calls) == total and [done for done, _ in states] == list(range(1, total + 1))
    assert any(state.metadata["finished"] for _, state in states[:total // 2])  # frames leave mid-way
    for done, state in states[::3]:
        entered.clear(), calls.clear()
        rest, resumed = {}, make()
        resumed.load_state_dict(state)
        assert resumed.evaluations_done() == done
        resumed.run(prepare, denoise, lambda start, stop, x: rest.update({start: x}))
        assert len(calls) == total - done  # only what was left is evaluated
        waiting = [s.start for s, entry in zip(resumed.segments, state.metadata["segments"])
                   if entry["level"] == 0 and "scheduler" not in entry]
        assert entered == waiting  # frames that had entered are not prepared again
        finished = [s.start for s in resumed.segments][:state.metadata["finished"]]
        assert sorted(rest) == [start for start in sorted(whole) if start not in finished]
        assert all(torch.equal(rest[start], whole[start]) for start in rest)
    other = WindowedSampler(blend_weights(14, 6, 2), make().scheduler, FrameNoise(7))
    with pytest.raises(InputError, match="other temporal windows"):
        other.load_state_dict(states[0][1])
