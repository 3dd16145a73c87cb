"""What the training scripts check before any data is read or model built: ``unconditional``, ``text_to_image``,
``controlnet`` and ``sd3`` parse a script's flags and return them with every problem as one ``error:`` line (none:
the run can start). What a library says in one clear line is left to it: diffusers reads and builds a UNet's config,
Accelerate names what the machine lacks, ``train_unconditional.resume`` a checkpoint of another model."""

from __future__ import annotations

import argparse
import json
import os
import warnings
from functools import partial
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from . import hub
from .cli import Parser, errors, failing, parse, typed
from .runs import resume_path, run_marks

FLOW = "FlowMatchEulerDiscreteScheduler"  # the scheduler of a flow-matching pipeline (chapter 12)
# Noise-schedule flags a pretrained pipeline's scheduler fixes: flag -> its config key.
SCHEDULE = {"ddpm_num_steps": "num_train_timesteps", "ddpm_beta_schedule": "beta_schedule",
            "prediction_type": "prediction_type"}
# train_unconditional's flags that mean nothing without another setting: flag -> that setting.
NEEDS = {"dataset_config_name": "--dataset_name", "hub_model_id": "--push_to_hub", "hub_private_repo": "--push_to_hub",
         "class_drop_prob": "--class_conditional", "reflow_steps": "--reflow_pairs",
         "reflow_pairs": "--pretrained_model_name_or_path",
         **dict.fromkeys(("ema_inv_gamma", "ema_power", "ema_max_decay"), "--use_ema"),
         **dict.fromkeys(("weighting_scheme", "logit_mean", "logit_std", "mode_scale", "flow_shift"),
                         "--prediction_type flow")}
# ... and those that clash with another setting: (flag, that setting) -> why.
CLASHES = {("snr_gamma", "--prediction_type flow"): "min-SNR weighting needs a DDPM noise schedule",
           ("ddpm_beta_schedule", "--prediction_type flow"): "flow matching has no beta schedule (t is the noise)",
           ("model_config_name_or_path", "--pretrained_model_name_or_path"): "the pipeline's UNet has its config",
           **{(flag, "--reflow_pairs"): "reflow trains on the pretrained flow's own samples, not on images"
              for flag in ("train_data_dir", "dataset_name", "class_conditional", "random_flip")}}


def _is_set(args: argparse.Namespace, setting: str) -> bool:
    """Whether ``--flag`` is set (not None or False), or ``--flag value`` has that value."""
    name, *value = setting[2:].split()
    return getattr(args, name) == value[0] if value else getattr(args, name) not in (None, False)


def _flags(parser: Parser, argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The flags, what ``parse`` found (each value out of its flag's ``check`` too), and fp16 without a GPU."""
    args, problems = parse(parser, argv)
    on_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes", "on")  # Accelerate's switch
    gpu = (torch.cuda.is_available() and not on_cpu) or torch.backends.mps.is_available()
    return args, problems + failing((args.mixed_precision == "fp16" and not gpu, (
        "--mixed_precision fp16: needs a GPU and this run has none; use --mixed_precision bf16 (works on CPUs) or no")))


def _output_problems(args: argparse.Namespace, run: list[str], replace: str = "") -> list[str]:
    """The output folder: one that can be made and written, holding no other run (``run``: what shows one) unless
    resumed (or replaced: ``replace``), apart from --train_data_dir and what --overwrite_output_dir must not delete."""
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
    overwrite = getattr(args, "overwrite_output_dir", False) and not resume
    keep = {"the current folder": Path.cwd(), "your home folder": Path.home(), **{
        f"--{name}": Path(getattr(args, name)) for name in ("pretrained_model_name_or_path",
                                                           "model_config_name_or_path", "cache_dir")
        if getattr(args, name) and Path(getattr(args, name)).exists()}} if overwrite and out.is_dir() else {}
    return failing(
        (data and (resolved.is_relative_to(data) or data.is_relative_to(resolved)), f"{flag} and --train_data_dir "
         f"{given_data} overlap: the run's sample grids would become training images (or --overwrite_output_dir "
         "would delete them); choose a separate --output_dir"),
        (run and not resume and not overwrite, f"{flag}: holds another run ({', '.join(run)}); "
         f"pass --resume_from_checkpoint latest to continue it{replace}, or choose a new folder"),
        *((path.resolve().is_relative_to(resolved), f"{flag} --overwrite_output_dir would delete {resolved}, which "
           f"holds {what} ({path.resolve()}); choose a folder of its own") for what, path in keep.items()))


def _run_folder(args: argparse.Namespace, *folders: str) -> list[str]:
    """The output folder of a pipeline script (any file in it is a run's), then a checkpoint to resume: one this
    script wrote into one of ``folders`` of this run."""
    out, ckpt = args.output_dir, Path(args.resume_from_checkpoint or "latest")
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))[:3] if out.is_dir() else []
    if (found := _output_problems(args, files)) or str(ckpt) == "latest":
        return found
    want, flag = " or ".join(f"{out}/{folder}/checkpoint-N" for folder in folders), f"--resume_from_checkpoint {ckpt}"
    return failing((not (ckpt / "course_step.json").is_file() or ckpt.parent.name not in folders,
                    f"{flag}: not a checkpoint of this script (want {want}, or latest)"),
                   (ckpt.resolve().parent.parent != out.resolve(), f"{flag}: belongs to another run; pass that run's "
                    "folder as --output_dir (it holds what the checkpoint was trained with)"))[:1]


def _pipeline_script(parts: tuple[str, ...], parser: Parser, argv: list[str] | None = None
                     ) -> tuple[argparse.Namespace, list[str]]:
    """The flags and problems of a script that starts from a Stable Diffusion pipeline folder (holding ``parts``:
    files, and folders where the name ends in /)."""
    args, problems = _flags(parser, argv)
    base = args.pretrained_model_name_or_path
    found = [(base / part).is_dir() if part.endswith("/") else (base / part).is_file() for part in parts]
    problems += failing((not all(found), f"--pretrained_model_name_or_path {base}: not a Stable Diffusion pipeline "
                         f"folder (no {' and '.join(parts)}); pass one saved by course_utils.train_text_to_image"))
    return args, errors(problems + _run_folder(args, "checkpoints"))


controlnet = partial(_pipeline_script, ("model_index.json", "unet/config.json"))  # train_controlnet's checks
sd3 = partial(_pipeline_script, ("vae/config.json", "text_encoder/"))  # train_sd3's


def text_to_image(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_text_to_image's flags and problems; a checkpoint to resume must be of the stage that is due."""
    args, problems = _flags(parser, argv)
    stage, vae = Path(args.resume_from_checkpoint or "").parent.name, args.output_dir / "vae"
    flag, done = f"--resume_from_checkpoint {args.resume_from_checkpoint}", (vae / "config.json").is_file()
    return args, errors(problems + (_run_folder(args, "checkpoints-vae", "checkpoints-unet") or failing(
        (stage == "checkpoints-unet" and not done, f"{flag}: {vae} is missing, so stage 2 cannot go on; resume the "
         "VAE stage (latest) instead"),
        (stage == "checkpoints-vae" and done, f"{flag}: the VAE stage has finished ({vae}); resuming it would retrain "
         "the VAE and lose stage 2: pass latest"))))


def unconditional(parser: Parser, argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """train_unconditional's flags and problems. Reads small files only; with ``--push_to_hub`` asks the Hub about
    the token, filling in ``args.hub_model_id`` when it was left out."""
    args, problems = _flags(parser, argv)
    problems += [f"--{flag} only means something with {needs}: add {needs}, or drop --{flag}"
                 for flag, needs in NEEDS.items() if flag in args.given_flags and not _is_set(args, needs)]
    problems += [f"--{flag} with {setting}: {why}; drop --{flag}"
                 for (flag, setting), why in CLASHES.items() if flag in args.given_flags and _is_set(args, setting)]
    steps, inference = args.ddpm_num_steps, args.ddpm_num_inference_steps
    problems += failing(
        (typed(steps, inference) and inference > steps and not args.pretrained_model_name_or_path,
         f"--ddpm_num_inference_steps {inference} is more than --ddpm_num_steps {steps}: sampling cannot take more "
         "steps than training noise levels; lower it"),
        (args.hub_token is not None, "--hub_token is refused: a token on the command line ends up in shell history "
         "and process lists. Set the HF_TOKEN environment variable (or run `hf auth login`) instead."),
        (not args.output_dir, "--output_dir is empty: name the folder the run writes to"))
    if args.output_dir:
        problems += _model_problems(args) + _data_problems(args) + _resume_problems(args) + _output_problems(
            args, run_marks(Path(args.output_dir).expanduser()), ", --overwrite_output_dir to replace it")
    if args.push_to_hub:  # a token, online, a repo id it may write; in a multi-process run the first process asks
        try:
            args.hub_model_id = hub.check_push_access(args.hub_model_id, Path(args.output_dir).resolve().name,
                                                      network=int(os.environ.get("RANK", 0)) == 0)
        except hub.PushCheckError as err:
            problems.append(f"--push_to_hub: {err}; or train now without --push_to_hub and upload the saved folder "
                            "later with chapter 4's course_utils.hub.upload_pipeline")
    return args, errors(problems)


def _data_problems(args: argparse.Namespace) -> list[str]:
    """Where the images come from: a folder or a dataset (the first problem only), or, for reflow, the flow
    pipeline that makes them."""
    from .imagefolder import IMAGE_EXTENSIONS

    name, pipeline, folder = args.dataset_name, args.pretrained_model_name_or_path, Path(args.train_data_dir or ".")
    if args.reflow_pairs is not None:
        other = "prediction_type" in args.given_flags and args.prediction_type != "flow"
        return failing(
            (other, f"--reflow_pairs with --prediction_type {args.prediction_type}: reflow is flow matching; drop "
             "--prediction_type"),
            (pipeline and not other and (scheduler_config(pipeline) or {}).get("_class_name", FLOW) != FLOW,
             f"--reflow_pairs: --pretrained_model_name_or_path {pipeline} is not a flow-matching pipeline (its "
             f"scheduler is no {FLOW}); reflow a model trained with --prediction_type flow"))
    local = name is None and args.train_data_dir is not None
    return failing(
        (name is None and args.train_data_dir is None, "give --train_data_dir (a folder of images) or --dataset_name "
         "(a Hub dataset)"),
        (local and not folder.is_dir(), f"--train_data_dir {folder}: "
         f"{'a file, not a folder' if folder.exists() else 'no such folder'}; pass the folder with the images "
         f"(relative paths start in {Path.cwd()})"),
        (local and folder.is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*")),
         f"--train_data_dir {folder}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in it or its "
         "sub-folders; put your images there"),
        (local and args.class_conditional and folder.is_dir() and not any(p.is_dir() for p in folder.iterdir()),
         f"--class_conditional needs labelled images: put each class of --train_data_dir {folder} in its own "
         "sub-folder (e.g. 0/, 1/, ...)"))[:1]


def read_config(name_or_path: str, flag: str, subfolder: str | None = None, kind: type | None = None) -> dict | str:
    """The config of a UNet (``kind``: of a scheduler class) in a local folder, a .json file or a Hub repo (offline:
    the cache only), read by diffusers; when it cannot be read, the line that says so, naming ``flag``."""
    offline = not Path(name_or_path).exists() and hub.is_offline()
    if subfolder and Path(name_or_path).exists() and not (Path(name_or_path) / subfolder).is_dir():
        return f"{flag} {name_or_path}: no {subfolder}/ in it, so not a diffusers pipeline; pass the pipeline's folder"
    try:
        with warnings.catch_warnings():  # a deprecated argument diffusers still passes to hf_hub_download
            warnings.filterwarnings("ignore", "The `local_dir_use_symlinks` argument is deprecated")
            return (kind or UNet2DModel).load_config(name_or_path, subfolder=subfolder, local_files_only=offline)
    except (OSError, ValueError) as err:  # diffusers' message names the file
        why = "no such local folder, and the Hub cannot be reached (offline)" if offline else str(err).splitlines()[0]
        return f"{flag} {name_or_path}: {why.rstrip('.')}; check the path"


def scheduler_config(pipeline: str) -> dict | None:
    """The scheduler config of a pipeline folder or Hub id; None when it has none (or it cannot be read)."""
    return config if isinstance(config := read_config(pipeline, "", "scheduler", DDPMScheduler), dict) else None


def _model_problems(args: argparse.Namespace) -> list[str]:
    """The UNet this run builds: its config can be read and fits this run (diffusers builds it on the meta device
    for the rest); a pretrained pipeline's noise-schedule flags agree with its scheduler."""
    pretrained, resolution = args.pretrained_model_name_or_path, args.resolution
    resolution = resolution if typed(resolution) and resolution >= 1 else None
    if not pretrained and not args.model_config_name_or_path:  # the default UNet, sized for the resolution
        return failing((resolution and resolution % 8, f"--resolution {resolution}: the default UNet needs a multiple "
                        "of 8 (at least 8), e.g. 32 or 64; or pass --model_config_name_or_path"))
    flag = "--pretrained_model_name_or_path" if pretrained else "--model_config_name_or_path"
    source = f"{flag} {(path := getattr(args, flag[2:]))}"
    if isinstance(config := read_config(path, flag, "unet" if pretrained else None), str):
        return [config]
    scheduler = (scheduler_config(pretrained) or {}) if pretrained else {}
    in_ch, out_ch, classes = config.get("in_channels", 3), config.get("out_channels", 3), config.get("num_class_embeds")
    size, halvings = config.get("sample_size"), len(config.get("block_out_channels", (224, 448, 672, 896))) - 1
    problems = [f"--{name} {getattr(args, name)} but {source} was trained with {key}={scheduler[key]}: drop --{name} "
                "to keep the pipeline's" for name, key in SCHEDULE.items()
                if name in args.given_flags and key in scheduler and getattr(args, name) != scheduler[key]]
    problems += failing(
        ((kind := config.get("_class_name", "UNet2DModel")) != "UNet2DModel", f"{source}: a {kind} config; this "
         "script trains a UNet2DModel (unconditional, or class-conditioned with --class_conditional)"),
        (in_ch not in (1, 3) or out_ch != in_ch, f"{source}: in_channels {in_ch}, out_channels {out_ch}; the script "
         "trains on grayscale (1 and 1) or RGB (3 and 3) images"),
        (resolution and resolution % 2**halvings, f"--resolution {resolution}: the UNet of {source} halves it "
         f"{halvings} times ({halvings + 1} levels), so it must be a multiple of {2**halvings}"),
        (resolution and size is not None and size not in (resolution, [resolution, resolution]),
         f"--resolution {resolution} but {source} has sample_size {size} (the size its pipeline generates): "
         f"{'' if pretrained else f'set sample_size to {resolution} in the config, or '}pass --resolution {size}"),
        (classes and not args.class_conditional, f"{source}: a class-conditioned UNet (num_class_embeds {classes}): "
         "add --class_conditional and labelled images"),
        ("snr_gamma" in args.given_flags and scheduler.get("_class_name") == FLOW, f"--snr_gamma with {source}: a "
         "flow-matching pipeline has no DDPM noise schedule to weight by; drop --snr_gamma"),
        (pretrained and args.class_conditional and not classes, f"--class_conditional but {source} is unconditional "
         "(no class embedding to fine-tune): drop --class_conditional or start from a class-conditioned pipeline"))
    try:
        with torch.device("meta"):  # every other mistake diffusers finds, without allocating weights
            if not problems:
                UNet2DModel.from_config(config)
    except Exception as err:
        problems.append(f"{source}: diffusers cannot build a UNet2DModel from it ({err}); fix the config")
    return problems


def _resume_problems(args: argparse.Namespace) -> list[str]:
    """A checkpoint to resume from: complete, at this run's resolution and EMA setting."""
    path = resume_path(args.resume_from_checkpoint, Path(args.output_dir))
    flag = f"--resume_from_checkpoint {args.resume_from_checkpoint}"
    if path is None or not path.is_dir():
        return failing((path, f"{flag}: no such checkpoint folder; pass a checkpoint-<step> folder or 'latest'"))
    if not (path / "course_step.json").is_file() or not (path / "model.safetensors").is_file():
        return [f"{flag}: {path} is not a complete checkpoint of this script (no course_step.json or "
                "model.safetensors); pass another, or 'latest'"]
    about, ema = path / "course_model.json", (path / "custom_checkpoint_0.pkl").is_file()
    saved = json.loads(about.read_text()).get("resolution") if about.is_file() else None  # older ones have none
    return failing(
        (saved not in (None, args.resolution) and typed(args.resolution), f"{flag}: {path.name} was trained at "
         f"--resolution {saved}, this run asks for {args.resolution}; resume with --resolution {saved} or start a new "
         "--output_dir"),
        (ema != args.use_ema, f"{flag}: {path.name} was saved {'with' if ema else 'without'} --use_ema; "
         f"{'add' if ema else 'drop'} --use_ema to resume it"))
