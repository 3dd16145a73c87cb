"""What the course's training scripts check before any data is read or model built.

``unconditional``, ``text_to_image``, ``controlnet`` and ``sd3`` parse a script's flags (its ``build_parser``) and
return them with every problem as one ``error:`` line (``course_utils.cli``); no line means the run can start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from importlib.util import find_spec
from pathlib import Path

import torch

from .cli import AT_LEAST_1, FRACTION, NOT_NEGATIVE, POSITIVE, Parser, errors, failing, parse, rules, typed
from .runs import resume_path, run_marks

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
SD3 = {**ALL, "learning_rate": LEARNING_RATE, "logit_std": POSITIVE, "flow_shift": POSITIVE,
       **dict.fromkeys(("num_images", "num_layers", "num_attention_heads", "attention_head_dim"), AT_LEAST_1),
       "patch_size": (lambda v: v in (1, 2, 4, 8), "1, 2, 4 or 8 (it must divide the 8 x 8 latents)")}
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
FLOW = "FlowMatchEulerDiscreteScheduler"  # the scheduler of a flow-matching pipeline (chapter 12)
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


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# ---- Every script: its ranges, the device, the output folder, a checkpoint to resume --------------------------


def _flags(parser: Parser, argv: list[str] | None, ranges: dict) -> tuple[argparse.Namespace, list[str]]:
    """The flags, what ``parse`` found, each value out of its range, and mixed precision this machine cannot run."""
    args, problems = parse(parser, argv)
    on_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes", "on")  # Accelerate's switch
    cuda, precision = torch.cuda.is_available() and not on_cpu, args.mixed_precision
    return args, problems + rules(args, parser, ranges) + failing(
        (precision == "fp16" and not (cuda or torch.backends.mps.is_available()), "--mixed_precision fp16: needs a "
         "GPU and this run has none; use --mixed_precision bf16 (works on CPUs) or no"),
        (precision == "bf16" and cuda and not torch.cuda.is_bf16_supported(), "--mixed_precision bf16: this GPU "
         f"({torch.cuda.get_device_name() if cuda else ''}) has no bfloat16; use --mixed_precision fp16"))


def _output_problems(args: argparse.Namespace, run: list[str], replace: str = "") -> list[str]:
    """The output folder: one that can be made and written, holding no other run (``run``: what shows one) unless
    it is resumed (or replaced, where ``replace`` says how); and train_unconditional's --train_data_dir,
    --overwrite_output_dir and --logging_dir kept apart from what they must not touch."""
    out, flag = Path(args.output_dir).expanduser(), f"--output_dir {args.output_dir}"
    existing = next(p for p in [out, *out.absolute().parents] if p.exists())
    if found := failing(
            (out.exists() and not out.is_dir(), f"{flag}: a file, not a folder; choose a folder name (or move the "
             "file away)"),
            (not existing.is_dir(), f"{flag}: {existing} is a file, so no folder can be made inside it; choose "
             "another path"),
            (not os.access(existing, os.W_OK | os.X_OK), f"{flag}: cannot write in {existing} (permission denied or "
             "read-only); choose a folder you can write to")):
        return found[:1]
    resolved, resume, given_data = out.resolve(), args.resume_from_checkpoint, getattr(args, "train_data_dir", None)
    data = Path(given_data).resolve() if given_data and not args.dataset_name else None
    overwrite, logs = getattr(args, "overwrite_output_dir", False) and not resume, getattr(args, "logging_dir", "")
    keep = {"the current folder": Path.cwd(), "your home folder": Path.home(), **{
        f"--{name}": Path(getattr(args, name)) for name in ("pretrained_model_name_or_path",
                                                           "model_config_name_or_path", "cache_dir")
        if getattr(args, name) and Path(getattr(args, name)).exists()}} if overwrite and out.is_dir() else {}
    return failing(
        (data and (_inside(resolved, data) or _inside(data, resolved)), f"{flag} and --train_data_dir {given_data} "
         "overlap: the run's sample grids would become training images (or --overwrite_output_dir would delete "
         "them); choose a separate --output_dir"),
        (run and not resume and not overwrite, f"{flag}: holds another run ({', '.join(run)}); "
         f"pass --resume_from_checkpoint latest to continue it{replace}, or choose a new folder"),
        *((_inside(path.resolve(), resolved), f"{flag} --overwrite_output_dir would delete {resolved}, which holds "
           f"{what} ({path.resolve()}); choose a folder of its own") for what, path in keep.items()),
        (logs and (out / logs).exists() and not (out / logs).is_dir(),
         f"--logging_dir {logs}: {out / logs} is a file; choose another name"))


def _run_folder(args: argparse.Namespace, *folders: str) -> list[str]:
    """train_text_to_image's and train_controlnet's output folder (any file in it is a run's), then
    ``--resume_from_checkpoint <path>``: a checkpoint this script wrote into one of ``folders`` of this run."""
    out, ckpt = args.output_dir, Path(args.resume_from_checkpoint or "latest")
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))[:3] if out.is_dir() else []
    if (found := _output_problems(args, files)) or str(ckpt) == "latest":
        return found
    want, flag = " or ".join(f"{out}/{folder}/checkpoint-N" for folder in folders), f"--resume_from_checkpoint {ckpt}"
    return failing((not (ckpt / "course_step.json").is_file() or ckpt.parent.name not in folders,
                    f"{flag}: not a checkpoint of this script (want {want}, or latest)"),
                   (ckpt.resolve().parent.parent != out.resolve(), f"{flag}: belongs to another run; pass that run's "
                    "folder as --output_dir (it holds what the checkpoint was trained with)"))[:1]


def controlnet(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_controlnet's flags and every problem with them, one ``error:`` line each (nothing is drawn or built)."""
    args, problems = _flags(parser, argv, CONTROLNET)
    base = args.pretrained_model_name_or_path
    problems += failing((not (base / "model_index.json").is_file() or not (base / "unet" / "config.json").is_file(),
                         f"--pretrained_model_name_or_path {base}: not a Stable Diffusion pipeline folder (no "
                         "model_index.json and unet/); pass one saved by course_utils.train_text_to_image"))
    return args, errors(problems + _run_folder(args, "checkpoints"))


def sd3(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_sd3's flags and every problem with them, one ``error:`` line each (nothing is drawn or built)."""
    args, problems = _flags(parser, argv, SD3)
    base = args.pretrained_model_name_or_path
    problems += failing((not (base / "vae" / "config.json").is_file() or not (base / "text_encoder").is_dir(),
                         f"--pretrained_model_name_or_path {base}: not a Stable Diffusion pipeline folder (no vae/ "
                         "and text_encoder/); pass one saved by course_utils.train_text_to_image"))
    return args, errors(problems + _run_folder(args, "checkpoints"))


def text_to_image(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_text_to_image's flags and every problem with them, one ``error:`` line each (nothing is drawn or
    built); a checkpoint to resume must be of the stage that is due."""
    args, problems = _flags(parser, argv, TEXT_TO_IMAGE)
    stage, vae = Path(args.resume_from_checkpoint or "").parent.name, args.output_dir / "vae"
    flag, done = f"--resume_from_checkpoint {args.resume_from_checkpoint}", (vae / "config.json").is_file()
    return args, errors(problems + (_run_folder(args, "checkpoints-vae", "checkpoints-unet") or failing(
        (stage == "checkpoints-unet" and not done, f"{flag}: {vae} is missing, so stage 2 cannot go on; resume the "
         "VAE stage (latest) instead"),
        (stage == "checkpoints-vae" and done, f"{flag}: the VAE stage has finished ({vae}); resuming it would retrain "
         "the VAE and lose stage 2: pass latest"))))


# ---- train_unconditional: the flags above, its data, its model, a checkpoint to resume, an upload --------------


def unconditional(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_unconditional's flags and every problem with them, one ``error:`` line each (none: the run can start).

    Writes nothing; reads small files only (a UNet's config, a checkpoint's parameter shapes) and, with
    ``--push_to_hub``, asks the Hub about the token, filling in ``args.hub_model_id`` when it was left out."""
    from .hub import PushCheckError, check_push_access

    args, problems = _flags(parser, argv, UNCONDITIONAL)
    problems += [f"--{flag} only means something with {needs}: add {needs}, or drop --{flag}"
                 for flag, needs in NEEDS.items() if flag in args.given_flags and not _is_set(args, needs)]
    problems += [f"--{flag} with {setting}: {why}; drop --{flag}"
                 for (flag, setting), why in CLASHES.items() if flag in args.given_flags and _is_set(args, setting)]
    steps, inference, logger = args.ddpm_num_steps, args.ddpm_num_inference_steps, args.logger
    problems += failing(
        (typed(steps, inference) and inference > steps and not args.pretrained_model_name_or_path,
         f"--ddpm_num_inference_steps {inference} is more than --ddpm_num_steps {steps}: sampling cannot take more "
         "steps than training noise levels; lower it"),
        (args.hub_token is not None, "--hub_token is refused: a token on the command line ends up in shell history "
         "and process lists. Set the HF_TOKEN environment variable (or run `hf auth login`) instead."),
        (args.enable_xformers_memory_efficient_attention and not (find_spec("xformers") and torch.cuda.is_available()),
         "--enable_xformers_memory_efficient_attention: needs the xformers package and a CUDA GPU; drop the flag "
         "(PyTorch's own attention is used then)"),
        (typed(logger) and not (find_spec(logger) or (logger == "tensorboard" and find_spec("tensorboardX"))),
         f"--logger {logger}: the {logger} package is not installed; pip install {logger}, or use --logger "
         f"{'tensorboard' if logger == 'wandb' else 'wandb'}"))
    if not args.output_dir:
        return args, errors([*problems, "--output_dir is empty: name the folder the run writes to"])
    unet, found = _model_problems(args)
    problems += found + _data_problems(args) + _output_problems(args, run_marks(Path(args.output_dir).expanduser()),
                                                                ", --overwrite_output_dir to replace it")
    problems += _resume_problems(args, unet)
    if args.push_to_hub:  # a token, online, a repo id it may write; in a multi-process run the first process asks
        try:
            args.hub_model_id = check_push_access(args.hub_model_id, Path(args.output_dir).resolve().name,
                                                  network=int(os.environ.get("RANK", 0)) == 0)
        except PushCheckError as err:
            problems.append(f"--push_to_hub: {err}; or train now without --push_to_hub and upload the saved folder "
                            "later with chapter 4's course_utils.hub.upload_pipeline")
    return args, errors(problems)


def _data_problems(args: argparse.Namespace) -> list[str]:
    """The download cache, then where the images come from: a folder or a dataset (the first problem only), or,
    for reflow, the flow pipeline that makes them."""
    from .hub import repo_id_problem
    from .imagefolder import IMAGE_EXTENSIONS

    name, pipeline, folder = args.dataset_name, args.pretrained_model_name_or_path, Path(args.train_data_dir or ".")
    problems = failing((args.cache_dir and Path(args.cache_dir).is_file(), f"--cache_dir {args.cache_dir}: a file, "
                        "not a folder; pass a folder for downloads"))
    if args.reflow_pairs is not None:
        other = "prediction_type" in args.given_flags and args.prediction_type != "flow"
        return problems + failing(
            (not pipeline, "--reflow_pairs needs --pretrained_model_name_or_path: the flow pipeline whose samples it "
             "trains on"),
            (pipeline and other, f"--reflow_pairs with --prediction_type {args.prediction_type}: reflow is flow "
             "matching; drop --prediction_type"),
            (pipeline and not other and _scheduler_class(pipeline) != FLOW, f"--reflow_pairs: "
             f"--pretrained_model_name_or_path {pipeline} is not a flow-matching pipeline (its scheduler is no "
             f"{FLOW}); reflow a model trained with --prediction_type flow"))
    local = name is None and args.train_data_dir is not None
    return problems + failing(
        (name is None and args.train_data_dir is None, "give --train_data_dir (a folder of images) or --dataset_name "
         "(a Hub dataset)"),
        (name is not None and not Path(name).exists() and repo_id_problem(name), f"--dataset_name {name!r}: neither "
         "a local path nor a Hub dataset id (like huggan/smithsonian_butterflies_subset); check the name"),
        (local and not folder.exists(), f"--train_data_dir {folder}: no such folder; check the path (relative paths "
         f"start in {Path.cwd()})"),
        (local and not folder.is_dir(), f"--train_data_dir {folder}: a file, not a folder; pass the folder that holds "
         "the images"),
        (local and folder.is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*")),
         f"--train_data_dir {folder}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in it or its "
         "sub-folders; put your images there"),
        (local and args.class_conditional and folder.is_dir() and not any(p.is_dir() for p in folder.iterdir()),
         f"--class_conditional needs labelled images: put each class of --train_data_dir {folder} in its own "
         "sub-folder (e.g. 0/, 1/, ...)"))[:1]


# ---- train_unconditional's model, read from config files without building it -----------------------------------


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
    """The config of the UNet this run builds (None when it cannot be known or does not fit) and its problems:
    where it comes from, then whether it fits this run."""
    from diffusers import UNet2DModel

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
        if (kind := config.get("_class_name", "UNet2DModel")) != "UNet2DModel":
            raise Problem(f"{source}: a {kind} config; this script trains a UNet2DModel (unconditional, or "
                          "class-conditioned with --class_conditional); pass a UNet2DModel config")
    except Problem as problem:
        return None, [str(problem)]
    channels, groups = list(config.get("block_out_channels", (224, 448, 672, 896))), config.get("norm_num_groups", 32)
    in_ch, out_ch, classes = config.get("in_channels", 3), config.get("out_channels", 3), config.get("num_class_embeds")
    size, halvings, fine_tune = config.get("sample_size"), len(channels) - 1, bool(pretrained)
    good = ", ".join(str(r) for r in (16, 28, 32, 64, 128, 256) if r % 2**halvings == 0)
    fix = "" if fine_tune else f"set sample_size to {resolution} in the config, or "
    problems += failing(
        (in_ch not in (1, 3) or out_ch != in_ch, f"{source}: in_channels {in_ch}, out_channels {out_ch}; the script "
         "trains on grayscale (1 and 1) or RGB (3 and 3) images"),
        (groups and any(c % groups for c in channels), f"{source}: block_out_channels {channels} are not all "
         f"multiples of norm_num_groups {groups}; change one of them"),
        (resolution is not None and resolution % 2**halvings, f"--resolution {resolution}: the UNet of {source} "
         f"halves it {halvings} times ({halvings + 1} levels), so it must be a multiple of {2**halvings} (e.g. "
         f"{good}); or use a UNet with fewer levels"),
        (resolution is not None and size is not None and size not in (resolution, [resolution, resolution]),
         f"--resolution {resolution} but {source} has sample_size {size} (the size its pipeline generates): "
         f"{fix}pass --resolution {size}"),
        (classes and not args.class_conditional, f"{source}: a class-conditioned UNet (num_class_embeds {classes}): "
         "add --class_conditional and labelled images"),
        (fine_tune and args.class_conditional and not classes, f"--class_conditional but {source} is unconditional "
         "(no class embedding to fine-tune): drop --class_conditional or start from a class-conditioned pipeline"))
    try:
        with torch.device("meta"):  # every other mistake diffusers finds, without allocating weights
            if not problems:
                UNet2DModel.from_config(config)
    except Exception as err:
        problems.append(f"{source}: diffusers cannot build a UNet2DModel from it ({err}); fix the config")
    return (None if problems else config), problems


def _scheduler_problems(args: argparse.Namespace, scheduler: dict | None) -> list[str]:
    """Noise-schedule flags typed with a pretrained pipeline must agree with the scheduler it was trained with."""
    source, scheduler = f"--pretrained_model_name_or_path {args.pretrained_model_name_or_path}", scheduler or {}
    levels, wanted = scheduler.get("num_train_timesteps", 1000), args.ddpm_num_inference_steps
    return [f"--{flag} {getattr(args, flag)} but {source} was trained with {key}={scheduler[key]}: drop --{flag} "
            "to keep the pipeline's" for flag, key in (("ddpm_num_steps", "num_train_timesteps"),
                                                       ("ddpm_beta_schedule", "beta_schedule"),
                                                       ("prediction_type", "prediction_type"))
            if flag in args.given_flags and key in scheduler and getattr(args, flag) != scheduler[key]] + failing(
        ("snr_gamma" in args.given_flags and scheduler.get("_class_name") == FLOW, f"--snr_gamma with {source}: a "
         "flow-matching pipeline has no DDPM noise schedule to weight by; drop --snr_gamma"),
        (scheduler and typed(wanted) and wanted > levels, f"--ddpm_num_inference_steps {wanted} is more than the "
         f"{levels} noise levels of {source}; lower it"))


def _scheduler_class(pipeline: str) -> str:
    """The class of a pipeline's scheduler (a flow-matching one when it names none)."""
    try:
        return (pretrained_configs(pipeline)[1] or {}).get("_class_name", FLOW)
    except Problem:  # reported with the model
        return FLOW


def _resume_problems(args: argparse.Namespace, unet: dict | None) -> list[str]:
    """A checkpoint to resume from must be complete and of the same model (when ``unet``, this run's config, is
    known), resolution and EMA setting."""
    from diffusers import UNet2DModel
    from safetensors import safe_open

    path = resume_path(args.resume_from_checkpoint, Path(args.output_dir))
    flag = f"--resume_from_checkpoint {args.resume_from_checkpoint}"
    if path is None or not path.is_dir():
        return failing((path, f"{flag}: no such checkpoint folder; pass a checkpoint-<step> folder or 'latest'"))
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
    want, ema = have, (path / "custom_checkpoint_0.pkl").is_file()
    if unet is not None:
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in UNet2DModel.from_config(unet).state_dict().items()
                    if not k.startswith("class_embedding")}
    differ = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]] or [""]
    return failing(
        (saved not in (None, args.resolution) and typed(args.resolution), f"{flag}: {path.name} was trained at "
         f"--resolution {saved}, this run asks for {args.resolution}; resume with --resolution {saved} or start a new "
         "--output_dir"),
        (differ[0], f"{flag}: {path.name} holds another model than this run builds ({differ[0]}: "
         f"{have.get(differ[0], 'missing')} in the checkpoint, {want.get(differ[0], 'missing')} here); resume with "
         "the run's own --model_config_name_or_path/--pretrained_model_name_or_path, or start a new --output_dir"),
        (ema != args.use_ema, f"{flag}: {path.name} was saved {'with' if ema else 'without'} --use_ema; "
         f"{'add' if ema else 'drop'} --use_ema to resume it"))
