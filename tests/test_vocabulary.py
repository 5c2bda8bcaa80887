"""Vocabularies: the shipped photography vocabulary, the registry, the paper's format, errors."""

from __future__ import annotations

import re

import pytest

import concepts.vocabulary as vocabulary_module
from concepts.vocabulary import (
    DEFAULT_VOCABULARY,
    Vocabulary,
    VocabularyError,
    add_vocabulary_path,
    list_vocabularies,
    load_vocabulary,
    parse_vocabulary,
)

REQUIRED_CATEGORIES = {
    "color and tone",
    "lens and optics",
    "camera and sensor",
    "capture technique",
    "post-processing",
    "composition and style",
    "lighting",
    "scene physics and geometry",
    "generator failures",
}
REQUIRED_CONCEPTS = {
    "lens_flare",
    "depth_layering",
    "minimalist_style",
    "bokeh",
    "chromatic_aberration",
    "vignetting",
    "film_grain",
    "sensor_noise_pattern",
    "motion_blur",
    "depth_of_field",
    "watermark",
    "jpeg_compression_artifacts",
    "upscaler_artifacts",
    "legible_text",
    "correct_hands",
    # typical generator failures named by the issue
    "texture_tiling",
    "repeated_elements",
    "over_smooth_skin",
    "impossible_reflections",
}


@pytest.fixture
def clean_registry(monkeypatch):
    """An empty list of extra paths, restored afterwards; no environment paths."""
    monkeypatch.setattr(vocabulary_module, "_extra_paths", [])
    monkeypatch.delenv(vocabulary_module.ENV_PATHS, raising=False)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_vocabulary_is_complete():
    vocab = load_vocabulary(DEFAULT_VOCABULARY)
    assert len(vocab) >= 150
    assert len(set(vocab.ids)) == len(vocab)
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", i) for i in vocab.ids)
    for field in ("positive", "negative", "category", "explanation"):
        assert all(v.strip() for v in getattr(vocab, field)), field
    assert set(vocab.category) >= REQUIRED_CATEGORIES
    assert set(vocab.ids) >= REQUIRED_CONCEPTS
    assert len(set(zip(vocab.positive, vocab.negative, strict=True))) == len(vocab)
    # the phrases read after the prompt templates: no template braces, no stray punctuation
    assert not any("{" in p or p.endswith(".") for p in vocab.positive + vocab.negative)


def test_registry_lists_and_adds_vocabularies(tmp_path, clean_registry, monkeypatch):
    assert DEFAULT_VOCABULARY in list_vocabularies()
    folder = tmp_path / "mine"
    folder.mkdir()
    write(folder, "studio.csv", "id,positive,negative\nkey_light,a strong key light,no key light\n")
    assert "studio" not in list_vocabularies()
    add_vocabulary_path(folder)
    assert "studio" in list_vocabularies()
    vocab = load_vocabulary("studio")
    assert vocab.ids == ("key_light",) and vocab.category == ("",)
    other = tmp_path / "env"
    other.mkdir()
    write(other, "street.csv", "id,positive,negative\nwet_street,a wet street,a dry street\n")
    monkeypatch.setenv(vocabulary_module.ENV_PATHS, str(other))
    assert "street" in list_vocabularies()
    with pytest.raises(VocabularyError, match=r"unknown vocabulary 'nope'.*photography"):
        load_vocabulary("nope")


def test_a_path_works_wherever_a_name_does(tmp_path):
    path = write(tmp_path, "x.csv", "id,positive,negative\nfog,thick fog,clear air\n")
    assert load_vocabulary(str(path)).ids == ("fog",)
    assert load_vocabulary(path).path == str(path.resolve())


def test_the_papers_vocabulary_loads(clip_cues_dir):
    vocab = load_vocabulary(clip_cues_dir / "antonyms.csv")
    assert len(vocab) == 168
    assert vocab.ids[0] == "saturation"
    assert vocab.positive[0] == "balanced saturation"
    assert vocab.positive_prompt[0] == "A photograph with balanced saturation"
    assert vocab.category[0] == "color" and vocab.explanation[0]


def test_hash_depends_on_content_not_file_name(tmp_path):
    text = "id,positive,negative,category,explanation\nfog,thick fog,clear air,weather,haze\n"
    a = load_vocabulary(write(tmp_path, "a.csv", text))
    b = load_vocabulary(write(tmp_path, "b.csv", text))
    c = load_vocabulary(write(tmp_path, "c.csv", text.replace("thick", "dense")))
    assert a.hash == b.hash != c.hash
    assert re.fullmatch(r"[0-9a-f]{16}", a.hash)
    assert load_vocabulary().hash == load_vocabulary().hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"empty file"),
        ("id,positive\nfog,thick fog\n", r"line 1: missing column\(s\) negative"),
        ("id,positive,negative,colour\nfog,a,b,c\n", r"line 1: unknown column\(s\) 'colour'"),
        ("id,positive,negative\n", r"no concepts"),
        ("id,positive,negative\nfog,thick fog,\n", r"line 2: empty negative phrase for 'fog'"),
        ("id,positive,negative\n,thick fog,clear\n", r"line 2: empty id"),
        ("id,positive,negative\nFog Bank,a,b\n", r"line 2: id 'Fog Bank' is not snake_case"),
        (
            "id,positive,negative\nfog,thick fog,clear air\nhaze,haze,no haze\nfog,x,y\n",
            r"line 4: duplicate id 'fog' \(first at .*line 2\)",
        ),
        ("id,positive,negative\nfog,Thick fog,thick fog\n", r"line 2: .* identical"),
        ("id,positive,negative\nfog,a,b,c\n", r"line 2: more fields than columns"),
        ("attribute_name,id,positive,negative\nx,y,a,b\n", r"column\(s\) given twice: id"),
    ],
)
def test_invalid_rows_are_refused_with_file_row_and_reason(tmp_path, text, message):
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(VocabularyError, match=message) as info:
        load_vocabulary(path)
    assert str(path.resolve()) in str(info.value)


def test_blank_lines_and_a_bom_are_tolerated(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_bytes("\ufeffid,positive,negative\n\nfog,thick fog,clear air\n\n".encode())
    assert load_vocabulary(path).ids == ("fog",)


def test_in_memory_vocabularies():
    vocab = Vocabulary.from_pairs([("a", "x", "y"), ("b", "p", "q", "cat", "why")], name="mini")
    assert vocab.ids == ("a", "b") and vocab.category == ("", "cat")
    sub = vocab.subset(["b"])
    assert sub.ids == ("b",) and sub.explanation == ("why",)
    assert vocab.index("b") == 1
    with pytest.raises(VocabularyError, match="no concept 'c'"):
        vocab.index("c")
    frame = vocab.to_frame()
    assert list(frame["id"]) == ["a", "b"]
    parsed = parse_vocabulary("id,positive,negative\na,x,y\nb,p,q\n")
    assert parsed.ids == vocab.ids
