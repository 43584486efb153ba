"""Result records: one JSON object per run and evaluation, appended to a .jsonl file,
and rendered as a Markdown table. Shared by every script under bench/."""

from __future__ import annotations

import json
from pathlib import Path

from edgerf.runtime.atomic import write_text
from edgerf.choices import FAMILY_NAMES


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_records(path: Path, records: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def merge_family_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``new`` rows replace the ``old`` rows of their families (a run over some families keeps
    the others'), in the order of the families table (unknown families last)."""
    done = {r["family"] for r in new}
    rank = {f: i for i, f in enumerate(FAMILY_NAMES)}
    return sorted([r for r in old if r["family"] not in done] + new, key=lambda r: rank.get(r["family"], len(rank)))


def merge_rows(old: list[dict], new: list[dict], key) -> list[dict]:
    """A partial re-run's ``new`` rows in place of the ``old`` rows they re-measure (same
    ``key(row)``), the rest kept; in the old order, keys new to the table last."""
    done = {key(r) for r in new}
    order = list(dict.fromkeys([key(r) for r in old] + [key(r) for r in new]))
    return sorted([r for r in old if key(r) not in done] + new, key=lambda r: order.index(key(r)))


def fmt(v) -> str:
    if v is None:                     # not measured for this row
        return ""
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown_table(records: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in records:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def result_file(out, ext: str) -> Path:
    """The file ``ext`` (".json", ".md", ".png") of a result's ``--out`` stem. The stem may
    hold dots (``runs/kws/a.val``), which ``with_suffix`` would cut off; a stem given with
    one of the result extensions loses it."""
    stem = Path(out)
    if stem.suffix in (".json", ".jsonl", ".md", ".png"):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + ext)
