"""The dashboard under Streamlit's AppTest, on the offline demo (tiny-clip, procedural data).

Every page renders without an exception or an internal-error message, the demo banner is on
every page, the upload flow works through ``at.file_uploader``, the sidebar's choices survive
page changes, long work runs as background jobs, and errors are messages, not tracebacks.
"""

from __future__ import annotations

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
    assert table.loc[2, "verdict"] == "failed" and table.loc[2, "error"]
    assert any(b.label.startswith("Download results") for b in at.get("download_button"))
    assert at.selectbox(key="detect_pick").options


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
        assert at.info or at.warning, f"{page}: no explanation on an empty workspace"


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
    assert job.records and "train_loss" in job.records[0]
    at.run()
    assert_clean(at, "after training")
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
    while job.running and not job.message.startswith("training:") and deadline < 200:
        job.wait(0.05)
        deadline += 1
    job.cancel()
    assert job.wait(30) and job.status == "cancelled"
    assert not (ws_path / "heads" / "cancelled.safetensors").exists()
