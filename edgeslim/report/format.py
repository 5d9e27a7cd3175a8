"""Number formatting shared by the Markdown, HTML and terminal renderings."""

from __future__ import annotations


def num(value: int | float | None) -> str:
    return "" if value is None else f"{int(value):,}"


def kb(value: int | float | None) -> str:
    if value is None:
        return ""
    return f"{value / 1024:,.1f} KB" if value >= 1024 else f"{int(value)} B"


def acc(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def delta(value: float | None) -> str:
    return "" if value is None else f"{value * 100:+.2f} pt"
