"""``detector.analysis``: the one flow for image bytes and the nearest-neighbour search."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from detector.analysis import NeighbourIndex, analyse_bytes, nearest
from detector.errors import CueLensError
from detector.heads import LinearProbe
from detector.inference import TOO_SMALL
from detector.store import Workspace


def _png(side: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def probe(tiny_backbone):
    X = np.random.default_rng(0).normal(size=(40, tiny_backbone.pooled_dim))
    return LinearProbe(max_epochs=2, backbone_id=tiny_backbone.id).fit(X, np.arange(40) % 2)


def test_nearest_ranks_by_cosine_and_leaves_the_query_out():
    meta = pd.DataFrame({"hash": ["a", "b", "c", "d"], "path": list("ABCD"), "label": [0, 1, 1, 0]})
    x = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.1], [-1.0, 0.0]])
    index = NeighbourIndex.build(meta, x)
    np.testing.assert_allclose(np.linalg.norm(index.unit, axis=1), 1.0, rtol=1e-6)
    found = nearest(index, [5.0, 0.1], k=3, exclude="a")
    assert found["hash"].tolist() == ["c", "b", "d"]  # a (the query itself) is left out
    assert list(found.columns) == ["hash", "path", "label", "similarity"]
    assert found["similarity"].is_monotonic_decreasing
    assert nearest(index, [1.0, 0.0], k=10)["hash"].tolist() == ["a", "c", "b", "d"]
    empty = NeighbourIndex.build(meta.head(0), np.zeros((0, 2)))
    assert nearest(empty, [1.0, 0.0]).empty


def test_a_bad_file_fails_alone_and_a_tiny_image_gets_no_verdict(tmp_path, tiny_backbone, probe):
    items = [("photo.png", _png(96)), ("broken.png", b"not an image"), ("icon.png", _png(16))]
    with Workspace(tmp_path / "ws") as ws:
        photo, broken, icon = analyse_bytes(items, tiny_backbone, probe, ws, describe=True)
    assert photo.error is None and photo.verdict in {"likely real", "inconclusive",
                                                     "likely synthetic"}  # fmt: skip
    assert photo.metadata["width"] == 96 and photo.provenance is not None
    assert broken.error and broken.probability is None and broken.verdict is None
    assert icon.verdict == TOO_SMALL and "16×16 px" in icon.warning
    assert icon.probability is not None  # the score is still given


def test_attribution_errors_are_kept_or_raised(tiny_backbone, probe):
    def fails(projected, pooled, names):
        raise CueLensError("no surrogate here")

    items = [("photo.png", _png(96))]
    (kept,) = analyse_bytes(items, tiny_backbone, probe, attribute=fails)
    assert kept.attribution_error == "no surrogate here" and kept.verdict is not None
    with pytest.raises(CueLensError, match="no surrogate here"):
        analyse_bytes(items, tiny_backbone, probe, attribute=fails, keep_attribution_errors=False)

    seen = []

    def names_only(projected, pooled, names):
        seen.append((projected.shape, pooled.shape, names))
        return [f"why {n}" for n in names]

    (explained,) = analyse_bytes(items, tiny_backbone, probe, attribute=names_only)
    assert explained.attribution == "why photo.png"
    assert seen == [
        ((1, tiny_backbone.projected_dim), (1, tiny_backbone.pooled_dim), ["photo.png"])
    ]


def test_neighbours_are_searched_on_the_heads_tap(tiny_backbone, probe):
    taps = []
    meta = pd.DataFrame({"hash": ["x"], "path": ["x.png"]})

    def index_for(tap):
        taps.append(tap)
        return NeighbourIndex.build(meta, np.ones((1, tiny_backbone.pooled_dim)))

    (res,) = analyse_bytes([("p.png", _png(96))], tiny_backbone, probe, neighbours=index_for)
    assert taps == [probe.tap] and res.neighbours["hash"].tolist() == ["x"]
