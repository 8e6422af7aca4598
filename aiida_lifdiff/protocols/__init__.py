"""Protocols: named, versioned sets of default inputs stored as YAML beside this module."""

from __future__ import annotations

import copy
from importlib import resources

import yaml


def load_protocols(name: str) -> dict:
    """The parsed ``<name>.yaml`` protocol file of this package."""
    text = resources.files(__package__).joinpath(f"{name}.yaml").read_text()
    return yaml.safe_load(text)


def get_protocol_inputs(name: str, protocol: str | None = None, overrides: dict | None = None) -> dict:
    """Inputs of ``protocol`` in file ``name`` with ``overrides`` merged in recursively."""
    data = load_protocols(name)
    protocol = protocol or data["default_protocol"]
    if protocol not in data["protocols"]:
        raise ValueError(f"unknown protocol {protocol!r}; available: {sorted(data['protocols'])}")
    inputs = copy.deepcopy(data["protocols"][protocol])
    inputs.pop("description", None)
    return recursive_merge(inputs, overrides or {})


def recursive_merge(left: dict, right: dict) -> dict:
    """``left`` updated with ``right``, merging nested dicts instead of replacing them."""
    merged = copy.deepcopy(left)
    for key, value in right.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
