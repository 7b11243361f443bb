"""Learned perceptual metrics (LPIPS, DISTS, MUSIQ, CLIP-IQA) through pyiqa, from local weights only.

`pyiqa <https://github.com/chaofengc/IQA-PyTorch>`_ (``pip install --no-deps pyiqa==0.1.16``: its other dependencies are already star-vsr's, and its full dependency list would add a second OpenCV) is the
maintained implementation of these metrics. Left to itself it downloads weights on first use;
star-vsr never lets it: :func:`load_learned_metric` first checks that every file the metric
needs is on disk, raises :class:`~star_vsr.errors.MissingWeightsError` (naming each missing file,
its download URL and where to put it) otherwise, then builds the network with explicit local
paths while every download function pyiqa and torchvision could reach raises instead.

Where the files go: a *weights directory* laid out like torch's hub directory, which is exactly
where pyiqa saves them when it is allowed online, so a machine that has run pyiqa once already
has them (default: ``torch.hub.get_dir()``, i.e. ``$TORCH_HOME/hub`` or ``~/.cache/torch/hub``)::

    <weights_dir>/checkpoints/alexnet-owt-7be5be79.pth     torchvision ImageNet backbones
    <weights_dir>/checkpoints/vgg16-397923af.pth
    <weights_dir>/pyiqa/LPIPS_v0.1_alex-df73285e.pth       pyiqa metric heads
    <weights_dir>/pyiqa/LPIPS_v0.1_vgg-a78928a0.pth
    <weights_dir>/pyiqa/DISTS_weights-f5e65c96.pth
    <weights_dir>/pyiqa/musiq_koniq_ckpt-e95806b9.pth
    <weights_dir>/clip/RN50.pt                             OpenAI CLIP ResNet-50 (CLIP-IQA)

Which metric needs which file is :data:`LEARNED_METRICS` (checked against pyiqa 0.1.16). DOVER
is not part of pyiqa, so it is not offered here (see :func:`load_learned_metric`). CLIP-IQA also
needs the ``openai-clip`` package, which imports ``pkg_resources`` (setuptools < 81).
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from star_vsr.errors import (InputError, MissingWeightsError, first_line, is_damaged_weights_error,
                             is_out_of_memory, load_failure, option, why_missing)
from star_vsr.metrics.inputs import check_frames, check_same_shape, to_float01
from star_vsr.progress import bar_options

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

#: Where pyiqa publishes its metric weights (what ``pyiqa.archs.arch_util.get_url_from_name`` builds).
PYIQA_WEIGHTS_URL = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
#: Where torchvision publishes its ImageNet classification weights.
TORCHVISION_WEIGHTS_URL = "https://download.pytorch.org/models"
#: OpenAI's CLIP ResNet-50 checkpoint, as listed by openai-clip and pyiqa's ``clip_model``.
CLIP_RN50_URL = (
    "https://openaipublic.azureedge.net/clip/models/"
    "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt"
)
#: How to install the optional dependency.
INSTALL_HINT = "pip install --no-deps pyiqa==0.1.16"


@dataclass(frozen=True)
class WeightFile:
    """One file a learned metric needs.

    Attributes:
        subdir: folder inside the weights directory (``checkpoints``, ``pyiqa`` or ``clip``).
        filename: exact file name pyiqa / torchvision look for.
        url: where to download it from (the URL pyiqa or torchvision would use).
        description: what the file holds, for error messages.
    """

    subdir: str
    filename: str
    url: str
    description: str

    def path(self, weights_dir: Path) -> Path:
        """Where this file must be inside ``weights_dir``."""
        return weights_dir / self.subdir / self.filename


@dataclass(frozen=True)
class LearnedMetricSpec:
    """How star-vsr builds one pyiqa metric from local files.

    Attributes:
        name: star-vsr's name for the metric (the key of :data:`LEARNED_METRICS`).
        pyiqa_name: the name passed to ``pyiqa.create_metric``.
        full_reference: True if the metric compares against a ground truth (LPIPS, DISTS).
        lower_better: True if lower scores mean better quality.
        files: every file the metric loads.
        local_path_file: the one of ``files`` that is handed to pyiqa explicitly, through the
            keyword ``local_path_argument``; the others are torchvision backbones found in
            ``<weights_dir>/checkpoints`` because star-vsr points torch's hub directory there
            while the network is built.
        local_path_argument: pyiqa's keyword for that file.
        required_keys: tensors that file must hold, where pyiqa loads it with ``strict=False`` (LPIPS, DISTS):
            a file without them loaded nothing, and the metric scored with its random initial head.
    """

    name: str
    pyiqa_name: str
    full_reference: bool
    lower_better: bool
    files: tuple[WeightFile, ...]
    local_path_file: WeightFile
    local_path_argument: str
    required_keys: tuple[str, ...] = ()


_ALEXNET = WeightFile(
    "checkpoints",
    "alexnet-owt-7be5be79.pth",
    f"{TORCHVISION_WEIGHTS_URL}/alexnet-owt-7be5be79.pth",
    "torchvision AlexNet ImageNet weights (LPIPS backbone)",
)
_VGG16 = WeightFile(
    "checkpoints",
    "vgg16-397923af.pth",
    f"{TORCHVISION_WEIGHTS_URL}/vgg16-397923af.pth",
    "torchvision VGG16 ImageNet weights (LPIPS-VGG / DISTS backbone)",
)
_LPIPS_ALEX = WeightFile(
    "pyiqa",
    "LPIPS_v0.1_alex-df73285e.pth",
    f"{PYIQA_WEIGHTS_URL}/LPIPS_v0.1_alex-df73285e.pth",
    "LPIPS v0.1 linear layers for AlexNet",
)
_LPIPS_VGG = WeightFile(
    "pyiqa",
    "LPIPS_v0.1_vgg-a78928a0.pth",
    f"{PYIQA_WEIGHTS_URL}/LPIPS_v0.1_vgg-a78928a0.pth",
    "LPIPS v0.1 linear layers for VGG16",
)
_DISTS = WeightFile(
    "pyiqa",
    "DISTS_weights-f5e65c96.pth",
    f"{PYIQA_WEIGHTS_URL}/DISTS_weights-f5e65c96.pth",
    "DISTS alpha/beta weights",
)
_MUSIQ_KONIQ = WeightFile(
    "pyiqa",
    "musiq_koniq_ckpt-e95806b9.pth",
    f"{PYIQA_WEIGHTS_URL}/musiq_koniq_ckpt-e95806b9.pth",
    "MUSIQ trained on KonIQ-10k",
)
#: The linear heads of LPIPS v0.1 (one per backbone stage), as its weight files name them.
_LPIPS_HEADS = tuple(f"lin{i}.model.1.weight" for i in range(5))
_CLIP_RN50 = WeightFile("clip", "RN50.pt", CLIP_RN50_URL, "OpenAI CLIP ResNet-50 (CLIP-IQA)")

#: The learned metrics star-vsr offers, by name. Scores: LPIPS and DISTS in [0, 1], lower is
#: better; MUSIQ (KonIQ-10k) roughly [0, 100] and CLIP-IQA in [0, 1], higher is better.
LEARNED_METRICS: dict[str, LearnedMetricSpec] = {
    "lpips": LearnedMetricSpec(
        "lpips", "lpips", True, True, (_ALEXNET, _LPIPS_ALEX), _LPIPS_ALEX, "pretrained_model_path", _LPIPS_HEADS
    ),
    "lpips-vgg": LearnedMetricSpec(
        "lpips-vgg", "lpips-vgg", True, True, (_VGG16, _LPIPS_VGG), _LPIPS_VGG, "pretrained_model_path", _LPIPS_HEADS
    ),
    "dists": LearnedMetricSpec(
        "dists", "dists", True, True, (_VGG16, _DISTS), _DISTS, "pretrained_model_path", ("alpha", "beta")
    ),
    "musiq": LearnedMetricSpec(
        "musiq", "musiq", False, False, (_MUSIQ_KONIQ,), _MUSIQ_KONIQ, "pretrained_model_path"
    ),
    # pyiqa's CLIPIQA passes `backbone` to its CLIP loader, which accepts a checkpoint path.
    "clipiqa": LearnedMetricSpec(
        "clipiqa", "clipiqa", False, False, (_CLIP_RN50,), _CLIP_RN50, "backbone"
    ),
}

#: Metrics users ask for that pyiqa does not provide, with what to do instead.
UNAVAILABLE_METRICS: dict[str, str] = {
    "dover": (
        "DOVER is not part of pyiqa, the library star-vsr uses for learned metrics, so "
        "star-vsr cannot compute it; score videos with the official DOVER code "
        "(github.com/VQAssessment/DOVER)."
    ),
}


def default_weights_dir() -> Path:
    """torch's hub directory (``$TORCH_HOME/hub``, default ``~/.cache/torch/hub``), pyiqa's cache."""
    import torch.hub

    return Path(torch.hub.get_dir())


def get_spec(name: str) -> LearnedMetricSpec:
    """The :class:`LearnedMetricSpec` of ``name`` (case-insensitive).

    Raises:
        InputError: unknown name, or a metric pyiqa does not provide (DOVER).
    """
    key = name.lower()
    if key in UNAVAILABLE_METRICS:
        raise InputError(UNAVAILABLE_METRICS[key])
    if key not in LEARNED_METRICS:
        raise InputError(
            f"Unknown learned metric {name!r}; choose one of {sorted(LEARNED_METRICS)}."
        )
    return LEARNED_METRICS[key]


def resolve_weight_files(name: str, weights_dir: str | Path | None = None) -> dict[str, Path]:
    """Check that every file metric ``name`` needs is in ``weights_dir``; touches no network.

    Args:
        name: a key of :data:`LEARNED_METRICS`.
        weights_dir: the weights directory (layout in the module docstring); default
            :func:`default_weights_dir`.

    Returns:
        File name -> absolute path, for every file of the metric.

    Raises:
        InputError: unknown metric.
        MissingWeightsError: one or more files are absent; the message lists, for each, the
            path it must have and the URL to download it from.
    """
    check_weight_files([name], weights_dir)
    root = _weights_root(weights_dir)
    return {weight.filename: weight.path(root).resolve() for weight in get_spec(name).files}


def check_weight_files(names: Sequence[str], weights_dir: str | Path | None = None) -> None:
    """``InputError`` for an unknown name among ``names`` (before anything loads), ``MissingWeightsError`` naming
    each file the metrics ``names`` need that ``weights_dir`` (default :func:`default_weights_dir`) lacks, once
    (LPIPS-VGG and DISTS share a backbone), with the URL to download it from and the path to save it as."""
    specs = list(dict.fromkeys(get_spec(name) for name in names))  # ("lpips" and "LPIPS": one)
    root = _weights_root(weights_dir)
    missing: dict[WeightFile, list[str]] = {}  # file -> the metrics that need it
    for spec in specs:
        for weight in spec.files:
            if not weight.path(root).resolve().is_file():
                missing.setdefault(weight, []).append(spec.name)
    if not missing:
        return
    if root.is_dir():
        where = ""
    elif weights_dir is None:
        where = f" (the default, torch's hub folder, which {why_missing(root)}; or pass the folder that holds them)"
    else:
        where = f" ({root} {why_missing(root)}: a typo, or make that folder)"
    needed = sorted({name for users in missing.values() for name in users}, key=[s.name for s in specs].index)
    lines = [f"  - {weight.filename} ({weight.description}; for {', '.join(users)}): download {weight.url} and save "
             f"it as {weight.path(root).resolve()}" for weight, users in missing.items()]
    raise MissingWeightsError(
        f"The {', '.join(needed)} metric{'s' * (len(needed) > 1)} need{'s' * (len(needed) == 1)} weight files that "
        f"are not in {root}{where}:\n" + "\n".join(lines)
        + "\nstar-vsr never downloads weights itself. Put the files there, or pass the "
        f"weights directory that holds them ({option('weights_dir=DIR', '--weights-dir DIR')})."
    )


def _weights_root(weights_dir: str | Path | None) -> Path:
    """The weights directory ``weights_dir`` names (default :func:`default_weights_dir`); ``InputError`` for a file."""
    root = Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()
    if root.exists() and not root.is_dir():  # (it said "save it as gt.mp4/pyiqa/...")
        raise InputError(f"{option('weights_dir', '--weights-dir')} {root} is a file; it takes the folder that "
                         f"holds the learned metrics' weight files")
    return root


def _refuse_download(url: str, destination: Any, *args: Any, **kwargs: Any) -> None:
    """Stand-in for every download function while a metric is built: downloading is an error."""
    raise MissingWeightsError(
        f"Building the metric tried to download {url} to {destination}; star-vsr does not "
        "download weights. Download that file yourself and save it at that path."
    )


@contextlib.contextmanager
def _offline_torch_hub(weights_dir: Path) -> Iterator[None]:
    """Point torch's hub directory at ``weights_dir`` and make every download raise.

    torchvision backbones inside pyiqa are then read from ``<weights_dir>/checkpoints``; a file
    star-vsr failed to predict raises :class:`MissingWeightsError` instead of reaching the
    network. Not thread-safe: it swaps module attributes for the duration of the block.
    """
    import pyiqa.utils.download_util
    import torch.hub

    # torch keeps an explicitly set hub dir in `_hub_dir` (None: follow $TORCH_HOME); restoring
    # that attribute, rather than calling set_dir, leaves the user's setting exactly as it was.
    previous_hub_dir = torch.hub._hub_dir
    previous_torch_download = torch.hub.download_url_to_file
    previous_pyiqa_download = pyiqa.utils.download_util.download_url_to_file
    torch.hub.set_dir(str(weights_dir))
    torch.hub.download_url_to_file = _refuse_download
    pyiqa.utils.download_util.download_url_to_file = _refuse_download
    try:
        yield
    finally:
        torch.hub._hub_dir = previous_hub_dir
        torch.hub.download_url_to_file = previous_torch_download
        pyiqa.utils.download_util.download_url_to_file = previous_pyiqa_download


def _import_pyiqa() -> Any:
    try:
        import pyiqa
    except ImportError as error:
        raise InputError(
            f"Learned metrics need the pyiqa package, which could not be imported ({error}). "
            f"Install it with: {INSTALL_HINT}"
        ) from error
    return pyiqa


#: Frames whose short side has this many pixels, the size the metrics' backbones were trained at, are not tried by
#: `LearnedMetric.check_frame_size` (LPIPS's AlexNet needs 31; a 720p frame through DISTS takes seconds on a CPU).
NO_SMALLER_THAN = 224


class LearnedMetric:
    """A pyiqa metric network scoring star-vsr frames.

    Build it with :func:`load_learned_metric`. Full-reference metrics (LPIPS, DISTS) need the
    ground truth; no-reference metrics (MUSIQ, CLIP-IQA) take the prediction only.

    Args:
        spec: what the metric is (name, full-reference or not, direction).
        network: the built pyiqa metric (``pyiqa.InferenceModel``), taking (1, 3, h, w) float
            tensors in [0, 1] and returning a score tensor.
        device: the device the network runs on.
    """

    def __init__(self, spec: LearnedMetricSpec, network: torch.nn.Module, device: torch.device) -> None:
        self.spec = spec
        self.network = network
        self.device = device
        self._sizes_scored: set[tuple[int, int]] = set()  # sizes check_frame_size found the network takes

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def full_reference(self) -> bool:
        return self.spec.full_reference

    @property
    def lower_better(self) -> bool:
        return self.spec.lower_better

    def _to_tensor(self, frame: np.ndarray) -> torch.Tensor:
        import torch

        image = torch.from_numpy(np.ascontiguousarray(to_float01(frame)))  # (h, w, 3)
        return image.permute(2, 0, 1).unsqueeze(0).to(self.device)  # (1, 3, h, w)

    def score_frame(self, pred: np.ndarray, gt: np.ndarray | None = None) -> float:
        """Score one frame.

        Args:
            pred: (h, w, 3) RGB frame, ``uint8`` or float in [0, 1].
            gt: (h, w, 3) ground truth, required for full-reference metrics, refused otherwise.

        Returns:
            The metric's score (see :data:`LEARNED_METRICS` for ranges and direction).
        """
        import torch

        check_frames(pred, "pred", ndim=3)
        if self.full_reference:
            if gt is None:
                raise InputError(f"{self.name} is a full-reference metric: pass the ground truth gt.")
            check_frames(gt, "gt", ndim=3)
            check_same_shape(pred, gt, "pred", "gt")
        elif gt is not None:
            raise InputError(f"{self.name} is a no-reference metric: it takes no ground truth.")
        try:
            with torch.inference_mode():
                if self.full_reference:
                    score = self.network(self._to_tensor(pred), self._to_tensor(gt))
                else:
                    score = self.network(self._to_tensor(pred))
        except RuntimeError as error:  # a pooling layer's "Output size is too small": LPIPS's AlexNet under 31 px
            if not any(m in str(error).lower() for m in ("output size is too small", "kernel size can't be greater")):
                raise  # (the second: DISTS's and LPIPS's first convolutions on frames under 7-11 px)
            raise InputError(f"{self.name} cannot score frames of {pred.shape[1]}x{pred.shape[0]}: they are too "
                             f"small for its network; score larger frames, or leave {self.name} out") from None
        return float(score.reshape(-1)[0].item())

    def check_frame_size(self, height: int, width: int) -> None:
        """``InputError`` if frames of ``height`` x ``width`` are too small for the network (``score_frame``'s
        refusal), found by scoring one black frame of that size, for a caller to refuse before scoring anything
        (``star-vsr evaluate`` on a folder: found at the clip that was too small, after the clips before it).
        Frames whose short side is at least `NO_SMALLER_THAN` pixels are not tried: every metric here takes them."""
        if min(height, width) >= NO_SMALLER_THAN or (height, width) in self._sizes_scored:
            return
        black = np.zeros((height, width, 3), dtype=np.uint8)
        self.score_frame(black, black if self.full_reference else None)
        self._sizes_scored.add((height, width))  # (a folder of clips of one size: one pass, not one per clip)

    def score_clip(
        self, pred_frames: np.ndarray, gt_frames: np.ndarray | None = None, progress: bool = False
    ) -> float:
        """Mean of the per-frame scores over a clip.

        Args:
            pred_frames: (n, h, w, 3) RGB clip, ``uint8`` or float in [0, 1].
            gt_frames: (n, h, w, 3) ground truth for full-reference metrics, else None.
            progress: show a tqdm bar over frames.
        """
        check_frames(pred_frames, "pred_frames", ndim=4)
        if gt_frames is not None:
            check_frames(gt_frames, "gt_frames", ndim=4)
            check_same_shape(pred_frames, gt_frames, "pred_frames", "gt_frames")
        scores = [
            self.score_frame(pred_frames[i], None if gt_frames is None else gt_frames[i])
            for i in tqdm(range(len(pred_frames)), desc=self.name, disable=not progress, **bar_options())
        ]
        return float(np.mean(scores))


def _check_weight_contents(spec: LearnedMetricSpec, paths: dict[str, Path]) -> None:
    """``InputError`` for a file of ``spec`` that holds no network's tensors (a tensor or a list where a state dict
    belongs: a traceback from deep inside pyiqa or torchvision), or, for the metric's own file, lacks
    ``spec.required_keys`` (pyiqa loads LPIPS' and DISTS' with ``strict=False``: another file loaded nothing, and
    LPIPS scored 0.0000 with an untrained head). Files are read by memory mapping where they can be (the backbones
    are not read whole), else whole (torch's older format: torchvision's own downloads), always as plain weights
    (``weights_only``): one that cannot be read so is refused, since pyiqa and torchvision then load it with
    ``weights_only=False``, which ran the code a crafted file named (security review). CLIP's file is a TorchScript
    archive, read by openai-clip."""
    import torch

    for weight in spec.files:
        if weight.subdir == "clip":
            continue
        path = paths[weight.filename]
        keyed = weight == spec.local_path_file and bool(spec.required_keys)  # (small files: LPIPS' heads, DISTS')
        try:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error):
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)  # torch's older format, read whole
        except Exception as error:  # noqa: BLE001 (junk, a pickle of objects: nothing else may read it)
            if is_out_of_memory(error):
                raise
            raise InputError(f"cannot load the {spec.name} weights: {path} cannot be read as plain weights "
                             f"({load_failure(error)}): it is damaged, or holds Python objects, which loading would "
                             f"run. Download it again: {weight.url}") from error
        if not isinstance(state, Mapping):
            raise InputError(f"cannot load the {spec.name} weights: {path} holds a {type(state).__name__}, not a "
                             f"network's tensors, so it is no {weight.description} file (damaged, or another "
                             f"download). Download it again: {weight.url}")
        if not keyed:
            continue
        keys = {str(k).removeprefix("module.") for k in state}
        missing = [key for key in spec.required_keys if key not in keys]
        if missing:
            raise InputError(f"cannot load the {spec.name} weights: {path} holds no {', '.join(missing)}, so it is no "
                             f"{weight.description} file (damaged, or another download). Download it again: "
                             f"{weight.url}")


def load_learned_metric(
    name: str, weights_dir: str | Path | None = None, device: str | torch.device = "cpu"
) -> LearnedMetric:
    """Build a learned metric from local weight files, never downloading anything.

    Args:
        name: ``"lpips"``, ``"lpips-vgg"``, ``"dists"``, ``"musiq"`` or ``"clipiqa"``
            (:data:`LEARNED_METRICS`). ``"dover"`` raises :class:`InputError`: pyiqa does not
            provide DOVER.
        weights_dir: the weights directory (layout in the module docstring); default
            :func:`default_weights_dir`, where pyiqa itself caches the files.
        device: torch device to run on ("cpu", "cuda", "cuda:N", "auto", another type torch knows such as "mps",
            or a ``torch.device``).

    Returns:
        The ready :class:`LearnedMetric`.

    Raises:
        InputError: unknown or unavailable metric, or pyiqa (or a package it needs for this
            metric, such as ``openai-clip`` for CLIP-IQA) cannot be imported.
        MissingWeightsError: a weight file is missing (checked before pyiqa is even imported).
        DeviceError: ``device`` is CUDA and there is no GPU (an unknown device is an ``InputError``).
    """
    from star_vsr.upscale import resolve_device

    spec = get_spec(name)
    paths = resolve_weight_files(spec.name, weights_dir)
    root = _weights_root(weights_dir)
    _check_weight_contents(spec, paths)
    pyiqa = _import_pyiqa()
    torch_device = resolve_device(device, other_types=True)  # (torch's errors for "foo" or CUDA without a GPU were
    # raw; pyiqa runs on MPS and others too)
    local_path = str(paths[spec.local_path_file.filename])
    pyiqa_output = io.StringIO()  # pyiqa prints "Loading pretrained model ..." lines
    try:
        with _offline_torch_hub(root), contextlib.redirect_stdout(pyiqa_output):
            network = pyiqa.create_metric(
                spec.pyiqa_name, device=torch_device, **{spec.local_path_argument: local_path}
            )
    except ImportError as error:
        # pyiqa itself imported (above): what is missing is a package of this metric's ("Install pyiqa" misled)
        missing = getattr(error, "name", None) or "a package"
        clip = (" `pip install openai-clip` provides CLIP (it imports pkg_resources, which needs setuptools<81)."
                if spec.name == "clipiqa" or missing in ("clip", "pkg_resources") else "")
        raise InputError(
            f"pyiqa could not import {missing}, which the {spec.name} metric needs ({error}).{clip}"
        ) from error
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as error:
        if not is_damaged_weights_error(error):  # out of memory, a bad device, ...: not the files' fault
            raise
        files = "\n".join(f"  - {paths[weight.filename]} (from {weight.url})" for weight in spec.files)
        raise InputError(
            f"cannot load the {spec.name} weights ({first_line(error)}): one of its files is damaged or is another "
            f"download. Download them again:\n{files}"
        ) from error
    finally:
        if pyiqa_output.getvalue():
            logger.debug("pyiqa: %s", pyiqa_output.getvalue().strip())
    network.eval()
    return LearnedMetric(spec, network, torch_device)
