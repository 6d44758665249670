"""`baremetal tco`: cost model, break-even, price-file validation, CLI and plot."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml

from baremetal_ai.errors import UserError
from baremetal_ai.planner import cli, cost

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "prices-example.yml"

SIMPLE = {
    "servers": 1,
    "cloud": {"hourly_rate": 10, "storage_per_month": 100, "egress_per_month": 0, "support_percent": 0},
    "bare_metal": {"option": "lease", "lease_per_month": 4000, "setup_fee": 1000, "network_per_month": 0,
                   "support_per_month": 0},
}


def prices(raw: dict | None = None, **bare_metal) -> cost.Prices:
    raw = json.loads(json.dumps(raw or SIMPLE))
    raw["bare_metal"].update(bare_metal)
    return cost.prices_from_dict(raw, source="prices.yml")


def write(tmp_path: Path, raw: dict) -> Path:
    f = tmp_path / "prices.yml"
    f.write_text(yaml.safe_dump(raw))
    return f


def run(argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="baremetal")
    sub = parser.add_subparsers(dest="cmd", required=True)
    cli.add_tco_parser(sub)
    rc = cli.run_tco(parser.parse_args(["tco", *argv]))
    return rc, capsys.readouterr().out


def test_hours_per_month():
    assert cost.HOURS_PER_MONTH == 730


def test_break_even_hand_computed():
    # Hand computation, 10 months, 730 h/month, 1 server:
    #   cloud total(u)      = 10 months × (10 $/h × 730 h × u + 100 storage) = 73,000·u + 1,000
    #   bare metal total(u) = 1,000 setup + 10 × 4,000 lease                  = 41,000 (no power, flat)
    #   equal when 73,000·u + 1,000 = 41,000  ⇒  u* = 40,000 / 73,000 = 0.547945...
    p = prices()
    assert cost.break_even_utilization(p, 10) == pytest.approx(40_000 / 73_000)
    # At u = 0.6: cloud 4,380 + 100 = 4,480 /month; cumulative 4,480·m vs 1,000 + 4,000·m
    #   ⇒ 480·m ≥ 1,000 ⇒ m ≥ 2.08 ⇒ bare metal is cheaper from month 3.
    r = cost.tco(p, 10, 0.6)
    assert r.cloud_monthly == pytest.approx(4_480)
    assert r.bare_metal_monthly == pytest.approx(4_000)
    assert r.cloud_total == pytest.approx(44_800)
    assert r.bare_metal_total == pytest.approx(41_000)
    assert r.savings == pytest.approx(3_800)
    assert r.break_even_month == 3
    assert r.series[0] == {"month": 0, "cloud": 0.0, "bare_metal": 1000.0}
    assert r.series[2] == {"month": 2, "cloud": 8_960.0, "bare_metal": 9_000.0}
    assert r.series[3] == {"month": 3, "cloud": 13_440.0, "bare_metal": 13_000.0}
    assert len(r.series) == 11


def test_support_percent_applies_to_the_cloud_bill():
    raw = json.loads(json.dumps(SIMPLE))
    raw["cloud"]["support_percent"] = 10
    p = cost.prices_from_dict(raw)
    # (10 × 730 × 1.0 + 100) × 1.10 = 8,140
    assert sum(cost.cloud_month(p, 1.0).values()) == pytest.approx(8_140)
    # u* over 10 months: 1.1 × (73,000·u + 1,000) = 41,000 ⇒ u = (41,000/1.1 − 1,000)/73,000
    assert cost.break_even_utilization(p, 10) == pytest.approx((41_000 / 1.1 - 1_000) / 73_000)


def test_power_cost_idle_and_full():
    p = prices(power_kw=10, idle_power_kw=4, pue=1.5, price_per_kwh=0.1)
    # (4 + (10 − 4) × 0.5) kW × 1.5 × 0.1 $/kWh × 730 h = 7 × 0.15 × 730 = 766.5
    assert cost.bare_metal_month(p, 0.5)["power"] == pytest.approx(766.5)
    flat = prices(power_kw=10, pue=1.5, price_per_kwh=0.1)  # no idle figure: always full draw
    assert cost.bare_metal_month(flat, 0.0)["power"] == pytest.approx(10 * 0.15 * 730)


def test_purchase_amortized_then_paid_off():
    p = prices(option="purchase", purchase_price=36_000, amortization_months=12, colocation_per_month=500,
               power_kw=0, pue=1.0, price_per_kwh=0, setup_fee=0)
    assert cost.bare_metal_month(p, 1.0, 1)["server"] == 3_000
    assert cost.bare_metal_month(p, 1.0, 13)["server"] == 0
    r = cost.tco(p, 24, 1.0)
    assert r.bare_metal_breakdown["server"] == pytest.approx(36_000)
    assert r.bare_metal_breakdown["colocation"] == pytest.approx(12_000)
    # month 12 → 13 adds colocation only
    assert r.series[13]["bare_metal"] - r.series[12]["bare_metal"] == pytest.approx(500)


def test_hourly_bare_metal_scales_with_utilization():
    p = prices(option="hourly", hourly_rate=5, setup_fee=0)
    # cloud 7,300·u + 100 vs bare metal 3,650·u per month: bare metal cheaper at any u ⇒ break-even 0
    assert cost.bare_metal_month(p, 0.5)["server"] == pytest.approx(5 * 730 * 0.5)
    assert cost.break_even_utilization(p, 12) == 0.0


def test_break_even_none_when_bare_metal_never_cheaper():
    p = prices(lease_per_month=100_000)
    assert cost.break_even_utilization(p, 36) is None
    assert cost.tco(p, 36, 1.0).break_even_month is None


def test_servers_multiply_per_server_rates():
    one, two = prices(), cost.Prices(**{**prices().__dict__, "servers": 2})
    assert cost.cloud_month(two, 1.0)["compute"] == 2 * cost.cloud_month(one, 1.0)["compute"]
    assert cost.bare_metal_month(two, 1.0)["server"] == 8_000
    assert cost.tco(two, 1, 1.0).bare_metal_breakdown["setup"] == 2_000


@pytest.mark.parametrize(("section", "key"), [
    ("cloud", "hourly_rate"), ("cloud", "storage_per_month"), ("cloud", "egress_per_month"),
    ("cloud", "support_percent"), ("bare_metal", "lease_per_month"), ("bare_metal", "network_per_month"),
    ("bare_metal", "support_per_month"),
])
def test_missing_rate_names_field_and_file(tmp_path, section, key):
    raw = json.loads(json.dumps(SIMPLE))
    del raw[section][key]
    f = write(tmp_path, raw)
    with pytest.raises(UserError) as exc:
        cost.load_prices(f)
    assert str(exc.value) == f'{f}: missing "{section}.{key}"'
    assert exc.value.exit_code == 2


def test_purchase_requires_power_and_colocation():
    raw = json.loads(json.dumps(SIMPLE))
    raw["bare_metal"] = {"option": "purchase", "purchase_price": 1, "amortization_months": 36,
                         "network_per_month": 0, "support_per_month": 0}
    with pytest.raises(UserError, match=re.escape('missing "bare_metal.colocation_per_month"')):
        cost.prices_from_dict(raw, "p.yml")
    raw["bare_metal"]["colocation_per_month"] = 0
    with pytest.raises(UserError, match=re.escape('p.yml: missing "bare_metal.power_kw"')):
        cost.prices_from_dict(raw, "p.yml")
    lease = json.loads(json.dumps(SIMPLE))
    lease["bare_metal"]["power_kw"] = 10  # power given for a lease: all of its rates are needed
    with pytest.raises(UserError, match=re.escape('missing "bare_metal.pue"')):
        cost.prices_from_dict(lease, "p.yml")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r["cloud"].update(hourly_rate=-1), '"cloud.hourly_rate" must be ≥ 0'),
    (lambda r: r["cloud"].update(hourly_rate="ten"), '"cloud.hourly_rate" must be a number'),
    (lambda r: r["bare_metal"].update(option="rent"), '"bare_metal.option" must be one of'),
    (lambda r: r.pop("cloud"), 'missing "cloud" section'),
    (lambda r: r.update(servers=0), '"servers" must be ≥ 1'),
    (lambda r: r["bare_metal"].update(power_kw=1, idle_power_kw=2, pue=1.2, price_per_kwh=0.1),
     '"bare_metal.idle_power_kw" exceeds'),
])
def test_bad_price_values(mutate, message):
    raw = json.loads(json.dumps(SIMPLE))
    mutate(raw)
    with pytest.raises(UserError, match=re.escape(message)):
        cost.prices_from_dict(raw, "p.yml")


def test_price_file_errors(tmp_path):
    with pytest.raises(UserError, match=r"--prices: .* does not exist"):
        cost.load_prices(tmp_path / "none.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("cloud: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        cost.load_prices(bad)


def test_horizon_and_utilization_validation():
    with pytest.raises(UserError, match="--months"):
        cost.tco(prices(), 0, 0.5)
    with pytest.raises(UserError, match="--utilization"):
        cost.tco(prices(), 12, 1.5)


def test_example_file_is_labelled_and_loads():
    text = EXAMPLE.read_text()
    assert "ILLUSTRATIVE" in text and "not quotes" in text
    p = cost.load_prices(EXAMPLE)
    assert "EXAMPLE" in p.label
    r = cost.tco(p, 36, 1.0)
    # example numbers: cloud (80 × 730 × u + 800) × 1.1; lease 25,000 + power (3 + 7u) × 1.3 × 0.12 × 730
    # + 2,500 network/support, + 2,000 setup over 36 months ⇒ u* = 27,897.2 − 880 … / (64,240 − 797.16)
    c0 = 880
    b0 = 25_000 + 3 * 1.3 * 0.12 * 730 + 2_500 + 2_000 / 36
    slope_c, slope_b = 80 * 730 * 1.1, 7 * 1.3 * 0.12 * 730
    assert r.break_even_utilization == pytest.approx((b0 - c0) / (slope_c - slope_b))


def test_cli_table_and_json(tmp_path, capsys):
    f = write(tmp_path, SIMPLE)
    rc, out = run(["--prices", str(f), "--months", "10", "--utilization", "0.6"], capsys)
    assert rc == 0
    assert "break-even utilization: 54.8%" in out
    assert "break-even month at 60%: 3" in out
    rc, out = run(["--prices", str(f), "--months", "10", "--utilization", "0.6", "--json", "--servers", "2"], capsys)
    data = json.loads(out)
    assert data["servers"] == 2
    assert data["cloud_total"] == pytest.approx(2 * 43_800 + 1_000)
    assert data["series"][-1]["month"] == 10


def test_cli_plot_writes_png(tmp_path, capsys):
    out_png = tmp_path / "tco.png"
    rc, _ = run(["--prices", str(EXAMPLE), "--plot", str(out_png)], capsys)
    assert rc == 0
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out_png.stat().st_size > 10_000


@pytest.mark.parametrize(("argv", "field"), [
    (["--months", "0"], "--months"),
    (["--utilization", "-0.1"], "--utilization"),
    (["--servers", "0"], "--servers"),
    (["--plot", "/nonexistent-dir/x.png"], "--plot"),
])
def test_cli_bad_input(argv, field, capsys):
    with pytest.raises(UserError) as exc:
        run(["--prices", str(EXAMPLE), *argv], capsys)
    assert str(exc.value).startswith(field) and exc.value.exit_code == 2
