"""Study files and the CLI: bad input is refused with a clear message before anything is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from aiida_lifdiff.cli.main import cli
from aiida_lifdiff.study import StudyError, load_study

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_demo_study_is_valid():
    study = load_study(REPO / "workchains" / "demo.yaml")
    assert study.protocol == "quick"
    assert len(study.inputs["temperatures_K"]) >= 3
    assert study.inputs["supercell"]["repeat"] == 2
    # The demo is a benchmark: the classical reference and two models trained on its labels.
    assert study.potentials["tosi_fumi"]["kind"] == "classical"
    assert {name for name, spec in study.potentials.items() if "train" in spec} == {"mace", "deepmd"}
    assert study.training["sampler"] == study.training["labeller"] == "tosi_fumi"


def test_classical_study_is_valid():
    study = load_study(REPO / "workchains" / "classical.yaml")
    assert study.potential["kind"] == "classical" and not study.potentials


BENCHMARK = """reference: ref
potentials:
  ref: {kind: classical}
  mace: {kind: mace, train: {}}
training: {sampler: ref, labeller: ref}
"""


def test_overrides_merge_into_the_protocol(tmp_path):
    study = load_study(write(tmp_path, "potential: {kind: classical}\nmd: {production_ps: 10}\n"))
    assert study.inputs["md_settings"]["production_ps"] == 10
    assert study.inputs["md_settings"]["timestep_fs"] == 1.0  # kept from the protocol


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("potential: {kind: classical}\ntemperature: [1, 2, 3]\n", r"unknown key\(s\) \['temperature'\]"),
        ("potential: {kind: classical}\ntemperatures_K: [800, 900]\n", "at least 3 temperatures"),
        ("potential: {kind: classical}\ntemperatures_K: [800, 900, 900]\n", "at least 3 distinct temperatures"),
        ("potential: {kind: classical}\ntemperatures_K: [800, 900, -5]\n", "every temperature must be > 0 K"),
        ("potential: {kind: classical}\ntemperatures_K: [800, 900, 0]\n", "every temperature must be > 0 K"),
        ("name: x\n", "either 'potential' .* or 'potentials'"),
        ("potential: {kind: mace, train: {}}\n", "a trained potential belongs in 'potentials'"),
        (
            BENCHMARK.replace("training: {sampler: ref, labeller: ref}\n", ""),
            "train.data: name the dataset to train on",
        ),
        (BENCHMARK.replace("sampler: ref", "sampler: mace"), "training.sampler must name one of the given"),
        (BENCHMARK.replace("labeller: ref", "labeller: nobody"), "training.labeller must name one of the given"),
        (BENCHMARK.replace("train: {}", "train: {epochs: 3}"), r"potentials.mace.train: unknown key\(s\) \['epochs'\]"),
        (BENCHMARK.replace("train: {}", "train: {finetune_from: ref}"), "finetune_from must name a given MACE"),
        (BENCHMARK.replace("reference: ref\n", ""), "a benchmark needs 'reference'"),
        (BENCHMARK.replace("reference: ref", "reference: dft"), "reference 'dft' is not one of the potentials"),
        (BENCHMARK.replace("train: {}", "train: {data: dft}"), "train.data must name one of the datasets"),
        (BENCHMARK.replace("train: {}", "train: {frames: 0}"), r"potentials.mace.train.frames must be >= 1"),
        (BENCHMARK.replace("train: {}", "train: {flags: {foundation_model: medium}}"), "potentials.mace.train.flags"),
        (BENCHMARK + "datasets: {dft: {path: nowhere}}\n", r"datasets.dft: .*nowhere does not exist"),
        (BENCHMARK + "evaluation: {data: dft, frames: 10}\n", "evaluation.data must name one of the datasets"),
        (BENCHMARK + "evaluation: {frames: 10}\n", r"evaluation: missing key\(s\) \['data'\]"),
        (BENCHMARK.replace("labeller: ref}", "labeller: ref, iterations: 2}"), "training.iterations > 1"),
        (BENCHMARK.replace("mace: {kind: mace, train: {}}", "mace: {kind: deepmd, train: {flags: {}}}"), "MACE only"),
        (
            BENCHMARK.replace(
                "mace: {kind: mace, train: {}}", "mace: {kind: deepmd, train: {settings: {numb_steps: 7}}}"
            ),
            "numb_steps",
        ),
        (BENCHMARK.replace("labeller: ref}", "labeller: ref, protocol: slow}"), "training: unknown protocol 'slow'"),
        (BENCHMARK.replace("ref, labeller: ref}", "ref, labeller: ref, data: {sampling: {every: 0}}}"), "every"),
        (BENCHMARK + "code: lammps@localhost\n", "names its codes under 'codes'"),
        (BENCHMARK + "codes: {gpu: x}\n", r"codes: unknown key\(s\) \['gpu'\]"),
        ("potentials:\n  ref: {kind: classical, train: {}}\n", "classical potentials are not trained here"),
        ("potentials:\n  a b: {kind: classical}\n", "potentials: name 'a b' must be letters, digits and '_'"),
        ("potential: {kind: classical, modle: x}\n", r"potential: unknown key\(s\) \['modle'\]"),
        ("potential: {kind: classical}\nstructure: {repeat: 0}\n", "structure.repeat must be >= 1, got 0"),
        ("potential: {kind: classical}\nstructure: {lattice_constant: -4}\n", "structure.lattice_constant must be > 0"),
        ("potential: {kind: classical}\nstructure: {interstitial_site: octa}\n", "unknown interstitial_site"),
        ("potential: {kind: classical}\nmd: {production_ps: 0.0105}\n", "whole number"),
        ("potential: {kind: classical}\nmd: {timestep_fs: 0}\n", "timestep_fs must be > 0"),
        ("potential: {kind: classical}\nseeds: [1, 1]\n", "seeds must be distinct"),
        ("potential: {kind: classical}\nanalysis: {fit_window: [0.5, 0.2]}\n", "fit_window"),
        ("potential: {kind: classical}\nprotocol: fast\n", "unknown protocol 'fast'"),
        ("potential: {kind: mace}\n", "exactly one of 'path'"),
        ("potential: {kind: deepmd, path: missing.pb}\n", "model file .* does not exist"),
        (
            "potential: {kind: eam}\n",
            r"potential.kind must be one of \['classical', 'mace', 'deepmd', 'universal'\], got 'eam'",
        ),
        ("potential: {kind: classical}\nmd: {engine: runner}\n", "cannot run in 'runner'"),
        ("potential: [kind, classical\n", "not valid YAML"),
        ("- a\n- b\n", "a study is a mapping"),
    ],
)
def test_bad_studies_are_refused(tmp_path, text, message):
    with pytest.raises(StudyError, match=message):
        load_study(write(tmp_path, text))


def test_cli_validate_reports_the_error(tmp_path):
    result = CliRunner().invoke(cli, ["validate", str(write(tmp_path, "potential: {kind: classical}\nfoo: 1\n"))])
    assert result.exit_code == 1
    assert "unknown key(s) ['foo']" in result.output


def test_cli_missing_profile_gives_a_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("AIIDA_PATH", str(tmp_path))
    result = CliRunner().invoke(cli, ["-p", "no-such-profile", "results"])
    assert result.exit_code == 1
    assert "cannot load AiiDA profile no-such-profile" in result.output
    assert "make demo" in result.output


def test_cli_validate_lists_the_missing_files_of_a_well_formed_study():
    result = CliRunner().invoke(cli, ["validate", str(REPO / "workchains" / "production.yaml")])
    assert result.exit_code == 1
    assert "well formed, but 2 file(s) it names are missing" in result.output
    assert "models/lif-dft-deepmd.pb does not exist" in result.output
    assert "data/lif-dft-deepmd does not exist" in result.output
