"""``star-vsr convert-star``: turn STAR's released files into a StarVSRPipeline folder.

Needs three downloads (nothing is fetched by this command):
  --checkpoint  STAR's light_deg.pt or heavy_deg.pt (Hugging Face: SherryX/STAR, I2VGen-XL-based)
  --openclip    OpenCLIP ViT-H-14 open_clip_pytorch_model.bin (laion/CLIP-ViT-H-14-laion2B-s32B-b79K)
  --vae         the Stable Video Diffusion VAE folder (stabilityai/stable-video-diffusion-img2vid,
                subfolder vae: config.json + diffusion_pytorch_model[.fp16].safetensors)
The output folder loads with ``StarVSRPipeline.from_pretrained(folder)`` and
``star-vsr upscale --model folder``. It is written to a temporary folder and renamed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError, MissingWeightsError, OutputExistsError, load_failure, why_missing
from .arguments import ParagraphsHelpFormatter, path_argument
from ..json_files import loads_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert-star", help="convert STAR's released weights into a pipeline folder",
                                   description=__doc__, formatter_class=ParagraphsHelpFormatter)
    parser.add_argument("--checkpoint", type=path_argument, required=True, help="STAR light_deg.pt / heavy_deg.pt")
    parser.add_argument("--openclip", type=path_argument, required=True,
                        help="OpenCLIP ViT-H-14 open_clip_pytorch_model.bin")
    parser.add_argument("--vae", type=path_argument, required=True, help="Stable Video Diffusion VAE folder")
    parser.add_argument("-o", "--output", type=path_argument, required=True, help="pipeline folder to write")
    parser.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"),
                        help="precision of the saved weights (default fp16, as released)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="read checkpoints that hold Python objects besides tensors (full unpickling, which "
                             "can run code from the file: only for files from the STAR / OpenCLIP releases). "
                             "By default only tensors and plain containers are read")
    parser.add_argument("--unet-config", type=path_argument,
                        help="JSON file with the StarVSRUNetModel config keys in which a checkpoint of another "
                             "size differs from the released architecture (default: the released architecture)")
    parser.set_defaults(func=run)


RELEASE_FILES = {"--checkpoint": "light_deg.pt or heavy_deg.pt", "--openclip": "open_clip_pytorch_model.bin"}
"""The released file each flag takes (``MISSING_WEIGHTS_HELP`` says where to get them)."""


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        from ..pipelines.pipeline_star_vsr import MISSING_WEIGHTS_HELP

        raise MissingWeightsError(f"{what} was not found at {path}.\n{MISSING_WEIGHTS_HELP}")
    return path


def _load_vae(folder: Path, dtype: Any) -> Any:  # (a torch.dtype; the AutoencoderKLTemporalDecoder)
    import torch
    from diffusers import AutoencoderKLTemporalDecoder

    try:  # another VAE (Stable Diffusion's AutoencoderKL) loaded in part, and saving it failed with a traceback
        name = loads_json((folder / "config.json").read_text(encoding="utf-8")).get("_class_name")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise MissingWeightsError(f"--vae {folder}: its config.json is damaged ({_first_line(error)}); download "
                                  f"the vae folder of stabilityai/stable-video-diffusion-img2vid again") from None
    if name not in (None, "AutoencoderKLTemporalDecoder"):
        raise InputError(f"--vae {folder} holds the model {name}, not Stable Video Diffusion's "
                         f"AutoencoderKLTemporalDecoder: give the vae folder of "
                         f"stabilityai/stable-video-diffusion-img2vid")

    # SVD's repository ships a float32 and an fp16 variant: read the one of the precision asked for, and only
    # variants that are there (diffusers logs an ERROR for a missing one before falling back, which would read
    # as a failed conversion)
    have = {"fp16": any(folder.glob("diffusion_pytorch_model.fp16.*")),
            None: any((folder / f"diffusion_pytorch_model.{ext}").is_file() for ext in ("safetensors", "bin"))}
    order = ["fp16", None] if dtype == torch.float16 or not have[None] else [None, "fp16"]
    variants = [variant for variant in order if have[variant]] or [None]
    errors = []
    for variant in variants:
        # the format that is there: asked for the .safetensors file of a folder of .bin weights, diffusers logged
        # an error before it fell back (black-box hunt)
        safetensors = any(folder.glob(f"diffusion_pytorch_model{'.' + variant if variant else ''}.safetensors*"))
        try:
            with _diffusers_warnings_off():  # (its lists of unused and missing keys, before the one-line error)
                vae = AutoencoderKLTemporalDecoder.from_pretrained(folder, variant=variant, dtype=dtype,
                                                                   local_files_only=True, use_safetensors=safetensors)
        except (OSError, ValueError, KeyError) as error:  # no (or a damaged) weights file for this variant
            misfit = re.search(r"because (\S+) expected shape torch.Size\((\[.*?\])\), but got "
                               r"torch.Size\((\[.*?\])\)", str(error))
            if misfit:  # (it said "no ... weights in", with diffusers' advice to ignore_mismatched_sizes)
                raise InputError(f"--vae {folder}: its weights do not fit its config.json ({misfit[1]} is "
                                 f"{misfit[3]} in the weights, {misfit[2]} by the config); give the vae folder of "
                                 f"stabilityai/stable-video-diffusion-img2vid as it is downloaded") from None
            errors.append(str(error).splitlines()[0])
            continue
        if any(parameter.is_meta for parameter in vae.parameters()):  # weights of another model: left unloaded
            raise InputError(f"--vae {folder}: its weights do not fit AutoencoderKLTemporalDecoder (some are "
                             f"missing); give the vae folder of stabilityai/stable-video-diffusion-img2vid")
        return vae
    raise MissingWeightsError(f"no AutoencoderKLTemporalDecoder weights in {folder}: {'; '.join(errors)}")


@contextlib.contextmanager
def _diffusers_warnings_off() -> Iterator[None]:
    """diffusers' logging at ERROR and above only, for the block."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def _unet_config(path: Path, released: dict[str, Any]) -> dict[str, Any]:
    """The released UNet config with the keys of the JSON file at ``path`` replaced; ``liem_placement`` stays
    STAR's ``before_norm`` (another one in the file is warned of)."""
    from ..models import StarVSRUNetModel

    if not path.is_file():  # the user's own file: STAR's download steps would not help
        raise InputError(f"--unet-config {path} " + ("is a folder; it takes a JSON file" if path.is_dir() else
                                                       "is not a regular file" if path.exists() else
                                                       why_missing(path)))
    try:
        changes = loads_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"--unet-config {path} is not valid JSON: {error}") from None
    if not isinstance(changes, dict):
        raise InputError(f"--unet-config {path} must hold a JSON object of StarVSRUNetModel config keys")
    valid = set(inspect.signature(StarVSRUNetModel.__init__).parameters) - {"self"}
    unknown = sorted(k for k in changes if k not in valid and not k.startswith("_"))
    if unknown:
        raise InputError(f"--unet-config {path}: unknown StarVSRUNetModel keys {unknown}; valid: {sorted(valid)}")
    if changes.get("liem_placement", "before_norm") != "before_norm":  # (replaced without a word)
        warnings.warn(f"--unet-config {path}: liem_placement {changes['liem_placement']!r} does not apply: a "
                      f"converted STAR checkpoint has STAR's own, before_norm")
    return {**released, **{k: v for k, v in changes.items() if not k.startswith("_")}, "liem_placement": "before_norm"}


def _meta_models(unet_config: dict[str, Any], source: str) -> tuple[Any, Any]:
    """The UNet and ControlNet of ``unet_config`` on the meta device (no memory), before any checkpoint is read:
    an ``InputError`` naming ``source`` for a config that builds no model (a traceback after the reading)."""
    import torch

    from ..models import StarVSRControlNetModel, StarVSRUNetModel

    try:
        with torch.device("meta"):
            unet = StarVSRUNetModel.from_config(unet_config)
            controlnet = StarVSRControlNetModel.from_unet(unet, load_weights_from_unet=False)
    except Exception as error:  # noqa: BLE001 (any failure to build from the user's values: a negative width's
        # RuntimeError, a ZeroDivisionError for 0 groups, ...)
        raise InputError(f"{source} builds no StarVSRUNetModel ({type(error).__name__}: {_first_line(error)})") \
            from None
    return unet, controlnet


def _load_checkpoint(path: Path, trust: bool = False, flag: str = "--checkpoint") -> dict[str, Any]:
    """A state dict read without copying it into memory where the file format allows (mmap).

    Only tensors and plain containers are unpickled unless ``trust`` (``--trust-checkpoint``): a checkpoint
    saved with other Python objects in it (training arguments, say) is refused with a message naming the flag.
    A file that holds something else than a state dict (a list, one tensor, keys that are not names) is refused
    naming ``flag`` and the released file it takes (`RELEASE_FILES`).
    """
    return _state_dict(_read_checkpoint(path, trust), path, flag)


def _state_dict(loaded: Any, path: Path, flag: str) -> dict[str, Any]:
    """``loaded`` when it is a state dict (parameter names -> tensors), bare or under one of `WRAPPER_KEYS`."""
    import torch

    from ..conversion.star_checkpoint import wrapper_key

    # a training checkpoint: {"state_dict": ...}, {"module": ...}, {"model": ...}; a "state_dict" that holds no
    # mapping is named in the refusal below ('holds a list under "state_dict"')
    wrapped = wrapper_key(loaded) or ("state_dict" if isinstance(loaded, dict) and "state_dict" in loaded else None)
    inner = loaded[wrapped] if wrapped else loaded
    if isinstance(inner, dict) and inner and all(isinstance(key, str) for key in inner):
        tensors = {key: value for key, value in inner.items() if isinstance(value, torch.Tensor)}
        others = sorted(key for key in inner if key not in tensors)  # (a traceback where the converter read them)
        if others and tensors:
            warnings.warn(f"{flag} {path}: {len(others)} entries that are not tensors are left out: "
                          f"{', '.join(others[:5])}{', ...' if len(others) > 5 else ''}")
        if tensors:
            return tensors
    what = ("nothing" if isinstance(inner, dict) and not inner else
            f"no tensors ({', '.join(f'{key}: {type(inner[key]).__name__}' for key in sorted(inner)[:5])})"
            if isinstance(inner, dict) and all(isinstance(key, str) for key in inner) else
            "a mapping whose keys are not all parameter names" if isinstance(inner, dict) else
            f"a {type(inner).__name__}") + (f' under "{wrapped}"' if wrapped else "")
    raise InputError(f"{flag} {path} holds {what}, not a state dict (parameter names -> tensors); is it "
                     f"{RELEASE_FILES[flag]}?")


def _read_checkpoint(path: Path, trust: bool) -> Any:
    """What ``torch.load`` gives for ``path`` (see `_load_checkpoint`)."""
    import pickle

    import torch

    try:
        if _is_safetensors(path):  # by its bytes: torch 2.14 reads one by its suffix alone (a renamed file was
            return _read_safetensors(path)  # "Unsupported operand 56": black-box hunt), older ones not at all
        try:
            return torch.load(path, map_location="cpu", weights_only=not trust, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            return torch.load(path, map_location="cpu", weights_only=not trust)  # the legacy (non-zip) format
    except pickle.UnpicklingError as error:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(error))  # (torch's
        if trust or not found:  # restricted unpickler) a damaged or foreign file; never torch's advice to load it
            raise InputError(f"cannot read {path} as a PyTorch checkpoint ({load_failure(error)}); is the download "
                             f"complete?") from error  # with weights_only=False
        raise InputError(f"{path} holds Python objects besides tensors ({found.group(1)}), which star-vsr does not "
                         "unpickle by default (unpickling can run code from the file). If the file comes from "
                         "the STAR or OpenCLIP release, add --trust-checkpoint.") from error
    except InputError:  # (a damaged safetensors file, said as one)
        raise
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise InputError(f"cannot read {path} as a PyTorch checkpoint ({_first_line(error)}); "
                         "is the download complete?") from error


def _read_safetensors(path: Path) -> dict[str, Any]:
    """The tensors of the safetensors file ``path``; an ``InputError`` for a damaged one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as error:
        raise InputError(f"cannot read {path} as a safetensors file ({_first_line(error)}); is the download "
                         f"complete?") from error


def _is_safetensors(path: Path) -> bool:
    """Whether the file ``path`` starts as a safetensors file does: the length of its JSON header (8 bytes, little
    endian, less than the file's size), then the header's opening brace."""
    with open(path, "rb") as file:
        head = file.read(9)
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _first_line(error: Exception) -> str:
    """The first line of ``error``'s message, after its type where the message has no words (a bare key)."""
    line = (str(error).splitlines() or [""])[0]  # an empty file: no message at all
    return line if re.search(r"[A-Za-z]{2}", line) else f"{type(error).__name__} {line}".strip()


def run(args: argparse.Namespace) -> int:
    from ..conversion import convert_star_checkpoint, openclip_text_encoder, released_unet_config
    from ..io.atomic import move_into_place, remove_temporary, temporary_path
    from ..outputs import check_writable
    from ..pipelines.pipeline_star_vsr import StarVSRPipeline
    from ..scheduling import make_star_scheduler
    from ..text import build_openclip_tokenizer
    from ..upscale import DTYPES
    from . import quiet_model_loading

    quiet_model_loading()  # (transformers' "Writing model shards" bar, redrawn with \r in a log: black-box hunt)
    output = Path(args.output)
    if output.exists() or output.is_symlink():  # a dangling link: refused after the whole conversion, "appeared
        there = "already exists" if output.exists() else why_missing(output)  # while this run was writing it"
        raise InputError(f"{output} {there}; choose another --output or remove it")
    check_writable(output)
    checkpoint = _require(Path(args.checkpoint), "the STAR checkpoint")
    openclip = _require(Path(args.openclip), "the OpenCLIP checkpoint")
    vae_folder = _require(Path(args.vae), "the SVD VAE folder")
    if not vae_folder.is_dir():
        raise InputError(f"--vae {vae_folder} is a file; give the folder that holds the VAE's config.json and "
                         "weights (stabilityai/stable-video-diffusion-img2vid, subfolder vae)")
    # the small files first: a wrong one should not wait behind reading a multi-gigabyte checkpoint
    missing = [name for name, there in (("config.json", (vae_folder / "config.json").is_file()),
                                        ("diffusion_pytorch_model[.fp16].safetensors (or .bin)",
                                         any(vae_folder.glob("diffusion_pytorch_model*")))) if not there]
    if missing and (vae_folder / "vae" / "config.json").is_file():  # the whole SVD download ("download the vae")
        raise InputError(f"--vae {vae_folder} is the whole Stable Video Diffusion folder; pass its vae folder: "
                         f"--vae {vae_folder / 'vae'}")
    if missing:  # (named which: it said both were missing)
        raise MissingWeightsError(f"--vae {vae_folder} holds no {' and no '.join(missing)}; download the vae "
                                  f"folder of stabilityai/stable-video-diffusion-img2vid")
    for path, flag in ((checkpoint, "--checkpoint"), (openclip, "--openclip")):
        if path.is_dir():
            raise InputError(f"{flag} {path} is a folder; give the file in it ({RELEASE_FILES[flag]})")
        if path.is_file() and path.stat().st_size == 0:
            raise InputError(f"{flag} {path} is empty; is the download complete?")
    dtype = DTYPES[args.dtype]

    unet_config = released_unet_config()
    if args.unet_config:
        unet_config = _unet_config(Path(args.unet_config), unet_config)
    unet, controlnet = _meta_models(unet_config, f"--unet-config {args.unet_config}" if args.unet_config else
                                    "the released UNet config")
    print(f"reading {vae_folder}")  # the smallest download: a wrong one is said before the others are read
    vae = _load_vae(vae_folder, dtype)
    print(f"reading {checkpoint}")
    state_dict = _load_checkpoint(checkpoint, args.trust_checkpoint, "--checkpoint")
    converted = convert_star_checkpoint(state_dict, unet_config)
    unet.load_state_dict({k: v.to(dtype) for k, v in converted["unet"].items()}, strict=True, assign=True)
    controlnet.load_state_dict({k: v.to(dtype) for k, v in converted["controlnet"].items()}, strict=True, assign=True)
    del state_dict, converted

    print(f"reading {openclip}")
    try:
        text_encoder = openclip_text_encoder(_load_checkpoint(openclip, args.trust_checkpoint, "--openclip")).to(dtype)
    except InputError as error:  # the converter's message says what is wrong, not in which file
        raise error if str(openclip) in str(error) else InputError(f"--openclip {openclip}: {error}") from None

    if text_encoder.config.hidden_size != unet.config.cross_attention_dim:
        raise InputError(f"the text encoder is {text_encoder.config.hidden_size} wide but the UNet expects "
                         f"{unet.config.cross_attention_dim}-d text (is {openclip} OpenCLIP ViT-H-14?)")

    pipe = StarVSRPipeline(vae=vae, text_encoder=text_encoder, tokenizer=build_openclip_tokenizer(), unet=unet,
                           controlnet=controlnet, scheduler=make_star_scheduler())
    tmp = temporary_path(output)  # this run's own (two runs of one -o deleted each other's fixed .partial folder)
    with contextlib.suppress(OSError):  # (a name too long for that folder's name: there is none)
        remove_temporary(output.with_name(f".{output.name}.partial"))  # what a killed run of an earlier version left
    try:
        pipe.save_pretrained(tmp)
        move_into_place(tmp, output, overwrite=False)  # a folder another run finished meanwhile is kept
    except OutputExistsError:  # (its message offered an --overwrite this command does not have)
        raise InputError(f"{output} appeared while this run was writing it (another run?); it was left as it is: "
                         f"choose another --output or remove it") from None
    finally:
        remove_temporary(tmp)
    print(f"wrote {output}: load it with StarVSRPipeline.from_pretrained({str(output)!r})")
    return 0
