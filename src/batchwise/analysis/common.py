"""Small helpers the analyses share: cell values as the config wrote them, numbers as the report prints them."""
from __future__ import annotations

from typing import Any


def native(value: Any) -> Any:
    """pandas scalars back to plain Python, so 'true' and '0.1' print as the config wrote them."""
    if isinstance(value, str) and value in ("True", "False"):
        return value == "True"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") else value


def number(value: float) -> str:
    """A count-like number (steps, batch sizes) as the report's tables print it: 3 significant digits,
    thousands separated from 1,000 on."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def explains(study: dict) -> bool:
    """Whether the study asks why its models collapse: it draws a `predictions` figure."""
    return any(spec["kind"] == "predictions" for spec in study["figures"])


def block(kind: str, title: str, header: list[str], rows: list[list[str]], *, caption: str = "", note: str = "",
          explain: str = "", method: str = "", empty: str = "") -> dict:
    """One analysis as the report shows it: a titled table (or, without rows, the `empty` sentence), a
    caption under the table, a note, an explanation and the method, each optional."""
    return {"kind": kind, "title": title, "header": header, "rows": rows, "caption": caption, "note": note,
            "explain": explain, "method": method, "empty": empty}
