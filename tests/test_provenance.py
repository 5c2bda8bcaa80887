"""What files declare about their origin (``detector.provenance``), HEIC/AVIF decoding, and the
provenance summary through the library, the command line and the audit.

Every fixture is built here (``provenance_fixtures``): a test certificate chain from
``cryptography``, images signed with ``c2pa-python``'s Builder, PNG text chunks, XMP, EXIF.
"""

from __future__ import annotations

import json

import provenance_fixtures as fx
import pytest
from test_concepts_cli import setup  # noqa: F401 (fixture: a workspace with a concept head)

from detector.images import ImageDecodeError, decode_image, image_metadata
from detector.inference import INCONCLUSIVE, LIKELY_REAL, LIKELY_SYNTHETIC
from detector.provenance import (
    declaration_columns,
    provenance_record,
    provenance_summary,
    read_provenance,
)

# -- Content Credentials ----------------------------------------------------------------------


def test_signed_ai_image_is_read_validated_and_declared():
    prov = read_provenance(fx.signed("JPEG", "trainedAlgorithmicMedia"))
    cc = prov.content_credentials
    assert cc is not None and cc.state == "valid"  # valid signature, test root not trusted
    assert cc.signer == fx.SIGNER_CN and cc.issuer == fx.SIGNER_ORG
    assert cc.claim_generator == f"{fx.GENERATOR} 2.1"
    assert cc.digital_source_type == "trainedAlgorithmicMedia"
    assert cc.actions[0]["action"] == "c2pa.created"
    assert cc.actions[0]["software_agent"] == fx.GENERATOR
    assert cc.failures == []
    assert prov.declares_ai and not prov.declares_capture
    assert prov.declared_generator == fx.GENERATOR
    assert "not on a trust list" in cc.state_text


def test_signed_camera_capture_is_not_declared_ai():
    prov = read_provenance(fx.signed("JPEG", "digitalCapture"))
    assert prov.content_credentials.digital_source_type == "digitalCapture"
    assert prov.declares_capture and not prov.declares_ai
    assert declaration_columns(prov)["declared_ai"] is False


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF", "HEIF"])
def test_signed_images_of_other_formats_are_read(fmt):
    prov = read_provenance(fx.signed(fmt, "compositeWithTrainedAlgorithmicMedia"))
    assert prov.format == fmt
    assert prov.content_credentials.state == "valid"
    assert prov.content_credentials.digital_source_type == "compositeWithTrainedAlgorithmicMedia"
    assert prov.declares_ai


def test_ingredients_are_listed():
    cc = read_provenance(fx.signed("JPEG", ingredient=True)).content_credentials
    assert cc.ingredients == [
        {"title": "source-photo.jpg", "relationship": "componentOf", "format": "image/jpeg"}
    ]


def test_tampered_pixels_fail_validation_with_the_failing_check():
    prov = read_provenance(fx.tampered(fx.signed("JPEG")))
    cc = prov.content_credentials
    assert cc.state == "invalid"
    assert any(f.startswith("assertion.dataHash.mismatch") for f in cc.failures)
    assert cc.state_text.startswith("INVALID")
    decl = prov.declarations[0]
    assert decl.source == "c2pa" and not decl.signed and "FAILED" in decl.text
    sentence = provenance_summary(prov, LIKELY_REAL)["sentence"]
    assert "FAILS validation" in sentence and "signed as" not in sentence


def test_a_local_trust_anchor_makes_the_signer_trusted(tmp_path, monkeypatch):
    _, _, root = fx.test_chain()
    data = fx.signed("JPEG")
    assert read_provenance(data, trust_anchors=root.decode()).content_credentials.state == (
        "trusted"
    )
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(root)
    monkeypatch.setenv("CUE_LENS_C2PA_TRUST_ANCHORS", str(anchors))
    assert read_provenance(data).content_credentials.state == "trusted"


def test_a_damaged_manifest_is_reported_not_raised():
    data = fx.signed("JPEG")
    start = data.find(b"jumb")
    broken = data[: start + 40] + b"\x00" * 200 + data[start + 240 :]
    prov = read_provenance(broken, path="broken.jpg")
    cc = prov.content_credentials
    assert cc is None or cc.state in ("unreadable", "invalid")
    assert prov.format == "JPEG"


# -- unsigned declarations --------------------------------------------------------------------


def test_stable_diffusion_parameters_give_model_seed_and_prompt():
    prov = read_provenance(fx.sd_png())
    gen = prov.generation
    assert gen["tool"] == "Stable Diffusion web UI"
    assert gen["model"] == "sd_xl_base_1.0"
    assert gen["seed"] == 1234567
    assert gen["prompt"] == "a lighthouse at dusk, oil painting"
    assert gen["negative_prompt"] == "blurry, lowres"
    assert gen["sampler"] == "DPM++ 2M Karras"
    assert prov.declares_ai and prov.declarations[0].source == "png-parameters"
    assert prov.content_credentials is None


@pytest.mark.parametrize("workflow_only", [False, True])
def test_comfyui_graphs_give_model_seed_and_prompt(workflow_only):
    prov = read_provenance(fx.comfy_png(workflow_only=workflow_only))
    assert prov.generation == {
        "tool": "ComfyUI",
        "model": "flux1-dev.safetensors",
        "seed": 987654321,
        "prompt": "a red fox in snow",
    }
    assert prov.declarations[0].source == "comfyui" and prov.declares_ai


def test_a_huge_settings_line_is_parsed_only_up_to_a_bound(monkeypatch):
    """A 1 MB settings line: the field regex (quadratic on a line without separators) only
    ever sees a bounded prefix of it."""
    from PIL import PngImagePlugin

    import detector.provenance as provenance

    seen = []
    real = provenance._A1111_FIELD

    class Recording:
        def findall(self, text):
            seen.append(len(text))
            return real.findall(text)

    monkeypatch.setattr(provenance, "_A1111_FIELD", Recording())
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Seed: 7, " + "a" * 1_000_000)
    prov = read_provenance(fx.encode(fx.picture(), "PNG", pnginfo=info))
    assert seen == [provenance._A1111_SETTINGS_MAX]
    assert prov.generation["seed"] == 7 and prov.generation["prompt"] == "a cat"


def test_broken_comfyui_json_is_listed_not_raised():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "{not json")
    prov = read_provenance(fx.encode(fx.picture(), "PNG", pnginfo=info))
    assert not prov.declares_ai
    assert any("not valid JSON" in e for e in prov.errors)


@pytest.mark.parametrize("attribute", [False, True])
def test_xmp_digital_source_type(attribute):
    prov = read_provenance(fx.xmp_jpeg("trainedAlgorithmicMedia", attribute=attribute))
    assert prov.xmp_source_type == "trainedAlgorithmicMedia"
    assert prov.declares_ai and prov.declarations[0].source == "xmp"
    capture = read_provenance(fx.xmp_jpeg("digitalCapture", attribute=attribute))
    assert capture.declares_capture and not capture.declares_ai


def test_exif_software_naming_a_generator():
    prov = read_provenance(fx.exif_software_jpeg("Adobe Firefly"))
    assert prov.declares_ai and prov.declared_generator == "Adobe Firefly"
    assert not read_provenance(fx.camera_jpeg()).declares_ai  # Lightroom is no generator


def test_a_plain_camera_photo_declares_nothing():
    prov = read_provenance(fx.camera_jpeg())
    assert prov.declarations == [] and prov.content_credentials is None
    summary = provenance_summary(prov, LIKELY_SYNTHETIC)
    assert summary["declares"] == "nothing" and summary["agreement"] == "n/a"
    assert "declares nothing" in summary["sentence"]


# -- the summary beside the verdict -----------------------------------------------------------


def test_summary_says_plainly_when_file_and_detector_disagree():
    prov = read_provenance(fx.signed("JPEG"))
    disagree = provenance_summary(prov, LIKELY_REAL)
    assert disagree["agreement"] == "disagree"
    assert disagree["sentence"] == (
        f"Disagreement: the file is signed as AI-generated by {fx.SIGNER_CN}; "
        "detector: likely real."
    )
    assert disagree["statement"].startswith(
        "The file declares that generative AI made it (trainedAlgorithmicMedia), in Content "
        f"Credentials signed by {fx.SIGNER_CN}, made with {fx.GENERATOR} 2.1."
    )
    assert provenance_summary(prov, LIKELY_SYNTHETIC)["agreement"] == "agree"
    assert provenance_summary(prov, INCONCLUSIVE)["agreement"] == "n/a"
    capture = read_provenance(fx.signed("JPEG", "digitalCapture"))
    assert provenance_summary(capture, LIKELY_SYNTHETIC)["agreement"] == "disagree"
    unsigned = provenance_summary(read_provenance(fx.sd_png()), LIKELY_REAL)
    assert "(png-parameters, unsigned)" in unsigned["sentence"]


def test_provenance_record_is_json_ready(tmp_path):
    path = tmp_path / "made.jpg"
    path.write_bytes(fx.signed("JPEG", ingredient=True))
    record = provenance_record(str(path), LIKELY_REAL)
    again = json.loads(json.dumps(record))
    assert again["columns"]["c2pa_state"] == "valid"
    assert again["details"]["content_credentials"]["ingredients"][0]["title"] == (
        "source-photo.jpg"
    )
    missing = provenance_record(str(tmp_path / "gone.jpg"), None)
    assert missing["declares"] == "nothing" and missing["details"] is None


# -- HEIC and AVIF ----------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "fmt"), [(fx.rotated_heic, "HEIF"), (fx.rotated_avif, "AVIF")])
def test_heic_and_avif_decode_upright(build, fmt):
    decoded = decode_image(build())
    assert decoded.format == fmt
    assert (decoded.width, decoded.height) == (20, 40)  # stored 40x20, EXIF orientation 6
    assert decoded.image.size == (20, 40)
    top, bottom = decoded.image.getpixel((10, 3)), decoded.image.getpixel((10, 36))
    assert top[2] > 200 and top[0] < 50  # the blue quarter is now on top
    assert bottom[0] > 200 and bottom[2] < 50


def test_heic_metadata_reads_the_phone_exif():
    meta = image_metadata(fx.rotated_heic())
    assert meta["format"] == "HEIF" and (meta["width"], meta["height"]) == (20, 40)
    assert (meta["camera_make"], meta["camera_model"]) == ("Apple", "iPhone 15 Pro")


def test_truncated_heic_is_a_readable_error():
    data = fx.rotated_heic()
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(data[: len(data) // 2], path="half.heic")
    assert caught.value.path == "half.heic" and "HEIF" in caught.value.reason


def test_heic_over_the_pixel_limit_is_refused_from_the_header():
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(fx.rotated_heic(), path="small.heic", max_pixels=500)
    assert "too large" in caught.value.reason


# -- the command line and the audit ----------------------------------------------------------


def test_predict_json_carries_the_provenance_summary(tmp_path, capsys):
    from test_cli_detect import build_workspace, run_json

    ws = str(build_workspace(tmp_path / "ws"))
    run_json(capsys, "train", "--workspace", ws, "--head", "linear", "--out", "probe")
    signed = tmp_path / "signed.jpg"
    signed.write_bytes(fx.signed("JPEG"))
    sd = tmp_path / "sd.png"
    sd.write_bytes(fx.sd_png())
    out = run_json(
        capsys, "predict", str(signed), str(sd), "--model", "tiny-clip", "--workspace", ws
    )
    first, second = out["images"]
    block = first["provenance"]
    assert block["declares"] == "ai"
    assert block["columns"]["c2pa_state"] == "valid"
    assert block["columns"]["c2pa_signer"] == fx.SIGNER_CN
    assert block["detector"] == first["verdict"]
    assert f"signed as AI-generated by {fx.SIGNER_CN}" in block["sentence"]
    assert second["provenance"]["details"]["generation"]["seed"] == 1234567


def test_audit_counts_and_flags_declared_generation(tmp_path):
    from detector.audit import audit

    root = tmp_path / "data"
    for i in range(4):
        (root / "real").mkdir(parents=True, exist_ok=True)
        (root / "real" / f"r{i}.jpg").write_bytes(fx.camera_jpeg())
        (root / "sdxl").mkdir(parents=True, exist_ok=True)
        data = fx.sd_png() if i < 2 else fx.encode(fx.picture(colour=(i, 9, 9)), "PNG")
        (root / "sdxl" / f"s{i}.png").write_bytes(data)
    report = audit(root)
    assert report.images["declared_ai"].sum() == 2
    row = report.summary[report.summary["generator"] == "sdxl"].iloc[0]
    assert row["declared_ai"] == 2 and row["declared_by"] == "png-parameters 2"
    flagged = [w for w in report.warnings if w["property"] == "declared_ai"]
    assert flagged and "2 synthetic image(s) carry metadata declaring" in flagged[0]["message"]


def test_explain_json_carries_the_provenance_summary(setup, tmp_path, capsys):  # noqa: F811
    """``setup``: test_concepts_cli's workspace with a tiny-clip concept head."""
    from test_concepts_cli import explain_with_concept_model

    made = tmp_path / "made.png"
    made.write_bytes(fx.signed("PNG"))
    out = explain_with_concept_model(capsys, setup, str(made))
    (image,) = out["images"]
    block = image["provenance"]
    assert block["declares"] == "ai" and block["columns"]["c2pa_state"] == "valid"
    assert block["detector"] in (LIKELY_REAL, INCONCLUSIVE, LIKELY_SYNTHETIC)
    assert block["sentence"].endswith(f"detector: {block['detector']}.")
