"""The offline demo: deterministic procedural data, one build, instant reuse."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from detector import backbone as backbone_module
from detector import demo
from detector.heads import read_card
from detector.store import Workspace


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_dataset_is_deterministic_and_laid_out_by_split_and_class(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    n = demo.generate_demo_dataset(a, n_real=8, per_generator=4)
    assert n == 8 + 4 * len(demo.GENERATORS)
    demo.generate_demo_dataset(b, n_real=8, per_generator=4)
    assert digest_tree(a) == digest_tree(b)
    assert {p.name for p in a.iterdir()} == {"train", "val", "test"}
    assert {p.name for p in (a / "train").iterdir()} == {"real", *demo.GENERATORS}
    assert demo.generate_demo_dataset(a, n_real=8, per_generator=4) == 0  # nothing rewritten


def test_real_and_synthetic_carry_their_provenance_and_share_formats(tmp_path):
    from detector.images import image_metadata

    demo.generate_demo_dataset(tmp_path, n_real=4, per_generator=4)
    real = sorted((tmp_path / "train" / "real").iterdir())[0]
    fake = sorted((tmp_path / "train" / "tiling-synth").iterdir())[0]
    real_md, fake_md = image_metadata(real), image_metadata(fake)
    assert real_md["camera_model"] == "DemoCam"
    assert "tiling-synth" in (fake_md["software"] or "")
    # the file format is no shortcut: every class is half JPEG, half PNG
    for kind in ("real", *demo.GENERATORS):
        files = list(tmp_path.rglob(f"{kind}/*"))
        formats = [image_metadata(f)["format"] for f in files]
        assert formats.count("JPEG") == formats.count("PNG") == len(files) // 2


def test_a_demo_of_an_older_version_is_rebuilt(tmp_path):
    info = demo.ensure_demo(tmp_path)
    stale = info.workspace / "data" / "train" / "real" / "stale.png"
    stale.write_bytes(b"left over from an older demo")
    with Workspace(info.workspace) as ws:
        state = demo.demo_state(ws)
        ws.put_json(demo.STATE_NAMESPACE, demo.STATE_KEY, {**state, "version": 0})
    again = demo.ensure_demo(tmp_path)
    assert "images" in again.built and not stale.exists()
    with Workspace(again.workspace) as ws:
        assert demo.demo_state(ws)["version"] == demo.DEMO_VERSION
        assert ws.summary()["failed"] == 0


def test_images_differ_between_kinds_and_indices():
    import numpy as np

    a = np.asarray(demo.render_demo_image("real", 0), dtype=float)
    b = np.asarray(demo.render_demo_image("real", 1), dtype=float)
    c = np.asarray(demo.render_demo_image("checkerboard-gan", 0), dtype=float)
    assert a.shape == (demo.IMAGE_SIZE[1], demo.IMAGE_SIZE[0], 3)
    assert np.abs(a - b).mean() > 5 and np.abs(a - c).mean() > 5
    with pytest.raises(demo.DemoError):
        demo.render_demo_image("midjourney", 0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.getbasetemp() / "cue_lens_home"  # shared with tests/test_app.py
    return home, demo.ensure_demo(home)


def test_ensure_demo_builds_workspace_head_and_state(built):
    home, info = built
    assert info.workspace == demo.demo_dir(home)
    assert info.backbone_id == "tiny-clip/random"
    assert info.n_images == 96 + 32 * len(demo.GENERATORS)
    with Workspace(info.workspace) as ws:
        summary = ws.summary()
        state = demo.demo_state(ws)
    # (uploads from tests/test_app.py may add unlabelled images to this shared demo)
    assert summary["by_label"]["real"] == 96 and summary["by_label"]["synthetic"] == 96
    assert summary["by_split"]["train"] == 96
    assert state["version"] == demo.DEMO_VERSION
    card = read_card(info.head_path)
    assert card["demo"] is True and card["backbone_id"] == "tiny-clip/random"
    assert 0 < card["threshold"] < 1


def test_second_start_reuses_everything_without_loading(built, monkeypatch):
    home, _ = built

    def refuse(*args, **kwargs):
        raise AssertionError("a second start must not build or load anything")

    monkeypatch.setattr(demo, "_build", refuse)
    monkeypatch.setattr(backbone_module, "load_backbone", refuse)
    again = demo.ensure_demo(home)
    assert again.built == []


def test_concurrent_starts_build_once(tmp_path, monkeypatch):
    calls = []
    real = demo.generate_demo_dataset

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, n_real=6, per_generator=2)

    monkeypatch.setattr(demo, "generate_demo_dataset", counting)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(demo.ensure_demo(tmp_path)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2 and len(calls) == 1
    assert sorted(len(r.built) > 0 for r in results) == [False, True]


def test_demo_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CUE_LENS_HOME", str(tmp_path / "home"))
    assert demo.demo_dir() == tmp_path / "home" / "demo"
    monkeypatch.delenv("CUE_LENS_HOME")
    assert demo.demo_dir() == Path("~/.cache/cue-lens/demo").expanduser()
