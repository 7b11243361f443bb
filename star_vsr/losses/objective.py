"""STAR's training objective: v-prediction MSE plus the dynamic frequency loss on decoded frames.

With the variance-preserving schedule ``alpha_t = sqrt(alpha_bar_t)``,
``sigma_t = sqrt(1 - alpha_bar_t)`` and clean latents ``x0``:

    x_t      = alpha_t x0 + sigma_t eps                  (forward process)
    v        = alpha_t eps - sigma_t x0                  (v-prediction target, Salimans & Ho 2022)
    x0_hat   = alpha_t x_t - sigma_t v_hat               (clean estimate from the prediction)
    L        = w_v * mean (v_hat - v)^2 + b(t) * L_DF(D(x0_hat), x_pixels)

where ``D`` is the VAE decoder and ``L_DF`` the ``DynamicFrequencyLoss``. The decode runs *with
gradient*, so the frequency term trains the network (STAR's released code decoded under
``torch.no_grad()``, which left the term without any gradient). To bound memory, only a random
window of ``decode_frames`` consecutive frames and an optional random spatial crop of the
latents is decoded; turn on the VAE's gradient checkpointing for large frames.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from star_vsr.errors import InputError, check_whole_number
from star_vsr.losses.frequency import DynamicFrequencyLoss


@dataclass
class StarLossOutput:
    """Losses of one batch (all scalars).

    Args:
        loss: ``v_weight * loss_v + loss_dfl``, what to back-propagate.
        loss_v: mean squared error of the v-prediction.
        loss_dfl: ``mean_b[b(t) * L_DF]`` (0 when the frequency term is off).
        loss_low: mean over the batch of the unweighted low-band distance (0 when off).
        loss_high: mean over the batch of the unweighted high-band distance (0 when off).
    """

    loss: torch.Tensor
    loss_v: torch.Tensor
    loss_dfl: torch.Tensor
    loss_low: torch.Tensor
    loss_high: torch.Tensor


def _per_sample(values: torch.Tensor, timesteps: torch.Tensor, ndim: int) -> torch.Tensor:
    """``values[timesteps]`` shaped (b, 1, ..., 1) to broadcast against an ``ndim`` tensor."""
    picked = values.to(timesteps.device)[timesteps].float()  # (b,)
    return picked.reshape(-1, *([1] * (ndim - 1)))


class StarDiffusionLoss(nn.Module):
    r"""v-prediction loss plus ``b(t) * L_DF`` on VAE-decoded clean estimates.

    Parameters:
        alphas_cumprod (`torch.Tensor`): ``alpha_bar_t`` for t = 0..T-1 (e.g. ``scheduler.alphas_cumprod``
            of STAR's schedule).
        v_weight (`float`, defaults to 1.0): weight ``w_v`` of the v-prediction MSE (0 keeps only the
            frequency term, which is how the tests prove that term has a gradient).
        frequency_loss (`DynamicFrequencyLoss`, *optional*): the ``b(t) * L_DF`` term; None turns it off
            (and skips the decode).
        decode_frames (`int`, *optional*): consecutive frames per clip decoded for the frequency term,
            from a random start; None decodes every frame.
        decode_crop (`tuple[int, int]`, *optional*): (height, width) of a random crop of the latents,
            in latent pixels, decoded for the frequency term; None decodes whole frames.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, v_weight: float = 1.0,
                 frequency_loss: Optional[DynamicFrequencyLoss] = None, decode_frames: Optional[int] = None,
                 decode_crop: Optional[tuple[int, int]] = None) -> None:
        super().__init__()
        if not (isinstance(v_weight, numbers.Real) and math.isfinite(v_weight) and v_weight >= 0):  # (NaN: NaN losses)
            raise InputError(f"v_weight must be a finite number >= 0, got {v_weight!r}")
        if decode_frames is not None:  # (2.5 failed in the first step's randint)
            check_whole_number("decode_frames", decode_frames, 1)
            decode_frames = int(decode_frames)
        if decode_crop is not None:
            if not (isinstance(decode_crop, (tuple, list)) and len(decode_crop) == 2):  # ((2,): an IndexError)
                raise InputError(f"decode_crop must be (height, width) in latent pixels, or None, got {decode_crop!r}")
            for side in decode_crop:
                check_whole_number("decode_crop's sides", side, 1)
            decode_crop = (int(decode_crop[0]), int(decode_crop[1]))
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().float().clone(), persistent=False)
        self.v_weight = float(v_weight)
        self.frequency_loss = frequency_loss
        self.decode_frames = decode_frames
        self.decode_crop = decode_crop

    @property
    def num_train_timesteps(self) -> int:
        """T, the number of diffusion timesteps of the noise schedule (``alphas_cumprod``'s length)."""
        return self.alphas_cumprod.shape[0]

    def check_timesteps(self, timesteps: torch.Tensor) -> None:
        """``InputError`` unless ``timesteps`` is a (b,) integer tensor of steps in [0, T) (t = -1 was the noisiest
        step, by Python's indexing, while the frequency term weighted it as the cleanest one). Checked by the
        entry points (``add_noise``, ``forward``), once per call: it waits for the device."""
        if timesteps.ndim != 1 or timesteps.is_floating_point() or timesteps.is_complex() \
                or timesteps.dtype == torch.bool:
            raise InputError(f"timesteps must be a (b,) tensor of integer steps, got a {tuple(timesteps.shape)} "
                             f"tensor of {timesteps.dtype}")
        if timesteps.numel():
            low, high = (int(value) for value in torch.aminmax(timesteps))
            if not 0 <= low <= high < self.num_train_timesteps:
                raise InputError(f"timesteps must be in [0, {self.num_train_timesteps}) (the schedule's steps), got "
                                 f"{low} to {high}")

    def alpha_sigma(self, timesteps: torch.Tensor, ndim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` per sample, each (b, 1, ..., 1) float32 for an ``ndim`` tensor."""
        alpha_bar = _per_sample(self.alphas_cumprod, timesteps, ndim)
        return alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x_t = alpha_t x0 + sigma_t eps`` for latents (b, n, c, h, w) and timesteps (b,)."""
        self.check_timesteps(timesteps)
        alpha, sigma = self.alpha_sigma(timesteps, latents.ndim)
        return (alpha * latents.float() + sigma * noise.float()).to(latents.dtype)

    def velocity(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Target ``v = alpha_t eps - sigma_t x0`` (float32)."""
        alpha, sigma = self.alpha_sigma(timesteps, latents.ndim)
        return alpha * noise.float() - sigma * latents.float()

    def predict_x0(self, noisy_latents: torch.Tensor, v_pred: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Clean estimate ``x0_hat = alpha_t x_t - sigma_t v_hat`` (float32, differentiable in ``v_pred``)."""
        alpha, sigma = self.alpha_sigma(timesteps, v_pred.ndim)
        return alpha * noisy_latents.float() - sigma * v_pred.float()

    def decode_window(self, num_frames: int, latent_size: tuple[int, int], generator: Optional[torch.Generator]
                      ) -> tuple[slice, slice, slice]:
        """Random (frames, rows, cols) window of the latents that the frequency term decodes.

        Drawn on the generator's device (the CPU by default), so the same generator gives the
        same window on any accelerator.
        """
        device = generator.device if generator is not None else "cpu"

        def start(extent: int, size: int) -> int:
            if size >= extent:
                return 0
            return int(torch.randint(0, extent - size + 1, (1,), generator=generator, device=device))

        k = num_frames if self.decode_frames is None else min(self.decode_frames, num_frames)
        f0 = start(num_frames, k)
        h, w = latent_size
        ch, cw = (h, w) if self.decode_crop is None else (min(self.decode_crop[0], h), min(self.decode_crop[1], w))
        y0, x0 = start(h, ch), start(w, cw)
        return slice(f0, f0 + k), slice(y0, y0 + ch), slice(x0, x0 + cw)

    def forward(self, v_pred: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor, noisy_latents: torch.Tensor,
                timesteps: torch.Tensor, target_frames: Optional[torch.Tensor] = None, vae: Optional[nn.Module] = None,
                generator: Optional[torch.Generator] = None) -> StarLossOutput:
        r"""Losses of one batch.

        Args:
            v_pred: the model's v-prediction, (b, n, c, h, w).
            latents: clean latents ``x0`` (scaled by the VAE's scaling factor), (b, n, c, h, w).
            noise: the noise ``eps`` used for ``noisy_latents``, same shape.
            noisy_latents: ``x_t``, same shape.
            timesteps: (b,) integer timesteps.
            target_frames: ground-truth frames in the VAE's range [-1, 1], (b, n, 3, H, W); needed with
                the frequency term. ``H / h`` is the VAE's downsampling factor.
            vae: the (frozen) VAE whose ``decode(z, num_frames=k)`` maps latents to frames; needed with
                the frequency term. Its parameters may be frozen: gradient still flows to ``v_pred``.
            generator: draws the decode window (frames and crop).
        """
        shapes = {name: tuple(value.shape) for name, value in
                  (("v_pred", v_pred), ("latents", latents), ("noise", noise), ("noisy_latents", noisy_latents))}
        if len(set(shapes.values())) > 1 or v_pred.ndim != 5 or tuple(timesteps.shape) != (v_pred.shape[0],):
            # (broadcast with only torch's warning when the frequency term, which checks them, was off)
            raise InputError(f"v_pred, latents, noise and noisy_latents must be (b, n, c, h, w) of one shape and "
                             f"timesteps (b,), got {shapes} and timesteps {tuple(timesteps.shape)}")
        self.check_timesteps(timesteps)
        v_target = self.velocity(latents, noise, timesteps)  # (b, n, c, h, w)
        loss_v = F.mse_loss(v_pred.float(), v_target)
        zero = loss_v.new_zeros(())
        if self.frequency_loss is None:
            return StarLossOutput(loss=self.v_weight * loss_v, loss_v=loss_v, loss_dfl=zero, loss_low=zero,
                                  loss_high=zero)
        if vae is None or target_frames is None:
            raise InputError("the frequency term needs `vae` and `target_frames` (ground truth in [-1, 1])")

        # 1. clean estimate and the window to decode
        x0_hat = self.predict_x0(noisy_latents, v_pred, timesteps)  # (b, n, c, h, w)
        b, n, c, h, w = x0_hat.shape
        factor = target_frames.shape[-1] // w
        if target_frames.shape[:2] != (b, n) or target_frames.shape[-2:] != (h * factor, w * factor):
            raise InputError(f"target_frames {tuple(target_frames.shape)} do not match latents {tuple(x0_hat.shape)} "
                             f"at a VAE factor of {factor}")
        frames, rows, cols = self.decode_window(n, (h, w), generator)
        z = x0_hat[:, frames, :, rows, cols]  # (b, k, c, hc, wc)
        k, hc, wc = z.shape[1], z.shape[3], z.shape[4]

        # 2. decode with gradient (the temporal decoder sees the k consecutive frames of each clip)
        scaling = vae.config.scaling_factor
        decoded = vae.decode(z.reshape(b * k, c, hc, wc).to(vae.dtype) / scaling, num_frames=k).sample
        decoded = decoded.reshape(b, k, -1, hc * factor, wc * factor)  # (b, k, 3, Hc, Wc) in [-1, 1]
        pixel_rows = slice(rows.start * factor, rows.stop * factor)
        pixel_cols = slice(cols.start * factor, cols.stop * factor)
        target = target_frames[:, frames, :, pixel_rows, pixel_cols]  # (b, k, 3, Hc, Wc)

        # 3. b(t) * L_DF
        terms = self.frequency_loss.terms(decoded, target, timesteps)
        loss = self.v_weight * loss_v + terms.loss
        return StarLossOutput(loss=loss, loss_v=loss_v, loss_dfl=terms.loss, loss_low=terms.loss_low.mean(),
                              loss_high=terms.loss_high.mean())
