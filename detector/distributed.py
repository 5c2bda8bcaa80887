"""The Ray engine: hash, decode and embed a dataset on a Ray cluster (``--engine ray``).

Ray Data runs the pipeline; nothing here schedules work by itself:

1. ``_prepare`` in Ray tasks (CPU): SHA-256 of every file (``detector.extract.hash_records``),
   contents already embedded are passed through as "cached", the rest are decoded and
   preprocessed by ``detector.extract.DecodeDataset``, the very function the local engine
   runs in its DataLoader workers. A bad file becomes an error row; the job goes on.
2. ``_Embedder`` in an actor pool (one GPU per actor with ``gpus_per_worker``): each actor
   loads the backbone once and runs ``Backbone.encode_images`` on its batches; the two taps
   leave the actor already rounded to float16, the dtype the workspace stores.
3. The driver (this process) collects the results in shards of ``shard_size`` rows, writes
   each shard as a Parquet file under ``WS/shards/`` (atomically: temporary name, then
   rename), ingests it into the workspace in ONE transaction and deletes it.

Resuming: a run killed at any point loses at most the shards in flight. Shards written but
not yet ingested are ingested first by the next run; the next run's tasks then find those
hashes in the workspace and skip them. Embeddings are keyed by (backbone, tap, hash), so
nothing is ever stored twice. Worker failures are left to Ray's own retry settings, kept at
their defaults: a decode task whose worker dies is retried (Ray's ``max_retries``, 3), a lost
embedding actor is restarted and its batches re-run (Ray Data sets ``max_restarts=-1`` and
``max_task_retries=-1`` for actor pools); see ``docs/scale.md``.

Ray is imported lazily: without it installed, ``require_ray`` raises a ``CueLensError``
that says how to install it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detector.backbone import load_backbone
from detector.datasets import Dataset, Record
from detector.errors import CueLensError
from detector.extract import DecodeDataset, EmbedSummary, Progress, hash_records
from detector.identity import BackboneSpec
from detector.images import DEFAULT_MAX_PIXELS
from detector.store import EMBEDDING_DTYPE, TAPS, ImageRow, Workspace
from detector.uris import location

INSTALL_HINT = "pip install -r requirements-scale.txt  (ray[data] and pyarrow)"
SHARD_DIR = "shards"
DEFAULT_SHARD_SIZE = 256  # rows per Parquet shard: the most a killed run can lose

# Columns of a shard (one row per image or image x perturbation).
SHARD_COLUMNS = (
    "hash",
    "path",
    "label",
    "generator",
    "source",
    "split",
    "pair_id",
    "dataset",
    "width",
    "height",
    "format",
    "mode",
    "n_bytes",
    "error",
    "cached",
    "perturbation",
    "backbone",
    "pooled",
    "projected",
)


@dataclass
class RaySummary(EmbedSummary):
    """``EmbedSummary`` plus new embeddings per perturbation name (``""``: unperturbed)."""

    by_perturbation: dict = field(default_factory=dict)
    decoded: int = 0  # rows decoded and embedded this run (a resumed run skips stored ones)

    def as_dict(self) -> dict:
        return {**super().as_dict(), "engine": "ray", "decoded": self.decoded}


class RayUnavailableError(CueLensError):
    """``--engine ray`` was asked for but Ray (Ray Data) is not installed."""


def require_ray():
    """Import and return ``ray`` (with Ray Data), or raise with the install command."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayUnavailableError(
            f"--engine ray needs Ray with Ray Data, which is not installed ({exc.name}); "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how to run: ``address`` ``None`` starts a local cluster in this process
    (``num_cpus``/``object_store_memory`` cap it), ``"auto"`` joins the cluster started with
    ``ray start``, ``ray://HOST:PORT`` a remote one. ``workers`` is the size of the actor pool
    (default: the cluster's GPUs / ``gpus_per_worker``, else 1); ``gpus_per_worker`` defaults to 1
    on a cluster with GPUs, else 0."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    shard_size: int = DEFAULT_SHARD_SIZE
    num_cpus: int | None = None
    object_store_memory: int | None = None


def connect(options: RayOptions):
    """Join (or start) the Ray cluster; an existing connection in this process is reused.

    Workers import ``detector`` from this checkout: a local cluster inherits the driver's
    environment; for a remote one the package folder is shipped as a ``py_modules`` entry.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    package = str(Path(__file__).resolve().parent)
    root = str(Path(package).parent)
    kwargs: dict = {"ignore_reinit_error": True, "log_to_driver": False}
    if options.address:
        kwargs["address"] = options.address
        if options.address.startswith("ray://"):
            kwargs["runtime_env"] = {"py_modules": [package]}
        else:
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": _pythonpath(root)}}
    else:
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": _pythonpath(root)}}
        if options.num_cpus is not None:
            kwargs["num_cpus"] = options.num_cpus
        if options.object_store_memory is not None:
            kwargs["object_store_memory"] = options.object_store_memory
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise CueLensError(f"cannot reach the Ray cluster at {options.address!r} ({exc})") from exc
    return ray


def _pythonpath(root: str) -> str:
    current = os.environ.get("PYTHONPATH")
    return root if not current else f"{root}{os.pathsep}{current}"


# -- the pipeline stages (run on the cluster) -----------------------------------------------


def _prepare(
    batch: dict,
    *,
    done: frozenset,
    preprocess,
    image_size: int,
    max_pixels: int,
    perturbations: dict,
) -> dict:
    """Hash, skip what is stored, decode and preprocess: one Ray task per block of rows."""
    n = len(batch["path"])
    records = [
        Record(
            path=location(batch["path"][i]),
            label=None if batch["label"][i] < 0 else int(batch["label"][i]),
            generator=batch["generator"][i] or None,
            split=batch["split"][i] or None,
            pair_id=batch["pair_id"][i] or None,
            source=batch["source"][i] or None,
        )
        for i in range(n)
    ]
    hashed = hash_records(records, workers=4)
    out = {
        "hash": [""] * n,
        "n_bytes": np.full(n, -1, dtype=np.int64),
        "error": [""] * n,
        "cached": np.zeros(n, dtype=bool),
        "width": np.full(n, -1, dtype=np.int64),
        "height": np.full(n, -1, dtype=np.int64),
        "format": [""] * n,
        "mode": [""] * n,
        "ok": np.zeros(n, dtype=bool),
    }
    pixels: list = [None] * n
    for i, (record, digest, size, error) in enumerate(hashed):
        out["hash"][i] = digest or ""
        out["n_bytes"][i] = -1 if size is None else size
        if error is not None:
            out["error"][i] = error
            continue
        name = batch["perturbation"][i]
        if f"{name}|{digest}" in done:
            out["cached"][i] = True
            continue
        perturb = perturbations.get(name) if name else None
        sample = DecodeDataset(
            [(record, digest)], preprocess, image_size, max_pixels, perturb
        ).__getitem__(0)
        if sample["error"] is not None:
            out["error"][i] = sample["error"]
            continue
        meta = sample["meta"]
        out["width"][i], out["height"][i] = meta["width"], meta["height"]
        out["format"][i], out["mode"][i] = meta["format"] or "", meta["mode"] or ""
        out["ok"][i] = True
        pixels[i] = sample["pixels"].numpy()
    shape = next((p.shape for p in pixels if p is not None), (3, image_size, image_size))
    blank = np.zeros(shape, dtype=np.float32)
    result = {k: v for k, v in batch.items()}
    result.update({k: np.asarray(v) if isinstance(v, list) else v for k, v in out.items()})
    result["pixels"] = np.stack([blank if p is None else p for p in pixels]).astype(np.float32)
    return result


class _Embedder:
    """An actor holding the backbone; embeds the rows that decoded, returns float16 taps."""

    def __init__(self, spec: BackboneSpec, backbone_id: str):
        self.backbone = load_backbone(spec.model, spec.pretrained, **spec.load_kwargs())
        if self.backbone.id != backbone_id:
            raise CueLensError(
                f"the worker built backbone {self.backbone.id!r}, the driver {backbone_id!r}"
            )

    def __call__(self, batch: dict) -> dict:
        import torch

        ok = np.asarray(batch["ok"], dtype=bool)
        n = len(ok)
        pooled = np.zeros((n, self.backbone.pooled_dim), dtype=EMBEDDING_DTYPE)
        projected = np.zeros((n, self.backbone.projected_dim), dtype=EMBEDDING_DTYPE)
        if ok.any():
            feats = self.backbone.encode_images(torch.from_numpy(batch["pixels"][ok]))
            pooled[ok] = feats["pooled"].numpy().astype(EMBEDDING_DTYPE)
            projected[ok] = feats["projected"].numpy().astype(EMBEDDING_DTYPE)
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["pooled"] = pooled
        out["projected"] = projected
        return out


# -- shards: written by the driver, ingested in one transaction each ------------------------


def shard_dir(workspace: Workspace) -> Path:
    return workspace.path / SHARD_DIR


def write_shard(workspace: Workspace, batch: dict, backbone_id: str) -> Path:
    """Write one shard atomically (``.tmp`` then rename); returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = shard_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    n = len(batch["hash"])

    def text(key):
        return pa.array([str(v) if v not in (None, "") else None for v in batch[key]], pa.string())

    def ints(key):
        values = np.asarray(batch[key], dtype=np.int64)
        return pa.array(values, mask=values < 0)

    def vectors(key):
        matrix = np.ascontiguousarray(batch[key], dtype=EMBEDDING_DTYPE)
        ok = np.asarray(batch["ok"], dtype=bool)
        width = matrix.shape[1] * EMBEDDING_DTYPE.itemsize
        return pa.array(
            [matrix[i].tobytes() if ok[i] else None for i in range(n)], pa.binary(width)
        )

    table = pa.table(
        {
            "hash": text("hash"),
            "path": text("path"),
            "label": ints("label"),
            "generator": text("generator"),
            "source": text("source"),
            "split": text("split"),
            "pair_id": text("pair_id"),
            "dataset": text("dataset"),
            "width": ints("width"),
            "height": ints("height"),
            "format": text("format"),
            "mode": text("mode"),
            "n_bytes": ints("n_bytes"),
            "error": text("error"),
            "cached": pa.array(np.asarray(batch["cached"], dtype=bool)),
            "perturbation": text("perturbation"),
            "backbone": pa.array([backbone_id] * n, pa.string()),
            "pooled": vectors("pooled"),
            "projected": vectors("projected"),
        }
    )
    final = folder / f"shard-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
    tmp = final.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def ingest_shard(workspace: Workspace, path: Path) -> dict:
    """Ingest one shard in one transaction, then delete it; returns its counts and errors.

    Image rows are written for unperturbed rows only (as the local engine does); each
    decoded row adds both taps (``TAP`` or ``TAP@PERTURBATION``) unless already stored.
    """
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    counts: dict = {
        "embedded": 0,
        "cached": 0,
        "failed": 0,
        "decoded": 0,
        "errors": [],
        "by_perturbation": {},
    }
    images: list[ImageRow] = []
    vectors: dict[tuple[str, str], tuple[list[str], list[bytes]]] = {}
    for r in rows:
        if r["error"] is not None and not r["hash"]:
            counts["failed"] += 1
            counts["errors"].append(_error(r))
            continue
        if r["perturbation"] is None:
            images.append(
                ImageRow(
                    hash=r["hash"],
                    path=r["path"],
                    label=r["label"],
                    generator=r["generator"],
                    source=r["source"],
                    split=r["split"],
                    pair_id=r["pair_id"],
                    width=r["width"],
                    height=r["height"],
                    format=r["format"],
                    mode=r["mode"],
                    n_bytes=r["n_bytes"],
                    error=r["error"],
                    dataset=r["dataset"],
                )
            )
        if r["cached"]:
            counts["cached"] += 1
            continue
        if r["error"] is not None:
            counts["failed"] += 1
            counts["errors"].append(_error(r))
            continue
        counts["decoded"] += 1
        for tap in TAPS:
            name = tap if r["perturbation"] is None else f"{tap}@{r['perturbation']}"
            hashes, blobs = vectors.setdefault((r["backbone"], name), ([], []))
            hashes.append(r["hash"])
            blobs.append(r[tap])
    with workspace.transaction():
        if images:
            workspace.add_images(images)
        inserted = {}
        for (backbone_id, tap), (hashes, blobs) in vectors.items():
            matrix = np.frombuffer(b"".join(blobs), dtype=EMBEDDING_DTYPE).reshape(len(hashes), -1)
            inserted[tap] = workspace.put_embeddings(backbone_id, tap, hashes, matrix)
    # a content met twice in one run (two paths) is inserted once: the second counts as cached
    for (_, tap), (hashes, _) in vectors.items():
        if tap.split("@")[0] == "pooled":
            name = tap.partition("@")[2]
            new = inserted[tap]
            counts["embedded"] += new
            counts["cached"] += len(hashes) - new
            counts["by_perturbation"][name] = counts["by_perturbation"].get(name, 0) + new
    path.unlink(missing_ok=True)
    return counts


def _error(row: dict) -> dict:
    out = {"path": row["path"], "reason": row["error"]}
    if row["perturbation"] is not None:
        out["perturbation"] = row["perturbation"]
    return out


def ingest_pending_shards(workspace: Workspace) -> int:
    """Ingest shards a killed run left behind (written, not ingested); returns how many."""
    folder = shard_dir(workspace)
    if not folder.is_dir():
        return 0
    for stale in folder.glob("*.parquet.tmp"):  # a write cut short: its rows are redone
        stale.unlink(missing_ok=True)
    shards = sorted(folder.glob("*.parquet"))
    for shard in shards:
        ingest_shard(workspace, shard)
    return len(shards)


# -- the driver -----------------------------------------------------------------------------


def _rows(tasks: Sequence[tuple[Record, object | None]], dataset_name: str | None) -> list[dict]:
    return [
        {
            "path": str(record.path),
            "label": -1 if record.label is None else int(record.label),
            "generator": record.generator or "",
            "split": record.split or "",
            "pair_id": record.pair_id or "",
            "source": record.source or "",
            "dataset": dataset_name or "",
            "perturbation": "" if p is None else str(p),
        }
        for record, p in tasks
    ]


def run_tasks(
    tasks: Sequence[tuple[Record, object | None]],
    workspace: Workspace,
    backbone,
    spec: BackboneSpec,
    options: RayOptions,
    *,
    dataset_name: str | None = None,
    batch_size: int = 32,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RaySummary:
    """Embed ``(record, perturbation or None)`` pairs on Ray into ``workspace``.

    ``backbone`` is the driver's copy (its id and preprocessing travel to the tasks),
    ``spec`` rebuilds it in each actor. Returns the same summary as the local engine.
    """
    start = time.perf_counter()
    summary = RaySummary(backbone=backbone.id, images=len(tasks))
    ingest_pending_shards(workspace)
    if progress:
        progress(0, len(tasks))
    if not tasks:
        summary.seconds = time.perf_counter() - start
        return summary
    ray = connect(options)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller's progress callback reports instead

    perturbations = {str(p): p for _, p in tasks if p is not None}
    done: set[str] = set()
    for name in ["", *perturbations]:
        have = None
        for tap in TAPS:
            tap_name = tap if not name else f"{tap}@{name}"
            hashes = workspace.embedded_hashes(backbone.id, tap_name)
            have = hashes if have is None else have & hashes
        done.update(f"{name}|{h}" for h in have)

    gpus = ray.cluster_resources().get("GPU", 0)
    gpus_per_worker = options.gpus_per_worker
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    workers = options.workers
    if workers is None:
        workers = max(1, int(gpus // gpus_per_worker)) if gpus_per_worker else 1
    # Blocks of about one forward batch keep the decode tasks small and the pipeline full.
    n_blocks = max(1, min(len(tasks), -(-len(tasks) // max(1, batch_size))))
    ds = ray.data.from_items(_rows(tasks, dataset_name), override_num_blocks=n_blocks)
    ds = ds.map_batches(
        _prepare,
        batch_size=batch_size,
        batch_format="numpy",
        fn_kwargs={
            "done": frozenset(done),
            "preprocess": backbone.preprocess,
            "image_size": backbone.image_size,
            "max_pixels": max_pixels,
            "perturbations": perturbations,
        },
        num_cpus=1,
        # Ray's own default for tasks, stated so that Ray Data keeps decoding in CPU tasks
        # instead of fusing it into the (GPU) actors, whose remote arguments differ.
        max_retries=3,
    )
    embed_kwargs: dict = {"num_cpus": options.cpus_per_worker}
    if gpus_per_worker:
        embed_kwargs["num_gpus"] = gpus_per_worker
    ds = ds.map_batches(
        _Embedder,
        fn_constructor_kwargs={"spec": spec, "backbone_id": backbone.id},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        **embed_kwargs,
    )
    finished = 0
    batches = iter(ds.iter_batches(batch_size=options.shard_size, batch_format="numpy"))
    while True:
        try:
            batch = next(batches, None)
        except ray.exceptions.RayError as exc:  # e.g. an actor cannot load the backbone
            raise CueLensError(
                f"the Ray job stopped after {summary.embedded} new embeddings (kept in the "
                f"workspace; rerun to resume): {str(exc).strip().splitlines()[-1]}"
            ) from exc
        if batch is None:
            break
        shard = write_shard(workspace, batch, backbone.id)
        counts = ingest_shard(workspace, shard)
        summary.embedded += counts["embedded"]
        summary.cached += counts["cached"]
        summary.failed += counts["failed"]
        summary.decoded += counts["decoded"]
        summary.errors.extend(counts["errors"])
        for name, new in counts["by_perturbation"].items():
            summary.by_perturbation[name] = summary.by_perturbation.get(name, 0) + new
        finished += len(batch["hash"])
        if progress:
            progress(finished, len(tasks))
        if should_stop is not None and should_stop():
            break
    summary.seconds = time.perf_counter() - start
    return summary


def embed_dataset_ray(
    dataset: Dataset,
    workspace: Workspace,
    backbone,
    spec: BackboneSpec,
    options: RayOptions | None = None,
    **kwargs,
) -> EmbedSummary:
    """``detector.extract.embed_dataset`` on a Ray cluster: same rows, same embeddings."""
    start = time.perf_counter()
    summary = run_tasks(
        [(r, None) for r in dataset.records],
        workspace,
        backbone,
        spec,
        options or RayOptions(),
        dataset_name=dataset.name,
        **kwargs,
    )
    summary.errors[:0] = dataset.errors
    summary.failed += len(dataset.errors)
    summary.images += len(dataset.errors)
    summary.seconds = time.perf_counter() - start
    return summary


def ray_engine(spec: BackboneSpec, options: RayOptions | None = None) -> Callable:
    """The ``engine`` of ``detector.perturb.robustness_sweep``: every missing image x
    perturbation pair in one Ray job; the sweep scores them locally afterwards."""

    def engine(pairs, workspace, backbone, **kwargs) -> RaySummary:
        return run_tasks(pairs, workspace, backbone, spec, options or RayOptions(), **kwargs)

    return engine
