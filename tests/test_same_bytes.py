"""The same image bytes get the same probability through every route.

Routes: ``python -m detector predict`` (a fresh workspace), ``python -m detector explain``,
a first upload on the dashboard's Detect page (``ui.analysis.analyse``, embedding computed
now), and a re-upload of the same bytes (embedding read back from the workspace, stored as
float16). Every route goes through one library function, ``detector.analysis.analyse_bytes``.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from detector import analysis as flow
from detector import demo
from detector.cli import main as cli_main
from detector.heads import load_head
from ui import analysis, resources


class _UploadContext:
    """The part of ``ui.context.AppContext`` that ``analyse`` uses, without a browser session."""

    def __init__(self, workspace_path, backbone):
        self.workspace_path = workspace_path
        self._backbone = backbone

    def workspace(self):
        return resources.workspace(self.workspace_path)

    def backbone(self):
        return self._backbone


def _photo_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def demo_info(tmp_path_factory):
    return demo.ensure_demo(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def demo_head(demo_info):
    return demo_info.head_path


def test_cli_first_upload_and_reupload_agree_exactly(tmp_path, demo_head, tiny_backbone, capsys):
    data = _photo_bytes(7)
    image = tmp_path / "photo.png"
    image.write_bytes(data)

    workspace = ["--workspace", str(tmp_path / "ws_cli")]
    backbone = ["--model", "tiny-clip", "--precision", "fp32"]
    code = cli_main(
        ["predict", str(image), "--head", str(demo_head), *workspace, *backbone, "--json"]
    )
    assert code == 0
    (cli_row,) = json.loads(capsys.readouterr().out)["images"]

    head = load_head(demo_head)
    ctx = _UploadContext(tmp_path / "ws_dashboard", tiny_backbone)
    (first,) = analysis.analyse(ctx, [("photo.png", data)], head)
    (again,) = analysis.analyse(ctx, [("photo.png", data)], head)

    assert first.error is None and not first.cached
    assert again.cached
    assert first.probability == again.probability
    assert first.probability == cli_row["probability"]
    assert first.verdict == again.verdict == cli_row["verdict"]


def test_predict_explain_and_the_detect_page_share_one_flow(
    tmp_path, demo_info, demo_head, tiny_backbone, capsys, monkeypatch
):
    """One patch of ``detector.analysis.analyse_bytes`` sees all three routes call it, and
    ``explain`` reports the probability ``predict`` gives."""
    data = _photo_bytes(11)
    image = tmp_path / "photo.png"
    image.write_bytes(data)
    calls = []
    original = flow.analyse_bytes

    def spy(items, *args, **kwargs):
        calls.append([name for name, _ in items])
        return original(items, *args, **kwargs)

    monkeypatch.setattr(flow, "analyse_bytes", spy)
    backbone = ["--model", "tiny-clip", "--precision", "fp32"]
    common = [str(image), "--head", str(demo_head), *backbone, "--json"]
    assert cli_main(["predict", *common, "--workspace", str(tmp_path / "ws_cli")]) == 0
    (predicted,) = json.loads(capsys.readouterr().out)["images"]
    # the linear head's concept surrogate is fitted on the demo workspace's labelled images
    assert cli_main(["explain", *common, "--workspace", str(demo_info.workspace)]) == 0
    (explained,) = json.loads(capsys.readouterr().out)["images"]
    ctx = _UploadContext(tmp_path / "ws_dashboard", tiny_backbone)
    (uploaded,) = analysis.analyse(ctx, [("photo.png", data)], load_head(demo_head))

    assert calls == [[str(image)], [str(image)], ["photo.png"]]
    assert explained["probability"] == pytest.approx(predicted["probability"], abs=1e-12)
    assert uploaded.probability == predicted["probability"]
