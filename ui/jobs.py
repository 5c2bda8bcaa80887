"""Long work in background threads: extraction, training, building the demo.

A Streamlit script run stops whenever the user clicks elsewhere (a page change is a new run).
Work that takes longer than a click therefore runs in a :class:`Job`: a daemon thread with
its progress, a log of per-step records (training curves), a cancel flag, and its result or
error. Jobs live in one process-wide :class:`JobRegistry`, so a page change (or a reload of
the browser tab) finds the job where it is; the library functions they call write each
finished batch or epoch to the workspace, so a cancelled job keeps what was finished.

No Streamlit import here: pages poll a job and draw it (``ui.job_panel.live_job``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from detector.errors import CueLensError

log = logging.getLogger("cue_lens.jobs")

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class JobCancelled(Exception):
    """Raised inside a job's function (by ``Job.check``) when the user asked it to stop."""


@dataclass
class Job:
    """One piece of background work; its fields are read by pages while it runs.

    ``progress`` is a fraction 0..1 (or None when unknown), ``message`` the current step,
    ``records`` step-wise records (e.g. one dict per training epoch), ``result`` the return
    value of the function, ``error`` a message a user can act on.
    """

    id: int
    kind: str
    title: str
    key: tuple
    status: str = RUNNING
    progress: float | None = None
    message: str = ""
    records: list[dict] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def elapsed(self) -> float:
        """Seconds since start (until the end when finished)."""
        return (self.finished or time.time()) - self.started

    def cancel(self) -> None:
        """Ask the job to stop at its next check (finished steps are kept)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def should_stop(self) -> bool:
        """For library callbacks such as ``embed_dataset(should_stop=...)``."""
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` when a cancel was requested."""
        if self._cancel.is_set():
            raise JobCancelled()

    def update(self, progress: float | None = None, message: str | None = None) -> None:
        """Report progress (0..1) and/or the current step."""
        if progress is not None:
            self.progress = max(0.0, min(1.0, float(progress)))
        if message is not None:
            self.message = message

    def add_record(self, record: dict) -> None:
        """Append one step record (the list is replaced, so readers never see it half-built)."""
        self.records = [*self.records, dict(record)]

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (or ``timeout`` seconds); True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running


class JobRegistry:
    """Every job of this server process, by id; at most one running job per ``key``."""

    def __init__(self, keep: int = 50):
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._keep = keep
        self.listeners: list[Callable[[Job], None]] = []

    def start(
        self,
        kind: str,
        title: str,
        key: tuple,
        fn: Callable[..., Any],
        *args,
        reuse_finished: bool = False,
        **kwargs,
    ) -> Job:
        """Run ``fn(job, *args, **kwargs)`` in a daemon thread and return its job.

        When a job with the same ``key`` is running (or, with ``reuse_finished``, has
        finished successfully), that job is returned instead and nothing new starts.
        """
        with self._lock:
            for job in self._jobs.values():
                if job.key == key and (job.running or (reuse_finished and job.status == DONE)):
                    return job
            job = Job(id=next(self._ids), kind=kind, title=title, key=key)
            self._jobs[job.id] = job
            self._trim()
        thread = threading.Thread(
            target=self._run,
            args=(job, fn, args, kwargs),
            name=f"cue-lens-{kind}-{job.id}",
            daemon=True,
        )
        job._thread = thread
        thread.start()
        return job

    def _run(self, job: Job, fn, args, kwargs) -> None:
        try:
            job.result = fn(job, *args, **kwargs)
            job.status = CANCELLED if job.cancel_requested else DONE
            if job.status == DONE:
                job.progress = 1.0
        except JobCancelled:
            job.status = CANCELLED
        except CueLensError as exc:
            job.error, job.status = str(exc), FAILED
        except Exception as exc:  # a bug: keep the server alive and the message readable
            log.error("job %s (%s) failed:\n%s", job.id, job.title, traceback.format_exc())
            job.error = f"{job.title} failed unexpectedly ({type(exc).__name__}: {exc})"
            job.status = FAILED
        finally:
            job.finished = time.time()
            for listener in list(self.listeners):
                try:
                    listener(job)
                except Exception:  # a listener must never take the job down
                    log.exception("job listener failed")

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if not j.running]
        for job in sorted(finished, key=lambda j: j.id)[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[job.id]

    def get(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def find(self, key: tuple) -> Job | None:
        """The newest job with this key (running or not)."""
        matches = [j for j in self._jobs.values() if j.key == key]
        return max(matches, key=lambda j: j.id) if matches else None

    def jobs(self, kind: str | None = None, scope: str | None = None) -> list[Job]:
        """Jobs, newest first; ``scope`` keeps those whose key starts with it (a workspace)."""
        out = [
            j
            for j in self._jobs.values()
            if (kind is None or j.kind == kind) and (scope is None or (j.key and j.key[0] == scope))
        ]
        return sorted(out, key=lambda j: -j.id)

    def running(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.running]
