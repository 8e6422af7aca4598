"""MACE models: where the file comes from, what is in it, and how to load it.

No AiiDA imports (the MD runner uses this on compute nodes). torch and mace-torch are
imported lazily, so importing this module is cheap and works without them;
:data:`FOUNDATION_MODELS` is resolved on first access.

Foundation models are named as ``mace_mp(model=...)`` names them (``small``, ``medium``,
``large``, ``medium-mpa-0``, ...). The name -> URL table and the cache directory are
mace-torch's own (``mace.calculators.foundations_models.mace_mp_urls`` and
``mace.tools.utils.get_cache_dir``, i.e. ``$XDG_CACHE_HOME/mace`` or ``~/.cache/mace``),
so a file that ``mace_mp`` downloaded is found here and vice versa. Compute nodes are
usually offline, hence :func:`resolve_mace_model` does not download unless asked to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aiida_lifdiff.potentials import file_sha256

# e3nn 0.4.4 pickles constants that torch >= 2.6's weights-only loader refuses; mace-torch
# sets the same variable itself, but only once its calculator module has been imported.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")

#: mace-torch prefers a copy of MACE-MPA-0 medium shipped inside its package for these names.
_PACKAGED_NAMES = (None, "medium-mpa-0")


class MaceModelUnavailable(FileNotFoundError):
    """A MACE model named by the user is neither a local file nor in mace-torch's cache."""


def __getattr__(name: str) -> Any:
    if name == "FOUNDATION_MODELS":
        return _foundation_models()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _foundation_models() -> dict[str, str]:
    """Foundation name -> download URL, exactly as mace-torch's ``mace_mp`` knows them."""
    from mace.calculators.foundations_models import mace_mp_urls

    return dict(mace_mp_urls)


def foundation_cache_path(name: str) -> Path:
    """The file mace-torch reads (or downloads to) for the foundation model ``name``."""
    from mace.tools.utils import get_cache_dir

    models = _foundation_models()
    if name not in models:
        raise KeyError(f"unknown MACE foundation model {name!r}; known names: {sorted(models)}")
    # mace-torch names the cached file after the URL basename with everything but
    # alphanumerics and '_' removed (download_mace_mp_checkpoint); it has no function for
    # it, so the rule is repeated here and checked against a real cache in the tests.
    basename = os.path.basename(models[name])
    return Path(get_cache_dir()) / "".join(c for c in basename if c.isalnum() or c == "_")


def _packaged_model(name: str) -> Path | None:
    if name not in _PACKAGED_NAMES:
        return None
    from mace.calculators import foundations_models

    path = Path(foundations_models.local_model_path)
    return path if path.is_file() else None


def resolve_mace_model(name_or_path: str | os.PathLike, allow_download: bool = False) -> Path:
    """A usable model file for a local path or a foundation name.

    :param name_or_path: an existing file (returned unchanged), or a key of
        :data:`FOUNDATION_MODELS`.
    :param allow_download: let mace-torch download a foundation model missing from its
        cache (needs network; compute nodes usually have none).
    :raises MaceModelUnavailable: the file does not exist, or the foundation model is not
        cached and downloading is not allowed (or failed); the message says where to put it.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(name_or_path)
    models = _foundation_models()
    if name not in models:
        raise MaceModelUnavailable(
            f"MACE model {name!r} is not a file and not a foundation model name "
            f"(known names: {', '.join(sorted(models))})"
        )
    packaged = _packaged_model(name)
    if packaged is not None:
        return packaged
    cached = foundation_cache_path(name)
    if cached.is_file():
        return cached
    url = models[name]
    if allow_download:
        from mace.calculators.foundations_models import download_mace_mp_checkpoint

        try:
            return Path(download_mace_mp_checkpoint(name))
        except Exception as exc:  # urllib raises many kinds; the advice is the same for all
            raise MaceModelUnavailable(
                f"downloading MACE foundation model {name!r} from {url} failed ({exc}); "
                f"download it elsewhere and put it at {cached}, or pass a local model path"
            ) from exc
    raise MaceModelUnavailable(
        f"MACE foundation model {name!r} is not in mace-torch's cache and downloading is off. "
        f"Put the file at {cached} (download it from {url}; the cache directory follows "
        f"$XDG_CACHE_HOME, default ~/.cache/mace), or pass the path of a local model file instead."
    )


def check_device(device: str) -> None:
    """Refuse a device this machine cannot run on (``'cuda'`` without CUDA, unknown names)."""
    import torch

    kind = str(device).split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} (optionally 'cuda:N'), got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "CUDA requested but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
            "run on a GPU node or set device to 'cpu'"
        )


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return torch.float32 if dtype == "float32" else torch.float64


def load_mace_model(path: str | os.PathLike, device: str = "cpu", dtype: str = "float64"):
    """The MACE ``torch.nn.Module`` in ``path`` on ``device`` with weights cast to ``dtype``.

    Parameters are frozen (forces come from autograd w.r.t. positions only, so parameter
    gradients would be wasted work).
    """
    import torch

    check_device(device)
    torch_dtype = _torch_dtype(dtype)
    path = Path(path)
    if not path.is_file():
        raise MaceModelUnavailable(f"MACE model file {path} does not exist")
    model = torch.load(f=str(path), map_location=device, weights_only=False)
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "atomic_numbers"):
        raise ValueError(
            f"{path} does not hold a MACE model (got {type(model).__name__}); "
            "expected a file written by mace_run_train (the *.model, not a checkpoint *.pt)"
        )
    model = model.to(device=device, dtype=torch_dtype)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def mace_calculator(path: str | os.PathLike, device: str = "cpu", dtype: str = "float64"):
    """mace-torch's own ASE calculator (``MACECalculator``) for the model file ``path``."""
    check_device(device)
    _torch_dtype(dtype)
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(path), device=device, default_dtype=dtype)


def model_info(path: str | os.PathLike) -> dict:
    """What a model file holds: species, cutoff, weights dtype, architecture, size, sha256.

    Keys: ``species`` (symbols), ``atomic_numbers``, ``r_max`` (A), ``dtype``,
    ``num_interactions``, ``hidden_irreps``, ``channels`` (multiplicity of the scalar
    hidden features), ``max_L`` (highest hidden irrep), ``max_ell``, ``correlation``,
    ``heads``, ``model_class``, ``num_parameters``, ``sha256``, ``size_bytes``.
    The architecture comes from mace-torch's ``extract_config_mace_model`` where the model
    class supports it; otherwise those keys are None.
    """
    import torch
    from ase.data import chemical_symbols

    path = Path(path)
    model = torch.load(f=str(path), map_location="cpu", weights_only=False)
    zs = [int(z) for z in model.atomic_numbers]
    parameters = list(model.parameters())
    info: dict[str, Any] = {
        "model_class": type(model).__name__,
        "atomic_numbers": zs,
        "species": [chemical_symbols[z] for z in zs],
        "r_max": float(model.r_max),
        "dtype": str(parameters[0].dtype).replace("torch.", "") if parameters else None,
        "num_interactions": int(model.num_interactions),
        "num_parameters": int(sum(p.numel() for p in parameters)),
        "heads": list(getattr(model, "heads", ["Default"])),
        "hidden_irreps": None,
        "channels": None,
        "max_L": None,
        "max_ell": None,
        "correlation": None,
        "sha256": file_sha256(path),
        "size_bytes": path.stat().st_size,
    }
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(model)
    if "error" not in config:
        from e3nn import o3

        hidden = o3.Irreps(str(config["hidden_irreps"]))
        info["hidden_irreps"] = str(hidden)
        info["channels"] = int(hidden.count(o3.Irrep(0, 1)))
        info["max_L"] = int(hidden.lmax)
        info["max_ell"] = int(config["max_ell"])
        correlation = config["correlation"]
        info["correlation"] = int(correlation if isinstance(correlation, int) else max(correlation))
    return info
