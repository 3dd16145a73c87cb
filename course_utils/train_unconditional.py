"""Train an unconditional DDPM on your images: one CPU, one GPU or many, through Accelerate (chapter 5).

    python -m course_utils.train_unconditional --train_data_dir my_images --resolution 32 --output_dir my-ddpm
    accelerate launch -m course_utils.train_unconditional --train_data_dir my_images ...
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m course_utils.train_unconditional ...

(The last line runs two CPU processes. ``accelerate launch --cpu --num_processes 2`` starts only one
process with accelerate 1.15 unless MPI is set up: its ``--cpu`` path spawns several only through mpirun.)

The flags are those of diffusers' ``examples/unconditional_image_generation/train_unconditional.py``, with
the same meaning, plus ``--seed``, ``--max_train_steps``, ``--skip_bad_images``, ``--data_on_device``
(the fast path, on by default on CUDA) and ``--class_conditional`` / ``--class_drop_prob`` (a class-conditioned
UNet for classifier-free guidance, labels from the image folder's sub-folder names). The image mode follows the
UNet: a config with ``in_channels: 1`` trains on grayscale images, 3 on RGB. The script reads top to bottom:
configuration, data, model, loop, checkpoint, save.

Reliability: ``--checkpointing_steps`` saves the full training state (model, EMA, optimizer, LR schedule,
random states, step) into ``checkpoint-<step>`` folders that appear whole or not at all;
``--resume_from_checkpoint latest`` continues from the newest one. Pipelines are written to a temporary
folder and renamed into place, so a crash never leaves a half-written one.
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
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torchvision import transforms
from tqdm.auto import tqdm

from .imagefolder import BadImagesError, to_rgb
from .training import DeviceBatches, ddpm_target, make_unet, sample_with_guidance
from .viz import make_grid

CHECKPOINT_PREFIX = "checkpoint-"


# ---- Configuration --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The diffusers example's flags (same names, defaults and meaning) plus ``--seed`` and ``--max_train_steps``."""
    p = argparse.ArgumentParser(description="Train an unconditional DDPM (diffusers-compatible flags).")
    add = p.add_argument
    add("--dataset_name", type=str, default=None, help="A Hub dataset id, or a local dataset path.")
    add("--dataset_config_name", type=str, default=None, help="The dataset's config, if it has several.")
    add("--model_config_name_or_path", type=str, default=None,
        help="A UNet config (folder or Hub id); default: a UNet sized for --resolution.")
    add("--train_data_dir", type=str, default=None, help="A folder of images (ignored if --dataset_name is given).")
    add("--output_dir", type=str, default="ddpm-model-64", help="Where the pipeline, checkpoints and logs go.")
    add("--overwrite_output_dir", action="store_true")
    add("--cache_dir", type=str, default=None, help="Where downloaded datasets are cached.")
    add("--resolution", type=int, default=64, help="Images are resized (and cropped) to this size.")
    add("--center_crop", action="store_true", help="Crop the centre after resizing (default: a random crop).")
    add("--random_flip", action="store_true", help="Flip images left-right at random.")
    add("--train_batch_size", type=int, default=16, help="Batch size per device.")
    add("--eval_batch_size", type=int, default=16, help="How many images to generate for each sample grid.")
    add("--dataloader_num_workers", type=int, default=0, help="Data-loading subprocesses (0: the main one).")
    add("--num_epochs", type=int, default=100)
    add("--save_images_epochs", type=int, default=10, help="Generate a sample grid every N epochs.")
    add("--save_model_epochs", type=int, default=10, help="Save the pipeline every N epochs.")
    add("--gradient_accumulation_steps", type=int, default=1, help="Batches to accumulate per update.")
    add("--learning_rate", type=float, default=1e-4, help="Learning rate after the warm-up.")
    add("--lr_scheduler", type=str, default="cosine",
        help='One of "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup".')
    add("--lr_warmup_steps", type=int, default=500, help="Warm-up steps of the LR schedule.")
    add("--adam_beta1", type=float, default=0.95)
    add("--adam_beta2", type=float, default=0.999)
    add("--adam_weight_decay", type=float, default=1e-6)
    add("--adam_epsilon", type=float, default=1e-08)
    add("--use_ema", action="store_true", help="Keep an exponential moving average of the weights and save it.")
    add("--ema_inv_gamma", type=float, default=1.0, help="EMA warm-up: inverse gamma.")
    add("--ema_power", type=float, default=3 / 4, help="EMA warm-up: power.")
    add("--ema_max_decay", type=float, default=0.9999, help="The largest EMA decay.")
    add("--push_to_hub", action="store_true", help="Upload the final pipeline (needs HF_TOKEN in the environment).")
    add("--hub_token", type=str, default=None, help="Refused: put the token in HF_TOKEN, not on the command line.")
    add("--hub_model_id", type=str, default=None, help="Repo id for --push_to_hub (default: <user>/<output_dir>).")
    add("--hub_private_repo", action="store_true", help="Create the Hub repo as private.")
    add("--logger", type=str, default="tensorboard", choices=["tensorboard", "wandb"])
    add("--logging_dir", type=str, default="logs", help="Log folder, inside --output_dir.")
    add("--local_rank", type=int, default=-1, help="Set by the launcher in distributed runs.")
    add("--mixed_precision", type=str, default="no", choices=["no", "fp16", "bf16"])
    add("--prediction_type", type=str, default="epsilon", choices=["epsilon", "sample", "v_prediction"])
    add("--ddpm_num_steps", type=int, default=1000)
    add("--ddpm_num_inference_steps", type=int, default=1000)
    add("--ddpm_beta_schedule", type=str, default="linear")
    add("--checkpointing_steps", type=int, default=500, help="Save the full training state every N updates.")
    add("--checkpoints_total_limit", type=int, default=None, help="Keep at most N checkpoints (oldest removed).")
    add("--resume_from_checkpoint", type=str, default=None, help='A checkpoint folder, or "latest".')
    add("--enable_xformers_memory_efficient_attention", action="store_true")
    # The course's additions.
    add("--seed", type=int, default=None, help="Seed everything (data order, noise, initial weights).")
    add("--max_train_steps", type=int, default=None, help="Stop after N updates (overrides --num_epochs).")
    add("--skip_bad_images", action="store_true", help="Skip unreadable images (named in a warning).")
    add("--data_on_device", choices=["auto", "yes", "no"], default="auto",
        help="Decode the images once into a uint8 tensor on the training device, flip there, and on CUDA use "
             "TF32 and channels_last (the fast path). auto: on CUDA when the images fit in 2 GB and the crop "
             "is fixed (--center_crop or square images).")
    add("--class_conditional", action="store_true",
        help="Train a class-conditioned UNet on the dataset's 'label' column (an image folder's sub-folder names); "
             "one extra class embedding means 'no class', for classifier-free guidance.")
    add("--class_drop_prob", type=float, default=0.1,
        help="With --class_conditional: the share of labels replaced by 'no class' during training.")
    args = p.parse_args(argv)

    env_rank = int(os.environ.get("LOCAL_RANK", -1))
    if env_rank != -1:
        args.local_rank = env_rank
    if args.dataset_name is None and args.train_data_dir is None:
        p.error("give --train_data_dir (a folder of images) or --dataset_name (a Hub dataset).")
    if args.hub_token is not None:
        p.error("--hub_token is refused: a token on the command line ends up in shell history and process lists. "
                "Set the HF_TOKEN environment variable instead.")
    for name in ("checkpointing_steps", "save_images_epochs", "save_model_epochs", "gradient_accumulation_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.class_drop_prob < 1:
        p.error(f"--class_drop_prob must be in [0, 1), got {args.class_drop_prob}")
    return args


def default_unet(resolution: int, num_class_embeds: int | None = None) -> tuple[UNet2DModel, str]:
    """A UNet sized for the resolution (diffusers' default six levels are too deep under 64 px), and its name."""
    if resolution < 8 or resolution % 8:
        raise ValueError(f"--resolution {resolution}: use a multiple of 8 (at least 8), e.g. 32 or 64")
    if resolution <= 16:
        channels, attention = (32, 64), 1
    elif resolution <= 32:
        channels, attention = (64, 128, 128, 256), 2  # chapter 3's model
    else:
        channels, attention = (128, 128, 256, 256, 512, 512), 1  # diffusers' default levels
    levels = int(math.log2(resolution)) - 2  # keep the deepest feature map at 4x4 or more
    channels = channels[: max(2, min(len(channels), levels + 1))]
    attention = min(attention, len(channels))
    model = make_unet(resolution, channels, layers_per_block=2, attention=attention,
                      num_class_embeds=num_class_embeds)
    return model, f"{len(channels)} levels {channels}, attention in the deepest {attention}"


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


# ---- Checkpoints and saves (all or nothing) ---------------------------------------------------------------


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first (temporary folders of an interrupted save excluded)."""
    found = [p for p in output_dir.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and p.name.split("-")[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None) -> Path:
    """Save the whole training state to ``checkpoint-<step>``: written under a temporary name, then renamed."""
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = output_dir / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process writes its own random state into the same folder
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "course_step.json").write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def save_pipeline_into(pipeline: DDPMPipeline, output_dir: Path) -> None:
    """Save the pipeline into ``output_dir`` (diffusers' layout) without ever leaving a half-written one.

    The pipeline is saved whole into a temporary folder first; each component folder is then renamed into
    place in one step, and ``model_index.json`` last.
    """
    from .files import atomic_folder

    tmp_parent = output_dir / ".pipeline-staging"
    with atomic_folder(tmp_parent, replace=True) as tmp:
        pipeline.save_pretrained(tmp, safe_serialization=True)
    for entry in sorted(tmp_parent.iterdir(), key=lambda p: p.name == "model_index.json"):
        target = output_dir / entry.name
        if entry.is_dir() and target.exists():
            old = output_dir / f".{entry.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(entry, target)
            shutil.rmtree(old)
        else:
            os.replace(entry, target)
    shutil.rmtree(tmp_parent)


def sample_grid(pipeline: DDPMPipeline, n: int, steps: int, seed: int = 0, names: list[str] | None = None):
    """A grid of ``n`` samples (with ``names``: up to 8 per class, a row each) as a PIL image and as a
    (N, C, H, W) uint8 array for TensorBoard."""
    if names:
        labels = torch.arange(len(names)).repeat_interleave(min(n, 8))
        x = sample_with_guidance(pipeline.unet, pipeline.scheduler, steps, labels=labels, guidance_scale=1.0,
                                 seed=seed, device=pipeline.device)
        images = ((x + 1) / 2).permute(0, 2, 3, 1).float().numpy()
    else:
        generator = torch.Generator(pipeline.device).manual_seed(seed)
        images = pipeline(batch_size=n, generator=generator, num_inference_steps=steps, output_type="np").images
    grid = make_grid(pipeline.numpy_to_pil(images), cols=min(n, 8))
    return grid, (images * 255).round().astype("uint8").transpose(0, 3, 1, 2)


# ---- Training ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    """Train, checkpoint, save; return the output folder."""
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.logger,
        project_config=ProjectConfiguration(project_dir=str(output_dir),
                                            logging_dir=str(output_dir / args.logging_dir)),
    )
    accelerator.print(f"{accelerator.num_processes} process(es) on {accelerator.device.type} "
                      f"({accelerator.distributed_type.value}), mixed precision: {args.mixed_precision}")
    if args.seed is not None:
        set_seed(args.seed)
    if accelerator.is_main_process:
        if args.overwrite_output_dir and output_dir.exists() and not args.resume_from_checkpoint:
            shutil.rmtree(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()

    # Data: the images, checked; preprocessing applied lazily.
    try:  # every process checks the folder itself, so a bad file stops them all, none left waiting
        dataset = load_images(args)
    except (BadImagesError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    names = class_names(dataset) if args.class_conditional else None

    # Model: its config fixes the image channels (1: grayscale, 3: RGB) and, conditioned, the class count.
    classes = len(names) + 1 if names else None  # the last class embedding means "no class"
    if args.model_config_name_or_path is None:
        model, described = default_unet(args.resolution, num_class_embeds=classes)
        accelerator.print(f"no --model_config_name_or_path: a UNet sized for {args.resolution} px, {described}")
    else:
        config = UNet2DModel.load_config(args.model_config_name_or_path)
        model = UNet2DModel.from_config(config, **({"num_class_embeds": classes} if classes else {}))
        accelerator.print(f"UNet from {args.model_config_name_or_path}")
    channels = model.config.in_channels
    if names:
        accelerator.print(f"class-conditional: {len(names)} classes {names} + 'no class' (label {len(names)}), "
                          f"dropped {args.class_drop_prob:.0%} of the time")

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
    else:
        augment = preprocessing(args)

        def transform(batch: dict) -> dict:
            out = {"input": [augment(convert(im, channels)) for im in batch["image"]]}
            if names:
                out["label"] = batch["label"]
            return out

        dataset.set_transform(transform)
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.train_batch_size, shuffle=True,
                                             num_workers=args.dataloader_num_workers)

    # EMA, noise schedule, optimizer, LR schedule.
    ema = None
    if args.use_ema:
        ema = EMAModel(model.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, inv_gamma=args.ema_inv_gamma,
                       power=args.ema_power, model_cls=UNet2DModel, model_config=model.config)
    noise_scheduler = DDPMScheduler(num_train_timesteps=args.ddpm_num_steps, beta_schedule=args.ddpm_beta_schedule,
                                    prediction_type=args.prediction_type)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                  weight_decay=args.adam_weight_decay, eps=args.adam_epsilon)
    batches_per_process = len(loader) if on_device is not None else math.ceil(len(loader) / accelerator.num_processes)
    updates_per_epoch = math.ceil(batches_per_process / args.gradient_accumulation_steps)
    max_steps = args.max_train_steps or args.num_epochs * updates_per_epoch
    num_epochs = math.ceil(max_steps / updates_per_epoch)
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
    if accelerator.is_main_process:
        accelerator.init_trackers("train_unconditional", config={k: v for k, v in vars(args).items()
                                                                 if isinstance(v, int | float | str | bool)})

    # Resume: the whole state, and where in the data the run stopped.
    global_step = 0
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint == "latest":
            found = list_checkpoints(output_dir)
            path = found[-1] if found else None
        else:
            path = Path(args.resume_from_checkpoint)
            if not path.is_dir():
                raise SystemExit(f"error: checkpoint {path} does not exist; pass a checkpoint-<step> folder "
                                 "or 'latest'.")
        if path is None:
            accelerator.print(f"no checkpoint in {output_dir}: starting from step 0")
        else:
            accelerator.load_state(str(path))
            global_step = json.loads((path / "course_step.json").read_text())["step"]
            accelerator.print(f"resumed from {path} at step {global_step}")
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
            clean, labels = split_batch(batch)
            noise = torch.randn_like(clean)
            t = torch.randint(0, args.ddpm_num_steps, (len(clean),), device=clean.device)
            noisy = noise_scheduler.add_noise(clean, noise, t)
            if labels is not None:  # classifier-free guidance: sometimes the model is told "no class"
                drop = torch.rand(len(labels), device=labels.device) < args.class_drop_prob
                labels = torch.where(drop, len(names), labels)
            with accelerator.accumulate(model):
                prediction = model(noisy, t, class_labels=labels).sample
                target = ddpm_target(noise_scheduler, clean, noise, t)
                loss = F.mse_loss(prediction.float(), target.float())
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
            count += 1
            if accelerator.sync_gradients:
                if ema is not None:
                    ema.step(model.parameters())
                global_step += 1
                bar.update(1)
                if global_step % args.checkpointing_steps == 0:
                    save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
                if global_step >= max_steps:
                    break
        mean_loss = accelerator.reduce(total / max(count, 1), reduction="mean").item()
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
    if global_step % args.checkpointing_steps != 0:  # the final state, so a resume past the end is a no-op
        save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
    if args.push_to_hub and accelerator.is_main_process:
        push(args, output_dir)
    accelerator.end_training()
    return output_dir


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The images of a batch and its labels (None when unconditional), from the DataLoader or the fast path."""
    if isinstance(batch, dict):
        labels = batch.get("label")
        return batch["input"], (torch.as_tensor(labels, device=batch["input"].device) if labels is not None else None)
    return batch if isinstance(batch, tuple) else (batch, None)


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
        (output_dir / "samples").mkdir(exist_ok=True)
        tmp = output_dir / "samples" / f".epoch_{epoch + 1:04d}.png.tmp"
        grid.save(tmp, format="PNG")
        os.replace(tmp, output_dir / "samples" / f"epoch_{epoch + 1:04d}.png")
        if args.logger == "tensorboard":
            accelerator.get_tracker("tensorboard").writer.add_images("test_samples", images, epoch + 1)
    if save_model:
        save_pipeline_into(pipeline, output_dir)
        if names:
            (output_dir / ".class_names.json.tmp").write_text(json.dumps(names))
            os.replace(output_dir / ".class_names.json.tmp", output_dir / "class_names.json")
    if ema is not None:
        ema.restore(unet.parameters())


def push(args: argparse.Namespace, output_dir: Path) -> None:
    """Upload the saved pipeline with chapter 4's rules: token from the environment, no checkpoints or logs."""
    from huggingface_hub import whoami

    from .hub import find_token, upload_pipeline

    token = find_token()
    if not token:
        raise SystemExit("error: --push_to_hub needs a token: set HF_TOKEN (the pipeline is saved locally in "
                         f"{output_dir}).")
    repo_id = args.hub_model_id or f"{whoami(token=token)['name']}/{output_dir.name}"
    print("uploaded to", upload_pipeline(output_dir, repo_id, token, private=args.hub_private_repo))


if __name__ == "__main__":
    main(sys.argv[1:])
