"""Interatomic potentials and how each engine uses them (no AiiDA imports)."""

from __future__ import annotations

import hashlib
from typing import BinaryIO


def stream_sha256(handle: BinaryIO) -> str:
    """Hex sha256 of an open binary stream, read in chunks (foundation models are hundreds of MB)."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path) -> str:
    """Hex sha256 of a file: the identity of a model file in the database and in every log."""
    with open(path, "rb") as handle:
        return stream_sha256(handle)
