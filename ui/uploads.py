"""The Detect page's list of dropped files: each file's full name, size and what became of it.

Streamlit's own uploader shortens a long name in the middle (so files that share a prefix
look alike) and shows about two rows of its file chips in a scrolled box. The page therefore
lists the drop itself, in a plain table whose names wrap, and lets the chip box grow to its
content with one scoped CSS rule (``CHIPS_CSS``, keyed by the uploader's ``key``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

LEFT_OUT = "left out: over the per-drop limit"
NO_VERDICT = "no verdict (no detector head)"


def chips_css(key: str) -> str:
    """A style block that lets the uploader ``key``'s chip box show every row of chips.

    It styles only that uploader (Streamlit marks each widget's container with the class
    ``st-key-<key>``) and relies on the chip box's ``data-testid``, ``stFileChips``; where a
    Streamlit release renames it, the rule matches nothing and the list below still holds
    every full name."""
    return (
        f"<style>.st-key-{key} [data-testid='stFileChips']"
        "{max-height:none !important;overflow-y:visible !important;}</style>"
    )


def size_text(n_bytes: int) -> str:
    """A file size for people: bytes below 1 kB, kB below 1 MB, else MB."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    if n_bytes < 1024 * 1024:
        return f"{n_bytes / 1024:.1f} kB"
    return f"{n_bytes / (1024 * 1024):.1f} MB"


def status_of(result) -> str:
    """What became of one analysed file (an ``analysis.ImageResult``)."""
    if result.error:
        return f"failed: {result.error}"
    if result.warning and not result.verdict:
        return result.warning
    if result.verdict:
        return result.verdict
    return NO_VERDICT


def dropped_files(files: Sequence[tuple[str, int, bool]], results: Iterable) -> pd.DataFrame:
    """One row per dropped file, in drop order: ``#``, full ``file`` name, ``size``, ``status``.

    ``files``: ``(name, n_bytes, taken)`` of every file in the drop, ``taken`` false for a
    file left out to stay within the per-drop limits; ``results``: the analysis results of
    the taken files, in drop order."""
    rows, taken = [], iter(list(results))
    for i, (name, n_bytes, was_taken) in enumerate(files, start=1):
        if was_taken:
            result = next(taken, None)
            if result is None:
                raise ValueError(f"{name}: no result for a taken file")
            status = status_of(result)
        else:
            status = LEFT_OUT
        rows.append({"#": i, "file": name, "size": size_text(n_bytes), "status": status})
    if next(taken, None) is not None:
        raise ValueError("more results than taken files")
    return pd.DataFrame(rows, columns=["#", "file", "size", "status"])
