"""Which folders the dashboard may read datasets from (detector.paths)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from detector.errors import CueLensError
from detector.paths import (
    PathNotAllowedError,
    check_data_path,
    cue_lens_home,
    data_roots,
    default_workspace_dir,
    is_within_roots,
)


def test_env_lists_the_roots(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    roots = data_roots(f"{a}{os.pathsep}{b}{os.pathsep}{a}")
    assert roots == [a.resolve(), b.resolve()]


def test_default_roots_are_home_and_cwd_but_never_the_filesystem_root(monkeypatch, tmp_path):
    monkeypatch.delenv("CUE_LENS_DATA_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    roots = data_roots()
    assert Path.home().resolve() in roots or Path.home().resolve() == Path("/")
    assert tmp_path.resolve() in roots
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: Path("/")))
    assert Path("/") not in data_roots()


def test_inside_is_allowed_and_resolved(tmp_path):
    (tmp_path / "data" / "real").mkdir(parents=True)
    got = check_data_path(str(tmp_path / "data" / ".." / "data"), roots=[tmp_path.resolve()])
    assert got == (tmp_path / "data").resolve()


def test_outside_is_refused_with_the_way_out(tmp_path):
    with pytest.raises(PathNotAllowedError) as err:
        check_data_path("/etc", roots=[tmp_path.resolve()])
    assert "CUE_LENS_DATA_ROOT" in str(err.value) and str(tmp_path) in str(err.value)


def test_dotdot_and_symlinks_cannot_escape(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(PathNotAllowedError):
        check_data_path(str(root / "link"), roots=[root.resolve()])
    with pytest.raises(PathNotAllowedError):
        check_data_path(str(root / ".." / "outside"), roots=[root.resolve()])
    assert not is_within_roots(root / "link", [root.resolve()])


def test_missing_inside_and_empty_are_readable_errors(tmp_path):
    with pytest.raises(CueLensError, match="no such file"):
        check_data_path(str(tmp_path / "nope"), roots=[tmp_path.resolve()])
    with pytest.raises(CueLensError, match="no path given"):
        check_data_path("  ", roots=[tmp_path.resolve()])


def test_refused_outside_says_nothing_about_existence(tmp_path):
    msgs = []
    for p in ("/etc", "/definitely/not/here"):
        with pytest.raises(PathNotAllowedError) as err:
            check_data_path(p, roots=[tmp_path.resolve()])
        # the message repeats the path typed (in the command to allow it), nothing more
        msgs.append(str(err.value).split(":", 1)[1].replace(p, "PATH"))
    assert msgs[0] == msgs[1] and "CUE_LENS_DATA_ROOT=PATH make run" in msgs[0]


def test_home_and_workspace_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CUE_LENS_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("CUE_LENS_WORKSPACE", raising=False)
    assert cue_lens_home() == tmp_path / "h"
    assert default_workspace_dir() == tmp_path / "h" / "workspace"
    monkeypatch.setenv("CUE_LENS_WORKSPACE", str(tmp_path / "ws"))
    assert default_workspace_dir() == tmp_path / "ws"


def test_browser_backbone_paths_must_be_inside_the_roots(tmp_path):
    from ui.settings import BackboneSpec, check_browser_backbone

    roots = [tmp_path.resolve()]
    (tmp_path / "model_dir").mkdir()
    (tmp_path / "w.safetensors").write_bytes(b"x")
    # names and tags read no file; files and folders inside the roots are fine
    check_browser_backbone("ViT-L-14-336", "openai", roots)
    check_browser_backbone("hf-hub:timm/ViT-B-16-SigLIP", None, roots)
    check_browser_backbone("ViT-B-16", str(tmp_path / "w.safetensors"), roots)
    check_browser_backbone(f"local-dir:{tmp_path / 'model_dir'}", "", roots)
    for model, weights in (
        ("ViT-B-16", "/etc/hostname"),
        ("ViT-B-16", str(tmp_path / ".." / "elsewhere.pt")),
        ("local-dir:/etc", None),
        (f"local-dir:{tmp_path}/../", None),
    ):
        with pytest.raises(PathNotAllowedError):
            check_browser_backbone(model, weights, roots)
    with pytest.raises(CueLensError, match="no such file"):
        check_browser_backbone("ViT-B-16", str(tmp_path / "missing.pt"), roots)
    with pytest.raises(CueLensError, match="put a checkpoint file under Weights"):
        check_browser_backbone("/etc/model.json", None, roots)
    # the server's own backbone (set by its environment) is trusted as it is
    server = BackboneSpec("ViT-B-16", "/opt/models/clip.pt")
    check_browser_backbone("ViT-B-16", "/opt/models/clip.pt", roots, trusted=server)
    with pytest.raises(PathNotAllowedError):
        check_browser_backbone("ViT-B-16", "/opt/models/other.pt", roots, trusted=server)


def test_the_readme_sample_manifest_is_allowed_by_default(monkeypatch, tmp_path):
    from detector.paths import PROJECT_SAMPLES

    if not (PROJECT_SAMPLES / "manifest.csv").is_file():
        pytest.skip(f"shared sample images not found at {PROJECT_SAMPLES}")
    monkeypatch.delenv("CUE_LENS_DATA_ROOT", raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # `make run` starts here
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    got = check_data_path("../shared/samples/manifest.csv")
    assert got == (PROJECT_SAMPLES / "manifest.csv").resolve()
    # with the variable set, only what it lists is allowed, and the refusal gives the command
    monkeypatch.setenv("CUE_LENS_DATA_ROOT", str(tmp_path))
    with pytest.raises(PathNotAllowedError) as err:
        check_data_path("../shared/samples/manifest.csv")
    assert f"`CUE_LENS_DATA_ROOT={PROJECT_SAMPLES.resolve()} make run`" in str(err.value)
