"""How long does each chapter's ``full`` profile take on a free Colab T4, an A100 or an H100? An estimate from FLOPs.

    python benchmarks/full_profile_cost.py              # the table, and a record in benchmarks/results/
    python benchmarks/full_profile_cost.py --profile cpu   # the same count for the cpu profile, against its timings

No GPU is needed and no chapter runs. Each chapter's work is written down from its settings in
``course_utils/config.py`` (``SETTINGS[chapter][profile]``), as its cells use them: every model it trains (images
seen), every model it samples (U-Net calls and the images in each). The forward FLOPs of each model on one image are
counted by ``torch.utils.flop_counter.FlopCounterMode`` (on the meta device, so Stable Diffusion 1.5 costs no
memory); training an image costs three forwards (the backward is about twice the forward).

Minutes on a device = FLOPs / (peak x utilisation) + U-Net calls x a launch overhead, where

- peak is the device's peak in the precision the chapter computes in: fp32 for most chapters (a T4 has no TF32, so
  8.1 TFLOP/s; an A100's and an H100's convolutions use TF32 by default: 156 and 495), fp16 where the chapter uses
  mixed precision or half weights (chapter 5's script, chapter 8's Stable Diffusion 1.5: 65 / 312 / 989);
- utilisation is the share of peak the course's small U-Nets reach. Measured once: chapter 3's published model on
  an H100 trained at 7,085 images/s x 9.83 GFLOP = 7.0 % of its bf16 peak (``train_speed`` record, compiled, batch
  512). The same 7 % is assumed for every tensor-core precision (fp16, bf16, TF32) on every GPU; plain fp32 on a
  T4's CUDA cores is assumed to reach 25 % (an assumption, not a measurement: no T4 is reachable from here);
- the launch overhead is 4 ms per U-Net call and 12 ms per training step (forward, backward, optimizer: about 200
  small kernels each): small models at small batches are latency-bound on any GPU.

The same count for the ``cpu`` profile, divided by the CPU's measured rate (``train_speed``'s cpu record: images/s x
GFLOP per image), is held against the chapters' measured ``cpu`` times (``timings-cpu.json``): where they agree
within a factor of about two, the count covers what the chapter does. Data loading, scoring, plotting and the
readers' training are not counted (seconds). Only the ``full`` profile's online parts that load Hub models are
counted with their published layouts (Stable Diffusion 1.5, the book's audio pipeline).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from course_utils.cli import Parser, errors, exit_on_problems, parse
from course_utils.config import SETTINGS
from course_utils.data import WING_COLOURS
from course_utils.diffusion import default_unet, make_unet
from course_utils.files import write_text_atomic

RESULTS = Path(__file__).resolve().parent / "results"
MNIST = 60_000  # online: MNIST's train split (the full profile)
DIGITS = 1_438  # offline: the bundled digits' train split (what the cpu profile trains on here)

# Peak dense TFLOP/s: (fp32 as the chapters run it, fp16 tensor cores)
DEVICES = {"T4": (8.1, 65.0), "A100": (156.0, 312.0), "H100": (495.0, 989.0)}
TENSOR_UTILISATION = 0.07  # measured: train_speed on the H100 (7.0 % of bf16 peak)
CUDA_CORE_UTILISATION = 0.25  # assumed: a T4's fp32 has no tensor cores
CALL_SECONDS, STEP_SECONDS = 0.004, 0.012


@dataclass
class Work:
    """One model's part in a chapter: images trained on, U-Net calls made when sampling (and images per call)."""

    model: str
    trained: int = 0  # images seen in training (each: one forward and one backward)
    steps: int = 0  # optimizer steps
    calls: int = 0  # sampling calls of the model
    per_call: int = 0  # images in each call
    grad: bool = False  # sampling with a gradient through the model (loss guidance): three forwards a call
    half: bool = False  # mixed precision or half weights: fp16 tensor cores


@dataclass
class Chapter:
    name: str
    work: list[Work] = field(default_factory=list)
    seconds: float = 0.0  # training for a wall-clock budget (chapter 13's race): the same seconds on any device


# ---- The models, each as (module, its inputs for one image) built on the meta device -------------------------


def _basic_unet() -> tuple[nn.Module, tuple]:
    """Chapter 1's BasicUNet: its six 5x5 convolutions at their resolutions (the rest is pooling and adds)."""
    shapes = [(1, 32, 28), (32, 64, 14), (64, 64, 7), (64, 64, 7), (64, 32, 14), (32, 1, 28)]

    class Convs(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(i, o, 5, padding=2) for i, o, _ in shapes)

        def forward(self, _):
            return [conv(torch.zeros(1, i, s, s)) for conv, (i, _, s) in zip(self.convs, shapes, strict=True)]

    return Convs(), (torch.zeros(1),)


def _unet(size: int, channels, layers: int, attention: int, in_channels: int = 1, classes: int | None = None,
          plain: bool = False):
    def build():
        if plain:  # chapters 2 and 12 write their own UNet2DModel: no attention, one layer per block
            from diffusers import UNet2DModel

            model = UNet2DModel(sample_size=size, in_channels=in_channels, out_channels=in_channels,
                                layers_per_block=1, block_out_channels=channels, norm_num_groups=8,
                                down_block_types=("DownBlock2D",) * len(channels),
                                up_block_types=("UpBlock2D",) * len(channels))
        else:
            model = make_unet(size, channels, layers, attention, in_channels, num_class_embeds=classes)
        args = (torch.zeros(1, in_channels, size, size), torch.tensor([10]))
        return model, args + ((torch.tensor([1]),) if classes else ())

    return build


def _dit():
    def build():
        from course_utils.diffusion import ClassDiT

        return ClassDiT(28, patch_size=2), (torch.zeros(1, 1, 28, 28), torch.tensor([10.0]), torch.tensor([1]))

    return build


def _sd3_transformer():
    def build():
        from diffusers import SD3Transformer2DModel

        from course_utils import sd3

        model = SD3Transformer2DModel(**sd3.transformer_config(64))  # tiny-sd-butterflies' 64-wide CLIP, twice
        return model, (torch.zeros(1, 4, 8, 8), torch.zeros(1, 16, 128), torch.zeros(1, 128), torch.tensor([10.0]))

    return build


def _shipped(name: str):
    def build():
        from course_utils.pretrained import path

        folder = path(name) / "unet"
        from diffusers import UNet2DConditionModel, UNet2DModel

        config = json.loads((folder / "config.json").read_text())
        cls = UNet2DConditionModel if "cross_attention_dim" in config else UNet2DModel
        model = cls.from_config(config)
        size = config["sample_size"] if isinstance(config["sample_size"], int) else config["sample_size"][0]
        x = (torch.zeros(1, config["in_channels"], size, size), torch.tensor([10]))
        if cls is UNet2DConditionModel:
            return model, x + (torch.zeros(1, 16, config["cross_attention_dim"]),)
        return model, x + ((torch.tensor([1]),) if config.get("num_class_embeds") else ())

    return build


def _tiny_sd_part(part: str):
    def build():
        from course_utils import tiny_sd

        if part == "vae":
            from diffusers import AutoencoderKL

            class Both(nn.Module):  # an encode and a decode: what training and the round trips cost per image
                def __init__(self):
                    super().__init__()
                    self.vae = AutoencoderKL(**tiny_sd.vae_config(32))

                def forward(self, x):
                    return self.vae.decode(self.vae.encode(x).latent_dist.mean).sample

            return Both(), (torch.zeros(1, 3, 32, 32),)
        from diffusers import ControlNetModel, UNet2DConditionModel

        unet = UNet2DConditionModel(**tiny_sd.unet_config(8))
        args = (torch.zeros(1, 4, 8, 8), torch.tensor([10]), torch.zeros(1, 16, 64))
        if part == "controlnet":  # a ControlNet call runs the ControlNet and the U-Net
            control = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))  # as shipped

            class Pair(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.unet, self.control = unet, control

                def forward(self, x, t, text):
                    down, mid = self.control(x, t, encoder_hidden_states=text, controlnet_cond=torch.zeros(
                        1, 3, 32, 32), return_dict=False)
                    return self.unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                                     mid_block_additional_residual=mid).sample

            return Pair(), args
        return unet, args

    return build


def _sd15():
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    return model, (torch.zeros(1, 4, 64, 64), torch.tensor([10]), torch.zeros(1, 77, 768))


def _audio_256():
    """The book's audio pipeline: diffusers' train_unconditional layout at 256x256, one channel."""
    from diffusers import UNet2DModel

    model = UNet2DModel(sample_size=256, in_channels=1, out_channels=1, layers_per_block=2,
                        block_out_channels=(128, 128, 256, 256, 512, 512),
                        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4)
    return model, (torch.zeros(1, 1, 256, 256), torch.tensor([10]))


def _published():
    return default_unet(32)[0], (torch.zeros(1, 3, 32, 32), torch.tensor([10]))


def _model_builders(s: dict[str, dict]) -> dict[str, Callable[[], tuple[nn.Module, tuple]]]:
    """Every model the chapters train or sample, for the settings ``s`` (one profile, every chapter)."""
    ch3, ch5 = s["ch3"], s["ch5"]
    builders = {
        "BasicUNet": _basic_unet,
        "ch1 UNet2DModel": _unet(28, (32, 64, 64), 2, 2),
        "ch2 U-Net": _unet(28, s["ch2"]["channels"], 1, 0, plain=True),
        "ch3 U-Net": _unet(32, ch3["channels"], ch3["layers_per_block"], ch3["attention"], 3),
        "ch5 U-Net": (_published if ch5["channels"] is None
                      else _unet(ch5["resolution"], ch5["channels"], 1, ch5["attention"], 3)),
        "ch7 conditional U-Net": _unet(28, s["ch7"]["cond_channels"], 1, 0, classes=11),
        "ch10 U-Net": _unet(32, s["ch10"]["channels"], 1, s["ch10"]["attention"]),
        "ch12 U-Net": _unet(28, s["ch12"]["channels"], 1, 0, plain=True),
        "tiny-sd VAE": _tiny_sd_part("vae"),
        "tiny-sd U-Net": _tiny_sd_part("unet"),
        "tiny-sd ControlNet + U-Net": _tiny_sd_part("controlnet"),
        "ch13 DiT": _dit(),
        "ch13 U-Net": _unet(28, (32, 48, 64), 2, 1, classes=11),
        "tiny-sd3 transformer": _sd3_transformer(),
        "Stable Diffusion 1.5 U-Net": _sd15,
        "audio-diffusion 256 U-Net": _audio_256,
    }
    for name in ("digits-28", "digits-28-conditional", "digits-28-flow", "digits-28-reflow", "digits-28-lcm",
                 "butterflies-32", "audio-arpeggios-32"):
        builders[name] = _shipped(name)
    return builders


def forward_gflop(build: Callable[[], tuple[nn.Module, tuple]]) -> float:
    """GFLOP of one forward on one image, counted on the meta device."""
    with torch.device("meta"):
        model, args = build()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(*args)
    return counter.get_total_flops() / 1e9


# ---- The chapters' work, from their settings --------------------------------------------------------------------


def chapters(s: dict[str, dict], online: bool) -> list[Chapter]:
    """Each chapter's work in the profile whose settings are ``s`` (``online``: MNIST and the Hub models)."""
    digits = MNIST if online else DIGITS
    out = [Chapter("00_setup_and_data")]

    c = s["ch1"]
    n = min(c["max_train"] or digits, digits)
    per_model = (c["n_grid"] + c["n_score"]) * c["sample_steps"]  # one call per step, every image in the call
    out.append(Chapter("01_diffusion_from_scratch", [
        Work("BasicUNet", n * c["basic_epochs"], -(-n // c["batch_size"]) * c["basic_epochs"], c["sample_steps"] * 2,
             per_model // (c["sample_steps"] * 2)),
        Work("ch1 UNet2DModel", n * c["unet_epochs"], -(-n // c["batch_size"]) * c["unet_epochs"],
             c["sample_steps"] * 2, per_model // (c["sample_steps"] * 2))]))

    c = s["ch2"]
    n = min(c["max_train"] or digits, digits)
    out.append(Chapter("02_noise_schedule", [  # three targets, each trained and sampled
        Work("ch2 U-Net", 3 * n * c["epochs"], 3 * -(-n // c["batch_size"]) * c["epochs"], 3 * c["sample_steps"],
             c["n_score"]),
        Work("digits-28", calls=c["shipped_steps"], per_call=c["n_score"])]))

    c = s["ch3"]
    out.append(Chapter("03_training_butterflies", [  # the loop, the pipeline and the loop by hand, then DDIM beside
        Work("ch3 U-Net", c["n_images"] * (c["epochs"] + 1), -(-c["n_images"] // c["batch_size"]) * (c["epochs"] + 1),
             2 * c["sample_steps"] + c["compare_steps"], c["n_samples"]),
        Work("butterflies-32", calls=c["compare_steps"], per_call=c["n_samples"])]))

    c = s["ch4"]
    out.append(Chapter("04_pipelines_save_load_share", [  # two seeds, the loop by hand, the reload: DDPM; then DDIM
        Work("ch3 U-Net", calls=4 * c["ddpm_steps"] + c["ddim_steps"], per_call=c["n_images"])]))

    c = s["ch5"]
    epochs = -(-c["max_train_steps"] * c["batch_size"] // c["n_images"])
    grids = epochs // c["save_images_epochs"] + 1
    out.append(Chapter("05_scaling_up_accelerate", [
        Work("ch5 U-Net", c["max_train_steps"] * c["batch_size"], c["max_train_steps"],
             (grids + 1) * c["inference_steps"], c["eval_batch_size"],
             half="--mixed_precision" in c["extra"])]))

    c = s["ch6"]
    sampler_calls = sum(steps for _, steps in c["samplers"])
    checkpoints = max(c["ft_checkpoints"])
    runs = 3  # full fine-tuning, the few-image run, LoRA; the script adds its own steps
    out.append(Chapter("06_faster_sampling_and_fine_tuning", [
        Work("digits-28", calls=sampler_calls + 3 * c["eta_steps"], per_call=c["n_score"]),
        Work("butterflies-32", trained=(runs * checkpoints + c["script_steps"]) * c["ft_batch"],
             steps=runs * checkpoints + c["script_steps"],
             calls=(runs * len(c["ft_checkpoints"]) + 2) * c["sample_steps"], per_call=c["n_measure"])]))

    c = s["ch7"]
    cond_train = min(c["cond_max_train"] or DIGITS, DIGITS)  # digits_28: the bundled digits in every profile
    out.append(Chapter("07_guidance_and_conditioning", [
        Work("butterflies-32", calls=len(c["colour_scales"]) * c["guided_steps"], per_call=c["n_guided"], grad=True),
        Work("digits-28", calls=len(c["digit_scales"]) * c["guided_steps"], per_call=c["n_guided"], grad=True),
        Work("ch7 conditional U-Net", cond_train * c["cond_epochs"], -(-cond_train // 64) * c["cond_epochs"],
             len(c["cfg_scales"]) * c["cfg_steps"], 2 * 10 * c["per_digit"])]))  # CFG: two predictions a call

    c = s["ch8"]
    colours, script = len(WING_COLOURS), c["script"]
    edits = sum(max(1, round(st * c["steps"])) for st in c["strengths"]) + c["steps"]  # img2img sweep, inpainting
    work = [Work("tiny-sd VAE", trained=script["vae_steps"] * script["batch"], steps=script["vae_steps"],
                 calls=2, per_call=c["n_recon"] + c["n_edit"]),
            Work("tiny-sd U-Net", trained=script["max_train_steps"] * script["batch"], steps=script["max_train_steps"],
                 calls=(len(c["scales"]) + 1) * c["steps"] + edits,
                 per_call=2 * max(colours * c["per_colour"], c["n_edit"]))]
    if c["real_model"] and online:  # a few images from Stable Diffusion 1.5 and the DreamBooth model, fp16
        work.append(Work("Stable Diffusion 1.5 U-Net", calls=2 * 50, per_call=2 * 4, half=True))
    out.append(Chapter("08_stable_diffusion_from_its_parts", work))

    c = s["ch9"]
    round_trips = 2 * sum(c["steps_list"])  # invert, then regenerate, at each step count
    drift = 2 * len(c["scales"]) * c["edit_steps"] * 2  # guided: two predictions a call
    out.append(Chapter("09_ddim_inversion", [
        Work("tiny-sd U-Net", calls=round_trips + drift + 2 * c["edit_steps"] * 2, per_call=c["n_images"])]))

    c = s["ch10"]
    work = [Work("ch10 U-Net", c["n_clips"] * c["epochs"], -(-c["n_clips"] // c["batch_size"]) * c["epochs"],
                 c["sample_steps"], c["n_score"]),
            Work("audio-arpeggios-32", trained=c["ft_clips"] * c["ft_epochs"],
                 steps=-(-c["ft_clips"] // c["batch_size"]) * c["ft_epochs"], calls=2 * c["sample_steps"],
                 per_call=c["n_score"])]
    if c["online"] and online:
        work.append(Work("audio-diffusion 256 U-Net", calls=1000, per_call=1))
    out.append(Chapter("10_audio_diffusion", work))

    c = s["ch11"]
    out.append(Chapter("11_controlnet_and_depth2img", [  # both designs: trained briefly, then measured
        Work("tiny-sd ControlNet + U-Net", c["train_steps"] * c["batch_size"], c["train_steps"],
             (len(c["scales"]) + 1) * c["steps"], 2 * c["n_eval"]),
        Work("tiny-sd U-Net", c["train_steps"] * c["batch_size"], c["train_steps"], 2 * c["steps"], 2 * c["n_eval"])]))

    c = s["ch12"]
    n = min(c["max_train"] or digits, digits)
    per_curve = sum(c["steps_list"])
    out.append(Chapter("12_flow_matching", [  # flow matching and DDPM on the same U-Net; then the shipped models
        Work("ch12 U-Net", 2 * n * c["epochs"], 2 * -(-n // c["batch_size"]) * c["epochs"], 3 * per_curve,
             c["n_score"]),
        *[Work(name, calls=sum(c["shipped_steps"]) * (2 if name == "digits-28" else 1), per_call=c["shipped_n"])
          for name in ("digits-28", "digits-28-flow", "digits-28-reflow")]]))

    c = s["ch13"]
    guided = sum(2 if g != 1 else 1 for g in c["guidance"]) * c["sample_steps"]  # calls; a guided call is 2 images
    shipped = (sum(2 for _ in c["scales"]) + 2) * c["eval_steps"]  # each scale guided, plus the default-256 row
    out.append(Chapter("13_diffusion_transformers", [  # the race runs for seconds; then samples, the script, readers
        Work("ch13 DiT", calls=guided, per_call=c["n_score"]), Work("ch13 U-Net", calls=guided, per_call=c["n_score"]),
        Work("tiny-sd3 transformer", trained=c["script_steps"] * 32, steps=c["script_steps"],
             calls=shipped + 4 * c["eval_steps"], per_call=c["n_eval"]),
        Work("tiny-sd U-Net", calls=2 * len(c["scales"]) * c["eval_steps"], per_call=c["n_eval"])],
        seconds=2 * c["race_seconds"]))

    c = s["ch14"]
    steps = c["distil_steps"] + 4  # the learner's run, and two steps each of the hand loop and the helper (checked)
    out.append(Chapter("14_consistency_distillation", [  # the student trains; the teacher and the target only look
        Work("digits-28", trained=steps * c["batch_size"], steps=steps, calls=2 * steps, per_call=c["batch_size"]),
        Work("digits-28", calls=1 + 2 + 50 + 2 * sum(c["steps_list"]), per_call=max(c["n_show"], c["n_score"])),
        Work("digits-28-lcm", calls=2 + 1 + 2 + 4 + 8, per_call=c["n_show"])]))
    return out


# ---- Turning work into minutes ----------------------------------------------------------------------------------


def seconds_on(device: str, gflop_fp32: float, gflop_half: float, calls: int, steps: int) -> float:
    """Seconds on ``device``: FLOPs at the peak of their precision times its utilisation, plus launch overheads."""
    fp32, half = DEVICES[device]
    fp32_rate = fp32 * (CUDA_CORE_UTILISATION if device == "T4" else TENSOR_UTILISATION)
    return (gflop_fp32 / (fp32_rate * 1e3) + gflop_half / (half * TENSOR_UTILISATION * 1e3)
            + calls * CALL_SECONDS + steps * STEP_SECONDS)


def cost(profile: str) -> dict:
    """Every chapter's counted GFLOP and calls for ``profile``, with minutes on each device."""
    settings = {ch: values[profile] for ch, values in SETTINGS.items()}
    builders = _model_builders(settings)
    flops: dict[str, float] = {}
    rows = {}
    for chapter in chapters(settings, online=profile == "full"):
        fp32 = half = 0.0
        calls = steps = 0
        for w in chapter.work:
            if w.model not in flops:
                try:
                    flops[w.model] = forward_gflop(builders[w.model])
                except RuntimeError as err:
                    raise RuntimeError(f"counting {w.model}'s FLOPs failed: {err}") from err
            g = flops[w.model] * (3 * w.trained + (3 if w.grad else 1) * w.calls * w.per_call)
            fp32, half = (fp32, half + g) if w.half else (fp32 + g, half)
            calls, steps = calls + w.calls, steps + w.steps
        rows[chapter.name] = dict(gflop=round(fp32 + half, 1), gflop_fp16=round(half, 1), calls=calls, steps=steps,
                                  minutes={d: round((seconds_on(d, fp32, half, calls, steps) + chapter.seconds) / 60,
                                                          2) for d in DEVICES})
    return dict(models_gflop_per_image={k: round(v, 4) for k, v in flops.items()}, chapters=rows)


def cpu_check(rows: dict) -> dict:
    """The cpu profile's count at the CPU's measured rate, against the chapters' measured cpu seconds."""
    speed = json.loads(next(iter(sorted(RESULTS.glob("train_speed-cpu-cpu-*published*.json")))).read_text())
    rate = speed["results"]["published"]["images_per_s"] * speed["gflop_per_image"]  # GFLOP/s, training
    timings = json.loads((RESULTS / "timings-cpu.json").read_text())["notebooks"]
    return {"cpu_gflop_per_s": round(rate, 1), "chapters": {
        name: dict(predicted_s=round(row["gflop"] / rate, 1),
                   measured_s=timings.get(f"{name}.ipynb", {}).get("seconds")) for name, row in rows.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=("full", "cpu"), default="full", help="whose settings to count")
    args, problems = parse(parser, argv)
    exit_on_problems(errors(problems))
    result = cost(args.profile)
    record = dict(date=date.today().isoformat(), machine=f"{platform.machine()}, Python {platform.python_version()}",
                  profile=args.profile, torch=torch.__version__, assumptions=dict(
                      peak_tflops=DEVICES, tensor_core_utilisation=TENSOR_UTILISATION,
                      t4_fp32_utilisation=CUDA_CORE_UTILISATION, seconds_per_call=CALL_SECONDS,
                      seconds_per_training_step=STEP_SECONDS), **result)
    if args.profile == "cpu":
        record["cpu_check"] = cpu_check(result["chapters"])
    print(f"| chapter | GFLOP | U-Net calls | {' | '.join(f'{d} min' for d in DEVICES)} |")
    print("|---|---:|---:|" + "---:|" * len(DEVICES))
    for name, row in result["chapters"].items():
        print(f"| {name} | {row['gflop']:,.0f} | {row['calls']:,} | "
              + " | ".join(f"{row['minutes'][d]:.1f}" for d in DEVICES) + " |")
    if args.profile == "cpu":
        check = record["cpu_check"]
        print(f"\ncpu at {check['cpu_gflop_per_s']} GFLOP/s (train_speed): predicted vs measured seconds")
        for name, row in check["chapters"].items():
            print(f"  {name}: {row['predicted_s']} vs {row['measured_s']}")
    out = RESULTS / f"full_profile_cost-{args.profile}-{record['date']}.json"
    write_text_atomic(out, json.dumps(record, indent=2) + "\n")
    print(f"\nwritten to {out.relative_to(RESULTS.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
