"""Fingerprints: short hashes that tell whether weights, tensors or input files are the ones a saved run used.

A resumed upscale (``star_vsr.resume``), a teacher cache (``star_vsr.distill``) and the training data record
(``star_vsr.data``) compare them to refuse going on with other weights, latents or inputs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import torch

#: Values of each weight tensor of a diffusion model that its fingerprint reads (all of a student's).
FINGERPRINT_SAMPLES = 4096


def diffusion_models(pipe: Any) -> list[torch.nn.Module]:
    """The models of a ``StarVSRPipeline`` whose weights decide its outputs."""
    return [pipe.unet, pipe.controlnet, pipe.vae, pipe.text_encoder]


def diffusion_weights_fingerprint(pipe: Any) -> str:
    """`weights_fingerprint` of a ``StarVSRPipeline``'s models, sampled (``FINGERPRINT_SAMPLES`` values per tensor)."""
    return weights_fingerprint(diffusion_models(pipe), FINGERPRINT_SAMPLES)


def weights_fingerprint(modules: list[torch.nn.Module], samples: Optional[int] = None,
                        cast: Optional[torch.dtype] = None) -> str:
    """A hash of the modules' weights (names and values, in float32): of every value, or with ``samples``
    of ``samples`` evenly spaced values of each tensor and its shape (a multi-gigabyte diffusion model
    is not read whole at every start; another checkpoint differs in nearly all of them). With ``cast``, of the
    weights cast to that dtype first: float32 weights' ``cast=torch.bfloat16`` hash is the hash of the same
    weights loaded in bfloat16."""
    weights = hashlib.sha256()
    for module in modules:
        for name, tensor in module.state_dict().items():
            weights.update(name.encode())
            values = tensor.detach().reshape(-1)
            if samples is not None:
                weights.update(str(tuple(tensor.shape)).encode())
                if values.numel() > samples:  # integer positions: float32 ones round past the end above 2^24
                    values = values[torch.arange(samples, device=values.device) * (values.numel() - 1) // (samples - 1)]
            if cast is not None and values.is_floating_point():
                values = values.to(cast)
            weights.update(values.float().cpu().numpy().tobytes())
    return weights.hexdigest()[:16]


def tensor_digest(tensor: torch.Tensor) -> str:
    """A hash of a tensor's dtype, shape and values (in float64: bfloat16 has no NumPy type), one slice of the first
    dimension at a time (a float64 copy of a whole clip's latents took 2.5 GB at 4K)."""
    digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    for part in tensor.detach().reshape(1, -1) if tensor.dim() == 0 else tensor.detach():
        digest.update(part.to("cpu", torch.float64).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


#: The dtypes a float32 teacher's weights are also fingerprinted in (``cast_weights_fingerprints``).
CAST_DTYPES = (torch.float16, torch.bfloat16)


def cast_weights_fingerprints(modules: list[torch.nn.Module], samples: Optional[int] = None) -> dict[str, str]:
    """``weights_fingerprint(modules, samples, cast)`` by dtype name for each of ``CAST_DTYPES``, when the
    modules are float32 (empty otherwise: half-precision weights cast back up are not the float32 ones), so that
    the same weights loaded in another precision are recognised as such."""
    floats = [p.dtype for module in modules for p in module.parameters() if p.is_floating_point()]
    if not floats or any(dtype != torch.float32 for dtype in floats):
        return {}
    return {str(dtype).removeprefix("torch."): weights_fingerprint(modules, samples, dtype) for dtype in CAST_DTYPES}


def input_fingerprint(path: Path, files: Optional[list[Path]] = None) -> list[int]:
    """[bytes, latest modification time in ns, files] of an input file or image folder (of its ``files``: default
    every file in it)."""
    if files is None:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [f.stat() for f in files]
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0), len(stats)]


def folder_files_fingerprint(files: list[Path]) -> str:
    """A hash of the name, size and modification time of each of an image folder's ``files``, which frames
    swapped by renaming them change (`input_fingerprint` sums sizes and takes the latest time: it did not)."""
    entries = [(f.name, stat.st_size, stat.st_mtime_ns) for f, stat in ((f, f.stat()) for f in files)]
    return hashlib.sha256(repr(entries).encode()).hexdigest()[:16]
