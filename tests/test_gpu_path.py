"""The GPU path of extraction, covered on the CPU: when it is taken, which JPEGs it takes, the
batched decode with its per-file fallback, preprocessing on tensors, and the whole pipeline
with the device decoder forced on (torchvision's decode_jpeg runs on the CPU as well)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import detector.extract as extract
from detector.datasets import load_dataset
from detector.store import Workspace


def _photo(w=120, h=90, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 10 + 1, w // 10 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC)


def _jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


def test_decode_workers_use_every_core_on_a_gpu(monkeypatch):
    monkeypatch.setattr(extract.os, "cpu_count", lambda: 32)
    assert extract.default_workers(torch.device("cuda")) == 16
    assert extract.default_workers("cpu") == 8
    monkeypatch.setattr(extract.os, "cpu_count", lambda: 2)
    assert extract.default_workers(torch.device("cuda")) == 2
    assert extract.default_workers(torch.device("cpu")) == 1


def test_gpu_decoding_only_with_cuda_no_perturbation_and_full_batches():
    cuda = torch.device("cuda")
    assert extract.gpu_decode_wanted(cuda, None, 32)
    assert not extract.gpu_decode_wanted(torch.device("cpu"), None, 32)
    assert not extract.gpu_decode_wanted(cuda, lambda im, h: im, 32)
    assert not extract.gpu_decode_wanted(cuda, None, extract.GPU_DECODE_MIN_BATCH - 1)


def test_only_plain_rgb_jpegs_go_to_the_device_decoder():
    photo = _photo()
    assert extract.is_plain_jpeg(_jpeg(photo), None) == (120, 90)
    assert extract.is_plain_jpeg(_jpeg(photo), 120 * 90 - 1) is None  # over the pixel limit
    assert extract.is_plain_jpeg(_jpeg(photo.convert("L")), None) is None
    assert extract.is_plain_jpeg(_jpeg(photo.convert("CMYK")), None) is None
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the CPU decoder applies the orientation
    assert extract.is_plain_jpeg(_jpeg(photo, exif=exif.tobytes()), None) is None
    png = io.BytesIO()
    photo.save(png, format="PNG")
    assert extract.is_plain_jpeg(png.getvalue(), None) is None
    assert extract.is_plain_jpeg(b"\xff\xd8\xff" + b"\x00" * 50, None) is None


def test_a_broken_jpeg_fails_alone_in_its_batch():
    good = [_jpeg(_photo(seed=i)) for i in range(3)]
    broken = good[0][:200] + b"\x00garbage" * 20
    out = extract.decode_jpegs([good[0], broken, good[1], good[2]], "cpu")
    assert out[1] is None
    for data, tensor in zip(good, [out[0], out[2], out[3]], strict=True):
        assert tensor.shape == (3, 90, 120) and tensor.dtype == torch.uint8
        reference = torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)))).permute(2, 0, 1)
        assert (tensor.int() - reference.int()).abs().float().mean() < 2  # same decoder family


def test_tensor_preprocessing_matches_the_pil_preprocessing(tiny_backbone):
    from detector.backbone import CLIP_MEAN, CLIP_STD

    photo = _photo(400, 300)
    data = _jpeg(photo)
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    [tensor] = extract.decode_jpegs([data], "cpu")
    ours = extract.preprocess_tensor(tensor, tiny_backbone.image_size, CLIP_MEAN, CLIP_STD)
    theirs = tiny_backbone.preprocess(decoded)
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().mean() < 0.02


def _mixed_folder(root):
    real, fake = root / "real", root / "gan"
    real.mkdir(parents=True)
    fake.mkdir(parents=True)
    for i in range(5):
        (real / f"{i}.jpg").write_bytes(_jpeg(_photo(160, 120, seed=i)))
    _photo(seed=9).save(fake / "a.png")
    (fake / "cmyk.jpg").write_bytes(_jpeg(_photo(seed=10).convert("CMYK")))
    (fake / "broken.jpg").write_bytes(_jpeg(_photo(seed=11))[:300] + b"\x00junk" * 30)
    return root


def test_the_pipeline_with_device_decoding_matches_the_cpu_pipeline(
    tmp_path, monkeypatch, tiny_backbone
):
    data = _mixed_folder(tmp_path / "data")
    with Workspace(tmp_path / "cpu") as ws:
        cpu = extract.embed_dataset(load_dataset(data), ws, tiny_backbone, batch_size=8, workers=0)
        _, x_cpu = ws.load_embeddings(tiny_backbone.id, "pooled", None)
        h_cpu = ws.embedded_hashes(tiny_backbone.id, "pooled")

    calls = []
    real_decode = extract.decode_jpegs

    def spy(datas, device):
        calls.append(len(datas))
        return real_decode(datas, device)

    monkeypatch.setattr(extract, "gpu_decode_wanted", lambda *a: True)
    monkeypatch.setattr(extract, "decode_jpegs", spy)
    with Workspace(tmp_path / "gpu") as ws:
        gpu = extract.embed_dataset(load_dataset(data), ws, tiny_backbone, batch_size=8, workers=1)
        _, x_gpu = ws.load_embeddings(tiny_backbone.id, "pooled", None)
        h_gpu = ws.embedded_hashes(tiny_backbone.id, "pooled")

    assert calls == [6]  # the five JPEGs and the broken one (its header reads) in one call
    assert (gpu.embedded, gpu.failed) == (cpu.embedded, cpu.failed)
    assert h_gpu == h_cpu
    assert {e["path"].rsplit("/", 1)[-1] for e in gpu.errors} == {"broken.jpg"}
    cos = (x_cpu * x_gpu).sum(1) / (np.linalg.norm(x_cpu, axis=1) * np.linalg.norm(x_gpu, axis=1))
    assert cos.min() > 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_decode_jpegs_on_cuda():
    out = extract.decode_jpegs([_jpeg(_photo())], "cuda")
    assert out[0].device.type == "cuda"
