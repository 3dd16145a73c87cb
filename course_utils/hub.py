"""Talking to the Hugging Face Hub, or knowing quickly that we cannot."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

_TRUE = {"1", "true", "yes", "on"}

HUB_HOST = "huggingface.co"


def env_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def can_reach(host: str, port: int = 443, timeout: float = 2.0) -> bool:
    """True if a TCP connection to ``host:port`` opens within ``timeout`` seconds (one try, no retries)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def is_offline(host: str = HUB_HOST, port: int = 443, timeout: float = 2.0) -> bool:
    """True when offline mode is asked for, or the Hub cannot be reached in one quick try."""
    return env_offline() or not can_reach(host, port, timeout)


# ---- Sharing a pipeline: token, model card, what goes up, the upload itself -------------------------

# Never uploaded: training state (checkpoints, optimizer), logs, temporary and hidden files.
UPLOAD_IGNORE = ["checkpoint-*", "checkpoint-*/**", "logs/**", "*.tmp*", "**/.*", ".*", ".*/**"]


def find_token() -> str | None:
    """The Hub token from ``HF_TOKEN`` or, in Colab, the ``HF_TOKEN`` secret; ``None`` when there is none.

    The token is returned, never printed: show ``token is not None``, not the token.
    """
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    try:
        from google.colab import userdata  # type: ignore[import-not-found]

        return (userdata.get("HF_TOKEN") or "").strip() or None
    except Exception:  # not in Colab, or the secret is missing / not shared with this notebook
        return None


def upload_plan(folder: str | Path) -> list[str]:
    """The files (relative, ``/``-separated, sorted) that an upload of ``folder`` sends, after ``UPLOAD_IGNORE``."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: save the pipeline there first (save_pretrained).")
    files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return sorted(filter_repo_objects(files, ignore_patterns=UPLOAD_IGNORE))


def pipeline_card(
    repo_id: str,
    description: str,
    license: str = "mit",
    tags: Sequence[str] = ("pytorch", "diffusers", "unconditional-image-generation", "diffusion-models-class"),
    datasets: Sequence[str] = (),
) -> ModelCard:
    """A model card for an unconditional ``DDPMPipeline``: YAML metadata, a description and a usage snippet."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(license=license, library_name="diffusers", tags=list(tags), datasets=list(datasets) or None)
    template = (
        "---\n{{ card_data }}\n---\n\n# {{ repo_id }}\n\n{{ description }}\n\n## Usage\n\n"
        "```python\nfrom diffusers import DDPMPipeline\n\n"
        "pipeline = DDPMPipeline.from_pretrained(\"{{ repo_id }}\")\n"
        "image = pipeline().images[0]\nimage\n```\n"
    )
    return ModelCard.from_template(data, template_str=template, repo_id=repo_id, description=description)


def upload_pipeline(folder: str | Path, repo_id: str, token: str | None, private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` (minus ``UPLOAD_IGNORE``); return the repo's URL.

    Refuses, before any network call, when ``token`` is empty: set ``HF_TOKEN`` (or a Colab secret) first.
    """
    from huggingface_hub import create_repo, upload_folder

    if not token:
        raise PermissionError(
            f"no Hub token, so nothing was uploaded to {repo_id}: set the HF_TOKEN environment variable "
            "(or add an HF_TOKEN secret in Colab) to a write token from https://huggingface.co/settings/tokens."
        )
    files = upload_plan(folder)
    if "model_index.json" not in files:
        raise FileNotFoundError(f"{folder} has no model_index.json: it is not a saved pipeline (save_pretrained).")
    url = create_repo(repo_id, token=token, private=private, exist_ok=True)
    upload_folder(repo_id=repo_id, folder_path=str(folder), token=token, ignore_patterns=UPLOAD_IGNORE,
                  commit_message="Upload DDPMPipeline from the diffusion course")
    return str(url)
