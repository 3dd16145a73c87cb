"""Print the Python, the versions of the packages the course uses, and where course_utils was imported from.

`make test-colab` runs it in its fresh environment (run it from outside the repository, so that the installed
package, not the working tree, is the one imported).
"""

import importlib.metadata
import platform
from datetime import date

PACKAGES = ("torch", "torchvision", "diffusers", "datasets", "huggingface_hub", "transformers", "accelerate", "peft",
            "safetensors", "tensorboard", "numpy", "pillow", "scikit-learn", "scipy", "matplotlib", "pandas",
            "ipywidgets", "tqdm", "nbval")

if __name__ == "__main__":
    import course_utils

    print(f"date {date.today().isoformat()}; python {platform.python_version()}; course_utils from "
          f"{course_utils.__file__}")
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name:16s} {version}")
