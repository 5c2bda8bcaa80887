"""Dataset layouts: folders with and without splits, CNNSpot nesting, CSV manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.datasets import DatasetError, load_dataset, load_manifest


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_without_splits(tmp_path):
    _touch(tmp_path / "real" / "a.jpg")
    _touch(tmp_path / "real" / "sub" / "b.png")
    _touch(tmp_path / "stable_diffusion" / "c.png")
    _touch(tmp_path / "stable_diffusion" / "notes.txt")  # plainly not an image: skipped
    _touch(tmp_path / "stable_diffusion" / ".hidden.png")
    ds = load_dataset(tmp_path)
    got = {(r.path.name, r.label, r.generator, r.split) for r in ds.records}
    assert got == {
        ("a.jpg", 0, None, None),
        ("b.png", 0, None, None),
        ("c.png", 1, "stable_diffusion", None),
    }


def test_folder_with_splits_and_cnnspot_nesting(tmp_path):
    _touch(tmp_path / "train" / "0_real" / "r.png")
    _touch(tmp_path / "test" / "progan" / "airplane" / "0_real" / "r.png")
    _touch(tmp_path / "test" / "progan" / "airplane" / "1_fake" / "f.png")
    _touch(tmp_path / "validation" / "nature" / "n.png")
    ds = load_dataset(tmp_path)
    got = {
        (r.path.relative_to(tmp_path).as_posix(), r.label, r.generator, r.split, r.source)
        for r in ds.records
    }
    assert got == {
        ("train/0_real/r.png", 0, None, "train", None),
        ("test/progan/airplane/0_real/r.png", 0, None, "test", "progan"),
        ("test/progan/airplane/1_fake/f.png", 1, "progan", "test", "progan"),
        ("validation/nature/n.png", 0, None, "val", None),
    }


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset(tmp_path)


def test_manifest_labels_paths_and_generators(tmp_path):
    _touch(tmp_path / "imgs" / "a.png")
    _touch(tmp_path / "imgs" / "b.png")
    (tmp_path / "m.csv").write_text(
        "path,label,generator,split,pair_id,source_repo\n"
        "imgs/a.png,real,,train,p1,org/repo\n"
        "imgs/b.png,1,,test,p1,org/repo\n"
        "imgs/c.png,maybe,,,,\n"
    )
    ds = load_manifest(tmp_path / "m.csv")
    assert [
        (r.path.name, r.label, r.generator, r.split, r.pair_id, r.source) for r in ds.records
    ] == [
        ("a.png", 0, None, "train", "p1", "org/repo"),
        ("b.png", 1, "unknown", "test", "p1", "org/repo"),
    ]
    assert len(ds.errors) == 1 and "unknown label 'maybe'" in ds.errors[0]["reason"]


def test_manifest_paths_that_escape_its_folder_are_refused(tmp_path):
    inner = tmp_path / "inner"
    _touch(inner / "ok.png")
    _touch(tmp_path / "secret.png")
    (inner / "m.csv").write_text(
        "path,label\nok.png,real\n../secret.png,real\n/etc/passwd,real\nsub/../../secret.png,1\n"
    )
    ds = load_manifest(inner / "m.csv")
    assert [r.path.name for r in ds.records] == ["ok.png"]
    assert len(ds.errors) == 3
    assert all("leaves the manifest's folder" in e["reason"] for e in ds.errors)


def test_folder_links_that_leave_the_dataset_are_refused(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    _touch(data / "real" / "a.png")
    _touch(data / "real" / "inner.png")
    _touch(outside / "secret.png")
    _touch(outside / "gen" / "b.png")
    (data / "real" / "link_out.png").symlink_to(outside / "secret.png")
    (data / "real" / "link_in.png").symlink_to(data / "real" / "inner.png")
    (data / "linked_generator").symlink_to(outside / "gen", target_is_directory=True)
    ds = load_dataset(data)
    names = sorted(r.path.name for r in ds.records)
    assert names == ["a.png", "inner.png", "link_in.png"]  # links inside the folder are fine
    refused = sorted(Path(e["path"]).name for e in ds.errors)
    assert refused == ["link_out.png", "linked_generator"]
    assert all("leads outside the dataset folder" in e["reason"] for e in ds.errors)


def test_manifest_without_required_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\na.png,real\n")
    with pytest.raises(DatasetError, match="'path' and 'label'"):
        load_manifest(tmp_path / "m.csv")


def test_shared_samples_manifest_loads_as_is(samples_dir):
    ds = load_dataset(samples_dir / "manifest.csv")
    assert len(ds.records) == 41 and not ds.errors
    assert sum(r.label == 0 for r in ds.records) == 25
    assert all(r.path.is_file() for r in ds.records)
    assert {r.generator for r in ds.records if r.label == 1} >= {"BigGAN", "unknown"}
