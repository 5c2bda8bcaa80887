"""Streamlit building blocks shared by the pages: notices, errors, model cards (job panels:
``ui.job_panel``).

Each function draws one thing from data it is given; none computes anything a page could not
compute through the library.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from contextlib import contextmanager

import pandas as pd
import streamlit as st

from detector.demo import DEMO_BANNER
from detector.errors import CueLensError

log = logging.getLogger("cue_lens.ui")
INTERNAL_ERROR = "Something went wrong on this page"


DEMO_HOW = (
    "Scores, verdicts and concepts below come from the built-in `tiny-clip` with random "
    "weights and a procedural demo dataset: they only show how Cue Lens works. "
    "To use the real detector, provide CLIP weights (see *How to use real weights*)."
)


def demo_banner_text(slot=None) -> None:
    """The DEMO banner itself (into ``slot`` when given)."""
    (slot or st).warning(f"**{DEMO_BANNER}**  \n{DEMO_HOW}", icon=":material/science:")


def demo_banner(ctx) -> None:
    """The demo marker every page carries while tiny-clip is in use."""
    if ctx.demo:
        demo_banner_text()


def weights_notice(ctx) -> None:
    """At the top of every page in automatic demo mode: what is missing and how to fix it."""
    if not ctx.auto_demo:
        return
    with st.expander(
        f"How to use real weights: {ctx.requested.label} is not available here",
        icon=":material/info:",
    ):
        st.markdown(
            "Cue Lens looked for the CLIP weights of the requested backbone and could not get "
            "them, so it started the offline demo instead:"
        )
        st.code(ctx.weights_message, language=None, wrap_lines=True)
        st.markdown(
            "For the dashboard, either\n"
            "- fill the cache once with network access (`python -m detector embed "
            "../shared/samples --workspace /tmp/ws` downloads them), then restart;\n"
            "- or start it with a local file: `CUE_LENS_MODEL=ViT-L-14-336 "
            "CUE_LENS_PRETRAINED=/path/to/weights.safetensors make run`;\n"
            "- or choose another backbone in the sidebar (**Backbone → Change**).\n\n"
            "As soon as the weights are found, the demo is gone."
        )


def problems(ctx) -> None:
    for text in ctx.problems:
        st.error(text, icon=":material/error:")


def show_error(exc: BaseException) -> None:
    """An error as a message a user can act on (library errors are written that way)."""
    if isinstance(exc, CueLensError):
        st.error(str(exc), icon=":material/error:")
        return
    log.error("page error:\n%s", "".join(traceback.format_exception(exc)))
    st.error(
        f"{INTERNAL_ERROR} ({type(exc).__name__}: {exc}). The rest of the app still works; "
        "the details are in the server log.",
        icon=":material/bug_report:",
    )


def guarded(fn: Callable[[], None]) -> None:
    """Run a page body; any error becomes a message, never a traceback on screen."""
    try:
        fn()
    except Exception as exc:  # Streamlit's own control flow (rerun, stop) is BaseException
        show_error(exc)


@contextmanager
def section_guard():
    """Like ``guarded`` for one section of a page: the rest of the page still renders."""
    try:
        yield
    except Exception as exc:
        show_error(exc)


def card_value(value) -> str:
    """A model-card value as a reader wants it: floats to 4 significant digits, lists joined,
    nothing for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(card_value(v) for v in value)
    return str(value)


def flat_items(doc: dict, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, readable value)`` pairs of a nested dict (for the validation block)."""
    out: list[tuple[str, str]] = []
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out += flat_items(v, f"{name}.")
        else:
            out.append((name, card_value(v)))
    return out


def model_card(card: dict, *, key: str) -> None:
    """A head's model card: the facts an analyst checks first, then the full JSON."""
    if not card:
        st.caption("This head has no model card.")
        return
    rows = {
        "name": card.get("name"),
        "head type": card.get("head_type"),
        "backbone": card.get("backbone_id"),
        "feature tap": f"{card.get('tap')} ({card.get('feature_dim')}-d)",
        "threshold": card.get("threshold"),
        "threshold rule": card.get("threshold_rule"),
        "trained on": card.get("training_data") or _training_text(card.get("training")),
        "created": card.get("created"),
        "demo": "yes: random-weights backbone" if card.get("demo") else "no",
    }
    # markdown lines wrap where a table cell would cut long paths and numbers
    st.markdown(
        "  \n".join(
            f"**{field}**: {card_value(value)}"
            for field, value in rows.items()
            if card_value(value)
        )
    )
    validation = card.get("validation")
    if isinstance(validation, dict) and validation:
        st.caption("Validation")
        items = flat_items(validation)
        st.dataframe(
            pd.DataFrame(items, columns=["metric", "value"]),
            hide_index=True,
            width="stretch",
            height=min(320, 38 + 35 * len(items)),
        )
    text = json.dumps(card, indent=2, default=str)
    st.download_button(
        "Download model card (JSON)",
        text,
        file_name=f"{card.get('name') or 'head'}.card.json",
        mime="application/json",
        key=f"{key}_dl",
        icon=":material/download:",
    )
    with st.expander("Full model card"):
        st.code(text, language="json", wrap_lines=True)


def _training_text(training) -> str | None:
    if not isinstance(training, dict):
        return None
    parts = []
    if training.get("workspace"):
        parts.append(str(training["workspace"]))
    if training.get("train_split"):
        parts.append(f"split {training['train_split']}")
    counts = (training.get("train_counts") or {}).get("by_generator")
    if counts:
        parts.append(", ".join(f"{k} {v}" for k, v in counts.items()))
    return " · ".join(parts) or None


def empty_state(message: str, icon: str = ":material/info:") -> None:
    """What a section shows instead of an empty chart."""
    st.info(message, icon=icon)


def csv_download(
    label: str, table: pd.DataFrame, file_name: str, *, help: str | None = None, key=None
) -> None:
    """A button that downloads ``table`` as a CSV file (no index column)."""
    st.download_button(
        label,
        table.to_csv(index=False),
        file_name=file_name,
        mime="text/csv",
        key=key,
        icon=":material/download:",
        help=help,
    )
