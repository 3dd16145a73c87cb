"""Ship a spatial-control run as ``course_utils/pretrained/<name>``: fp16 weights, scores, a control | sample grid,
a card.

    python -m course_tools.pretrained.control_card --run tiny-controlnet --command "<the training command>"
    python -m course_tools.pretrained.control_card --run tiny-depth --command "..." \
        --out course_utils/pretrained/tiny-sd-butterflies-depth

Reads the run's model (``controlnet/`` or, for the depth design, ``unet/``) and ``training_log.json`` (written by
``course_utils.train_controlnet``), saves the model in float16, measures it on held-out posed drawings (silhouette
IoU against the control with and without it, a ControlNet also by conditioning scale; wings read as captioned)
and writes ``training.json``, ``scores.json``, ``samples.png`` and the model card ``README.md`` from the templates
``templates/controlnet.md`` or ``templates/depth.md`` and ``templates/control-run.md``, filled in with those numbers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from course_utils import tiny_sd
from course_utils.cli import Parser, errors, exit_on_problems, parse
from course_utils.controlnet import (
    MODEL_FOLDERS,
    load_control,
    model_class,
    posed_butterflies,
    sample_controlled,
    silhouette_iou,
)
from course_utils.data import butterfly_attributes
from course_utils.files import atomic_folder, write_text_atomic
from course_utils.metrics import bootstrap
from course_utils.pretrained import HERE

from .cards import template

HELD_OUT = 500_000  # the card's controls: never in training (0..) nor the script's validation (300,000..)
SCALES = (0.0, 0.25, 0.5, 1.0, 1.5)


def _spread(values: torch.Tensor, rounds: int = 200) -> float:
    """Half-width of the bootstrap 95 % interval of the mean."""
    means = bootstrap(lambda i: float(values[i].float().mean()), len(values), rounds)
    return round((np.percentile(means, 97.5) - np.percentile(means, 2.5)) / 2, 4)


def evaluate_control(pipeline, base, n: int = 100, steps: int = 20, guidance: float = 5.0) -> dict:
    """IoU and wings-as-captioned (mean, spread) of the drawings, of the base pipeline without control, and of
    ``pipeline`` (a ControlNet pipeline at each conditioning scale)."""
    from diffusers import StableDiffusionControlNetPipeline

    from course_utils.metrics import train_butterfly_scorer

    reader = train_butterfly_scorer()
    held = range(HELD_OUT, HELD_OUT + n)
    images, controls = posed_butterflies(held)
    attrs = [butterfly_attributes(i) for i in held]
    prompts = [a.caption for a in attrs]

    def measure(x: torch.Tensor) -> dict:
        iou = silhouette_iou(x, controls)
        wing = torch.tensor([r == a.wing for r, a in zip(reader.wing_colours(x), attrs, strict=True)])
        return dict(iou=round(float(iou.mean()), 4), iou_spread=_spread(iou), wing=round(float(wing.float().mean()), 4),
                    wing_spread=_spread(wing))

    start = time.perf_counter()
    rows = {"drawings (their own controls)": measure(images),
            "tiny-sd-butterflies, no control": measure(tiny_sd.generate(base, prompts, guidance, steps))}
    if isinstance(pipeline, StableDiffusionControlNetPipeline):
        for s in SCALES:
            x = sample_controlled(pipeline, prompts, controls, guidance, steps, controlnet_conditioning_scale=s)
            rows[f"with the ControlNet, scale {s}"] = measure(x)
    else:
        rows["with the depth U-Net (depth_map=, strength 1)"] = measure(
            sample_controlled(pipeline, prompts, controls, guidance, steps))
    return dict(rows=rows, n=n, steps=steps, guidance=guidance, seconds=round(time.perf_counter() - start, 1))


def control_grid(pipeline, n: int = 8):
    """Two rows per column pair: held-out controls | their samples (4 pairs a row, 96 px each)."""
    from diffusers.utils import make_image_grid
    from torchvision.transforms.functional import to_pil_image

    held = range(HELD_OUT + 1000, HELD_OUT + 1000 + n)
    controls = posed_butterflies(held)[1]
    x = sample_controlled(pipeline, [butterfly_attributes(i).caption for i in held], controls, 5.0, 50)
    tiles = [to_pil_image(t).resize((96, 96), 0) for pair in zip(controls, x, strict=True) for t in pair]
    return make_image_grid(tiles, rows=n // 4, cols=8)


def run_record(run: Path, command: str, machine: str) -> dict:
    """``training.json``: the run's command, device, time, steps, parameters, losses and IoU curve."""
    log = json.loads((run / "training_log.json").read_text())
    design = log["args"]["design"]
    return dict(command=command, design=design, device=log["device"], date=log["date"], torch=log["torch"],
                seconds=log["seconds"][design], steps=int(log["args"]["max_train_steps"]),
                parameters=log["parameters"], machine=machine, args=log["args"], losses=log["losses"][design],
                iou=log["iou"][design])


def ship(run: Path, folder: Path, command: str, machine: str) -> Path:
    """Write the shipped folder from the run (see the module's docstring)."""
    from course_utils.pretrained import load

    record = run_record(run, command, machine)
    design = record["design"]
    model = model_class(design).from_pretrained(run / MODEL_FOLDERS[design], dtype=torch.float32)
    with atomic_folder(folder / MODEL_FOLDERS[design], replace=True) as tmp:
        model.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        for file in tmp.iterdir():  # readable by all, like the other shipped files (a temporary folder is private)
            file.chmod(0o644)
        tmp.chmod(0o755)
    base = load("tiny-sd-butterflies")
    pipeline = load_control(design, folder, base)  # the shipped float16 weights, as learners will load them
    scores = evaluate_control(pipeline, base)
    control_grid(pipeline).save(folder / "samples.png")
    write_text_atomic(folder / "training.json", json.dumps(record, indent=1))
    write_text_atomic(folder / "scores.json", json.dumps(scores, indent=1))
    write_text_atomic(folder / "README.md", card(folder.name, record, scores))
    return folder


def card(name: str, record: dict, scores: dict) -> str:
    """The model card, from the run's record and the scores."""
    table = "\n".join(f"| {row} | {r['iou']:.2f} ± {r['iou_spread']:.2f} | {r['wing']:.0%} ± {r['wing_spread']:.0%} |"
                      for row, r in scores["rows"].items())
    args, design = record["args"], record["design"]
    head = f"""---
library_name: diffusers
license: mit
base_model: course_utils/pretrained/tiny-sd-butterflies
tags:
- {"controlnet" if design == "controlnet" else "depth2img"}
- diffusers
- stable-diffusion
- diffusion-models-class
---

# course_utils/pretrained/{name}

"""
    body = template(design).format(name=name, parameters=record["parameters"])
    run = template("control-run").format(
        command=record["command"], steps=record["steps"], minutes=record["seconds"] / 60, device=record["device"],
        torch=record["torch"], date=record["date"], machine=record["machine"],
        curve=", ".join(f"{s}: {v:.2f}" for s, v in record["iou"]), held_out=HELD_OUT, n=scores["n"],
        guidance=scores["guidance"], eval_steps=scores["steps"], eval_seconds=scores["seconds"], table=table,
        **{k: args[k] for k in ("train_batch_size", "learning_rate", "lr_scheduler", "lr_warmup_steps",
                                "num_images")})
    return head + body + run


def main(argv: list[str] | None = None) -> None:
    p = Parser(prog="python -m course_tools.pretrained.control_card", description=__doc__)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--command", required=True, help="the command that trained the run, for the card")
    p.add_argument("--machine", default="", help="the machine and its load during the run, for the card")
    p.add_argument("--out", type=Path, default=HERE / "tiny-sd-butterflies-controlnet")
    args, problems = parse(p, argv)
    log = args.run / "training_log.json"
    done = log.is_file() and "args" in json.loads(log.read_text())
    if not done or not any((args.run / f / "config.json").is_file() for f in MODEL_FOLDERS.values()):
        problems.append(f"--run {args.run}: not a finished course_utils.train_controlnet run (no controlnet/ or "
                        "unet/ and a finished training_log.json)")
    exit_on_problems(errors(problems))
    args.out.mkdir(parents=True, exist_ok=True)
    print(ship(args.run, args.out, args.command, args.machine))


if __name__ == "__main__":
    main()
