"""Train an unconditional DDPM on your images: one CPU, one GPU or many, through Accelerate (chapter 5).

    python -m course_utils.train_unconditional --train_data_dir my_images --resolution 32 --output_dir my-ddpm
    accelerate launch -m course_utils.train_unconditional --train_data_dir my_images ...
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m course_utils.train_unconditional ...

(The last line runs two CPU processes. ``accelerate launch --cpu --num_processes 2`` starts only one
process with accelerate 1.15 unless MPI is set up: its ``--cpu`` path spawns several only through mpirun.)

The flags are those of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``, with
the same names and defaults, two of them widened: ``--prediction_type`` also takes ``v_prediction`` (and ``flow``,
below), and ``--ddpm_beta_schedule`` takes the schedules ``DDPMScheduler`` implements (the example's ``cosine``
is not one; ``squaredcos_cap_v2`` is the cosine schedule). The course adds ``--seed``, ``--max_train_steps``,
``--skip_bad_images``, ``--data_on_device`` (the fast path, on by default on CUDA) and ``--class_conditional``
/ ``--class_drop_prob`` (a class-conditioned UNet for classifier-free guidance, labels from the image folder's
sub-folder names), and ``--pretrained_model_name_or_path`` from diffusers' other training scripts (fine-tune a
pipeline's UNet with its noise schedule), and ``--prediction_type flow`` (chapter 12: flow matching instead of
DDPM, a ``FlowMatchEulerDiscreteScheduler`` saved; ``--weighting_scheme`` / ``--logit_mean`` / ``--logit_std`` /
``--mode_scale`` draw t as diffusers' SD3 scripts do, ``--flow_shift`` sets the scheduler's shift), and
``--reflow_pairs`` (reflow: fine-tune a flow pipeline on pairs of noise and its own samples). The image
mode follows the UNet: a config with ``in_channels: 1`` trains on grayscale images, 3 on RGB. The script reads
top to bottom: configuration, data, model, loop, checkpoint, save.

Checks first: ``train_checks.unconditional`` looks at every flag (``build_parser`` below: each flag's type, choices
and range, ``check=``) before any data is read or model built — combinations, the model's config against the
resolution, the output folder, a checkpoint to resume, and with ``--push_to_hub`` the token and the Hub — and the
script stops with one ``error:`` line per problem (all of them, exit code 2), so a mistake costs seconds, not a
training run. A checkpoint of another model stops ``resume`` with one line naming it.
``--snr_gamma`` (as in diffusers' ``train_text_to_image.py``) weights the loss by min-SNR.

Reliability: ``--checkpointing_steps`` saves the full training state (model, EMA, optimizer, LR schedule,
random states, step) into ``checkpoint-<step>`` folders that appear whole or not at all;
``--resume_from_checkpoint latest`` continues from the newest one. Pipelines are written to a temporary
folder and renamed into place, so a crash never leaves a half-written one (``course_utils.runs``, shared with
the text-to-image script); ``training_log.json`` holds the losses, the time, the flags and the machine.
"""


from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMPipeline, DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_density_for_timestep_sampling
from torchvision import transforms
from tqdm.auto import tqdm

from . import train_checks
from .cli import FLOAT, INT, LR_SCHEDULERS, MIXED_PRECISION, Parser, exit_on_problems
from .data import DeviceBatches, unpack
from .diffusion import default_unet, diffusion_loss, is_flow
from .files import atomic_file, write_text_atomic
from .imagefolder import BadImagesError, to_rgb
from .runs import TrainingLog, load_checkpoint, resume_path, save_checkpoint, save_pipeline_into
from .sampling import sample_ddpm, sample_grid

# ---- Configuration: the flags and their ranges (the rest: ``train_checks.unconditional``) ------------------

# Flags whose value is one of a list.
CHOICES = {
    "lr_scheduler": LR_SCHEDULERS,
    "logger": ("tensorboard", "wandb"),
    "mixed_precision": MIXED_PRECISION,
    "prediction_type": ("epsilon", "sample", "v_prediction", "flow"),
    "ddpm_beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace"),
    "data_on_device": ("auto", "yes", "no"),
    "weighting_scheme": ("none", "logit_normal", "mode"),
}


def build_parser() -> argparse.ArgumentParser:
    """The diffusers example's flags (same names and defaults; wider ``--prediction_type`` and
    ``--ddpm_beta_schedule`` choices) plus the course's."""
    p = Parser(prog="python -m course_utils.train_unconditional",
               description="Train an unconditional DDPM (diffusers-compatible flags).")
    add = p.add_argument

    def choice(name: str, default: str, help: str = "") -> None:
        add(f"--{name}", type=str, default=default, choices=CHOICES[name], help=help)

    add("--dataset_name", type=str, default=None, help="A Hub dataset id, or a local dataset path.")
    add("--dataset_config_name", type=str, default=None, help="The dataset's config, if it has several.")
    add("--model_config_name_or_path", type=str, default=None,
        help="A UNet config (folder or Hub id); default: a UNet sized for --resolution.")
    add("--pretrained_model_name_or_path", type=str, default=None,
        help="Start from this pipeline's UNet weights and scheduler (a local diffusers folder or a Hub id): "
             "fine-tuning.")
    add("--train_data_dir", type=str, default=None, help="A folder of images (ignored if --dataset_name is given).")
    add("--output_dir", type=str, default="ddpm-model-64", help="Where the pipeline, checkpoints and logs go.")
    add("--overwrite_output_dir", action="store_true",
        help="Delete --output_dir first if it holds another run (a pipeline or checkpoints).")
    add("--cache_dir", type=str, default=None, help="Where downloaded datasets are cached.")
    add("--resolution", type=INT, default=64, check="at least 1", help="Images are resized (and cropped) to this size.")
    add("--center_crop", action="store_true", help="Crop the centre after resizing (default: a random crop).")
    add("--random_flip", action="store_true", help="Flip images left-right at random.")
    add("--train_batch_size", type=INT, default=16, check="at least 1", help="Batch size per device.")
    add("--eval_batch_size", type=INT, default=16, check="at least 1",
        help="How many images to generate for each sample grid.")
    add("--dataloader_num_workers", type=INT, default=0, check="0 or more",
        help="Data-loading subprocesses (0: the main one).")
    add("--num_epochs", type=INT, default=100, check="at least 1")
    add("--save_images_epochs", type=INT, default=10, check="at least 1", help="Generate a sample grid every N epochs.")
    add("--save_model_epochs", type=INT, default=10, check="at least 1", help="Save the pipeline every N epochs.")
    add("--gradient_accumulation_steps", type=INT, default=1, check="at least 1",
        help="Batches to accumulate per update.")
    add("--learning_rate", type=FLOAT, default=1e-4, check="a finite number above 0",
        help="Learning rate after the warm-up.")
    choice("lr_scheduler", "cosine", "The LR schedule after the warm-up.")
    add("--lr_warmup_steps", type=INT, default=500, check="0 or more", help="Warm-up steps of the LR schedule.")
    add("--adam_beta1", type=FLOAT, default=0.95, check="in [0, 1)")
    add("--adam_beta2", type=FLOAT, default=0.999, check="in [0, 1)")
    add("--adam_weight_decay", type=FLOAT, default=1e-6, check=(lambda v: math.isfinite(v) and v >= 0,
                                                             "a finite number, 0 or more"))
    add("--adam_epsilon", type=FLOAT, default=1e-08, check="a finite number above 0")
    add("--use_ema", action="store_true", help="Keep an exponential moving average of the weights and save it.")
    add("--ema_inv_gamma", type=FLOAT, default=1.0, check="a finite number above 0", help="EMA warm-up: inverse gamma.")
    add("--ema_power", type=FLOAT, default=3 / 4, check="a finite number above 0", help="EMA warm-up: power.")
    add("--ema_max_decay", type=FLOAT, default=0.9999, check="in [0, 1)", help="The largest EMA decay.")
    add("--push_to_hub", action="store_true",
        help="Upload the final pipeline (token from HF_TOKEN or `hf auth login`; checked before training).")
    add("--hub_token", type=str, default=None, help="Refused: put the token in HF_TOKEN, not on the command line.")
    add("--hub_model_id", type=str, default=None, help="Repo id for --push_to_hub (default: <user>/<output_dir>).")
    add("--hub_private_repo", action="store_true", help="Create the Hub repo as private.")
    choice("logger", "tensorboard")
    add("--logging_dir", type=str, default="logs", help="Log folder, inside --output_dir.")
    add("--local_rank", type=INT, default=-1, help="Set by the launcher in distributed runs.")
    choice("mixed_precision", "no")
    choice("prediction_type", "epsilon",
           "What the UNet learns to output. flow: flow matching (rectified flow, chapter 12) instead of DDPM: "
           "x_t = (1 - t) x0 + t noise, target noise - x0, the UNet given t*1000, a FlowMatchEulerDiscreteScheduler "
           "saved (the --ddpm_beta_schedule is then unused).")
    add("--ddpm_num_steps", type=INT, default=1000, check="at least 1")
    add("--ddpm_num_inference_steps", type=INT, default=1000, check="at least 1")
    choice("ddpm_beta_schedule", "linear")
    add("--checkpointing_steps", type=INT, default=500, check="at least 1",
        help="Save the full training state every N updates.")
    add("--checkpoints_total_limit", type=INT, default=None, check="at least 1",
        help="Keep at most N checkpoints (oldest removed).")
    add("--resume_from_checkpoint", type=str, default=None, help='A checkpoint folder, or "latest".')
    add("--enable_xformers_memory_efficient_attention", action="store_true")
    # The course's additions.
    add("--seed", type=INT, default=None, check=(lambda v: 0 <= v < 2**32, "in [0, 2**32)"),
        help="Seed everything (data order, noise, initial weights).")
    add("--max_train_steps", type=INT, default=None, check="at least 1",
        help="Stop after N updates (overrides --num_epochs).")
    add("--skip_bad_images", action="store_true", help="Skip unreadable images (named in a warning).")
    choice("data_on_device", "auto",
           "Decode the images once into a uint8 tensor on the training device, flip there, and on CUDA use "
           "TF32 and channels_last (the fast path). auto: on CUDA when the images fit in 2 GB and the crop "
           "is fixed (--center_crop or square images).")
    add("--class_conditional", action="store_true",
        help="Train a class-conditioned UNet on the dataset's 'label' column (an image folder's sub-folder names); "
             "one extra class embedding means 'no class', for classifier-free guidance.")
    add("--snr_gamma", type=FLOAT, default=None, check="a finite number above 0",
        help="Min-SNR loss weighting (Hang et al. 2023) with this gamma, as in diffusers' train_text_to_image.py "
             "(5.0 is the paper's choice); default: none, plain MSE.")
    add("--class_drop_prob", type=FLOAT, default=0.1, check=(lambda v: 0 <= v < 1, "in [0, 1) (the share of labels "
                                                              "dropped; 1 would never show the model a class)"),
        help="With --class_conditional: the share of labels replaced by 'no class' during training.")
    # Flow matching (--prediction_type flow), named as in diffusers' train_dreambooth_sd3.py.
    choice("weighting_scheme", "none",
           "With --prediction_type flow: how t is drawn (diffusers.training_utils."
           "compute_density_for_timestep_sampling): none = uniform, logit_normal = SD3's, mode.")
    add("--logit_mean", type=FLOAT, default=0.0, help="--weighting_scheme logit_normal: the mean of the logit.")
    add("--logit_std", type=FLOAT, default=1.0, check="a finite number above 0",
        help="--weighting_scheme logit_normal: the spread of the logit.")
    add("--mode_scale", type=FLOAT, default=1.29, check="a finite number above 0",
        help="--weighting_scheme mode: the scale.")
    add("--flow_shift", type=FLOAT, default=1.0, check="a finite number above 0",
        help="With --prediction_type flow: the saved scheduler's timestep shift (SD3 uses 3.0 at 1024 px).")
    add("--reflow_pairs", type=INT, default=None, check="at least 1",
        help="Reflow (rectified flow's second round, chapter 12): fine-tune --pretrained_model_name_or_path, a flow "
             "pipeline, on N pairs (noise, that pipeline's Euler sample from it) instead of images.")
    add("--reflow_steps", type=INT, default=32, check="at least 1",
        help="With --reflow_pairs: the Euler steps of each pair's sample.")
    return p


# ---- Data -----------------------------------------------------------------------------------------------


def load_images(args: argparse.Namespace):
    """The training images as a ``datasets.Dataset`` with an ``image`` column (and ``label`` where the data has
    classes); local folders are checked first."""
    from datasets import load_dataset

    from .data import load_image_folder

    if args.dataset_name is not None:
        return load_dataset(args.dataset_name, args.dataset_config_name, cache_dir=args.cache_dir, split="train")
    return load_image_folder(args.train_data_dir, skip_bad=args.skip_bad_images)


def class_names(dataset) -> list[str]:
    """The names of the dataset's classes (its ``label`` column), for ``--class_conditional``."""
    feature = dataset.features.get("label")
    if feature is None or not hasattr(feature, "names"):
        raise SystemExit("error: --class_conditional needs labelled images: put each class in its own sub-folder "
                         "of --train_data_dir (e.g. 0/, 1/, ...) or use a dataset with a 'label' class column.")
    return list(feature.names)


def convert(image, channels: int):
    """A PIL image in the mode the UNet reads: grayscale for 1 channel, RGB for 3."""
    return to_rgb(image).convert("L") if channels == 1 else to_rgb(image)


def preprocessing(args: argparse.Namespace) -> transforms.Compose:
    """Resize, crop (centre or random), optional flip, to tensor, normalise to [-1, 1] — as in diffusers' script."""
    crop = transforms.CenterCrop if args.center_crop else transforms.RandomCrop
    steps = [transforms.Resize(args.resolution, interpolation=transforms.InterpolationMode.BILINEAR),
             crop(args.resolution)]
    if args.random_flip:
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])


def decode_on_device(dataset, args: argparse.Namespace, channels: int = 3) -> torch.Tensor | None:
    """Every image resized and centre-cropped once into a (N, C, R, R) uint8 tensor; None if that would change
    the training data (a random crop of non-square images differs every epoch) or exceed 2 GB."""
    if len(dataset) * channels * args.resolution**2 > 2e9:
        return None
    fixed = transforms.Compose([
        transforms.Resize(args.resolution, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(args.resolution), transforms.PILToTensor(),
    ])
    images = []
    for image in dataset["image"]:
        if not args.center_crop and image.width != image.height:
            return None
        images.append(fixed(convert(image, channels)))
    return torch.stack(images)


def read_dataset(args: argparse.Namespace, accelerator: Accelerator) -> tuple:
    """The training images, every one opened (exit 2 naming the bad ones), and the class names with
    --class_conditional (None otherwise)."""
    if args.dataset_name is not None and args.train_data_dir is not None:
        accelerator.print(f"--train_data_dir {args.train_data_dir} is ignored: --dataset_name is given")
    try:  # every process checks the folder itself, so a bad file stops them all, none left waiting
        dataset = load_images(args)
    except (BadImagesError, FileNotFoundError) as err:  # an input problem like the flags': exit 2, nothing written
        exit_on_problems([f"error: {err}"])
    except Exception as err:  # a Hub dataset that cannot be found, downloaded or read
        reason = (str(err).strip().splitlines() or [""])[0][:300]
        raise SystemExit(f"error: --dataset_name {args.dataset_name} could not be loaded ({type(err).__name__}: "
                         f"{reason}); check the name and the network, or use --train_data_dir") from None
    if "image" not in dataset.column_names:
        raise SystemExit(f"error: --dataset_name {args.dataset_name} has no 'image' column (its columns: "
                         f"{', '.join(dataset.column_names)}); use a dataset of images")
    return dataset, (class_names(dataset) if args.class_conditional else None)


def make_loader(args: argparse.Namespace, accelerator: Accelerator, dataset, names: list[str] | None,
                channels: int) -> tuple:
    """The batches: on the fast path (--data_on_device) a ``DeviceBatches`` over one uint8 tensor on the device,
    otherwise a DataLoader with the preprocessing applied lazily; and the decoded tensor (None off the fast
    path)."""
    on_device = None
    if args.data_on_device == "yes" or (args.data_on_device == "auto" and accelerator.device.type == "cuda"):
        on_device = decode_on_device(dataset, args, channels)
        if on_device is None and args.data_on_device == "yes":
            raise SystemExit("error: --data_on_device yes needs --center_crop (or square images) and under 2 GB "
                             "of decoded images; use --data_on_device no.")
    if on_device is not None:  # the fast path: one uint8 tensor on the device, batches made there
        loader = DeviceBatches(on_device, args.train_batch_size, accelerator.device, flip=args.random_flip,
                               seed=args.seed or 0, rank=accelerator.process_index, world=accelerator.num_processes,
                               labels=torch.tensor(dataset["label"]) if names else None)
        accelerator.print(f"data on {accelerator.device.type}: {tuple(on_device.shape)} uint8, decoded once")
        if accelerator.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        return loader, on_device
    augment = preprocessing(args)

    def transform(batch: dict) -> dict:
        out = {"images": [augment(convert(im, channels)) for im in batch["image"]]}
        if names:
            out["labels"] = batch["label"]
        return out

    dataset.set_transform(transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True,
                                         num_workers=args.dataloader_num_workers)
    return loader, None


def reflow_loader(args: argparse.Namespace, accelerator: Accelerator, model, noise_scheduler) -> tuple:
    """Reflow's data (Liu et al. 2022): --reflow_pairs noise draws (seeded by --seed) and the pretrained flow's
    Euler sample from each (--reflow_steps steps), made once before training (so a resumed run makes the same);
    batches of (sample, its noise) on the device, never flipped. The samples are kept as uint8, as images are."""
    c = model.config
    noise = torch.randn((args.reflow_pairs, c.in_channels, c.sample_size, c.sample_size),
                        generator=torch.Generator().manual_seed(args.seed or 0))
    samples = torch.cat([sample_ddpm(model, noise_scheduler, len(chunk), args.reflow_steps, accelerator.device,
                                     noise=chunk) for chunk in tqdm(noise.split(256), desc="reflow pairs",
                                                                    disable=not accelerator.is_local_main_process)])
    images = ((samples + 1) * 127.5).round().to(torch.uint8)
    accelerator.print(f"reflow: {len(images)} (sample, noise) pairs from {args.pretrained_model_name_or_path}, "
                      f"{args.reflow_steps} Euler steps each")
    loader = DeviceBatches(images, args.train_batch_size, accelerator.device, flip=False, seed=args.seed or 0,
                           rank=accelerator.process_index, world=accelerator.num_processes, noise=noise)
    return loader, images


# ---- Model -----------------------------------------------------------------------------------------------


def build_model(args: argparse.Namespace, accelerator: Accelerator, names: list[str] | None
                ) -> tuple[UNet2DModel, dict | None]:
    """The UNet (a pipeline's to fine-tune, one from a config, or one sized for the resolution) and the
    pretrained pipeline's scheduler config (None otherwise). Its config fixes the image channels (1: grayscale,
    3: RGB); conditioned, it has one class embedding per class plus "no class"."""
    classes = len(names) + 1 if names else None  # the last class embedding means "no class"
    scheduler_config = None
    if args.pretrained_model_name_or_path:  # fine-tuning: the pipeline's weights and noise schedule
        model = UNet2DModel.from_pretrained(args.pretrained_model_name_or_path, subfolder="unet",
                                            dtype=torch.float32)
        if classes and model.config.num_class_embeds != classes:
            raise SystemExit(f"error: --pretrained_model_name_or_path {args.pretrained_model_name_or_path} has "
                             f"{model.config.num_class_embeds - 1} classes, the data {len(names)}; fine-tune it on "
                             "images with the same classes")
        scheduler_config = train_checks.scheduler_config(args.pretrained_model_name_or_path)
        described = "its scheduler" if scheduler_config else "no scheduler in it: the --ddpm_* flags' schedule"
        accelerator.print(f"UNet weights from {args.pretrained_model_name_or_path} ({described})")
    elif args.model_config_name_or_path is None:
        model, described = default_unet(args.resolution, num_class_embeds=classes)
        accelerator.print(f"no --model_config_name_or_path: a UNet sized for {args.resolution} px, {described}")
    else:
        config = UNet2DModel.load_config(args.model_config_name_or_path)
        model = UNet2DModel.from_config(config, **({"num_class_embeds": classes} if classes else {}))
        accelerator.print(f"UNet from {args.model_config_name_or_path}")
    if args.enable_xformers_memory_efficient_attention:
        model.enable_xformers_memory_efficient_attention()
    if names:
        accelerator.print(f"class-conditional: {len(names)} classes {names} + 'no class' (label {len(names)}), "
                          f"dropped {args.class_drop_prob:.0%} of the time")
    return model, scheduler_config


def noise_schedule(args: argparse.Namespace, scheduler_config: dict | None):
    """The training noise schedule: a pretrained pipeline's, or the --ddpm_* flags' (flow matching's with
    --prediction_type flow). ``args`` is left as typed: ``main`` records the schedule used."""
    flow = args.prediction_type == "flow" or (scheduler_config or {}).get("_class_name") == \
        FlowMatchEulerDiscreteScheduler.__name__
    if flow:  # flow matching: sigma = t in [0, 1], the UNet sees t * num_train_timesteps (diffusers' convention)
        if scheduler_config:
            return FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=args.ddpm_num_steps, shift=args.flow_shift)
    if scheduler_config is not None:
        return DDPMScheduler.from_config(scheduler_config)
    return DDPMScheduler(num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule,
                         prediction_type=args.prediction_type)


def plan_steps(args: argparse.Namespace, accelerator: Accelerator, loader, on_device: bool, n_images: int
               ) -> tuple[int, int]:
    """The run's optimizer updates (--max_train_steps, or --num_epochs of the data) and its epochs."""
    batches_per_process = len(loader) if on_device else math.ceil(len(loader) / accelerator.num_processes)
    updates_per_epoch = math.ceil(batches_per_process / args.gradient_accumulation_steps)
    if updates_per_epoch == 0:
        raise SystemExit(f"error: {n_images} images make fewer batches of --train_batch_size "
                         f"{args.train_batch_size} than there are processes ({accelerator.num_processes}); "
                         "lower --train_batch_size or add images")
    max_steps = args.max_train_steps or args.num_epochs * updates_per_epoch
    return max_steps, math.ceil(max_steps / updates_per_epoch)


# ---- The loop: one training step ---------------------------------------------------------------------------


def training_step(accelerator: Accelerator, model, optimizer, lr_scheduler, noise_scheduler, clean: torch.Tensor,
                  labels: torch.Tensor | None, args: argparse.Namespace, noise: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """One batch: the loss inside ``accelerator.accumulate`` (which makes the update every
    --gradient_accumulation_steps batches), backward, clip, step; the loss, detached. ``noise``: each image's
    paired noise (reflow), instead of a fresh draw."""
    sigmas = None
    if is_flow(noise_scheduler):  # flow matching: t drawn by the weighting scheme (uniform by default)
        sigmas = compute_density_for_timestep_sampling(args.weighting_scheme, len(clean), args.logit_mean,
                                                       args.logit_std, args.mode_scale)
    with accelerator.accumulate(model):
        loss = diffusion_loss(model, noise_scheduler, clean, labels, snr_gamma=args.snr_gamma,
                              class_drop_prob=args.class_drop_prob, sigmas=sigmas, noise=noise)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# ---- Checkpoints, resume, saves ------------------------------------------------------------------------------


def checkpoint(args: argparse.Namespace, accelerator: Accelerator, output_dir: Path, step: int, about: dict,
               log: TrainingLog) -> None:
    """The whole training state at ``step`` (``runs.save_checkpoint``, with the time so far) and the log."""
    save_checkpoint(accelerator, output_dir, step, args.checkpoints_total_limit, {**about, "seconds": log.seconds()})
    log.save()


def resume(args: argparse.Namespace, accelerator: Accelerator, output_dir: Path, log: TrainingLog) -> int:
    """With --resume_from_checkpoint: load the whole state (checked by train_checks: complete, same resolution and
    EMA setting; a checkpoint of another model stops here, named) and return its step (0 without one); the log
    continues from there."""
    path = resume_path(args.resume_from_checkpoint, output_dir)
    if path is None:
        if args.resume_from_checkpoint:
            accelerator.print(f"no checkpoint in {output_dir}: starting from step 0")
        log.start("unet")
        return 0
    try:
        step, about = load_checkpoint(accelerator, path)
    except Exception as err:  # e.g. another class count, or a mixed-precision scaler it lacks
        reason = " ".join(str(err).split())[:240]  # one line: e.g. the first parameter of another shape
        raise SystemExit(f"error: --resume_from_checkpoint {args.resume_from_checkpoint}: {path} does not fit this "
                         f"run ({type(err).__name__}: {reason}); resume with the flags it was trained with, or start "
                         "a new --output_dir") from None
    accelerator.print(f"resumed from {path} at step {step}")
    log.start("unet", step, about.get("seconds", 0.0))
    return step


def save_outputs(accelerator, args, model, ema, noise_scheduler, output_dir, epoch, save_images, save_model,
                 names=None) -> None:
    """Main process only: a sample grid (PNG + TensorBoard) and/or the pipeline, with the EMA weights if used.

    A class-conditioned model's grid has a row per class (conditional samples, guidance scale 1); its class
    names are saved beside the pipeline in ``class_names.json``."""
    unet = accelerator.unwrap_model(model)
    if ema is not None:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
    pipeline = DDPMPipeline(unet=unet, scheduler=noise_scheduler)
    pipeline.set_progress_bar_config(disable=True)
    if save_images:
        grid, images = sample_grid(pipeline, args.eval_batch_size, args.ddpm_num_inference_steps, names=names)
        with atomic_file(output_dir / "samples" / f"epoch_{epoch + 1:04d}.png") as tmp:
            grid.save(tmp, format="PNG")
        if args.logger == "tensorboard":
            accelerator.get_tracker("tensorboard").writer.add_images("test_samples", images, epoch + 1)
    if save_model:
        save_pipeline_into(pipeline, output_dir)
        if names:
            write_text_atomic(output_dir / "class_names.json", json.dumps(names))
    if ema is not None:
        ema.restore(unet.parameters())


def push(args: argparse.Namespace, output_dir: Path) -> None:
    """Upload the saved pipeline with chapter 4's rules (no checkpoints or logs) to the repo checked before
    training; if the upload fails, say where the pipeline is and the command that uploads it later."""
    from .hub import find_token, upload_command, upload_pipeline

    token = find_token(login=True)
    try:
        url = upload_pipeline(output_dir, args.hub_model_id, token, private=args.hub_private_repo)
    except Exception as err:  # the network dropped, the Hub refused: the training is done and saved
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        if token:
            reason = reason.replace(token, "<token>")
        raise SystemExit(f"error: the upload to {args.hub_model_id} failed ({type(err).__name__}: {reason}); the "
                         f"trained pipeline is saved in {output_dir.resolve()}. Upload it later with:\n  "
                         f"{upload_command(output_dir.resolve(), args.hub_model_id)}") from None
    print("uploaded to", url)


# ---- The run: configuration, data, model, loop, save ------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    """Check every flag, then train, checkpoint, save (and upload); return the output folder."""
    args, problems = train_checks.unconditional(build_parser(), argv)  # every flag, before anything is read
    exit_on_problems(problems)
    args.local_rank = int(os.environ.get("LOCAL_RANK", args.local_rank))  # set by the launcher
    output_dir = Path(args.output_dir).expanduser()
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps, mixed_precision=args.mixed_precision,
        log_with=args.logger, project_config=ProjectConfiguration(project_dir=str(output_dir),
                                                                  logging_dir=str(output_dir / args.logging_dir)))
    accelerator.print(f"{accelerator.num_processes} process(es) on {accelerator.device.type} "
                      f"({accelerator.distributed_type.value}), mixed precision: {args.mixed_precision}")
    if args.seed is not None:
        set_seed(args.seed)

    # data, checked (reflow makes its pairs from the model below); then the output folder
    dataset, names = (None, None) if args.reflow_pairs else read_dataset(args, accelerator)
    if accelerator.is_main_process:
        if args.overwrite_output_dir and output_dir.exists() and not args.resume_from_checkpoint:
            shutil.rmtree(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    model, scheduler_config = build_model(args, accelerator, names)  # model, schedules, optimizer
    noise_scheduler = noise_schedule(args, scheduler_config)
    if is_flow(noise_scheduler):  # the log records the schedule used (a pretrained pipeline's, not the flags')
        args.prediction_type = "flow"
    elif scheduler_config is not None:
        c = noise_scheduler.config
        args.ddpm_num_steps, args.ddpm_beta_schedule, args.prediction_type = (
            c.num_train_timesteps, c.beta_schedule, c.prediction_type)
    if args.reflow_pairs:
        loader, on_device = reflow_loader(args, accelerator, model, noise_scheduler)
    else:
        loader, on_device = make_loader(args, accelerator, dataset, names, model.config.in_channels)
    ema = None
    if args.use_ema:
        ema = EMAModel(model.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, inv_gamma=args.ema_inv_gamma,
                       power=args.ema_power, model_cls=UNet2DModel, model_config=model.config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    n_images = len(on_device) if dataset is None else len(dataset)
    max_steps, num_epochs = plan_steps(args, accelerator, loader, on_device is not None, n_images)
    lr_scheduler = get_scheduler(args.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=max_steps * accelerator.num_processes)
    if on_device is not None:
        model = model.to(memory_format=torch.channels_last)
        model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    else:
        model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    about = {"resolution": args.resolution, "unet": dict(accelerator.unwrap_model(model).config)}
    if accelerator.is_main_process:
        accelerator.init_trackers("train_unconditional", config={k: v for k, v in vars(args).items()
                                                                 if isinstance(v, int | float | str | bool)})
    log = TrainingLog(output_dir, accelerator)
    global_step = resume(args, accelerator, output_dir, log)
    first_epoch, skip_batches = divmod(global_step * args.gradient_accumulation_steps, len(loader))

    # The loop. The loss is summed on the device and logged once per epoch: no host sync per step.
    bar = tqdm(total=max_steps, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process)
    for epoch in range(first_epoch, num_epochs):
        model.train()
        if on_device is not None:
            loader.set_epoch(epoch)
            batches = itertools.islice(loader, skip_batches if epoch == first_epoch else 0, None)
        else:
            batches = accelerator.skip_first_batches(loader, skip_batches) if epoch == first_epoch else loader
        total, count = torch.zeros((), device=accelerator.device), 0
        for batch in batches:
            clean, labels, noise = unpack(batch)  # noise: each sample's own (reflow's pairs), else None
            total += training_step(accelerator, model, optimizer, lr_scheduler, noise_scheduler, clean, labels, args,
                                   noise)
            count += 1
            if accelerator.sync_gradients:
                if ema is not None:
                    ema.step(model.parameters())
                global_step += 1
                bar.update(1)
                if global_step % args.checkpointing_steps == 0:
                    checkpoint(args, accelerator, output_dir, global_step, about, log)
                if global_step >= max_steps:
                    break
        mean_loss = accelerator.reduce(total / max(count, 1), reduction="mean").item()
        log.add(global_step, mean_loss)
        logs = {"loss": mean_loss, "lr": lr_scheduler.get_last_lr()[0], "epoch": epoch}
        if ema is not None:
            logs["ema_decay"] = ema.cur_decay_value or 0.0
        bar.set_postfix(loss=f"{mean_loss:.4f}")
        accelerator.log(logs, step=global_step)
        last = epoch == num_epochs - 1 or global_step >= max_steps
        save_images = (epoch + 1) % args.save_images_epochs == 0 or last
        save_model = (epoch + 1) % args.save_model_epochs == 0 or last
        if (save_images or save_model) and accelerator.is_main_process:
            save_outputs(accelerator, args, model, ema, noise_scheduler, output_dir, epoch, save_images, save_model,
                         names)
        accelerator.wait_for_everyone()
        if global_step >= max_steps:
            break
    bar.close()

    # Save: the final state (so a resume past the end is a no-op), the log, the upload.
    if global_step % args.checkpointing_steps != 0:
        checkpoint(args, accelerator, output_dir, global_step, about, log)
    log.finish(args, parameters=sum(p.numel() for p in model.parameters()), steps=global_step)
    log.save()
    accelerator.end_training()
    if args.push_to_hub and accelerator.is_main_process:
        push(args, output_dir)
    return output_dir


def cli() -> None:
    """``python -m course_utils.train_unconditional``: ``main`` with one error line instead of a traceback for
    running out of memory or an interrupt."""
    try:
        main(sys.argv[1:])
    except torch.OutOfMemoryError:
        sys.exit("error: out of memory: lower --train_batch_size (raise --gradient_accumulation_steps to keep the "
                 "effective batch), --eval_batch_size or --resolution, or use --mixed_precision bf16")
    except KeyboardInterrupt:
        sys.exit("error: interrupted; the last checkpoint is kept: add --resume_from_checkpoint latest to continue")


if __name__ == "__main__":
    cli()
