"""How each shipped pipeline is made: one ``Recipe`` per name (its script, data, U-Net and the script's flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """How one shipped pipeline is made: the script that trains it, its data, its U-Net and the script's flags.

    ``script`` is ``"train_unconditional"`` (a ``DDPMPipeline``: images, or sound as spectrogram images) or
    ``"train_text_to_image"`` (a tiny ``StableDiffusionPipeline``, built and trained by that script with its own
    defaults: ``unet`` and ``steps`` stay None) or ``"train_sd3"`` (a tiny ``StableDiffusion3Pipeline`` on
    ``tiny-sd-butterflies``' frozen VAE and text encoder, with ``flags``).
    """

    data: str  # "digits", "butterflies" or "clips" (synthesised sound as mel spectrogram images, chapter 10)
    resolution: int
    description: str
    script: str = "train_unconditional"
    unet: dict | None = None
    steps: int | None = None  # optimizer updates of the shipped run (None: the script's default)
    flags: tuple[str, ...] = ()
    conditional: bool = False
    prediction_type: str = "v_prediction"
    tags: tuple[str, ...] = field(default=("unconditional-image-generation",))
    scheduler: dict = field(default_factory=dict)  # sampling settings written over the trained scheduler's config
    reflow_of: str | None = None  # reflow: the shipped flow pipeline fine-tuned on its own (noise, sample) pairs
    distilled_from: str | None = None  # consistency distillation of this shipped pipeline (course_utils.consistency)
    distil: dict = field(default_factory=dict)  # course_utils.consistency.distil's settings (batch, skip, ema, ...)

    @property
    def text_to_image(self) -> bool:
        """Whether a text-to-image script (``train_text_to_image`` or ``train_sd3``) makes this pipeline."""
        return self.script in ("train_text_to_image", "train_sd3")

    @property
    def denoiser(self) -> str:
        """The pipeline's denoising model, as its folder and attribute are named: a transformer for the tiny SD3."""
        return "transformer" if self.script == "train_sd3" else "unet"


# The course's recipe: cosine schedule, v-prediction target, AdamW 4e-4 with warm-up and cosine decay, batch 256,
# an EMA of the weights, bf16 on a GPU (benchmarks/README.md, "Measurements behind the recipes": v against epsilon).
COMMON = ("--ddpm_beta_schedule", "squaredcos_cap_v2", "--train_batch_size", "256", "--learning_rate", "4e-4",
          "--lr_scheduler", "cosine", "--lr_warmup_steps", "500", "--use_ema", "--seed", "0")

# digits-28-flow's U-Net: the CPU recipe's (benchmarks/cpu_recipe.py: 16 channels at full resolution, one ResNet
# layer per level, no attention) for 28-px grayscale
FLOW_UNET = dict(sample_size=28, in_channels=1, out_channels=1, layers_per_block=1, norm_num_groups=8,
                 block_out_channels=(16, 32, 64), down_block_types=("DownBlock2D",) * 3,
                 up_block_types=("UpBlock2D",) * 3)

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
        # DDIM's default x0 clipping, fed a guided prediction, collapses the samples past guidance scale 2
        # (benchmarks/cfg_clip_sample.py; chapter 7): sample without it. Set after training, weights unchanged.
        scheduler=dict(clip_sample=False),
    ),
    "digits-28-flow": Recipe(
        data="digits", resolution=28, steps=4000, prediction_type="flow",
        # Trained on a CPU: the CPU recipe's U-Net (benchmarks/cpu_recipe.py: 16 channels at full resolution, one
        # ResNet layer per level, no attention) at batch 32, far cheaper a step than digits-28's layout at batch 256,
        # on one thread (OMP_NUM_THREADS=1); the step times are in benchmarks/README.md's "Measurements behind the
        # recipes".
        unet=FLOW_UNET,
        flags=("--train_batch_size", "32", "--learning_rate", "2e-3", "--lr_warmup_steps", "100",
               "--data_on_device", "yes"),
        description="unconditional 28x28 grayscale digits by flow matching (rectified flow, as SD3 and Flux): "
        "the U-Net predicts the velocity noise - x0, sampled by Euler steps of a FlowMatchEulerDiscreteScheduler",
    ),
    "digits-28-reflow": Recipe(
        data="digits", resolution=28, steps=2000, prediction_type="flow", unet=FLOW_UNET, reflow_of="digits-28-flow",
        # Reflow (Liu et al. 2022; chapter 12): digits-28-flow's weights, trained again on 8,192 pairs of noise and
        # its own 32-step Euler sample from that noise, so that few steps land where many did.
        flags=("--reflow_pairs", "8192", "--reflow_steps", "32", "--train_batch_size", "32", "--learning_rate",
               "1e-3", "--lr_warmup_steps", "100"),
        description="unconditional 28x28 grayscale digits in few Euler steps: `digits-28-flow` straightened by "
        "reflow (trained on its own noise-to-sample pairs)",
    ),
    "digits-28-lcm": Recipe(
        data="digits", resolution=28, steps=600, distilled_from="digits-28",
        unet=dict(sample_size=28, in_channels=1, out_channels=1, **MNIST_LAYOUT),
        # Latent Consistency Models' recipe on pixels (chapter 14), the target network an EMA (0.95) of the student,
        # squared error, on a coarser grid: 10 timesteps (skip 100) where LCM has 50, the teacher crossing each
        # link in 5 DDIM steps (the same 50-step DDIM path). Fewer links carry the clean end up to t = 999 sooner:
        # 600 steps (44 CPU-minutes) score better at 1, 2, 4 and 8 steps (its card) than 1,500 steps on LCM's grid
        # of 50 (55 minutes, benchmarks/consistency_distill.py's record).
        distil=dict(batch=32, skip=100, teacher_steps=5, ema=0.95, lr=1e-4, loss="l2"),
        description="unconditional 28x28 grayscale digits in 1 to 8 steps: `digits-28` distilled into a "
        "consistency model (LCM), sampled by its LCMScheduler",
        tags=("unconditional-image-generation", "consistency-distillation", "lcm"),
    ),
    "butterflies-32": Recipe(
        data="butterflies", resolution=32, steps=4000,
        # The CPU recipe (benchmarks/cpu_recipe.py): 16 channels at full resolution make a step cheaper than the
        # first GPU run's (32, 64, 128, 128); the v target fixed its over-saturated backgrounds.
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
    "tiny-sd-butterflies": Recipe(
        data="butterflies", resolution=32, script="train_text_to_image",  # the script's defaults: no flags
        description="a tiny Stable Diffusion: 32x32 synthetic butterflies from a caption naming the wing "
        "and background colours (e.g. \"a red butterfly on a blue background\")",
        tags=("text-to-image", "stable-diffusion"),
    ),
    "tiny-sd3-butterflies": Recipe(
        data="butterflies", resolution=32, script="train_sd3",
        # benchmarks/tiny_sd3.py: SD3's patch size 2 beat patch 1 at equal CPU time, shift 1 beat SD3's 3 at 32 px;
        # a step takes about 0.1 s at batch 32 on one thread
        flags=("--max_train_steps", "10000", "--train_batch_size", "32", "--learning_rate", "3e-4",
               "--flow_shift", "1.0"),
        description="a tiny Stable Diffusion 3: an MM-DiT trained by flow matching on `tiny-sd-butterflies`' "
        "latents, reading its text encoder, for 32x32 butterflies from a caption naming the wing and background "
        "colours",
        tags=("text-to-image", "stable-diffusion-3", "mmdit", "flow-matching"),
    ),
}
NAMES = tuple(RECIPES)
N_BUTTERFLIES = 5000  # drawings in butterflies-32's training set
N_CLIPS = 4000  # synthesised major arpeggios in audio-arpeggios-32's training set
N_TONAL = 50  # clips per row whose tonal share (librosa.pyin) the audio card measures
