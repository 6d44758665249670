"""`baremetal report`: renders fixture validation results and drift runs (tests/fixtures/report/README.md) as
HTML + Markdown and checks what a reader would look for; bad input gets one clear error naming file and field."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from baremetal_ai import cli, report

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "report"


def run(tmp: Path, *extra: str, results: Path = FIX / "results", drift: Path = FIX / "drift") -> int:
    return cli.main(["report", "--results", str(results), "--drift", str(drift), "--out", str(tmp / "out"), *extra])


def test_report_html_is_self_contained_with_plots_and_tables(tmp_path, capsys):
    rc = run(tmp_path)
    assert rc == 1  # lab-node3 failed iperf3 in the latest run, and the latest drift run found drift
    out = tmp_path / "out"
    page = (out / "report.html").read_text()
    # self-contained: every image is embedded, nothing is fetched
    imgs = re.findall(r"<img [^>]*src='([^']+)'", page)
    assert len(imgs) == 2 and all(s.startswith("data:image/png;base64,") for s in imgs)
    for s in imgs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(src|href)=['\"]https?://", page)
    # verdict line, the failure, the latest run, the benchmark rows with floor and fleet median
    assert "needs attention" in page and "lab-node3/network_iperf3_gbps" in page
    assert "Validation run 20261127T020000Z" in page
    assert "<td>network_iperf3_gbps</td><td>lab-node3</td><td>0.41</td><td>Gbit/s</td><td>0.5</td><td>2.5</td>" \
           "<td class=\"v-fail\">fail</td>" in page
    assert "Trends (last 2 runs)" in page
    # the drift table names host and item from the latest drift run, and the history lists both runs
    assert "Drift run 20261127T021000Z" in page
    assert "<td>lab-node1</td><td class=\"v-drift\">drift</td><td>fact differs</td><td>mtu.eth1</td>" \
           "<td>9000 → 1500</td>" in page
    assert "service.prometheus-node-exporter" in page and "hardening : Write the sshd drop-in" in page
    assert "20261126T021000Z" in page
    summary = json.loads((out / "report.json").read_text())
    assert summary["validation_failures"] == ["lab-node3/network_iperf3_gbps"]
    assert summary["drift_verdict"] == "drift" and summary["validation_runs"] == ["20261126T020000Z",
                                                                                  "20261127T020000Z"]
    assert "report:" in capsys.readouterr().out


def test_report_markdown_references_the_pngs_beside_it(tmp_path):
    run(tmp_path)
    out = tmp_path / "out"
    md = (out / "report.md").read_text()
    assert "![benchmarks per node](benchmarks.png)" in md and "![trends](trends.png)" in md
    assert (out / "benchmarks.png").read_bytes()[:4] == b"\x89PNG" and (out / "trends.png").is_file()
    assert "| lab-node1 | drift | fact differs | mtu.eth1 | 9000 → 1500 |" in md
    assert "| lab-node1 | drift | fact differs | package.jq | 1.6-2.1+deb12u3 → (absent) |" in md
    assert "| network_iperf3_gbps | lab-node3 | 0.41 | Gbit/s | 0.5 | 2.5 | fail |" in md


def test_healthy_fleet_exits_zero(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIX / "results" / "20261126T020000Z", results / "20261126T020000Z")
    drift = tmp_path / "drift"
    drift.mkdir()
    shutil.copy(FIX / "drift" / "20261126T021000Z.json", drift)
    assert run(tmp_path, results=results, drift=drift) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<b>healthy</b>" in page and "Trends" not in page  # one run: no trend plot


def test_last_limits_the_runs(tmp_path):
    run(tmp_path, "--last", "1")
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert summary["validation_runs"] == ["20261127T020000Z"] and summary["drift_runs"] == ["20261127T021000Z"]


def test_nothing_to_report_is_a_clear_error(tmp_path, capsys):
    assert run(tmp_path, results=tmp_path / "none", drift=tmp_path / "none") == 2
    assert "nothing to report" in capsys.readouterr().err


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.update(schema_version=9), "schema_version: expected 1, got 9"),
    (lambda d: d.update(checks="x"), "checks: expected list"),
    (lambda d: d["checks"][1].update(value="fast"), "checks[1].value (storage_seq_write_mbps): expected a number"),
])
def test_malformed_result_names_the_file_and_field(tmp_path, capsys, mutate, field):
    results = tmp_path / "results"
    shutil.copytree(FIX / "results" / "20261127T020000Z", results / "20261127T020000Z")
    f = results / "20261127T020000Z" / "lab-node2.json"
    doc = json.loads(f.read_text())
    mutate(doc)
    f.write_text(json.dumps(doc))
    assert run(tmp_path, results=results, drift=tmp_path / "none") == 2
    err = capsys.readouterr().err
    assert str(f) in err and field in err


def test_malformed_drift_run_names_the_field(tmp_path, capsys):
    drift = tmp_path / "drift"
    drift.mkdir()
    (drift / "x.json").write_text(json.dumps({"schema_version": 1, "kind": "drift", "run_id": "x", "verdict": 3,
                                              "hosts": {}}))
    assert run(tmp_path, results=tmp_path / "none", drift=drift) == 2
    assert "verdict: expected str" in capsys.readouterr().err


def test_bad_last_is_refused(tmp_path, capsys):
    assert run(tmp_path, "--last", "0") == 2
    assert "--last" in capsys.readouterr().err


def test_fleet_median_and_floor_helpers():
    runs = report.load_validation_runs(FIX / "results")
    assert [r["run_id"] for r in runs] == ["20261126T020000Z", "20261127T020000Z"]
    med = report.fleet_medians(runs[-1])
    assert med["network_iperf3_gbps"] == pytest.approx(2.5)
    c = runs[-1]["docs"]["lab-node3"]["checks"]
    assert report.floor_of(next(x for x in c if x["check"] == "network_iperf3_gbps")) == 0.5
