"""Backbone loading: tiny-clip determinism, both taps, local checkpoints, missing weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from detector.backbone import (
    Backbone,
    BackboneError,
    WeightsUnavailableError,
    file_digest,
    load_backbone,
    resolve_device,
    resolve_precision,
    weights_available,
)
from tests.conftest import REPO


def _images():
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)),
        Image.new("RGB", (64, 64), (10, 200, 30)),
    ]


def test_tiny_clip_both_taps_have_the_configured_shapes(tiny_backbone: Backbone):
    feats = tiny_backbone.embed_pil(_images())
    assert feats["pooled"].shape == (2, tiny_backbone.pooled_dim) == (2, 64)
    assert feats["projected"].shape == (2, tiny_backbone.projected_dim) == (2, 32)
    assert tiny_backbone.id == "tiny-clip/random"
    assert tiny_backbone.is_demo


def test_projected_tap_is_pooled_times_projection(tiny_backbone: Backbone):
    feats = tiny_backbone.embed_pil(_images())
    proj = tiny_backbone.model.visual.proj.detach().numpy()
    np.testing.assert_allclose(feats["pooled"] @ proj, feats["projected"], rtol=1e-4, atol=1e-4)


def test_projected_tap_matches_open_clip_encode_image(tiny_backbone: Backbone):
    batch = torch.stack([tiny_backbone.preprocess(im) for im in _images()])
    ours = tiny_backbone.encode_images(batch)["projected"]
    with torch.no_grad():
        theirs = tiny_backbone.model.encode_image(batch)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_tiny_clip_is_identical_across_processes(tiny_backbone: Backbone):
    code = (
        "import numpy as np, sys\n"
        "from PIL import Image\n"
        "from detector.backbone import load_backbone\n"
        "b = load_backbone('tiny-clip', device='cpu', precision='fp32')\n"
        "im = Image.new('RGB', (64, 64), (10, 200, 30))\n"
        "np.save(sys.argv[1], b.embed_pil([im])['pooled'])\n"
    )
    out = REPO / ".pytest_cache" / "tiny_clip_other_process.npy"
    out.parent.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, cwd=REPO)
    other = np.load(out)
    mine = tiny_backbone.embed_pil([Image.new("RGB", (64, 64), (10, 200, 30))])["pooled"]
    np.testing.assert_array_equal(mine, other)


def test_tiny_clip_text_embeddings_are_unit_norm(tiny_backbone: Backbone):
    text = tiny_backbone.encode_text(["a photo with lens flare", "a flat image"])
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)


@pytest.fixture
def test_vit(monkeypatch):
    """A tiny registered architecture with a real-model name (not the tiny-clip demo)."""
    import open_clip

    cfg = json.loads((REPO / "assets" / "models" / "tiny-clip.json").read_text())
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, "test-vit", cfg)
    torch.manual_seed(1)
    return open_clip.create_model("test-vit")


def test_local_checkpoint_file_loads_and_is_identified_by_hash(tmp_path, test_vit):
    path = tmp_path / "test-vit.pt"
    torch.save(test_vit.state_dict(), path)
    backbone = load_backbone("test-vit", str(path), device="cpu", precision="fp32")
    assert backbone.id == f"test-vit/file:{file_digest(path)}"
    assert not backbone.is_demo
    torch.testing.assert_close(backbone.model.visual.proj, test_vit.visual.proj)


def test_local_dir_loads_an_open_clip_folder(tmp_path, test_vit):
    from safetensors.torch import save_file

    folder = tmp_path / "model"
    folder.mkdir()
    cfg = json.loads((REPO / "assets" / "models" / "tiny-clip.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    state = {k: v.contiguous() for k, v in test_vit.state_dict().items()}
    save_file(state, folder / "open_clip_model.safetensors")
    backbone = load_backbone(f"local-dir:{folder}", device="cpu", precision="fp32")
    assert backbone.id.startswith("local-dir/dir:")
    torch.testing.assert_close(backbone.model.visual.proj, test_vit.visual.proj)
    with pytest.raises(WeightsUnavailableError, match="no such folder"):
        load_backbone(f"local-dir:{tmp_path / 'missing'}")


def test_missing_weights_give_one_clear_message_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("CUE_LENS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailableError) as info:
        load_backbone("ViT-B-16", "openai", cache_dir=str(tmp_path / "cache"))
    message = str(info.value)
    assert "ViT-B-16" in message and "openai" in message
    assert "--pretrained /path/to/weights" in message and "local-dir:" in message
    assert not weights_available("ViT-B-16", "openai", str(tmp_path / "cache"))


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        load_backbone("ViT-B-16", str(tmp_path / "nope.pt"))


def test_corrupt_checkpoint_file_is_refused_not_random(tmp_path, test_vit):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="not a usable"):
        load_backbone("test-vit", str(bad), device="cpu")


def test_unknown_model_and_tag_are_clear_errors():
    with pytest.raises(BackboneError, match="unknown model"):
        load_backbone("ViT-Nonexistent", "openai")
    with pytest.raises(BackboneError, match="unknown pretrained tag"):
        load_backbone("ViT-B-16", "no-such-tag")
    with pytest.raises(BackboneError, match="no weights given"):
        load_backbone("ViT-B-16", None)


def test_cli_reports_missing_weights_without_traceback(monkeypatch, tmp_path):
    env = {"CUE_LENS_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    data = tmp_path / "data" / "real"
    data.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(data / "a.png")
    proc = subprocess.run(
        [sys.executable, "-m", "detector", "embed", str(tmp_path / "data"), "-w", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "ViT-L-14-336 / openai are not available" in proc.stderr


def test_device_and_precision_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("CUE_LENS_HOME", str(tmp_path))
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    # a CPU not measured yet for this model is settled at load time
    assert resolve_precision("auto", torch.device("cpu"), "tiny-clip") == "auto"
    backbone = load_backbone("tiny-clip", device="cpu", precision="auto")
    assert backbone.precision_decision.source == "measured"
    assert resolve_precision("auto", torch.device("cpu"), "tiny-clip") == backbone.precision
    with pytest.raises(BackboneError):
        resolve_precision("fp8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(BackboneError, match="CUDA is not available"):
            resolve_device("cuda")


def test_text_tower_is_loaded_only_when_text_is_encoded(tiny_backbone: Backbone):
    fresh = load_backbone("tiny-clip", device="cpu", precision="fp32")
    assert not fresh.text_loaded
    assert fresh.model.token_embedding is None
    n_image_only = sum(p.numel() for p in fresh.model.parameters())
    text = fresh.encode_text(["a photo with lens flare"])
    assert fresh.text_loaded
    assert sum(p.numel() for p in fresh.model.parameters()) > n_image_only
    full = load_backbone("tiny-clip", device="cpu", precision="fp32", text_tower=True)
    np.testing.assert_allclose(text, full.encode_text(["a photo with lens flare"]), atol=1e-6)


def test_backbone_id_is_known_without_loading(tmp_path, test_vit, tiny_backbone):
    from detector.backbone import backbone_id_for

    path = tmp_path / "w.pt"
    torch.save(test_vit.state_dict(), path)
    loaded = load_backbone("test-vit", str(path), device="cpu", precision="fp32")
    assert backbone_id_for("test-vit", str(path)) == loaded.id
    assert backbone_id_for("tiny-clip", None) == tiny_backbone.id
    assert backbone_id_for("ViT-L-14-336", "openai") == "ViT-L-14-336-quickgelu/openai"
    gone = str(tmp_path / "gone.pt")
    assert backbone_id_for("ViT-B-16", gone) == "ViT-B-16-quickgelu/file:missing"
    assert backbone_id_for("ViT-B-16", "laion2b_s34b_b88k") == "ViT-B-16/laion2b_s34b_b88k"
    assert backbone_id_for("ViT-L-14-336", "openai", draft=True).endswith("/openai@draft")
    assert backbone_id_for("ViT-B-16", "openai", "bicubic", True).endswith("@bicubic+draft")


def test_openai_weights_from_a_local_file_run_with_quickgelu(tmp_path):
    """OpenAI's checkpoints carry no activation flag; open_clip's plain model names build
    nn.GELU. A local file for an OpenAI architecture must come out with QuickGELU, and its id
    must differ from the GELU-era id (which is reported stale)."""
    import open_clip
    from safetensors.torch import save_file

    from detector.backbone import stale_reason

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        donor = open_clip.create_model("ViT-B-32", pretrained=None)
    path = tmp_path / "vit-b-32.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    del donor
    loaded = load_backbone("ViT-B-32", str(path), device="cpu", precision="fp32")
    acts = {type(b.mlp.gelu).__name__ for b in loaded.model.visual.transformer.resblocks}
    assert acts == {"QuickGELU"}
    assert loaded.id.startswith("ViT-B-32-quickgelu/file:")
    assert loaded.has_text
    old_id = loaded.id.replace("-quickgelu", "")
    assert stale_reason(old_id) and "QuickGELU" in stale_reason(old_id)
    assert stale_reason(loaded.id) is None


@pytest.mark.parametrize(
    ("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")], ids=["unset", "user-set"]
)
def test_openmp_threads_sleep_when_idle_unless_the_user_chose(preset, expected):
    """Spinning OpenMP threads starve a second job on the same cores (bench_concurrent.py);
    the policy must be in the environment before torch loads, whichever package comes first."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        "import os, sys\n"
        "import concepts.bottleneck\n"  # concepts first: it must still set the policy before torch
        "assert 'torch' in sys.modules\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == expected


def test_a_checkpoint_loads_lean_and_its_text_tower_on_demand(tmp_path, test_vit):
    """Image-only loading builds on the meta device and adopts the checkpoint's tensors: the
    weights are the file's, nothing is left unset, and the text tower comes back intact."""
    import open_clip.factory

    path = tmp_path / "test-vit.pt"
    torch.save(test_vit.state_dict(), path)
    built = []
    original = open_clip.factory.load_checkpoint

    def spy(model, *args, **kwargs):
        built.append(next(model.parameters()).device.type)
        return original(model, *args, **kwargs)

    open_clip.factory.load_checkpoint = spy
    try:
        backbone = load_backbone("test-vit", str(path), device="cpu", precision="fp32")
    finally:
        open_clip.factory.load_checkpoint = original
    assert built == ["meta"]  # no random initialisation in memory before the weights
    assert open_clip.factory.load_checkpoint is original
    for name, tensor in test_vit.visual.state_dict().items():
        torch.testing.assert_close(backbone.model.visual.state_dict()[name], tensor)
    assert not backbone.text_loaded
    text = backbone.encode_text(["a photo"])
    with torch.no_grad():
        theirs = test_vit.encode_text(backbone.tokenizer(["a photo"]))
    expected = torch.nn.functional.normalize(theirs, dim=-1).numpy()
    np.testing.assert_allclose(text, expected, atol=1e-5)


def test_a_checkpoint_missing_image_weights_is_refused(tmp_path, test_vit):
    state = {k: v for k, v in test_vit.state_dict().items() if k != "visual.proj"}
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(WeightsUnavailableError, match="not a usable"):
        load_backbone("test-vit", str(path), device="cpu", precision="fp32")


def test_a_text_encoder_is_loaded_with_its_text_tower():
    from concepts.directions import load_text_encoder

    encoder = load_text_encoder("tiny-clip/random", device="cpu", precision="fp32")
    assert encoder.text_loaded and encoder.model.token_embedding is not None
