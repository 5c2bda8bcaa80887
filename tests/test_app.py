"""The dashboard under Streamlit's AppTest, on the offline demo (tiny-clip, procedural data).

Every page renders without an exception or an internal-error message, the demo banner is on
every page, the upload flow works through ``at.file_uploader``, the sidebar's choices survive
page changes, long work runs as background jobs, and errors are messages, not tracebacks.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from detector.demo import DEMO_BANNER

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
PAGES = ("pages/detect.py", "pages/concepts.py", "pages/generators.py", "pages/data.py")
TIMEOUT = 60


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """A Cue Lens home with the demo built once for the whole test session."""
    from detector.demo import ensure_demo

    home = tmp_path_factory.getbasetemp() / "cue_lens_home"
    ensure_demo(home)
    return home


@pytest.fixture(autouse=True)
def app_env(demo_home, tmp_path, monkeypatch):
    """Offline demo environment, fresh Streamlit caches, and AppTest runs through app.py.

    AppTest resets Streamlit's "pages/ folder" flag before every run, so from the second run
    on it would execute the page file alone; a real server clears that flag for good at the
    first ``st.navigation`` call. The patch makes every AppTest run go through ``app.py``,
    as every run after the first does on a server.
    """
    import streamlit as st
    from streamlit.runtime.scriptrunner import script_runner

    def run_entrypoint(main_script_path: str) -> None:
        code = compile(Path(main_script_path).read_text(), main_script_path, "exec")
        exec(code, {"__name__": "__main__", "__file__": main_script_path})

    monkeypatch.setattr(script_runner, "_mpa_v1", run_entrypoint)
    monkeypatch.setenv("CUE_LENS_HOME", str(demo_home))
    monkeypatch.setenv("CUE_LENS_OFFLINE", "1")
    monkeypatch.setenv("CUE_LENS_DATA_ROOT", str(tmp_path))
    monkeypatch.delenv("CUE_LENS_MODEL", raising=False)
    monkeypatch.delenv("CUE_LENS_WORKSPACE", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def assert_clean(at, where: str = "") -> None:
    """No exception and no internal-error message on the page."""
    from ui.views import INTERNAL_ERROR

    assert not at.exception, f"{where}: {[e.value for e in at.exception]}"
    internal = [e.value for e in at.error if INTERNAL_ERROR in e.value]
    assert not internal, f"{where}: {internal}"


def has_banner(at) -> bool:
    return any(DEMO_BANNER in w.value for w in at.warning)


def sample_bytes(samples_dir: Path, name: str) -> bytes:
    return (samples_dir / name).read_bytes()


def test_every_page_renders_with_the_demo_banner():
    at = new_app().run()
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at, page)
        assert has_banner(at), f"{page}: no demo banner"
        assert at.title[0].value == Path(page).stem.capitalize()
        # the offline notice says which model is missing and how to provide weights
        assert any("How to use real weights" in e.label for e in at.expander)


def test_sidebar_shows_workspace_backbone_and_detector():
    at = new_app().run()
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "tiny-clip" in sidebar and "random weights" in sidebar
    assert "96 real" in captions and "96 synthetic" in captions and "3 generators" in captions
    select = at.sidebar.selectbox(key="cl_head_select")
    assert select.value == "workspace:demo_linear_probe"


def test_upload_one_image_gives_verdict_attribution_provenance_neighbours(samples_dir):
    at = new_app().run()
    data = sample_bytes(samples_dir, "synthetic/marco-willi__clip-cues__synthetic1.png")
    at.file_uploader(key="detect_upload").set_value([("one.png", data, "image/png")]).run()
    assert_clean(at, "upload")
    verdicts = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert verdicts and any(
        v in verdicts[0] for v in ("Likely real", "Inconclusive", "Likely synthetic")
    )
    assert any("P(synthetic)" in m.value for m in at.markdown)
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # verdict strip + attribution bars
    assert any("Concepts behind the verdict" in c.proto.spec for c in charts)
    provenance = [d.value for d in at.dataframe if "Provenance" in d.value.columns]
    assert provenance and "C2PA / JUMBF manifest" in set(provenance[0]["Provenance"])
    assert any("Nearest images" in m.value for m in at.markdown)


def test_upload_many_gives_table_and_csv_and_a_readable_error_for_a_bad_file(samples_dir):
    at = new_app().run()
    files = [
        ("syn.png", sample_bytes(samples_dir, "synthetic/marco-willi__clip-cues__synthetic1.png")),
        ("real.png", sample_bytes(samples_dir, "real/marco-willi__clip-cues__real1.png")),
        ("broken.png", b"this is not an image"),
    ]
    at.file_uploader(key="detect_upload").set_value([(n, d, "image/png") for n, d in files]).run()
    assert_clean(at, "many")
    table = next(d.value for d in at.dataframe if "p_synthetic" in d.value.columns)
    assert list(table["file"]) == ["syn.png", "real.png", "broken.png"]
    assert table["p_synthetic"].notna().sum() == 2
    # the reason sits next to the verdict; cells without a value are blank, not "None"
    columns = list(table.columns)
    assert columns.index("reason") == columns.index("verdict") + 1
    assert table.loc[2, "verdict"] == "failed" and "broken.png" not in table.loc[2, "reason"]
    assert table.loc[2, "reason"] and table.loc[0, "reason"] == ""
    for col in ("thumbnail", "top concept → synthetic", "top concept → real", "format"):
        assert table.loc[2, col] == "", col
    assert str(table["width"].dtype) == "Int64"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "3" and metrics["Failed"] == "1"
    assert any(b.label.startswith("Download results") for b in at.get("download_button"))
    pick = at.selectbox(key="detect_pick")
    assert pick.value.endswith("syn.png") or pick.value.endswith("real.png")
    # pick the failed file, then drop new images: the inspector starts at the new top image
    at = pick.select(next(o for o in pick.options if o.endswith("broken.png"))).run()
    assert at.selectbox(key="detect_pick").value.endswith("broken.png")
    real3 = sample_bytes(samples_dir, "real/marco-willi__clip-cues__real3.png")
    again = [*files, ("real3.png", real3)]  # the failed file is still among the options
    at.file_uploader(key="detect_upload").set_value([(n, d, "image/png") for n, d in again]).run()
    assert_clean(at, "second drop")
    table = next(d.value for d in at.dataframe if "p_synthetic" in d.value.columns)
    top = table.loc[table["p_synthetic"].idxmax(), "file"]
    assert at.selectbox(key="detect_pick").value.endswith(top)


def test_a_tiny_image_gets_no_verdict_and_says_why():
    import io

    from PIL import Image

    from detector.inference import TOO_SMALL

    out = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(out, "PNG")
    at = new_app().run()
    at.file_uploader(key="detect_upload").set_value([("dot.png", out.getvalue(), "image/png")])
    at.run()
    assert_clean(at, "tiny")
    verdicts = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert verdicts and TOO_SMALL.capitalize() in verdicts[0]
    assert any("1×1 px" in w.value for w in at.warning)


def test_results_export_names_backbone_head_threshold_and_demo():
    from types import SimpleNamespace

    import numpy as np

    from detector.heads import LinearProbe
    from ui import analysis

    X = np.random.default_rng(0).normal(size=(40, 8))
    head = LinearProbe(max_epochs=2, backbone_id="tiny-clip/random").fit(X, np.arange(40) % 2)
    head.card_ = {"name": "probe", "threshold": 0.61234567891}
    ctx = SimpleNamespace(backbone_id="tiny-clip/random", head_option=None, demo=True)
    result = analysis.ImageResult(name="a.png", hash="ab" * 32, n_bytes=2048, probability=0.7)
    table = analysis.with_context(
        analysis.results_table([result]).drop(columns=["thumbnail"]),
        analysis.export_context(ctx, head),
    )
    row = table.iloc[0]
    assert row["backbone"] == "tiny-clip/random" and row["head"] == "probe"
    assert row["threshold"] == pytest.approx(0.612346) and bool(row["demo"])
    assert len(row["head_fingerprint"]) == 16 and row["sha256"] == "ab" * 32


def test_same_bytes_come_from_the_workspace(samples_dir):
    data = sample_bytes(samples_dir, "real/marco-willi__clip-cues__real2.png")
    first = new_app().run()
    first.file_uploader(key="detect_upload").set_value([("a.png", data, "image/png")]).run()
    assert_clean(first)
    second = new_app().run()  # a new session: nothing in its memory
    second.file_uploader(key="detect_upload").set_value([("b.png", data, "image/png")]).run()
    assert_clean(second)
    assert any("seen before" in m.value for m in second.markdown)


def test_page_switch_keeps_sidebar_state_and_last_results(tmp_path, samples_dir):
    at = new_app().run()
    other = tmp_path / "second_workspace"
    at.text_input(key="cl_ws_input").set_value(str(other))
    at.button(key="cl_ws_open").click()
    at.run()
    assert_clean(at, "open workspace")
    assert at.sidebar.code[0].value.endswith("second_workspace")
    for page in PAGES[1:]:
        at.switch_page(page).run()
        assert_clean(at, page)
        assert at.sidebar.code[0].value.endswith("second_workspace"), page
    # back to the demo workspace, analyse an image, go elsewhere and come back
    at.button(key="cl_ws_def").click()
    at.run()
    at.switch_page("pages/detect.py").run()
    data = sample_bytes(samples_dir, "real/marco-willi__clip-cues__real3.png")
    at.file_uploader(key="detect_upload").set_value([("r3.png", data, "image/png")]).run()
    at.switch_page("pages/generators.py").run()
    at.switch_page("pages/detect.py").run()
    assert_clean(at, "back on detect")
    assert any("last drop" in c.value for c in at.caption)
    assert [m.value for m in at.markdown if m.value.startswith("### ")]


def test_empty_workspace_pages_explain_instead_of_failing(tmp_path):
    at = new_app().run()
    at.text_input(key="cl_ws_input").set_value(str(tmp_path / "empty_ws"))
    at.button(key="cl_ws_open").click()
    at.run()
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at, page)
        notes = [e.value for e in (*at.info, *at.warning) if "DEMO" not in e.value]
        assert notes, f"{page}: no explanation on an empty workspace (besides the demo banner)"


def test_data_page_registers_extracts_and_trains(tmp_path, demo_home):
    from ui.resources import job_registry

    source = demo_home / "demo" / "data" / "train"
    data = tmp_path / "mini"
    for group in ("real", "smooth-diffusion"):
        (data / group).mkdir(parents=True)
        for f in sorted((source / group).iterdir())[:12]:
            shutil.copy(f, data / group / f.name)
    (data / "smooth-diffusion" / "broken.png").write_bytes(b"not an image at all")

    at = new_app().run()
    at.text_input(key="cl_ws_input").set_value(str(tmp_path / "ws"))
    at.button(key="cl_ws_open").click()
    at.run()
    at.switch_page("pages/data.py").run()
    at.text_input(key="data_path").set_value(str(data))
    at.button(key="FormSubmitter:register-Check dataset").click()
    at.run()
    assert_clean(at, "check")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Files"] == "25" and metrics["Real"] == "12"
    next(b for b in at.button if b.label.startswith("Extract embeddings")).click().run()
    job = job_registry().jobs("extract")[0]
    assert job.wait(60) and job.status == "done", job.error
    at.run()
    assert_clean(at, "after extraction")
    assert {m.label: m.value for m in at.metric}["Embedded"] == "24"
    errors = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert errors["path"].str.endswith("broken.png").any()

    at.button(key="FormSubmitter:train-Train").click()
    at.run()
    job = job_registry().jobs("train")[0]
    assert job.wait(120) and job.status == "done", job.error
    # one record per epoch, published while training ran (epoch_callback)
    assert [r["epoch"] for r in job.records] == list(range(1, len(job.records) + 1))
    assert {"train_loss", "val_loss", "best_epoch"} <= set(job.records[-1])
    at.run()
    assert_clean(at, "after training")
    curves = [c for c in at.get("plotly_chart") if "validation loss" in c.proto.spec]
    assert curves and "best epoch" in curves[0].proto.spec
    options = at.sidebar.selectbox(key="cl_head_select").options  # as displayed
    assert any(o.startswith("linear_train") for o in options), options


def test_register_refuses_a_path_outside_the_data_root():
    at = new_app().run()
    at.switch_page("pages/data.py").run()
    at.text_input(key="data_path").set_value("/etc")
    at.button(key="FormSubmitter:register-Check dataset").click()
    at.run()
    assert_clean(at)
    assert any("outside the allowed data folders" in e.value for e in at.error)


def test_a_manifest_with_no_usable_rows_offers_no_extraction(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "m.csv").write_text("path,label\n../outside.png,real\n/etc/passwd,synthetic\n")
    at = new_app().run()
    at.switch_page("pages/data.py").run()
    at.text_input(key="data_path").set_value(str(data / "m.csv"))
    at.button(key="FormSubmitter:register-Check dataset").click()
    at.run()
    assert_clean(at, "empty manifest")
    extract = [b for b in at.button if b.label.startswith("Extract embeddings")]
    assert extract and extract[0].disabled
    assert any("no usable image files" in c.value for c in at.caption)


def test_backbone_form_refuses_files_and_folders_outside_the_allowed_ones(monkeypatch):
    from ui.context import KEY_BACKBONE

    read: list[str] = []
    real_digest = __import__("detector.hashing", fromlist=["file_digest"]).file_digest
    monkeypatch.setattr(
        "detector.backbone.file_digest", lambda p: read.append(str(p)) or real_digest(p)
    )
    at = new_app().run()
    for model, weights in (("ViT-B-16", "/etc/hostname"), ("local-dir:/etc", "")):
        at.text_input(key="cl_bb_model").set_value(model)
        at.text_input(key="cl_bb_weights").set_value(weights)
        at.button(key="cl_bb_apply").click()
        at.run()
        assert_clean(at, model)
        assert any("outside the allowed data folders" in e.value for e in at.error), model
        assert KEY_BACKBONE not in at.session_state  # nothing applied: still the demo
        assert has_banner(at)
    assert not [p for p in read if p.startswith("/etc")]  # never hashed, never loaded


def test_backbone_form_accepts_a_checkpoint_inside_the_data_root(tmp_path):
    from ui.context import KEY_BACKBONE

    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"not loaded by this test")
    at = new_app().run()
    at.text_input(key="cl_bb_model").set_value("ViT-B-16")
    at.text_input(key="cl_bb_weights").set_value(str(ckpt))
    at.button(key="cl_bb_apply").click()
    at.run()
    assert not any("outside the allowed" in e.value for e in at.error)
    assert at.session_state[KEY_BACKBONE].pretrained == str(ckpt)


def test_workspace_chooser_refuses_a_folder_outside_the_allowed_ones():
    at = new_app().run()
    before = at.sidebar.code[0].value
    at.text_input(key="cl_ws_input").set_value("/etc/cue_lens_ws")
    at.button(key="cl_ws_open").click()
    at.run()
    assert_clean(at, "workspace outside")
    assert any("outside the allowed data folders" in e.value for e in at.error)
    assert at.sidebar.code[0].value == before
    assert not Path("/etc/cue_lens_ws").exists()


def _train_tiny_head(ws_path: Path, demo_home: Path, name: str) -> str:
    """A workspace holding the demo's images and a head trained there; the head's option key."""
    from detector.demo import ensure_demo
    from detector.store import Workspace
    from detector.train import train_head

    demo_ws = Path(ensure_demo(demo_home).workspace)
    shutil.copytree(demo_ws, ws_path)
    with Workspace(ws_path) as ws:
        train_head(ws, "linear", backbone_id="tiny-clip/random", out=name, params={"max_epochs": 2})
    return f"workspace:{name}"


def test_workspace_and_head_live_in_the_url_and_recent_workspaces(tmp_path, demo_home):
    key = _train_tiny_head(tmp_path / "mine", demo_home, "my_probe")
    at = new_app().run()
    at.text_input(key="cl_ws_input").set_value(str(tmp_path / "mine"))
    at.button(key="cl_ws_open").click()
    at.run()
    assert_clean(at, "open")
    assert at.query_params["workspace"] == str((tmp_path / "mine").resolve())
    at.sidebar.selectbox(key="cl_head_select").set_value(key).run()
    assert at.query_params["head"] == key
    # a reload: a new session with the same URL opens the same workspace and head
    again = new_app()
    again.query_params.update(at.query_params)
    again.run()
    assert_clean(again, "reload")
    assert "mine" in again.sidebar.code[0].value
    assert again.sidebar.selectbox(key="cl_head_select").value == key
    # back to the default; the workspace is offered among the recent ones
    again.button(key="cl_ws_def").click().run()
    assert "workspace" not in again.query_params
    recent = again.sidebar.selectbox(key="cl_ws_recent")
    assert str((tmp_path / "mine").resolve()) in recent.options


def test_a_link_to_a_workspace_outside_the_allowed_folders_is_refused(tmp_path):
    at = new_app()
    at.query_params["workspace"] = "/etc"
    at.run()
    assert_clean(at, "link outside")
    assert any("link's workspace was not opened" in e.value for e in at.error)
    assert "/etc" not in at.sidebar.code[0].value


def test_missing_released_head_is_a_message_not_a_traceback(monkeypatch, tmp_path):
    """With real weights reported available, the default released head cannot be fetched
    offline: every page says so and keeps working."""
    monkeypatch.setattr("detector.backbone.weights_available", lambda *a, **k: True)
    monkeypatch.setenv("CUE_LENS_WORKSPACE", str(tmp_path / "real_ws"))
    monkeypatch.setenv("CUE_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CUE_LENS_RELEASED_DIR", raising=False)
    at = new_app().run()
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at, page)
        assert not has_banner(at), f"{page}: demo banner without the demo"
        said = [e.value for e in at.error if "linear_probe_synthclic" in e.value]
        assert said, f"{page}: the missing head is not named"
        # the message says what to do: where to put the file, or how to point at it
        assert "is not available offline" in said[0] and "CUE_LENS_RELEASED_DIR" in said[0]
        assert str(tmp_path / "cache" / "heads") in said[0]


def test_jobs_report_progress_errors_and_reuse_by_key():
    from detector.errors import CueLensError
    from ui.jobs import JobRegistry

    registry = JobRegistry()

    def work(job, n):
        for i in range(n):
            job.update((i + 1) / n, f"step {i + 1}")
            job.add_record({"epoch": i + 1})
        return n

    job = registry.start("train", "t", ("ws", "a"), work, 3)
    assert job.wait(10) and job.status == "done" and job.result == 3
    assert job.progress == 1.0 and [r["epoch"] for r in job.records] == [1, 2, 3]
    assert registry.start("train", "t", ("ws", "a"), work, 5, reuse_finished=True) is job
    assert registry.start("train", "t", ("ws", "a"), work, 5) is not job

    def fails(job):
        raise CueLensError("no reals in split 'train'")

    def crashes(job):
        raise ZeroDivisionError("boom")

    bad = registry.start("train", "bad", ("ws", "b"), fails)
    assert bad.wait(10) and bad.status == "failed" and bad.error == "no reals in split 'train'"
    crash = registry.start("train", "crash", ("ws", "c"), crashes)
    assert crash.wait(10) and crash.status == "failed" and "ZeroDivisionError" in crash.error
    assert [j.title for j in registry.jobs("train", "ws")][:2] == ["crash", "bad"]


def test_training_job_can_be_cancelled_and_saves_nothing(tmp_path, demo_home):
    import shutil as sh

    from ui.jobs import JobRegistry
    from ui.tasks import train_job

    ws_path = tmp_path / "ws"
    sh.copytree(demo_home / "demo", ws_path, ignore=sh.ignore_patterns("data", "heads"))
    registry = JobRegistry()
    options = {
        "head_type": "linear",
        "name": "cancelled",
        "train_split": "train",
        "val_split": "val",
        "max_epochs": 100_000,
        "patience": 100_000,
    }
    job = registry.start(
        "train", "t", (str(ws_path), "train"), train_job, str(ws_path), "tiny-clip/random", options
    )
    deadline = 0
    while job.running and len(job.records) < 2 and deadline < 400:
        job.wait(0.05)
        deadline += 1
    assert job.message.startswith("training: epoch")  # live, one record per epoch
    job.cancel()
    assert job.wait(30) and job.status == "cancelled"
    assert len(job.records) >= 2  # the curves so far stay on the page
    assert not (ws_path / "heads" / "cancelled.safetensors").exists()


# -- workspace changes from outside -------------------------------------------------------------


def copy_demo_workspace(demo_home: Path, target: Path) -> Path:
    """The demo workspace (database and head) in ``target``; its image paths still point to the
    demo's files."""
    shutil.copytree(demo_home / "demo", target, ignore=shutil.ignore_patterns("data"))
    return target


def open_workspace(at, path: Path) -> None:
    at.text_input(key="cl_ws_input").set_value(str(path))
    at.button(key="cl_ws_open").click()
    at.run()
    assert_clean(at, "open workspace")


def test_outside_changes_show_at_once_and_uploads_reload_nothing(tmp_path, demo_home):
    import io
    import re

    from PIL import Image

    from detector.store import ImageRow, Workspace
    from ui import resources

    def sidebar_count(at, what: str) -> int:
        text = " ".join(c.value for c in at.sidebar.caption)
        found = re.search(rf"(\d+) {what}", text)
        return int(found.group(1)) if found else 0

    ws_path = copy_demo_workspace(demo_home, tmp_path / "ws").resolve()
    at = new_app().run()
    open_workspace(at, ws_path)
    at.switch_page("pages/generators.py").run()
    generation = resources.generation(ws_path)
    unlabelled = sidebar_count(at, "unlabelled")
    at.switch_page("pages/detect.py").run()
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (12, 34, 56)).save(png, "PNG")  # bytes no test uploaded yet
    at.file_uploader(key="detect_upload").set_value([("new.png", png.getvalue(), "image/png")])
    at.run()  # one run: the sidebar's counts are redrawn after the page wrote
    assert_clean(at, "upload")
    assert resources.generation(ws_path) == generation  # an upload reloads no large array
    assert sidebar_count(at, "unlabelled") == unlabelled + 1  # the counts follow at once

    with Workspace(ws_path) as outside:  # e.g. `python -m detector embed` in a terminal
        outside.add_images([ImageRow(hash="f" * 64, path="/x/new.png", label=0, split="test")])
    at.run()
    assert resources.generation(ws_path) == generation + 1
    assert sidebar_count(at, "real") == 97


# -- robustness on the Generators page ----------------------------------------------------------


def test_generators_draws_the_last_stored_sweep(tmp_path, demo_home, tiny_backbone):
    from detector.heads import load_head
    from detector.perturb import robustness_sweep
    from detector.store import Workspace

    ws_path = copy_demo_workspace(demo_home, tmp_path / "ws")
    with Workspace(ws_path) as ws:
        head = load_head(ws_path / "heads" / "demo_linear_probe.safetensors")
        robustness_sweep(ws, head, ["jpeg:50", "blur:1"], backbone=tiny_backbone, workers=0)
    at = new_app().run()
    open_workspace(at, ws_path)
    at.switch_page("pages/generators.py").run()
    assert_clean(at, "generators")
    assert any(s.value == "Robustness to image processing" for s in at.subheader)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("JPEG re-compression" in s for s in specs)
    assert any("Gaussian blur" in s for s in specs)
    table = next(d.value for d in at.dataframe if "Δ mAP" in d.value.columns)
    assert list(table["perturbation"]) == ["none", "jpeg:50", "blur:1"]
    assert table["Δ mAP"].iloc[0] == 0
    assert {"mAP, unperturbed", "Perturbations"} <= {m.label for m in at.metric}
    assert at.multiselect(key="rob_perturbations").value == ["jpeg:50", "blur:1"]
    assert at.button(key="rob_go").label == "Re-run"


def test_robustness_sweep_runs_as_a_job_and_a_rerun_embeds_nothing(tmp_path, demo_home):
    from detector.perturb import stored_robustness
    from detector.store import Workspace
    from ui.resources import job_registry

    ws_path = copy_demo_workspace(demo_home, tmp_path / "ws")
    at = new_app().run()
    open_workspace(at, ws_path)
    at.switch_page("pages/generators.py").run()
    assert any("No sweep for this detector yet" in i.value for i in at.info)
    at.multiselect(key="rob_perturbations").set_value(["jpeg:50", "crop:0.5"])
    at.button(key="rob_go").click()
    at.run()
    assert_clean(at, "sweep started")
    job = job_registry().jobs("robustness")[0]
    assert job.wait(120) and job.status == "done", job.error
    assert job.result["embedded"] == {"jpeg:50": 48, "crop:0.5": 48}  # the 48 test images
    at.run()
    assert_clean(at, "sweep done")
    with Workspace(ws_path) as ws:
        (report,) = stored_robustness(ws, head="demo_linear_probe")
    assert list(report.summary["perturbation"]) == ["none", "jpeg:50", "crop:0.5"]
    assert report.split == "test" and report.pairing == "shared"
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Centre crop" in s for s in specs)

    at.button(key="rob_go").click()  # a re-run reads the stored embeddings
    at.run()
    rerun = job_registry().jobs("robustness")[0]
    assert rerun is not job and rerun.wait(60) and rerun.status == "done", rerun.error
    assert rerun.result["embedded"] == {}


def test_a_mistyped_perturbation_is_a_message(tmp_path, demo_home):
    from ui.resources import job_registry

    ws_path = copy_demo_workspace(demo_home, tmp_path / "ws")
    at = new_app().run()
    open_workspace(at, ws_path)
    at.switch_page("pages/generators.py").run()
    at.multiselect(key="rob_perturbations").set_value(["jpeg:500"])
    at.button(key="rob_go").click()
    at.run()
    assert_clean(at)
    assert any("JPEG quality must be a whole number in 1..100" in e.value for e in at.error)
    assert not job_registry().jobs("robustness")


# -- the bias audit on the Data page -----------------------------------------------------------


def sized_dataset(root: Path, real_size=(320, 240), fake_size=(160, 160), n=8) -> Path:
    """Reals and fakes as flat-colour JPEGs (colours interleaved between the classes) that
    differ only in their pixel size."""
    from PIL import Image

    for offset, (group, size) in enumerate((("real", real_size), ("gan", fake_size))):
        (root / group).mkdir(parents=True)
        for i in range(n):
            colour = (20 * (2 * i + offset), 90, 160)
            Image.new("RGB", size, colour).save(root / group / f"{i}.jpg", quality=90)
    return root


def embedded_workspace(tmp_path: Path, data: Path, backbone) -> Path:
    from detector.datasets import load_dataset
    from detector.extract import embed_dataset
    from detector.store import Workspace

    ws_path = tmp_path / "ws"
    with Workspace(ws_path) as ws:
        embed_dataset(load_dataset(data), ws, backbone, workers=0)
    return ws_path


def test_data_page_audit_flags_reals_and_fakes_of_different_sizes(tmp_path, tiny_backbone):
    ws_path = embedded_workspace(tmp_path, sized_dataset(tmp_path / "data"), tiny_backbone)
    at = new_app().run()
    open_workspace(at, ws_path)
    at.switch_page("pages/data.py").run()
    assert_clean(at, "data")
    assert any(s.value == "Dataset bias audit" for s in at.subheader)
    warnings = [w.value for w in at.warning if "separates real from synthetic" in w.value]
    assert any("the image width alone separates" in w for w in warnings), warnings
    assert any("typical real 320 px, typical synthetic 160 px" in w for w in warnings)
    table = next(d.value for d in at.dataframe if "typical synthetic" in d.value.columns)
    assert table["flagged"].iloc[0] and not table["flagged"].iloc[-1]  # flagged first
    assert at.selectbox(key="audit_pick").value == 0
    assert any("by class" in c.proto.spec for c in at.get("plotly_chart"))
    # kept in the workspace: a new session reads it instead of the files
    from detector.results import stored_audit
    from detector.store import Workspace

    with Workspace(ws_path) as ws:
        assert len(stored_audit(ws).report.warnings) == len(warnings)
    # on the user's own data the warnings stand alone: no "expected here" note
    assert not any("built-in demo data" in i.value for i in at.info)


def test_the_demo_audit_is_labelled_as_expected():
    at = new_app().run()  # the demo workspace
    at.switch_page("pages/data.py").run()
    assert_clean(at, "demo audit")
    flagged = [w.value for w in at.warning if "separates real from synthetic" in w.value]
    notes = [i.value for i in at.info if "built-in demo data" in i.value]
    assert flagged and notes and "Expected here" in notes[0]


def test_audit_of_a_fair_dataset_says_nothing_is_flagged(tmp_path, tiny_backbone):
    data = sized_dataset(tmp_path / "data", real_size=(200, 200), fake_size=(200, 200))
    ws_path = embedded_workspace(tmp_path, data, tiny_backbone)
    at = new_app().run()
    open_workspace(at, ws_path)
    at.switch_page("pages/data.py").run()
    assert_clean(at)
    assert any("No file property alone separates" in s.value for s in at.success)


def test_large_audits_run_as_a_job_that_can_be_cancelled(tmp_path, tiny_backbone, monkeypatch):
    from detector.results import audit_fingerprint, stored_audit
    from detector.store import Workspace
    from ui import tasks
    from ui.jobs import JobRegistry
    from ui.resources import job_registry

    monkeypatch.setattr(tasks, "INLINE_AUDIT_FILES", 4)  # 16 files count as "large"
    ws_path = embedded_workspace(tmp_path, sized_dataset(tmp_path / "data"), tiny_backbone)
    with Workspace(ws_path) as ws:
        fingerprint = audit_fingerprint(ws.images())
    # Cancel while reading headers: nothing is stored
    monkeypatch.setattr("detector.audit.PROGRESS_EVERY", 1)
    registry = JobRegistry()
    job = registry.start("audit", "a", (str(ws_path), "audit"), tasks.audit_job, str(ws_path), "x")
    job.cancel()
    assert job.wait(30) and job.status == "cancelled"
    with Workspace(ws_path) as ws:
        assert stored_audit(ws) is None

    at = new_app().run()
    open_workspace(at, ws_path)
    at.switch_page("pages/data.py").run()
    assert any("Not audited yet" in i.value for i in at.info)
    at.button(key="audit_go").click()
    at.run()
    job = job_registry().jobs("audit")[0]
    assert job.wait(60) and job.status == "done", job.error
    assert job.result["fingerprint"] == fingerprint
    at.run()
    assert_clean(at, "after the audit")
    assert any("the image width alone separates" in w.value for w in at.warning)


def test_with_real_weights_the_demo_is_gone(tmp_path, monkeypatch, samples_dir):
    """A backbone whose weights are available (a local checkpoint of a registered
    architecture) replaces the demo: no banner, no offline notice, its id in the sidebar,
    and an upload is scored by a head trained on that backbone."""
    import json

    import open_clip
    import torch

    from detector.backbone import load_backbone
    from detector.datasets import load_dataset
    from detector.extract import embed_dataset
    from detector.store import Workspace
    from detector.train import train_head

    cfg = json.loads((REPO / "assets" / "models" / "tiny-clip.json").read_text())
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "test-vit", cfg)
    torch.manual_seed(3)
    weights = tmp_path / "test-vit.pt"
    torch.save(open_clip.create_model("test-vit").state_dict(), weights)
    backbone = load_backbone("test-vit", str(weights), device="cpu", precision="fp32")
    ws_dir = tmp_path / "ws"
    with Workspace(ws_dir) as ws:
        embed_dataset(load_dataset(samples_dir / "manifest.csv"), ws, backbone, workers=0)
        train_head(ws, "linear", out="probe")
    monkeypatch.setenv("CUE_LENS_MODEL", "test-vit")
    monkeypatch.setenv("CUE_LENS_PRETRAINED", str(weights))
    monkeypatch.setenv("CUE_LENS_PRECISION", "fp32")
    monkeypatch.setenv("CUE_LENS_WORKSPACE", str(ws_dir))

    at = new_app().run()
    for page in PAGES:
        at.switch_page(page).run()
        assert_clean(at, page)
        assert not has_banner(at), f"{page}: demo banner with real weights"
        assert not any("How to use real weights" in e.label for e in at.expander)
    sidebar = [m.value for m in at.sidebar.markdown] + [c.value for c in at.sidebar.caption]
    assert "test-vit" in " ".join(sidebar) and "random weights" not in " ".join(sidebar)
    at.switch_page("pages/detect.py").run()
    data = sample_bytes(samples_dir, "real/PeterWang512__CNNDetection__real.png")
    at.file_uploader(key="detect_upload").set_value([("real.png", data, "image/png")]).run()
    assert_clean(at, "detect with real weights")
    assert not has_banner(at)
    verdicts = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert verdicts and any(
        v in verdicts[0] for v in ("Likely real", "Inconclusive", "Likely synthetic")
    )


# -- the Concepts page ------------------------------------------------------------------------


def _gallery_scores(at, title: str) -> list[list[float]]:
    """The scores under each gallery called ``title``, in page order."""
    import re

    out, current = [], None
    for node in _walk(at.main):
        kind = getattr(node, "type", "")
        value = str(getattr(node, "value", ""))
        if kind == "markdown" and value.startswith("**") and value.endswith("**"):
            current = [] if value == f"**{title}**" else None
            if current is not None:
                out.append(current)
        elif kind == "caption" and current is not None:
            found = re.search(r"score ([+-]\d+\.\d+)", value)
            if found:
                current.append(float(found.group(1)))
    return out


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_concepts_page_galleries_and_a_custom_concept_match_the_library(demo_home):
    import re

    import numpy as np
    from sklearn.metrics import roc_auc_score

    from concepts.directions import phrase_direction
    from detector.backbone import load_backbone
    from detector.store import Workspace

    at = new_app().run()
    at.switch_page("pages/concepts.py").run()
    assert_clean(at, "concepts")
    assert any(s.value == "One concept up close" for s in at.subheader)
    highest, lowest = (
        _gallery_scores(at, "Highest scoring images"),
        _gallery_scores(at, "Lowest scoring images"),
    )
    assert len(highest) == 1 and len(lowest) == 1 and highest[0] and lowest[0]
    assert highest[0] == sorted(highest[0], reverse=True)
    assert min(highest[0]) >= max(lowest[0])

    phrase, opposite = "waxy plastic skin", "natural skin texture"
    inputs = {t.label: t for t in at.text_input}
    inputs["Phrase"].set_value(phrase)
    inputs["Opposite (optional)"].set_value(opposite)
    at.button(key="FormSubmitter:custom_concept-Score").click()
    at.run()
    assert_clean(at, "custom concept")
    said = [c.value for c in at.caption if c.value.startswith(f"“{phrase}” vs “{opposite}”")]
    assert said, [c.value for c in at.caption]
    shown_auc = float(re.search(r"AUC synthetic vs real (\d\.\d\d)", said[0]).group(1))
    assert len(_gallery_scores(at, "Highest scoring images")) == 2  # the custom one too

    # the same number from the library, computed here independently of the page
    backbone = load_backbone("tiny-clip")
    direction = phrase_direction(phrase, opposite, backbone, backbone_id=backbone.id)
    with Workspace(demo_home / "demo") as ws:
        meta, x = ws.dataset(backbone.id, "projected")
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = roc_auc_score(meta["label"].astype(int), unit @ direction)
    assert abs(shown_auc - expected) <= 0.006


def test_dropped_files_list_full_names_and_what_became_of_each(monkeypatch):
    from PIL import Image

    from ui.uploads import LEFT_OUT

    monkeypatch.setenv("CUE_LENS_MAX_FILES", "2")  # the third file is left out
    png = io.BytesIO()
    Image.new("RGB", (96, 80), (200, 40, 40)).save(png, format="PNG")
    stem = "summer-holiday-2026-beach-sunset-camera-roll-export-shot-"
    files = [
        (f"{stem}01-edited.png", png.getvalue()),
        (f"{stem}02-edited.png", b"not an image"),
        (f"{stem}03-edited.png", png.getvalue()),
    ]
    at = new_app().run()
    at.file_uploader(key="detect_upload").set_value([(n, d, "image/png") for n, d in files]).run()
    assert_clean(at, "drop")
    listed = next(t.value for t in at.table if "status" in t.value.columns)
    assert list(listed["file"]) == [name for name, _ in files]
    status = list(listed["status"])
    assert status[0] in {"likely real", "inconclusive", "likely synthetic"}
    assert status[1].startswith("failed: ") and status[2] == LEFT_OUT
