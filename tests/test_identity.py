"""Backbone identity as a value (``detector.identity.BackboneRef``) and image groups
(``detector.groups``): every id form Cue Lens writes round-trips byte for byte, garbage is
refused naming the id, and the real / generator / unknown rule is one rule everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from concepts.importance import group_labels
from detector.backbone import backbone_id_for, stale_reason
from detector.groups import (
    fake_generators,
    image_groups,
    pairing_groups,
    split_units,
)
from detector.heads import default_preprocessing, same_features
from detector.identity import BackboneIdError, BackboneRef, is_demo_id
from detector.splits import strata_of

# (id, model, weights, interpolation, draft, is_demo, is_local): every form the code writes
IDS = [
    ("tiny-clip/random", "tiny-clip", "random", "bilinear", False, True, False),
    ("tiny-clip/random@draft", "tiny-clip", "random", "bilinear", True, True, False),
    ("ViT-L-14-336-quickgelu/openai", "ViT-L-14-336-quickgelu", "openai", "bilinear", False,
     False, False),
    # stale id of Cue Lens before the QuickGELU fix: still parsed, so it can be explained
    ("ViT-L-14-336/openai", "ViT-L-14-336", "openai", "bilinear", False, False, False),
    ("ViT-B-16-quickgelu/file:0123456789ab@bicubic", "ViT-B-16-quickgelu", "file:0123456789ab",
     "bicubic", False, False, True),
    ("ViT-B-16-quickgelu/file:missing", "ViT-B-16-quickgelu", "file:missing", "bilinear", False,
     False, True),
    ("local-dir/dir:0a1b2c3d4e5f@draft", "local-dir", "dir:0a1b2c3d4e5f", "bilinear", True,
     False, True),
    ("ViT-B-16/laion2b_s34b_b88k@bicubic+draft", "ViT-B-16", "laion2b_s34b_b88k", "bicubic",
     True, False, False),
    ("ViT-B-16/random", "ViT-B-16", "random", "bilinear", False, True, False),
    ("ViT-B-16/none", "ViT-B-16", "none", "bilinear", False, False, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("backbone_id", "model", "weights", "interp", "draft", "demo", "local"), IDS
)
def test_every_written_id_round_trips(backbone_id, model, weights, interp, draft, demo, local):
    ref = BackboneRef.parse(backbone_id)
    assert (ref.model, ref.weights, ref.interpolation, ref.draft) == (model, weights, interp, draft)
    assert ref.id == backbone_id and str(ref) == backbone_id
    assert BackboneRef(model, weights, interp, draft) == ref  # a value: equal parts, equal refs
    assert ref.is_demo is demo and is_demo_id(backbone_id) is demo
    assert ref.is_local is local


def test_ids_built_by_the_backbone_module_round_trip(tmp_path):
    made = [
        backbone_id_for("tiny-clip", None),
        backbone_id_for("tiny-clip", None, draft=True),
        backbone_id_for("ViT-L-14-336", "openai"),
        backbone_id_for("ViT-B-16", "laion2b_s34b_b88k", "bicubic", True),
        backbone_id_for("ViT-B-16", str(tmp_path / "gone.pt")),
        backbone_id_for(f"local-dir:{tmp_path}", None, draft=True),
    ]
    assert made[:3] == [
        "tiny-clip/random",
        "tiny-clip/random@draft",
        "ViT-L-14-336-quickgelu/openai",
    ]
    for backbone_id in made:
        assert BackboneRef.parse(backbone_id).id == backbone_id
    assert stale_reason("ViT-L-14-336/openai") and stale_reason(made[2]) is None


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        ("", "expected 'MODEL/WEIGHTS"),
        ("tiny-clip", "expected 'MODEL/WEIGHTS"),
        ("/openai", "model ''"),
        ("ViT-B-16/", "weights ''"),
        ("ViT-B-16/openai@lanczos", "unknown option"),
        ("ViT-B-16/openai@bicubic+bilinear", "expected"),
        ("ViT-B-16/openai@", "unknown option"),
        ("ViT-B-16/openai@draft+draft", "expected"),
        (" ViT-B-16/openai", "space"),
    ],
)
def test_garbage_ids_are_refused_naming_the_id(garbage, why):
    with pytest.raises(BackboneIdError, match=why) as info:
        BackboneRef.parse(garbage)
    assert repr(garbage) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert BackboneRef.try_parse(garbage) is None and not is_demo_id(garbage)


def test_load_args_rebuild_the_backbone_and_local_weights_are_refused():
    assert BackboneRef.parse("tiny-clip/random@draft").load_args() == {
        "model": "tiny-clip",
        "pretrained": None,
        "draft": True,
    }
    assert BackboneRef.parse("ViT-B-16/openai@bicubic").load_args() == {
        "model": "ViT-B-16",
        "pretrained": "openai",
        "interpolation": "bicubic",
    }
    with pytest.raises(BackboneIdError, match="local file or folder"):
        BackboneRef.parse("ViT-B-16/file:0123456789ab").load_args()


def test_features_ignore_draft_only():
    assert same_features("tiny-clip/random", "tiny-clip/random@draft")
    assert not same_features("tiny-clip/random", "tiny-clip/random@bicubic")
    assert not same_features("tiny-clip/random", "not an id")
    prep = default_preprocessing(backbone_id="ViT-B-16/openai@bicubic+draft")
    assert prep["interpolation"] == "bicubic" and prep["decode"].startswith("reduced")


# -- image groups ----------------------------------------------------------------------------


def _meta():
    return pd.DataFrame(
        {
            "hash": ["a", "b", "c", "d", "e", "f"],
            "label": pd.array([0, 1, 1, 1, None, 0], dtype="Int64"),
            "generator": ["ignored", "SD", None, "  ", "SD", None],
            "pair_id": [None, "p1", "p1", "", None, None],
            "source": ["s1", "s2", None, "s3", None, None],
        }
    )


def test_image_groups_real_generator_unknown():
    meta = _meta()
    expected = ["real", "SD", "unknown", "unknown", None, "real"]
    assert image_groups(meta).tolist() == expected
    assert image_groups(meta, unlabelled="unlabelled").tolist()[4] == "unlabelled"
    # every former copy of the rule now agrees with it
    assert group_labels(meta).tolist() == expected
    labelled = meta[meta["label"].notna()]
    assert strata_of(labelled).tolist() == [g for g in expected if g is not None]
    assert image_groups(meta.drop(columns="generator")).tolist()[:4] == [
        "real",
        "unknown",
        "unknown",
        "unknown",
    ]


def test_fake_generators_leave_reals_out():
    out = fake_generators(np.array([0, 1, 1, 1]), ["x", "SD", None, ""])
    assert out.tolist() == [None, "SD", "unknown", "unknown"]
    assert fake_generators(np.array([1, 0]), None).tolist() == ["unknown", None]


def test_pair_groups_for_matched_pairing_and_for_splits():
    meta = _meta()
    groups = pairing_groups(meta)
    assert groups[:4].tolist() == ["s1", "p1", "p1", ""] and groups[4:].isna().all()
    assert split_units(meta).tolist() == [
        "hash:a",
        "pair:p1",
        "pair:p1",
        "hash:d",
        "hash:e",
        "hash:f",
    ]


def test_backbone_spec_loads_what_it_names():
    """One request type for the Ray engine and the dashboard: its load arguments reach
    ``load_backbone`` whole (draft and interpolation change the id they produce)."""
    from detector.backbone import load_backbone
    from detector.identity import BackboneSpec

    spec = BackboneSpec("tiny-clip", None, device="cpu", precision="fp32", draft=True)
    assert spec.is_demo and spec.label == "tiny-clip (random weights)"
    loaded = load_backbone(spec.model, spec.pretrained, **spec.load_kwargs())
    assert BackboneRef.parse(loaded.id).draft
    bicubic = BackboneSpec("tiny-clip", None, device="cpu", interpolation="bicubic")
    ref = BackboneRef.parse(
        load_backbone(bicubic.model, bicubic.pretrained, **bicubic.load_kwargs()).id
    )
    assert (ref.interpolation, ref.draft) == ("bicubic", False)
    assert BackboneSpec("ViT-B-16", "/x/clip.pt").label == "ViT-B-16 / /x/clip.pt"
