"""Checks that a pipeline folder on disk holds what ``from_pretrained`` will read, so a missing or
half-copied download is reported with what to get and where, not as a loader's traceback; and the
loading, saving and device rules both pipelines share (``local_load_kwargs``, ``save_pipeline_folder``, their base
class ``CheckedPipeline``)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterator, Optional, TypeVar, Union

from .errors import (DeviceError, InputError, MissingWeightsError, StarVSRError, cli_running, first_line,
                     is_failed_write, is_out_of_memory, why_missing, write_failed, write_reason)
from .io.atomic import is_real_folder, move_into_place, remove_temporary, temporary_path
from .json_files import loads_json
from .outputs import FINAL_STEP_FILE, MODEL_RECORDS, REPLACING_INDEX, give_default_mode, saved_index

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

#: File name endings of model weights (single files, shards and shard indexes) in a component folder.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")


def check_pipeline_folder(folder: Path, kind: str, help_text: str, expected_class: Optional[type] = None,
                          class_help: Optional[dict[str, str]] = None, variant: Optional[str] = None,
                          passed: Collection[str] = ()) -> str:
    """The pipeline class named by ``folder``'s ``model_index.json``, once the folder is checked.

    Raises ``MissingWeightsError`` (naming the missing or broken part, then ``help_text``) unless
    ``folder`` has a readable ``model_index.json`` and every component folder it lists that holds a
    model (``config.json``) also holds its weights; ``InputError`` when ``expected_class`` is given
    and the folder holds a pipeline that is neither it nor one of its base classes (a subclass loads
    its base class's folders, as in diffusers). ``kind`` names the pipeline in the messages. ``class_help``:
    the help for a folder whose class is known (class name -> text), used instead of ``help_text`` once the
    ``model_index.json`` names it (a student folder with a missing part gets the student's help, not STAR's).
    ``variant``: the weights' variant the load asks for (``check_variant``): without one, every model component
    needs weights saved without one; with one, some component must have it (diffusers loads the others from their
    weights without a variant). ``passed``: the components given to ``from_pretrained``, which it does not load
    from the folder, and which the folder need not hold (as in diffusers: one that did was refused).
    """
    index = folder / "model_index.json"
    if not index.is_file():
        _refuse_non_pipeline(folder, kind, help_text)
    try:
        entries = loads_json(index.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MissingWeightsError(f"{index} is not valid JSON ({error}; an incomplete copy?).\n{help_text}") from None
    depth = nesting_depth(entries)
    if depth > MAX_SETTINGS_NESTING:  # (a RecursionError in diffusers' copy of it)
        raise MissingWeightsError(f"{index} nests lists or objects {depth} deep; it is damaged "
                                  f"(an edited or incomplete copy?).\n{help_text}")
    if not isinstance(entries, dict) or not isinstance(entries.get("_class_name"), str):
        raise MissingWeightsError(f"{index} does not name a pipeline class (_class_name); it is not a {kind} "
                                  f"pipeline folder.\n{help_text}")
    class_name = entries["_class_name"]
    help_text = (class_help or {}).get(class_name, help_text)
    if (folder / FINAL_STEP_FILE).is_file():  # a training run's output folder (a part missing was met with how to
        # download STAR's weights; not the shipped student's, which holds no FINAL_STEP_FILE)
        help_text = _training_run_help(folder)
    if expected_class is not None and class_name not in {base.__name__ for base in expected_class.__mro__}:
        raise InputError(f"{folder} holds a {class_name}, not a {expected_class.__name__}: load it with "
                         f"{class_name}.from_pretrained, or with star_vsr.upscale.load_upscaler (any star-vsr folder)")
    components = [name for name, value in entries.items()
                  if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None]
    for name in components:  # every entry, before anything imports what it names (diffusers imports them all)
        library = entries[name][0]
        if isinstance(library, str) and not trusted_library(library):
            raise MissingWeightsError(f"{index} names {library}.{entries[name][-1]} for {name!r}: star-vsr builds "
                                      f"components from {', '.join(TRUSTED_LIBRARIES)} only (importing another "
                                      f"module runs its code, which a downloaded folder must not bring): the file "
                                      f"was edited or is not a star-vsr model.\n{help_text}")
    if expected_class is not None:  # diffusers' own errors: a bare ValueError ("expected ['student'], but only
        # set() were passed", "has no class Nope")
        _check_index_entries(index, entries, expected_class, help_text, passed)
    loaded = [name for name in components if name not in passed]
    for name in loaded:
        part = folder / name
        if not part.is_dir():
            raise MissingWeightsError(f"the {kind} pipeline at {folder} lists {name!r}, but {part} is missing "
                                      f"(an incomplete copy?).\n{help_text}")
        library = entries[name][0] if len(entries[name]) == 2 else None
        model = (part / "config.json").is_file()
        try:  # (check_model_folder checks a model's settings files; a scheduler's or tokenizer's are checked here)
            if model:
                check_model_folder(part, name, TRANSFORMERS_WEIGHTS if library == "transformers" else
                                   DIFFUSERS_WEIGHTS)
            else:
                check_settings_files(part)
        except MissingWeightsError as error:
            raise MissingWeightsError(f"{error}.\n{help_text}") from None
        if model:
            if variant is None:  # (with a variant, diffusers loads a component that lacks it from its plain weights)
                check_variant(part, saved_config(part).get("_class_name") or name, None)
        elif any(file.name.endswith(WEIGHT_SUFFIXES) for file in part.iterdir()):  # the loader's error came from
            # deep inside transformers ("look at the above report", with no report above)
            raise MissingWeightsError(f"{part} holds weights but no config.json (an incomplete copy?).\n{help_text}")
        if name == "tokenizer" and not ((part / "tokenizer.json").is_file()
                                        or ((part / "vocab.json").is_file() and (part / "merges.txt").is_file())):
            # without its vocabulary a CLIP tokenizer still loads, with 2 tokens, and garbles every prompt
            raise MissingWeightsError(f"{part} holds no vocabulary (tokenizer.json, or vocab.json + merges.txt; an "
                                      f"incomplete copy?).\n{help_text}")
    models = [folder / name for name in loaded if (folder / name / "config.json").is_file()]
    if variant is not None and models and not any(variant in weight_variants(part) for part in models):
        check_variant(models[0], saved_config(models[0]).get("_class_name") or models[0].name, variant)
    return class_name


def _training_run_help(folder: Path) -> str:
    """How to write again the model of the training run whose output folder is ``folder``: from a checkpoint at the
    step the model was written at, a resume only writes it; from an earlier one it trains the steps after it; with
    none (``--checkpointing_steps none``), the run is trained again."""
    from .training_run import checkpoint_folders, checkpoint_step

    try:
        step = int((folder / FINAL_STEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        step = None
    checkpoints = checkpoint_folders(folder)
    if not checkpoints:
        return f"{folder} is a training run's output folder, with no checkpoint left: train it again"
    last = checkpoint_step(checkpoints[-1])
    what = "writes the model again" if last == step else f"trains again from its step {last}"
    return (f"{folder} is a training run's output folder: start its training command again with "
            f"--resume_from_checkpoint latest, which {what}")


def _refuse_non_pipeline(folder: Path, kind: str, help_text: str) -> None:
    """`check_pipeline_folder`'s error for a ``folder`` without a ``model_index.json``, saying what it is instead:
    missing, a file (a checkpoint to convert?), a trainer's checkpoint, one component of a pipeline, or else not a
    ``kind`` pipeline folder."""
    if not folder.exists():
        raise MissingWeightsError(f"{folder} {why_missing(folder)}: no {kind} pipeline there.\n{help_text}")
    if not folder.is_dir():  # "has no model_index.json" read as if it were a folder
        weights = folder.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin", ".safetensors")  # (STAR's light_deg.pt)
        raise InputError(f"{folder} is a file; a {kind} pipeline is a folder (model_index.json and one folder per "
                         f"component)" + (f"; a checkpoint file is converted into one first.\n{help_text}"
                                          if weights else ""))
    if any((folder / name).is_file() for name in ("optimizer.bin", "random_states_0.pkl")):
        raise InputError(f"{folder} is a training checkpoint (the trainer's state), not a pipeline folder: a run "
                         f"writes its pipeline to its output folder ({folder.parent}) when it finishes; to finish a "
                         f"stopped run, start its training command again with --resume_from_checkpoint latest")
    if (folder / "config.json").is_file() and (folder.parent / "model_index.json").is_file():
        raise InputError(f"{folder} is the {folder.name} folder of the pipeline {folder.parent}: pass that folder")
    raise MissingWeightsError(f"{folder} has no model_index.json: it is not a {kind} pipeline folder.\n{help_text}")


def _init_annotations(cls: type) -> dict[str, Any]:
    """The types ``cls.__init__``'s parameters are annotated with, from the nearest class in its MRO whose
    annotations resolve: a user's subclass may name a type imported only for type checkers (a NameError)."""
    import typing

    for base in cls.__mro__:
        try:
            return typing.get_type_hints(base.__init__)
        except (NameError, TypeError):
            continue
    return {}


def _check_index_entries(index: Path, entries: dict[str, Any], expected_class: type, help_text: str,
                         passed: Collection[str] = ()) -> None:
    """``MissingWeightsError`` unless ``index`` (a ``model_index.json`` read as ``entries``) lists every component
    that ``expected_class``'s ``__init__`` needs, each as ``[library, class]`` naming a class that can be imported,
    and, for a model or scheduler, the class (or a subclass of it) that ``__init__`` is annotated with; but for those
    ``passed`` to ``from_pretrained``, which it does not load (a folder without them, as diffusers takes it)."""
    import inspect

    import torch
    from diffusers import SchedulerMixin

    needs = _init_annotations(expected_class)

    needed = [name for name, parameter in inspect.signature(expected_class.__init__).parameters.items()
              if name != "self" and parameter.default is inspect.Parameter.empty
              and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]
    for name in (name for name in needed if name not in passed):
        value = entries.get(name)
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)):
            raise MissingWeightsError(f"{index} does not list the {name!r} component a {expected_class.__name__} "
                                      f"needs as [library, class] (got {value!r}): the file was edited or is from "
                                      f"another version.\n{help_text}")
        library, class_name = value
        if index_entry_class(value) is None:
            raise MissingWeightsError(f"{index} names {library}.{class_name} for {name!r}, which does not exist: "
                                      f"the file was edited or is from another version.\n{help_text}")
        saved = saved_config(index.parent / name).get("_class_name")  # what save_pretrained wrote there
        if isinstance(saved, str) and saved != class_name:  # diffusers built the named class from the other's
            # config and failed in its constructor with a traceback ("Must provide the same number of ...")
            raise MissingWeightsError(f"{index} names {library}.{class_name} for {name!r}, but {name}/config.json "
                                      f"is a {saved}'s: the file was edited or is from another version.\n{help_text}")
        wanted = needs.get(name)  # a scheduler the sampler cannot drive loaded, then failed mid-call (a traceback:
        # DDIMScheduler's set_timesteps takes no timesteps=)
        named = index_entry_class(value)
        if isinstance(wanted, type) and issubclass(wanted, (torch.nn.Module, SchedulerMixin)) \
                and isinstance(named, type) and not issubclass(named, wanted):
            raise MissingWeightsError(f"{index} names {library}.{class_name} for {name!r}, where a "
                                      f"{expected_class.__name__} needs a {wanted.__name__}: the file was edited or "
                                      f"is from another version.\n{help_text}")


#: The names (before any variant, shard number or suffix) of the weight files diffusers' and transformers' models
#: load; a folder whose weights are named otherwise loads none of them.
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model",)
TRANSFORMERS_WEIGHTS = ("model", "pytorch_model")


#: The libraries whose classes a ``model_index.json`` may name. Any other module named there was imported, and so
#: ran: a downloaded folder's ``["os", ...]``, or a ``payload.py`` inside it, importable from the working folder
#: (security review); diffusers' ``trust_remote_code`` guards only its own custom pipelines.
TRUSTED_LIBRARIES = ("star_vsr", "diffusers", "transformers")


def trusted_library(library: str) -> bool:
    """Whether ``library`` (a module path) is one of `TRUSTED_LIBRARIES` or inside one."""
    return library.split(".")[0] in TRUSTED_LIBRARIES


def index_entry_class(value: Any) -> Any:
    """What a ``model_index.json`` entry ``[library, class]`` names, imported; None when it is no such pair, names
    a module outside `TRUSTED_LIBRARIES` (not imported) or nothing that can be imported."""
    import importlib

    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value)):
        return None
    if not trusted_library(value[0]):
        return None
    try:
        return getattr(importlib.import_module(value[0]), value[1], None)
    except ImportError:
        return None


def check_model_folder(folder: Path, class_name: str, weight_names: tuple[str, ...] = DIFFUSERS_WEIGHTS) -> None:
    """``MissingWeightsError`` unless ``folder`` looks like a model folder ``save_pretrained`` wrote (a folder
    with a ``config.json`` and weights named ``weight_names``, the loader's) of a model ``class_name`` names. A
    pipeline folder (``model_index.json``) is named as one, with the ``subfolder`` that would load the model;
    diffusers' own errors here name a file it then falls back from ("no file named diffusion_pytorch_model.bin")
    or a Hub lookup."""
    if not folder.is_dir():
        raise MissingWeightsError(f"{folder} is not a folder: {class_name}.from_pretrained loads a folder "
                                  f"written by save_pretrained (star-vsr downloads nothing)")
    if not (folder / "config.json").is_file():
        if (folder / "model_index.json").is_file():
            parts = [repr(part.name) for part in sorted(folder.iterdir())
                     if saved_config(part).get("_class_name") == class_name]
            where = (f"pass subfolder={' or '.join(parts)}" if parts else f"it holds no {class_name}")
            raise MissingWeightsError(f"{folder} is a pipeline folder (model_index.json), not a {class_name} "
                                      f"folder: load it with its pipeline's from_pretrained, or {where}")
        raise MissingWeightsError(f"{folder} has no config.json: it is not a folder written by "
                                  f"{class_name}.save_pretrained (an incomplete copy?)")
    check_settings_files(folder)
    weights = sorted(file.name for file in folder.iterdir() if file.name.endswith(WEIGHT_SUFFIXES))
    if not weights:
        raise MissingWeightsError(f"{folder} has a config.json but no weights (*.safetensors or *.bin; an "
                                  f"incomplete copy?)")
    if not any(re.match(rf"({'|'.join(weight_names)})[.-]", name) for name in weights):  # renamed by hand
        raise MissingWeightsError(f"{folder} holds weights named {', '.join(weights[:3])}, which from_pretrained "
                                  f"does not read: it reads {weight_names[0]}.safetensors (or .bin, or shards of it); "
                                  f"rename the file, or save the model again")
    shards = [name for name in weights if re.search(r"-\d+-of-\d+\.", name)]
    index = [file for file in folder.iterdir()  # (a variant's too: model.safetensors.index.fp16.json)
             if ".index" in file.name and WEIGHT_FILE.fullmatch(file.name)]
    if shards and not index:  # (diffusers: "no file named diffusion_pytorch_model.bin found", of a folder it then
        # called damaged)
        raise MissingWeightsError(f"{folder} holds weight shards ({shards[0]}, ...) but not their index (*.index.json, "
                                  f"which names the shard of each weight): an incomplete copy?")


#: The settings files ``save_pretrained`` writes in a component folder (a model's, the scheduler's, the tokenizer's).
SETTINGS_FILES = ("config.json", "scheduler_config.json", "tokenizer_config.json")

#: The deepest nesting of lists and objects a settings file may have (the saved ones have 3): diffusers copies a
#: config recursively, and one nested ~600 deep, which JSON still parses, was a RecursionError traceback there.
MAX_SETTINGS_NESTING = 32


def nesting_depth(value: Any) -> int:
    """How deep lists and dicts nest in the JSON value ``value`` (0 for a number or string), walked without
    recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_settings_files(folder: Path) -> None:
    """``MissingWeightsError`` naming the file when one of ``SETTINGS_FILES`` in ``folder`` is not a JSON object.
    diffusers takes a config that is a JSON string (``"x"``) for the name of a Hub repository and tried to reach
    huggingface.co five times (50 s offline) before an error about "x"; a damaged tokenizer config's error named no
    file."""
    for name in SETTINGS_FILES:
        file = folder / name
        if not file.is_file():
            continue
        try:
            settings = loads_json(file.read_text(encoding="utf-8"))
        except ValueError as error:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors; an OSError, such as
            # permission denied, is said as it is: no damage to the file)
            raise MissingWeightsError(f"{file} is not valid JSON ({first_line(error)}): the folder is damaged or "
                                      f"incomplete; copy or save it again") from None
        if not isinstance(settings, dict):
            raise MissingWeightsError(f"{file} holds {type(settings).__name__} {json.dumps(settings)[:40]}, not a "
                                      f"mapping of settings: the folder is damaged; copy or save it again")
        depth = nesting_depth(settings)
        if depth > MAX_SETTINGS_NESTING:
            raise MissingWeightsError(f"{file} nests lists or objects {depth} deep (saved settings "
                                      f"nest a few): the folder is damaged; copy or save it again")


#: A weight file's name: the model's file name, maybe a variant, maybe a shard number (model.fp16.safetensors,
#: diffusion_pytorch_model.fp16-00001-of-00002.safetensors), or a shard index (model.safetensors.index.fp16.json).
WEIGHT_FILE = re.compile(r"[^.]+(\.(?P<variant>[^.-]+))?(-\d+-of-\d+)?\.(safetensors|bin)"
                         r"|[^.]+\.(safetensors|bin)\.index(\.(?P<index_variant>[^.]+))?\.json")


def weight_variants(folder: Path) -> set[Optional[str]]:
    """The variants the weights in the model folder ``folder`` were saved as (``save_pretrained(variant=...)``;
    None: without one)."""
    names = (WEIGHT_FILE.fullmatch(file.name) for file in folder.iterdir())
    return {found["variant"] or found["index_variant"] for found in names if found}


def check_variant(folder: Path, class_name: str, variant: Optional[str]) -> None:
    """``MissingWeightsError`` when the model folder ``folder`` (of a ``class_name``) holds weights, but none of
    ``variant`` (None: saved without one). diffusers' own error named whichever component of a pipeline it loaded
    first, in an order that changes from run to run: "could not be loaded (no file named
    diffusion_pytorch_model.bin ...); the folder is damaged" for a folder saved with ``variant="fp16"``."""
    found = weight_variants(folder)
    if not found or variant in found:
        return
    saved = " / ".join("without a variant" if v is None else f"as variant {v!r}" for v in sorted(found, key=str))
    named = sorted(v for v in found if v is not None)
    load = f"load it with variant={named[0]!r}" if named else "load it without variant="
    if named and cli_running():  # no command has a --variant
        load = (f"star-vsr commands load weights saved without a variant: save the pipeline again without one (in "
                f"Python: its from_pretrained(FOLDER, variant={named[0]!r}).save_pretrained(NEW_FOLDER))")
    asked = f", not as variant {variant!r}" if variant else ""
    raise MissingWeightsError(f"{folder} holds {class_name} weights saved {saved} only{asked}: {load}")


def check_weight_format(folder: Path, use_safetensors: Optional[bool], passed: Collection[str] = ()) -> None:
    """``InputError`` when ``use_safetensors`` (a ``from_pretrained`` argument: True loads ``.safetensors`` files
    only, False ``.bin`` files only) rules out every weight file of the model folder ``folder``, or of a model
    component of the pipeline folder ``folder`` that is loaded from it (listed in its ``model_index.json``, not
    ``passed`` to ``from_pretrained``). The loaders' own error ("no file named model.safetensors") was read as a
    damaged folder, with the help on where to download weights."""
    if use_safetensors is None:
        return
    if (folder / "config.json").is_file():
        parts = [folder]
    else:
        entries = _json_object(folder / "model_index.json")
        parts = [folder / name for name, value in entries.items() if not name.startswith("_") and name not in passed
                 and isinstance(value, list) and None not in value and (folder / name / "config.json").is_file()]
    for part in parts:
        formats = {"safetensors" if "safetensors" in file.name else "bin" for file in part.iterdir()
                   if WEIGHT_FILE.fullmatch(file.name)}
        if formats and ("safetensors" if use_safetensors else "bin") not in formats:
            held = ".safetensors files" if use_safetensors is False else ".bin (PyTorch pickle) files"
            # (a pipeline saved with safe_serialization=False, then loaded with use_safetensors=False: refused)
            why = (" (transformers 5 saves its models, the text encoder here, as .safetensors whatever "
                   "safe_serialization says)" if use_safetensors is False and "transformers_version" in
                   saved_config(part) and _major_version("transformers") >= 5 else "")
            raise InputError(f"{part} holds its weights as {held} only{why}, which use_safetensors="
                             f"{use_safetensors} rules out: load it without use_safetensors")


def _major_version(package: str) -> int:
    """The installed ``package``'s major version (0 when unknown)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version(package).split(".")[0])
    except (PackageNotFoundError, ValueError):
        return 0


def saved_config(folder: Union[str, Path]) -> dict[str, Any]:
    """The ``config.json`` that ``save_pretrained`` wrote in the model folder ``folder`` ({} when it is missing or
    unreadable: loading the folder names what is wrong), read without loading the model."""
    return _json_object(Path(folder, "config.json"))


def saved_pipeline_class(folder: Union[str, Path]) -> Optional[str]:
    """The pipeline class the ``model_index.json`` of ``folder`` names (None when there is none, or it is unreadable:
    checking the folder names what is wrong), read without checking its components."""
    name = _json_object(saved_index(Path(folder))).get("_class_name")
    return name if isinstance(name, str) else None


def _json_object(path: Optional[Path]) -> dict[str, Any]:
    """The JSON object in the file ``path``; {} when there is none (no such file, not JSON, not an object)."""
    try:
        found = loads_json(path.read_text(encoding="utf-8")) if path is not None else None
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def check_save_target(folder: Union[str, Path], kind: str, contents: str = "") -> None:
    """``InputError`` before a ``save_pretrained`` of a ``kind`` ("model", "pipeline") writes anything when
    ``folder`` is a file (diffusers' own only logs that for a model, and saves nothing), or the student that ships
    with star-vsr or a part of it."""
    from .student import check_not_the_shipped_student

    check_not_the_shipped_student(folder, "save into")
    if Path(folder).exists() and not Path(folder).is_dir():
        raise InputError(f"cannot save the {kind} into {folder}: it is a file; a {kind} is saved as a folder{contents}")


def check_save_folder(folder: Path, class_name: str) -> None:
    """``InputError`` before ``save_pretrained`` writes anything when ``folder`` is a file, or a pipeline folder of
    another class (diffusers would rewrite its ``model_index.json`` and leave the other pipeline's component
    folders beside this one's: a folder that loads as neither). A folder of the same class is saved over."""
    check_save_target(folder, "pipeline")
    other = saved_pipeline_class(folder)  # (none: nothing of another pipeline to mix with)
    if other is not None and other != class_name:
        raise InputError(f"cannot save a {class_name} into {folder}: it holds a {other}, whose files would be left "
                         f"mixed with this one's; save into another folder")


def check_weights_fit(model: Any, folder: Path, variant: Optional[str] = None) -> None:
    """``MissingWeightsError`` when the weights in ``folder`` (those ``stored_shapes`` reads, of ``variant``) do
    not hold exactly ``model``'s parameters and buffers: diffusers and transformers load a component whose
    config.json no longer fits its weights (or weights missing a part) with the missing parameters left random (or,
    from ``.bin`` weights, on the meta device) and the extra ones dropped, saying so only in a log line. The
    project's own models refuse that themselves (``LocalModelMixin``); this covers the others (the VAE, the text
    encoder)."""
    from diffusers import ModelMixin

    names = DIFFUSERS_WEIGHTS if isinstance(model, ModelMixin) else TRANSFORMERS_WEIGHTS
    stored = stored_shapes(folder, variant, names)
    if stored is None:
        return
    wanted = set(model.state_dict())
    # what the loaders take without a word: every key under one old top-level name (transformers 4 saved a CLIP
    # text encoder's as text_model.*, which transformers 5 maps; not one key renamed, which it leaves random),
    # non-persistent buffers older files hold (its position_ids), and the class's own patterns of keys to ignore
    buffers = {name for name, _ in model.named_buffers()}
    known = wanted | buffers
    keys = set(stored)
    prefixes = {key.split(".", 1)[0] for key in keys}
    if not isinstance(model, ModelMixin) and len(prefixes) == 1 and not keys & known and all("." in k for k in keys):
        keys = {key.split(".", 1)[1] for key in keys}
    ignored = [re.compile(pattern) for pattern in getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ()]
    unexpected = [key for key in sorted(keys - wanted)
                  if key not in buffers and not any(pattern.search(key) for pattern in ignored)]
    check_keys_fit(folder, sorted(wanted - keys), unexpected)


def stored_shapes(folder: Path, variant: Optional[str] = None,
                  names: tuple[str, ...] = DIFFUSERS_WEIGHTS) -> Optional[dict[str, tuple[int, ...]]]:
    """The shape of every tensor in the weights of the model folder ``folder`` (of ``variant``) that its loader
    reads (files named ``names``, as `DIFFUSERS_WEIGHTS`): a shard index, else the ``.safetensors`` files, else
    the ``.bin`` files (read onto the meta device: no tensor data is read); None when it holds none. Other files
    beside them (a trainer's state) are not read."""
    import torch

    suffix = f".{variant}" if variant else ""
    loaded = re.compile(rf"({'|'.join(map(re.escape, names))})[.-]")

    def named(pattern: str, dots: int) -> list[Path]:  # (no variant: exactly the dots of name.safetensors)
        return sorted(file for file in folder.glob(pattern)
                      if (variant or file.name.count(".") == dots) and loaded.match(file.name))

    for kind in ("safetensors", "bin"):
        index = named(f"*{suffix}.{kind}.index.json", 3)
        files = ([folder / name for name in
                  dict.fromkeys(loads_json(index[0].read_text(encoding="utf-8")).get("weight_map", {}).values())]
                 if index else named(f"*{suffix}.{kind}", 1))
        if not files:
            continue
        shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            if kind == "safetensors":
                shapes.update(safetensors_shapes(file))
            else:
                state = torch.load(file, map_location="meta", weights_only=True)
                shapes.update({key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")})
        return shapes
    return None


def safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in the safetensors ``file``, by key, from its header (no tensor data is read)."""
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as handle:
        return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}


def check_keys_fit(folder: Path, missing: list[str], unexpected: list[str], mismatched: list[str] = ()) -> None:
    """``MissingWeightsError`` naming ``folder`` when a load found parameters of the model ``missing`` from its
    weights, weights ``unexpected`` by the model, or weights of another shape (``mismatched``)."""
    parts = [f"{len(names)} {what} (e.g. {names[0]})" for names, what in (
        (missing, "parameters of the model are not in the weights"),
        (unexpected, "in the weights have no place in the model"),
        (mismatched, "in the weights have another shape than the model's")) if names]
    if parts:
        raise MissingWeightsError(f"{folder}: config.json does not fit the weights ({'; '.join(parts)}): the config "
                                  f"was edited or the files come from different models; copy or save the folder again")


@contextmanager
def default_dtype_kept() -> Iterator[None]:
    """Put torch's default dtype back as it was on leaving: diffusers builds a model with the load's dtype as the
    default and puts it back only when that succeeds, so a failed bfloat16 load left every later ``torch.zeros`` of
    the process (a notebook's, the next test's) in bfloat16."""
    import torch

    kept = torch.get_default_dtype()
    try:
        yield
    finally:
        torch.set_default_dtype(kept)


def load_checked(folder: Path, kind: str, help_text: str, load: Callable[[], T]) -> T:
    """``load()`` (a ``from_pretrained`` of a folder ``check_pipeline_folder`` passed), with the loaders'
    errors on damaged files (truncated weights, broken JSON, a config that does not fit its weights or builds no
    model) as a ``MissingWeightsError`` naming the folder, the loader's reason and ``help_text``."""
    try:
        with default_dtype_kept():
            return load()
    except MissingWeightsError as error:  # a model's own check (LocalModelMixin) found a damaged component
        raise MissingWeightsError(f"{error}\n{help_text}") from error
    except Exception as error:
        if isinstance(error, StarVSRError) or is_out_of_memory(error):
            raise
        fault = shape_mismatch_reason(folder, str(error)) or pipeline_fault(folder) or broken_json(folder)
        if fault is None and not is_damaged_folder_error(error):
            raise
        reason = fault or first_line(error)
        raise MissingWeightsError(f"the {kind} pipeline at {folder} could not be loaded ({reason}); the folder is "
                                  f"damaged or incomplete: copy or convert it again.\n{help_text}") from error


def pipeline_fault(folder: Path) -> Optional[str]:
    """What ``component_fault`` finds in the first component of the pipeline ``folder`` (its ``model_index.json``
    entries) that has a fault, prefixed with the component's name; None when none has."""
    for name, value in _json_object(folder / "model_index.json").items():
        cls = None if name.startswith("_") else index_entry_class(value)
        fault = component_fault(folder / name, cls) if isinstance(cls, type) else None
        if fault is not None:
            return f"{name}/{fault}"
    return None


#: The JSON files the loaders read from a pipeline folder or its components' folders (`broken_json`): others there
#: (a user's notes.json) are no part of the model.
LOADED_JSON_FILES = ("model_index.json", *SETTINGS_FILES, "tokenizer.json", "vocab.json", "special_tokens_map.json",
                     "added_tokens.json")


def broken_json(folder: Path) -> Optional[str]:
    """Which JSON file the loaders read from the pipeline ``folder`` (`LOADED_JSON_FILES`, in it or in a component's
    folder) is not valid JSON, and why; None when all are. The tokenizer's loader said only why ("Expecting
    property name enclosed in double quotes: line 2 column 1"), not which of the folder's files (black-box hunt)."""
    for file in sorted(file for file in [*folder.glob("*.json"), *folder.glob("*/*.json")]
                       if file.name in LOADED_JSON_FILES):
        try:
            loads_json(file.read_text(encoding="utf-8"))
        except ValueError as error:  # (UnicodeDecodeError and JSONDecodeError are; an unreadable file is no damage)
            return f"{file.relative_to(folder)} is not valid JSON ({first_line(error)})"
        except OSError:
            continue
    return None


def component_fault(folder: Path, cls: type) -> Optional[str]:
    """Why ``cls`` (a diffusers or transformers model, or a diffusers scheduler) cannot be loaded from the folder
    ``folder``: its config builds no ``cls`` (a size of -32, a count given as "four": the loaders' own errors are
    ``TypeError`` or ``RuntimeError`` tracebacks from deep in a constructor), or a weight has another shape than the
    model built from it (transformers' error points at a report that is not shown). None when neither: the fault is
    elsewhere. The model is built on the meta device: no memory, no weights read."""
    import torch
    from diffusers import ModelMixin
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    config_name = getattr(cls, "config_name", None) or "config.json"
    diffusers_class = issubclass(cls, (ModelMixin, SchedulerMixin))
    if not (folder / config_name).is_file() or not (diffusers_class or isinstance(getattr(cls, "config_class", None),
                                                                                  type)):
        return None
    try:  # a file that is no JSON: the loader's own error names it ("not a valid JSON file")
        config = cls.load_config(folder) if diffusers_class else cls.config_class.get_config_dict(folder)[0]
    except Exception:  # noqa: BLE001
        return None
    try:
        if issubclass(cls, SchedulerMixin):  # (its arrays are made on the CPU: small)
            cls.from_config(config)
            return None
        with torch.device("meta"):
            model = cls.from_config(config) if diffusers_class else cls(cls.config_class.from_dict(config))
    except Exception as error:
        if is_out_of_memory(error) or "meta" in str(error):  # not the config's doing
            return None
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        reason = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]  # transformers': "Validation error for
        return f"{config_name} builds no {cls.__name__}: {reason}"  # field 'x':" and the reason on the next line
    try:
        stored = stored_shapes(folder, names=DIFFUSERS_WEIGHTS if diffusers_class else TRANSFORMERS_WEIGHTS) or {}
    except Exception:  # an unreadable weight file: the loader's own error names it
        return None
    built = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    for key in sorted(built.keys() & stored.keys()):
        if built[key] != stored[key]:
            return (f"{config_name} does not fit the weights ({key} has shape {list(stored[key])} in the weights, "
                    f"{list(built[key])} in the model)")
    return None


#: diffusers' refusal of a weight whose shape is not the one its config.json builds ("Cannot load <path> because
#: decoder.conv_in.bias expected shape torch.Size([64]), but got torch.Size([32]). If you want to instead ...").
SHAPE_MISMATCH = re.compile(r"(?P<key>\S+) expected shape torch\.Size\((?P<model>\[[^]]*\])\), but got "
                            r"torch\.Size\((?P<stored>\[[^]]*\])\)")


def shape_mismatch_reason(folder: Path, message: str) -> Optional[str]:
    """For diffusers' refusal ``message`` of a weight of another shape: which component of the pipeline ``folder``
    holds it, and the two shapes, instead of diffusers' advice to load with ``ignore_mismatched_sizes=True``
    (random weights in place of the stored ones). None for other messages."""
    found = SHAPE_MISMATCH.search(message)
    if found is None:
        return None
    key, stored = found["key"], tuple(json.loads(found["stored"]))
    owners = []
    for file in sorted(Path(folder).glob("*/*.safetensors")):
        try:
            if safetensors_shapes(file).get(key) == stored:
                owners.append(file.parent.name)
        except Exception:  # a damaged file of another component: not the one named
            continue
    where = f"{owners[0]}: config.json" if len(owners) == 1 else "a component's config.json"
    return f"{where} does not fit the weights ({key} has shape {found['stored']} in the weights, {found['model']} " \
           f"in the model)"


def open_files_ran_out(error: BaseException) -> bool:
    """Whether ``error``, or one it came from, is the process running out of file handles (EMFILE, ENFILE: the
    ``ulimit -n`` limit), which a load wraps as an unreadable weights file ("the folder is damaged: reinstall")."""
    seen: set[int] = set()
    cause: Optional[BaseException] = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if getattr(cause, "errno", None) in (errno.EMFILE, errno.ENFILE) or "Too many open files" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def check_open_files(error: BaseException, folder: Path) -> None:
    """``StarVSRError`` saying so when ``error``, raised loading ``folder``, is the process out of file handles."""
    if open_files_ran_out(error):
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        raise StarVSRError(f"too many files are open to load {folder} (this process may open {limit}: ulimit -n); "
                           f"raise the limit (ulimit -n 4096) and run again") from error


def is_damaged_folder_error(error: BaseException) -> bool:
    """Whether ``error``, raised by a ``from_pretrained`` of a local folder, says one of its files is damaged
    (truncated or zeroed weights, broken JSON, text that is not UTF-8, a tensor of another shape) rather than that
    an argument was bad or memory ran out: diffusers raises ``OSError`` for unreadable files and ``ValueError`` for
    shapes; transformers (the text encoder) lets safetensors' own error through for a truncated or zeroed file, and
    the tokenizer's JSON errors. (A single file read by ``torch.load``: ``errors.is_damaged_weights_error``.)"""
    from safetensors import SafetensorError

    if isinstance(error, StarVSRError) or is_out_of_memory(error) or open_files_ran_out(error):
        return False
    if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):  # a ValueError, but a broken file (the
        return True  # tokenizer's JSON, which transformers parses itself: a traceback)
    if isinstance(error, ValueError):  # a bad argument, not a bad file, unless it is about a shape
        return "shape" in str(error)
    return isinstance(error, (OSError, SafetensorError))


def local_load_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of a pipeline's ``from_pretrained`` on a local folder: with ``local_files_only`` (it never
    downloads), and a ``dtype`` / ``torch_dtype`` given by name ("bf16" or "bfloat16", "fp32" or "float32", "fp16"
    or "float16", as ``star_vsr.upscale.load_upscaler`` takes them) turned into that torch dtype: diffusers loads
    float32 for any string, with only a log line."""
    import torch

    from .upscale import DTYPES  # "fp32" -> torch.float32, ...; and each dtype's own name ("float32")

    names = {**DTYPES, **{str(dtype).removeprefix("torch."): dtype for dtype in DTYPES.values()}}
    kwargs = {**kwargs, "local_files_only": True}
    for key in ("dtype", "torch_dtype"):
        value = kwargs.get(key)
        if isinstance(value, str):
            if value not in names:
                raise InputError(f"{key}={value!r} is not a dtype this project loads: pass torch.float32, "
                                 f"torch.bfloat16 or torch.float16 (or its name: {', '.join(names)})")
            kwargs[key] = names[value]
        elif value is not None and not isinstance(value, (torch.dtype, dict)):  # (a dict: one per component)
            raise InputError(f"{key}={value!r} is not a dtype: pass torch.float32, torch.bfloat16 or torch.float16 "
                             f"(or its name: {', '.join(names)})")  # (diffusers loaded float32, with a log line)
    return kwargs


def check_components(pipeline: type, components: dict[str, Any]) -> None:
    """``InputError`` when a component of a ``pipeline`` (its ``__init__``'s ``components``, all required) is None:
    ``from_pretrained(folder, unet=None)`` failed with an ``AttributeError`` ("'NoneType' object has no attribute
    'dtype'"), or loaded and failed when called; or is not the network its ``__init__`` is annotated with (a UNet
    and ControlNet swapped, a string: an ``AttributeError`` deep inside the call or diffusers' registration; a
    black-box hunt). Tokenizers and schedulers are not checked here (a scheduler the sampler cannot drive is
    refused when called, after a swap as diffusers users make them)."""
    import torch

    missing = [name for name, value in components.items() if value is None]
    if missing:
        raise InputError(f"a {pipeline.__name__} needs every component, and {', '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} None: pass {'it' if len(missing) == 1 else 'them'}, "
                         f"or leave {'it' if len(missing) == 1 else 'them'} out of from_pretrained to load the "
                         f"folder's")
    needs = _init_annotations(pipeline)
    for name, value in components.items():
        wanted = needs.get(name)
        value = getattr(value, "_orig_mod", value)  # a torch.compile'd network: its module (diffusers registers that)
        if isinstance(wanted, type) and issubclass(wanted, torch.nn.Module) and not isinstance(value, wanted):
            raise InputError(f"a {pipeline.__name__}'s {name} must be of class {wanted.__name__}, not "
                             f"{type(value).__name__}")


_Pipeline = TypeVar("_Pipeline", bound="CheckedPipeline")


class CheckedPipeline:
    """What both pipelines (a base class before ``DiffusionPipeline``) add to diffusers' ``to``, ``save_pretrained``
    and CPU offload: a ``DeviceError`` where no GPU is available, not diffusers' ``RuntimeError`` ("... requires
    accelerator, but not found") or torch's from deep inside a move; a save that never leaves a mix of two models."""

    def to(self: _Pipeline, *args: Any, **kwargs: Any) -> _Pipeline:
        """``DiffusionPipeline.to``; a CUDA device where no GPU is available is a ``DeviceError``."""
        check_to_device(args, kwargs)
        return super().to(*args, **kwargs)  # type: ignore[misc]

    def save_pretrained(self, save_directory: Union[str, os.PathLike], **kwargs: Any) -> None:
        """``DiffusionPipeline.save_pretrained`` into a temporary folder, then moved into place: a save that fails
        while writing (a full disk) leaves the folder as it was, one stopped while moving leaves a folder that does
        not load, never a mix of two models (``save_pipeline_folder``). The weight files get the umask's mode
        (``give_default_mode``). A file or another pipeline's folder is refused (``check_save_folder``)."""
        save = super().save_pretrained  # type: ignore[misc]
        save_pipeline_folder(self, save_directory, lambda folder: save(folder, **kwargs))

    #: What saves memory in this pipeline, said where diffusers' attention slicing is asked for (subclasses).
    MEMORY_ADVICE = ""

    def enable_attention_slicing(self, slice_size: Union[str, int, None] = "auto") -> None:
        """A warning and nothing more: no component slices its attention. diffusers' own method changed nothing
        without a word, and a user short of memory took it as on (black-box hunt). None (diffusers'
        ``disable_attention_slicing``): off, as it is."""
        from .user_warnings import warn_user

        if slice_size is None:
            return
        warn_user(f"{type(self).__name__} has no attention slicing; enable_attention_slicing changes nothing. "
                  f"{self.MEMORY_ADVICE}")

    def enable_model_cpu_offload(self, gpu_id: Optional[int] = None, device: Any = None) -> None:
        """Keep each model on the CPU until it runs on ``device`` (None: the accelerator there is; GPU only)."""
        _check_offload("enable_model_cpu_offload()", device)
        super().enable_model_cpu_offload(gpu_id=gpu_id, device=device)  # type: ignore[misc]

    def enable_sequential_cpu_offload(self, gpu_id: Optional[int] = None, device: Any = None) -> None:
        """Keep each layer on the CPU until it runs on ``device`` (None: the accelerator there is; GPU only; slower
        than ``enable_model_cpu_offload``)."""
        _check_offload("enable_sequential_cpu_offload()", device)
        super().enable_sequential_cpu_offload(gpu_id=gpu_id, device=device)  # type: ignore[misc]


def _check_offload(method: str, device: Any) -> None:
    """``DeviceError`` unless ``device`` (None: whichever accelerator torch finds) is an accelerator that is there."""
    import torch

    kind = torch.device(device).type if device is not None else (
        torch.accelerator.current_accelerator().type if torch.accelerator.is_available() else None)
    if kind in (None, "cpu") or (kind == "cuda" and not torch.cuda.is_available()):
        raise DeviceError(f"{method} moves models to a GPU when they run; no GPU is available. On the CPU the "
                          f"pipeline already runs in host memory.")


def check_to_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``DeviceError`` when a pipeline's ``to(...)`` (``args``, ``kwargs``) asks for a CUDA (or MPS, XPU) device and
    none is available: torch's own error ("Found no NVIDIA driver on your system") comes from deep inside the move."""
    import torch

    for value in (kwargs.get("device"), *args):
        if not isinstance(value, (str, torch.device, int)) or isinstance(value, bool):  # a dtype, or no device
            continue  # (an int is a CUDA device's index)
        try:
            device = torch.device(value)
        except RuntimeError:  # not a device name: diffusers' own check reports it
            continue
        # (mps and xpu: torch's RuntimeError or AssertionError from deep inside the move, as cuda's was)
        kinds = {"cuda": ("a CUDA GPU", torch.cuda.is_available),
                 "mps": ("Apple's MPS", torch.backends.mps.is_available),
                 "xpu": ("an Intel XPU", lambda: hasattr(torch, "xpu") and torch.xpu.is_available())}
        if device.type in kinds and not kinds[device.type][1]():
            shown = str(value) if isinstance(value, torch.device) else value  # 'cuda', 0
            raise DeviceError(f"to({shown!r}) needs {kinds[device.type][0]}, and none is available; the pipeline "
                              "runs on the CPU as loaded (or pass 'cpu')")


#: Entries of a ``config.json`` that say who saved it and in which dtype, not which model: compared without them.
SAVER_KEYS = frozenset({"_diffusers_version", "transformers_version", "_name_or_path", "torch_dtype", "dtype"})


def _keep_other_variants(old: Path, new: Path) -> None:
    """Give the component folder ``new``, about to replace ``old``, the weight files of ``old`` saved as variants it
    does not hold, when they are of the same model (its ``config.json``), as diffusers' ``save_pretrained`` keeps
    them: replacing the whole folder deleted the full-precision weights beside an fp16 variant saved later. A
    variant named after a dtype (``DTYPE_VARIANTS``) must also hold the same weights, rounded (``_same_weights``):
    the commands load the plain weights, and a model trained further and saved as bf16 left the old ones, run
    without a word. Others (``ema``) differ by design and stay. Hard links (a copy across file systems), so that
    ``old`` is whole until it is replaced."""
    written = weight_variants(new)
    if not written or {k: v for k, v in saved_config(old).items() if k not in SAVER_KEYS} != \
            {k: v for k, v in saved_config(new).items() if k not in SAVER_KEYS}:
        return
    others = weight_variants(old) - written
    new_rows = _first_rows(new, next(iter(written))) if others & DTYPE_VARIANTS else None  # (read only if compared)
    for variant in others:
        if variant in DTYPE_VARIANTS and (new_rows is None or not _same_weights(_first_rows(old, variant), new_rows)):
            continue
        for file in _variant_files(old, variant):
            try:
                os.link(file, new / file.name)
            except OSError:
                shutil.copy2(file, new / file.name)


#: Variants named after the dtype their weights are stored in (and those without a variant: full precision).
DTYPE_VARIANTS = frozenset({None, "fp32", "fp16", "bf16", "fp8"})


def _variant_files(folder: Path, variant: Optional[str]) -> list[Path]:
    """The weight files (and shard index) of ``folder`` saved as ``variant`` (None: without one)."""
    return [file for file in folder.iterdir()
            if (found := WEIGHT_FILE.fullmatch(file.name)) and (found["variant"] or found["index_variant"]) == variant]


def _first_rows(folder: Path, variant: Optional[str]) -> Optional[dict[str, torch.Tensor]]:
    """The first row (along dimension 0) of every weight of ``variant`` in ``folder``, read from safetensors without
    reading the rest; None for .bin weights (a pickle is read whole) and for a damaged file (dropped, not kept)."""
    from safetensors import SafetensorError, safe_open

    variant_files = _variant_files(folder, variant)
    files = [file for file in variant_files if file.suffix == ".safetensors"]
    if not files or any(file.suffix == ".bin" for file in variant_files):
        return None
    rows = {}
    try:
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    part = handle.get_slice(key)
                    rows[key] = part[:1] if part.get_shape() else handle.get_tensor(key)
    except (SafetensorError, OSError, ValueError):  # (a save that failed on it left a folder that did not load)
        return None
    return rows


def _same_weights(old: Optional[dict[str, torch.Tensor]], new: dict[str, torch.Tensor]) -> bool:
    """Whether two variants' ``_first_rows`` are of the same weights, each rounded to its dtype: equal within the
    coarser dtype's precision (a model trained further differs by far more, in nearly every row)."""
    import torch

    if old is None or old.keys() != new.keys():
        return False
    for key, value in old.items():
        other = new[key]
        if value.shape != other.shape or not (value.is_floating_point() and other.is_floating_point()):
            if not torch.equal(value, other):
                return False
            continue
        eps = max(torch.finfo(value.dtype).eps, torch.finfo(other.dtype).eps)
        if not torch.allclose(value.float(), other.float(), rtol=eps, atol=1e-5):
            return False
    return True


def save_pipeline_folder(pipe: Any, save_directory: Union[str, Path], save: Callable[[str], None]) -> None:
    """``save(folder)`` (diffusers' ``save_pretrained`` of ``pipe``) into a hidden temporary folder once
    ``check_save_folder`` passed, then the files it wrote moved into ``save_directory``, ``model_index.json`` last.

    A save that fails before the moves (a full disk, a read-only folder: the long part, writing the weights) leaves
    ``save_directory`` as it was: saving a larger model over a good folder used to leave the new ``config.json``
    beside the old weights, a folder that loads as neither. Over an existing pipeline the moves start by renaming
    its ``model_index.json`` to ``REPLACING_INDEX`` and removing the ``MODEL_RECORDS`` that describe it: a save
    killed between the moves (a training run's final save) leaves a folder that does not load, where it left one
    that loaded the new ControlNet beside the old UNet under the old run's records without a word. Other files in
    ``save_directory`` (a training run's checkpoints) stay. The weight files written get the umask's mode
    (``give_default_mode``); a component folder replaced keeps its own (``move_into_place``)."""
    folder = Path(save_directory).expanduser()  # "~/student" was a folder named "~" in the current one
    check_save_folder(folder, type(pipe).__name__)
    # inside the folder where it exists, so that the moves below are renames on one file system (a symlinked folder)
    temp = temporary_path(folder / "pipeline" if folder.is_dir() else folder)
    moving = False  # from the first change to save_directory on, a failure leaves it without model_index.json
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        save(str(temp))
        for name in pipe.components:
            give_default_mode(temp / name)
        if not folder.is_dir():
            os.rename(temp, folder)
            return
        for entry in temp.iterdir():  # before save_directory changes: reading them can fail
            if entry.is_dir() and (folder / entry.name).is_dir():
                _keep_other_variants(folder / entry.name, entry)
        if (folder / "model_index.json").is_file():  # (a save stopped before this one left REPLACING_INDEX)
            os.replace(folder / "model_index.json", folder / REPLACING_INDEX)
        moving = True
        for name in MODEL_RECORDS:
            record = folder / name
            shutil.rmtree(record) if is_real_folder(record) else record.unlink(missing_ok=True)
        for entry in sorted(temp.iterdir(), key=lambda entry: entry.name == "model_index.json"):
            move_into_place(entry, folder / entry.name)
        (folder / REPLACING_INDEX).unlink(missing_ok=True)
    except Exception as error:  # a full disk under safetensors, tokenizers (a bare Exception), torch.save
        if not is_failed_write(error):
            raise
        left = "it holds part of the new pipeline and does not load: save again" if moving else \
            "the folder was left as it was"
        raise write_failed(f"cannot save the pipeline into {folder}: {write_reason(error)}; {left}", error) from error
    finally:
        remove_temporary(temp)
