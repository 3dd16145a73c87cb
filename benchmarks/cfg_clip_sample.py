"""Classifier-free guidance on ``digits-28-conditional`` with and without the sampler's x0 clipping (chapter 7).

    python benchmarks/cfg_clip_sample.py                      # 100 digits per row, 30 DDIM steps, scales 1 2 3 5 7.5
    python benchmarks/cfg_clip_sample.py --n 20 --scales 2 5 --recompute_scales 5

Each row samples the same starting noise (seed 0), ten digits asked for in turn, with DDIM built from the shipped
scheduler config and ``clip_sample`` set to True or False, and reads them with the course's digit classifier
(``metrics.train_digit_scorer()``, which never steered the sampler): the share read as the digit asked for (± its
standard error sqrt(p(1 - p)/n)), the confident share and the Frechet distance with their bootstrap spreads
(``metrics.score_spread``). ``--recompute_scales`` adds rows that clip x0 and recompute the noise from the
clipped x0 (``DDIMScheduler.step(..., use_clipped_model_output=True)``), which keeps the pair consistent.
The JSON in ``benchmarks/results/`` is rewritten after every row, so an interrupted run keeps what it measured;
the table prints at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch
from diffusers import DDIMScheduler

from course_utils import pretrained
from course_utils.files import write_text_atomic
from course_utils.metrics import score_spread, train_digit_scorer
from course_utils.sampling import sample_with_guidance

RESULTS = Path(__file__).resolve().parent / "results"


class RecomputingDDIM(DDIMScheduler):
    """DDIM that, after clipping x0, recomputes the noise from the clipped x0 (consistent with x_t again)."""

    def step(self, *args, **kwargs):
        """``DDIMScheduler.step`` with ``use_clipped_model_output=True``."""
        return super().step(*args, use_clipped_model_output=True, **kwargs)


def main(argv: list[str] | None = None) -> dict:
    """Measure every (clip_sample, scale) row; write the JSON after each; print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100, help="digits per row (a multiple of 10: each digit n/10 times)")
    p.add_argument("--steps", type=int, default=30, help="DDIM steps")
    p.add_argument("--scales", type=float, nargs="+", default=[1, 2, 3, 5, 7.5], help="guidance scales")
    p.add_argument("--recompute_scales", type=float, nargs="*", default=[5],
                   help="scales that also get a row clipping x0 and recomputing the noise from it")
    args = p.parse_args(argv)
    if args.n % 10:
        p.error(f"--n {args.n} is not a multiple of 10: each digit is asked for n/10 times")
    pipeline = pretrained.load("digits-28-conditional")
    scorer = train_digit_scorer()
    labels = torch.arange(10).repeat(args.n // 10)
    record = dict(model="digits-28-conditional", n=args.n, steps=args.steps, seed=0, date=str(date.today()),
                  device=f"CPU ({torch.get_num_threads()} threads)", machine=platform.platform(),
                  torch=torch.__version__, rows=[])
    out = RESULTS / f"cfg_clip_sample-n{args.n}-{args.steps}steps-{record['date']}.json"
    # The scales the shipped config is known to lose first; 1 last (cheapest, one U-Net pass per step).
    order = sorted(args.scales, key=lambda s: (s == 1, s))
    for scale in order:
        variants = [(True, False), (False, False)] + [(True, True)] * (scale in args.recompute_scales)
        for clip, recompute in variants:
            start = time.perf_counter()
            scheduler = (RecomputingDDIM if recompute else DDIMScheduler).from_config(pipeline.scheduler.config,
                                                                                       clip_sample=clip)
            x = (sample_with_guidance(pipeline.unet, scheduler, args.steps, labels, scale, seed=0) + 1) / 2
            with torch.no_grad():
                hit = (scorer.model(x).argmax(1) == labels).float()
            asked = float(hit.mean())
            scores, spread = scorer.score(x), score_spread(scorer, x)
            record["rows"].append(dict(clip_sample=clip, use_clipped_model_output=recompute, scale=scale, asked=asked,
                                       asked_se=(asked * (1 - asked) / len(hit)) ** 0.5,
                                       per_digit=hit.view(-1, 10).mean(0).tolist(),
                                       **scores, **{f"{k}_spread": v for k, v in spread.items()},
                                       seconds=round(time.perf_counter() - start, 1)))
            write_text_atomic(out, json.dumps(record, indent=1))
    print(f"{args.n} digits per row, {args.steps} DDIM steps, seed 0 ({record['device']}, {record['date']})\n")
    print("| clip_sample | noise recomputed from the clipped x0 | guidance scale | digit asked for | confident "
          "| Frechet |")
    print("|---|---|---|---|---|---|")
    for r in sorted(record["rows"], key=lambda r: (not r["clip_sample"], r["use_clipped_model_output"], r["scale"])):
        print(f"| {r['clip_sample']} | {r['use_clipped_model_output']} | {r['scale']:g} | "
              f"{r['asked']:.0%} ± {r['asked_se']:.0%} | "
              f"{r['confident']:.0%} ± {r['confident_spread']:.0%} | {r['frechet']:.1f} ± {r['frechet_spread']:.1f} |")
    print(f"\nwritten: {out.relative_to(RESULTS.parent.parent)}")
    return record


if __name__ == "__main__":
    main()
