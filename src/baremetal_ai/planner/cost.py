"""Total cost of ownership: cloud GPU instances by the hour vs bare-metal servers (lease, purchase, or hourly).

Prices are inputs (a YAML file, see examples/prices-example.yml); nothing here knows a price. All costs are linear
in utilization ``u`` (the fraction of hours the GPUs are busy):

- cloud, per month: ``(hourly_rate × hours × u × servers + storage + egress) × (1 + support_percent/100)``
  (instances run only while busy);
- bare metal, per month: ``servers × (lease | purchase_price/amortization_months while being paid off |
  hourly_rate × hours × u) + servers × (colocation + energy(u)) + network + support``, plus ``servers × setup_fee``
  once; ``energy(u) = (idle_kw + (power_kw − idle_kw)·u) × pue × price_per_kwh × hours``.

Break-even utilization solves ``cloud_total(u) = bare_metal_total(u)`` over the horizon.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from baremetal_ai.errors import UserError, read_user_file

HOURS_PER_MONTH = 8760 / 12  # = 730 h [derived: 365 days × 24 h / 12]
OPTIONS = ("lease", "purchase", "hourly")


@dataclass(frozen=True)
class CloudPrices:
    hourly_rate: float  # per instance-hour (an instance = one server's worth of GPUs)
    storage_per_month: float
    egress_per_month: float
    support_percent: float
    name: str = "cloud"


@dataclass(frozen=True)
class BareMetalPrices:
    option: str  # lease | purchase | hourly
    network_per_month: float
    support_per_month: float
    lease_per_month: float = 0.0
    purchase_price: float = 0.0
    amortization_months: int = 0
    hourly_rate: float = 0.0
    setup_fee: float = 0.0
    colocation_per_month: float = 0.0
    power_kw: float = 0.0
    idle_power_kw: float | None = None  # None = power_kw (always at full draw)
    pue: float = 1.0
    price_per_kwh: float = 0.0
    name: str = "bare metal"


@dataclass(frozen=True)
class Prices:
    cloud: CloudPrices
    bare_metal: BareMetalPrices
    servers: int = 1
    currency: str = "USD"
    label: str = ""
    hours_per_month: float = HOURS_PER_MONTH
    source: str = ""


@dataclass(frozen=True)
class TcoResult:
    months: int
    utilization: float
    servers: int
    currency: str
    label: str
    cloud_monthly: float
    bare_metal_monthly: float  # first month, excluding the one-time setup fee
    cloud_total: float
    bare_metal_total: float
    break_even_utilization: float | None  # None: bare metal is never cheaper at ≤ 100 %
    break_even_month: int | None  # first month whose cumulative bare-metal cost ≤ cloud's; None: not within horizon
    cloud_breakdown: dict[str, float] = field(default_factory=dict)  # horizon totals by component
    bare_metal_breakdown: dict[str, float] = field(default_factory=dict)
    series: list[dict[str, float]] = field(default_factory=list)  # cumulative, month 0..months

    @property
    def savings(self) -> float:
        return self.cloud_total - self.bare_metal_total

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["savings"] = self.savings
        return d


# --------------------------------------------------------------------------------------------- price file
def _num(section: dict[str, Any], key: str, where: str, source: str, *, required: bool = True,
         default: float | None = 0.0, integer: bool = False, minimum: float = 0.0) -> Any:
    name = f"{where}.{key}" if where else key
    if key not in section or section[key] is None:
        if required:
            raise UserError(f'{source}: missing "{name}"')
        return default
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f'{source}: "{name}" must be a number, got {value!r}')
    if integer and value != int(value):
        raise UserError(f'{source}: "{name}" must be a whole number, got {value}')
    if value < minimum:
        raise UserError(f'{source}: "{name}" must be ≥ {minimum:g}, got {value}')
    return int(value) if integer else float(value)


def prices_from_dict(raw: Any, source: str = "prices file") -> Prices:
    """Validate a parsed price file; a missing or bad rate raises one UserError naming the field and the file."""
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping with 'cloud' and 'bare_metal' sections")
    for section in ("cloud", "bare_metal"):
        if not isinstance(raw.get(section), dict):
            raise UserError(f'{source}: missing "{section}" section')
    c, b = raw["cloud"], raw["bare_metal"]
    cloud = CloudPrices(
        hourly_rate=_num(c, "hourly_rate", "cloud", source),
        storage_per_month=_num(c, "storage_per_month", "cloud", source),
        egress_per_month=_num(c, "egress_per_month", "cloud", source),
        support_percent=_num(c, "support_percent", "cloud", source),
        name=str(c.get("name", "cloud")))
    option = b.get("option")
    if option not in OPTIONS:
        raise UserError(f'{source}: "bare_metal.option" must be one of {", ".join(OPTIONS)}, got {option!r}')
    kw: dict[str, Any] = {
        "option": option,
        "network_per_month": _num(b, "network_per_month", "bare_metal", source),
        "support_per_month": _num(b, "support_per_month", "bare_metal", source),
        "setup_fee": _num(b, "setup_fee", "bare_metal", source, required=False),
        "name": str(b.get("name", "bare metal")),
    }
    if option == "lease":
        kw["lease_per_month"] = _num(b, "lease_per_month", "bare_metal", source)
    elif option == "purchase":
        kw["purchase_price"] = _num(b, "purchase_price", "bare_metal", source)
        kw["amortization_months"] = _num(b, "amortization_months", "bare_metal", source, integer=True, minimum=1)
    else:
        kw["hourly_rate"] = _num(b, "hourly_rate", "bare_metal", source)
    # Owned servers pay colocation and power; leases and hourly servers may include them (then leave them out).
    owned = option == "purchase"
    kw["colocation_per_month"] = _num(b, "colocation_per_month", "bare_metal", source, required=owned)
    power_given = owned or any(k in b for k in ("power_kw", "pue", "price_per_kwh", "idle_power_kw"))
    if power_given:
        kw["power_kw"] = _num(b, "power_kw", "bare_metal", source)
        kw["pue"] = _num(b, "pue", "bare_metal", source, minimum=1.0)
        kw["price_per_kwh"] = _num(b, "price_per_kwh", "bare_metal", source)
        kw["idle_power_kw"] = _num(b, "idle_power_kw", "bare_metal", source, required=False, default=None)
        if kw["idle_power_kw"] is not None and kw["idle_power_kw"] > kw["power_kw"]:
            raise UserError(f'{source}: "bare_metal.idle_power_kw" exceeds "bare_metal.power_kw"')
    servers = _num(raw, "servers", "", source, required=False, default=1, integer=True, minimum=1)
    hours = _num(raw, "hours_per_month", "", source, required=False, default=HOURS_PER_MONTH, minimum=1)
    return Prices(cloud=cloud, bare_metal=BareMetalPrices(**kw), servers=servers,
                  currency=str(raw.get("currency", "USD")), label=str(raw.get("label", "")),
                  hours_per_month=hours, source=source)


def load_prices(path: str | Path) -> Prices:
    p = Path(path)
    text = read_user_file("--prices", p)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"--prices: {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return prices_from_dict(raw, source=str(p))


# --------------------------------------------------------------------------------------------- model
def cloud_month(p: Prices, u: float) -> dict[str, float]:
    """One month of cloud cost by component at utilization ``u``."""
    c = p.cloud
    compute = c.hourly_rate * p.hours_per_month * u * p.servers
    base = compute + c.storage_per_month + c.egress_per_month
    return {"compute": compute, "storage": c.storage_per_month, "egress": c.egress_per_month,
            "support": base * c.support_percent / 100}


def bare_metal_month(p: Prices, u: float, month: int = 1) -> dict[str, float]:
    """Month ``month`` (1-based) of bare-metal cost by component; purchase is amortized while being paid off."""
    b, n, hours = p.bare_metal, p.servers, p.hours_per_month
    if b.option == "lease":
        server = b.lease_per_month * n
    elif b.option == "purchase":
        server = b.purchase_price / b.amortization_months * n if month <= b.amortization_months else 0.0
    else:
        server = b.hourly_rate * hours * u * n
    idle = b.power_kw if b.idle_power_kw is None else b.idle_power_kw
    energy = (idle + (b.power_kw - idle) * u) * b.pue * b.price_per_kwh * hours * n
    return {"server": server, "colocation": b.colocation_per_month * n, "power": energy,
            "network": b.network_per_month, "support": b.support_per_month}


def _totals(p: Prices, u: float, months: int) -> tuple[dict[str, float], dict[str, float]]:
    cloud = {k: v * months for k, v in cloud_month(p, u).items()}
    bm: dict[str, float] = {"setup": p.bare_metal.setup_fee * p.servers}
    for m in range(1, months + 1):
        for k, v in bare_metal_month(p, u, m).items():
            bm[k] = bm.get(k, 0.0) + v
    return cloud, bm


def break_even_utilization(p: Prices, months: int) -> float | None:
    """The utilization at which both options cost the same over ``months``. 0.0: bare metal is cheaper even idle;
    None: bare metal is dearer even at 100 %. Both totals are linear in u, so two evaluations determine them."""
    c0, b0 = (sum(t.values()) for t in _totals(p, 0.0, months))
    c1, b1 = (sum(t.values()) for t in _totals(p, 1.0, months))
    diff0, diff1 = b0 - c0, b1 - c1  # bare metal minus cloud
    if diff0 <= 0:
        return 0.0
    if diff1 > 0:
        return None
    return diff0 / (diff0 - diff1)


def tco(p: Prices, months: int, utilization: float) -> TcoResult:
    if not isinstance(months, int) or months < 1:
        raise UserError(f"--months: must be a whole number ≥ 1, got {months}")
    if not 0 <= utilization <= 1:
        raise UserError(f"--utilization: must be between 0 and 1 (a fraction of hours), got {utilization}")
    cloud_bd, bm_bd = _totals(p, utilization, months)
    series = [{"month": 0, "cloud": 0.0, "bare_metal": bm_bd["setup"]}]
    cum_c, cum_b = 0.0, bm_bd["setup"]
    break_even_month = None
    for m in range(1, months + 1):
        cum_c += sum(cloud_month(p, utilization).values())
        cum_b += sum(bare_metal_month(p, utilization, m).values())
        series.append({"month": m, "cloud": round(cum_c, 2), "bare_metal": round(cum_b, 2)})
        if break_even_month is None and cum_b <= cum_c:
            break_even_month = m
    return TcoResult(
        months=months, utilization=utilization, servers=p.servers, currency=p.currency, label=p.label,
        cloud_monthly=sum(cloud_month(p, utilization).values()),
        bare_metal_monthly=sum(bare_metal_month(p, utilization, 1).values()),
        cloud_total=sum(cloud_bd.values()), bare_metal_total=sum(bm_bd.values()),
        break_even_utilization=break_even_utilization(p, months), break_even_month=break_even_month,
        cloud_breakdown=cloud_bd, bare_metal_breakdown=bm_bd, series=series)


def plot(result: TcoResult, p: Prices, out: str | Path) -> Path:
    """Two panels: cumulative cost by month at the chosen utilization; horizon total vs utilization."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"--plot: directory {out.parent} does not exist")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    months = [r["month"] for r in result.series]
    ax1.plot(months, [r["cloud"] for r in result.series], label=f"cloud: {p.cloud.name}")
    ax1.plot(months, [r["bare_metal"] for r in result.series], label=f"bare metal ({p.bare_metal.option})")
    if result.break_even_month is not None:
        ax1.axvline(result.break_even_month, color="grey", linestyle=":",
                    label=f"break-even month {result.break_even_month}")
    ax1.set(xlabel="month", ylabel=f"cumulative cost ({result.currency})",
            title=f"{result.servers} server(s) at {result.utilization:.0%} utilization")
    ax1.legend(fontsize=8)
    us = [i / 20 for i in range(21)]
    totals = [_totals(p, u, result.months) for u in us]
    ax2.plot([u * 100 for u in us], [sum(c.values()) for c, _ in totals], label="cloud")
    ax2.plot([u * 100 for u in us], [sum(b.values()) for _, b in totals], label="bare metal")
    if result.break_even_utilization is not None:
        ax2.axvline(result.break_even_utilization * 100, color="grey", linestyle=":",
                    label=f"break-even {result.break_even_utilization:.0%}")
    ax2.set(xlabel="utilization (%)", ylabel=f"total over {result.months} months ({result.currency})",
            title="total cost vs utilization")
    ax2.legend(fontsize=8)
    if result.label:
        fig.suptitle(result.label, fontsize=9)
    fig.tight_layout()
    try:
        fig.savefig(out, format="png", dpi=100)
    finally:
        plt.close(fig)
    return out
