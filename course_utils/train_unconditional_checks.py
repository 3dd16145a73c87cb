"""The checks of ``python -m course_utils.train_unconditional``: its flags (those of diffusers' example and the
course's), and every problem with them, the data, the model, the output folder, a resume and an upload, found
before any data is read or model built (``course_utils.cli`` prints them, one ``error:`` line each)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
from pathlib import Path

import torch
from diffusers import UNet2DModel

from .cli import (
    AT_LEAST_1,
    FLOAT,
    FRACTION,
    INT,
    LR_SCHEDULERS,
    MIXED_PRECISION,
    NOT_NEGATIVE,
    POSITIVE,
    Parser,
    Unparsed,
    errors,
    parse,
    rules,
)
from .diffusion import default_unet
from .imagefolder import IMAGE_EXTENSIONS
from .runs import resume_path, run_marks

# ---- Configuration --------------------------------------------------------------------------------------

# Flags whose value is one of a list (checked by check_args with every other problem, not one at a time).
CHOICES = {
    "lr_scheduler": LR_SCHEDULERS,
    "logger": ("tensorboard", "wandb"),
    "mixed_precision": MIXED_PRECISION,
    "prediction_type": ("epsilon", "sample", "v_prediction", "flow"),
    "ddpm_beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace"),
    "data_on_device": ("auto", "yes", "no"),
    "weighting_scheme": ("none", "logit_normal", "mode"),
}
_TRUE = {"1", "true", "yes", "on"}
# Flags that do nothing without another one.
NEEDS = {"dataset_config_name": "dataset_name", "hub_model_id": "push_to_hub", "hub_private_repo": "push_to_hub",
         "class_drop_prob": "class_conditional", "ema_inv_gamma": "use_ema", "ema_power": "use_ema",
         "ema_max_decay": "use_ema", "reflow_steps": "reflow_pairs"}


def build_parser() -> argparse.ArgumentParser:
    """The diffusers example's flags (same names and defaults; wider ``--prediction_type`` and
    ``--ddpm_beta_schedule`` choices) plus the course's."""
    p = Parser(prog="python -m course_utils.train_unconditional",
               description="Train an unconditional DDPM (diffusers-compatible flags).")
    add = p.add_argument

    def choice(name: str, default: str, help: str = "") -> None:
        add(f"--{name}", type=str, default=default, choices=CHOICES[name], help=help)

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
    add("--reflow_pairs", type=INT, default=None,
        help="Reflow (rectified flow's second round, chapter 12): fine-tune --pretrained_model_name_or_path, a flow "
             "pipeline, on N pairs (noise, that pipeline's Euler sample from it) instead of images.")
    add("--reflow_steps", type=INT, default=32, help="With --reflow_pairs: the Euler steps of each pair's sample.")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags as typed (``check_args`` checks them), with ``given_flags`` and ``parse_problems`` (unknown
    flags, flags without a value, values not of their type or not among their choices) added."""
    args, args.parse_problems = parse(build_parser(), argv)
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
    problems = list(getattr(args, "parse_problems", []))
    problems += _value_problems(args)
    problems += _data_problems(args)
    unet, model_problems = _model_problems(args)
    problems += model_problems
    problems += _output_problems(args)
    problems += _resume_problems(args, unet)
    problems += _push_problems(args)
    problems += _flow_problems(args)
    problems += _reflow_problems(args)
    return errors(problems)


def _value_problems(args: argparse.Namespace) -> list[str]:
    """Values out of their range, or that do not go together."""
    ok = {k: v for k, v in vars(args).items() if not isinstance(v, Unparsed)}
    problems = rules(args, build_parser(), {
        **{name: AT_LEAST_1 for name in (
            "resolution", "train_batch_size", "eval_batch_size", "num_epochs", "save_images_epochs",
            "save_model_epochs", "gradient_accumulation_steps", "ddpm_num_steps", "ddpm_num_inference_steps",
            "checkpointing_steps", "checkpoints_total_limit", "max_train_steps", "reflow_pairs", "reflow_steps")},
        "dataloader_num_workers": NOT_NEGATIVE, "lr_warmup_steps": NOT_NEGATIVE,
        **{name: POSITIVE for name in ("learning_rate", "adam_epsilon", "ema_inv_gamma", "ema_power", "snr_gamma")},
        "adam_weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number, 0 or more"),
        **{name: FRACTION for name in ("adam_beta1", "adam_beta2", "ema_max_decay")},
        "class_drop_prob": (FRACTION[0], "in [0, 1) (the share of labels dropped; 1 would never show the model a "
                                         "class)"),
        "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
    })

    def value(name: str, fallback: float = 1) -> float:
        v = ok.get(name)
        return fallback if v is None else v

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


def _reflow_problems(args: argparse.Namespace) -> list[str]:
    """Reflow needs a flow pipeline to make its pairs, and no images, labels or flips (a flipped sample would no
    longer be its noise's)."""
    if args.reflow_pairs is None:
        return []
    problems = [f"--{name} with --reflow_pairs: reflow trains on the pretrained flow's own samples, not on images; "
                f"drop --{name}" for name in ("train_data_dir", "dataset_name", "class_conditional", "random_flip")
                if name in args.given_flags]
    source = args.pretrained_model_name_or_path
    if not source:
        problems.append("--reflow_pairs needs --pretrained_model_name_or_path: the flow pipeline whose samples it "
                        "trains on")
    elif "prediction_type" in args.given_flags and args.prediction_type != "flow":
        problems.append(f"--reflow_pairs with --prediction_type {args.prediction_type}: reflow is flow matching; "
                        "drop --prediction_type")
    elif (_config_or_none(source) or {}).get("_class_name") not in (None, "FlowMatchEulerDiscreteScheduler"):
        problems.append(f"--reflow_pairs: --pretrained_model_name_or_path {source} is not a flow-matching pipeline "
                        "(its scheduler is no FlowMatchEulerDiscreteScheduler); reflow a model trained with "
                        "--prediction_type flow")
    return problems


def _config_or_none(source: str) -> dict | None:
    """The pretrained pipeline's scheduler config, or None where it cannot be read (reported elsewhere)."""
    try:
        return pretrained_configs(source)[1]
    except _Problem:
        return None


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

    if args.reflow_pairs is not None:  # reflow makes its own pairs (checked in _reflow_problems)
        return []
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
    if "snr_gamma" in args.given_flags and scheduler.get("_class_name") == "FlowMatchEulerDiscreteScheduler":
        problems.append(f"--snr_gamma with --pretrained_model_name_or_path {args.pretrained_model_name_or_path}: a "
                        "flow-matching pipeline has no DDPM noise schedule to weight by; drop --snr_gamma")
    steps = scheduler.get("num_train_timesteps", 1000)
    wanted = args.ddpm_num_inference_steps
    if not isinstance(wanted, Unparsed) and wanted > steps:
        problems.append(f"--ddpm_num_inference_steps {wanted} is more than the {steps} noise levels of "
                        f"--pretrained_model_name_or_path {args.pretrained_model_name_or_path}; lower it")
    return problems


# ---- Configuration: the output folder, a resumed run, the upload ---------------------------------------------


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


def _resume_problems(args: argparse.Namespace, unet: dict | None) -> list[str]:
    """A checkpoint to resume from must be complete and of the same model (when ``unet``, this run's config, is
    known), resolution and EMA setting."""
    from safetensors import safe_open

    if not args.resume_from_checkpoint:
        return []
    path = resume_path(args.resume_from_checkpoint, Path(args.output_dir))
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
