"""A shipped pipeline's model card: its scores on the course's metrics, its samples picture, and its README.md
filled in from the Markdown templates in ``templates/`` (``image.md``, ``text-to-image.md`` and the notes some
pipelines add) with what its run recorded (``training.json``) and what scoring measured (``scores.json``)."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import torch
from diffusers import DDPMPipeline
from PIL import Image

from course_utils.pretrained import ddim_samples, path
from course_utils.pretrained.recipes import N_TONAL, RECIPES, Recipe

TEMPLATES = Path(__file__).resolve().parent / "templates"
READERS = {"digits": "digit classifier", "butterflies": "butterfly reader", "clips": "sound reader"}


def cpu_device() -> str:
    """The CPU as a record names it, with the threads torch uses: "CPU (1 thread)", "CPU (2 threads)"."""
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' * (n > 1)})"


def template(name: str) -> str:
    """The text of the card template ``templates/<name>.md``."""
    return (TEMPLATES / f"{name}.md").read_text(encoding="utf-8")


# ---- Sampling and scoring ----------------------------------------------------------------------------------


def evaluate(name: str, folder: Path | None = None, n: int = 200, steps: int = 50, seed: int = 0) -> dict:
    """Score ``n`` DDIM samples of a pipeline with the course's metric, beside real images and uniform noise.

    Digits: the digit classifier's confident share, classes and Frechet distance (plus, for the conditional
    model, the share of samples read as the digit asked for, at guidance scales 0, 1 and 2). Butterflies: the
    butterfly reader's Frechet distance and the wing colours it reads. Sound: the sound reader's scores.
    """
    recipe = RECIPES[name]
    pipeline = DDPMPipeline.from_pretrained(folder or path(name), dtype=torch.float32, use_safetensors=True)
    noise = torch.rand(n, recipe.unet["in_channels"], recipe.resolution, recipe.resolution,
                       generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    rows = {"digits": _digit_rows, "clips": _sound_rows, "butterflies": _butterfly_rows}[recipe.data](
        recipe, pipeline, noise, n, steps, seed)
    sampler = ("Euler (FlowMatchEulerDiscreteScheduler)" if recipe.prediction_type == "flow" else
               "each row's sampler (trailing timesteps)" if recipe.distilled_from else
               f"DDIM, {steps} steps")
    return dict(n=n, sampler=f"{sampler}, seed {seed}", rows=rows, seconds=round(time.perf_counter() - start),
                device=cpu_device(), date=str(date.today()))


def _digit_rows(recipe: Recipe, pipeline, noise: torch.Tensor, n: int, steps: int, seed: int) -> dict[str, dict]:
    """The digit card's rows: real digits, the samples (per guidance scale, or per step count), noise."""
    from course_utils import metrics
    from course_utils.data import digits_28

    scorer = metrics.train_digit_scorer()
    rows = {"real digits (train split)": scorer.score(digits_28("train").tensors[0][:n])}
    if recipe.conditional:
        labels = torch.arange(10).repeat_interleave(n // 10)
        for scale in (0.0, 1.0, 2.0):  # 0: unconditional; past ~1.5 this small model saturates
            x = ddim_samples(pipeline, len(labels), steps, seed, labels=labels, guidance_scale=scale)
            with torch.no_grad():
                asked = float((scorer.model(x).argmax(1) == labels).float().mean())
            rows[f"samples, guidance scale {scale:g}"] = {**scorer.score(x), "digit asked for": asked}
    elif recipe.distilled_from:  # its goal is few steps: every few-step sampler of the course, at 1, 2, 4, 8
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        from course_utils.pretrained import load
        from course_utils.sampling import sample_ddpm

        teacher, reflow = load(recipe.distilled_from), load("digits-28-reflow")  # reflow: chapter 12's few-step model
        trailing = dict(timestep_spacing="trailing")  # the first step starts from pure noise, as LCM's does
        few = (1, 2, 4, 8)
        samplers = {  # label: U-Net, scheduler, step counts, whether to count the digits read (diversity)
            "this pipeline, LCMScheduler": (pipeline.unet, pipeline.scheduler, few, True),
            f"{recipe.distilled_from}, DDIM": (teacher.unet, DDIMScheduler.from_config(
                teacher.scheduler.config, **trailing), (*few, steps), False),
            f"{recipe.distilled_from}, DPM-Solver++": (teacher.unet, DPMSolverMultistepScheduler.from_config(
                teacher.scheduler.config, **trailing), few, False),
            "digits-28-reflow, Euler": (reflow.unet, reflow.scheduler, few, False)}
        for label, (unet, scheduler, step_counts, counted) in samplers.items():
            for k in step_counts:
                x = (sample_ddpm(unet, scheduler, n, k, seed=seed) + 1) / 2
                row = rows[f"{label}, {k} step{'s' * (k > 1)}"] = {**scorer.score(x),
                                                                   "Frechet spread": scorer.frechet_spread(x)}
                if counted or k == steps:  # how the samples spread over the ten digits (the teacher's many steps too)
                    with torch.no_grad():
                        read = scorer.model(x)[:, :10].argmax(1)
                    row["digits read"] = {d: int((read == d).sum()) for d in range(10)}
    elif recipe.prediction_type == "flow":  # its goal is few steps: 4 as well as the card's usual count
        for k in (steps, 4):
            rows[f"samples (Euler, {k} steps)"] = scorer.score(ddim_samples(pipeline, n, k, seed))
    else:
        rows[f"samples (DDIM, {steps} steps)"] = scorer.score(ddim_samples(pipeline, n, steps, seed))
    rows["uniform noise"] = scorer.score(noise)
    return rows


def _sound_rows(recipe: Recipe, pipeline, noise: torch.Tensor, n: int, steps: int, seed: int) -> dict[str, dict]:
    """The audio card's rows: held-out major and minor clips, the samples (and the timbres read), noise."""
    from course_utils import metrics
    from course_utils.audio import clip_images

    scorer = metrics.train_sound_scorer()

    def sound_row(images: torch.Tensor) -> dict:
        # pyin is slow: the tonal share is measured on the first N_TONAL clips of each row
        return {**scorer.score(images, tonal=False), "tonal": metrics.tonal_share(images[:N_TONAL])}

    # the training family (major) and the fine-tuning family (minor), seeds the pipeline never saw
    rows = {"major arpeggios (not in training)": sound_row(clip_images(range(200_000, 200_000 + n), 7,
                                                                       modes=("major",))[0]),
            "minor arpeggios": sound_row(clip_images(range(200_000, 200_000 + n), 7, modes=("minor",))[0])}
    x = ddim_samples(pipeline, n, steps, seed)
    rows[f"samples (DDIM, {steps} steps)"] = sound_row(x)
    rows["uniform noise"] = sound_row(noise)
    read = [timbre for _, _, timbre in scorer.read(x)]
    rows[f"samples (DDIM, {steps} steps)"]["timbres read"] = {t: read.count(t) for t in sorted(set(read))}
    return rows


def _butterfly_rows(recipe: Recipe, pipeline, noise: torch.Tensor, n: int, steps: int, seed: int) -> dict[str, dict]:
    """The butterfly card's rows: held-out drawings, the samples (and the wing colours read), noise."""
    from course_utils import metrics

    scorer = metrics.train_butterfly_scorer()
    drawn = metrics.drawn_butterflies(range(200_000, 200_000 + n), size=recipe.resolution)
    x = ddim_samples(pipeline, n, steps, seed)
    rows = {"drawn butterflies (not in training)": scorer.score(drawn),
            f"samples (DDIM, {steps} steps)": scorer.score(x), "uniform noise": scorer.score(noise)}
    read = scorer.wing_colours(x)
    rows[f"samples (DDIM, {steps} steps)"]["wing colours read"] = {c: read.count(c) for c in sorted(set(read))}
    return rows


def evaluate_text_to_image(pipeline, n: int = 200, steps: int = 50, scales: tuple[float, ...] = (1, 3, 5, 7.5),
                           seed: int = 0, sampler: str = "DDIM", call: dict | None = None,
                           extra: dict[str, tuple[float, dict]] | None = None) -> dict:
    """Score a text-to-image pipeline with the butterfly reader: its VAE's reconstructions of ``n`` held-out
    drawings, and samples for those drawings' captions at each guidance scale (does the wing colour, and the
    background, read as the prompt asked?), beside the drawings themselves and uniform noise. ``call``: more
    arguments of every pipeline call; ``extra``: more sample rows, name -> (guidance scale, the call's arguments)."""
    from course_utils import metrics, tiny_sd

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
                                                                                         steps, seed, **call or {}))
    for name, (scale, arguments) in (extra or {}).items():
        rows[name] = row(tiny_sd.generate(pipeline, prompts, scale, steps, seed, **arguments))
    rows["uniform noise"] = row(torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    return dict(n=n, sampler=f"{sampler}, {steps} steps, seed {seed}", rows=rows,
                seconds=round(time.perf_counter() - start), device=cpu_device(), date=str(date.today()))


# ---- Samples pictures --------------------------------------------------------------------------------------


def spectrogram_grid(folder: Path, n: int = 16, seed: int = 0):
    """A figure of ``n`` samples of the audio pipeline in ``folder``, each titled with what the sound reader reads."""
    from course_utils import metrics
    from course_utils.audio import AudioDiffusion, plot_spectrograms

    pipeline = AudioDiffusion.from_pretrained(folder)
    x = pipeline.generate(n, torch.Generator().manual_seed(seed))
    titles = [f"{root} {mode}, {timbre}" for root, mode, timbre in metrics.train_sound_scorer().read(x)]
    return plot_spectrograms(x, titles, spec=pipeline.mel)


def steps_grid(folder: Path, per_row: int = 12, seed: int = 0) -> Image.Image:
    """A consistency pipeline's samples at 1, 2, 4 and 8 steps, one row each, from the same starting noise."""
    from course_utils.viz import show_images

    pipeline = DDPMPipeline.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
    x = torch.cat([ddim_samples(pipeline, per_row, k, seed) for k in (1, 2, 4, 8)])
    return show_images(x, nrow=per_row, value_range=(0, 1), min_width=per_row * 56)


def sample_grid_by_wing(pipeline, guidance_scale: float = 5.0, per_row: int = 8, steps: int = 50,
                        call: dict | None = None) -> Image.Image:
    """One row per wing colour (prompt "a <colour> butterfly on a <background> background", backgrounds in turn);
    ``call``: more arguments of the pipeline call."""
    from course_utils import tiny_sd
    from course_utils.data import BACKGROUNDS, WING_COLOURS
    from course_utils.viz import show_images

    backgrounds = list(BACKGROUNDS)
    prompts = [tiny_sd.caption(w, backgrounds[i % len(backgrounds)]) for w in WING_COLOURS for i in range(per_row)]
    return show_images(tiny_sd.generate(pipeline, prompts, guidance_scale, steps, **call or {}), nrow=per_row,
                       value_range=(0, 1), min_width=per_row * 64)


# ---- The card's text -----------------------------------------------------------------------------------------


def card_text(name: str, record: dict, scores: dict) -> str:
    """The model card (``README.md``) of pipeline ``name`` from its run's ``record`` and its ``scores``."""
    from course_utils.hub import pipeline_card

    recipe = RECIPES[name]
    shared = dict(name=name, command=record["command"], script_command=record["script_command"],
                  steps=record["steps"], training_images=record["training_images"], minutes=record["seconds"] / 60,
                  device=record["device"], torch=record["torch"], date=record["date"], n=scores["n"],
                  sampler=scores["sampler"], scores_device=scores["device"], seconds=scores["seconds"],
                  scores_date=scores["date"], table="\n".join(_table(scores)))
    if recipe.script == "train_sd3":
        params = record["parameters"]
        base = json.loads((path("tiny-sd-butterflies") / "scores.json").read_text())
        description = template("sd3").format(
            **shared, description=record["description"], vae_parameters=params["vae"],
            text_encoder_parameters=params["text_encoder"], transformer_parameters=params["transformer"],
            loss=_last(record["losses"]["transformer"]), base_sampler=base["sampler"], base_n=base["n"],
            base_table="\n".join(_table({"rows": {k: v for k, v in base["rows"].items() if k.startswith("samples")}})))
        card = pipeline_card(f"course_utils/pretrained/{name}", description,
                             tags=("pytorch", "diffusers", *recipe.tags, "diffusion-models-class"),
                             pipeline_class="StableDiffusion3Pipeline",
                             prompt="a blue butterfly on a yellow background", arguments="max_sequence_length=0",
                             load_arguments="text_encoder_3=None, tokenizer_3=None")
        return str(card)
    if recipe.text_to_image:
        params = record["parameters"]
        description = template("text-to-image").format(
            **shared, description=record["description"], vae_parameters=params["vae"],
            text_encoder_parameters=params["text_encoder"], unet_parameters=params["unet"],
            vae_steps=record["vae_steps"], vae_loss=_last(record["losses"]["vae"]),
            unet_loss=_last(record["losses"]["unet"]))
        card = pipeline_card(f"course_utils/pretrained/{name}", description,
                             tags=("pytorch", "diffusers", *recipe.tags, "diffusion-models-class"),
                             pipeline_class="StableDiffusionPipeline",
                             prompt="a blue butterfly on a yellow background")
        return str(card)
    if recipe.distilled_from:
        description = template("consistency").format(
            **shared, description=recipe.description, teacher=recipe.distilled_from, final_loss=record["final_loss"],
            parameters=record["parameters"], settings=", ".join(f"{k} {v}" for k, v in recipe.distil.items()))
        return str(pipeline_card(f"course_utils/pretrained/{name}", description, arguments="num_inference_steps=2",
                                 tags=("pytorch", "diffusers", *recipe.tags, "diffusion-models-class")))
    notes = [template(note) for note, wanted in (("conditional", recipe.conditional),
                                                 ("flow", recipe.prediction_type == "flow"),
                                                 ("audio", recipe.data == "clips")) if wanted]
    if recipe.scheduler:
        settings = ", ".join(f"`{key}={value!r}`" for key, value in recipe.scheduler.items())
        notes.append(template("scheduler").format(settings=settings))
    columns = " " + template("sound-columns").format(n_tonal=N_TONAL).rstrip("\n") if recipe.data == "clips" else ""
    description = template("image").format(
        **shared, description=recipe.description, notes="".join("\n" + note for note in notes),
        final_loss=record["final_loss"], resumed=_resumed(record), parameters=record["parameters"],
        trained_on=(f"{record['training_images']:,} reflow pairs (noise, `{recipe.reflow_of}`'s sample from it)"
                    if recipe.reflow_of else f"{record['training_images']:,} training images"),
        objective=_objective(recipe), reader=READERS[recipe.data], columns=columns)
    card = pipeline_card(f"course_utils/pretrained/{name}", description,
                         tags=("pytorch", "diffusers", *recipe.tags, "diffusion-models-class"))
    return str(card)


def _resumed(record: dict) -> str:
    """The card's words for a run that was interrupted and resumed (``--resume``), or nothing."""
    if "resumed_at_step" not in record:
        return ""
    return (f"\n  Interrupted after step {record['resumed_at_step']:,} and resumed (`--resume`, with the same "
            f"recipe): {record['seconds_before_resuming'] / 60:.1f} minutes before, the rest after.")


def _objective(recipe: Recipe) -> str:
    """The card's words for what the U-Net was trained to predict, and on which noise process."""
    if recipe.reflow_of:
        return (f"reflow of `{recipe.reflow_of}` (`--reflow_pairs`: its weights trained on with the flow-matching "
                "loss along the straight lines from each noise draw to its own sample), "
                "`FlowMatchEulerDiscreteScheduler` (shift 1)")
    if recipe.prediction_type == "flow":
        return ("flow matching (`--prediction_type flow`: the velocity noise - x0 on the straight line, t uniform "
                "in [0, 1]), `FlowMatchEulerDiscreteScheduler` (shift 1)")
    return f"`{recipe.prediction_type}` target, cosine noise schedule"


def _last(losses: list) -> str:
    """The last logged loss of a stage, or why there is none."""
    return str(losses[-1][1]) if losses else "none (not trained)"


def _table(scores: dict) -> list[str]:
    """The scores as Markdown table lines: a row per image set, a column per metric."""
    columns = _columns(scores)
    lines = ["| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    return lines + [f"| {row} | " + " | ".join(cell(values.get(c), c) for c in columns) + " |"
                    for row, values in scores["rows"].items()]


def _columns(scores: dict) -> list[str]:
    """The metric names that appear in any row, in a stable order."""
    names: list[str] = []
    for values in scores["rows"].values():
        names += [k for k in values if k not in names]
    return names


def cell(value, column: str = "") -> str:
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


# ---- Writing it ------------------------------------------------------------------------------------------------


def write_card(name: str, folder: Path | None = None) -> Path:
    """Score the pipeline in ``folder`` (default: the shipped one), draw its samples picture, and write its
    ``scores.json`` and model card ``README.md`` from its ``training.json``."""
    from course_utils.files import atomic_file, write_text_atomic

    folder = Path(folder or path(name))
    record = json.loads((folder / "training.json").read_text())
    if RECIPES[name].script == "train_sd3":
        from course_utils.sd3 import NO_T5, load_sd3

        pipeline = load_sd3(folder)
        scores = evaluate_text_to_image(pipeline, sampler="Euler (FlowMatchEulerDiscreteScheduler)", call=NO_T5, extra={
            "samples, guidance 5, the pipeline's default max_sequence_length (256 zero tokens for the T5)": (5, {})})
        with atomic_file(folder / "samples.png") as tmp:
            sample_grid_by_wing(pipeline, call=NO_T5).save(tmp, format="PNG")
    elif RECIPES[name].text_to_image:
        from diffusers import StableDiffusionPipeline

        pipeline = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
        pipeline.set_progress_bar_config(disable=True)
        scores = evaluate_text_to_image(pipeline)
        with atomic_file(folder / "samples.png") as tmp:
            sample_grid_by_wing(pipeline).save(tmp, format="PNG")
    else:
        scores = evaluate(name, folder)
        if RECIPES[name].data == "clips":
            with atomic_file(folder / "samples.png") as tmp:
                spectrogram_grid(folder).savefig(tmp, dpi=100, format="png")
        if RECIPES[name].distilled_from:
            with atomic_file(folder / "samples.png") as tmp:
                steps_grid(folder).save(tmp, format="PNG")
    write_text_atomic(folder / "scores.json", json.dumps(scores, indent=1))
    write_text_atomic(folder / "README.md", card_text(name, record, scores))
    return folder / "README.md"
