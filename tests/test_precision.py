"""The measured precision decision: the rule (injected timings), the probe, the cache, overrides."""

from __future__ import annotations

import json

import pytest
import torch

from detector import precision as P
from detector.backbone import _pooled, load_backbone


@pytest.fixture(autouse=True)
def home(monkeypatch, tmp_path):
    """Every test gets its own cache (``CUE_LENS_HOME``)."""
    monkeypatch.setenv("CUE_LENS_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def tiny_visual():
    return load_backbone("tiny-clip", device="cpu", precision="fp32").model.visual


# -- the rule -----------------------------------------------------------------------------------


def test_bf16_is_chosen_when_clearly_faster_and_faithful():
    # the AMD EPYC figures: embed 0.26 images/s in fp32, 0.80 in bf16
    precision, reason = P.decide(1 / 0.26, 1 / 0.80, 0.9998)
    assert precision == "bf16"
    assert "3.08x" in reason


@pytest.mark.parametrize(
    ("fp32", "bf16", "cos", "why"),
    [
        (1.0, 1 / 0.65, 0.9999, "slower"),  # Intel AVX512-BF16 without AMX: 0.65x
        (1.0, 1 / 1.1, 0.9999, "within the margin"),  # faster, but not by a clear margin
        (3.0, 1.0, 0.998, "cosine"),  # fast but the embedding drifts
        (3.0, 1.0, None, "not measured"),
    ],
)
def test_fp32_is_kept_otherwise(fp32, bf16, cos, why):
    precision, reason = P.decide(fp32, bf16, cos)
    assert precision == "fp32", why
    assert reason


def test_the_margin_and_cosine_bounds_are_inclusive():
    assert P.decide(P.MARGIN, 1.0, P.MIN_COSINE)[0] == "bf16"
    assert P.decide(P.MARGIN * 0.99, 1.0, 1.0)[0] == "fp32"
    with pytest.raises(ValueError):
        P.decide(0.0, 1.0, 1.0)


# -- the probe and the cache --------------------------------------------------------------------


def test_a_faster_bf16_is_checked_for_agreement_and_cached(tiny_visual, home):
    decision, tower = P.choose_cpu_precision(
        "tiny-clip", tiny_visual, _pooled, speed=lambda v: (0.30, 0.10)
    )
    assert decision.precision == "bf16" and decision.source == "measured"
    assert decision.speedup == pytest.approx(3.0)
    assert decision.cosine is not None and decision.cosine >= P.MIN_COSINE
    assert {p.dtype for p in tower.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in tiny_visual.parameters()} == {torch.float32}  # untouched
    stored = json.loads((home / P.CACHE_NAME).read_text())
    assert [e["precision"] for e in stored.values()] == ["bf16"]

    def no_probe(_):
        raise AssertionError("a cached decision must not probe again")

    again, tower = P.choose_cpu_precision("tiny-clip", tiny_visual, _pooled, speed=no_probe)
    assert (again.precision, again.source, tower) == ("bf16", "cache", None)
    assert again.speedup == pytest.approx(3.0)


def test_a_slower_bf16_keeps_fp32_without_the_agreement_run(tiny_visual):
    def pooled(*_):
        raise AssertionError("agreement is only measured when bf16 wins on speed")

    decision, tower = P.choose_cpu_precision(
        "tiny-clip", tiny_visual, pooled, speed=lambda v: (0.10, 0.15)
    )
    assert (decision.precision, decision.cosine, tower) == ("fp32", None, None)


def test_a_drifting_bf16_keeps_fp32(tiny_visual):
    def pooled(visual, pixels):  # the bf16 tower returns something unrelated
        if next(visual.parameters()).dtype == torch.bfloat16:
            return torch.ones(1, 4)
        return torch.tensor([[1.0, -1.0, 1.0, -1.0]])

    decision, tower = P.choose_cpu_precision(
        "tiny-clip", tiny_visual, pooled, speed=lambda v: (0.3, 0.1)
    )
    assert decision.precision == "fp32" and tower is None
    assert decision.cosine == pytest.approx(0.0)


@pytest.mark.parametrize("change", ["cpu", "cores", "torch", "model"])
def test_the_cache_is_keyed_by_cpu_cores_torch_and_model(monkeypatch, tiny_visual, change):
    P.choose_cpu_precision("tiny-clip", tiny_visual, _pooled, speed=lambda v: (0.1, 0.2))
    model = "tiny-clip"
    if change == "cpu":
        monkeypatch.setattr(P, "cpu_model_name", lambda: "Another CPU")
    elif change == "cores":
        monkeypatch.setattr(P.os, "cpu_count", lambda: 96)
    elif change == "torch":
        monkeypatch.setattr(P.torch, "__version__", "99.0")
    else:
        model = "ViT-L-14-336"
    calls = []

    def speed(v):
        calls.append(v)
        return 0.1, 0.2

    decision, _ = P.choose_cpu_precision(model, tiny_visual, _pooled, speed=speed)
    assert decision.source == "measured" and len(calls) == 1


def test_a_broken_cache_file_is_measured_again(home, tiny_visual):
    (home / P.CACHE_NAME).write_text("{not json")
    decision, _ = P.choose_cpu_precision(
        "tiny-clip", tiny_visual, _pooled, speed=lambda v: (0.1, 0.2)
    )
    assert decision.source == "measured"
    assert P.cached_decision(P.machine_key("tiny-clip")).precision == "fp32"


def test_the_probe_times_a_real_block_of_the_tower(tiny_visual):
    ticks = iter(range(100))
    fp32, bf16 = P.probe_speed(tiny_visual, timer=lambda: float(next(ticks)))
    assert fp32 == bf16 == 1.0  # the injected clock advances one per reading
    fp32, bf16 = P.probe_speed(tiny_visual)
    assert fp32 > 0 and bf16 > 0


# -- load_backbone ------------------------------------------------------------------------------


@pytest.mark.parametrize("cached", ["bf16", "fp32"])
def test_auto_follows_the_decision_for_this_machine(cached):
    key = P.machine_key("tiny-clip")
    P.store_decision(P.PrecisionDecision(cached, "measured", "test", speedup=2.0, key=key))
    backbone = load_backbone("tiny-clip", device="cpu", precision="auto")
    assert backbone.precision == cached
    assert backbone.precision_decision.source == "cache"
    dtypes = {p.dtype for p in backbone.model.parameters()}
    assert dtypes == {torch.bfloat16 if cached == "bf16" else torch.float32}


def test_precision_override_skips_the_probe(home):
    backbone = load_backbone("tiny-clip", device="cpu", precision="bf16")
    assert backbone.precision_decision.source == "override"
    assert {p.dtype for p in backbone.model.parameters()} == {torch.bfloat16}
    assert not (home / P.CACHE_NAME).exists()


def test_first_auto_load_measures_and_stores(home):
    backbone = load_backbone("tiny-clip", device="cpu", precision="auto")
    decision = backbone.precision_decision
    assert decision.source == "measured" and decision.precision == backbone.precision
    assert decision.fp32_ms > 0 and decision.bf16_ms > 0
    assert P.cached_decisions()[0]["model"] == "tiny-clip"
    expected = torch.bfloat16 if backbone.precision == "bf16" else torch.float32
    assert {p.dtype for p in backbone.model.parameters()} == {expected}


def test_embed_json_and_info_show_the_decision(home, tmp_path):
    import os
    import subprocess
    import sys

    from PIL import Image

    from tests.conftest import REPO

    data = tmp_path / "data" / "real"
    data.mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(data / "a.png")
    env = {**os.environ, "CUE_LENS_HOME": str(home)}
    ws = str(tmp_path / "ws")
    embed = [sys.executable, "-m", "detector", "embed", str(data.parent), "-w", ws]
    embed += ["--model", "tiny-clip", "--json"]

    def run(cmd):
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    first, second = run(embed)["precision"], run(embed)["precision"]
    assert first["source"] == "measured" and first["speedup"] > 0
    assert second["source"] == "cache" and second["precision"] == first["precision"]
    info = run([sys.executable, "-m", "detector", "info", "-w", ws, "--json"])
    [row] = info["precision_decisions"]
    assert (row["model"], row["precision"]) == ("tiny-clip", first["precision"])
    forced = run([*embed[:-1], "--precision", "fp32", "--json"])["precision"]
    assert (forced["precision"], forced["source"]) == ("fp32", "override")
