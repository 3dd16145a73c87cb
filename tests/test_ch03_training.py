"""Chapter 3's settings: the full profile is the published run (its model and target), the CPU profiles the v target."""

from course_utils.config import SETTINGS
from course_utils.diffusion import make_unet


def test_the_full_profile_builds_the_published_unet_with_the_noise_target():
    full = SETTINGS["ch3"]["full"]
    model = make_unet(full["image_size"], full["channels"], full["layers_per_block"], full["attention"])
    assert model.config.block_out_channels == (64, 128, 128, 256) and model.config.layers_per_block == 2
    assert model.config.down_block_types == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
    assert model.config.up_block_types == ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    assert full["prediction_type"] == "epsilon" and full["lr"] == 4e-4 and full["epochs"] == 30


def test_the_cpu_profiles_train_the_v_target():
    # benchmarks/cpu_recipe.py (bfly-eps vs bfly-v): in minutes of CPU the noise target still draws static
    assert SETTINGS["ch3"]["cpu"]["prediction_type"] == SETTINGS["ch3"]["small"]["prediction_type"] == "v_prediction"
