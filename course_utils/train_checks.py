"""What the course's three training scripts check before any data is read or model built.

Each script declares its flags (``build_parser``) and calls its function here (``unconditional``,
``text_to_image``, ``controlnet``): the flags, and every problem with them as one ``error:`` line, all at once
(``course_utils.cli``); no line means the run can start. Top to bottom: the tables (each flag's range; flags that
need, or clash with, another), what every script checks (the device, the output folder, a checkpoint to resume),
then what train_unconditional checks beyond them (its data, its model, an upload).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from importlib.util import find_spec
from pathlib import Path

import torch

from .cli import AT_LEAST_1, FRACTION, NOT_NEGATIVE, POSITIVE, Parser, errors, parse, rules, typed
from .runs import resume_path, run_marks

# ---- The tables ------------------------------------------------------------------------------------------------

# Each script's ranges (cli.rules): flag -> (test, what the value must be). ALL: what every script shares.
LEARNING_RATE = (lambda v: 0 < v < 1, "between 0 and 1, e.g. 1e-3")
ALL = {**dict.fromkeys(("max_train_steps", "train_batch_size", "checkpointing_steps", "checkpoints_total_limit"),
                       AT_LEAST_1), "lr_warmup_steps": NOT_NEGATIVE}
CONTROLNET = {**ALL, "learning_rate": LEARNING_RATE, **dict.fromkeys(
    ("num_images", "validation_steps", "num_validation_images", "validation_inference_steps"), AT_LEAST_1)}
TEXT_TO_IMAGE = {**ALL, "num_images": AT_LEAST_1, "vae_batch_size": AT_LEAST_1, "vae_steps": NOT_NEGATIVE,
                 "learning_rate": LEARNING_RATE, "vae_learning_rate": LEARNING_RATE,
                 "kl_weight": (lambda v: 0 <= v < 1, "in [0, 1), e.g. 1e-6"),
                 "resolution": (lambda v: v >= 16 and v % 8 == 0, "a multiple of 8, at least 16 (e.g. 32)")}
UNCONDITIONAL = {
    **ALL, **dict.fromkeys(("resolution", "eval_batch_size", "num_epochs", "save_images_epochs", "save_model_epochs",
                            "gradient_accumulation_steps", "ddpm_num_steps", "ddpm_num_inference_steps",
                            "reflow_pairs", "reflow_steps"), AT_LEAST_1),
    **dict.fromkeys(("learning_rate", "adam_epsilon", "ema_inv_gamma", "ema_power", "snr_gamma", "logit_std",
                     "mode_scale", "flow_shift"), POSITIVE),
    "dataloader_num_workers": NOT_NEGATIVE,
    "adam_weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number, 0 or more"),
    **dict.fromkeys(("adam_beta1", "adam_beta2", "ema_max_decay"), FRACTION),
    "class_drop_prob": (FRACTION[0], "in [0, 1) (the share of labels dropped; 1 would never show the model a class)"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
}
# train_unconditional's flags that mean nothing without another setting: flag -> that setting.
NEEDS = {"dataset_config_name": "--dataset_name", "hub_model_id": "--push_to_hub", "hub_private_repo": "--push_to_hub",
         "class_drop_prob": "--class_conditional", "reflow_steps": "--reflow_pairs",
         **dict.fromkeys(("ema_inv_gamma", "ema_power", "ema_max_decay"), "--use_ema"),
         **dict.fromkeys(("weighting_scheme", "logit_mean", "logit_std", "mode_scale", "flow_shift"),
                         "--prediction_type flow")}
# ... and those that clash with another setting: (flag, that setting) -> why.
CLASHES = {("snr_gamma", "--prediction_type flow"): "min-SNR weighting needs a DDPM noise schedule (its "
                                                     "signal-to-noise ratios)",
           ("ddpm_beta_schedule", "--prediction_type flow"): "flow matching has no beta schedule (its noise level "
                                                             "is t itself)",
           **{(flag, "--reflow_pairs"): "reflow trains on the pretrained flow's own samples, not on images"
              for flag in ("train_data_dir", "dataset_name", "class_conditional", "random_flip")}}


def _is_set(args: argparse.Namespace, setting: str) -> bool:
    """Whether ``--flag`` is set (not None or False), or ``--flag value`` has that value."""
    name, *value = setting[2:].split()
    return getattr(args, name) == value[0] if value else getattr(args, name) not in (None, False)


# ---- Every script: the device, the output folder, a checkpoint to resume -----------------------------------------


def _device_problems(args: argparse.Namespace) -> list[str]:
    """Mixed precision that this machine cannot run."""
    on_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes", "on")  # Accelerate's switch
    cuda = torch.cuda.is_available() and not on_cpu
    if args.mixed_precision == "fp16" and not (cuda or torch.backends.mps.is_available()):
        return ["--mixed_precision fp16: needs a GPU and this run has none; use --mixed_precision bf16 (works on "
                "CPUs) or no"]
    if args.mixed_precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        return [f"--mixed_precision bf16: this GPU ({torch.cuda.get_device_name()}) has no bfloat16; use "
                "--mixed_precision fp16"]
    return []


def _output_problems(args: argparse.Namespace, run: list[str], replace: str = "") -> list[str]:
    """The output folder: a folder that can be made and written, holding no other run (``run``: what shows one)
    unless it is resumed (or replaced, where the script can: ``replace`` says how); and train_unconditional's
    --train_data_dir, --overwrite_output_dir and --logging_dir kept apart from what they must not touch."""
    out, flag = Path(args.output_dir).expanduser(), f"--output_dir {args.output_dir}"
    existing = next(p for p in [out, *out.absolute().parents] if p.exists())
    if out.exists() and not out.is_dir():
        return [f"{flag}: a file, not a folder; choose a folder name (or move the file away)"]
    if not existing.is_dir():
        return [f"{flag}: {existing} is a file, so no folder can be made inside it; choose another path"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{flag}: cannot write in {existing} (permission denied or read-only); choose a folder you can "
                "write to"]
    problems, resolved, resume = [], out.resolve(), args.resume_from_checkpoint
    data = Path(args.train_data_dir).resolve() if getattr(args, "train_data_dir", None) else None
    if data and not args.dataset_name and (_inside(resolved, data) or _inside(data, resolved)):
        problems.append(f"{flag} and --train_data_dir {args.train_data_dir} overlap: the run's sample grids would "
                        "become training images (or --overwrite_output_dir would delete them); choose a separate "
                        "--output_dir")
    overwrite = getattr(args, "overwrite_output_dir", False)
    if run and not resume and not overwrite:
        problems.append(f"{flag}: holds another run ({', '.join(run)}); pass --resume_from_checkpoint latest to "
                        f"continue it{replace}, or choose a new folder")
    if overwrite and not resume and out.is_dir():
        keep = {"the current folder": Path.cwd(), "your home folder": Path.home(), **{
            f"--{name}": Path(getattr(args, name)) for name in ("pretrained_model_name_or_path",
                                                               "model_config_name_or_path", "cache_dir")
            if getattr(args, name) and Path(getattr(args, name)).exists()}}
        problems += [f"{flag} --overwrite_output_dir would delete {resolved}, which holds {what} ({path.resolve()}); "
                     "choose a folder of its own" for what, path in keep.items() if _inside(path.resolve(), resolved)]
    logs = out / getattr(args, "logging_dir", "")
    if logs != out and logs.exists() and not logs.is_dir():
        problems.append(f"--logging_dir {args.logging_dir}: {logs} is a file; choose another name")
    return problems


def _inside(path: Path, folder: Path) -> bool:
    """True if ``path`` is ``folder`` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


def _checkpoint_problems(args: argparse.Namespace, *folders: str) -> list[str]:
    """``--resume_from_checkpoint <path>``: a checkpoint this script wrote into one of ``folders`` of this run."""
    ckpt, out = Path(args.resume_from_checkpoint), Path(args.output_dir)
    flag = f"--resume_from_checkpoint {ckpt}"
    if not (ckpt / "course_step.json").is_file() or ckpt.parent.name not in folders:
        want = " or ".join(f"{out}/{folder}/checkpoint-N" for folder in folders)
        return [f"{flag}: not a checkpoint of this script (want {want}, or latest)"]
    if ckpt.resolve().parent.parent != out.resolve():
        return [f"{flag}: belongs to another run; pass that run's folder as --output_dir (it holds what the "
                "checkpoint was trained with)"]
    return []


def _files(folder: Path) -> list[str]:
    """Up to three names in ``folder`` (hidden ones left out): for a script whose every file is its run's."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))[:3] if folder.is_dir() else []


def controlnet(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_controlnet's flags and every problem with them, one ``error:`` line each (nothing is drawn or built)."""
    args, problems = parse(parser, argv)
    problems += rules(args, parser, CONTROLNET) + _device_problems(args)
    base = args.pretrained_model_name_or_path
    if not (base / "model_index.json").is_file() or not (base / "unet" / "config.json").is_file():
        problems.append(f"--pretrained_model_name_or_path {base}: not a Stable Diffusion pipeline folder (no "
                        "model_index.json and unet/); pass one saved by course_utils.train_text_to_image")
    found = _output_problems(args, _files(args.output_dir))
    if not found and args.resume_from_checkpoint not in (None, "latest"):
        found = _checkpoint_problems(args, "checkpoints")
    return args, errors(problems + found)


def text_to_image(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_text_to_image's flags and every problem with them, one ``error:`` line each (nothing is drawn or
    built); a checkpoint to resume must be of the stage that is due."""
    args, problems = parse(parser, argv)
    problems += rules(args, parser, TEXT_TO_IMAGE) + _device_problems(args)
    found = _output_problems(args, _files(args.output_dir))
    if found or args.resume_from_checkpoint in (None, "latest"):
        return args, errors(problems + found)
    ckpt, vae = Path(args.resume_from_checkpoint), args.output_dir / "vae"
    flag, found = f"--resume_from_checkpoint {ckpt}", _checkpoint_problems(args, "checkpoints-vae", "checkpoints-unet")
    if not found and ckpt.parent.name == "checkpoints-unet" and not (vae / "config.json").is_file():
        found = [f"{flag}: {vae} is missing, so stage 2 cannot go on; resume the VAE stage (latest) instead"]
    elif not found and ckpt.parent.name == "checkpoints-vae" and (vae / "config.json").is_file():
        found = [f"{flag}: the VAE stage has finished ({vae}); resuming it would retrain the VAE and lose stage 2: "
                 "pass latest"]
    return args, errors(problems + found)


# ---- train_unconditional: the flags above, its data, its model, an upload ----------------------------------------


def unconditional(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_unconditional's flags and every problem with them, one ``error:`` line each (none: the run can start).

    Writes nothing; reads small files only (a UNet's config, a checkpoint's parameter shapes) and, with
    ``--push_to_hub``, asks the Hub about the token, filling in ``args.hub_model_id`` when it was left out."""
    args, problems = parse(parser, argv)
    problems += rules(args, parser, UNCONDITIONAL) + _device_problems(args)
    problems += [f"--{flag} only means something with {needs}: add {needs}, or drop --{flag}"
                 for flag, needs in NEEDS.items() if flag in args.given_flags and not _is_set(args, needs)]
    problems += [f"--{flag} with {setting}: {why}; drop --{flag}"
                 for (flag, setting), why in CLASHES.items() if flag in args.given_flags and _is_set(args, setting)]
    steps, inference = args.ddpm_num_steps, args.ddpm_num_inference_steps
    if typed(steps, inference) and inference > steps and not args.pretrained_model_name_or_path:
        problems.append(f"--ddpm_num_inference_steps {inference} is more than --ddpm_num_steps {steps}: sampling "
                        "cannot take more steps than training noise levels; lower it")
    if args.hub_token is not None:
        problems.append("--hub_token is refused: a token on the command line ends up in shell history and process "
                        "lists. Set the HF_TOKEN environment variable (or run `hf auth login`) instead.")
    if args.enable_xformers_memory_efficient_attention and not (find_spec("xformers") and torch.cuda.is_available()):
        problems.append("--enable_xformers_memory_efficient_attention: needs the xformers package and a CUDA GPU; "
                        "drop the flag (PyTorch's own attention is used then)")
    logger = {"wandb": "wandb", "tensorboard": "tensorboard"}.get(args.logger)
    if logger and not (find_spec(logger) or (logger == "tensorboard" and find_spec("tensorboardX"))):
        problems.append(f"--logger {args.logger}: the {logger} package is not installed; pip install {logger}, or "
                        f"use --logger {'tensorboard' if logger == 'wandb' else 'wandb'}")
    if not args.output_dir:
        return args, errors([*problems, "--output_dir is empty: name the folder the run writes to"])
    unet, found = _model_problems(args)
    problems += found + _data_problems(args) + _reflow_problems(args)
    problems += _output_problems(args, run_marks(Path(args.output_dir).expanduser()),
                                 ", --overwrite_output_dir to replace it") + _resume_problems(args, unet)
    return args, errors(problems + _push_problems(args))


def _data_problems(args: argparse.Namespace) -> list[str]:
    """Where the images come from: a folder of images that exists, or a dataset name that can be one."""
    from .hub import repo_id_problem
    from .imagefolder import IMAGE_EXTENSIONS

    folder, name, problems = Path(args.train_data_dir or "."), args.dataset_name, []
    if args.cache_dir and Path(args.cache_dir).is_file():
        problems.append(f"--cache_dir {args.cache_dir}: a file, not a folder; pass a folder for downloads")
    if args.reflow_pairs is not None:  # reflow makes its own pairs
        return problems
    if name is None and args.train_data_dir is None:
        problems.append("give --train_data_dir (a folder of images) or --dataset_name (a Hub dataset)")
    elif name is not None:
        if not Path(name).exists() and repo_id_problem(name):
            problems.append(f"--dataset_name {name!r}: neither a local path nor a Hub dataset id (like "
                            "huggan/smithsonian_butterflies_subset); check the name")
    elif not folder.exists():
        problems.append(f"--train_data_dir {folder}: no such folder; check the path (relative paths start in "
                        f"{Path.cwd()})")
    elif not folder.is_dir():
        problems.append(f"--train_data_dir {folder}: a file, not a folder; pass the folder that holds the images")
    elif not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*")):
        problems.append(f"--train_data_dir {folder}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in it "
                        "or its sub-folders; put your images there")
    elif args.class_conditional and not any(p.is_dir() for p in folder.iterdir()):
        problems.append(f"--class_conditional needs labelled images: put each class of --train_data_dir {folder} in "
                        "its own sub-folder (e.g. 0/, 1/, ...)")
    return problems


def _reflow_problems(args: argparse.Namespace) -> list[str]:
    """Reflow fine-tunes a flow pipeline on its own samples (the other flags it clashes with are in CLASHES)."""
    source = args.pretrained_model_name_or_path
    if args.reflow_pairs is None:
        return []
    if not source:
        return ["--reflow_pairs needs --pretrained_model_name_or_path: the flow pipeline whose samples it trains on"]
    if "prediction_type" in args.given_flags and args.prediction_type != "flow":
        return [f"--reflow_pairs with --prediction_type {args.prediction_type}: reflow is flow matching; drop "
                "--prediction_type"]
    try:
        scheduler = pretrained_configs(source)[1] or {}
    except Problem:  # reported with the model
        scheduler = {}
    if scheduler.get("_class_name", "FlowMatchEulerDiscreteScheduler") != "FlowMatchEulerDiscreteScheduler":
        return [f"--reflow_pairs: --pretrained_model_name_or_path {source} is not a flow-matching pipeline (its "
                "scheduler is no FlowMatchEulerDiscreteScheduler); reflow a model trained with --prediction_type flow"]
    return []


def _push_problems(args: argparse.Namespace) -> list[str]:
    """With ``--push_to_hub``: a token, online, a valid repo id the token may write (asked before training)."""
    from .hub import PushCheckError, check_push_access

    if not args.push_to_hub:
        return []
    name = Path(args.output_dir or ".").resolve().name  # in a multi-process run the first process asks the Hub
    try:
        args.hub_model_id = check_push_access(args.hub_model_id, name, network=int(os.environ.get("RANK", 0)) == 0)
    except PushCheckError as err:
        return [f"--push_to_hub: {err}; or train now without --push_to_hub and upload the saved folder later with "
                "chapter 4's course_utils.hub.upload_pipeline"]
    return []


# ---- train_unconditional's model, read from config files without building it ---------------------------------


class Problem(Exception):
    """One problem with a flag, as the line the checks report."""


def read_config(name_or_path: str, filename: str, flag: str) -> dict:
    """``filename`` of a local folder (or a local .json file) or of a Hub repo (the cache first, then the Hub);
    raises ``Problem`` naming ``flag`` when it cannot be read."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    from .hub import is_offline, repo_id_problem

    file, where = Path(name_or_path), f"{flag} {name_or_path}"
    if file.is_dir() and not (file := file / filename).is_file():
        raise Problem(f"{where}: no {filename} in that folder")
    if not file.is_file() and repo_id_problem(name_or_path):
        raise Problem(f"{where}: no such file or folder, and not a Hub repo id; check the path")
    if not file.is_file():
        if not isinstance(cached := try_to_load_from_cache(name_or_path, filename), str) and is_offline():
            raise Problem(f"{where}: no such local folder, and the Hub cannot be reached (offline) to fetch "
                          f"{filename}; pass a local folder or connect")
        try:
            file = Path(cached if isinstance(cached, str) else hf_hub_download(name_or_path, filename))
        except Exception as err:
            raise Problem(f"{where}: its {filename} could not be fetched from the Hub ({type(err).__name__}); "
                          "check the repo id") from None
    try:
        if not isinstance(config := json.loads(file.read_text()), dict):
            raise ValueError("it holds no config object")
    except (OSError, ValueError) as err:  # JSON's and Unicode's errors are ValueErrors
        raise Problem(f"{where}: {file.name} is not readable JSON ({err}); check the file") from None
    return config


def pretrained_configs(name_or_path: str) -> tuple[dict, dict | None]:
    """The UNet config and (None if the pipeline has none) the scheduler config of a pipeline folder or Hub id."""
    flag, local = "--pretrained_model_name_or_path", Path(name_or_path)
    if local.is_file() or (local.is_dir() and not (local / "unet").is_dir()):
        hint = " (it is a UNet folder: pass its parent, the pipeline)" if (local / "config.json").is_file() else ""
        raise Problem(f"{flag} {name_or_path}: not a diffusers pipeline folder with a unet/ sub-folder{hint}; pass "
                      "a folder saved by save_pretrained, e.g. course_utils.pretrained.path('butterflies-32')")
    unet = read_config(name_or_path, "unet/config.json", flag)
    try:
        return unet, read_config(name_or_path, "scheduler/scheduler_config.json", flag)
    except Problem:
        return unet, None


def _model_problems(args: argparse.Namespace) -> tuple[dict | None, list[str]]:
    """The config of the UNet this run builds (None when it cannot be known or does not fit) and its problems."""
    pretrained, config_path = args.pretrained_model_name_or_path, args.model_config_name_or_path
    resolution = args.resolution if typed(args.resolution) and args.resolution >= 1 else None
    try:
        if pretrained and config_path:
            raise Problem("--pretrained_model_name_or_path and --model_config_name_or_path: give one (the "
                          "pretrained pipeline's UNet already has its config)")
        if pretrained:
            config, scheduler = pretrained_configs(pretrained)
            source, problems = f"--pretrained_model_name_or_path {pretrained}", _scheduler_problems(args, scheduler)
        elif config_path:
            source = f"--model_config_name_or_path {config_path}"
            if (Path(config_path) / "model_index.json").is_file() and not (Path(config_path) / "config.json").is_file():
                raise Problem(f"{source}: a pipeline folder; pass its unet/ folder, or use "
                              "--pretrained_model_name_or_path to start from its weights")
            config, problems = read_config(config_path, "config.json", "--model_config_name_or_path"), []
        elif resolution is not None and resolution % 8:
            raise Problem(f"--resolution {resolution}: the default UNet needs a multiple of 8 (at least 8), e.g. 32 "
                          "or 64; or pass --model_config_name_or_path")
        else:  # the default UNet fits; its config is needed only to check a checkpoint to resume
            from .diffusion import default_unet

            with torch.device("meta"):
                return (dict(default_unet(resolution)[0].config) if resolution and args.resume_from_checkpoint
                        else None), []
    except Problem as problem:
        return None, [str(problem)]
    problems += _unet_config_problems(args, config, source, resolution)
    return (None if problems else config), problems


def _unet_config_problems(args: argparse.Namespace, config: dict, source: str, resolution: int | None) -> list[str]:
    """Why a UNet config does not fit this run: not a UNet2DModel, channels, depth against resolution, classes."""
    from diffusers import UNet2DModel

    if (kind := config.get("_class_name", "UNet2DModel")) != "UNet2DModel":
        return [f"{source}: a {kind} config; this script trains a UNet2DModel (unconditional, or class-conditioned "
                "with --class_conditional); pass a UNet2DModel config"]
    channels, groups = list(config.get("block_out_channels", (224, 448, 672, 896))), config.get("norm_num_groups", 32)
    in_ch, out_ch, classes = config.get("in_channels", 3), config.get("out_channels", 3), config.get("num_class_embeds")
    size, halvings, pretrained = config.get("sample_size"), len(channels) - 1, source.startswith("--pretrained")
    problems = []
    if in_ch not in (1, 3) or out_ch != in_ch:
        problems.append(f"{source}: in_channels {in_ch}, out_channels {out_ch}; the script trains on grayscale (1 "
                        "and 1) or RGB (3 and 3) images")
    if groups and any(c % groups for c in channels):
        problems.append(f"{source}: block_out_channels {channels} are not all multiples of norm_num_groups {groups}; "
                        "change one of them")
    if resolution is not None and resolution % 2**halvings:
        good = ", ".join(str(r) for r in (16, 28, 32, 64, 128, 256) if r % 2**halvings == 0)
        problems.append(f"--resolution {resolution}: the UNet of {source} halves it {halvings} times ({halvings + 1}"
                        f" levels), so it must be a multiple of {2**halvings} (e.g. {good}); or use a UNet with "
                        "fewer levels")
    if resolution is not None and size is not None and size not in (resolution, [resolution, resolution]):
        fix = f"pass --resolution {size}" if pretrained else (f"set sample_size to {resolution} in the config, or "
                                                               f"pass --resolution {size}")
        problems.append(f"--resolution {resolution} but {source} has sample_size {size} (the size its pipeline "
                        f"generates): {fix}")
    if classes and not args.class_conditional:
        problems.append(f"{source}: a class-conditioned UNet (num_class_embeds {classes}): add --class_conditional "
                        "and labelled images")
    if pretrained and args.class_conditional and not classes:
        problems.append(f"--class_conditional but {source} is unconditional (no class embedding to fine-tune): drop "
                        "--class_conditional or start from a class-conditioned pipeline")
    try:
        with torch.device("meta"):  # every other mistake diffusers finds, without allocating weights
            if not problems:
                UNet2DModel.from_config(config)
    except Exception as err:
        problems.append(f"{source}: diffusers cannot build a UNet2DModel from it ({err}); fix the config")
    return problems


def _scheduler_problems(args: argparse.Namespace, scheduler: dict | None) -> list[str]:
    """Noise-schedule flags typed with a pretrained pipeline must agree with the scheduler it was trained with."""
    source, scheduler = f"--pretrained_model_name_or_path {args.pretrained_model_name_or_path}", scheduler or {}
    problems = [f"--{flag} {getattr(args, flag)} but {source} was trained with {key}={scheduler[key]}: drop --{flag} "
                "to keep the pipeline's" for flag, key in (("ddpm_num_steps", "num_train_timesteps"),
                                                          ("ddpm_beta_schedule", "beta_schedule"),
                                                          ("prediction_type", "prediction_type"))
                if flag in args.given_flags and key in scheduler and getattr(args, flag) != scheduler[key]]
    if "snr_gamma" in args.given_flags and scheduler.get("_class_name") == "FlowMatchEulerDiscreteScheduler":
        problems.append(f"--snr_gamma with {source}: a flow-matching pipeline has no DDPM noise schedule to weight "
                        "by; drop --snr_gamma")
    levels, wanted = scheduler.get("num_train_timesteps", 1000), args.ddpm_num_inference_steps
    if scheduler and typed(wanted) and wanted > levels:
        problems.append(f"--ddpm_num_inference_steps {wanted} is more than the {levels} noise levels of {source}; "
                        "lower it")
    return problems


def _resume_problems(args: argparse.Namespace, unet: dict | None) -> list[str]:
    """A checkpoint to resume from must be complete and of the same model (when ``unet``, this run's config, is
    known), resolution and EMA setting."""
    from diffusers import UNet2DModel
    from safetensors import safe_open

    path = resume_path(args.resume_from_checkpoint, Path(args.output_dir))
    flag = f"--resume_from_checkpoint {args.resume_from_checkpoint}"
    if path is None:
        return []
    if not path.is_dir():
        return [f"{flag}: no such checkpoint folder; pass a checkpoint-<step> folder or 'latest'"]
    if not (path / "course_step.json").is_file() or not (path / "model.safetensors").is_file():
        return [f"{flag}: {path} is not a complete checkpoint of this script (no course_step.json or "
                "model.safetensors); pass another, or 'latest'"]
    try:
        about = path / "course_model.json"  # older checkpoints have none: their resolution is not checked
        saved = json.loads(about.read_text()).get("resolution") if about.is_file() else None
        with safe_open(path / "model.safetensors", framework="pt") as f:
            have = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if not k.startswith("class_embedding")}
    except Exception as err:
        return [f"{flag}: {path} is damaged ({type(err).__name__}); resume from an earlier checkpoint"]
    problems, ema = [], (path / "custom_checkpoint_0.pkl").is_file()
    if saved not in (None, args.resolution) and typed(args.resolution):
        problems.append(f"{flag}: {path.name} was trained at --resolution {saved}, this run asks for "
                        f"{args.resolution}; resume with --resolution {saved} or start a new --output_dir")
    if unet is not None:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in UNet2DModel.from_config(unet).state_dict().items()
                    if not k.startswith("class_embedding")}
        if differ := sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]:
            problems.append(f"{flag}: {path.name} holds another model than this run builds ({differ[0]}: "
                            f"{have.get(differ[0], 'missing')} in the checkpoint, {want.get(differ[0], 'missing')} "
                            "here); resume with the run's own --model_config_name_or_path/"
                            "--pretrained_model_name_or_path, or start a new --output_dir")
    if ema != args.use_ema:
        problems.append(f"{flag}: {path.name} was saved {'with' if ema else 'without'} --use_ema; "
                        f"{'add' if ema else 'drop'} --use_ema to resume it")
    return problems
