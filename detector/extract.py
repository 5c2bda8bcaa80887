"""Streaming extraction: image files -> both CLIP taps -> the workspace, each image once.

Three small stages, each testable alone:

1. ``hash_records``: read and SHA-256 every file (a thread pool; hashing releases the GIL).
   Contents whose embeddings are already stored for this backbone are "cached" and cost
   nothing more.
2. ``DecodeDataset`` in DataLoader workers: decode by content (``detector.images``), then the
   backbone's preprocessing. A file that fails becomes an error row; the batch goes on.
3. The main process runs one batched forward under ``torch.inference_mode()`` and writes the
   batch (image rows + both taps) in ONE transaction, so a killed process loses at most the
   batch in flight and the next run finishes the rest.

Memory stays bounded by ``batch_size * (workers * prefetch + 1)`` decoded images, whatever the
dataset size. ``progress(done, total)`` is called after each batch (tqdm on the command line,
a progress bar in the dashboard).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from detector.backbone import CLIP_MEAN, CLIP_STD, Backbone
from detector.datasets import Dataset, Record
from detector.hashing import sha256_bytes, sha256_file
from detector.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from detector.store import EMBEDDING_DTYPE, TAPS, ImageRow, Workspace
from detector.uris import is_uri, read_location, read_uri

Progress = Callable[[int, int], None]
# A perturbation applied to the decoded RGB image before preprocessing; it receives the image's
# hash so that random perturbations can seed themselves per image (deterministic reruns).
Perturb = Callable[[Image.Image, str], Image.Image]


@dataclass
class EmbedSummary:
    """What one ``embed`` run did; ``as_dict`` is the CLI's ``--json`` output."""

    backbone: str
    images: int = 0
    embedded: int = 0
    cached: int = 0
    failed: int = 0
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    # the backbone's precision and how it was chosen (``detector.precision``)
    precision: dict | None = None

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "backbone": self.backbone,
            "images": self.images,
            "embedded": self.embedded,
            "cached": self.cached,
            "failed": self.failed,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "precision": self.precision,
        }


def hash_records(
    records: Sequence[Record], workers: int = 8
) -> list[tuple[Record, str | None, int | None, str | None]]:
    """``(record, sha256, size, error)`` for every record, in order; unreadable -> error."""

    def one(record: Record):
        if is_uri(record.path):  # read through pyarrow's filesystems (detector.uris)
            try:
                data = read_uri(record.path)
            except ImageDecodeError as exc:
                return record, None, None, exc.reason
            return record, sha256_bytes(data), len(data), None
        try:
            size = record.path.stat().st_size
            if size == 0:
                return record, None, 0, "empty file"
            return record, sha256_file(record.path), size, None
        except FileNotFoundError:
            return record, None, None, "file not found"
        except IsADirectoryError:
            return record, None, None, "is a directory"
        except OSError as exc:
            return record, None, None, f"cannot read file ({exc.strerror or exc})"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, records))


DECODE_TIMEOUT = 30.0  # seconds one file may take to decode (and perturb) in the pipeline


class DecodeTimeout(Exception):
    """Decoding one file exceeded its time budget."""


@contextmanager
def decode_deadline(seconds: float | None):
    """Raise ``DecodeTimeout`` if the block runs longer than ``seconds``.

    Uses a real-time interval timer, so it applies in a process's main thread (the CLI and the
    DataLoader worker processes); elsewhere (e.g. a dashboard thread) it is a no-op, and the
    pixel limit remains the guard against pathological files.
    """
    usable = (
        seconds is not None
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def _expired(signum, frame):
        raise DecodeTimeout()

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class DecodeDataset(torch.utils.data.Dataset):
    """Decode + preprocess, run in DataLoader workers; never raises for a bad file."""

    def __init__(
        self,
        items: Sequence[tuple[Record, str]],
        preprocess,
        image_size: int,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        perturb: Perturb | None = None,
        timeout: float = DECODE_TIMEOUT,
        draft: bool = False,
        jpeg_bytes: bool = False,
    ):
        self.jpeg_bytes = jpeg_bytes  # plain JPEGs come back as bytes for the GPU decoder
        self.items = list(items)
        self.draft = draft
        self.perturb = perturb
        self.timeout = timeout
        self.preprocess = preprocess
        self.image_size = image_size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        record, digest = self.items[index]
        out = {"index": index, "pixels": None, "error": None, "meta": {}, "jpeg": None}
        source = record.path
        if self.jpeg_bytes or is_uri(record.path):
            try:
                source = read_location(record.path)
            except ImageDecodeError as exc:
                out["error"] = exc.reason
                return out
            dims = is_plain_jpeg(source, self.max_pixels) if self.jpeg_bytes else None
            if dims is not None:
                out["jpeg"] = source
                out["meta"] = {"width": dims[0], "height": dims[1], "format": "JPEG", "mode": "RGB"}
                return out
        try:
            with decode_deadline(self.timeout):
                decoded = decode_image(
                    source,
                    path=str(record.path),
                    max_pixels=self.max_pixels,
                    # Full decoding (the paper's pixels) unless the backbone opted into
                    # reduced-scale JPEG decoding; a perturbation always acts on full pixels.
                    min_side=self.image_size if self.draft and self.perturb is None else None,
                )
                image = decoded.image
                if self.perturb is not None:
                    image = self.perturb(image, digest)
            out["pixels"] = self.preprocess(image)
            out["meta"] = {
                "width": decoded.width,
                "height": decoded.height,
                "format": decoded.format,
                "mode": decoded.mode,
            }
        except ImageDecodeError as exc:
            out["error"] = exc.reason
        except DecodeTimeout:
            out["error"] = f"decoding took longer than {self.timeout:g} s; skipped"
        except Exception as exc:  # a preprocessing failure must not stop the batch
            out["error"] = f"cannot preprocess image ({type(exc).__name__}: {exc})"
        return out


def _collate(samples: list[dict]) -> list[dict]:
    return samples


def _row(
    record: Record,
    digest: str,
    size: int | None,
    meta: dict,
    error: str | None,
    dataset_name: str | None,
) -> ImageRow:
    return ImageRow(
        hash=digest,
        path=str(record.path),
        label=record.label,
        generator=record.generator,
        source=record.source,
        split=record.split,
        pair_id=record.pair_id,
        width=meta.get("width"),
        height=meta.get("height"),
        format=meta.get("format"),
        mode=meta.get("mode"),
        n_bytes=size,
        error=error,
        dataset=dataset_name,
    )


def default_workers(device: torch.device | str | None = None) -> int:
    """DataLoader workers. On a CPU the forward pass needs a core: the CPU count minus one, at
    least 1, at most 8. On a GPU the CPU only decodes: every core, at most 16."""
    cpus = os.cpu_count() or 2
    if device is not None and torch.device(device).type == "cuda":
        return max(1, min(16, cpus))
    return max(1, min(8, cpus - 1))


# -- the GPU path ------------------------------------------------------------------------------

GPU_DECODE_MIN_BATCH = 4  # fewer JPEGs per batch than this: nvjpeg's set-up cost is not repaid
_JPEG_MAGIC = b"\xff\xd8\xff"


def gpu_decode_wanted(device: torch.device, perturb: Perturb | None, batch_size: int) -> bool:
    """Whether JPEGs are decoded on the GPU (``torchvision.io.decode_jpeg(..., device=)``):
    only with a CUDA backbone, no perturbation (perturbations act on decoded PIL images) and
    batches big enough to pay for the decoder's set-up."""
    if device.type != "cuda" or perturb is not None or batch_size < GPU_DECODE_MIN_BATCH:
        return False
    from torchvision import io

    return hasattr(io, "decode_jpeg")


def is_plain_jpeg(data: bytes, max_pixels: int | None) -> tuple[int, int] | None:
    """(width, height) when ``data`` is a JPEG the GPU path can take as is: a plain 3-channel
    baseline/progressive JPEG within the pixel limit, without an EXIF rotation; None
    otherwise (CMYK, greyscale, rotated, huge or broken files go through the CPU decoder,
    which handles them all)."""
    if not data.startswith(_JPEG_MAGIC):
        return None
    import io as _io

    try:
        with Image.open(_io.BytesIO(data)) as im:
            if im.format != "JPEG" or im.mode != "RGB":
                return None
            if im.getexif().get(0x0112, 1) not in (1, None):
                return None
            w, h = im.size
    except Exception:
        return None
    if max_pixels is not None and w * h > max_pixels:
        return None
    return w, h


def decode_jpegs(datas: Sequence[bytes], device: torch.device | str) -> list[torch.Tensor | None]:
    """Decode JPEG bytes to uint8 (3, H, W) tensors on ``device`` in one batched call; when the
    batch fails, file by file, and a file that still fails is None (the caller decodes it on
    the CPU). Works on the CPU too, which is how the tests cover it."""
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    if not tensors:
        return []
    try:
        out = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
        return list(out)
    except Exception:
        pass
    result: list[torch.Tensor | None] = []
    for t in tensors:
        try:
            result.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
        except Exception:
            result.append(None)
    return result


def preprocess_tensor(image: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """The backbone's preprocessing on a uint8 (3, H, W) tensor, where it lies (GPU): bilinear
    resize of the shorter side with antialiasing, centre crop, scale to [0, 1], normalise."""
    from torchvision.transforms.v2 import functional as F

    image = F.resize(image, [size], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    image = F.center_crop(image, [size, size])
    x = image.float().div_(255)
    m = torch.tensor(mean, device=x.device).view(3, 1, 1)
    sd = torch.tensor(std, device=x.device).view(3, 1, 1)
    return (x - m) / sd


def embed_dataset(
    dataset: Dataset,
    workspace: Workspace,
    backbone: Backbone,
    *,
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    perturb: Perturb | None = None,
    perturbation: str | None = None,
) -> EmbedSummary:
    """Embed every record of ``dataset`` not yet in ``workspace`` for ``backbone``.

    Both taps are stored. Files that cannot be read or decoded are listed in the summary's
    ``errors`` (and recorded in the workspace); the rest of the batch goes on. ``should_stop``
    lets a caller (the dashboard) cancel between batches; finished batches are kept.

    With ``perturb`` (and its name ``perturbation``), the image is perturbed after decoding
    and the embeddings are stored under the taps ``pooled@NAME`` and ``projected@NAME``, so a
    robustness sweep is computed once.
    """
    taps = {tap: tap if perturbation is None else f"{tap}@{perturbation}" for tap in TAPS}
    start = time.perf_counter()
    workers = default_workers(backbone.device) if workers is None else workers
    gpu_decode = gpu_decode_wanted(backbone.device, perturb, batch_size) and _bilinear(backbone)
    summary = EmbedSummary(backbone=backbone.id, images=len(dataset.records))
    decision = getattr(backbone, "precision_decision", None)
    summary.precision = (
        decision.as_dict() if decision is not None else {"precision": backbone.precision}
    )
    summary.errors.extend(dataset.errors)
    summary.failed += len(dataset.errors)
    summary.images += len(dataset.errors)

    hashed = hash_records(dataset.records)
    done = {tap: workspace.embedded_hashes(backbone.id, taps[tap]) for tap in TAPS}
    have = done["pooled"] & done["projected"]
    pending: dict[str, tuple[Record, int]] = {}
    known_rows: list[ImageRow] = []
    for record, digest, size, error in hashed:
        if error is not None:
            summary.failed += 1
            summary.errors.append({"path": str(record.path), "reason": error})
            continue
        if digest in have or digest in pending:
            summary.cached += 1
            known_rows.append(_row(record, digest, size, {}, None, dataset.name))
            continue
        pending[digest] = (record, size)
    # Remember paths and labels of already-embedded contents (keeps their stored metadata).
    if perturbation is None:  # a perturbed run leaves the images' own rows alone
        for start_i in range(0, len(known_rows), 1000):
            workspace.add_images(known_rows[start_i : start_i + 1000])

    total = len(pending)
    if progress:
        progress(0, total)
    if total:
        items = [(rec, digest) for digest, (rec, _) in pending.items()]
        data = DecodeDataset(
            items,
            backbone.preprocess,
            backbone.image_size,
            max_pixels,
            perturb,
            draft=getattr(backbone, "draft_decode", False),
            jpeg_bytes=gpu_decode,
        )
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_collate,
            prefetch_factor=2 if workers > 0 else None,
            persistent_workers=False,
        )
        finished = 0
        for batch in loader:
            if gpu_decode:
                _decode_on_device(batch, backbone, max_pixels)
            rows, good, tensors = [], [], []
            for sample in batch:
                record, digest = items[sample["index"]]
                size = pending[digest][1]
                rows.append(
                    _row(record, digest, size, sample["meta"], sample["error"], dataset.name)
                )
                if sample["error"] is not None:
                    summary.failed += 1
                    summary.errors.append({"path": str(record.path), "reason": sample["error"]})
                else:
                    good.append(digest)
                    tensors.append(sample["pixels"])
            feats = backbone.encode_images(_stack_for(backbone, tensors)) if tensors else None
            with workspace.transaction():
                if perturbation is None:
                    workspace.add_images(rows)
                if feats is not None:
                    for tap in TAPS:
                        workspace.put_embeddings(backbone.id, taps[tap], good, feats[tap].numpy())
            summary.embedded += len(good)
            finished += len(batch)
            if progress:
                progress(finished, total)
            if should_stop is not None and should_stop():
                break
    summary.seconds = time.perf_counter() - start
    return summary


def as_stored(vector: np.ndarray) -> np.ndarray:
    """``vector`` rounded to the workspace's storage precision (float16), as float32."""
    return np.asarray(vector).astype(EMBEDDING_DTYPE).astype(np.float32)


def _bilinear(backbone: Backbone) -> bool:
    """Whether the backbone preprocesses with a bilinear resize (what the GPU path does)."""
    steps = getattr(backbone.preprocess, "transforms", [])
    modes = [getattr(t, "interpolation", None) for t in steps]
    return any(getattr(m, "value", None) == "bilinear" for m in modes)


def _decode_on_device(batch: list[dict], backbone: Backbone, max_pixels: int) -> None:
    """Decode the batch's plain JPEGs on the backbone's device and preprocess them there; a file
    the device decoder refuses is decoded on the CPU instead (its own error if that fails too).
    """
    todo = [s for s in batch if s.get("jpeg") is not None]
    if not todo:
        return
    decoded = decode_jpegs([s["jpeg"] for s in todo], backbone.device)
    for sample, image in zip(todo, decoded, strict=True):
        data, sample["jpeg"] = sample["jpeg"], None
        try:
            if image is not None:
                sample["pixels"] = preprocess_tensor(
                    image, backbone.image_size, CLIP_MEAN, CLIP_STD
                )
                continue
            fallback = decode_image(
                data, max_pixels=max_pixels, min_side=getattr(backbone, "decode_min_side", None)
            )
            sample["pixels"] = backbone.preprocess(fallback.image)
        except ImageDecodeError as exc:
            sample["error"] = exc.reason
        except Exception as exc:
            sample["error"] = f"cannot preprocess image ({type(exc).__name__}: {exc})"


def _stack_for(backbone: Backbone, tensors: list[torch.Tensor]) -> torch.Tensor:
    """One batch on the backbone's device: CPU tensors go through pinned memory with a
    non-blocking copy on CUDA; tensors already there (GPU-decoded) stay."""
    if backbone.device.type != "cuda":
        return torch.stack(tensors)
    on_cpu = [t for t in tensors if t.device.type == "cpu"]
    moved = (
        iter(torch.stack(on_cpu).pin_memory().to(backbone.device, non_blocking=True))
        if on_cpu
        else iter(())
    )
    return torch.stack([next(moved) if t.device.type == "cpu" else t for t in tensors])


@dataclass
class ImageEmbedding:
    """One image's result from ``embed_bytes``: both taps, or the reason it failed."""

    name: str
    hash: str | None
    pooled: np.ndarray | None = None
    projected: np.ndarray | None = None
    cached: bool = False
    error: str | None = None
    meta: dict = field(default_factory=dict)


def embed_bytes(
    items: Sequence[tuple[str, bytes]],
    backbone: Backbone,
    workspace: Workspace | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    batch_size: int = 16,
) -> list[ImageEmbedding]:
    """Embed in-memory images (uploads, single files), reusing the workspace's embeddings.

    ``items`` are ``(display name, file bytes)``. Contents already embedded for this backbone
    come straight from the workspace; new ones are computed and, with a workspace, stored
    (unlabelled, under ``upload:NAME``) so the same bytes are instant next time.
    """
    results = [
        ImageEmbedding(name=name, hash=sha256_bytes(data) if data else None) for name, data in items
    ]
    cached: dict[str, dict[str, np.ndarray]] = {}
    if workspace is not None:
        hashes = [r.hash for r in results if r.hash]
        have = workspace.embedded_among(backbone.id, "pooled", hashes)
        have &= workspace.embedded_among(backbone.id, "projected", hashes)
        hit = sorted({h for h in hashes if h in have})
        if hit:
            _, pooled = workspace.load_embeddings(backbone.id, "pooled", hit)
            _, projected = workspace.load_embeddings(backbone.id, "projected", hit)
            cached = {
                h: {"pooled": pooled[i], "projected": projected[i]} for i, h in enumerate(hit)
            }
    todo: list[tuple[int, object]] = []
    for i, ((name, data), res) in enumerate(zip(items, results, strict=True)):
        if not data:
            res.error = "empty file"
            continue
        if res.hash in cached:
            res.pooled, res.projected = cached[res.hash]["pooled"], cached[res.hash]["projected"]
            res.cached = True
            continue
        try:
            decoded = decode_image(
                data,
                path=name,
                max_pixels=max_pixels,
                min_side=getattr(backbone, "decode_min_side", None),
            )
        except ImageDecodeError as exc:
            res.error = exc.reason
            continue
        res.meta = {
            "width": decoded.width,
            "height": decoded.height,
            "format": decoded.format,
            "mode": decoded.mode,
        }
        todo.append((i, decoded.image))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        feats = backbone.encode_images(torch.stack([backbone.preprocess(im) for _, im in chunk]))
        rows, first = [], {}
        for j, (i, _) in enumerate(chunk):
            res = results[i]
            # Rounded as the workspace stores them, so the same bytes give the same features
            # (and scores) whether just computed or read back later.
            res.pooled = as_stored(feats["pooled"][j].numpy())
            res.projected = as_stored(feats["projected"][j].numpy())
            if res.hash not in first:
                first[res.hash] = j
                rows.append(
                    ImageRow(
                        hash=res.hash,
                        path=f"upload:{res.name}",
                        n_bytes=len(items[i][1]),
                        **res.meta,
                    )
                )
        if workspace is not None and rows:
            hashes, idx = list(first), list(first.values())
            with workspace.transaction():
                workspace.add_images(rows)
                for tap in TAPS:
                    workspace.put_embeddings(backbone.id, tap, hashes, feats[tap][idx].numpy())
    return results
