"""Perturbations (names, determinism, geometry) and the robustness sweep on a tiny workspace."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from detector.perturb import (
    DEFAULT_SWEEP,
    TABLE_COLUMNS,
    Perturbation,
    PerturbationError,
    apply_perturbation,
    parse_perturbation,
    parse_perturbations,
    robustness_curves,
    robustness_figure,
    robustness_sweep,
    stored_robustness,
)


def _picture(width: int = 96, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    smooth = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    detail = rng.integers(-20, 21, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(smooth) + detail, 0, 255).astype(np.uint8))


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "family", "strength"),
    [
        ("jpeg:75", "jpeg:75", "jpeg", 75.0),
        ("JPEG:75.0", "jpeg:75", "jpeg", 75.0),
        ("resize:0.50", "resize:0.5", "resize", 0.5),
        ("blur:1", "blur:1", "blur", 1.0),
        ("crop:.75", "crop:0.75", "crop", 0.75),
        (" jpeg:75 + resize:0.5 ", "jpeg:75+resize:0.5", "jpeg+resize", None),
        ("noise:5+seed:3", "noise:5+seed:3", "noise", 5.0),
        ("jpeg:50+seed:3", "jpeg:50", "jpeg", 50.0),  # no random step: the seed is irrelevant
    ],
)
def test_names_are_canonical(text, name, family, strength):
    p = parse_perturbation(text)
    assert p.name == name == str(p)
    assert p.family == family
    assert p.strength == strength
    assert parse_perturbation(p.name) == p
    assert "@" not in p.name and "," not in p.name  # usable as a tap suffix and in lists


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("none", "empty"),
        ("jpeg", "FAMILY:STRENGTH"),
        ("sharpen:2", "unknown perturbation"),
        ("jpeg:0", "1..100"),
        ("jpeg:75.5", "whole number"),
        ("resize:0", "0.01..8"),
        ("crop:1.5", "0.01..1"),
        ("blur:-1", "FAMILY:STRENGTH"),
        ("seed:4", "seed alone"),
        ("jpeg:75+", "FAMILY:STRENGTH"),
    ],
)
def test_bad_names_are_refused_with_a_hint(text, fragment):
    with pytest.raises(PerturbationError, match=fragment):
        parse_perturbation(text)


def test_lists_defaults_families_and_duplicates():
    assert [p.name for p in parse_perturbations(None)] == list(DEFAULT_SWEEP)
    assert [p.name for p in parse_perturbations("default")] == list(DEFAULT_SWEEP)
    assert [p.name for p in parse_perturbations("jpeg")] == [
        "jpeg:95",
        "jpeg:75",
        "jpeg:50",
        "jpeg:30",
    ]
    names = [p.name for p in parse_perturbations("blur:1, jpeg:75+resize:0.5 ,blur:1.0")]
    assert names == ["blur:1", "jpeg:75+resize:0.5"]
    assert [p.name for p in parse_perturbations(["noise:2"], seed=7)] == ["noise:2+seed:7"]
    with pytest.raises(PerturbationError, match="no default strengths"):
        parse_perturbations("noise")
    with pytest.raises(PerturbationError, match="no perturbations"):
        parse_perturbations(" , ")


def test_the_issue_sweep_is_the_default():
    families = {}
    for p in parse_perturbations(None):
        families.setdefault(p.family, []).append(p.strength)
    assert families == {
        "jpeg": [95, 75, 50, 30],
        "resize": [0.5, 0.75, 1.5],
        "blur": [0.5, 1, 2],
        "crop": [0.5, 0.75],
    }


_steps = st.one_of(
    st.integers(1, 100).map(lambda q: f"jpeg:{q}"),
    st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.5, 2.0]).map(lambda s: f"resize:{s}"),
    st.sampled_from([0, 0.5, 1, 2, 3.5]).map(lambda s: f"blur:{s}"),
    st.sampled_from([0.3, 0.5, 0.75, 1]).map(lambda s: f"crop:{s}"),
    st.sampled_from([1, 5, 10]).map(lambda s: f"noise:{s}"),
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(_steps, min_size=1, max_size=3), st.integers(0, 5))
def test_names_round_trip(steps, seed):
    p = parse_perturbation("+".join(steps), seed=seed)
    again = parse_perturbation(p.name)
    assert again.name == p.name
    assert again == p
    assert again.seed == (seed if p.is_random else 0)


# -- applying ------------------------------------------------------------------------------


def test_geometry_of_each_family():
    image = _picture(96, 64)
    assert apply_perturbation(image, "resize:0.5").size == (48, 32)
    assert apply_perturbation(image, "resize:1.5").size == (144, 96)
    assert apply_perturbation(image, "crop:0.5").size == (48, 32)
    assert apply_perturbation(image, "crop:0.75").size == (72, 48)
    assert apply_perturbation(image, "blur:2").size == (96, 64)
    assert apply_perturbation(image, "jpeg:30").size == (96, 64)
    chained = apply_perturbation(image, "crop:0.5+resize:0.5")
    assert chained.size == (24, 16)


def test_centre_crop_keeps_the_centre():
    pixels = np.zeros((40, 40, 3), dtype=np.uint8)
    pixels[10:30, 10:30] = 255
    out = np.asarray(apply_perturbation(Image.fromarray(pixels), "crop:0.5"))
    assert out.shape == (20, 20, 3) and out.min() == 255


def test_perturbations_change_pixels_as_expected():
    image = _picture()
    base = np.asarray(image, dtype=np.float64)
    err = {
        q: np.abs(np.asarray(apply_perturbation(image, f"jpeg:{q}"), dtype=np.float64) - base)
        for q in (95, 30)
    }
    assert 0 < err[95].mean() < err[30].mean()
    blurred = np.asarray(apply_perturbation(image, "blur:2"), dtype=np.float64)
    assert np.abs(np.diff(blurred, axis=1)).mean() < np.abs(np.diff(base, axis=1)).mean() / 2
    assert np.array_equal(np.asarray(apply_perturbation(image, "blur:0")), base)
    # the JPEG really is re-encoded with that quality's tables
    from detector.images import estimate_jpeg_quality

    out = apply_perturbation(image, "jpeg:50")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=50, subsampling=2)
    assert np.array_equal(np.asarray(out), np.asarray(Image.open(buffer).convert("RGB")))
    assert estimate_jpeg_quality(Image.open(buffer).quantization) == 50


def test_deterministic_and_input_untouched():
    image = _picture()
    before = np.asarray(image).copy()
    for name in ("jpeg:75+resize:0.5", "blur:1", "noise:8", "crop:0.75+jpeg:30"):
        a = apply_perturbation(image, name, "abc")
        b = apply_perturbation(image, name, "abc")
        assert a.mode == "RGB"
        assert a is not image
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
    assert np.array_equal(np.asarray(image), before)


def test_noise_is_seeded_by_image_hash_and_seed():
    image = _picture()
    p = parse_perturbation("noise:10")
    a, b = p(image, "hash-a"), p(image, "hash-b")
    assert not np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(np.asarray(a), np.asarray(p(image, "hash-a")))
    seeded = parse_perturbation("noise:10", seed=1)
    assert seeded.name == "noise:10+seed:1"
    assert not np.array_equal(np.asarray(a), np.asarray(seeded(image, "hash-a")))
    spread = np.asarray(a, dtype=np.float64) - np.asarray(image, dtype=np.float64)
    assert 7 < spread.std() < 12


def test_non_rgb_input_and_tiny_images():
    grey = Image.new("L", (3, 2), 128)
    out = apply_perturbation(grey, "resize:0.1+blur:1+jpeg:30+crop:0.1")
    assert out.mode == "RGB" and out.size == (1, 1)


def test_upscale_is_bounded_by_the_pixel_limit():
    image = Image.new("RGB", (100, 100))
    out = apply_perturbation(image, "resize:8", max_pixels=20_000)
    assert out.width * out.height <= 20_000
    assert out.size == (141, 141)


def test_perturbation_is_picklable_for_dataloader_workers():
    import pickle

    p = parse_perturbation("jpeg:75+noise:3", seed=2)
    assert pickle.loads(pickle.dumps(p)) == p
    assert isinstance(p, Perturbation)


# -- the sweep -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep_workspace(tmp_path_factory, tiny_backbone):
    """A workspace with 24 small images (real, gan, diffusion; train and test) and a head."""
    from detector.datasets import load_dataset
    from detector.extract import embed_dataset
    from detector.heads import LinearProbe, load_head, make_card, save_head
    from detector.store import Workspace

    root = tmp_path_factory.mktemp("sweep_data")
    rng = np.random.default_rng(5)
    for split in ("train", "test"):
        for cls, n in (("real", 4), ("gan", 4), ("diffusion", 4)):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                image = _picture(80, 72, seed=int(rng.integers(1 << 30)))
                if cls == "gan":
                    pixels = np.asarray(image).copy()
                    pixels[::4, ::4] = 255  # a learnable grid
                    image = Image.fromarray(pixels)
                image.save(folder / f"{i}.png")
    ws = Workspace(tmp_path_factory.mktemp("sweep_ws"))
    summary = embed_dataset(load_dataset(root), ws, tiny_backbone, workers=0)
    assert summary.embedded == 24
    meta, x = ws.dataset(tiny_backbone.id, "pooled", split="train")
    head = LinearProbe(backbone_id=tiny_backbone.id, max_epochs=30)
    head.fit(x, meta["label"].astype(int).to_numpy())
    save_head(head, ws.heads_dir / "probe", make_card(head, threshold=0.5))
    yield ws, load_head(ws.heads_dir / "probe.safetensors")
    ws.close()


def test_sweep_table_cache_and_store(sweep_workspace, tiny_backbone):
    ws, head = sweep_workspace
    calls = []
    report = robustness_sweep(
        ws,
        head,
        "jpeg:50,resize:0.5+blur:1",
        backbone=tiny_backbone,
        workers=0,
        progress=lambda name, done, total: calls.append((name, done, total)),
    )
    assert report.split == "test"  # the workspace has a test split: evaluated there
    assert list(report.table.columns) == TABLE_COLUMNS
    assert report.embedded == {"jpeg:50": 12, "resize:0.5+blur:1": 12}
    assert ("jpeg:50", 12, 12) in calls
    assert set(report.table["perturbation"]) == {"none", "jpeg:50", "resize:0.5+blur:1"}
    assert set(report.table["generator"]) == {"gan", "diffusion"}
    assert (report.table["n_real"] == 4).all() and (report.table["n_fake"] == 4).all()
    chain = report.table[report.table["perturbation"] == "resize:0.5+blur:1"]
    assert (chain["family"] == "resize+blur").all() and chain["strength"].isna().all()
    clean = report.table[report.table["perturbation"] == "none"]
    assert (clean["flip_rate"] == 0).all()
    assert report.table["ap"].between(0, 1).all()
    assert report.table["flip_rate"].between(0, 1).all()
    for _, part in report.table.groupby("perturbation"):
        assert math.isclose(part["map"].iloc[0], part["ap"].mean())
    summary = report.summary.set_index("perturbation")
    assert summary.loc["none", "delta_map"] == 0
    assert (summary["n_images"] == 12).all() and (summary["n_missing"] == 0).all()
    assert ws.embedded_hashes(tiny_backbone.id, "pooled@jpeg:50")
    assert ws.embedded_hashes(tiny_backbone.id, "projected@resize:0.5+blur:1")

    # Second sweep: everything cached, no backbone needed, same numbers.
    again = robustness_sweep(ws, head, "jpeg:50,resize:0.5+blur:1", backbone=None)
    assert again.embedded == {}
    pd.testing.assert_frame_equal(again.table, report.table)
    stored = stored_robustness(ws, head="probe")
    assert len(stored) == 1
    pd.testing.assert_frame_equal(
        stored[0].table.reset_index(drop=True), report.table, check_dtype=False
    )
    assert report.as_dict()["table"][0]["strength"] is None  # JSON-ready: NaN -> null


def test_flips_follow_the_threshold(sweep_workspace, tiny_backbone):
    ws, head = sweep_workspace
    # Everything is "synthetic" at threshold 0 and stays so: no flips whatever the change.
    report = robustness_sweep(ws, head, "blur:2", backbone=tiny_backbone, threshold=0.0, workers=0)
    assert (report.summary["flip_rate"] == 0).all()
    heavy = robustness_sweep(ws, head, "noise:60", backbone=tiny_backbone, workers=0, split=None)
    assert heavy.split is None
    assert heavy.summary.set_index("perturbation").loc["noise:60", "n_images"] == 24


def test_sweep_needs_a_backbone_for_missing_embeddings(sweep_workspace, tiny_backbone):
    ws, head = sweep_workspace
    with pytest.raises(PerturbationError, match="backbone"):
        robustness_sweep(ws, head, "crop:0.3", backbone=None)
    loaded = []

    def loader():
        loaded.append(True)
        return tiny_backbone

    robustness_sweep(ws, head, "crop:0.3", backbone=loader, workers=0, store=False)
    robustness_sweep(ws, head, "crop:0.3", backbone=loader, workers=0, store=False)
    assert loaded == [True]  # loaded once, and only when something was missing


def test_sweep_refuses_a_head_of_another_backbone(sweep_workspace):
    from detector.heads import HeadMismatchError, LinearProbe

    ws, _ = sweep_workspace
    meta, x = ws.dataset("tiny-clip/random", "pooled")
    y = meta["label"].astype(int).to_numpy()
    other = LinearProbe(backbone_id="ViT-B-16/openai", max_epochs=1).fit(x, y)
    with pytest.raises(PerturbationError, match="no labelled images"):
        robustness_sweep(ws, other, "blur:1")
    wrong_dim = LinearProbe(backbone_id="tiny-clip/random", max_epochs=1).fit(x[:, :10], y)
    with pytest.raises(HeadMismatchError):
        robustness_sweep(ws, wrong_dim, "blur:1")


def test_curves_and_figure(sweep_workspace, tiny_backbone):
    ws, head = sweep_workspace
    report = robustness_sweep(
        ws, head, "jpeg:50,jpeg:75,blur:2,jpeg:75+blur:1", backbone=tiny_backbone, workers=0
    )
    curves = robustness_curves(report.table)
    assert set(curves["family"]) == {"jpeg", "blur"}  # chains have no single strength
    jpeg_gan = curves[(curves["family"] == "jpeg") & (curves["generator"] == "gan")]
    assert jpeg_gan["strength"].tolist() == [50, 75, 100]
    assert jpeg_gan.iloc[-1]["perturbation"] == "none"
    maps = curves[curves["generator"] == "mAP"]
    assert len(maps) == 3 + 2  # jpeg: 100, 75, 50; blur: 0, 2
    clean_map = report.summary.set_index("perturbation").loc["none", "map"]
    assert math.isclose(maps[maps["perturbation"] == "none"]["ap"].iloc[0], clean_map)
    fig = robustness_figure(report.table, "jpeg")
    assert {trace.name for trace in fig.data} == {"gan", "diffusion", "mAP"}
    assert fig.layout.xaxis.autorange == "reversed"
    assert robustness_curves(report.table.iloc[0:0]).empty
