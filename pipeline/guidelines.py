"""The two numbers trainers grade compressions by, and the one function that words them.

Guideline ranges (adult CPR, ERC/AHA): a rate of 100-120 compressions per minute and a depth
of 5-6 cm. :data:`TARGETS` holds, per measured quantity, its unit, the guideline range, the
tolerance the regression report counts as "within" (5/min, 0.5 cm) and what to do outside the
range. :func:`describe` turns a measured value into the sentence the assistant shows ("Rate
about 86 per minute: press faster (aim for 100-120)"); the report, ``predict`` and the web
page all go through it, so they say the same.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Target", "TARGETS", "describe", "status_of"]


@dataclass(frozen=True)
class Target:
    """One measured quantity of a take."""

    name: str  # the manifest column: rate | depth
    label: str  # how a sentence starts: "Rate", "Depth"
    unit: str  # "per minute", "cm"
    low: float  # guideline range [low, high]
    high: float
    tolerance: float  # |error| counted as "within" in the report
    decimals: int  # how the assistant rounds the value
    too_low: str  # advice below the range
    too_high: str  # advice above the range

    def fmt(self, v: float) -> str:
        return f"{v:.{self.decimals}f}"

    @property
    def range_text(self) -> str:
        """``100-120`` or ``5-6 cm``: the guideline as the advice quotes it."""
        unit = "" if self.unit.startswith("per") else f" {self.unit}"
        return f"{self.low:g}\u2013{self.high:g}{unit}"


TARGETS: dict[str, Target] = {
    "rate": Target("rate", "Rate", "per minute", 100.0, 120.0, 5.0, 0,
                   "press faster", "press slower"),
    "depth": Target("depth", "Depth", "cm", 5.0, 6.0, 0.5, 1,
                    "press deeper", "press less deep"),
}


def target(name: str) -> Target:
    """The :class:`Target` called ``name``; a bad name lists the valid ones."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; valid: {', '.join(TARGETS)}") from None


def status_of(name: str, value: float) -> str:
    """``low``, ``ok`` or ``high``: where ``value`` lies against the guideline range, as shown
    (rounded the way :func:`describe` rounds it, so the words never contradict the number)."""
    t = target(name)
    v = round(float(value), t.decimals)
    if v < t.low:
        return "low"
    if v > t.high:
        return "high"
    return "ok"


def describe(name: str, value: float) -> tuple[str, str, str]:
    """(status, advice, sentence) for a measured ``value`` of target ``name``.

    >>> describe("rate", 86.2)[2]
    'Rate about 86 per minute: press faster (aim for 100\u2013120)'
    >>> describe("depth", 5.4)[2]
    'Depth about 5.4 cm: good (5\u20136 cm)'
    """
    t = target(name)
    status = status_of(name, value)
    shown = f"{t.label} about {t.fmt(value)} {t.unit}"
    if status == "ok":
        return status, "good", f"{shown}: good ({t.range_text})"
    advice = t.too_low if status == "low" else t.too_high
    return status, advice, f"{shown}: {advice} (aim for {t.range_text})"
