"""The shared job panel (``ui.job_panel.live_job``) under AppTest: a running job offers Cancel,
a finished one shows its result after the page reran once, a failed one its error."""

from __future__ import annotations

import threading

import pytest
from streamlit.testing.v1 import AppTest

from detector.errors import CueLensError
from ui.jobs import JobRegistry


def _page():
    """The page under test: one job from the session, drawn by the shared helper."""
    import streamlit as st

    from ui.job_panel import live_job

    st.session_state["runs"] = st.session_state.get("runs", 0) + 1

    def result(job):
        if not job.running and job.result:
            st.markdown(f"result: {job.result}")

    live_job(
        st.session_state["job"],
        "demo",
        keeps_work=st.session_state.get("keeps_work", True),
        hide_done=st.session_state.get("hide_done", False),
        extra=result,
    )


def _app(job, **state) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["job"] = job
    for key, value in state.items():
        at.session_state[key] = value
    return at


def _finished(fn, *args):
    job = JobRegistry().start("test", "Test job", ("ws", "test"), fn, *args)
    assert job.wait(10)
    return job


def test_a_finished_job_reruns_the_page_once_and_shows_its_result():
    job = _finished(lambda job: 42)
    at = _app(job).run()
    assert not at.exception
    assert at.session_state["runs"] == 2  # the end of the job reran the page once
    assert at.session_state["demo_seen"] == job.id
    assert [s.value for s in at.success] == [f"Test job: done in {job.elapsed:.1f} s."]
    assert "result: 42" in [m.value for m in at.markdown]
    at.run()
    assert at.session_state["runs"] == 3  # a later run of the page does not rerun it again


def test_a_failed_job_shows_its_error():
    def fail(job):
        raise CueLensError("broken.jpg: not an image")

    job = _finished(fail)
    at = _app(job).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Test job: broken.jpg: not an image"]
    assert not at.success and "result" not in " ".join(m.value for m in at.markdown)


def test_hide_done_draws_nothing_for_a_finished_job_but_shows_a_failed_one():
    at = _app(_finished(lambda job: 1), hide_done=True).run()
    assert not at.success and not at.markdown
    assert at.session_state["runs"] == 1  # nothing drawn, nothing to rerun

    def fail(job):
        raise CueLensError("nothing to audit")

    at = _app(_finished(fail), hide_done=True).run()
    assert [e.value for e in at.error] == ["Test job: nothing to audit"]


@pytest.mark.parametrize(
    ("keeps_work", "kept"), [(True, "finished work was kept"), (False, "nothing was saved")]
)
def test_cancel_stops_a_running_job_and_says_what_was_kept(keeps_work, kept):
    started = threading.Event()

    def wait_for_cancel(job):
        started.set()
        while not job.should_stop():
            job.update(0.5, "halfway")
            started.wait(0.01)
        return None

    job = JobRegistry().start("test", "Test job", ("ws", "test"), wait_for_cancel)
    assert started.wait(10)
    at = _app(job, keeps_work=keeps_work).run()
    assert not at.exception and job.running
    cancel = at.button(key=f"demo_{job.id}_cancel")
    assert not cancel.disabled
    cancel.click().run()
    assert job.wait(10) and job.status == "cancelled"
    at.run()
    assert [i.value for i in at.info] == [f"Test job: cancelled after {job.elapsed:.0f} s; {kept}."]
