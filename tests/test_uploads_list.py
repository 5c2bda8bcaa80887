"""The Detect page's list of dropped files (``ui.uploads``): full names, sizes, statuses."""

from __future__ import annotations

import pytest

from ui.analysis import ImageResult
from ui.uploads import LEFT_OUT, NO_VERDICT, chips_css, dropped_files, size_text

LONG = "summer-holiday-2026-beach-sunset-camera-roll-export-shot-"


def test_rows_keep_full_names_and_match_results_in_drop_order():
    files = [(f"{LONG}{i:02d}-edited.png", 1000 + i, i != 2) for i in range(1, 5)]
    results = [
        ImageResult(name=files[0][0], hash="a", n_bytes=1001, verdict="likely real"),
        ImageResult(name=files[2][0], hash=None, n_bytes=1003, error="not an image"),
        ImageResult(name=files[3][0], hash="c", n_bytes=1004),
    ]
    table = dropped_files(files, results)
    assert table["file"].tolist() == [name for name, _, _ in files]
    assert table["#"].tolist() == [1, 2, 3, 4]
    assert table["status"].tolist() == [
        "likely real",
        LEFT_OUT,
        "failed: not an image",
        NO_VERDICT,
    ]
    assert table["size"].tolist() == ["1001 B", "1002 B", "1003 B", "1004 B"]


def test_results_must_match_the_taken_files():
    files = [("a.png", 10, True), ("b.png", 10, True)]
    one = [ImageResult(name="a.png", hash="a", n_bytes=10, verdict="likely real")]
    with pytest.raises(ValueError, match=r"b\.png"):
        dropped_files(files, one)
    with pytest.raises(ValueError, match="more results"):
        dropped_files(files[:1], one * 2)


def test_sizes_and_the_scoped_style():
    assert [size_text(n) for n in (0, 1023, 1024, 1536, 5 * 1024 * 1024)] == [
        "0 B",
        "1023 B",
        "1.0 kB",
        "1.5 kB",
        "5.0 MB",
    ]
    css = chips_css("detect_upload")
    assert ".st-key-detect_upload [data-testid='stFileChips']" in css
    assert "max-height:none" in css
