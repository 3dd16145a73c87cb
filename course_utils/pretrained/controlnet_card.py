"""Ship a ControlNet run as ``course_utils/pretrained/<name>``: fp16 weights, scores, a control | sample grid, a card.

    python -m course_utils.pretrained.controlnet_card --run tiny-controlnet --command "<the training command>"

Reads the run's ``controlnet/`` and ``training_log.json`` (written by ``course_utils.train_controlnet``), saves
the ControlNet in float16, measures it on held-out posed drawings (silhouette IoU against the control with and
without the ControlNet and by conditioning scale; wings read as captioned) and writes ``training.json``,
``scores.json``, ``samples.png`` and the model card ``README.md`` from those numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import tiny_sd
from ..controlnet import posed_butterflies, silhouette_iou
from ..data import butterfly_attributes
from ..files import atomic_folder, write_text_atomic

HELD_OUT = 500_000  # the card's controls: never in training (0..) nor the script's validation (300,000..)
SCALES = (0.0, 0.25, 0.5, 1.0, 1.5)


def _spread(values: torch.Tensor, rounds: int = 200) -> float:
    """Half-width of the bootstrap 95 % interval of the mean."""
    rng = np.random.default_rng(0)
    means = [float(values[rng.integers(len(values), size=len(values))].float().mean()) for _ in range(rounds)]
    return round((np.percentile(means, 97.5) - np.percentile(means, 2.5)) / 2, 4)


def evaluate(pipeline, base, n: int = 100, steps: int = 20, guidance: float = 5.0) -> dict:
    """IoU and wings-as-captioned (mean, spread) without the ControlNet and at each conditioning scale."""
    from ..metrics import train_butterfly_scorer

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
            "tiny-sd-butterflies, no ControlNet": measure(tiny_sd.generate(base, prompts, guidance, steps))}
    for s in SCALES:
        x = tiny_sd.generate(pipeline, prompts, guidance, steps, image=controls, controlnet_conditioning_scale=s)
        rows[f"with the ControlNet, scale {s}"] = measure(x)
    return dict(rows=rows, n=n, steps=steps, guidance=guidance, seconds=round(time.perf_counter() - start, 1))


def sample_grid(pipeline, n: int = 8):
    """Two rows per column pair: held-out controls | their samples (4 pairs a row, 96 px each)."""
    from diffusers.utils import make_image_grid
    from torchvision.transforms.functional import to_pil_image

    held = range(HELD_OUT + 1000, HELD_OUT + 1000 + n)
    controls = posed_butterflies(held)[1]
    x = tiny_sd.generate(pipeline, [butterfly_attributes(i).caption for i in held], 5.0, 50, image=controls)
    tiles = [to_pil_image(t).resize((96, 96), 0) for pair in zip(controls, x, strict=True) for t in pair]
    return make_image_grid(tiles, rows=n // 4, cols=8)


def ship(run: Path, folder: Path, command: str, load_average: str) -> Path:
    """Write the shipped folder from the run (see the module's docstring)."""
    from diffusers import ControlNetModel

    from ..controlnet import controlnet_pipeline
    from . import load

    log = json.loads((run / "training_log.json").read_text())
    controlnet = ControlNetModel.from_pretrained(run / "controlnet", dtype=torch.float32)
    with atomic_folder(folder / "controlnet", replace=True) as tmp:
        controlnet.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        for file in tmp.iterdir():  # readable by all, like the other shipped files (a temporary folder is private)
            file.chmod(0o644)
        tmp.chmod(0o755)
    base = load("tiny-sd-butterflies")
    shipped = ControlNetModel.from_pretrained(folder / "controlnet", dtype=torch.float32)
    pipeline = controlnet_pipeline(base, shipped)
    scores = evaluate(pipeline, base)
    sample_grid(pipeline).save(folder / "samples.png")
    record = dict(command=command, device=log["device"], date=log["date"], torch=log["torch"],
                  seconds=log["seconds"], steps=int(log["args"]["max_train_steps"]), parameters=log["parameters"],
                  load_average=load_average, args=log["args"], losses=log["losses"], iou=log["iou"])
    write_text_atomic(folder / "training.json", json.dumps(record, indent=1))
    write_text_atomic(folder / "scores.json", json.dumps(scores, indent=1))
    write_text_atomic(folder / "README.md", card(record, scores))
    return folder


def card(record: dict, scores: dict) -> str:
    """The model card, from the run's record and the scores."""
    table = "\n".join(f"| {name} | {r['iou']:.2f} ± {r['iou_spread']:.2f} | {r['wing']:.0%} ± {r['wing_spread']:.0%} |"
                      for name, r in scores["rows"].items())
    curve = ", ".join(f"{s}: {v:.2f}" for s, v in record["iou"])
    args = record["args"]
    return f"""---
library_name: diffusers
license: mit
base_model: course_utils/pretrained/tiny-sd-butterflies
tags:
- controlnet
- diffusers
- stable-diffusion
- diffusion-models-class
---

# course_utils/pretrained/tiny-sd-butterflies-controlnet

A ControlNet for the course's `tiny-sd-butterflies` (chapter 8): it draws the butterfly where a silhouette —
white on black, 3 channels, 32x32 — says. A `ControlNetModel` made by `ControlNetModel.from_unet` from the
shipped U-Net ({record['parameters']:,} parameters; the conditioning embedding has widths 16, 32, 64 for the
VAE's two halvings) and trained with the VAE, text encoder and U-Net frozen, as in diffusers'
`examples/controlnet/train_controlnet.py`. Only the ControlNet ships (float16; diffusers upcasts it to float32
on loading); `load` joins it to `tiny-sd-butterflies` (chapter 11).

```python
from course_utils import pretrained
from course_utils.controlnet import posed_butterflies
pipeline = pretrained.load("tiny-sd-butterflies-controlnet")  # a StableDiffusionControlNetPipeline, offline
control = posed_butterflies([500_000])[1]  # (1, 3, 32, 32) in [0, 1]: a silhouette
image = pipeline("a blue butterfly on a white background", image=control, guidance_scale=5).images[0]
```

## Training

- Command: `{record['command']}`
- {record['steps']:,} optimizer steps, batch {args['train_batch_size']}, AdamW at {args['learning_rate']}
  ({args['lr_scheduler']}, {args['lr_warmup_steps']} warm-up steps), gradient norm clipped at 1, on
  {args['num_images']} posed butterflies (`course_utils.controlnet.posed_butterfly`: chapter 8's drawings
  shrunk to 45-95 %, moved anywhere, turned by up to 75 degrees, a quarter upside down) with the captions of
  chapter 8's grammar (10 % empty).
- {record['seconds'] / 60:.1f} minutes on {record['device']} (torch {record['torch']}), {record['date']}, on a
  machine shared with other jobs (load average {record['load_average']}), so the time is an upper bound.
- Held-out silhouette IoU during training (16 controls, guidance 5, 20 DDIM steps), by step: {curve}.

## Quality

{scores['n']} held-out posed drawings (from index {HELD_OUT:,}), each with its own caption, guidance
{scores['guidance']}, {scores['steps']} DDIM steps, seed 0; computed in {scores['seconds']:.0f} s.
"IoU": the intersection over union of the sample's butterfly (pixels away from its background colour,
`course_utils.metrics.butterfly_mask`) with the control's white pixels (`course_utils.controlnet.
silhouette_iou`); "wings as captioned": the share the course's butterfly reader reads in the caption's colour.
Spreads: half-widths of bootstrap 95 % intervals.

| | IoU | wings as captioned |
|---|---|---|
{table}

`samples.png`: held-out controls and their samples, pairs side by side (guidance 5, 50 DDIM steps).
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m course_utils.pretrained.controlnet_card", description=__doc__)
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--command", required=True, help="the command that trained the run, for the card")
    p.add_argument("--load_average", default="", help="uptime's load average during the run")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "tiny-sd-butterflies-controlnet")
    args = p.parse_args(argv)
    if not (args.run / "controlnet" / "config.json").is_file() or not (args.run / "training_log.json").is_file():
        p.exit(2, f"error: --run {args.run}: not a finished course_utils.train_controlnet run (no controlnet/ and "
               "training_log.json)\n")
    args.out.mkdir(parents=True, exist_ok=True)
    print(ship(args.run, args.out, args.command, args.load_average))


if __name__ == "__main__":
    main()
