"""An interaction sweep of the dashboard: every widget a page shows, changed one at a time.

For each page the app runs on a private copy of the demo home. The sweep collects the
widgets the page shows and performs one interaction it has not performed yet: a selectbox,
radio, select slider or pills set to its first, middle or last option, a multiselect
emptied or set to one option, a checkbox or toggle flipped, a slider or number input moved to
its ends and middle, a text input given a sensible value, a file uploader given prepared
files, a button clicked. Then it reruns, checks the page is clean (``assert_clean``) and
collects again, since widgets come and go as others change. Widgets that just appeared are
explored first; a button is armed again when an input before it in the same form, expander
or popover changes, and an input of a form is sent with the form's submit button, so "type,
then submit" is tried for each value. A page is also left and come back to. Jobs a click
starts (extraction, training, the transfer matrix, the robustness sweep) are cancelled once
through their panel's Cancel button when still running, then run to the end; the page is
checked again once they ended, and none may fail with an unexpected error.

The Detect, Concepts and Generators pages are swept with each type of head chosen in the
sidebar. The sidebar (the frame around every page) is swept once, each interaction followed
by a run of the next page, so a changed workspace, backbone or head is seen by every page.
Everything runs on a copy of the demo home below the test's tmp folder.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_app import PAGES, app_env, assert_clean, demo_home, new_app  # noqa: F401

MAX_RUNS = 70  # script runs per sweep (interactions and the reruns after jobs)
MAX_CLICKS = 4  # times one button is clicked (each after a change of the inputs before it)
JOB_TIMEOUT = 90  # seconds a job may take before the sweep cancels it (and fails)
ROUND_TRIP = "(another page and back)"
CANCEL = "(Cancel of a running job)"
# interactions each sweep must at least have performed, and widgets it must have touched
MIN_INTERACTIONS = {
    "pages/detect.py": 8,
    "pages/concepts.py": 8,
    "pages/generators.py": 20,
    "pages/data.py": 30,
    "sidebar": 20,
}
REQUIRED = {
    "pages/detect.py": {"detect_upload", "detect_pick", ROUND_TRIP, "detect_clear"},
    "pages/concepts.py": {
        "Concepts shown",
        "concept_pick",
        "Phrase",
        "Opposite (optional)",
        "FormSubmitter:custom_concept-Score",
    },
    "pages/generators.py": {
        "gen_split",
        "gen_pairing",
        "transfer_go",
        "sbs_a",
        "sbs_b",
        "rob_perturbations",
        "rob_go",
        "Download the sweep (CSV)",
    },
    "pages/data.py": {
        "data_path",
        "FormSubmitter:register-Check dataset",
        "Extract embeddings with tiny-clip (random weights)",
        "Download the error list (CSV)",
        "Head",
        "FormSubmitter:train-Train",
        "card_pick",
        "imp",
        "imp_go",
        "audit_pick",
    },
    "sidebar": {
        "cl_ws_input",
        "cl_ws_open",
        "cl_ws_def",
        "cl_refresh",
        "cl_bb_model",
        "cl_bb_weights",
        "cl_bb_device",
        "cl_bb_apply",
        "cl_bb_default",
        "cl_bb_demo",
        "cl_head_select",
    },
}
HEAD_TYPES = ("orthogonal", "concept")  # trained besides the demo's linear probe
GROUPS = ("form", "expander", "popover")  # a button there follows the inputs before it


# -- the set-up: a private demo home, files to type and upload ---------------------------------


@dataclass
class Inputs:
    """Values for text inputs and file uploaders, by key or label."""

    text: dict[str, list[str]]
    files: dict[str, list[list[tuple[str, bytes, str]]]]


@pytest.fixture(scope="session")
def sweep_source(request, tmp_path_factory) -> Path:
    """The demo home with a de-correlated and a concept-bottleneck head besides the demo's
    linear probe, so the pages are swept with each type of head."""
    import concepts.bottleneck  # noqa: F401  (lets train_head build concept heads)
    from detector.store import Workspace
    from detector.train import train_head

    demo = request.getfixturevalue("demo_home")  # the fixture imported from test_app
    source = tmp_path_factory.mktemp("sweep_source") / "home"
    shutil.copytree(demo, source)
    with Workspace(source / "demo") as ws:
        for head_type in HEAD_TYPES:
            train_head(ws, head_type, out=f"sweep_{head_type}")
    return source


@pytest.fixture
def sweep_home(sweep_source, tmp_path, monkeypatch):
    """A copy of the sweep's demo home (nothing the sweep writes reaches the shared demo), and
    the jobs of the test ended before the next test starts."""
    from ui.resources import job_registry

    home = tmp_path / "home"
    shutil.copytree(sweep_source, home)
    monkeypatch.setenv("CUE_LENS_HOME", str(home))
    yield home
    running = job_registry().running()
    for job in running:
        job.cancel()
    for job in running:
        job.wait(60)
    assert not [j.title for j in running if j.running], "jobs still running after the test"


@pytest.fixture
def inputs(sweep_home, tmp_path) -> Inputs:
    data = sweep_home / "demo" / "data"
    mini = tmp_path / "mini"
    for group in ("real", "checkerboard-gan"):
        (mini / group).mkdir(parents=True)
        for f in sorted((data / "train" / group).iterdir())[:6]:
            shutil.copy(f, mini / group / f.name)
    (mini / "checkerboard-gan" / "broken.png").write_bytes(b"not an image at all")
    manifest = tmp_path / "manifest.csv"  # two good rows, three refused
    rows = [
        f"{p},{int(p.parent.name != 'real')},{p.parent.name},train"
        for p in sorted(mini.rglob("*.jpg"))[:2]
    ]
    rows += [
        "/etc/passwd,0,real,train",
        "missing.png,1,gan,test",
        f"{rows[0].split(',')[0]},maybe,,",
    ]
    manifest.write_text("path,label,generator,split\n" + "\n".join(rows) + "\n")
    images = (
        sorted((data / "test" / "real").iterdir())[:1]
        + sorted((data / "test" / "smooth-diffusion").iterdir())[:1]
    )

    def upload(path: Path) -> tuple[str, bytes, str]:
        kind = "image/png" if path.suffix == ".png" else "image/jpeg"
        return (path.name, path.read_bytes(), kind)

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    head = sweep_home / "demo" / "heads" / "demo_linear_probe.safetensors"
    return Inputs(
        text={
            "data_path": ["/etc", str(manifest), str(mini)],
            "Phrase": ["waxy plastic skin"],
            "Opposite (optional)": ["natural skin texture"],
            "Name": ["sweep head"],
            "cl_ws_input": ["/etc/cue_lens_sweep", str(tmp_path / "sweep_ws")],
            "cl_bb_model": ["ViT-B-16"],
            "cl_bb_weights": ["openai", str(junk)],
        },
        files={
            "detect_upload": [
                [upload(images[0])],
                [],  # removed by the user: the last results go
                [  # the same bytes twice, under two names, and a file that is no image
                    *map(upload, images),
                    (f"again{images[0].suffix}", *upload(images[0])[1:]),
                    ("broken.png", b"not an image", "image/png"),
                ],
            ],
            "imp": [
                [("broken.ckpt", b"not a checkpoint", "application/octet-stream")],
                [("sweep_copy.safetensors", head.read_bytes(), "application/octet-stream")],
            ],
        },
    )


# -- the sweep ---------------------------------------------------------------------------------


def _nodes(node, group=None):
    """(node, group) for each node below ``node``, in page order; ``group`` is the nearest
    form, expander or popover around it."""
    kind = getattr(node, "type", "")
    if kind in GROUPS:
        name = getattr(node, "key", None) or getattr(node, "label", None)
        if name is None and kind == "popover":
            name = node.proto.popover.label
        group = (kind, name)
    yield node, group
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child, group)


def _few(n: int) -> list[int]:
    """Indices to try of n options: all of few, else the first, a middle and the last."""
    return list(range(n)) if n <= 4 else sorted({0, n // 2, n - 1})


def _choose(w, shown: list[str], single: bool = True) -> None:
    """Select options of a choice widget by their text as shown.

    AppTest selects by value and formats it with the widget's ``format_func``, which the
    test does not have (options shown as labels of keys); the browser sends the shown text,
    and so does this.
    """
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    w._assert_can_interact()
    state = WidgetState(id=w.id)
    if single:
        state.string_value = shown[0]
    else:
        state.string_array_value.data[:] = shown
    w.__class__ = type(
        w.__class__.__name__, (w.__class__,), {"_widget_state": property(lambda _: state)}
    )


@dataclass
class Candidate:
    ident: str  # the widget's key, else its label
    kind: str
    value: str  # what is done, as a readable string
    act: object  # a callable doing it on the widget
    group: tuple | None
    button: bool = False
    submit: object = None  # in a form: its submit button, clicked in the same run


@dataclass
class Sweep:
    at: object
    where: str  # the page, or "sidebar"
    inputs: Inputs
    after: object = None  # called after each interaction's run (the sidebar sweep's page runs)
    done: list[tuple[str, str, str]] = field(default_factory=list)
    touched: set = field(default_factory=set)
    runs: int = 0
    step: int = 0
    seen: dict[str, int] = field(default_factory=dict)  # ident -> step first seen
    armed: dict[str, int] = field(default_factory=dict)  # button ident -> step armed again
    arms: dict[str, int] = field(default_factory=dict)  # button ident -> times armed
    clicks: dict[str, int] = field(default_factory=dict)
    tried: set = field(default_factory=set)
    failed_jobs: list[str] = field(default_factory=list)
    cancelled: set = field(default_factory=set)  # buttons whose first job was cancelled

    def root(self):
        return self.at.sidebar if self.where == "sidebar" else self.at.main

    # the widgets and what can be done with each

    def candidates(self) -> list[Candidate]:
        from streamlit.testing.v1 import element_tree as et

        out: list[Candidate] = []
        submits = {}
        for node, group in _nodes(self.root()):
            if not isinstance(node, et.Widget) or getattr(node, "disabled", False):
                continue
            ident = node.key or getattr(node, "label", None) or node.type
            out.extend(self._options(node, ident, group, et))
            if group and group[0] == "form" and isinstance(node, et.Button):
                submits.setdefault(group, (ident, node))
        for c in out:  # an input of a form is sent with the form: change it, then submit
            if not c.button and c.group in submits:
                c.submit = submits[c.group]
        if self.where != "sidebar":  # leave the page and come back (uploads are dropped)
            out.append(Candidate(ROUND_TRIP, "page", "elsewhere and back", self._round_trip, None))
        return out

    def _round_trip(self) -> None:
        other = next(p for p in PAGES if p != self.where)
        self.at.switch_page(other).run()
        self.runs += 1
        assert_clean(self.at, f"{self.where}: to {other}")
        self.at.switch_page(self.where)

    def _options(self, w, ident, group, et) -> list[Candidate]:
        def make(value, act, button=False):
            return Candidate(ident, w.type, value, act, group, button)

        def pick_one(indices, current):
            return [
                make(w.options[i], lambda w=w, i=i: _choose(w, [w.options[i]]))
                for i in indices
                if i != current
            ]

        if isinstance(w, et.Button | et.DownloadButton):
            return [make("click", lambda w=w: w.click(), button=True)]
        if isinstance(w, et.Selectbox | et.Radio):
            return pick_one(_few(len(w.options)), w.index)
        if isinstance(w, et.SelectSlider):
            shown = str(w.value) if not isinstance(w.value, tuple | list) else None
            current = w.options.index(shown) if shown in w.options else None
            return pick_one(_few(len(w.options)), current)
        if isinstance(w, et.ButtonGroup):  # pills, segmented control
            current = w.indices[0] if len(w.indices) == 1 else None
            if w._is_single_select:
                return pick_one(_few(len(w.options)), current)
            return [
                make(w.options[i], lambda w=w, i=i: _choose(w, [w.options[i]], single=False))
                for i in _few(len(w.options))
                if i != current
            ]
        if isinstance(w, et.Multiselect):
            opts = list(w.options)
            choices = [[], opts[:1], opts[-1:]] if opts else [[]]
            return [
                make(repr(c), lambda w=w, c=c: _choose(w, c, single=False))
                for c in choices
                if list(c) != list(w.values)
            ]
        if isinstance(w, et.Checkbox | et.Toggle):
            return [make(str(not w.value), lambda w=w: w.set_value(not w.value))]
        if isinstance(w, et.Slider):
            if isinstance(w.value, tuple | list):
                return [make("full range", lambda w=w: w.set_range(w.min, w.max))]
            mid = w.min + round((w.max - w.min) / 2 / w.step) * w.step
            kind = type(w.value)  # the proto keeps floats; an int slider takes ints
            return [
                make(str(v), lambda w=w, v=v: w.set_value(v))
                for v in dict.fromkeys(kind(x) for x in (w.min, mid, w.max))
                if v != w.value
            ]
        if isinstance(w, et.NumberInput):
            step = w.step or 1
            base = w.value if w.value is not None else 0
            values = [v for v in (w.min, w.max, base - step, base + step) if v is not None]
            values = [v for v in values if (w.min is None or v >= w.min)]
            values = [v for v in values if (w.max is None or v <= w.max)]
            return [
                make(str(v), lambda w=w, v=v: w.set_value(v))
                for v in dict.fromkeys(values)
                if v != w.value
            ]
        if isinstance(w, et.TextInput | et.TextArea):
            values = self.inputs.text.get(w.key or "") or self.inputs.text.get(w.label)
            return [
                make(repr(v), lambda w=w, v=v: w.set_value(v))
                for v in values or ["sweep text"]
                if v != w.value
            ]
        if isinstance(w, et.FileUploader):
            drops = self.inputs.files.get(w.key or "") or self.inputs.files.get(w.label) or []
            return [
                make(repr([name for name, _, _ in d]), lambda w=w, d=d: w.set_value(d))
                for d in drops
            ]
        return []

    # choosing and doing

    def _key(self, c: Candidate):
        if c.button:
            return (c.ident, "click", self.arms.get(c.ident, 0))
        return (c.ident, c.value)

    def _next(self) -> Candidate | None:
        cands = self.candidates()
        for c in cands:
            self.seen.setdefault(c.ident, self.step)
        fresh = [
            (i, c)
            for i, c in enumerate(cands)
            if self._key(c) not in self.tried
            and not (c.button and self.clicks.get(c.ident, 0) >= MAX_CLICKS)
        ]
        if not fresh:
            return None
        # the newest widgets (or buttons armed again) first, then page order
        i, c = max(
            fresh,
            key=lambda ic: (max(self.seen[ic[1].ident], self.armed.get(ic[1].ident, -1)), -ic[0]),
        )
        self._after = cands[i + 1 :]
        return c

    def _arm_after(self, changed: Candidate) -> None:
        """A changed input arms the first button after it in its expander or popover."""
        if changed.button or changed.group is None or changed.submit is not None:
            return
        for c in self._after:
            if c.button and c.group == changed.group:
                self.arms[c.ident] = self.arms.get(c.ident, 0) + 1
                self.armed[c.ident] = self.step
                return

    def run(self) -> None:
        from ui.resources import job_registry

        while self.runs < MAX_RUNS:
            c = self._next()
            if c is None:
                return
            self.step += 1
            self.tried.add(self._key(c))
            what = f"{self.where}: {c.kind} {c.ident!r} -> {c.value}"
            before = {j.id: j.status for j in job_registry().jobs()}
            c.act()
            if c.submit is not None:
                ident, button = c.submit
                button.click()
                self.touched.add(ident)
                self.clicks[ident] = self.clicks.get(ident, 0) + 1
                what += f", then {ident!r}"
            self.at.run()
            self.runs += 1
            assert_clean(self.at, what)
            self.done.append((c.ident, c.kind, c.value))
            self.touched.add(c.ident)
            if c.button:
                self.clicks[c.ident] = self.clicks.get(c.ident, 0) + 1
            else:
                self._arm_after(c)
            starter = c.submit[0] if c.submit is not None else c.ident if c.button else None
            self._settle(what, before, starter)
            if self.after is not None:
                self.after(self, what)

    def _settle(self, what: str, before: dict, starter: str | None) -> None:
        """Wait for the jobs the interaction started; check the page once they ended.

        The first job a button starts is cancelled through its panel's Cancel button when it
        is still running on the page; the button is then armed again to run it to the end.
        """
        from streamlit.testing.v1.element_tree import Button

        from ui.resources import job_registry

        cancel = [
            n
            for n, _ in _nodes(self.root())
            if isinstance(n, Button) and n.label == "Cancel" and not n.disabled
        ]
        if cancel and starter and starter not in self.cancelled and job_registry().running():
            self.cancelled.add(starter)
            cancel[0].click()
            self.at.run()
            self.runs += 1
            assert_clean(self.at, f"{what}, then Cancel")
            self.done.append((cancel[0].key, "button", "click"))
            self.touched.add(CANCEL)
            self.arms[starter] = self.arms.get(starter, 0) + 1
            self.armed[starter] = self.step
        deadline = time.monotonic() + JOB_TIMEOUT
        for job in job_registry().running():
            if not job.wait(max(0.0, deadline - time.monotonic())):
                job.cancel()
                job.wait(30)
                pytest.fail(f"{what}: job {job.title!r} still running after {JOB_TIMEOUT} s")
        changed = [j for j in job_registry().jobs() if before.get(j.id) != j.status]
        if not changed:
            return
        for job in changed:
            if job.status == "failed" and "unexpectedly" in (job.error or ""):
                self.failed_jobs.append(f"{what}: {job.error}")
        self.at.run()
        self.runs += 1
        assert_clean(self.at, f"{what} (after its job)")
        assert not self.failed_jobs, self.failed_jobs

    def summary(self) -> str:
        cancels = [ident for ident, _, _ in self.done if ident.endswith("_cancel")]
        return f"{len(self.done)} interactions ({len(cancels)} cancels), {self.runs} runs"

    def check(self) -> None:
        """The sweep did something: enough interactions, on the widgets that matter."""
        assert len(self.done) >= MIN_INTERACTIONS[self.where], (self.where, self.done)
        missing = REQUIRED[self.where] - self.touched
        assert not missing, f"{self.where}: never touched {sorted(missing)}; done: {self.done}"


# -- the tests ---------------------------------------------------------------------------------


SWEEPS = [(page, None) for page in PAGES] + [
    (page, f"sweep_{t}") for t in HEAD_TYPES for page in PAGES if page != "pages/data.py"
]


@pytest.mark.parametrize(
    ("page", "head"), SWEEPS, ids=[f"{Path(p).stem}-{h or 'demo'}" for p, h in SWEEPS]
)
def test_every_widget_of_the_page_keeps_it_clean(page, head, sweep_home, inputs):
    at = new_app().run()
    if head is not None:  # the detector chosen in the sidebar
        at.sidebar.selectbox(key="cl_head_select").set_value(f"workspace:{head}")
        at.run()
        assert at.sidebar.selectbox(key="cl_head_select").value == f"workspace:{head}"
    at.switch_page(page).run()
    assert_clean(at, page)
    sweep = Sweep(at, page, inputs)
    sweep.run()
    print(f"{page} ({head or 'demo'}): {sweep.summary()}")
    sweep.check()


def test_every_sidebar_widget_keeps_every_page_clean(sweep_home, inputs):
    at = new_app().run()
    assert_clean(at, "start")
    assert len(at.sidebar.selectbox(key="cl_head_select").options) == 1 + len(HEAD_TYPES)

    def next_page(sweep: Sweep, what: str) -> None:
        page = PAGES[sweep.step % len(PAGES)]
        at.switch_page(page).run()
        sweep.runs += 1
        assert_clean(at, f"{what}, then {page}")

    sweep = Sweep(at, "sidebar", inputs, after=next_page)
    sweep.run()
    print(f"sidebar: {sweep.summary()}")
    sweep.check()


def test_concepts_page_on_a_workspace_without_embeddings_points_to_the_data_page(tmp_path):
    """Found by the sidebar sweep: opening an empty workspace made the Concepts page show the
    library's error (``run `python -m detector embed```) instead of what to do in the app."""
    from test_app import open_workspace

    at = new_app().run()
    open_workspace(at, tmp_path / "empty_ws")
    at.switch_page("pages/concepts.py").run()
    assert_clean(at, "concepts, empty workspace")
    assert not at.error, [e.value for e in at.error]
    assert any("extract a dataset on the Data page" in i.value for i in at.info)
    inputs = {t.label: t for t in at.text_input}
    inputs["Phrase"].set_value("waxy plastic skin")
    at.button(key="FormSubmitter:custom_concept-Score").click()
    at.run()
    assert_clean(at, "custom concept, empty workspace")
    assert any("No labelled images with embeddings" in i.value for i in at.info)


def test_a_refused_dataset_path_drops_the_previous_preview(tmp_path, sweep_home):
    """Found by the sweep: after a good check, a refused path left the older dataset's preview
    and its Extract button on the page, under the new path's error."""
    mini = tmp_path / "mini" / "real"
    mini.mkdir(parents=True)
    for f in sorted((sweep_home / "demo" / "data" / "train" / "real").iterdir())[:2]:
        shutil.copy(f, mini / f.name)
    at = new_app().run()
    at.switch_page("pages/data.py").run()

    def check(path) -> list[str]:
        at.text_input(key="data_path").set_value(str(path))
        at.button(key="FormSubmitter:register-Check dataset").click()
        at.run()
        assert_clean(at, str(path))
        return [b.label for b in at.button if b.label.startswith("Extract embeddings")]

    assert check(mini.parent)  # checked: it can be extracted
    assert not check("/etc")  # refused: nothing to extract
    assert any("outside the allowed data folders" in e.value for e in at.error)
    assert not check(tmp_path / "missing")
    assert check(mini.parent)
