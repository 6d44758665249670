"""The stand-in for NVIDIA's CUDA repository (lab and the cuda role's Molecule scenario): packages with the
repository's names, versions and layout, an index apt reads, and a rebuild only when the content changes."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from baremetal_ai.lab import standin_repo

SPECS = ("12.4:12.4.0-1:V12.4.99", "12.4:12.4.1-1:V12.4.131", "12.6:12.6.3-1:V12.6.85")


def _stanzas(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        out.append(dict(line.split(": ", 1) for line in block.splitlines()))
    return out


def test_repository_has_the_repository_names_versions_and_a_true_index(tmp_path):
    dest = tmp_path / "repo"
    assert standin_repo.main([str(dest), *SPECS]) == 0
    stanzas = _stanzas((dest / "Packages").read_text())
    assert [(s["Package"], s["Version"]) for s in stanzas] == [
        ("cuda-toolkit-12-4", "12.4.0-1"), ("cuda-toolkit-12-4", "12.4.1-1"), ("cuda-toolkit-12-6", "12.6.3-1")]
    for s in stanzas:
        deb = dest / s["Filename"]
        data = deb.read_bytes()
        assert int(s["Size"]) == len(data) and s["SHA256"] == hashlib.sha256(data).hexdigest()
        assert s["Description"].startswith("stand-in for NVIDIA's CUDA")  # says what it is
    files = subprocess.run(["dpkg-deb", "-c", str(dest / "cuda-toolkit-12-6_12.6.3-1_all.deb")],
                           capture_output=True, text=True, check=True).stdout
    for path in ("./usr/local/cuda-12.6/bin/nvcc", "./usr/local/cuda-12.6/version.json",
                 "./usr/local/cuda-12.6/lib64/libcudart.so.12.6"):
        assert path in files
    assert "root/root" in files and "-rwxr-xr-x root/root" in files  # owned by root; nvcc executable


def test_stand_in_nvcc_prints_what_nvcc_prints(tmp_path):
    dest = tmp_path / "repo"
    standin_repo.build(dest, (("12.2", "12.2.2-1", "V12.2.140"),))
    unpacked = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(dest / "cuda-toolkit-12-2_12.2.2-1_all.deb"), str(unpacked)], check=True)
    out = subprocess.run([str(unpacked / "usr/local/cuda-12.2/bin/nvcc"), "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.splitlines() == ["nvcc: NVIDIA (R) Cuda compiler driver",
                                "Cuda compilation tools, release 12.2, V12.2.140"]
    assert '"version": "12.2.2"' in (unpacked / "usr/local/cuda-12.2/version.json").read_text()


def test_rebuilt_only_when_the_content_changes(tmp_path):
    dest = tmp_path / "repo"
    assert standin_repo.build(dest) is True
    before = (dest / "Packages").stat().st_mtime_ns
    assert standin_repo.build(dest) is False  # a second `lab up`: nothing to do
    assert (dest / "Packages").stat().st_mtime_ns == before
    assert standin_repo.build(dest, (("12.4", "12.4.0-1", "V12.4.99"),)) is True
    assert [s["Package"] for s in _stanzas((dest / "Packages").read_text())] == ["cuda-toolkit-12-4"]
    assert not list(tmp_path.glob(".standin-*"))  # no work directory left behind
    assert dest.stat().st_mode & 0o777 == 0o755  # readable by apt's _apt user in the node


@pytest.mark.parametrize("spec", ["12.4", "12.4:12.4.0-1", "12.4::V1", "a:b:c:d"])
def test_bad_toolkit_spec_names_the_form(tmp_path, spec, capsys):
    assert standin_repo.main([str(tmp_path / "r"), spec]) == 2
    err = capsys.readouterr().err
    assert spec in err and "VERSION:PACKAGE_VERSION:NVCC_BUILD" in err
    assert not (tmp_path / "r").exists()


def test_no_arguments_prints_usage(capsys):
    assert standin_repo.main([]) == 2
    assert "usage: python -m baremetal_ai.lab.standin_repo DEST" in capsys.readouterr().err


def test_source_line_names_the_node_path():
    assert f"deb [trusted=yes] file:{standin_repo.NODE_PATH} ./\n" == standin_repo.SOURCE_LINE
    assert standin_repo.package_name("12.10") == "cuda-toolkit-12-10"
