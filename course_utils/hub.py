"""Talking to the Hugging Face Hub, or knowing quickly that we cannot."""

from __future__ import annotations

import os
import socket

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
