"""Train an unconditional DDPM on your images: one CPU, one GPU or many, through Accelerate (chapter 5).

    python -m course_utils.train_unconditional --train_data_dir my_images --resolution 32 --output_dir my-ddpm
    accelerate launch -m course_utils.train_unconditional --train_data_dir my_images ...
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m course_utils.train_unconditional ...

(The last line runs two CPU processes. ``accelerate launch --cpu --num_processes 2`` starts only one
process with accelerate 1.15 unless MPI is set up: its ``--cpu`` path spawns several only through mpirun.)

The flags are those of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``, with
the same names and defaults, two of them widened: ``--prediction_type`` also takes ``v_prediction`` (and ``flow``,
below), and ``--ddpm_beta_schedule`` takes the schedules ``DDPMScheduler`` implements (the example's ``cosine``
is not one; ``squaredcos_cap_v2`` is the cosine schedule). The course adds ``--seed``, ``--max_train_steps``,
``--skip_bad_images``, ``--data_on_device`` (the fast path, on by default on CUDA) and ``--class_conditional``
/ ``--class_drop_prob`` (a class-conditioned UNet for classifier-free guidance, labels from the image folder's
sub-folder names), and ``--pretrained_model_name_or_path`` from diffusers' other training scripts (fine-tune a
pipeline's UNet with its noise schedule), and ``--prediction_type flow`` (chapter 12: flow matching instead of
DDPM, a ``FlowMatchEulerDiscreteScheduler`` saved; ``--weighting_scheme`` / ``--logit_mean`` / ``--logit_std`` /
``--mode_scale`` draw t as diffusers' SD3 scripts do, ``--flow_shift`` sets the scheduler's shift). The image
mode follows the UNet: a config with ``in_channels: 1`` trains on grayscale images, 3 on RGB. The script reads
top to bottom: configuration, data, model, loop, checkpoint, save.

Checks first: ``check_args`` looks at every flag before any data is read or model built — types, ranges,
choices, combinations, the model's config against the resolution, the output folder, a checkpoint to resume,
and with ``--push_to_hub`` the token and the Hub — and the script stops with one ``error:`` line per problem
(all of them, exit code 2), so a mistake costs seconds, not a training run.

Reliability: ``--checkpointing_steps`` saves the full training state (model, EMA, optimizer, LR schedule,
random states, step) into ``checkpoint-<step>`` folders that appear whole or not at all;
``--resume_from_checkpoint latest`` continues from the newest one. Pipelines are written to a temporary
folder and renamed into place, so a crash never leaves a half-written one.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import itertools
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMPipeline, DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_density_for_timestep_sampling
from torchvision import transforms
from tqdm.auto import tqdm

from .data import DeviceBatches
from .diffusion import diffusion_loss, is_flow, make_unet
from .imagefolder import IMAGE_EXTENSIONS, BadImagesError, to_rgb
from .sampling import sample_with_guidance
from .viz import make_grid

CHECKPOINT_PREFIX = "checkpoint-"


# ---- Configuration --------------------------------------------------------------------------------------

# Flags whose value is one of a list (checked by check_args with every other problem, not one at a time).
CHOICES = {
    "lr_scheduler": ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"),
    "logger": ("tensorboard", "wandb"),
    "mixed_precision": ("no", "fp16", "bf16"),
    "prediction_type": ("epsilon", "sample", "v_prediction", "flow"),
    "ddpm_beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace"),
    "data_on_device": ("auto", "yes", "no"),
    "weighting_scheme": ("none", "logit_normal", "mode"),
}
_TRUE = {"1", "true", "yes", "on"}
# Flags that do nothing without another one.
NEEDS = {"dataset_config_name": "dataset_name", "hub_model_id": "push_to_hub", "hub_private_repo": "push_to_hub",
         "class_drop_prob": "class_conditional", "ema_inv_gamma": "use_ema", "ema_power": "use_ema",
         "ema_max_decay": "use_ema"}


class _Parser(argparse.ArgumentParser):
    """argparse, but its own errors (a flag without its value, an ambiguous abbreviation) are one line too."""

    def error(self, message: str) -> None:
        """Print ``error: <message>`` and exit with code 2, as argparse does, without the usage block."""
        self.exit(2, f"error: {message} (--help lists the flags)\n")


class Unparsed(str):
    """A flag's text that is not of the flag's type; ``check_args`` reports it along with every other problem."""

    kind = "a value"


def _lenient(convert, kind: str):
    """An argparse ``type`` that returns ``Unparsed`` instead of stopping the parse at the first bad value."""
    def parse(text: str):
        try:
            return convert(text)
        except ValueError:
            bad = Unparsed(text)
            bad.kind = kind
            return bad
    parse.__name__ = convert.__name__
    parse.__doc__ = f"The flag's text as {kind}, or ``Unparsed`` (reported by ``check_args``)."
    return parse


INT, FLOAT = _lenient(int, "a whole number"), _lenient(float, "a number")


def build_parser() -> argparse.ArgumentParser:
    """The diffusers example's flags (same names and defaults; wider ``--prediction_type`` and
    ``--ddpm_beta_schedule`` choices) plus the course's."""
    p = _Parser(description="Train an unconditional DDPM (diffusers-compatible flags).")
    add = p.add_argument

    def choice(name: str, default: str, help: str = "") -> None:
        add(f"--{name}", type=str, default=default, metavar="{" + ",".join(CHOICES[name]) + "}", help=help)

    add("--dataset_name", type=str, default=None, help="A Hub dataset id, or a local dataset path.")
    add("--dataset_config_name", type=str, default=None, help="The dataset's config, if it has several.")
    add("--model_config_name_or_path", type=str, default=None,
        help="A UNet config (folder or Hub id); default: a UNet sized for --resolution.")
    add("--pretrained_model_name_or_path", type=str, default=None,
        help="Start from this pipeline's UNet weights and scheduler (a local diffusers folder or a Hub id): "
             "fine-tuning.")
    add("--train_data_dir", type=str, default=None, help="A folder of images (ignored if --dataset_name is given).")
    add("--output_dir", type=str, default="ddpm-model-64", help="Where the pipeline, checkpoints and logs go.")
    add("--overwrite_output_dir", action="store_true",
        help="Delete --output_dir first if it holds another run (a pipeline or checkpoints).")
    add("--cache_dir", type=str, default=None, help="Where downloaded datasets are cached.")
    add("--resolution", type=INT, default=64, help="Images are resized (and cropped) to this size.")
    add("--center_crop", action="store_true", help="Crop the centre after resizing (default: a random crop).")
    add("--random_flip", action="store_true", help="Flip images left-right at random.")
    add("--train_batch_size", type=INT, default=16, help="Batch size per device.")
    add("--eval_batch_size", type=INT, default=16, help="How many images to generate for each sample grid.")
    add("--dataloader_num_workers", type=INT, default=0, help="Data-loading subprocesses (0: the main one).")
    add("--num_epochs", type=INT, default=100)
    add("--save_images_epochs", type=INT, default=10, help="Generate a sample grid every N epochs.")
    add("--save_model_epochs", type=INT, default=10, help="Save the pipeline every N epochs.")
    add("--gradient_accumulation_steps", type=INT, default=1, help="Batches to accumulate per update.")
    add("--learning_rate", type=FLOAT, default=1e-4, help="Learning rate after the warm-up.")
    choice("lr_scheduler", "cosine", "The LR schedule after the warm-up.")
    add("--lr_warmup_steps", type=INT, default=500, help="Warm-up steps of the LR schedule.")
    add("--adam_beta1", type=FLOAT, default=0.95)
    add("--adam_beta2", type=FLOAT, default=0.999)
    add("--adam_weight_decay", type=FLOAT, default=1e-6)
    add("--adam_epsilon", type=FLOAT, default=1e-08)
    add("--use_ema", action="store_true", help="Keep an exponential moving average of the weights and save it.")
    add("--ema_inv_gamma", type=FLOAT, default=1.0, help="EMA warm-up: inverse gamma.")
    add("--ema_power", type=FLOAT, default=3 / 4, help="EMA warm-up: power.")
    add("--ema_max_decay", type=FLOAT, default=0.9999, help="The largest EMA decay.")
    add("--push_to_hub", action="store_true",
        help="Upload the final pipeline (token from HF_TOKEN or `hf auth login`; checked before training).")
    add("--hub_token", type=str, default=None, help="Refused: put the token in HF_TOKEN, not on the command line.")
    add("--hub_model_id", type=str, default=None, help="Repo id for --push_to_hub (default: <user>/<output_dir>).")
    add("--hub_private_repo", action="store_true", help="Create the Hub repo as private.")
    choice("logger", "tensorboard")
    add("--logging_dir", type=str, default="logs", help="Log folder, inside --output_dir.")
    add("--local_rank", type=INT, default=-1, help="Set by the launcher in distributed runs.")
    choice("mixed_precision", "no")
    choice("prediction_type", "epsilon",
           "What the UNet learns to output. flow: flow matching (rectified flow, chapter 12) instead of DDPM: "
           "x_t = (1 - t) x0 + t noise, target noise - x0, the UNet given t*1000, a FlowMatchEulerDiscreteScheduler "
           "saved (the --ddpm_beta_schedule is then unused).")
    add("--ddpm_num_steps", type=INT, default=1000)
    add("--ddpm_num_inference_steps", type=INT, default=1000)
    choice("ddpm_beta_schedule", "linear")
    add("--checkpointing_steps", type=INT, default=500, help="Save the full training state every N updates.")
    add("--checkpoints_total_limit", type=INT, default=None, help="Keep at most N checkpoints (oldest removed).")
    add("--resume_from_checkpoint", type=str, default=None, help='A checkpoint folder, or "latest".')
    add("--enable_xformers_memory_efficient_attention", action="store_true")
    # The course's additions.
    add("--seed", type=INT, default=None, help="Seed everything (data order, noise, initial weights).")
    add("--max_train_steps", type=INT, default=None, help="Stop after N updates (overrides --num_epochs).")
    add("--skip_bad_images", action="store_true", help="Skip unreadable images (named in a warning).")
    choice("data_on_device", "auto",
           "Decode the images once into a uint8 tensor on the training device, flip there, and on CUDA use "
           "TF32 and channels_last (the fast path). auto: on CUDA when the images fit in 2 GB and the crop "
           "is fixed (--center_crop or square images).")
    add("--class_conditional", action="store_true",
        help="Train a class-conditioned UNet on the dataset's 'label' column (an image folder's sub-folder names); "
             "one extra class embedding means 'no class', for classifier-free guidance.")
    add("--snr_gamma", type=FLOAT, default=None,
        help="Min-SNR loss weighting (Hang et al. 2023) with this gamma, as in diffusers' train_text_to_image.py "
             "(5.0 is the paper's choice); default: none, plain MSE.")
    add("--class_drop_prob", type=FLOAT, default=0.1,
        help="With --class_conditional: the share of labels replaced by 'no class' during training.")
    # Flow matching (--prediction_type flow), named as in diffusers' train_dreambooth_sd3.py.
    choice("weighting_scheme", "none",
           "With --prediction_type flow: how t is drawn (diffusers.training_utils."
           "compute_density_for_timestep_sampling): none = uniform, logit_normal = SD3's, mode.")
    add("--logit_mean", type=FLOAT, default=0.0, help="--weighting_scheme logit_normal: the mean of the logit.")
    add("--logit_std", type=FLOAT, default=1.0, help="--weighting_scheme logit_normal: the spread of the logit.")
    add("--mode_scale", type=FLOAT, default=1.29, help="--weighting_scheme mode: the scale.")
    add("--flow_shift", type=FLOAT, default=1.0,
        help="With --prediction_type flow: the saved scheduler's timestep shift (SD3 uses 3.0 at 1024 px).")
    return p


def _without_missing_values(p: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` without the flags typed with no value after them (argparse would stop at the first), and those
    flags, so that ``check_args`` reports them with every other problem. A negative number after a flag is its
    value (``--adam_beta1 -1e-3``; argparse would take it for a flag)."""
    takes_value = [o for a in p._actions if a.nargs != 0 for o in a.option_strings]
    kept, missing, rest = [], [], list(argv)
    while rest:
        arg = rest.pop(0)
        names = [o for o in takes_value if o == arg] or [o for o in takes_value if o.startswith(arg) and
                                                          arg.startswith("--")]
        if len(names) != 1:
            kept.append(arg)
        elif rest and _is_number(rest[0]):
            kept.append(f"{arg}={rest.pop(0)}")
        elif not rest or rest[0].startswith("-"):
            missing.append(names[0])
        else:
            kept += [arg, rest.pop(0)]
    return kept, missing


def _is_number(text: str) -> bool:
    """Whether ``text`` reads as a number (``-1e-3`` is a value, not a flag)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags as typed (``check_args`` checks them), with ``unrecognized_args``, ``given_flags`` and
    ``missing_values`` (flags typed without a value) added."""
    p = build_parser()
    argv, missing = _without_missing_values(p, list(sys.argv[1:] if argv is None else argv))
    args, args.unrecognized_args = p.parse_known_args(argv)
    args.missing_values = missing

    for action in p._actions:  # parse again with no defaults: which flags were typed
        action.default = argparse.SUPPRESS
    args.given_flags = frozenset(vars(p.parse_known_args(argv)[0]))
    env_rank = int(os.environ.get("LOCAL_RANK", -1))
    if env_rank != -1:
        args.local_rank = env_rank
    return args


def check_args(args: argparse.Namespace) -> list[str]:
    """Every problem with the flags, one ``error:`` line each (none: the run can start).

    Runs before any data is read or model built; writes nothing. Reads only small config files (a UNet's
    config, a checkpoint's parameter shapes) and, with ``--push_to_hub``, asks the Hub about the token.
    Fills in ``args.hub_model_id`` from the token's user when it was left out.
    """
    problems = _value_problems(args)
    problems += _data_problems(args)
    unet, model_problems = _model_problems(args)
    problems += model_problems
    problems += _output_problems(args)
    problems += _resume_problems(args, unet)
    problems += _push_problems(args)
    problems += _flow_problems(args)
    return [f"error: {p}" for p in problems]


def exit_on_problems(problems: list[str]) -> None:
    """Print every problem on stderr (once, from the first process) and exit with code 2, as argparse does."""
    if not problems:
        return
    if int(os.environ.get("RANK", 0)) == 0:
        print("\n".join(problems), file=sys.stderr)
    sys.exit(2)


def _value_problems(args: argparse.Namespace) -> list[str]:
    """Values that are not numbers, out of their range, not among their choices, or do not go together."""
    defaults = build_parser()
    problems, unknown = [], list(args.unrecognized_args)
    while unknown:
        flag = unknown.pop(0)
        if flag.startswith("-"):
            value = unknown.pop(0) if unknown and not unknown[0].startswith("-") else None
            typed = flag if value is None else f"{flag} {value}"
            close = difflib.get_close_matches(flag.split("=")[0], [o for a in defaults._actions for o in
                                                                   a.option_strings], n=1)
            hint = f"did you mean {close[0]}?" if close else "--help lists the flags"
            problems.append(f"{typed!r}: not a flag of this script; {hint}")
        else:
            problems.append(f"{flag!r}: an extra value after the flags (is a flag missing before it, or a quote?)")
    for flag in getattr(args, "missing_values", ()):
        default = defaults.get_default(flag.lstrip("-"))
        problems.append(f"{flag}: no value after it; give one ({flag} VALUE"
                        + (f", default {default})" if default not in (None, False) else ")"))
    for name, value in vars(args).items():
        if isinstance(value, Unparsed):
            problems.append(f"--{name} {value!r}: not {value.kind}")
    ok = {k: v for k, v in vars(args).items() if not isinstance(v, Unparsed)}

    def need(name: str, good: bool, what: str) -> None:
        if name in ok and ok[name] is not None and not good:
            default = defaults.get_default(name)
            problems.append(f"--{name} {ok[name]}: must be {what}" + (f" (default: {default:g})" if default else ""))

    def value(name: str, fallback: float = 1) -> float:
        v = ok.get(name)
        return fallback if v is None else v

    for name in ("resolution", "train_batch_size", "eval_batch_size", "num_epochs", "save_images_epochs",
                 "save_model_epochs", "gradient_accumulation_steps", "ddpm_num_steps", "ddpm_num_inference_steps",
                 "checkpointing_steps", "checkpoints_total_limit", "max_train_steps"):
        need(name, value(name) >= 1, "at least 1")
    for name in ("dataloader_num_workers", "lr_warmup_steps"):
        need(name, value(name) >= 0, "0 or more")
    for name in ("learning_rate", "adam_epsilon", "ema_inv_gamma", "ema_power"):
        need(name, math.isfinite(value(name)) and value(name) > 0, "a finite number above 0")
    need("adam_weight_decay", math.isfinite(value("adam_weight_decay")) and value("adam_weight_decay") >= 0,
         "a finite number, 0 or more")
    for name in ("adam_beta1", "adam_beta2", "ema_max_decay"):
        need(name, 0 <= value(name) < 1, "in [0, 1)")
    need("snr_gamma", math.isfinite(value("snr_gamma")) and value("snr_gamma") > 0, "a finite number above 0")
    need("class_drop_prob", 0 <= value("class_drop_prob") < 1,
         "in [0, 1) (the share of labels dropped; 1 would never show the model a class)")
    need("seed", 0 <= value("seed", 0) < 2**32, "in [0, 2**32)")
    for name, options in CHOICES.items():
        if name in ok and ok[name] not in options:
            close = difflib.get_close_matches(str(ok[name]), options, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "pick one of them"
            problems.append(f"--{name} {ok[name]!r}: not one of {', '.join(options)}; {hint}")
    if value("ddpm_num_inference_steps") > value("ddpm_num_steps") and not args.pretrained_model_name_or_path:
        problems.append(f"--ddpm_num_inference_steps {ok['ddpm_num_inference_steps']} is more than "
                        f"--ddpm_num_steps {ok['ddpm_num_steps']}: sampling cannot take more steps than training "
                        "noise levels; lower it")
    for flag, needs in NEEDS.items():  # typed, but without the flag that gives it a meaning: a mistake
        if flag in args.given_flags and not getattr(args, needs):
            problems.append(f"--{flag} only means something with --{needs}: add --{needs}, or drop --{flag}")
    if args.hub_token is not None:
        problems.append("--hub_token is refused: a token on the command line ends up in shell history and process "
                        "lists. Set the HF_TOKEN environment variable (or run `hf auth login`) instead.")
    problems += _device_problems(args)
    return problems


FLOW_FLAGS = ("weighting_scheme", "logit_mean", "logit_std", "mode_scale", "flow_shift")


def _flow_problems(args: argparse.Namespace) -> list[str]:
    """Flow-matching flags without --prediction_type flow, DDPM flags with it, and the shift's range."""
    flow = args.prediction_type == "flow"
    problems = [f"--{name} only means something with --prediction_type flow: add it, or drop --{name}"
                for name in FLOW_FLAGS if name in args.given_flags and not flow]
    if flow and "snr_gamma" in args.given_flags:
        problems.append("--snr_gamma with --prediction_type flow: min-SNR weighting needs a DDPM noise schedule "
                        "(its signal-to-noise ratios); drop --snr_gamma")
    if flow and "ddpm_beta_schedule" in args.given_flags:
        problems.append("--ddpm_beta_schedule with --prediction_type flow: flow matching has no beta schedule "
                        "(its noise level is t itself); drop --ddpm_beta_schedule")
    for name in ("logit_std", "mode_scale", "flow_shift"):
        v = getattr(args, name)
        if name in args.given_flags and not isinstance(v, Unparsed) and not (math.isfinite(v) and v > 0):
            problems.append(f"--{name} {v}: must be a finite number above 0")
    return problems


def _device_problems(args: argparse.Namespace) -> list[str]:
    """Flags that need hardware or packages this machine lacks (mixed precision, xformers, the logger)."""
    problems = []
    cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in _TRUE
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if args.mixed_precision == "fp16" and not (cuda or mps):
        problems.append("--mixed_precision fp16: needs a GPU and this run has none; use --mixed_precision bf16 "
                        "(works on CPUs) or no")
    if args.mixed_precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        problems.append(f"--mixed_precision bf16: this GPU ({torch.cuda.get_device_name()}) has no bfloat16; use "
                        "--mixed_precision fp16")
    if args.enable_xformers_memory_efficient_attention:
        if importlib.util.find_spec("xformers") is None:
            problems.append("--enable_xformers_memory_efficient_attention: xformers is not installed; "
                            "pip install xformers, or drop the flag (PyTorch's own attention is used then)")
        elif not cuda:
            problems.append("--enable_xformers_memory_efficient_attention: xformers needs a CUDA GPU; drop the flag")
    needed = {"wandb": ("wandb",), "tensorboard": ("tensorboard", "tensorboardX")}.get(args.logger, ())
    if needed and not any(importlib.util.find_spec(m) for m in needed):
        other = "tensorboard" if args.logger == "wandb" else "wandb"
        problems.append(f"--logger {args.logger}: the {needed[0]} package is not installed; "
                        f"pip install {needed[0]}, or use --logger {other}")
    return problems


def _data_problems(args: argparse.Namespace) -> list[str]:
    """Where the images come from: a folder that exists, or a dataset name that can be one."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if args.dataset_name is None and args.train_data_dir is None:
        return ["give --train_data_dir (a folder of images) or --dataset_name (a Hub dataset)"]
    problems = []
    if args.dataset_name is None:
        folder = Path(args.train_data_dir)
        if not folder.exists():
            problems.append(f"--train_data_dir {folder}: no such folder; check the path (relative paths start in "
                            f"{Path.cwd()})")
        elif not folder.is_dir():
            problems.append(f"--train_data_dir {folder}: a file, not a folder; pass the folder that holds the images")
        elif not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*")):
            problems.append(f"--train_data_dir {folder}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in "
                            "it or its sub-folders; put your images there")
        elif args.class_conditional and not any(p.is_dir() for p in folder.iterdir()):
            problems.append(f"--class_conditional needs labelled images: put each class of --train_data_dir "
                            f"{folder} in its own sub-folder (e.g. 0/, 1/, ...)")
    elif not Path(args.dataset_name).exists():
        try:
            validate_repo_id(args.dataset_name)
        except HFValidationError:
            problems.append(f"--dataset_name {args.dataset_name!r}: neither a local path nor a Hub dataset id "
                            "(like huggan/smithsonian_butterflies_subset); check the name")
    if args.cache_dir is not None and Path(args.cache_dir).exists() and not Path(args.cache_dir).is_dir():
        problems.append(f"--cache_dir {args.cache_dir}: a file, not a folder; pass a folder for downloads")
    return problems


# ---- Configuration: the model a run builds, read from its config files without building it ------------------


class _Problem(Exception):
    """One problem with a flag, as the line check_args reports."""


def read_json_config(name_or_path: str, filename: str, flag: str) -> dict:
    """``filename`` of a local folder (or a local .json file) or of a Hub repo (the cache first, then the Hub);
    raises ``_Problem`` naming ``flag`` when it cannot be read."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from .hub import is_offline

    local = Path(name_or_path)
    if local.is_file():
        file = local
    elif local.is_dir():
        file = local / filename
        if not file.is_file():
            raise _Problem(f"{flag} {name_or_path}: no {filename} in that folder")
    else:
        try:
            validate_repo_id(name_or_path)
        except HFValidationError:
            raise _Problem(f"{flag} {name_or_path}: no such file or folder, and not a Hub repo id; check the "
                           "path") from None
        cached = try_to_load_from_cache(name_or_path, filename)
        if isinstance(cached, str):
            file = Path(cached)
        elif is_offline():
            raise _Problem(f"{flag} {name_or_path}: no such local folder, and the Hub cannot be reached (offline) "
                           f"to fetch {filename}; pass a local folder or connect") from None
        else:
            try:
                file = Path(hf_hub_download(name_or_path, filename))
            except Exception as err:
                raise _Problem(f"{flag} {name_or_path}: its {filename} could not be fetched from the Hub "
                               f"({type(err).__name__}); check the repo id") from None
    try:
        config = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _Problem(f"{flag} {name_or_path}: {file.name} is not readable JSON ({err}); check the file") from None
    if not isinstance(config, dict):
        raise _Problem(f"{flag} {name_or_path}: {file.name} holds no config object; check the file")
    return config


def pretrained_configs(name_or_path: str) -> tuple[dict, dict | None]:
    """The UNet config and (None if the pipeline has none) the scheduler config of a pipeline folder or Hub id."""
    flag = "--pretrained_model_name_or_path"
    local = Path(name_or_path)
    if local.is_file() or (local.is_dir() and not (local / "unet").is_dir()):
        hint = (" (it is a UNet folder: pass its parent, the pipeline)" if (local / "config.json").is_file()
                else "")
        raise _Problem(f"{flag} {name_or_path}: not a diffusers pipeline folder with a unet/ sub-folder{hint}; "
                       "pass a folder saved by save_pretrained, e.g. course_utils.pretrained.path('butterflies-32')")
    unet = read_json_config(name_or_path, "unet/config.json", flag)
    try:
        scheduler = read_json_config(name_or_path, "scheduler/scheduler_config.json", flag)
    except _Problem:
        scheduler = None
    return unet, scheduler


def _model_problems(args: argparse.Namespace) -> tuple[dict | None, list[str]]:
    """The config of the UNet this run would build (None when it cannot be known) and its problems."""
    if args.pretrained_model_name_or_path and args.model_config_name_or_path:
        return None, ["--pretrained_model_name_or_path and --model_config_name_or_path: give one (the pretrained "
                      "pipeline's UNet already has its config)"]
    resolution = None if isinstance(args.resolution, Unparsed) or args.resolution < 1 else args.resolution
    try:
        if args.pretrained_model_name_or_path:
            flag = "--pretrained_model_name_or_path"
            config, scheduler = pretrained_configs(args.pretrained_model_name_or_path)
            problems = _scheduler_problems(args, scheduler)
        elif args.model_config_name_or_path:
            flag = "--model_config_name_or_path"
            folder = Path(args.model_config_name_or_path)
            if (folder / "model_index.json").is_file() and not (folder / "config.json").is_file():
                raise _Problem(f"{flag} {args.model_config_name_or_path}: a pipeline folder; pass its unet/ "
                               "folder, or use --pretrained_model_name_or_path to start from its weights")
            config = read_json_config(args.model_config_name_or_path, "config.json", flag)
            problems = []
        else:
            if resolution is not None and (resolution < 8 or resolution % 8):
                return None, [f"--resolution {resolution}: the default UNet needs a multiple of 8 (at least 8), "
                              "e.g. 32 or 64; or pass --model_config_name_or_path"]
            if resolution is None or not args.resume_from_checkpoint:  # the config is only needed to resume
                return None, []
            with torch.device("meta"):
                model, _ = default_unet(resolution)
            return dict(model.config), []
    except _Problem as problem:
        return None, [str(problem)]
    name = getattr(args, flag[2:])
    problems += _unet_config_problems(config, f"{flag} {name}", resolution, args.class_conditional,
                                      pretrained=flag.startswith("--pretrained"))
    return (config if not problems else None), problems


def _unet_config_problems(config: dict, source: str, resolution: int | None, class_conditional: bool,
                          pretrained: bool) -> list[str]:
    """Why a UNet config does not fit this run: not a UNet2DModel, channels, depth vs resolution, classes."""
    kind = config.get("_class_name", "UNet2DModel")
    if kind != "UNet2DModel":
        return [f"{source}: a {kind} config; this script trains a UNet2DModel (unconditional, or class-conditioned "
                "with --class_conditional); pass a UNet2DModel config"]
    channels = list(config.get("block_out_channels", (224, 448, 672, 896)))
    groups = config.get("norm_num_groups", 32)
    in_ch, out_ch = config.get("in_channels", 3), config.get("out_channels", 3)
    problems = []
    if in_ch not in (1, 3) or out_ch != in_ch:
        problems.append(f"{source}: in_channels {in_ch}, out_channels {out_ch}; the script trains on grayscale "
                        "(1 and 1) or RGB (3 and 3) images")
    if groups and any(c % groups for c in channels):
        problems.append(f"{source}: block_out_channels {channels} are not all multiples of norm_num_groups "
                        f"{groups}; change one of them")
    sample = config.get("sample_size")
    if resolution is not None:
        halvings = len(channels) - 1
        if resolution % 2**halvings:
            good = [r for r in (16, 28, 32, 64, 128, 256) if r % 2**halvings == 0]
            problems.append(f"--resolution {resolution}: the UNet of {source} halves it {halvings} times "
                            f"({len(channels)} levels), so it must be a multiple of {2**halvings} (e.g. "
                            f"{', '.join(map(str, good[:3]))}); or use a UNet with fewer levels")
        if sample is not None and sample not in (resolution, [resolution, resolution]):
            fix = (f"pass --resolution {sample}" if pretrained else
                   f"set sample_size to {resolution} in the config, or pass --resolution {sample}")
            problems.append(f"--resolution {resolution} but {source} has sample_size {sample} (the size its "
                            f"pipeline generates): {fix}")
    classes = config.get("num_class_embeds")
    if classes and not class_conditional:
        problems.append(f"{source}: a class-conditioned UNet (num_class_embeds {classes}): add --class_conditional "
                        "and labelled images")
    if pretrained and class_conditional and not classes:
        problems.append(f"--class_conditional but {source} is unconditional (no class embedding to fine-tune): "
                        "drop --class_conditional or start from a class-conditioned pipeline")
    if not problems:
        try:
            with torch.device("meta"):  # every other mistake diffusers finds, without allocating weights
                UNet2DModel.from_config(config)
        except Exception as err:
            problems.append(f"{source}: diffusers cannot build a UNet2DModel from it ({err}); fix the config")
    return problems


def _scheduler_problems(args: argparse.Namespace, scheduler: dict | None) -> list[str]:
    """Noise-schedule flags typed with a pretrained pipeline must agree with the scheduler it was trained with."""
    if scheduler is None:
        return []
    problems = []
    for flag, key in (("ddpm_num_steps", "num_train_timesteps"), ("ddpm_beta_schedule", "beta_schedule"),
                      ("prediction_type", "prediction_type")):
        if flag in args.given_flags and key in scheduler and getattr(args, flag) != scheduler[key]:
            problems.append(f"--{flag} {getattr(args, flag)} but --pretrained_model_name_or_path "
                            f"{args.pretrained_model_name_or_path} was trained with {key}={scheduler[key]}: drop "
                            f"--{flag} to keep the pipeline's")
    steps = scheduler.get("num_train_timesteps", 1000)
    wanted = args.ddpm_num_inference_steps
    if not isinstance(wanted, Unparsed) and wanted > steps:
        problems.append(f"--ddpm_num_inference_steps {wanted} is more than the {steps} noise levels of "
                        f"--pretrained_model_name_or_path {args.pretrained_model_name_or_path}; lower it")
    return problems


# ---- Configuration: the output folder, a resumed run, the upload ---------------------------------------------


def run_marks(folder: Path) -> list[str]:
    """What in ``folder`` shows that a run was there: its pipeline (model_index.json) and checkpoints."""
    found = ["model_index.json"] if (folder / "model_index.json").is_file() else []
    checkpoints = [p for p in folder.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()]
    if checkpoints:
        found.append(f"{len(checkpoints)} checkpoint folder(s)")
    return found


def _inside(path: Path, folder: Path) -> bool:
    """True if ``path`` is ``folder`` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


def _output_problems(args: argparse.Namespace) -> list[str]:
    """The output folder: creatable, writable, not a file, not another run's unless told, never the data's."""
    if not args.output_dir:
        return ["--output_dir is empty: name the folder the run writes to"]
    out = Path(args.output_dir).expanduser()
    flag = f"--output_dir {args.output_dir}"
    if out.exists() and not out.is_dir():
        return [f"{flag}: a file, not a folder; choose a folder name (or move the file away)"]
    existing = next(p for p in [out, *out.absolute().parents] if p.exists())
    if not existing.is_dir():
        return [f"{flag}: {existing} is a file, so no folder can be made inside it; choose another path"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{flag}: cannot write in {existing} (permission denied or read-only); choose a folder you can "
                "write to"]
    problems = []
    resolved = out.resolve()
    data = args.train_data_dir if args.dataset_name is None else None
    if data and (_inside(resolved, Path(data).resolve()) or _inside(Path(data).resolve(), resolved)):
        problems.append(f"{flag} and --train_data_dir {data} overlap: the run's sample grids would become training "
                        "images (or --overwrite_output_dir would delete them); choose a separate --output_dir")
    marks = run_marks(out) if out.is_dir() else []
    if marks and not args.overwrite_output_dir and not args.resume_from_checkpoint:
        problems.append(f"{flag}: holds another run ({', '.join(marks)}); pass --resume_from_checkpoint latest to "
                        "continue it, --overwrite_output_dir to replace it, or choose a new folder")
    if args.overwrite_output_dir and not args.resume_from_checkpoint and out.is_dir():
        keep = {"the current folder": Path.cwd().resolve(), "your home folder": Path.home().resolve()}
        for what in ("pretrained_model_name_or_path", "model_config_name_or_path", "cache_dir"):
            if getattr(args, what) and Path(getattr(args, what)).exists():
                keep[f"--{what}"] = Path(getattr(args, what)).resolve()
        for what, path in keep.items():
            if _inside(path, resolved):
                problems.append(f"{flag} --overwrite_output_dir would delete {resolved}, which holds {what} "
                                f"({path}); choose a folder of its own")
    logs = out / args.logging_dir
    if logs.exists() and not logs.is_dir():
        problems.append(f"--logging_dir {args.logging_dir}: {logs} is a file; choose another name")
    return problems


def resume_path(args: argparse.Namespace) -> Path | None:
    """The checkpoint ``--resume_from_checkpoint`` names (for ``latest``: the newest in --output_dir, or None)."""
    if args.resume_from_checkpoint == "latest":
        found = list_checkpoints(Path(args.output_dir))
        return found[-1] if found else None
    return Path(args.resume_from_checkpoint)


def _resume_problems(args: argparse.Namespace, unet: dict | None) -> list[str]:
    """A checkpoint to resume from must be complete and of the same model (when ``unet``, this run's config, is
    known), resolution and EMA setting."""
    from safetensors import safe_open

    if not args.resume_from_checkpoint:
        return []
    path = resume_path(args)
    if path is None:
        return []
    flag = f"--resume_from_checkpoint {args.resume_from_checkpoint}"
    if not path.is_dir():
        return [f"{flag}: no such checkpoint folder; pass a checkpoint-<step> folder or 'latest'"]
    weights = path / "model.safetensors"
    if not (path / "course_step.json").is_file() or not weights.is_file():
        return [f"{flag}: {path} is not a complete checkpoint of this script (no course_step.json or "
                "model.safetensors); pass another, or 'latest'"]
    try:
        about = path / "course_model.json"  # older checkpoints have none: their resolution is not checked
        saved = json.loads(about.read_text()) if about.is_file() else {}
        with safe_open(weights, framework="pt") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if not k.startswith("class_embedding")}
    except Exception as err:
        return [f"{flag}: {path} is damaged ({type(err).__name__}); resume from an earlier checkpoint"]
    problems = []
    if saved.get("resolution") not in (None, args.resolution) and isinstance(args.resolution, int):
        problems.append(f"{flag}: {path.name} was trained at --resolution {saved['resolution']}, this run asks for "
                        f"{args.resolution}; resume with --resolution {saved['resolution']} or start a new "
                        "--output_dir")
    if unet is not None:
        with torch.device("meta"):
            model = UNet2DModel.from_config(unet)
        want = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("class_embedding")}
        differ = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]
        if differ:
            k = differ[0]
            problems.append(f"{flag}: {path.name} holds another model than this run builds ({k}: "
                            f"{have.get(k, 'missing')} in the checkpoint, {want.get(k, 'missing')} here); resume "
                            "with the run's own --model_config_name_or_path/--pretrained_model_name_or_path, or "
                            "start a new --output_dir")
    has_ema = (path / "custom_checkpoint_0.pkl").is_file()
    if has_ema != args.use_ema:
        fix = "add --use_ema" if has_ema else "drop --use_ema"
        problems.append(f"{flag}: {path.name} was saved {'with' if has_ema else 'without'} --use_ema; {fix} to "
                        "resume it")
    return problems


def _push_problems(args: argparse.Namespace) -> list[str]:
    """With ``--push_to_hub``: a token, online, a valid repo id the token may write (asked before training)."""
    from .hub import PushCheckError, check_push_access

    if not args.push_to_hub:
        return []
    network = int(os.environ.get("RANK", 0)) == 0  # in a multi-process run the first process asks the Hub
    name = Path(args.output_dir or ".").resolve().name
    try:
        args.hub_model_id = check_push_access(args.hub_model_id, default_name=name, network=network)
    except PushCheckError as err:
        return [f"--push_to_hub: {err}; or train now without --push_to_hub and upload the saved folder later "
                "with chapter 4's course_utils.hub.upload_pipeline"]
    return []


def default_unet(resolution: int, num_class_embeds: int | None = None) -> tuple[UNet2DModel, str]:
    """A UNet sized for the resolution (diffusers' default six levels are too deep under 64 px), and its name."""
    if resolution < 8 or resolution % 8:
        raise ValueError(f"--resolution {resolution}: use a multiple of 8 (at least 8), e.g. 32 or 64")
    if resolution <= 16:  # 16 channels at full resolution, attention at 4x4: ~2.6x faster than (32, 64) on a CPU
        channels, attention = (16, 32, 64), 1
    elif resolution <= 32:
        channels, attention = (64, 128, 128, 256), 2  # chapter 3's model
    else:
        channels, attention = (128, 128, 256, 256, 512, 512), 1  # diffusers' default levels
    levels = int(math.log2(resolution)) - 2  # keep the deepest feature map at 4x4 or more
    channels = channels[: max(2, min(len(channels), levels + 1))]
    attention = min(attention, len(channels))
    model = make_unet(resolution, channels, layers_per_block=2, attention=attention,
                      num_class_embeds=num_class_embeds)
    return model, f"{len(channels)} levels {channels}, attention in the deepest {attention}"


# ---- Data -----------------------------------------------------------------------------------------------


def load_images(args: argparse.Namespace):
    """The training images as a ``datasets.Dataset`` with an ``image`` column (and ``label`` where the data has
    classes); local folders are checked first."""
    from datasets import load_dataset

    from .data import load_image_folder

    if args.dataset_name is not None:
        return load_dataset(args.dataset_name, args.dataset_config_name, cache_dir=args.cache_dir, split="train")
    return load_image_folder(args.train_data_dir, skip_bad=args.skip_bad_images)


def class_names(dataset) -> list[str]:
    """The names of the dataset's classes (its ``label`` column), for ``--class_conditional``."""
    feature = dataset.features.get("label")
    if feature is None or not hasattr(feature, "names"):
        raise SystemExit("error: --class_conditional needs labelled images: put each class in its own sub-folder "
                         "of --train_data_dir (e.g. 0/, 1/, ...) or use a dataset with a 'label' class column.")
    return list(feature.names)


def convert(image, channels: int):
    """A PIL image in the mode the UNet reads: grayscale for 1 channel, RGB for 3."""
    return to_rgb(image).convert("L") if channels == 1 else to_rgb(image)


def preprocessing(args: argparse.Namespace) -> transforms.Compose:
    """Resize, crop (centre or random), optional flip, to tensor, normalise to [-1, 1] — as in diffusers' script."""
    crop = transforms.CenterCrop if args.center_crop else transforms.RandomCrop
    steps = [transforms.Resize(args.resolution, interpolation=transforms.InterpolationMode.BILINEAR),
             crop(args.resolution)]
    if args.random_flip:
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])


def decode_on_device(dataset, args: argparse.Namespace, channels: int = 3) -> torch.Tensor | None:
    """Every image resized and centre-cropped once into a (N, C, R, R) uint8 tensor; None if that would change
    the training data (a random crop of non-square images differs every epoch) or exceed 2 GB."""
    if len(dataset) * channels * args.resolution**2 > 2e9:
        return None
    fixed = transforms.Compose([
        transforms.Resize(args.resolution, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(args.resolution), transforms.PILToTensor(),
    ])
    images = []
    for image in dataset["image"]:
        if not args.center_crop and image.width != image.height:
            return None
        images.append(fixed(convert(image, channels)))
    return torch.stack(images)


# ---- Checkpoints and saves (all or nothing) ---------------------------------------------------------------


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first (temporary folders of an interrupted save excluded)."""
    found = [p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name.split("-")[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None,
                    about: dict | None = None) -> Path:
    """Save the whole training state to ``checkpoint-<step>``: written under a temporary name, then renamed.

    ``about`` (the resolution and UNet config) goes to ``course_model.json``, so a resume can check it fits."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process writes its own random state into the same folder
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "course_step.json").write_text(json.dumps({"step": step}))
        if about is not None:
            (tmp / "course_model.json").write_text(json.dumps(about, default=list))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def save_pipeline_into(pipeline: DDPMPipeline, output_dir: Path) -> None:
    """Save the pipeline into ``output_dir`` (diffusers' layout) without ever leaving a half-written one.

    The pipeline is saved whole into a temporary folder first; each component folder is then renamed into
    place in one step, and ``model_index.json`` last.
    """
    from .files import atomic_folder

    tmp_parent = output_dir / ".pipeline-staging"
    with atomic_folder(tmp_parent, replace=True) as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True)
    for entry in sorted(tmp_parent.iterdir(), key=lambda p: p.name == "model_index.json"):
        target = output_dir / entry.name
        if entry.is_dir() and target.exists():
            old = output_dir / f".{entry.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(entry, target)
            shutil.rmtree(old)
        else:
            os.replace(entry, target)
    shutil.rmtree(tmp_parent)


def sample_grid(pipeline: DDPMPipeline, n: int, steps: int, seed: int = 0, names: list[str] | None = None):
    """A grid of ``n`` samples (with ``names``: up to 8 per class, a row each) as a PIL image and as a
    (N, C, H, W) uint8 array for TensorBoard."""
    if names:
        labels = torch.arange(len(names)).repeat_interleave(min(n, 8))
        x = sample_with_guidance(pipeline.unet, pipeline.scheduler, steps, labels=labels, guidance_scale=1.0,
                                 seed=seed, device=pipeline.device)
        images = ((x + 1) / 2).permute(0, 2, 3, 1).float().numpy()
    else:
        generator = torch.Generator(pipeline.device).manual_seed(seed)
        images = pipeline(batch_size=n, generator=generator, num_inference_steps=steps, output_type="np").images
    grid = make_grid(pipeline.numpy_to_pil(images), cols=min(n, 8))
    return grid, (images * 255).round().astype("uint8").transpose(0, 3, 1, 2)


# ---- Training ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    """Check every flag, then train, checkpoint, save (and upload); return the output folder."""
    args = parse_args(argv)
    exit_on_problems(check_args(args))
    output_dir = Path(args.output_dir).expanduser()
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.logger,
        project_config=ProjectConfiguration(project_dir=str(output_dir),
                                            logging_dir=str(output_dir / args.logging_dir)),
    )
    accelerator.print(f"{accelerator.num_processes} process(es) on {accelerator.device.type} "
                      f"({accelerator.distributed_type.value}), mixed precision: {args.mixed_precision}")
    if args.seed is not None:
        set_seed(args.seed)

    # Data: the images, checked; preprocessing applied lazily.
    if args.dataset_name is not None and args.train_data_dir is not None:
        accelerator.print(f"--train_data_dir {args.train_data_dir} is ignored: --dataset_name is given")
    try:  # every process checks the folder itself, so a bad file stops them all, none left waiting
        dataset = load_images(args)
    except (BadImagesError, FileNotFoundError) as err:  # an input problem like the flags': exit 2, nothing written
        exit_on_problems([f"error: {err}"])
    except Exception as err:  # a Hub dataset that cannot be found, downloaded or read
        reason = (str(err).strip().splitlines() or [""])[0][:300]
        raise SystemExit(f"error: --dataset_name {args.dataset_name} could not be loaded ({type(err).__name__}: "
                         f"{reason}); check the name and the network, or use --train_data_dir") from None
    if "image" not in dataset.column_names:
        raise SystemExit(f"error: --dataset_name {args.dataset_name} has no 'image' column (its columns: "
                         f"{', '.join(dataset.column_names)}); use a dataset of images")
    names = class_names(dataset) if args.class_conditional else None

    # The output folder, made only once the data has been read.
    if accelerator.is_main_process:
        if args.overwrite_output_dir and output_dir.exists() and not args.resume_from_checkpoint:
            shutil.rmtree(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    # Model: its config fixes the image channels (1: grayscale, 3: RGB) and, conditioned, the class count.
    classes = len(names) + 1 if names else None  # the last class embedding means "no class"
    scheduler_config = None
    if args.pretrained_model_name_or_path:  # fine-tuning: the pipeline's weights and noise schedule
        model = UNet2DModel.from_pretrained(args.pretrained_model_name_or_path, subfolder="unet",
                                            dtype=torch.float32)
        if classes and model.config.num_class_embeds != classes:
            raise SystemExit(f"error: --pretrained_model_name_or_path {args.pretrained_model_name_or_path} has "
                             f"{model.config.num_class_embeds - 1} classes, the data {len(names)}; fine-tune it on "
                             "images with the same classes")
        _, scheduler_config = pretrained_configs(args.pretrained_model_name_or_path)
        described = "its scheduler" if scheduler_config else "no scheduler in it: the --ddpm_* flags' schedule"
        accelerator.print(f"UNet weights from {args.pretrained_model_name_or_path} ({described})")
    elif args.model_config_name_or_path is None:
        model, described = default_unet(args.resolution, num_class_embeds=classes)
        accelerator.print(f"no --model_config_name_or_path: a UNet sized for {args.resolution} px, {described}")
    else:
        config = UNet2DModel.load_config(args.model_config_name_or_path)
        model = UNet2DModel.from_config(config, **({"num_class_embeds": classes} if classes else {}))
        accelerator.print(f"UNet from {args.model_config_name_or_path}")
    channels = model.config.in_channels
    if args.enable_xformers_memory_efficient_attention:
        model.enable_xformers_memory_efficient_attention()
    if names:
        accelerator.print(f"class-conditional: {len(names)} classes {names} + 'no class' (label {len(names)}), "
                          f"dropped {args.class_drop_prob:.0%} of the time")

    on_device = None
    if args.data_on_device == "yes" or (args.data_on_device == "auto" and accelerator.device.type == "cuda"):
        on_device = decode_on_device(dataset, args, channels)
        if on_device is None and args.data_on_device == "yes":
            raise SystemExit("error: --data_on_device yes needs --center_crop (or square images) and under 2 GB "
                             "of decoded images; use --data_on_device no.")
    if on_device is not None:  # the fast path: one uint8 tensor on the device, batches made there
        loader = DeviceBatches(on_device, args.train_batch_size, accelerator.device, flip=args.random_flip,
                               seed=args.seed or 0, rank=accelerator.process_index, world=accelerator.num_processes,
                               labels=torch.tensor(dataset["label"]) if names else None)
        accelerator.print(f"data on {accelerator.device.type}: {tuple(on_device.shape)} uint8, decoded once")
        if accelerator.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    else:
        augment = preprocessing(args)

        def transform(batch: dict) -> dict:
            out = {"input": [augment(convert(im, channels)) for im in batch["image"]]}
            if names:
                out["label"] = batch["label"]
            return out

        dataset.set_transform(transform)
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True,
                                             num_workers=args.dataloader_num_workers)

    # EMA, noise schedule, optimizer, LR schedule.
    ema = None
    if args.use_ema:
        ema = EMAModel(model.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, inv_gamma=args.ema_inv_gamma,
                       power=args.ema_power, model_cls=UNet2DModel, model_config=model.config)
    flow = args.prediction_type == "flow" or (scheduler_config or {}).get("_class_name") == \
        FlowMatchEulerDiscreteScheduler.__name__
    if flow:  # flow matching: sigma = t in [0, 1], the UNet sees t * num_train_timesteps (diffusers' convention)
        noise_scheduler = (FlowMatchEulerDiscreteScheduler.from_config(scheduler_config) if scheduler_config else
                           FlowMatchEulerDiscreteScheduler(num_train_timesteps=args.ddpm_num_steps,
                                                           shift=args.flow_shift))
        args.prediction_type = "flow"
    elif scheduler_config is not None:
        noise_scheduler = DDPMScheduler.from_config(scheduler_config)
        c = noise_scheduler.config
        args.ddpm_num_steps, args.ddpm_beta_schedule, args.prediction_type = (
            c.num_train_timesteps, c.beta_schedule, c.prediction_type)  # logged as used
    else:
        noise_scheduler = DDPMScheduler(num_train_timesteps=args.ddpm_num_steps,
                                        beta_schedule=args.ddpm_beta_schedule, prediction_type=args.prediction_type)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    batches_per_process = len(loader) if on_device is not None else math.ceil(len(loader) / accelerator.num_processes)
    updates_per_epoch = math.ceil(batches_per_process / args.gradient_accumulation_steps)
    if updates_per_epoch == 0:
        raise SystemExit(f"error: {len(dataset)} images make fewer batches of --train_batch_size "
                         f"{args.train_batch_size} than there are processes ({accelerator.num_processes}); "
                         "lower --train_batch_size or add images")
    max_steps = args.max_train_steps or args.num_epochs * updates_per_epoch
    num_epochs = math.ceil(max_steps / updates_per_epoch)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)
    if on_device is not None:
        model = model.to(memory_format=torch.channels_last)
        model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    else:
        model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    about = {"resolution": args.resolution, "unet": dict(accelerator.unwrap_model(model).config)}
    if accelerator.is_main_process:
        accelerator.init_trackers("train_unconditional", config={k: v for k, v in vars(args).items()
                                                                 if isinstance(v, int | float | str | bool)})

    # Resume: the whole state, and where in the data the run stopped.
    global_step = 0
    if args.resume_from_checkpoint:
        path = resume_path(args)  # checked by check_args: complete, same model, resolution and EMA setting
        if path is None:
            accelerator.print(f"no checkpoint in {output_dir}: starting from step 0")
        else:
            try:
                accelerator.load_state(str(path))
            except Exception as err:  # e.g. another class count, or a mixed-precision scaler it lacks
                reason = (str(err).strip().splitlines() or [""])[0][:200]
                raise SystemExit(f"error: --resume_from_checkpoint {args.resume_from_checkpoint}: {path} does not "
                                 f"fit this run ({type(err).__name__}: {reason}); resume "
                                 "with the flags it was trained with, or start a new --output_dir") from None
            global_step = json.loads((path / "course_step.json").read_text())["step"]
            accelerator.print(f"resumed from {path} at step {global_step}")
    first_epoch, skip_batches = divmod(global_step * args.gradient_accumulation_steps, len(loader))

    # The loop. The loss is summed on the device and logged once per epoch: no host sync per step.
    bar = tqdm(total=max_steps, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process)
    for epoch in range(first_epoch, num_epochs):
        model.train()
        if on_device is not None:
            loader.set_epoch(epoch)
            batches = itertools.islice(loader, skip_batches if epoch == first_epoch else 0, None)
        else:
            batches = accelerator.skip_first_batches(loader, skip_batches) if epoch == first_epoch else loader
        total, count = torch.zeros((), device=accelerator.device), 0
        for batch in batches:
            clean, labels = split_batch(batch)
            loss = training_step(accelerator, model, optimizer, lr_scheduler, noise_scheduler, clean, labels, args)
            total += loss
            count += 1
            if accelerator.sync_gradients:
                if ema is not None:
                    ema.step(model.parameters())
                global_step += 1
                bar.update(1)
                if global_step % args.checkpointing_steps == 0:
                    save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit, about)
                if global_step >= max_steps:
                    break
        mean_loss = accelerator.reduce(total / max(count, 1), reduction="mean").item()
        logs = {"loss": mean_loss, "lr": lr_scheduler.get_last_lr()[0], "epoch": epoch}
        if ema is not None:
            logs["ema_decay"] = ema.cur_decay_value or 0.0
        bar.set_postfix(loss=f"{mean_loss:.4f}")
        accelerator.log(logs, step=global_step)
        last = epoch == num_epochs - 1 or global_step >= max_steps
        save_images = (epoch + 1) % args.save_images_epochs == 0 or last
        save_model = (epoch + 1) % args.save_model_epochs == 0 or last
        if (save_images or save_model) and accelerator.is_main_process:
            save_outputs(accelerator, args, model, ema, noise_scheduler, output_dir, epoch, save_images, save_model,
                         names)
        accelerator.wait_for_everyone()
        if global_step >= max_steps:
            break
    bar.close()
    if global_step % args.checkpointing_steps != 0:  # the final state, so a resume past the end is a no-op
        save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit, about)
    accelerator.end_training()
    if args.push_to_hub and accelerator.is_main_process:
        push(args, output_dir)
    return output_dir


def training_step(accelerator: Accelerator, model, optimizer, lr_scheduler, noise_scheduler, clean: torch.Tensor,
                  labels: torch.Tensor | None, args: argparse.Namespace) -> torch.Tensor:
    """One batch: the loss inside ``accelerator.accumulate`` (which makes the update every
    --gradient_accumulation_steps batches), backward, clip, step; the loss, detached."""
    sigmas = None
    if is_flow(noise_scheduler):  # flow matching: t drawn by the weighting scheme (uniform by default)
        sigmas = compute_density_for_timestep_sampling(args.weighting_scheme, len(clean), args.logit_mean,
                                                       args.logit_std, args.mode_scale)
    with accelerator.accumulate(model):
        loss = diffusion_loss(model, noise_scheduler, clean, labels, snr_gamma=args.snr_gamma,
                              class_drop_prob=args.class_drop_prob, sigmas=sigmas)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images of a batch and its labels (None when unconditional), from the DataLoader or the fast path."""
    if isinstance(batch, dict):
        labels = batch.get("label")
        return batch["input"], (torch.as_tensor(labels, device=batch["input"].device) if labels is not None else None)
    return batch if isinstance(batch, tuple) else (batch, None)


def save_outputs(accelerator, args, model, ema, noise_scheduler, output_dir, epoch, save_images, save_model,
                 names=None) -> None:
    """Main process only: a sample grid (PNG + TensorBoard) and/or the pipeline, with the EMA weights if used.

    A class-conditioned model's grid has a row per class (conditional samples, guidance scale 1); its class
    names are saved beside the pipeline in ``class_names.json``."""
    unet = accelerator.unwrap_model(model)
    if ema is not None:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
    pipeline = DDPMPipeline(unet=unet, scheduler=noise_scheduler)
    pipeline.set_progress_bar_config(disable=True)
    if save_images:
        grid, images = sample_grid(pipeline, args.eval_batch_size, args.ddpm_num_inference_steps, names=names)
        (output_dir / "samples").mkdir(exist_ok=True)
        tmp = output_dir / "samples" / f".epoch_{epoch + 1:04d}.png.tmp"
        grid.save(tmp, format="PNG")
        os.replace(tmp, output_dir / "samples" / f"epoch_{epoch + 1:04d}.png")
        if args.logger == "tensorboard":
            accelerator.get_tracker("tensorboard").writer.add_images("test_samples", images, epoch + 1)
    if save_model:
        save_pipeline_into(pipeline, output_dir)
        if names:
            (output_dir / ".class_names.json.tmp").write_text(json.dumps(names))
            os.replace(output_dir / ".class_names.json.tmp", output_dir / "class_names.json")
    if ema is not None:
        ema.restore(unet.parameters())


def push(args: argparse.Namespace, output_dir: Path) -> None:
    """Upload the saved pipeline with chapter 4's rules (no checkpoints or logs) to the repo checked before
    training; if the upload fails, say where the pipeline is and the command that uploads it later."""
    from .hub import find_token, upload_command, upload_pipeline

    token = find_token(login=True)
    try:
        url = upload_pipeline(output_dir, args.hub_model_id, token, private=args.hub_private_repo)
    except Exception as err:  # the network dropped, the Hub refused: the training is done and saved
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        if token:
            reason = reason.replace(token, "<token>")
        raise SystemExit(f"error: the upload to {args.hub_model_id} failed ({type(err).__name__}: {reason}); the "
                         f"trained pipeline is saved in {output_dir.resolve()}. Upload it later with:\n  "
                         f"{upload_command(output_dir.resolve(), args.hub_model_id)}") from None
    print("uploaded to", url)


def cli() -> None:
    """``python -m course_utils.train_unconditional``: ``main`` with one error line instead of a traceback for
    running out of memory or an interrupt."""
    try:
        main(sys.argv[1:])
    except torch.OutOfMemoryError:
        sys.exit("error: out of memory: lower --train_batch_size (raise --gradient_accumulation_steps to keep the "
                 "effective batch), --eval_batch_size or --resolution, or use --mixed_precision bf16")
    except KeyboardInterrupt:
        sys.exit("error: interrupted; the last checkpoint is kept: add --resume_from_checkpoint latest to continue")


if __name__ == "__main__":
    cli()
