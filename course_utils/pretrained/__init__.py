"""The course's own pretrained pipelines: small diffusers folders shipped inside the package.

Offline there is no Hub, and on a CPU minutes of training give blobs, so the course ships models of its own,
trained by its own script (``course_utils.train_unconditional``) with the recipes below:

- ``digits-28``: unconditional 28x28 grayscale digits (chapter 1's ``UNet2DModel`` layout);
- ``digits-28-conditional``: the same layout with diffusers' class embedding (10 digits + "no class"),
  for classifier-free guidance;
- ``digits-28-flow``: the same digits by flow matching (chapter 12), a ``FlowMatchEulerDiscreteScheduler``;
- ``butterflies-32``: unconditional 32x32 synthetic butterflies;
- ``tiny-sd-butterflies``: a tiny Stable Diffusion (VAE, CLIP tokenizer and text encoder, conditional U-Net),
  32x32 butterflies from captions such as "a red butterfly on a blue background" (chapters 8-9), trained by
  ``course_utils.train_text_to_image``.

``load(name)`` returns the pipeline offline; ``python -m course_utils.pretrained --retrain NAME --out FOLDER``
trains one again (``--in_place`` instead of ``--out`` replaces the shipped folder; see ``--help``). Each folder
holds fp16 safetensors weights, a model card (``README.md``) written from the run that made it, ``training.json``
(the run's command, device, time, losses) and ``samples.png``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch
from diffusers import DDPMPipeline
from PIL import Image

HERE = Path(__file__).resolve().parent

MNIST_LAYOUT = dict(  # chapter 1's UNet2DModel
    block_out_channels=(32, 64, 64), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
)
CPU_LAYOUT = dict(  # the CPU recipe's 32-px UNet2DModel (benchmarks/cpu_recipe.py)
    layers_per_block=1, norm_num_groups=8, block_out_channels=(16, 32, 64, 128),
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
)


@dataclass(frozen=True)
class Recipe:
    """How one shipped pipeline is made: its data, its UNet and the training script's flags."""

    data: str  # "digits", "butterflies" or "clips" (synthesised sound as mel spectrogram images, chapter 10)
    resolution: int
    unet: dict
    steps: int  # optimizer updates of the shipped run
    flags: tuple[str, ...] = ()
    conditional: bool = False
    prediction_type: str = "v_prediction"
    description: str = ""
    tags: tuple[str, ...] = field(default=("unconditional-image-generation",))


# The course's recipe: cosine schedule, v-prediction target, AdamW 4e-4 with warm-up and cosine decay, batch 256,
# an EMA of the weights, bf16 on a GPU. (Measured on an H100, 4,000 steps: the same digit model trained with the
# epsilon target scored Frechet 48 / 62 % confident with DDIM-50, with grey backgrounds; with v-prediction 19 / 83 %.)
COMMON = ("--ddpm_beta_schedule", "squaredcos_cap_v2", "--train_batch_size", "256", "--learning_rate", "4e-4",
          "--lr_scheduler", "cosine", "--lr_warmup_steps", "500", "--use_ema", "--seed", "0")

RECIPES: dict[str, Recipe] = {
    "digits-28": Recipe(
        data="digits", resolution=28, steps=4000,
        unet=dict(sample_size=28, in_channels=1, out_channels=1, **MNIST_LAYOUT),
        description="unconditional 28x28 grayscale digits (scikit-learn's 8x8 digits, upsampled like MNIST)",
    ),
    "digits-28-conditional": Recipe(
        data="digits", resolution=28, steps=4000, conditional=True,
        unet=dict(sample_size=28, in_channels=1, out_channels=1, **MNIST_LAYOUT),
        flags=("--class_conditional", "--class_drop_prob", "0.1"),
        description="class-conditioned 28x28 digits (label 10 = no class) for classifier-free guidance",
        tags=("class-conditional-image-generation",),
    ),
    "digits-28-flow": Recipe(
        data="digits", resolution=28, steps=4000, prediction_type="flow",
        # Trained on a 2-core CPU: the CPU recipe's U-Net (benchmarks/cpu_recipe.py: 16 channels at full resolution,
        # one ResNet layer per level, no attention), batch 32: digits-28's layout at batch 256 takes ~7 s a step here,
        # this one ~0.7 s with the machine shared (one thread, OMP_NUM_THREADS=1: two threads contended were slower).
        unet=dict(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, norm_num_groups=8,
                  block_out_channels=(16, 32, 64), down_block_types=("DownBlock2D",) * 3,
                  up_block_types=("UpBlock2D",) * 3),
        flags=("--train_batch_size", "32", "--learning_rate", "2e-3", "--lr_warmup_steps", "100",
               "--data_on_device", "yes"),
        description="unconditional 28x28 grayscale digits by flow matching (rectified flow, as SD3 and Flux): "
        "the U-Net predicts the velocity noise - x0, sampled by Euler steps of a FlowMatchEulerDiscreteScheduler",
    ),
    "butterflies-32": Recipe(
        data="butterflies", resolution=32, steps=4000,
        # The CPU recipe (benchmarks/cpu_recipe.py): 16 channels at full resolution make a step ~4x cheaper than
        # the first GPU run's (32, 64, 128, 128); the v target fixed its over-saturated backgrounds.
        unet=dict(sample_size=32, in_channels=3, out_channels=3, **CPU_LAYOUT),
        flags=("--random_flip", "--train_batch_size", "64", "--learning_rate", "1e-3", "--lr_warmup_steps", "100"),
        description="unconditional 32x32 synthetic butterflies drawn by the course",
    ),
    "audio-arpeggios-32": Recipe(
        data="clips", resolution=32, steps=1200,
        # butterflies-32's layout on one channel: a 32 mel bins x 32 frames spectrogram is a 32x32 grayscale image
        unet=dict(sample_size=32, in_channels=1, out_channels=1, **CPU_LAYOUT),
        # no --random_flip: a mirrored spectrogram plays backwards
        flags=("--train_batch_size", "32", "--learning_rate", "1e-3", "--lr_warmup_steps", "100"),
        description="one-second major arpeggios synthesised by the course (4 timbres, 12 roots) as 32x32 mel "
        "spectrograms (4 kHz audio), heard with Griffin-Lim",
        tags=("unconditional-audio-generation", "audio-diffusion"),
    ),
}
N_BUTTERFLIES = 5000  # drawings in butterflies-32's training set
N_CLIPS = 4000  # synthesised major arpeggios in audio-arpeggios-32's training set
N_TONAL = 50  # clips per row whose tonal share (librosa.pyin) the audio card measures
# Text-to-image pipelines: trained by course_utils.train_text_to_image with its defaults (flags listed here).
TEXT_TO_IMAGE: dict[str, dict] = {
    "tiny-sd-butterflies": dict(
        flags=(), description="a tiny Stable Diffusion: 32x32 synthetic butterflies from a caption naming the wing "
        "and background colours (e.g. \"a red butterfly on a blue background\")"),
}
NAMES = (*RECIPES, *TEXT_TO_IMAGE)
# ControlNets: only the ControlNet ships (``controlnet/``); load() joins it to its base text-to-image pipeline.
CONTROLNETS: dict[str, dict] = {
    "tiny-sd-butterflies-controlnet": dict(
        base="tiny-sd-butterflies",
        description="a ControlNet for tiny-sd-butterflies: the butterfly where a silhouette (white on black) says"),
}
CONDITIONAL_NOTE = """
Class-conditioned: `pipeline.unet` takes `class_labels` (0-9, and 10 for "no class"), and `pipeline()` passes
none, so sample it with classifier-free guidance:

```python
import torch
from diffusers import DDIMScheduler
from course_utils.sampling import sample_with_guidance
scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
images = sample_with_guidance(pipeline.unet, scheduler, 50, labels=torch.arange(10), guidance_scale=1.5)
```
"""
AUDIO_NOTE = """
An audio pipeline: `load` returns a `course_utils.audio.AudioDiffusion`, called like diffusers' deprecated
`AudioDiffusionPipeline` (DDIM, 50 steps by default); the folder is a plain `DDPMPipeline` (spectrogram images)
plus `mel_config.json` (how the images map to sound).

```python
import torch
output = pipeline(batch_size=4, generator=torch.Generator().manual_seed(0))
output.images  # 32x32 mel spectrograms (low frequencies in the first row)
output.audios  # (4, 1, 4096) float32 audio by Griffin-Lim, at pipeline.sample_rate (4,000 Hz)
```
"""
READERS = {"digits": "digit classifier", "butterflies": "butterfly reader", "clips": "sound reader"}
SOUND_COLUMNS = f""" "confident": root and timbre
both read with probability >= 0.9; "read as minor": the share the reader hears as a minor arpeggio (the shipped
model saw only major ones); "tonal": the share of clips (after Griffin-Lim; the first {N_TONAL} of each row) in
which `librosa.pyin` hears a pitch in at least half the frames. The samples picture: 16 samples (DDIM 50 steps,
seed 0), titled with what the reader reads."""


def spectrogram_grid(folder: Path, n: int = 16, seed: int = 0):
    """A figure of ``n`` samples of the audio pipeline in ``folder``, each titled with what the sound reader reads."""
    from .. import metrics
    from ..audio import AudioDiffusion, plot_spectrograms

    pipeline = AudioDiffusion.from_pretrained(folder)
    x = pipeline.generate(n, torch.Generator().manual_seed(seed))
    titles = [f"{root} {mode}, {timbre}" for root, mode, timbre in metrics.train_sound_scorer().read(x)]
    return plot_spectrograms(x, titles, spec=pipeline.mel)


def path(name: str) -> Path:
    """The folder of the shipped pipeline ``name``."""
    if name not in (*NAMES, *CONTROLNETS):
        raise KeyError(f"no pretrained pipeline called {name!r}; the course ships: {', '.join((*NAMES, *CONTROLNETS))}")
    return HERE / name


def load(name: str, device: torch.device | str = "cpu"):
    """The shipped pipeline ``name`` (weights upcast to float32), loaded offline from the package: a
    ``DDPMPipeline``, a ``StableDiffusionPipeline`` for ``tiny-sd-butterflies``, or a
    ``StableDiffusionControlNetPipeline`` for ``tiny-sd-butterflies-controlnet`` (``CONTROLNETS``).

    A class-conditioned model comes as the same pipeline container (``.unet``, ``.scheduler``); sample it with
    ``course_utils.sampling.sample_with_guidance`` since ``DDPMPipeline.__call__`` passes no class labels.
    """
    folder = path(name)
    if name in CONTROLNETS:  # a StableDiffusionControlNetPipeline: the base pipeline's parts and the ControlNet
        from diffusers import ControlNetModel

        from ..controlnet import controlnet_pipeline

        controlnet = ControlNetModel.from_pretrained(folder / "controlnet", dtype=torch.float32, use_safetensors=True)
        return controlnet_pipeline(load(CONTROLNETS[name]["base"]), controlnet).to(device)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"{folder} holds no pipeline; run `python -m course_utils.pretrained --retrain {name}`")
    if name in RECIPES and RECIPES[name].data == "clips":  # sound: a course_utils.audio.AudioDiffusion
        from ..audio import AudioDiffusion

        return AudioDiffusion.from_pretrained(folder).to(device)
    if name in TEXT_TO_IMAGE:
        from diffusers import StableDiffusionPipeline

        cls = StableDiffusionPipeline
    else:
        cls = DDPMPipeline
    pipeline = cls.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


# What the source course loads from the Hub in place of a shipped pipeline, when online.
HUB_COUNTERPARTS = {"butterflies-32": "johnowhitaker/ddpm-butterflies-32px"}


def load_longer_trained(name: str, device: torch.device | str = "cpu") -> tuple[DDPMPipeline, str]:
    """The Hub model the source course uses for ``name`` when online (the learner's data then come from the Hub
    too: photographs, which the shipped model never saw), else the shipped pipeline; returned with a sentence
    saying which one it is."""
    from ..data import use_offline_data

    repo = HUB_COUNTERPARTS.get(name)
    if repo and not use_offline_data():
        try:
            pipeline = DDPMPipeline.from_pretrained(repo, dtype=torch.float32).to(device)
            pipeline.set_progress_bar_config(disable=True)
            return pipeline, f"{repo} (the source course's model, from the Hub)"
        except OSError as err:
            warnings.warn(f"loading {repo} failed ({err}); using the shipped {name}.", stacklevel=2)
    return load(name, device), f"{name} (shipped with the course, trained by its script)"


def class_names(name: str) -> list[str] | None:
    """The class names of a class-conditioned pipeline (label i means ``names[i]``), or None."""
    file = path(name) / "class_names.json"
    return json.loads(file.read_text()) if file.is_file() else None


# ---- Retraining ------------------------------------------------------------------------------------------


def write_training_data(recipe: Recipe, folder: Path) -> Path:
    """Write the recipe's training images into ``folder`` (once): digits in one sub-folder per class."""
    from .. import data
    from ..files import atomic_folder

    if recipe.data == "clips":  # major arpeggios only: the minor ones are chapter 10's fine-tuning family
        from ..audio import write_clip_folder

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
    return ["--train_data_dir", str(data_dir), "--model_config_name_or_path", str(run_dir / "unet_config.json"),
            "--resolution", str(recipe.resolution), "--center_crop", *common,
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
    from .. import train_unconditional
    from ..data import data_dir
    from ..files import atomic_folder

    if name in TEXT_TO_IMAGE:
        return retrain_text_to_image(name, steps, work_dir, out, resume, card, extra_args)
    recipe = RECIPES[name]
    steps = steps or recipe.steps
    work_dir = Path(work_dir or data_dir() / "pretrained-runs")
    run_dir = work_dir / name
    images = write_training_data(recipe, work_dir / f"data-{recipe.data}-{recipe.resolution}")
    run_dir.mkdir(parents=True, exist_ok=True)
    earlier = _time_before_resuming(run_dir) if resume else None
    (run_dir / "unet_config.json").write_text(json.dumps(recipe.unet))
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
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    out = Path(out or path(name))
    with atomic_folder(out, replace=True) as tmp:
        pipeline = DDPMPipeline.from_pretrained(run_dir, use_safetensors=True, dtype=torch.float16)
        pipeline.save_pretrained(tmp, safe_serialization=True)
        if recipe.data == "clips":
            from ..audio import SPECTROGRAM

            SPECTROGRAM.save(tmp)
        if (run_dir / "class_names.json").is_file():
            shutil.copy(run_dir / "class_names.json", tmp / "class_names.json")
        grids = sorted((run_dir / "samples").glob("epoch_*.png"))
        if grids:  # the run's last sample grid (EMA weights, 100 DDPM steps)
            shutil.copy(grids[-1], tmp / "samples.png")
        record = dict(
            name=name, command=f"python -m course_utils.pretrained --retrain {name}" + _where(out, name),
            script_command="python -m course_utils.train_unconditional " + shlex.join(
                a.replace(str(images), f"<{images.name}>").replace(str(run_dir), "<run>") for a in args),
            steps=steps, seconds=round(seconds, 1), device=device, torch=torch.__version__, date=str(date.today()),
            parameters=sum(p.numel() for p in pipeline.unet.parameters()), final_loss=losses[-1] if losses else None,
            losses=losses, training_images=len(list(images.rglob("*.png"))), description=recipe.description,
            **resumed,
        )
        (tmp / "training.json").write_text(json.dumps(record, indent=1))
    if card:
        write_card(name, out)
    return out


def _where(out: Path, name: str) -> str:
    """The flag that sent a retrained pipeline where it went, as the command line showed it."""
    return " --in_place" if Path(out).resolve() == path(name) else " --out <folder>"


def _time_before_resuming(run_dir: Path) -> tuple[int, float] | None:
    """(step, seconds) of an interrupted run: its newest checkpoint's step, and the time from the run's start
    (when ``retrain`` wrote ``unet_config.json``) to that checkpoint; None if there is none to resume."""
    from ..train_unconditional import list_checkpoints

    found = list_checkpoints(run_dir)
    if not found or not (run_dir / "unet_config.json").is_file():
        return None
    return int(found[-1].name.split("-")[1]), found[-1].stat().st_mtime - (run_dir / "unet_config.json").stat().st_mtime


# ---- Quality and model cards -------------------------------------------------------------------------------


def ddim_samples(pipeline: DDPMPipeline, n: int, steps: int = 50, seed: int = 0,
                 labels: torch.Tensor | None = None, guidance_scale: float = 1.0,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``n`` samples in [0, 1] (on the CPU) with ``steps`` DDIM steps (Euler steps of its own scheduler for a
    flow-matching pipeline), on the pipeline's device by default (one per label, with classifier-free guidance,
    if ``labels`` are given)."""
    from diffusers import DDIMScheduler

    from ..diffusion import is_flow
    from ..sampling import sample_ddpm, sample_with_guidance

    device = device or pipeline.device
    scheduler = (pipeline.scheduler if is_flow(pipeline.scheduler) else
                 DDIMScheduler.from_config(pipeline.scheduler.config))
    if labels is not None:
        x = sample_with_guidance(pipeline.unet, scheduler, steps, labels, guidance_scale, seed=seed, device=device)
    else:
        x = sample_ddpm(pipeline.unet, scheduler, n, steps, device=device, seed=seed)
    return (x + 1) / 2


def evaluate(name: str, folder: Path | None = None, n: int = 200, steps: int = 50, seed: int = 0) -> dict:
    """Score ``n`` DDIM samples of a pipeline with the course's metric, beside real images and uniform noise.

    Digits: the digit classifier's confident share, classes and Frechet distance (plus, for the conditional
    model, the share of samples read as the digit asked for, at guidance scales 0, 1 and 2). Butterflies: the
    butterfly reader's Frechet distance and the wing colours it reads.
    """
    from .. import metrics
    from ..data import digits_28

    recipe = RECIPES[name]
    pipeline = DDPMPipeline.from_pretrained(folder or path(name), dtype=torch.float32, use_safetensors=True)
    noise = torch.rand(n, recipe.unet["in_channels"], recipe.resolution, recipe.resolution,
                       generator=torch.Generator().manual_seed(seed))
    rows: dict[str, dict] = {}
    start = time.perf_counter()
    if recipe.data == "digits":
        scorer = metrics.train_digit_scorer()
        rows["real digits (train split)"] = scorer.score(digits_28("train").tensors[0][:n])
        if recipe.conditional:
            labels = torch.arange(10).repeat_interleave(n // 10)
            for scale in (0.0, 1.0, 2.0):  # 0: unconditional; past ~1.5 this small model saturates
                x = ddim_samples(pipeline, len(labels), steps, seed, labels=labels, guidance_scale=scale)
                with torch.no_grad():
                    asked = float((scorer.model(x).argmax(1) == labels).float().mean())
                rows[f"samples, guidance scale {scale:g}"] = {**scorer.score(x), "digit asked for": asked}
        elif recipe.prediction_type == "flow":  # its goal is few steps: 4 as well as the card's usual count
            for k in (steps, 4):
                rows[f"samples (Euler, {k} steps)"] = scorer.score(ddim_samples(pipeline, n, k, seed))
        else:
            rows[f"samples (DDIM, {steps} steps)"] = scorer.score(ddim_samples(pipeline, n, steps, seed))
        rows["uniform noise"] = scorer.score(noise)
    elif recipe.data == "clips":
        from ..audio import clip_images

        scorer = metrics.train_sound_scorer()

        def sound_row(images: torch.Tensor) -> dict:
            # pyin takes ~0.4 s a clip: the tonal share is measured on the first N_TONAL clips of each row
            return {**scorer.score(images, tonal=False), "tonal": metrics.tonal_share(images[:N_TONAL])}

        # the training family (major) and the fine-tuning family (minor), seeds the pipeline never saw
        rows["major arpeggios (not in training)"] = sound_row(clip_images(range(200_000, 200_000 + n), 7,
                                                                          modes=("major",))[0])
        rows["minor arpeggios"] = sound_row(clip_images(range(200_000, 200_000 + n), 7, modes=("minor",))[0])
        x = ddim_samples(pipeline, n, steps, seed)
        rows[f"samples (DDIM, {steps} steps)"] = sound_row(x)
        rows["uniform noise"] = sound_row(noise)
        read = [timbre for _, _, timbre in scorer.read(x)]
        rows[f"samples (DDIM, {steps} steps)"]["timbres read"] = {t: read.count(t) for t in sorted(set(read))}
    else:
        scorer = metrics.train_butterfly_scorer()
        drawn = metrics.drawn_butterflies(range(200_000, 200_000 + n), size=recipe.resolution)
        x = ddim_samples(pipeline, n, steps, seed)
        rows["drawn butterflies (not in training)"] = scorer.score(drawn)
        rows[f"samples (DDIM, {steps} steps)"] = scorer.score(x)
        rows["uniform noise"] = scorer.score(noise)
        read = scorer.wing_colours(x)
        rows[f"samples (DDIM, {steps} steps)"]["wing colours read"] = {c: read.count(c) for c in sorted(set(read))}
    sampler = "Euler (FlowMatchEulerDiscreteScheduler)" if recipe.prediction_type == "flow" else f"DDIM, {steps} steps"
    return dict(n=n, sampler=f"{sampler}, seed {seed}", rows=rows, seconds=round(time.perf_counter() - start),
                device=f"CPU ({torch.get_num_threads()} threads)", date=str(date.today()))


def write_card(name: str, folder: Path | None = None) -> Path:
    """Evaluate the pipeline in ``folder`` and write its ``scores.json`` and model card from its ``training.json``."""
    from ..hub import pipeline_card

    folder = Path(folder or path(name))
    if name in TEXT_TO_IMAGE:
        return write_text_to_image_card(name, folder)
    record = json.loads((folder / "training.json").read_text())
    scores = evaluate(name, folder)
    recipe = RECIPES[name]
    if recipe.data == "clips":
        spectrogram_grid(folder).savefig(folder / "samples.png", dpi=100)
    table = _table(scores)
    minutes, resumed = record["seconds"] / 60, _resumed(record)
    notes = ((CONDITIONAL_NOTE if recipe.conditional else "") + (FLOW_NOTE if recipe.prediction_type == "flow" else "")
             + (AUDIO_NOTE if recipe.data == "clips" else ""))
    description = f"""The diffusion course's own `{name}` pipeline: {recipe.description}. It ships inside the course
package so that every chapter works offline and on a CPU.

```python
from course_utils import pretrained
pipeline = pretrained.load("{name}")  # offline, weights upcast to float32
```
{notes}
## Training

- Command: `{record["command"]}`, which runs the course's training script:
  `{record["script_command"]}`
- {record["steps"]:,} optimizer steps on {record["training_images"]:,} training images, {minutes:.1f} minutes on
  {record["device"]} (torch {record["torch"]}), {record["date"]}; final epoch loss {record["final_loss"]}.{resumed}
- UNet2DModel, {record["parameters"]:,} parameters, {_objective(recipe)};
  the exponential moving average of the weights is what is saved, in float16 (upcast to float32 on loading:
  scores from the float32 and float16 weights of `digits-28` agreed to within 0.1 Frechet).

## Quality on the course's metrics

{scores["n"]} images per row, samples by {scores["sampler"]}; computed on {scores["device"]} in
{scores["seconds"]} s, {scores["date"]} (`python -m course_utils.pretrained --card {name} --in_place` recomputes
this). Frechet distances are in the feature space of the course's own {READERS[recipe.data]} (lower is better;
compare equal image counts).{SOUND_COLUMNS if recipe.data == "clips" else ""}

{chr(10).join(table)}

![samples](samples.png)
"""
    card = pipeline_card(f"course_utils/pretrained/{name}", description,
                         tags=("pytorch", "diffusers", *recipe.tags, "diffusion-models-class"))
    (folder / "scores.json").write_text(json.dumps(scores, indent=1))
    card.save(folder / "README.md")
    return folder / "README.md"


FLOW_NOTE = """Flow matching: the U-Net takes x_t = (1 - t)·x0 + t·noise and the scheduler's timestep t·1000 and
predicts the velocity noise - x0; the scheduler's Euler steps run t from 1 to 0. The plain loop samples it:

```python
import torch
unet, scheduler = pipeline.unet, pipeline.scheduler
scheduler.set_timesteps(sigmas=[1, 0.75, 0.5, 0.25])  # 4 equal steps (then 0), as SD3's pipeline spaces them
x = torch.randn(16, 1, 28, 28)
with torch.no_grad():
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x).prev_sample
```"""


def _resumed(record: dict) -> str:
    """The card's words for a run that was interrupted and resumed (``--resume``), or nothing."""
    if "resumed_at_step" not in record:
        return ""
    return (f"\n  Interrupted after step {record['resumed_at_step']:,} and resumed (`--resume`, with the same "
            f"recipe): {record['seconds_before_resuming'] / 60:.1f} minutes before, the rest after.")


def _objective(recipe: Recipe) -> str:
    """The card's words for what the U-Net was trained to predict, and on which noise process."""
    if recipe.prediction_type == "flow":
        return ("flow matching (`--prediction_type flow`: the velocity noise - x0 on the straight line, t uniform "
                "in [0, 1]), `FlowMatchEulerDiscreteScheduler` (shift 1)")
    return f"`{recipe.prediction_type}` target, cosine noise schedule"


def _table(scores: dict) -> list[str]:
    """The scores as Markdown table lines: a row per image set, a column per metric."""
    columns = _columns(scores)
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    return lines + [f"| {row} | " + " | ".join(_cell(values.get(c), c) for c in columns) + " |"
                    for row, values in scores["rows"].items()]


def _columns(scores: dict) -> list[str]:
    """The metric names that appear in any row, in a stable order."""
    names: list[str] = []
    for values in scores["rows"].values():
        names += [k for k in values if k not in names]
    return names


def _cell(value, column: str = "") -> str:
    """One table cell: shares as percentages, distances with one decimal, pixel errors with three."""
    if value is None:
        return ""
    if column == "pixel error":
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.0%}" if value <= 1 else f"{value:.1f}"
    return str(value)


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


# ---- The text-to-image pipeline (chapters 8-9) ---------------------------------------------------------------


def retrain_text_to_image(name: str, steps: int | None = None, work_dir: Path | None = None, out: Path | None = None,
                          resume: bool = False, card: bool = True, extra_args: tuple[str, ...] = ()) -> Path:
    """``retrain`` for a text-to-image pipeline: ``course_utils.train_text_to_image`` in ``<work_dir>/<name>``,
    then fp16 weights and ``training.json`` into ``out`` (and the scored card with ``card``)."""
    from diffusers import StableDiffusionPipeline

    from .. import train_text_to_image
    from ..data import data_dir
    from ..files import atomic_folder

    run_dir = Path(work_dir or data_dir() / "pretrained-runs") / name
    args = ["--output_dir", str(run_dir), *TEXT_TO_IMAGE[name]["flags"], *extra_args]
    args += ["--max_train_steps", str(steps)] if steps else []
    if not resume:  # an earlier (or interrupted) run of this pipeline in the course's work folder: start again
        shutil.rmtree(run_dir, ignore_errors=True)
    train_text_to_image.main(args + (["--resume_from_checkpoint", "latest"] if resume else []))
    log = json.loads((run_dir / "training_log.json").read_text())
    out = Path(out or path(name))
    with atomic_folder(out, replace=True) as tmp:
        pipeline = StableDiffusionPipeline.from_pretrained(run_dir, dtype=torch.float32, use_safetensors=True)
        # the VAE and U-Net in float16; the text encoder stays float32 (0.4 MB): transformers loads weights in the
        # dtype they were saved in, diffusers loads its models in float32, and a plain from_pretrained must give
        # parts that agree
        pipeline.vae.to(torch.float16)
        pipeline.unet.to(torch.float16)
        pipeline.save_pretrained(tmp, safe_serialization=True)
        shown = [a.replace(str(run_dir), "<run>") for a in args]
        record = dict(
            name=name, command=f"python -m course_utils.pretrained --retrain {name}" + _where(out, name),
            script_command="python -m course_utils.train_text_to_image " + shlex.join(shown),
            steps=int(log["args"]["max_train_steps"]), vae_steps=int(log["args"]["vae_steps"]),
            seconds=round(sum(log["seconds"].values()), 1), stage_seconds=log["seconds"], device=log["device"],
            torch=log["torch"], date=log["date"], parameters=log["parameters"], losses=log["losses"],
            training_images=int(log["args"]["num_images"]), description=TEXT_TO_IMAGE[name]["description"],
        )
        (tmp / "training.json").write_text(json.dumps(record, indent=1))
    if card:
        write_card(name, out)
    return out


def evaluate_text_to_image(pipeline, n: int = 200, steps: int = 50, scales: tuple[float, ...] = (1, 3, 5, 7.5),
                           seed: int = 0) -> dict:
    """Score a text-to-image pipeline with the butterfly reader: its VAE's reconstructions of ``n`` held-out
    drawings, and samples for those drawings' captions at each guidance scale (does the wing colour, and the
    background, read as the prompt asked?), beside the drawings themselves and uniform noise."""
    from .. import metrics, tiny_sd

    scorer = metrics.train_butterfly_scorer()
    start = time.perf_counter()
    drawn, attrs = tiny_sd.held_out_drawings(n)
    wings, backgrounds = [a.wing for a in attrs], [a.background for a in attrs]

    def row(x: torch.Tensor) -> dict:
        read_wing, read_background = scorer.wing_colours(x), scorer.background_colours(x)
        return {**scorer.score(x),
                "wing as captioned": sum(map(str.__eq__, read_wing, wings)) / n,
                "background as captioned": sum(map(str.__eq__, read_background, backgrounds)) / n}

    rows = {"drawn butterflies (not in training)": row(drawn)}
    recon = tiny_sd.decode_latents(pipeline.vae, tiny_sd.encode_images(pipeline.vae, drawn))
    rows["their VAE reconstructions"] = {**row(recon), "pixel error": float((recon - drawn).abs().mean())}
    prompts = [tiny_sd.caption(w, b) for w, b in zip(wings, backgrounds, strict=True)]
    for scale in scales:
        rows[f"samples for their captions, guidance {scale:g}"] = row(tiny_sd.generate(pipeline, prompts, scale,
                                                                                         steps, seed))
    rows["uniform noise"] = row(torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    return dict(n=n, sampler=f"DDIM, {steps} steps, seed {seed}", rows=rows, seconds=round(time.perf_counter() - start),
                device=f"CPU ({torch.get_num_threads()} threads)", date=str(date.today()))


def sample_grid_by_wing(pipeline, guidance_scale: float = 5.0, per_row: int = 8, steps: int = 50) -> Image.Image:
    """One row per wing colour (prompt "a <colour> butterfly on a <background> background", backgrounds in turn)."""
    from .. import tiny_sd
    from ..data import BACKGROUNDS, WING_COLOURS
    from ..viz import show_images

    backgrounds = list(BACKGROUNDS)
    prompts = [tiny_sd.caption(w, backgrounds[i % len(backgrounds)]) for w in WING_COLOURS for i in range(per_row)]
    return show_images(tiny_sd.generate(pipeline, prompts, guidance_scale, steps), nrow=per_row, value_range=(0, 1),
                       min_width=per_row * 64)


def _last(losses: list) -> str:
    """The last logged loss of a stage, or why there is none."""
    return str(losses[-1][1]) if losses else "none (not trained)"


def write_text_to_image_card(name: str, folder: Path) -> Path:
    """``write_card`` for a text-to-image pipeline: scores, samples.png (a row per wing colour) and README.md."""
    from diffusers import StableDiffusionPipeline

    from ..hub import pipeline_card

    record = json.loads((folder / "training.json").read_text())
    pipeline = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    pipeline.set_progress_bar_config(disable=True)
    scores = evaluate_text_to_image(pipeline)
    sample_grid_by_wing(pipeline).save(folder / "samples.png")
    table = _table(scores)
    params = record["parameters"]
    description = f"""The diffusion course's own `{name}` pipeline: {record["description"]}. Every part is the
real library class of Stable Diffusion, built small: `AutoencoderKL` (32x32x3 <-> 4x8x8 latents,
{params["vae"]:,} parameters), `CLIPTokenizer` (a vocabulary written by the course for its caption grammar) and
`CLIPTextModel` ({params["text_encoder"]:,} parameters, trained from scratch), `UNet2DConditionModel`
({params["unet"]:,} parameters, cross-attention to the text), `DDIMScheduler`; assembled into a
`StableDiffusionPipeline`. It ships inside the course package so that chapters 8 and 9 work offline and on a CPU.

```python
from course_utils import pretrained
pipeline = pretrained.load("{name}")  # offline, weights upcast to float32
image = pipeline("a blue butterfly on a yellow background", guidance_scale=5).images[0]
```

Prompts: `a <wing> butterfly on a <background> background`, `a <wing> butterfly` or `a butterfly on a
<background> background` ("an" before a vowel), wing colours red, orange, yellow, green, blue, purple, pink,
brown; backgrounds white, yellow, blue, green, pink, grey. Other words are split into letters the model never
learned. The empty prompt is the unconditional one (10 % of training captions), used by classifier-free guidance.

No safety checker (`safety_checker=None`): Stable Diffusion's is a 1.2 GB classifier of photographs; this model
draws only synthetic butterflies named by 10 colour words, so there is nothing for it to find, and offline it
could not be downloaded.

## Training

- Command: `{record["command"]}`, which runs the course's training script:
  `{record["script_command"]}`
- Stage 1, the VAE: {record["vae_steps"]:,} steps; stage 2, the U-Net and text encoder together on the frozen
  VAE's latents: {record["steps"]:,} optimizer steps; {record["training_images"]:,} drawn butterflies with
  captions from their drawing parameters. {record["seconds"] / 60:.1f} minutes on {record["device"]}
  (torch {record["torch"]}), {record["date"]}; final losses: VAE {_last(record["losses"]["vae"])},
  U-Net {_last(record["losses"]["unet"])}.
- Noise schedule of Stable Diffusion 1.x (scaled linear, 0.00085-0.012, epsilon target); the VAE and U-Net
  weights saved in float16 (diffusers upcasts them to float32 on loading), the text encoder's in float32
  (transformers keeps the saved dtype, and the parts must agree).

## Quality on the course's metrics

{scores["n"]} images per row, samples by {scores["sampler"]}, one prompt per held-out drawing (its own caption);
computed on {scores["device"]} in {scores["seconds"]} s, {scores["date"]}
(`python -m course_utils.pretrained --card {name} --in_place` recomputes this). Frechet distances are in the
feature space of the course's butterfly reader (lower is better); "as captioned" is the share of images whose wing (or
background) colour the reader reads as the caption says.

{chr(10).join(table)}

![samples](samples.png) (one row per wing colour, red to brown; guidance scale 5, 50 DDIM steps)
"""
    card = pipeline_card(f"course_utils/pretrained/{name}", description,
                         tags=("pytorch", "diffusers", "text-to-image", "stable-diffusion", "diffusion-models-class"),
                         pipeline_class="StableDiffusionPipeline", prompt="a blue butterfly on a yellow background")
    (folder / "scores.json").write_text(json.dumps(scores, indent=1))
    card.save(folder / "README.md")
    return folder / "README.md"


def main(argv: list[str] | None = None) -> None:
    """``--retrain NAME [--steps N]``, ``--card NAME`` or ``--list``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m course_utils.pretrained", description=__doc__.split("\n")[0])
    p.add_argument("--retrain", choices=NAMES, help="train this pipeline again with its recipe")
    p.add_argument("--steps", type=int, default=None, help="optimizer updates (default: the shipped run's)")
    p.add_argument("--work_dir", type=Path, default=None, help="where data, checkpoints and logs go")
    p.add_argument("--out", type=Path, default=None, help="where the pipeline goes (or the folder --card rescores)")
    p.add_argument("--in_place", action="store_true",
                   help="write into the package's own folder course_utils/pretrained/NAME (replacing the shipped one)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted --retrain from its checkpoint")
    p.add_argument("--card", choices=NAMES, help="score a pipeline again and rewrite its model card")
    p.add_argument("--list", action="store_true", help="list the shipped pipelines")
    args = p.parse_args(argv)
    problems = [f"--steps {args.steps}: must be at least 1"] if args.steps is not None and args.steps < 1 else []
    problems += [f"{flag} {value}: is a file, not a folder; pass a folder (it is created if missing)"
                 for flag, value in (("--out", args.out), ("--work_dir", args.work_dir)) if value and value.is_file()]
    if args.card and args.retrain:
        problems.append(f"--card {args.card} with --retrain {args.retrain}: give one; --retrain already scores the "
                        "new pipeline and writes its card")
    name = args.retrain or args.card
    shipped = name and (args.out is None or args.out.expanduser().resolve() == path(name))
    if shipped and not args.in_place:
        problems.append(f"{'--retrain' if args.retrain else '--card'} {name} would overwrite the shipped "
                        f"course_utils/pretrained/{name}; pass --out FOLDER to write elsewhere, or --in_place to "
                        "replace the shipped one")
    if args.in_place and not name:
        problems.append("--in_place only means something with --retrain NAME or --card NAME")
    elif args.in_place and not shipped:
        problems.append(f"--in_place with --out {args.out}: --in_place writes into course_utils/pretrained/{name}; "
                        "drop one of them")
    if args.card and not ((args.out or path(args.card)) / "training.json").is_file():
        problems.append(f"--card {args.card}: {args.out or path(args.card)} has no training.json; pass --out with the "
                        "folder a --retrain wrote")
    if problems:
        p.exit(2, "".join(f"error: {line}\n" for line in problems))
    if args.card:
        print("wrote", write_card(args.card, args.out))
        return
    if args.list or not args.retrain:
        for name in NAMES:
            print(f"{name:24s} {RECIPES[name].description if name in RECIPES else TEXT_TO_IMAGE[name]['description']}")
        return
    print("saved", retrain(args.retrain, args.steps, args.work_dir, args.out, args.resume))


if __name__ == "__main__":
    main(sys.argv[1:])
