"""The paper's released heads: registry facts, verified fetching (env folder, local path, cache,
download), import parity with the README formulas, and refusal of code-carrying files."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

from detector import released
from detector.catalog import heads_table, load_head_file, resolve_head
from detector.errors import CueLensError
from detector.heads import (
    HeadError,
    LinearProbe,
    OrthogonalHead,
    load_head,
    save_head,
)
from detector.released import (
    RELEASED_HEADS,
    ReleasedHeadError,
    fetch_released,
    import_checkpoint,
    load_released,
)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No downloads, an empty cache, no CUE_LENS_RELEASED_DIR."""
    monkeypatch.setenv("CUE_LENS_OFFLINE", "1")
    monkeypatch.setenv("CUE_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CUE_LENS_RELEASED_DIR", raising=False)
    return tmp_path / "cache" / "heads"


def test_registry_records_the_pinned_release(clip_cues_dir):
    sums = dict(
        reversed(line.split()) for line in (clip_cues_dir / "SHA256SUMS").read_text().splitlines()
    )
    assert len(RELEASED_HEADS) == 12
    for name, record in RELEASED_HEADS.items():
        assert record.file == f"{name}.ckpt" and record.sha256 == sums[record.file]
        assert record.url == (
            "https://raw.githubusercontent.com/marco-willi/clip-cues/"
            f"ad9eea9a0f287ab8869e7f16aeef4a6878d1059d/data/checkpoints/{record.file}"
        )
        assert record.backbone_id == "ViT-L-14-336-quickgelu/openai"
        assert record.preprocessing["interpolation"] == "bilinear"
        assert (
            record.preprocessing["image_size"] == 336 and record.preprocessing["crop"] == "centre"
        )
    types = {r.model_type: r.head_type for r in RELEASED_HEADS.values()}
    assert types == {"linear": "linear", "clip": "orthogonal", "concept": "concept"}
    assert released.DEFAULT_RELEASED == "linear_probe_synthclic"


def _reference_logits(state: dict, model_type: str, x: torch.Tensor) -> np.ndarray:
    """The logit formulas of ../shared/clip-cues/README.md, written out with torch."""
    if model_type == "linear":
        p = "model.classification_head.fc."
        out = x @ state[p + "weight"].T + state[p + "bias"]
    elif model_type == "clip":
        p = "model.classification_head."
        hidden = x @ state[p + "layers.0.weight"].T + state[p + "layers.0.bias"]
        out = hidden @ state[p + "to_logits.weight"].T + state[p + "to_logits.bias"]
    else:
        e = torch.nn.functional.normalize(x, dim=-1)
        s = e @ state["model.text_embeddings"].T
        g = torch.sigmoid(e @ state["model.W_concepts.weight"].T + state["model.W_concepts.bias"])
        out = (s * g) @ state["model.W_classifier.weight"].T + state["model.W_classifier.bias"]
    return out.double().numpy().reshape(-1)


@pytest.mark.parametrize("name", list(RELEASED_HEADS))
def test_import_parity_with_the_readme_formulas(name, clip_cues_dir, offline):
    record = RELEASED_HEADS[name]
    if record.head_type == "concept":
        pytest.importorskip("concepts.bottleneck", reason="concept head class not in this checkout")
    head = load_released(name, local_path=clip_cues_dir)
    x = torch.from_numpy(
        np.random.default_rng(0).normal(size=(32, record.feature_dim)).astype(np.float32)
    )
    state = torch.load(clip_cues_dir / record.file, map_location="cpu", weights_only=True)[
        "state_dict"
    ]
    x64 = x.double()
    state64 = {k: v.double() for k, v in state.items()}
    np.testing.assert_allclose(
        head.decision_function(x.numpy()),
        _reference_logits(state64, record.model_type, x64),
        atol=1e-5,
    )
    assert head.head_type == record.head_type and head.tap == record.tap
    assert head.n_features_in_ == record.feature_dim
    card = head.card_
    assert card["released"] is True and card["sha256"] == record.sha256 and card["demo"] is False
    assert card["backbone_id"] == "ViT-L-14-336-quickgelu/openai" and card["source"] == record.url
    if record.head_type == "linear":
        assert isinstance(head, LinearProbe)
    if record.head_type == "orthogonal":
        assert isinstance(head, OrthogonalHead) and head.k == 8


def test_concept_heads_take_their_names_from_the_vocabulary_beside_them(
    clip_cues_dir, offline, tmp_path
):
    pytest.importorskip("concepts.bottleneck", reason="concept head class not in this checkout")
    from concepts.vocabulary import load_vocabulary

    head = load_released("cm_antonyms_synthclic", local_path=clip_cues_dir)
    expected = list(load_vocabulary(clip_cues_dir / "antonyms.csv").ids)
    assert list(head.concept_names_) == expected  # found beside the checkpoint, offline
    assert "SHA-256 verified" in head.card_["concept_names_source"]
    # a checkpoint alone keeps positional names, and its card says why
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(clip_cues_dir / "cm_antonyms_synthclic.ckpt", alone)
    head = load_released("cm_antonyms_synthclic", local_path=alone)
    assert list(head.concept_names_)[:2] == ["concept_0", "concept_1"]
    note = head.card_["concept_names_source"]
    assert note.startswith("positional") and "not available offline" in note
    # a tampered CSV beside it is not used, and the card names the mismatch
    (alone / "antonyms.csv").write_text(
        (clip_cues_dir / "antonyms.csv").read_text().replace(expected[0], "renamed", 1)
    )
    head = load_released("cm_antonyms_synthclic", local_path=alone)
    assert head.concept_names_[0] == "concept_0"
    note = head.card_["concept_names_source"]
    assert "does not match the released antonyms.csv" in note, note
    # the verified copy in the cache is the next source
    offline.mkdir(parents=True)
    shutil.copy(clip_cues_dir / "antonyms.csv", offline / "antonyms.csv")
    head = load_released("cm_antonyms_synthclic", local_path=alone)
    assert list(head.concept_names_) == expected
    assert str(offline / "antonyms.csv") in head.card_["concept_names_source"]


def test_released_heads_refuse_other_backbones(clip_cues_dir, offline):
    head = load_released("linear_probe_synthclic", local_path=clip_cues_dir)
    with pytest.raises(CueLensError, match="tiny-clip/random"):
        head.check_compatible("tiny-clip/random", 1024)
    with pytest.raises(CueLensError, match="expects 1024-d"):
        head.check_compatible("ViT-L-14-336-quickgelu/openai", 768)


def test_fetch_from_env_folder_local_path_and_cache(clip_cues_dir, offline, monkeypatch, tmp_path):
    name = "linear_probe_cnnspot"
    with pytest.raises(ReleasedHeadError) as err:
        fetch_released(name)
    message = str(err.value)
    assert str(offline) in message and "CUE_LENS_RELEASED_DIR" in message
    assert RELEASED_HEADS[name].url in message
    assert fetch_released(name, local_path=clip_cues_dir) == clip_cues_dir / f"{name}.ckpt"
    assert fetch_released(name, local_path=clip_cues_dir / f"{name}.ckpt").is_file()
    monkeypatch.setenv("CUE_LENS_RELEASED_DIR", str(clip_cues_dir))
    assert fetch_released(name).parent == clip_cues_dir
    monkeypatch.delenv("CUE_LENS_RELEASED_DIR")
    offline.mkdir(parents=True)
    shutil.copy(clip_cues_dir / f"{name}.ckpt", offline)
    assert fetch_released(name) == offline / f"{name}.ckpt"


def test_download_lands_in_the_cache_verified(clip_cues_dir, offline, monkeypatch):
    monkeypatch.setattr(released, "URL_TEMPLATE", clip_cues_dir.as_uri() + "/{file}")
    path = fetch_released("clip_orthogonal_synthclic", download=True)
    assert path == offline / "clip_orthogonal_synthclic.ckpt" and path.is_file()
    assert released.sha256_file(path) == RELEASED_HEADS["clip_orthogonal_synthclic"].sha256
    assert not [p for p in offline.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_file_with_the_wrong_hash_is_refused(clip_cues_dir, offline, monkeypatch):
    offline.mkdir(parents=True)
    wrong = offline / "linear_probe_combined.ckpt"
    shutil.copy(clip_cues_dir / "linear_probe_cnnspot.ckpt", wrong)
    with pytest.raises(ReleasedHeadError, match="does not match"):
        fetch_released("linear_probe_combined")
    mirror = offline.parent.parent / "mirror"  # a download source serving the wrong bytes
    mirror.mkdir()
    shutil.copy(clip_cues_dir / "linear_probe_cnnspot.ckpt", mirror / "linear_probe_combined.ckpt")
    monkeypatch.setattr(released, "URL_TEMPLATE", mirror.as_uri() + "/{file}")
    wrong.unlink()
    with pytest.raises(ReleasedHeadError, match="does not match"):
        fetch_released("linear_probe_combined", download=True)
    assert not wrong.exists()


class _Payload:
    """Unpickling this object opens (creates) the marker file: code running on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_code_carrying_files_are_refused_and_never_run(tmp_path, how):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.ckpt"
    checkpoint = {"state_dict": {"x": _Payload(marker)}, "model_type": "linear"}
    if how == "torch.save":
        torch.save(checkpoint, evil)
    else:
        evil.write_bytes(pickle.dumps(checkpoint))
    for load in (import_checkpoint, load_head_file, lambda p: resolve_head(str(p))):
        with pytest.raises(CueLensError, match="refused"):
            load(evil)
    assert not marker.exists()
    # the payload is live: unpickling it the unsafe way would have run it
    probe = tmp_path / "probe-ran"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()


def test_a_pickle_named_safetensors_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(HeadError):
        load_head(evil)
    assert not marker.exists()


def test_malformed_checkpoints_are_explained(tmp_path):
    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "model_type": "magic"}, bad)
    with pytest.raises(ReleasedHeadError, match="unknown model_type"):
        import_checkpoint(bad)
    torch.save(
        {
            "state_dict": {"model.classification_head.fc.weight": torch.zeros(2, 4)},
            "model_type": "linear",
        },
        bad,
    )
    with pytest.raises(ReleasedHeadError, match="shape"):
        import_checkpoint(bad)
    torch.save([1, 2, 3], bad)
    with pytest.raises(ReleasedHeadError, match="not a released head"):
        import_checkpoint(bad)


def test_resolve_and_list_heads(clip_cues_dir, offline, monkeypatch):
    with pytest.raises(ReleasedHeadError, match="not available offline"):
        resolve_head(None)
    with pytest.raises(HeadError, match="not found"):
        resolve_head("no_such_head")
    monkeypatch.setenv("CUE_LENS_RELEASED_DIR", str(clip_cues_dir))
    default = resolve_head(None)
    assert default.card_["name"] == "linear_probe_synthclic"
    assert resolve_head("clip_orthogonal_combined").head_type == "orthogonal"
    table = heads_table()
    assert len(table) == 12 and table["available"].all()
    assert table.loc[table["default"] == True, "name"].tolist() == ["linear_probe_synthclic"]  # noqa: E712


@pytest.mark.parametrize(
    "name", ["linear_probe_synthclic", "clip_orthogonal_synthclic", "cm_antonyms_synthclic"]
)
def test_released_heads_survive_our_file_format(name, clip_cues_dir, offline, tmp_path):
    if name.startswith("cm_"):
        pytest.importorskip("concepts.bottleneck", reason="concept head class not in this checkout")
    head = load_released(name, local_path=clip_cues_dir)
    again = load_head(save_head(head, tmp_path / f"{name}.safetensors", head.card_))
    x = np.random.default_rng(1).normal(size=(8, head.n_features_in_))
    np.testing.assert_allclose(again.decision_function(x), head.decision_function(x), rtol=1e-6)
    assert again.card_["sha256"] == RELEASED_HEADS[name].sha256
    assert again.card_["backbone_id"] == "ViT-L-14-336-quickgelu/openai"
