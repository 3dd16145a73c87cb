"""Training a shipped pipeline again with its recipe: its data, the training script's command line, the run, and
the fp16 pipeline folder with ``training.json`` (the run's record the card is written from)."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from datetime import date
from pathlib import Path

import torch
from diffusers import DDPMPipeline
from PIL import Image

from course_utils.pretrained import path
from course_utils.pretrained.recipes import COMMON, N_BUTTERFLIES, N_CLIPS, RECIPES, Recipe


def write_training_data(recipe: Recipe, folder: Path) -> Path:
    """Write the recipe's training images into ``folder`` (once): digits in one sub-folder per class."""
    from course_utils import data
    from course_utils.files import atomic_folder

    if recipe.data == "clips":  # major arpeggios only: the minor ones are chapter 10's fine-tuning family
        from course_utils.audio import write_clip_folder

        return write_clip_folder(folder, N_CLIPS, modes=("major",))
    if folder.is_dir():
        return folder
    with atomic_folder(folder) as tmp:
        if recipe.data == "digits":  # the train split only: the metric's held-out digits stay unseen
            images, labels = data.digits_28("train").tensors
            for i, (x, y) in enumerate(zip(images, labels, strict=True)):
                (tmp / str(int(y))).mkdir(exist_ok=True)
                pixels = (x[0] * 255).round().byte().numpy()
                Image.fromarray(pixels, mode="L").save(tmp / str(int(y)) / f"digit_{i:05d}.png")
        elif recipe.data == "butterflies":
            for i in range(N_BUTTERFLIES):
                data.synthetic_butterfly(i, recipe.resolution).save(tmp / f"butterfly_{i:05d}.png")
        else:
            raise ValueError(f"recipe data {recipe.data!r}: use 'digits', 'butterflies' or 'clips'")
    return folder


def script_args(name: str, data_dir: Path, run_dir: Path, steps: int, mixed_precision: str) -> list[str]:
    """The training script's command line for ``name``'s recipe."""
    recipe = RECIPES[name]
    common = list(COMMON)
    if recipe.prediction_type == "flow":  # flow matching has no beta schedule (the script refuses the flag)
        del common[common.index("--ddpm_beta_schedule"):common.index("--ddpm_beta_schedule") + 2]
    if recipe.reflow_of:  # reflow: the shipped flow pipeline's weights, trained on pairs it makes itself
        source = ["--pretrained_model_name_or_path", str(path(recipe.reflow_of)),
                  "--resolution", str(recipe.resolution)]
    else:
        source = ["--train_data_dir", str(data_dir), "--model_config_name_or_path", str(run_dir / "unet_config.json"),
                  "--resolution", str(recipe.resolution), "--center_crop"]
    return [*source, *common,
            "--prediction_type", recipe.prediction_type, *recipe.flags,
            "--max_train_steps", str(steps), "--mixed_precision", mixed_precision,
            "--checkpointing_steps", str(max(steps // 4, 1)), "--checkpoints_total_limit", "1",
            "--save_images_epochs", "1000000", "--save_model_epochs", "1000000",
            "--ddpm_num_inference_steps", "100", "--eval_batch_size", "8", "--output_dir", str(run_dir)]


def retrain(name: str, steps: int | None = None, work_dir: Path | None = None, out: Path | None = None,
            resume: bool = False, card: bool = True, extra_args: tuple[str, ...] = ()) -> Path:
    """Train ``name`` with its recipe; save fp16 weights, ``training.json`` and (with ``card``) the scored model
    card into ``out`` (default: the package's folder, replaced only when the run finished). ``extra_args`` go
    to the training script after the recipe's flags (the last value of a flag wins)."""
    from course_utils import train_unconditional
    from course_utils.data import data_dir
    from course_utils.files import atomic_folder, write_text_atomic

    recipe = RECIPES[name]
    if recipe.text_to_image:
        return retrain_text_to_image(name, steps, work_dir, out, resume, card, extra_args)
    if recipe.distilled_from:
        return retrain_consistency(name, steps, out, card)
    steps = steps or recipe.steps
    work_dir = Path(work_dir or data_dir() / "pretrained-runs")
    run_dir = work_dir / name
    images = work_dir / f"data-{recipe.data}-{recipe.resolution}"
    if not recipe.reflow_of:  # reflow reads no images
        write_training_data(recipe, images)
    run_dir.mkdir(parents=True, exist_ok=True)
    earlier = _time_before_resuming(run_dir) if resume else None
    write_text_atomic(run_dir / "unet_config.json", json.dumps(recipe.unet))
    cuda = torch.cuda.is_available()
    args = script_args(name, images, run_dir, steps, "bf16" if cuda else "no") + list(extra_args)
    if resume:
        args += ["--resume_from_checkpoint", "latest"]
    start = time.perf_counter()
    train_unconditional.main(args)
    seconds = time.perf_counter() - start
    resumed = {}
    if earlier is not None:  # the whole run's time: the interrupted part (from the files it wrote) and this one
        resumed = dict(resumed_at_step=earlier[0], seconds_before_resuming=round(earlier[1], 1))
        seconds += earlier[1]
    losses = read_losses(run_dir / "logs")
    from .cards import cpu_device

    device = torch.cuda.get_device_name() if cuda else cpu_device()
    out = Path(out or path(name))
    shown = {images: images.name, run_dir: "run"}  # this machine's folders, written <name> in the record
    if recipe.reflow_of:
        shown[path(recipe.reflow_of)] = recipe.reflow_of
    with atomic_folder(out, replace=True) as tmp:
        pipeline = DDPMPipeline.from_pretrained(run_dir, use_safetensors=True, dtype=torch.float16)
        pipeline.scheduler = type(pipeline.scheduler).from_config(pipeline.scheduler.config, **recipe.scheduler)
        pipeline.save_pretrained(tmp, safe_serialization=True)
        if recipe.data == "clips":
            from course_utils.audio import SPECTROGRAM

            SPECTROGRAM.save(tmp)
        if (run_dir / "class_names.json").is_file():
            shutil.copy(run_dir / "class_names.json", tmp / "class_names.json")
        grids = sorted((run_dir / "samples").glob("epoch_*.png"))
        if grids:  # the run's last sample grid (EMA weights, 100 DDPM steps)
            shutil.copy(grids[-1], tmp / "samples.png")
        record = dict(
            name=name, command=f"python -m course_tools.pretrained --retrain {name}" + _where(out, name),
            script_command="python -m course_utils.train_unconditional " + shlex.join(
                _shown(a, shown) for a in args),
            steps=steps, seconds=round(seconds, 1), device=device, torch=torch.__version__, date=str(date.today()),
            parameters=sum(p.numel() for p in pipeline.unet.parameters()), final_loss=losses[-1] if losses else None,
            losses=losses, description=recipe.description,
            training_images=_pairs_used(run_dir) if recipe.reflow_of else len(list(images.rglob("*.png"))),
            **resumed,
        )
        (tmp / "training.json").write_text(json.dumps(record, indent=1))
    if card:
        from .cards import write_card

        write_card(name, out)
    return out


def retrain_text_to_image(name: str, steps: int | None = None, work_dir: Path | None = None, out: Path | None = None,
                          resume: bool = False, card: bool = True, extra_args: tuple[str, ...] = ()) -> Path:
    """``retrain`` for a text-to-image pipeline: the recipe's script (``course_utils.train_text_to_image`` or
    ``train_sd3``) in ``<work_dir>/<name>``, then fp16 weights and ``training.json`` into ``out`` (and the scored
    card with ``card``)."""
    import importlib

    from course_utils import sd3
    from course_utils.data import data_dir
    from course_utils.files import atomic_folder, forget_source

    recipe = RECIPES[name]
    script = importlib.import_module(f"course_utils.{recipe.script}")
    run_dir = Path(work_dir or data_dir() / "pretrained-runs") / name
    args = ["--output_dir", str(run_dir), *recipe.flags, *extra_args]
    args += ["--max_train_steps", str(steps)] if steps else []
    if not resume:  # an earlier (or interrupted) run of this pipeline in the course's work folder: start again
        shutil.rmtree(run_dir, ignore_errors=True)
    script.main(args + (["--resume_from_checkpoint", "latest"] if resume else []))
    log = json.loads((run_dir / "training_log.json").read_text())
    out = Path(out or path(name))
    with atomic_folder(out, replace=True) as tmp:
        if recipe.script == "train_sd3":
            pipeline = sd3.load_sd3(run_dir)
        else:
            from diffusers import StableDiffusionPipeline

            pipeline = StableDiffusionPipeline.from_pretrained(run_dir, dtype=torch.float32, use_safetensors=True)
        # the VAE and the denoiser in float16; the text encoder stays float32 (0.4 MB): transformers loads weights
        # in the dtype they were saved in, diffusers loads its models in float32, and a plain from_pretrained must
        # give parts that agree
        pipeline.vae.to(torch.float16)
        getattr(pipeline, recipe.denoiser).to(torch.float16)
        pipeline.save_pretrained(tmp, safe_serialization=True)
        forget_source(tmp)  # the configs would name this machine's run folder
        shown = [a.replace(str(run_dir), "<run>") for a in args]
        record = dict(
            name=name, command=f"python -m course_tools.pretrained --retrain {name}" + _where(out, name),
            script_command=f"python -m course_utils.{recipe.script} " + shlex.join(shown),
            steps=int(log["args"]["max_train_steps"]), seconds=round(sum(log["seconds"].values()), 1),
            stage_seconds=log["seconds"], device=log["device"], torch=log["torch"], date=log["date"],
            parameters=log["parameters"], losses=log["losses"], training_images=int(log["args"]["num_images"]),
            description=recipe.description,
        )
        if "vae_steps" in log["args"]:
            record["vae_steps"] = int(log["args"]["vae_steps"])
        (tmp / "training.json").write_text(json.dumps(record, indent=1))
    if card:
        from .cards import write_card

        write_card(name, out)
    return out


def retrain_consistency(name: str, steps: int | None = None, out: Path | None = None, card: bool = True) -> Path:
    """``retrain`` for a consistency model: ``course_utils.consistency.distil`` of the shipped teacher on the
    course's digits (one process, no checkpoints), then fp16 weights with an ``LCMScheduler`` and ``training.json``
    into ``out`` (and the scored card with ``card``)."""
    from course_utils.consistency import distil, lcm_scheduler
    from course_utils.data import digits_28
    from course_utils.files import atomic_folder, forget_source
    from course_utils.pretrained import load

    from .cards import cpu_device

    recipe = RECIPES[name]
    steps = steps or recipe.steps
    teacher = load(recipe.distilled_from)
    config = dict(teacher.scheduler.config)
    images = digits_28("train").tensors[0] * 2 - 1  # [-1, 1], as the teacher was trained
    logged: list[list[float]] = []

    def report(step: int, loss: float, seconds: float) -> None:
        if step % 50 == 0 or step == steps:
            logged.append([step, round(loss, 6)])
            print(f"step {step}/{steps}: loss {loss:.5f}, {seconds / 60:.1f} min", flush=True)

    start = time.perf_counter()
    student, losses = distil(teacher.unet, config, images, steps, **recipe.distil, report=report)
    seconds = time.perf_counter() - start
    settings = ", ".join(f"{k}={v!r}" for k, v in recipe.distil.items())
    out = Path(out or path(name))
    with atomic_folder(out, replace=True) as tmp:
        pipeline = DDPMPipeline(unet=student.to(torch.float16), scheduler=lcm_scheduler(config, recipe.distil["skip"]))
        pipeline.save_pretrained(tmp, safe_serialization=True)
        forget_source(tmp)  # the student's config still names the folder the teacher was loaded from
        record = dict(
            name=name, command=f"python -m course_tools.pretrained --retrain {name}" + _where(out, name),
            script_command=f"course_utils.consistency.distil(<{recipe.distilled_from}>.unet, <its scheduler config>, "
                           f"digits_28('train') in [-1, 1], steps={steps}, {settings})",
            steps=steps, seconds=round(seconds, 1), torch=torch.__version__,
            device=torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_device(),
            date=str(date.today()), parameters=sum(p.numel() for p in pipeline.unet.parameters()),
            final_loss=round(sum(losses[-50:]) / len(losses[-50:]), 6), losses=logged,
            description=recipe.description, training_images=len(images), teacher=recipe.distilled_from,
            distil=recipe.distil,
        )
        (tmp / "training.json").write_text(json.dumps(record, indent=1))
    if card:
        from .cards import write_card

        write_card(name, out)
    return out


def _shown(arg: str, names: dict) -> str:
    """A command-line word with this machine's folders replaced by ``<name>``."""
    for folder, name in names.items():
        arg = arg.replace(str(folder), f"<{name}>")
    return arg


def _pairs_used(run_dir: Path) -> int:
    """The reflow pairs a finished run trained on, as the script recorded its flags (``training_log.json``)."""
    return int(json.loads((run_dir / "training_log.json").read_text())["args"]["reflow_pairs"])


def _where(out: Path, name: str) -> str:
    """The flag that sent a retrained pipeline where it went, as the command line showed it."""
    return " --in_place" if Path(out).resolve() == path(name) else " --out <folder>"


def _time_before_resuming(run_dir: Path) -> tuple[int, float] | None:
    """(step, seconds) of an interrupted run: its newest checkpoint's step, and the time from the run's start
    (when ``retrain`` wrote ``unet_config.json``) to that checkpoint; None if there is none to resume."""
    from course_utils.runs import list_checkpoints

    found = list_checkpoints(run_dir)
    if not found or not (run_dir / "unet_config.json").is_file():
        return None
    return int(found[-1].name.split("-")[1]), found[-1].stat().st_mtime - (run_dir / "unet_config.json").stat().st_mtime


def read_losses(log_dir: Path) -> list[float]:
    """The per-epoch mean losses a run logged to TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if "loss" in acc.Tags().get("scalars", []):
            values += [(e.step, round(e.value, 5)) for e in acc.Scalars("loss")]
    return [v for _, v in sorted(values)]
