"""The panel of one background job (``ui.jobs.Job``) on a page, the same on every page.

:func:`live_job` is what pages call: it draws the job in a ``st.fragment`` that polls the job
once a second while it runs (only the fragment redraws, not the page), and reruns the whole
page once when the job ends, so what the job wrote (new counts, a head, a stored result)
appears everywhere on the page. :func:`job_panel` draws the job's state itself: progress with
a Cancel button, or how it ended.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from ui.jobs import CANCELLED, DONE, FAILED, Job

POLL_SECONDS = 1.0  # how often a running job's fragment redraws


def job_panel(job: Job, *, key: str, keeps_work: bool = True) -> None:
    """A job's progress with a Cancel button, or its outcome once it ended.

    ``keeps_work``: whether Cancel keeps what is finished (extraction, the robustness sweep)
    or leaves nothing behind (training: no head is saved); the panel says which.
    """
    if job.running:
        st.progress(job.progress or 0.0, text=f"{job.title}: {job.message or 'starting…'}")
        cols = st.columns([1, 4])
        if cols[0].button("Cancel", key=f"{key}_cancel", disabled=job.cancel_requested):
            job.cancel()
        kept = (
            "what is finished is kept even if you cancel"
            if keeps_work
            else "Cancel stops it and saves nothing"
        )
        cols[1].caption(f"{job.elapsed:.0f} s. You can change page: the work goes on; {kept}.")
        return
    if job.status == DONE:
        st.success(f"{job.title}: done in {job.elapsed:.1f} s.", icon=":material/check_circle:")
    elif job.status == CANCELLED:
        kept = "finished work was kept" if keeps_work else "nothing was saved"
        st.info(f"{job.title}: cancelled after {job.elapsed:.0f} s; {kept}.")
    elif job.status == FAILED:
        st.error(f"{job.title}: {job.error}", icon=":material/error:")


def live_job(
    job: Job | None,
    name: str,
    *,
    keeps_work: bool = True,
    hide_done: bool = False,
    extra: Callable[[Job], None] | None = None,
) -> None:
    """Draw ``job`` in a fragment that follows it, and rerun the page once when it ends.

    ``name`` keys the panel's widgets (``{name}_{job.id}_cancel``) and the session entry
    ``{name}_seen`` that remembers which job's end already caused a rerun. ``hide_done``:
    draw nothing for a job that finished successfully (its result is drawn by the page from
    where the job stored it). ``extra(job)`` draws more inside the fragment, after the panel
    (training curves, a summary of the result), so it follows the job too.
    """
    if job is None or (hide_done and job.status == DONE):
        return

    @st.fragment(run_every=POLL_SECONDS if job.running else None)
    def follow() -> None:
        job_panel(job, key=f"{name}_{job.id}", keeps_work=keeps_work)
        if extra is not None:
            extra(job)
        seen = f"{name}_seen"
        if not job.running and st.session_state.get(seen) != job.id:
            st.session_state[seen] = job.id
            st.rerun(scope="app")  # what the job wrote shows everywhere on the page

    follow()
