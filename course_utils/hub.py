"""Talking to the Hugging Face Hub, or knowing quickly that we cannot."""

from __future__ import annotations

import logging
import os
import shlex
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

_TRUE = {"1", "true", "yes", "on"}
T = TypeVar("T")

DEFAULT_ENDPOINT = "https://huggingface.co"


def hub_endpoint() -> str:
    """The Hub the course talks to: ``HF_ENDPOINT`` when set (a mirror, or a test Hub), else huggingface.co.

    ``huggingface_hub``, ``datasets``, ``diffusers`` and ``transformers`` read the same variable, so every
    download and upload goes where the course's own probe looks.
    """
    return (os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def endpoint_address(url: str) -> tuple[str, int]:
    """The (host, port) a URL connects to: its own port, else 443 for https and 80 for http."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL: set HF_ENDPOINT to one like https://hf-mirror.com")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


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


def is_offline(url: str | None = None, timeout: float = 2.0) -> bool:
    """True when offline mode is asked for, or ``url`` (default: the Hub, ``hub_endpoint()``) cannot be reached
    in one quick try."""
    return env_offline() or not can_reach(*endpoint_address(url or hub_endpoint()), timeout=timeout)


# ---- Sharing a pipeline: token, model card, what goes up, the upload itself -------------------------

# Never uploaded: training state (checkpoints, optimizer), logs, temporary and hidden files.
UPLOAD_IGNORE = ["checkpoint-*", "checkpoint-*/**", "logs/**", "*.tmp*", "**/.*", ".*", ".*/**"]


def find_token(login: bool = False) -> str | None:
    """The Hub token from ``HF_TOKEN``, in Colab the ``HF_TOKEN`` secret, with ``login`` the one saved by
    ``hf auth login``; ``None`` when there is none.

    The token is returned, never printed: show ``token is not None``, not the token.
    """
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    try:
        from google.colab import userdata  # type: ignore[import-not-found]

        token = (userdata.get("HF_TOKEN") or "").strip()
    except Exception:  # not in Colab, or the secret is missing / not shared with this notebook
        token = ""
    if not token and login:
        from huggingface_hub import get_token

        token = (get_token() or "").strip()
    return token or None


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
    pipeline_class: str = "DDPMPipeline",
    prompt: str | None = None,
    arguments: str = "",
    load_arguments: str = "",
) -> ModelCard:
    """A model card for a pipeline (an unconditional ``DDPMPipeline`` by default; pass ``pipeline_class`` and a
    ``prompt`` for a text-to-image one, and the call's other ``arguments``, e.g. ``"num_inference_steps=2"``, and
    ``from_pretrained``'s, ``load_arguments``): YAML metadata, a description and a usage snippet."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(license=license, library_name="diffusers", tags=list(tags), datasets=list(datasets) or None)
    template = (
        "---\n{{ card_data }}\n---\n\n# {{ repo_id }}\n\n{{ description }}\n\n## Usage\n\n"
        "```python\nfrom diffusers import {{ pipeline_class }}\n\n"
        "pipeline = {{ pipeline_class }}.from_pretrained(\"{{ repo_id }}\"{{ load_arguments }})\n"
        "image = pipeline({{ prompt }}).images[0]\nimage\n```\n"
    )
    call = ", ".join(a for a in (repr(prompt) if prompt else "", arguments) if a)
    return ModelCard.from_template(data, template_str=template, repo_id=repo_id, description=description,
                                   pipeline_class=pipeline_class, prompt=call,
                                   load_arguments=f", {load_arguments}" if load_arguments else "")


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


# ---- Checking a push before the work that precedes it -----------------------------------------------

TOKENS_PAGE = "https://huggingface.co/settings/tokens"


class PushCheckError(RuntimeError):
    """Why an upload cannot work, in one line that says how to fix it (never containing the token)."""


def repo_id_problem(repo_id: str) -> str | None:
    """Why ``repo_id`` is not a valid Hub repo id (``name`` or ``namespace/name``), or None when it is."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return (f"{repo_id!r} is not a valid Hub repo id: use 'name' or 'namespace/name' with letters, digits, "
                "'-', '_' and '.', at most 96 characters, no '--' or '..'")
    return None


def check_push_access(repo_id: str | None, default_name: str = "", network: bool = True) -> str:
    """The repo id an upload would go to (``<user>/<default_name>`` when ``repo_id`` is None), once a token
    is found, offline mode is off, the Hub answers, and the token may write there; else ``PushCheckError``.

    With ``network=False`` only the local checks run (token, offline mode, id syntax).
    """
    import huggingface_hub

    if repo_id is not None and (problem := repo_id_problem(repo_id)):
        raise PushCheckError(problem)
    token = find_token(login=True)
    if not token:
        raise PushCheckError(f"no Hub token found: set HF_TOKEN to a write token from {TOKENS_PAGE} "
                             "(or run `hf auth login`)")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE:
        raise PushCheckError("HF_HUB_OFFLINE is set, so nothing can be uploaded: unset it to upload")
    if not network:
        return repo_id or default_name
    if not can_reach(*endpoint_address(hub_endpoint())):
        raise PushCheckError(f"cannot reach the Hub at {hub_endpoint()} (no network, a firewall/proxy in the way, "
                             "or HF_ENDPOINT names a mirror that is down): check the connection")
    try:
        me = huggingface_hub.whoami(token=token)
    except Exception as err:  # the token's text is never part of these messages
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status == 401:
            raise PushCheckError(f"the Hub refused the token as invalid or expired: make a new write token at "
                                 f"{TOKENS_PAGE} and put it in HF_TOKEN") from None
        raise PushCheckError(f"the Hub did not say whom the token belongs to ({type(err).__name__}, "
                             f"HTTP {status}): try again later") from None
    user = me.get("name", "")
    if repo_id is None:
        repo_id = f"{user}/{default_name}"
        if problem := repo_id_problem(repo_id):
            raise PushCheckError(f"{problem} (made from your user name and the output folder's name)")
    namespace = repo_id.split("/")[0] if "/" in repo_id else user
    access = (me.get("auth") or {}).get("accessToken") or {}
    if access.get("role") == "read":
        raise PushCheckError(f"the token is read-only, so it cannot write {repo_id}: make a write token at "
                             f"{TOKENS_PAGE}")
    orgs = {org.get("name"): org.get("roleInOrg") for org in me.get("orgs") or []}
    if namespace != user and namespace not in orgs:
        mine = ", ".join([user, *orgs])
        raise PushCheckError(f"the token belongs to {user!r}, who cannot create repos under {namespace!r}: "
                             f"use one of your namespaces ({mine}), e.g. {user}/{repo_id.split('/')[-1]}")
    if orgs.get(namespace) == "read":
        raise PushCheckError(f"{user!r} has only read access to the organisation {namespace!r}: ask an admin "
                             "for write access or push to your own namespace")
    if access.get("role") == "fineGrained":
        scoped = (access.get("fineGrained") or {}).get("scoped") or []
        if not any("repo.write" in s.get("permissions", []) and (s.get("entity") or {}).get("name")
                   in (namespace, repo_id) for s in scoped):
            raise PushCheckError(f"the fine-grained token has no 'repo.write' permission for {namespace!r}: "
                                 f"add it to the token at {TOKENS_PAGE}")
    return repo_id


def upload_command(folder: str | Path, repo_id: str) -> str:
    """A shell command that uploads a saved pipeline later with ``upload_pipeline`` (the token found then)."""
    code = ("from course_utils.hub import find_token, upload_pipeline; "
            f"print(upload_pipeline({str(folder)!r}, {repo_id!r}, find_token(login=True)))")
    return f"python -c {shlex.quote(code)}"


# ---- What the chapters load from the Hub, and what they use when it is gone ---------------------------------

# Every Hub repository a chapter loads when online, and what the chapter uses instead when the Hub no longer has
# it (repositories get deleted or renamed, as runwayml/stable-diffusion-v1-5 was). A renamed id changes here.
HUB_REPOS: dict[str, str] = {
    "huggan/smithsonian_butterflies_subset": "the course's drawn butterflies",  # dataset: chapters 0, 3, 5
    "johnowhitaker/ddpm-butterflies-32px": "the shipped butterflies-32",  # chapter 3, beside the learner's model
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "the shipped tiny-sd-butterflies",  # chapter 8, full profile
    "sd-dreambooth-library/mr-potato-head": "no DreamBooth model (that cell is skipped)",  # chapter 8, full
    "teticio/audio-diffusion-instrumental-hiphop-256": "the shipped audio-arpeggios-32",  # chapter 10, full
    "marsyas/gtzan": "the course's synthesised arpeggios",  # dataset: chapter 10, full
}


def is_gone(err: BaseException | None) -> bool:
    """True when ``err``, or an error it was raised from, says the Hub has no such repository."""
    from huggingface_hub.errors import RepositoryNotFoundError

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, RepositoryNotFoundError) or type(err).__name__ == "DatasetNotFoundError":
            return True
        err = err.__cause__ or err.__context__
    return False


def from_hub(repo_id: str, load: Callable[[], T], fallback: Callable[[], T]) -> T:
    """``load()`` the Hub repository ``repo_id``; when the Hub says it does not exist, say so in one line and
    return ``fallback()`` (what ``HUB_REPOS`` names) instead of a traceback. Any other error still raises."""
    if repo_id not in HUB_REPOS:
        raise KeyError(f"{repo_id!r} is not in course_utils.hub.HUB_REPOS: add it there with its fallback")
    quiet = [logging.getLogger(name) for name in ("diffusers", "huggingface_hub", "datasets")]
    levels = [log.level for log in quiet]
    for log in quiet:  # the libraries' own "Repository Not Found ... Will try the cache" lines
        log.setLevel(logging.ERROR)
    try:
        return load()
    except Exception as err:
        if not is_gone(err):
            raise
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)
    print(f"{repo_id} is not on the Hub any more (deleted or renamed): using {HUB_REPOS[repo_id]} instead.")
    return fallback()
