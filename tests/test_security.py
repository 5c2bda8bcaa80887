"""What SECURITY.md promises: safe server settings, untrusted images, checkpoints and paths."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO

try:  # Python >= 3.11; on 3.10 the test that parses the file is skipped with its reason
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    tomllib = None

CONFIG = REPO / ".streamlit" / "config.toml"
MAX_UPLOAD_MB = 200  # the bound SECURITY.md states for the per-file upload limit


# -- server settings -------------------------------------------------------------------------


def _config() -> dict:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11 (streamlit's own reading is tested below)")
    assert CONFIG.is_file(), f"{CONFIG} is missing: the dashboard would run on defaults"
    return tomllib.loads(CONFIG.read_text())


def test_config_file_is_safe_by_default():
    server = _config()["server"]
    assert server["address"] == "127.0.0.1"  # not reachable from other machines
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True  # XSRF protection needs CORS protection on
    assert isinstance(server["maxUploadSize"], int)
    assert 0 < server["maxUploadSize"] <= MAX_UPLOAD_MB
    assert _config().get("browser", {}).get("gatherUsageStats") is False
    assert _config().get("client", {}).get("showErrorDetails") in ("none", "type", False)


def test_streamlit_reads_these_settings():
    """The values streamlit itself resolves when started from the repository root."""
    code = (
        "from streamlit import config\n"
        "config.get_config_options(force_reparse=True)\n"
        "for k in ('server.address', 'server.enableXsrfProtection', 'server.maxUploadSize'):\n"
        "    print(k, config.get_option(k))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env["HOME"] = str(REPO / ".no-home")  # no user-level ~/.streamlit/config.toml
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    values = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert values["server.address"] == "127.0.0.1"
    assert values["server.enableXsrfProtection"] == "True"
    assert 0 < int(values["server.maxUploadSize"]) <= MAX_UPLOAD_MB


def test_run_command_does_not_widen_the_address():
    makefile = (REPO / "Makefile").read_text()
    run_lines = [line for line in makefile.splitlines() if "streamlit run" in line]
    assert run_lines, "make run should start the dashboard"
    for line in run_lines:
        assert "0.0.0.0" not in line and "server.address" not in line
        assert "enableXsrfProtection" not in line and "enableCORS" not in line


# -- untrusted images ------------------------------------------------------------------------


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [9_000, 60_000])
def test_pixel_limit_refuses_from_the_header(side):
    """A 69-byte PNG claiming billions of pixels is refused before any buffer is allocated."""
    from detector.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image

    data = _png_header_only(side, side)
    assert side * side > DEFAULT_MAX_PIXELS
    tracemalloc.start()
    try:
        with pytest.raises(ImageDecodeError, match="too large"):
            decode_image(data, path="bomb.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # refused from the header: no pixel buffer was ever allocated


def test_uploads_with_bad_bytes_become_per_file_errors(tiny_backbone):
    from detector.extract import embed_bytes

    results = embed_bytes(
        [
            ("bomb.png", _png_header_only(20_000, 20_000)),
            ("script.png", b"<script>alert(1)</script>"),
            ("empty.jpg", b""),
        ],
        tiny_backbone,
    )
    assert all(r.error for r in results)
    assert all(r.pooled is None for r in results)


# -- untrusted checkpoints -------------------------------------------------------------------


class _Payload:
    """Unpickling this would create a marker file: code execution from a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_with_code_is_refused_and_never_runs(tmp_path):
    from detector.catalog import load_head_file
    from detector.errors import CueLensError

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    state = {"weight": torch.zeros(1, 4), "bias": torch.zeros(1)}
    torch.save({"model_type": "linear", "state_dict": state, "x": _Payload(marker)}, ckpt)
    with pytest.raises(CueLensError, match="refused"):
        load_head_file(ckpt)
    assert not marker.exists()


def test_released_heads_are_verified_by_hash(tmp_path):
    from detector.released import ReleasedHeadError, fetch_released, list_released

    name = list_released()[0]
    fake = tmp_path / "fake.ckpt"
    fake.write_bytes(b"not the released bytes")
    with pytest.raises(ReleasedHeadError, match="does not match"):
        fetch_released(name, local_path=fake, download=False)


def test_saved_heads_are_data_only(tmp_path):
    """A head is a safetensors file: tensors and a JSON card; a mismatched card is refused."""
    from safetensors.numpy import load_file, save_file

    from detector.heads import HeadError, LinearProbe, load_head, save_head

    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    head = LinearProbe(max_epochs=2).fit(x, (x[:, 0] > 0).astype(int))
    path = save_head(head, tmp_path / "h")
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
    metadata["cue_lens_card"] = metadata["cue_lens_card"].replace(
        '"feature_dim": 6', '"feature_dim": 7'
    )
    save_file(tensors, str(tmp_path / "tampered.safetensors"), metadata=metadata)
    with pytest.raises(HeadError, match="feature_dim"):
        load_head(tmp_path / "tampered.safetensors")


_SOURCE_DIRS = ("detector", "concepts", "pages", "ui", "tests", "benchmarks")


def _python_files():
    for folder in _SOURCE_DIRS:
        yield from sorted((REPO / folder).rglob("*.py"))
    yield from sorted(REPO.glob("*.py"))


def test_no_unsafe_deserialisation_in_the_code():
    torch_load = re.compile(r"torch\.load\(")
    offenders = []
    for path in _python_files():
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if torch_load.search(line) and "weights_only=True" not in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}")
            if re.search(r"pickle\.loads?\(|allow_pickle=True", line) and "tests" not in path.parts:
                offenders.append(f"{path.relative_to(REPO)}:{number}")
    assert offenders == []


# -- paths from a browser --------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path):
    inside = tmp_path / "data"
    (inside / "set" / "real").mkdir(parents=True)
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    (inside / "link").symlink_to(outside, target_is_directory=True)
    return inside, outside


def test_paths_inside_a_data_root_are_accepted(roots):
    from detector.paths import check_data_path

    inside, _ = roots
    assert check_data_path(inside / "set", [inside]) == (inside / "set").resolve()
    assert check_data_path(f"{inside}/set/real/../real", [inside]).name == "real"


@pytest.mark.parametrize(
    "target",
    ["{outside}", "{outside}/secret.jpg", "{inside}/../private", "{inside}/link/secret.jpg",
     "/etc/passwd", "{outside}/does-not-exist"],
)  # fmt: skip
def test_paths_outside_every_root_are_refused(roots, target):
    from detector.paths import PathNotAllowedError, check_data_path

    inside, outside = roots
    with pytest.raises(PathNotAllowedError, match="outside the allowed data folders"):
        check_data_path(target.format(inside=inside, outside=outside), [inside])


def test_data_roots_come_from_the_environment(roots, monkeypatch):
    from detector.paths import ENV_DATA_ROOT, PathNotAllowedError, check_data_path, data_roots

    inside, outside = roots
    monkeypatch.setenv(ENV_DATA_ROOT, os.pathsep.join([str(inside), str(outside)]))
    assert data_roots() == [inside.resolve(), outside.resolve()]
    assert check_data_path(outside / "secret.jpg").name == "secret.jpg"
    monkeypatch.setenv(ENV_DATA_ROOT, str(inside))
    with pytest.raises(PathNotAllowedError):
        check_data_path(outside / "secret.jpg")
    monkeypatch.delenv(ENV_DATA_ROOT)
    assert Path("/") not in data_roots()  # the filesystem root only when listed explicitly


def test_manifests_cannot_point_outside_their_folder(tmp_path):
    from detector.datasets import load_manifest

    (tmp_path / "set").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    manifest = tmp_path / "set" / "manifest.csv"
    manifest.write_text("path,label\n../secret.png,real\n/etc/passwd,real\n")
    dataset = load_manifest(manifest)
    assert dataset.records == []
    assert all("leaves the manifest's folder" in e["reason"] for e in dataset.errors)


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """A demo-mode dashboard (tiny-clip, offline) with one data root, caches cleared."""
    import streamlit as st

    data = tmp_path / "data"
    (data / "set" / "real").mkdir(parents=True)
    (data / "set" / "gan").mkdir()
    for folder, colour in (("real", (200, 30, 30)), ("gan", (30, 30, 200))):
        Image.new("RGB", (32, 32), colour).save(data / "set" / folder / "a.png")
    monkeypatch.setenv("CUE_LENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CUE_LENS_MODEL", "tiny-clip")
    monkeypatch.setenv("CUE_LENS_OFFLINE", "1")
    monkeypatch.setenv("CUE_LENS_DATA_ROOT", str(data))
    monkeypatch.delenv("CUE_LENS_WORKSPACE", raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield data
    st.cache_data.clear()
    st.cache_resource.clear()


def test_data_page_registers_only_inside_the_data_root(app_env, tmp_path):
    """The Data page's "register by path" refuses a folder outside CUE_LENS_DATA_ROOT."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    at.switch_page("pages/data.py").run()
    assert not at.exception
    fields = [w for w in at.text_input if w.key == "data_path"]
    assert fields, "the Data page has no text input with key 'data_path' (register by path)"
    check = next(b for b in at.button if b.label.startswith("Check"))
    outside = tmp_path / "private"
    outside.mkdir()
    for target in (outside, "/etc", f"{app_env}/../private"):
        fields[0].set_value(str(target))
        check.click().run()
        assert any("outside the allowed data folders" in e.value for e in at.error), target
        assert "data_preview" not in at.session_state
    fields[0].set_value(str(app_env / "set"))
    check.click().run()
    assert not at.exception
    assert "data_preview" in at.session_state
