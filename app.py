"""Cue Lens dashboard: the router. Run with ``make run`` (``streamlit run app.py``).

The entry point only frames the pages: page config, navigation, the sidebar (workspace,
backbone, detector) and the notices every page carries; each page in ``pages/`` reads the
context, calls the library and draws. See docs/dashboard.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `streamlit run` from elsewhere: the library is next to us
    sys.path.insert(0, str(HERE))

st.set_page_config(
    page_title="Cue Lens",
    # An emoji favicon is drawn by the browser from an inline SVG; a ":material/...:" one
    # would be fetched from fonts.gstatic.com on every load (nothing may leave the machine).
    page_icon="🔍",
    layout="wide",
    initial_sidebar_state="expanded",
)

PAGES = {
    "Analyse": [
        st.Page(
            HERE / "pages" / "detect.py",
            title="Detect",
            icon=":material/image_search:",
            default=True,
        ),
    ],
    "Explore": [
        st.Page(HERE / "pages" / "concepts.py", title="Concepts", icon=":material/psychology:"),
        st.Page(HERE / "pages" / "generators.py", title="Generators", icon=":material/compare:"),
    ],
    "Data": [
        st.Page(HERE / "pages" / "data.py", title="Data", icon=":material/dataset:"),
    ],
}

# The navigation and a start-up notice come first: the library (torch, open_clip) takes
# seconds to import on the first run of a server process, and the user sees progress meanwhile
# instead of an empty page. Streamlit's own menu is off (.streamlit/config.toml): before the
# first run it would list the raw files of pages/; these links are drawn instead.
page = st.navigation(PAGES, position="hidden")
with st.sidebar:
    for entries in PAGES.values():
        for entry in entries:
            st.page_link(entry, label=entry.title, icon=entry.icon)
    st.divider()
boot = st.empty()
if "ui.frame" not in sys.modules:
    with boot.container():
        st.progress(
            0.02, text="Starting Cue Lens: loading the detector library (first start only)…"
        )
        st.caption(
            "Then: looking for the backbone's weights, and the offline demo if there are none."
        )

from ui import views  # noqa: E402
from ui.frame import render_frame, run_page  # noqa: E402

boot.empty()
views.guarded(render_frame)
run_page(page)
