"""Does the training script's 16-px CPU command draw digits? Train it on the offline digits, then score its samples.

    python benchmarks/script_digits.py                  # the README's command, 1500 updates
    python benchmarks/script_digits.py --steps 3000

Writes the course's offline digits (the metric's training split) as PNGs, runs ``python -m
course_utils.train_unconditional`` with the measured CPU recipe (v-prediction, EMA, min-SNR, cosine noise
schedule, the script's default 16-px U-Net), times it, then scores ``--n`` samples of the saved pipeline (DDIM,
50 steps, upsampled to 28 px) with the course's digit metric. The record goes to ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMPipeline
from PIL import Image

from course_utils.cli import INT, Parser, errors, exit_on_problems, parse
from course_utils.data import data_dir, digits_28
from course_utils.files import atomic_folder
from course_utils.metrics import score_spread, train_digit_scorer
from course_utils.sampling import sample_ddpm

RECIPE = ["--resolution", "16", "--center_crop", "--ddpm_beta_schedule", "squaredcos_cap_v2",
          "--prediction_type", "v_prediction", "--use_ema", "--snr_gamma", "5", "--train_batch_size", "64",
          "--learning_rate", "2e-3", "--lr_warmup_steps", "50", "--save_images_epochs", "1000",
          "--save_model_epochs", "1000", "--checkpointing_steps", "100000", "--seed", "0"]


def digit_folder(folder: Path) -> Path:
    """The offline digits' training split as 28-px grayscale PNGs (written once)."""
    if not folder.is_dir():
        with atomic_folder(folder) as tmp:
            for i, x in enumerate(digits_28("train").tensors[0]):
                Image.fromarray((x[0] * 255).round().byte().numpy(), mode="L").save(tmp / f"digit_{i:05d}.png")
    return folder


def main(argv: list[str] | None = None) -> None:
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=INT, default=1500, check="at least 1", help="optimizer updates (--max_train_steps)")
    p.add_argument("--n", type=INT, default=200, check="at least 2", help="samples scored")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args, problems = parse(p, argv)
    exit_on_problems(errors(problems))
    images = digit_folder(data_dir() / "digits-28-png")
    run = data_dir() / "runs" / "script-digits-16"
    flags = ["--train_data_dir", str(images), *RECIPE, "--max_train_steps", str(args.steps), "--output_dir", str(run),
             "--overwrite_output_dir"]
    load = os.getloadavg()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "course_utils.train_unconditional", *flags], check=True,
                   env={**os.environ, "TQDM_DISABLE": "1"})
    seconds = time.perf_counter() - start
    pipeline = DDPMPipeline.from_pretrained(run, use_safetensors=True)
    ddim = DDIMScheduler.from_config(pipeline.scheduler.config)
    x = (sample_ddpm(pipeline.unet, ddim, args.n, 50, seed=0) + 1) / 2
    digits = F.interpolate(x.mean(1, keepdim=True), size=28, mode="bilinear", align_corners=False).clamp(0, 1)
    scorer = train_digit_scorer()
    scores, spread = scorer.score(digits), score_spread(scorer, digits)
    record = dict(date=str(date.today()), machine=f"{platform.machine()}, {os.cpu_count()} cores, torch "
                  f"{torch.__version__}", load_before=[round(v, 2) for v in load],
                  load_after=[round(v, 2) for v in os.getloadavg()], seconds=round(seconds, 1), steps=args.steps,
                  command="python -m course_utils.train_unconditional " + shlex.join(
                      a.replace(str(images), "<digits>").replace(str(run), "<run>") for a in flags),
                  n=args.n, **scores, spread=spread)
    args.out.mkdir(parents=True, exist_ok=True)
    file = args.out / f"script_digits-16px-{args.steps}-{date.today()}.json"
    file.write_text(json.dumps(record, indent=1))
    grid = run / "samples.png"
    from course_utils.viz import make_grid

    make_grid([Image.fromarray((d[0] * 255).round().byte().numpy()) for d in digits[:32]], cols=8).save(grid)
    print(json.dumps(record, indent=1), "\nsamples:", grid)


if __name__ == "__main__":
    main()
