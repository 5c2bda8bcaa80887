"""The dashboard's head picker reads the library's catalog (``detector.catalog``): a head
file in ``WS/heads/imported`` is offered, can be chosen, and scores on the Detect page."""

from __future__ import annotations

import shutil
from pathlib import Path

from detector import catalog
from detector.demo import ensure_demo
from detector.store import Workspace
from tests.test_app import app_env, assert_clean, demo_home, new_app  # noqa: F401 (fixtures)


def test_the_head_picker_offers_and_uses_imported_heads(tmp_path, demo_home):  # noqa: F811
    ws_path = tmp_path / "mine"
    shutil.copytree(Path(ensure_demo(demo_home).workspace), ws_path)
    with Workspace(ws_path) as ws:
        trained = ws.heads_dir / "demo_linear_probe.safetensors"
        catalog.save_imported_head(ws, "shared.safetensors", trained.read_bytes())
        (ws.heads_dir / "demo_linear_probe.safetensors").unlink()  # only the import is left
    at = new_app().run()
    at.text_input(key="cl_ws_input").set_value(str(ws_path))
    at.button(key="cl_ws_open").click()
    at.run()
    assert_clean(at, "open")
    select = at.sidebar.selectbox(key="cl_head_select")
    assert "shared.safetensors · imported" in select.options, select.options
    key = "imported:shared.safetensors"
    select.set_value(key).run()
    assert_clean(at, "chosen")
    assert at.query_params["head"] == key
    at.switch_page("pages/data.py").run()
    assert_clean(at, "data page")
