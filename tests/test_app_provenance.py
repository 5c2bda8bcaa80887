"""The Detect page shows what each file declares beside the verdict (AppTest, offline demo).

One upload per fixture of ``provenance_fixtures``: signed AI image, tampered signed image,
Stable Diffusion and ComfyUI PNGs, XMP DigitalSourceType, HEIC and AVIF from a phone.
"""

from __future__ import annotations

import provenance_fixtures as fx
import pytest
from test_app import app_env, assert_clean, demo_home, new_app  # noqa: F401 (fixtures)


def _upload(name: str, data: bytes, mime: str):
    at = new_app().run()
    at.file_uploader(key="detect_upload").set_value([(name, data, mime)]).run()
    assert_clean(at, name)
    return at


def _callouts(at) -> list[str]:
    return [e.value for e in (*at.warning, *at.success, *at.info)]


def _table(at, column: str):
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with column {column!r}"
    return dict(zip(found[0][column], found[0]["Value"], strict=True))


def _verdict(at) -> str:
    heads = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert heads, "no verdict"
    for v in ("likely real", "inconclusive", "likely synthetic"):
        if v in heads[0].lower():
            return v
    raise AssertionError(heads[0])


def test_signed_ai_image_shows_validated_credentials_beside_the_verdict():
    at = _upload("made.jpg", fx.signed("JPEG", ingredient=True), "image/jpeg")
    verdict = _verdict(at)
    sentences = [c for c in _callouts(at) if "the file is signed as AI-generated" in c]
    assert sentences and sentences[0].endswith(f"detector: {verdict}.")
    assert fx.SIGNER_CN in sentences[0]
    credentials = _table(at, "Content Credentials")
    assert credentials["Signer"] == fx.SIGNER_CN
    assert credentials["Claim generator"] == f"{fx.GENERATOR} 2.1"
    assert credentials["Digital source type"] == "trainedAlgorithmicMedia"
    assert "not on a trust list" in credentials["Validation"]
    assert credentials["Ingredient"].startswith("source-photo.jpg (componentOf")
    assert any("valid signature, untrusted certificate" in m.value for m in at.markdown)


def test_tampered_signed_image_shows_the_failing_check():
    at = _upload("tampered.jpg", fx.tampered(fx.signed("JPEG")), "image/jpeg")
    credentials = _table(at, "Content Credentials")
    assert credentials["Validation"].startswith("INVALID: assertion.dataHash.mismatch")
    assert any("FAILS validation" in c for c in _callouts(at))
    assert any("INVALID" in m.value for m in at.markdown)


@pytest.mark.parametrize(
    ("build", "model", "seed"),
    [
        (fx.sd_png, "sd_xl_base_1.0", "1234567"),
        (fx.comfy_png, "flux1-dev.safetensors", "987654321"),
    ],
    ids=["stable-diffusion", "comfyui"],
)
def test_generation_settings_in_png_chunks_are_shown(build, model, seed):
    at = _upload("gen.png", build(), "image/png")
    generation = _table(at, "Generation")
    assert generation["Model"] == model and generation["Seed"] == seed
    assert generation["Prompt"]
    assert any("declared AI-generated (" in c and "unsigned)" in c for c in _callouts(at))


def test_xmp_digital_source_type_is_shown():
    at = _upload("xmp.jpg", fx.xmp_jpeg(), "image/jpeg")
    assert any("trainedAlgorithmicMedia" in m.value for m in at.markdown)
    assert any("declared AI-generated (xmp, unsigned)" in c for c in _callouts(at))


@pytest.mark.parametrize(
    ("name", "build", "fmt"),
    [("phone.heic", fx.rotated_heic, "HEIF"), ("phone.avif", fx.rotated_avif, "AVIF")],
)
def test_heic_and_avif_uploads_get_a_verdict_upright(name, build, fmt):
    # large enough to be judged (detector.inference.MIN_JUDGE_SIDE): 160x80 stored, upright 80x160
    at = _upload(name, build(size=(160, 80)), f"image/{name.rsplit('.', 1)[1]}")
    _verdict(at)
    facts = _table(at, "Provenance")
    assert facts["Format"] == f"{fmt} · 80×160 px"
    assert any("declares nothing about its origin" in c for c in _callouts(at))


def test_batch_table_and_csv_carry_the_declaration_columns():
    from detector.inference import LIKELY_REAL, LIKELY_SYNTHETIC
    from detector.provenance import read_provenance
    from ui.analysis import ImageResult, results_table

    results = [
        ImageResult("made.jpg", "a" * 64, 10, verdict=LIKELY_REAL, probability=0.1),
        ImageResult("sd.png", "b" * 64, 10, verdict=LIKELY_SYNTHETIC, probability=0.9),
        ImageResult("photo.jpg", "c" * 64, 10, verdict=LIKELY_REAL, probability=0.2),
    ]
    for res, data in zip(results, (fx.signed("JPEG"), fx.sd_png(), fx.camera_jpeg()), strict=True):
        res.provenance = read_provenance(data)
    table = results_table(results).set_index("file")
    assert table.loc["made.jpg", "c2pa_state"] == "valid"
    assert table.loc["made.jpg", "c2pa_signer"] == fx.SIGNER_CN
    assert table.loc["made.jpg", "file vs detector"] == "disagree"
    assert table.loc["sd.png", "declared_by"] == "png-parameters"
    assert table.loc["sd.png", "file vs detector"] == "agree"
    assert not table.loc["photo.jpg", "declared_ai"]
    csv = results_table(results).drop(columns=["thumbnail"]).to_csv(index=False)
    assert "declared_ai,declared_capture,declared_by,declared_generator,c2pa_state" in csv


def test_the_uploader_accepts_heic_and_avif():
    at = new_app().run()
    accepted = list(at.file_uploader(key="detect_upload").proto.type)
    assert {".heic", ".heif", ".avif"} <= set(accepted)
