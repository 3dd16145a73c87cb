"""A tiny Stable Diffusion 3 on the tiny SD's latents: which parts fit ``StableDiffusion3Pipeline``, and what it costs.

    python benchmarks/tiny_sd3.py                          # checks, timings of the three sizes, fp16 sizes
    python benchmarks/tiny_sd3.py --train_minutes 5        # ... and a short smoke training of --train_size
    python benchmarks/tiny_sd3.py --timing_steps 2 --sizes s --tag smoke    # end to end in a minute

The measurements behind chapter 13's tiny SD3 (latent flow matching with an MM-DiT; ``course_utils.sd3`` holds the
parts it checks, and ``tiny-sd3-butterflies`` ships the recipe it chose). It answers, with code that runs, how the
course's ``tiny-sd-butterflies`` parts go into diffusers' real ``StableDiffusion3Pipeline``:

- the VAE: ``tiny-sd-butterflies``' ``AutoencoderKL`` as it is (4 x 8 x 8 latents of a 32 px image; the pipeline's
  ``vae_scale_factor`` is 4 from its three blocks), with ``shift_factor`` set to 0.0 in its config. Its saved
  ``shift_factor`` is null, and the pipeline's decoding ``latents / scaling_factor + shift_factor`` then fails
  (TypeError; the record keeps the message). ``tiny_sd.encode_images`` (the mean times ``scaling_factor``, no
  shift) is then exactly what the pipeline decodes.
- the text side: ``text_encoder`` and ``text_encoder_2`` must both be ``CLIPTextModelWithProjection`` (the pipeline
  reads ``hidden_states[-2]`` and the projected pooled output ``text_embeds`` of each, and neither may be None).
  One encoder serves as both: ``tiny-sd-butterflies``' 2-layer, 64-wide ``CLIPTextModel`` weights copied into a
  ``CLIPTextModelWithProjection`` whose new ``text_projection`` (64 -> 64, no bias) is set to the identity, so its
  pooled vector is the trained encoder's own (the final-layer-normed end token). The course's tokenizer serves as
  ``tokenizer`` and ``tokenizer_2`` (16 tokens). ``text_encoder_3=None, tokenizer_3=None`` works, saved and reloaded
  offline: the pipeline then puts zeros of width ``joint_attention_dim`` in T5's place, ``max_sequence_length``
  tokens of them (256 by default).
- the dims: the pipeline concatenates the two CLIP hidden states (64 + 64 = 128 wide) and pads them to the T5
  width (= ``joint_attention_dim`` when there is no T5), then appends the T5 tokens; it concatenates the two pooled
  vectors. So ``joint_attention_dim`` = 128 (no padding; a smaller value crops: ``F.pad`` with a negative width,
  which is what diffusers' own fast test does with 2 x 32-wide encoders and 32) and ``pooled_projection_dim`` =
  128. ``caption_projection_dim`` (the ``context_embedder``'s output) must equal the transformer's inner width
  ``num_attention_heads * attention_head_dim``: the text and image tokens meet in one attention.
- ``max_sequence_length``: without T5 the extra tokens are all identical zeros (the ``context_embedder``'s bias
  after projection), so the model sees them as one key weighted by their count. This script trains with
  ``max_sequence_length=0`` (the pipeline accepts it: an empty T5 part; 16 caption tokens, 64 or 16 image tokens)
  and the pipeline must then be called with ``max_sequence_length=0`` too; the record measures what the default
  256 costs per training step and what it does to the samples of a model trained without them.
- the transformer: ``SD3Transformer2DModel(sample_size=8, in_channels=4, out_channels=4, patch_size=1 or 2,
  pos_embed_max_size=8 / patch_size)``: ``pos_embed_max_size`` is a saved buffer of max_size^2 x width (the
  default 96 would add 9,216 x width numbers to the file: 2.4 MB in fp16 at width 128).
- the scheduler: ``FlowMatchEulerDiscreteScheduler(shift=...)``; training uses the same table.

The training step, written out as diffusers' ``train_dreambooth_sd3.py`` does it: u from
``compute_density_for_timestep_sampling("logit_normal", mean 0, std 1)``, the index floor(u * 1000) into the
scheduler's shifted table (sigma = shift * s / (1 + (shift - 1) * s), s = 1 - index / 1000, timestep = 1000 sigma:
checked against the table), x_t = (1 - sigma) x0 + sigma noise, target noise - x0, the transformer called with
``encoder_hidden_states`` and ``pooled_projections`` encoded by hand (asserted equal to ``pipe.encode_prompt``),
the loss the plain mean squared error (SD3's weighting for logit-normal sampling is 1). Caption dropout for
classifier-free guidance: the course's caption mix (``tiny_sd.random_caption``: 10% empty prompts), the empty
prompt encoded as the pipeline encodes its negative prompt "". The text encoder is frozen (as in SD3), so the
embeddings of the grammar's few dozen captions are computed once.

It times that step at batch 32 on one thread for three transformer sizes, saves each in float16 to measure its
file against the 60 MB budget, optionally trains one size for a few minutes, samples a grid through the reloaded
pipeline and reads wing and background colours with the course's butterfly reader. The record goes to
``benchmarks/results/``; the grid to ``build/tiny_sd3/``.

Findings (diffusers 0.42.1, transformers 5.23.0; records of 2026-12-07, one thread beside other work):

- works: the assembly above; ``encode_prompt`` = the hand-written encoding (exactly, with the negative prompt "");
  the written-out shifted table = ``FlowMatchEulerDiscreteScheduler``'s (shift 1 and 3); ``save_pretrained`` in
  float16, then, in a fresh process with ``HF_HUB_OFFLINE=1``, ``StableDiffusion3Pipeline.from_pretrained(folder,
  text_encoder_3=None, tokenizer_3=None, dtype=torch.float32)`` and a call with two captions -> (2, 3, 32, 32);
  the default height and width are 32 (the transformer's ``sample_size`` 8 times the VAE's factor 4).
- fails, and how: the VAE's null ``shift_factor`` -> "TypeError: unsupported operand type(s) for +: 'Tensor' and
  'NoneType'" at decoding; ``text_encoder_2=None`` -> "TypeError: 'NoneType' object is not callable" in
  ``encode_prompt``; a plain ``from_pretrained(folder)`` -> "ValueError: Pipeline ... expected [...,
  'text_encoder_3', ..., 'tokenizer_3', ...] but only {...} were passed" (``save_pretrained`` logs
  "text_encoder_3=None ... cannot be saved"; model_index.json holds [null, null]): pass both as None when loading
  (``course_utils.sd3.load_sd3`` does). transformers 5's ``CLIPTextModel`` holds its parts at the top level
  (``embeddings.*``), so its weights go into ``CLIPTextModelWithProjection.text_model``.
- sizes, float16 files, seconds per step at batch 32 on one thread (two timing runs on a busy machine): s (patch
  2, 4 layers, 128 wide) 2.30 M parameters, 4.6 MB, 0.10-0.17 s; m (patch 1, 4 layers, 128 wide) 2.29 M, 4.6 MB,
  0.24-0.41 s; l (patch 1, 6 layers, 192 wide) 7.76 M, 15.6 MB, 0.95 s. The VAE and the two CLIP copies add 2.4
  MB, so s or m ship in 7.0 MB of the 17.4 MB free; l (18.0 MB) does not fit. 20 CPU minutes: about 7,000-11,500
  steps of s, 2,900-4,900 of m, 1,260 of l. With pos_embed_max_size 96 m's file is 7.0 MB instead of 4.6. 256
  zero T5 tokens make m's step 4.5 times slower (1.1-1.8 s).
- smoke training of s (shift 1, lr 3e-4, 8 minutes: 3,715 steps, 0.13 s/step while training): sampled through the
  reloaded pipeline (20 Euler steps) for the 200 held-out captions of the tiny SD's card, the reader finds the
  wing colour asked for 95.5 / 97.5 / 97% and the background 99.5 / 100 / 99% at guidance 1 / 3 / 5, Frechet
  51 / 46 / 63 (the tiny SD's card, DDIM 50 steps: wings 64 / 87 / 90%, Frechet 62 / 39 / 38; drawn 39). The
  same model called with the default ``max_sequence_length`` 256: wings 40%, Frechet 323. m in the same 8
  minutes (1,475 steps, 0.33 s/step): wings 89 / 94.5 / 89.5%, backgrounds 97.5 / 98.5 / 92%, Frechet 53 / 73 /
  104; with 256 zero tokens wings 35.5%, Frechet 857. At equal CPU time s (SD3's own patch size 2) is ahead.
  s with SD3's shift 3 (8 minutes, 4,125 steps): wings 96 / 88 / 84%, backgrounds 99.5 / 100 / 98%, Frechet 49 /
  74 / 107 (256 zero tokens: wings 54.5%); shift 1 reads better at guidance 3 and 5. One seed per run and no
  spread measured: only differences of ten points or more (guidance 5, or the 256-token rows) mean much.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import diffusers
import numpy as np
import torch
import transformers
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

from course_utils import pretrained, sd3, tiny_sd
from course_utils.cli import FLOAT, INT, Parser, errors, exit_on_problems, parse
from course_utils.data import BACKGROUNDS, WING_COLOURS, butterfly_attributes
from course_utils.files import write_text_atomic
from course_utils.metrics import drawn_butterflies, train_butterfly_scorer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PICTURES = ROOT / "build" / "tiny_sd3"
SAMPLE_STEPS, GUIDANCE = 20, (1.0, 3.0, 5.0)  # the smoke training's sampler and guidance scales
BUDGET_MB, USED_MB = 60.0, 42.6  # all shipped weights; used before this model (the numbers)
LATENT_SIZE, LATENT_CHANNELS = sd3.LATENT_SIZE, sd3.LATENT_CHANNELS
# Transformer sizes: patch size, layers, heads and head width (inner width = heads x head width).
SIZES = {
    "s": dict(patch_size=2, num_layers=4, num_attention_heads=4, attention_head_dim=32),  # 16 image tokens, 128 wide
    "m": dict(patch_size=1, num_layers=4, num_attention_heads=4, attention_head_dim=32),  # 64 image tokens, 128 wide
    "l": dict(patch_size=1, num_layers=6, num_attention_heads=6, attention_head_dim=32),  # 64 image tokens, 192 wide
}


# --- The parts --------------------------------------------------------------------------------------------------


def transformer_config(size: str, text_width: int) -> dict:
    """``SD3Transformer2DModel`` settings of a size, for 4 x 8 x 8 latents and two ``text_width``-wide CLIPs."""
    return sd3.transformer_config(text_width, **SIZES[size])


assemble, clip_with_projection, flow_matching_loss = sd3.assemble, sd3.clip_with_projection, sd3.flow_matching_loss
sigmas_for = sd3.shifted_sigmas


# --- The text encoding and the training step, written out -------------------------------------------------------


@torch.no_grad()
def encode_by_hand(tokenizer, encoder, prompts: list[str], t5_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``pipe.encode_prompt`` gives for the tiny parts (``course_utils.sd3.encode_captions``), then
    ``t5_tokens`` zero tokens in the dropped T5's place."""
    tokens, pooled = sd3.encode_captions(tokenizer, encoder, prompts)
    return torch.cat([tokens, tokens.new_zeros(len(prompts), t5_tokens, tokens.shape[-1])], dim=1), pooled


# --- Checks ------------------------------------------------------------------------------------------------------


def first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]


def check_pipeline(parts: dict, size: str, shift: float, folder: Path) -> dict:
    """Assemble, call, save, reload offline in a fresh process, call again; and what fails on the way."""
    vae, tokenizer, encoder = parts["vae"], parts["tokenizer"], parts["encoder"]
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(**transformer_config(size, encoder.config.hidden_size))
    found = {}
    # 1. The VAE's saved shift_factor (null) breaks the pipeline's decoding (assemble sets 0.0: undo it).
    pipe = assemble(vae, tokenizer, encoder, transformer, shift)
    vae.register_to_config(shift_factor=None)
    try:
        pipe("a red butterfly", height=32, width=32, num_inference_steps=1, max_sequence_length=0, output_type="pt")
        found["vae_shift_factor_null"] = "works"
    except Exception as err:  # noqa: BLE001 - the record keeps what breaks
        found["vae_shift_factor_null"] = first_line(err)
    vae.register_to_config(shift_factor=0.0)
    # 2. Without a second CLIP encoder.
    try:
        bare = StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
                                        vae=vae, text_encoder=encoder, tokenizer=tokenizer, text_encoder_2=None,
                                        tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
        bare.set_progress_bar_config(disable=True)
        bare("a red butterfly", height=32, width=32, num_inference_steps=1, max_sequence_length=0, output_type="pt")
        found["text_encoder_2_none"] = "works"
    except Exception as err:  # noqa: BLE001
        found["text_encoder_2_none"] = first_line(err)
    # 3. A joint_attention_dim smaller than the two CLIPs side by side crops (F.pad with a negative width).
    narrow = SD3Transformer2DModel(**{**transformer_config(size, encoder.config.hidden_size),
                                      "joint_attention_dim": encoder.config.hidden_size})
    text, *_ = assemble(vae, tokenizer, encoder, narrow, shift).encode_prompt(
        "a red butterfly", None, None, do_classifier_free_guidance=False, max_sequence_length=0)
    found["joint_attention_dim_64_gives"] = list(text.shape)

    # 4. The hand-written encoding equals encode_prompt (with the empty negative prompt, and 5 T5 zero tokens).
    prompts = ["a red butterfly on a blue background", "an orange butterfly"]
    for t5 in (0, 5):
        text, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompts, None, None, do_classifier_free_guidance=True, max_sequence_length=t5)
        mine, mine_pooled = encode_by_hand(tokenizer, encoder, prompts, t5)
        empty, empty_pooled = encode_by_hand(tokenizer, encoder, ["", ""], t5)
        assert torch.equal(text, mine) and torch.equal(pooled, mine_pooled), "hand-written encoding = encode_prompt"
        assert torch.equal(negative, empty) and torch.equal(negative_pooled, empty_pooled), "negative = empty prompt"
    found["encode_prompt_shapes"] = dict(prompt_embeds=list(text.shape), pooled_prompt_embeds=list(pooled.shape))
    found["hand_encoding_equals_encode_prompt"] = True
    # 5. The written-out shifted table = the scheduler's, at the script's shift and at SD3's 3.0.
    for s in {shift, 3.0}:
        table = FlowMatchEulerDiscreteScheduler(shift=s)
        u = torch.rand(1000, generator=torch.Generator().manual_seed(1))
        sigma, timestep = sigmas_for(u, s)
        index = (u * 1000).long()
        assert torch.allclose(sigma, table.sigmas[index], atol=1e-6), "written-out shifted sigma = the table's"
        assert torch.allclose(timestep, table.timesteps[index], atol=1e-3), "timestep = 1000 sigma, the table's"
    found["shifted_table_checked_at"] = sorted({shift, 3.0})
    # 6. Save in float16, reload offline in a fresh process, call with a caption.
    copy.deepcopy(pipe).to(torch.float16).save_pretrained(folder, safe_serialization=True)  # shipped as float16
    index = json.loads((folder / "model_index.json").read_text())
    found["model_index_text_encoder_3"] = index.get("text_encoder_3")
    code = ("import torch, json, sys\n"
            "from diffusers import StableDiffusion3Pipeline\n"
            "from diffusers.utils import logging\n"
            "logging.disable_progress_bar()\n"
            "try:\n"
            "    StableDiffusion3Pipeline.from_pretrained(sys.argv[1])\n"
            "    plain = 'works'\n"
            "except ValueError as err:\n"
            "    plain = f'ValueError: ...{str(err)[-230:]}'\n"
            "p = StableDiffusion3Pipeline.from_pretrained(sys.argv[1], text_encoder_3=None, tokenizer_3=None,\n"
            "                                             dtype=torch.float32)\n"
            "p.set_progress_bar_config(disable=True)\n"
            "g = torch.Generator().manual_seed(0)\n"
            "x = p(['a red butterfly', 'a butterfly on a blue background'], num_inference_steps=2,\n"
            "      max_sequence_length=0, output_type='pt', generator=g).images\n"
            "y = p('a red butterfly', height=32, width=32, num_inference_steps=2, output_type='pt').images\n"
            "classes = {k: type(v).__name__ for k, v in p.components.items()}\n"
            "print(json.dumps(dict(without_passing_none=plain, classes=classes,\n"
            "      shape=list(x.shape), default_256_shape=list(y.shape), dtype=str(p.transformer.dtype))))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "DIFFUSERS_VERBOSITY": "error", "TRANSFORMERS_VERBOSITY": "error"}
    run = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=env,
                         timeout=600)
    if run.returncode:
        found["offline_reload"] = run.stderr.strip().splitlines()[-1]
    else:
        found["offline_reload"] = json.loads(run.stdout.strip().splitlines()[-1])
        assert found["offline_reload"]["shape"] == [2, 3, 32, 32], "two 32 px RGB images"
    found["offline_reload_stderr"] = run.stderr.strip()[-500:]
    found["saved_files_mb"] = {str(p.relative_to(folder)): round(p.stat().st_size / 1e6, 3)
                               for p in sorted(folder.rglob("*.safetensors"))}
    return found


# --- Timing, sizes, smoke training --------------------------------------------------------------------------------


def fp16_mb(transformer) -> float:
    """The transformer's safetensors file in float16, in MB (what shipping it would cost)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy.deepcopy(transformer).to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        return round(sum(p.stat().st_size for p in Path(tmp).rglob("*.safetensors")) / 1e6, 3)


def captioned_latents(vae, n: int, start: int = 0, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Latents of drawn butterflies ``start..start+n-1`` and a training caption for each (the course's mix)."""
    indices = range(start, start + n)
    latents = torch.cat([tiny_sd.encode_images(vae, drawn_butterflies(indices[i: i + 500]))
                         for i in range(0, n, 500)])
    rng = np.random.default_rng(seed)
    attrs = [butterfly_attributes(i) for i in indices]
    return latents, [tiny_sd.random_caption(a.wing, a.background, rng) for a in attrs]


def time_steps(transformer, latents, text, pooled, shift: float, steps: int, batch: int, t5_tokens: int = 0) -> float:
    """Seconds per optimizer step (mean over ``steps`` after one warm-up) at ``batch``."""
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    zeros = text.new_zeros(batch, t5_tokens, text.shape[-1])
    seconds = []
    for i in range(steps + 1):
        start = time.perf_counter()
        idx = torch.randint(0, len(latents), (batch,), generator=generator)
        loss = flow_matching_loss(transformer, latents[idx], torch.cat([text[idx], zeros], 1), pooled[idx], shift,
                                  generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            seconds.append(time.perf_counter() - start)
    return float(np.mean(seconds))


def main(argv: list[str] | None = None) -> dict:
    """Check the assembly, time the sizes, optionally train one; write the JSON record (and a grid)."""
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="s,m,l", help=f"transformer sizes to time, of {', '.join(SIZES)}")
    p.add_argument("--batch", type=INT, default=32, check="at least 1", help="latents per step")
    p.add_argument("--timing_steps", type=INT, default=5, check="at least 1",
                   help="timed steps per size (after one warm-up)")
    p.add_argument("--shift", type=FLOAT, default=1.0, check="a finite number above 0",
                   help="FlowMatchEulerDiscreteScheduler's shift (SD3: 3.0)")
    p.add_argument("--train_minutes", type=FLOAT, default=0.0, check="0 or more",
                   help="smoke-train --train_size this long (0: no)")
    p.add_argument("--train_size", choices=tuple(SIZES), default="m", help="the size the smoke training trains")
    p.add_argument("--num_images", type=INT, default=3000, check="at least 1",
                   help="drawn butterflies encoded for training")
    p.add_argument("--lr", type=FLOAT, default=3e-4, check="a finite number above 0",
                   help="AdamW learning rate (constant after 50 warm-up steps)")
    p.add_argument("--n", type=INT, default=200, check="at least 2",
                   help="held-out captions sampled per guidance scale")
    p.add_argument("--tag", default=None, help="a name for the record (default: from the settings)")
    p.add_argument("--seed", type=INT, default=0)
    args, problems = parse(p, argv)
    sizes = [s for s in str(args.sizes).split(",") if s]
    problems += [f"--sizes: {s!r} is not one of {', '.join(SIZES)}" for s in sizes if s not in SIZES]
    exit_on_problems(errors(problems))

    torch.set_num_threads(1)  # the machine has 2 cores and other work on them
    diffusers.utils.logging.set_verbosity_error()  # float16 casts and "text_encoder_3=None cannot be saved" (known)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    tag = args.tag or f"shift{args.shift:g}" + (f"-train-{args.train_size}-{args.train_minutes:g}min"
                                                  if args.train_minutes else "")
    load_at_start = [round(v, 2) for v in os.getloadavg()]
    sd = pretrained.load("tiny-sd-butterflies")
    vae = sd.vae.eval().requires_grad_(False)
    encoder = clip_with_projection(sd.text_encoder)
    parts = dict(vae=vae, tokenizer=sd.tokenizer, encoder=encoder)
    width = encoder.config.hidden_size

    with tempfile.TemporaryDirectory() as tmp:
        checks = check_pipeline(parts, "m", args.shift, Path(tmp) / "tiny-sd3")
    print(json.dumps(checks, indent=1))

    start = time.perf_counter()
    latents, captions = captioned_latents(vae, args.num_images, seed=args.seed)
    encode_seconds = time.perf_counter() - start
    grammar = tiny_sd.all_captions()
    table_text, table_pooled = encode_by_hand(sd.tokenizer, encoder, grammar)
    where = torch.tensor([grammar.index(c) for c in captions])
    text, pooled = table_text[where], table_pooled[where]  # the frozen encoder: one encoding per caption

    # The rest of a shipped folder: the VAE and two copies of the CLIP encoder in float16.
    with tempfile.TemporaryDirectory() as tmp:
        pipe = assemble(vae, sd.tokenizer, encoder, SD3Transformer2DModel(**transformer_config("s", width)),
                        args.shift)
        copy.deepcopy(pipe).to(torch.float16).save_pretrained(tmp, safe_serialization=True)
        files = {str(p.relative_to(tmp)): round(p.stat().st_size / 1e6, 3) for p in Path(tmp).rglob("*.safetensors")}
    other_mb = round(sum(v for k, v in files.items() if not k.startswith("transformer")), 3)

    timings = {}
    for size in sizes:
        torch.manual_seed(0)
        transformer = SD3Transformer2DModel(**transformer_config(size, width)).train()
        n = sum(p.numel() for p in transformer.parameters())
        row = dict(config=transformer_config(size, width), parameters=n,
                   image_tokens=(LATENT_SIZE // SIZES[size]["patch_size"]) ** 2, text_tokens=text.shape[1],
                   fp16_mb=fp16_mb(transformer))
        row["seconds_per_step"] = round(time_steps(transformer, latents, text, pooled, args.shift,
                                                   args.timing_steps, args.batch), 3)
        row["steps_in_20_min"] = int(20 * 60 / row["seconds_per_step"])
        row["budget_left_mb_with_vae_and_clips"] = round(BUDGET_MB - USED_MB - other_mb - row["fp16_mb"], 2)
        timings[size] = row
        print(f"{size}: {n:,} parameters, {row['fp16_mb']} MB fp16, {row['seconds_per_step']} s/step at batch "
              f"{args.batch} (1 thread), {row['steps_in_20_min']} steps in 20 min", flush=True)
    # The saved pos_embed buffer at diffusers' default pos_embed_max_size (96) instead of the latent grid's 8.
    default_pos = SD3Transformer2DModel(**{**transformer_config("m", width), "pos_embed_max_size": 96})
    m_default_pos_mb = fp16_mb(default_pos)
    print(f"m with pos_embed_max_size 96: {m_default_pos_mb} MB fp16", flush=True)
    # What the pipeline's default 256 zero T5 tokens would cost per training step (size m).
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(**transformer_config("m", width)).train()
    t5_256 = round(time_steps(transformer, latents, text, pooled, args.shift, max(2, args.timing_steps // 2),
                              args.batch, t5_tokens=256), 3)
    print(f"m with 256 zero T5 tokens: {t5_256} s/step", flush=True)

    training = train_and_sample(args, parts, latents, text, pooled, captions) if args.train_minutes else None
    result = dict(
        tag=tag, date=str(date.today()), device=f"CPU (1 thread, {platform.machine()})",
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread used",
        threads=torch.get_num_threads(), torch=torch.__version__, diffusers=diffusers.__version__,
        transformers=transformers.__version__,
        load_average=dict(start=load_at_start, end=[round(v, 2) for v in os.getloadavg()]),
        recipe=dict(vae="tiny-sd-butterflies (shift_factor set to 0.0)", latents=f"{LATENT_CHANNELS}x{LATENT_SIZE}"
                    f"x{LATENT_SIZE} (tiny_sd.encode_images: the mean times scaling_factor)",
                    text="tiny-sd-butterflies' CLIPTextModel in a CLIPTextModelWithProjection (identity projection),"
                    " frozen, as text_encoder and text_encoder_2; tokenizer as tokenizer and tokenizer_2; no T5",
                    max_sequence_length=0, shift=args.shift, timesteps="logit-normal (0, 1), index into the "
                    "shifted 1000-entry table", loss="MSE to noise - x0, weight 1",
                    captions="tiny_sd.random_caption (10% empty prompts: the CFG dropout)", batch=args.batch,
                    num_images=args.num_images, encode_seconds=round(encode_seconds, 1)),
        checks=checks, sizes=timings, m_seconds_per_step_with_256_t5_zero_tokens=t5_256,
        m_fp16_mb_with_pos_embed_max_size_96=m_default_pos_mb,
        shipped_other_parts_fp16_mb=other_mb, shipped_other_files_mb=files, budget_mb=BUDGET_MB, used_mb=USED_MB,
        free_mb=round(BUDGET_MB - USED_MB, 2), training=training)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"tiny_sd3-{tag}-{date.today()}.json"
    write_text_atomic(out, json.dumps(result, indent=1, default=str))
    print(f"the rest of a shipped folder (VAE, 2 x CLIP) in fp16: {other_mb} MB; free in the budget: "
          f"{BUDGET_MB - USED_MB:.1f} MB")
    print("wrote", out)
    return result


def train_and_sample(args, parts: dict, latents, text, pooled, captions) -> dict:
    """Train ``--train_size`` for ``--train_minutes``; sample a grid through the saved, reloaded pipeline; read it."""
    width = parts["encoder"].config.hidden_size
    torch.manual_seed(args.seed)
    transformer = SD3Transformer2DModel(**transformer_config(args.train_size, width)).train()
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 50))
    generator = torch.Generator().manual_seed(args.seed)
    losses, window, step, trained = [], [], 0, 0.0
    print(f"smoke training {args.train_size} for {args.train_minutes} min at batch {args.batch}", flush=True)
    while trained < args.train_minutes * 60:
        start = time.perf_counter()
        idx = torch.randint(0, len(latents), (args.batch,), generator=generator)
        loss = flow_matching_loss(transformer, latents[idx], text[idx], pooled[idx], args.shift, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        trained += time.perf_counter() - start
        step += 1
        window.append(loss.item())
        if step % 25 == 0:
            losses.append([step, round(float(np.mean(window)), 5)])
            window = []
            print(f"step {step}: loss {losses[-1][1]:.4f} ({trained:.0f} s)", flush=True)
    transformer.eval()

    # The tiny SD card's test: 200 held-out drawings' full captions, one sample each, read by the butterfly reader.
    _, attrs = tiny_sd.held_out_drawings(args.n)
    asked = [(a.wing, a.background) for a in attrs]
    backgrounds = list(BACKGROUNDS)
    grid_pairs = [(w, backgrounds[i % len(backgrounds)]) for i, w in enumerate(WING_COLOURS)]
    reader = train_butterfly_scorer()
    reads, grids = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        pipe = assemble(parts["vae"], parts["tokenizer"], parts["encoder"], transformer, args.shift)
        pipe.save_pretrained(tmp, safe_serialization=True)
        pipe = StableDiffusion3Pipeline.from_pretrained(tmp, text_encoder_3=None, tokenizer_3=None, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)

        def draw(prompts: list[str], guidance: float, t5_tokens: int = 0) -> torch.Tensor:
            g = torch.Generator().manual_seed(0)
            return torch.cat([pipe(prompts[i: i + 50], num_inference_steps=SAMPLE_STEPS, guidance_scale=guidance,
                                   max_sequence_length=t5_tokens, generator=g, output_type="pt").images
                              for i in range(0, len(prompts), 50)])

        start = time.perf_counter()
        for guidance in GUIDANCE:
            images = draw([tiny_sd.caption(w, b) for w, b in asked], guidance)
            wings, read_backgrounds = reader.wing_colours(images), reader.background_colours(images)
            reads[f"guidance {guidance:g}"] = dict(
                wing_as_captioned=round(float(np.mean([w == a[0] for w, a in zip(wings, asked, strict=True)])), 3),
                background_as_captioned=round(float(np.mean(
                    [b == a[1] for b, a in zip(read_backgrounds, asked, strict=True)])), 3),
                **{k: round(v, 3) for k, v in reader.score(images).items()})
            grids[guidance] = draw([tiny_sd.caption(w, b) for w, b in grid_pairs for _ in range(8)], guidance)
        sample_seconds = time.perf_counter() - start
        # The same 200 captions with the pipeline's default 256 zero T5 tokens (the model saw none in training).
        images = draw([tiny_sd.caption(w, b) for w, b in asked], GUIDANCE[-1], t5_tokens=256)
        wings = reader.wing_colours(images)
        reads[f"guidance {GUIDANCE[-1]:g}, max_sequence_length 256"] = dict(
            wing_as_captioned=round(float(np.mean([w == a[0] for w, a in zip(wings, asked, strict=True)])), 3),
            **{k: round(v, 3) for k, v in reader.score(images).items()})
    picture(grids, [tiny_sd.caption(w, b) for w, b in grid_pairs], args)
    print(json.dumps(reads, indent=1))
    return dict(size=args.train_size, steps=step, train_seconds=round(trained, 1),
                seconds_per_step=round(trained / step, 3), lr=args.lr, warmup_steps=50, losses=losses,
                sampler=f"the saved and reloaded pipeline, FlowMatchEulerDiscreteScheduler {SAMPLE_STEPS} steps, "
                f"seed 0, max_sequence_length 0", n=args.n,
                prompts=f"the full captions of tiny_sd.held_out_drawings({args.n}), one sample each",
                sample_seconds_all_guidances=round(sample_seconds, 1), reads=reads,
                tiny_sd_butterflies_card="wing/background as captioned 0.635/0.765 at guidance 1, 0.865/0.96 at 3, "
                "0.895/0.975 at 5, Frechet 62.0/39.1/38.1 (DDIM 50 steps, 200 held-out captions; drawn: 39.2)")


def picture(sampled: dict, prompts: list[str], args) -> None:
    """A grid: one row per (guidance, prompt), 8 samples each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PICTURES.mkdir(parents=True, exist_ok=True)
    sampled = {g: images.view(len(prompts), -1, *images.shape[1:]) for g, images in sampled.items()}
    rows = [(g, i) for g in sampled for i in range(len(prompts))]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.2 * len(rows)))
    for ax, (g, i) in zip(axes, rows, strict=True):
        ax.imshow(torch.cat(list(sampled[g][i]), dim=2).permute(1, 2, 0).numpy())
        ax.set_title(f"guidance {g:g}: {prompts[i]}", fontsize=7, loc="left")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(PICTURES / f"samples-{args.train_size}-{args.train_minutes:g}min-shift{args.shift:g}.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
