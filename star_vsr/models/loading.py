"""``from_pretrained`` of this project's models: local folders only, and weights that fit the config exactly.

diffusers' ``ModelMixin.from_pretrained`` asks the Hugging Face Hub for a name that is not a local folder (here
with no network: five retries, then an ``OSError``), and loads a folder whose ``config.json`` no longer fits its
weights (a block count edited, files from two models) with only a log line: parameters missing from the file are
left randomly initialised, extra ones dropped, and the model runs, giving garbage (so does a change of a tensor's
shape with ``ignore_mismatched_sizes=True``, which diffusers' own error suggests). ``LocalModelMixin`` makes these
a ``MissingWeightsError``, and so a folder without ``config.json`` or weights, a pipeline folder given for one of
its models, and truncated or unreadable files (diffusers' own errors name a fallback file, "no file named
diffusion_pytorch_model.bin", or only the file).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

from diffusers import ModelMixin

from ..errors import InputError, MissingWeightsError, StarVSRError, first_line, is_out_of_memory
from ..model_folder import (check_keys_fit, check_model_folder, check_open_files, check_save_target, check_variant,
                            check_weight_format, component_fault, default_dtype_kept, is_damaged_folder_error,
                            local_load_kwargs, saved_config)


#: How the log lines ``without_misleading_load_logs`` drops begin.
MISLEADING_LOAD_LOGS = ("Some weights of", "You should probably TRAIN", "An error occurred while trying to fetch",
                        "Defaulting to unsafe serialization")


@contextmanager
def without_misleading_load_logs() -> Iterator[None]:
    """diffusers' warnings that a load left parameters "newly initialized" ("You should probably TRAIN this
    model") or weights unused, dropped while the block runs: ``LocalModelMixin`` and ``check_weights_fit`` refuse
    such a load, and the warning printed before that error (every key of a VAE's decoder) read as if the model had
    loaded. Also its error that a folder of .bin weights has no .safetensors ("An error occurred while trying to
    fetch ..."), logged before it loads the .bin weights (a failure to load them is an error of its own)."""
    loggers = [logging.getLogger(name) for name in ("diffusers.models.modeling_utils", "transformers.modeling_utils")]

    def keep(record: logging.LogRecord) -> bool:  # (transformers 5 reports it as a "LOAD REPORT" table)
        message = str(record.msg)
        return not (message.startswith(MISLEADING_LOAD_LOGS) or "LOAD REPORT" in message)

    for logger in loggers:
        logger.addFilter(keep)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(keep)


class LocalModelMixin:
    """Put before ``ModelMixin`` in a model's bases: its ``from_pretrained`` reads a local folder only (nothing
    is downloaded) and refuses weights that leave a parameter of the config's model unset or that hold parameters
    it has no place for. ``output_loading_info=True`` still returns ``(model, info)``. Its ``save_pretrained``
    refuses a path that is a file (diffusers only logs that and returns, saving nothing)."""

    def save_pretrained(self, save_directory: Union[str, Path], *args: Any, **kwargs: Any) -> None:
        save_directory = os.path.expanduser(save_directory)  # "~/student" was a folder named "~" here (a str:
        # diffusers splits it with push_to_hub)
        check_save_target(save_directory, "model", " (config.json and weights)")
        super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]

    # a pipeline's save_pretrained passes `variant`, `safe_serialization`, ... only to save methods whose signature
    # lists them: this one's must read as ModelMixin's (`inspect.signature` follows __wrapped__)
    save_pretrained.__wrapped__ = ModelMixin.save_pretrained  # type: ignore[attr-defined]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, Path], **kwargs: Any) -> Any:
        pretrained_model_name_or_path = Path(pretrained_model_name_or_path).expanduser()  # "~/x" "did not exist"
        folder = Path(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        check_model_folder(folder, cls.__name__)
        saved = saved_config(folder).get("_class_name")
        if isinstance(saved, str) and saved not in {base.__name__ for base in cls.__mro__}:  # was "config.json
            # does not fit the weights" (a UNet folder given to StarStudentModel)
            raise MissingWeightsError(f"{folder} holds a {saved}, not a {cls.__name__}: load it with "
                                      f"{saved}.from_pretrained")
        check_variant(folder, cls.__name__, kwargs.get("variant"))
        check_weight_format(folder, kwargs.get("use_safetensors"))
        kwargs = local_load_kwargs(kwargs)  # local_files_only, and a dtype by name ("bf16") as the pipelines take it
        want_info = kwargs.pop("output_loading_info", False)
        try:
            with without_misleading_load_logs(), default_dtype_kept():  # refused below, in one message
                model, info = super().from_pretrained(pretrained_model_name_or_path,  # type: ignore[misc]
                                                      output_loading_info=True, **kwargs)
        except Exception as error:
            if (isinstance(error, StarVSRError) and not isinstance(error, InputError)) or is_out_of_memory(error):
                raise  # (an InputError: the model's own check of its config, "num_blocks must be ...")
            check_open_files(error, folder)  # (it read as a damaged folder: "copy or save it again")
            fault = component_fault(folder, cls)  # a config that builds no model ("four" blocks, -32 channels)
            if fault is None and not is_damaged_folder_error(error):
                raise
            raise MissingWeightsError(f"{folder}: {cls.__name__} could not be loaded ({fault or first_line(error)}); "
                                      f"the folder is damaged or incomplete: copy or save it again") from error
        mismatched = [entry[0] for entry in info.get("mismatched_keys") or []]  # only with ignore_mismatched_sizes
        check_keys_fit(folder, list(info["missing_keys"]), list(info["unexpected_keys"]), mismatched)
        return (model, info) if want_info else model
