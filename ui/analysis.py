"""Adapters behind the pages: library calls plus caching.

Every number comes from the library: an upload's analysis (embedding, score, verdict,
provenance, nearest neighbours) from ``detector.analysis.analyse_bytes``, probabilities from
``detector.inference``, attributions, directions and concept reports from ``concepts``, and
stored results (transfer matrices, robustness sweeps, the bias audit) from
``detector.results``, where the CLI keeps them too. What this module adds is the caching that
keeps pages fast (models and workspace-wide arrays in memory, keyed by ids and the workspace
generation; documents kept in the workspace keyed by its version, see ``ui.resources``) and
the thumbnails the tables show.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from concepts.attribution import (
    attribute,
    directions_fingerprint,
    head_fingerprint,
    is_concept_model,
    workspace_surrogate,
)
from concepts.directions import cached_directions, concept_directions
from concepts.report import concept_report as library_concept_report
from concepts.vocabulary import load_vocabulary
from detector import analysis as flow  # analyse_bytes: the one flow, called by attribute
from detector import results as stored_results
from detector.analysis import NEIGHBOURS as NEIGHBOURS  # the Detect page lays out this many
from detector.analysis import ImageAnalysis, NeighbourIndex
from detector.groups import pairing_groups
from detector.heads import head_card
from detector.images import ImageDecodeError, decode_image
from detector.inference import head_threshold, in_sample_counts, score_embeddings
from detector.metrics import per_generator_ap
from detector.perturb import stored_robustness
from detector.provenance import declaration_columns, provenance_summary
from detector.results import StoredAudit
from ui import resources
from ui.adapters import group_of, head_key
from ui.charts import concept_label

THUMB_SIDE = 320


# -- thumbnails -------------------------------------------------------------------------------


def thumbnail_bytes(data: bytes, side: int = THUMB_SIDE) -> bytes | None:
    """A JPEG thumbnail (longest side ``side``) of image bytes, or None if they do not decode."""
    try:
        image = decode_image(data, min_side=side).image
    except ImageDecodeError:
        return None
    image = image.copy()
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def data_url(jpeg: bytes | None) -> str | None:
    """A ``data:`` URL for a JPEG (for image columns of tables)."""
    return None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


@st.cache_data(show_spinner=False, max_entries=2000)
def _file_thumbnail(path: str, size: int, mtime_ns: int, side: int) -> bytes | None:
    try:
        return thumbnail_bytes(Path(path).read_bytes(), side)
    except OSError:
        return None


def file_thumbnail(path: str, side: int = 200) -> bytes | None:
    """Thumbnail of a workspace image file (cached per file version); None if unreadable."""
    if not path or path.startswith("upload:"):
        return None
    try:
        st_ = os.stat(path)
    except OSError:
        return None
    return _file_thumbnail(path, st_.st_size, st_.st_mtime_ns, side)


# -- workspace-wide caches --------------------------------------------------------------------


@dataclass
class ScoredSet:
    """Labelled workspace images with the head's logits and probabilities (read-only)."""

    meta: pd.DataFrame  # hash, path, label, generator, source, split, pair_id, group, ...
    logit: np.ndarray
    probability: np.ndarray


@st.cache_resource(show_spinner=False, max_entries=6, ttl=resources.EXTERNAL_TTL)
def _scored(_ws, _head, path: str, backbone_id: str, hkey: str, gen: int) -> ScoredSet:
    data = resources.embedded(_ws, backbone_id, _head.tap)
    meta = data.meta.copy()
    meta["group"] = group_of(meta)
    if len(meta) == 0:
        return ScoredSet(meta, np.zeros(0), np.zeros(0))
    logit, prob = score_embeddings(_head, data.x, backbone_id=backbone_id)
    return ScoredSet(meta, logit, prob)


def scored(ws, head, backbone_id: str) -> ScoredSet:
    """Every labelled image of the workspace scored by ``head`` (cached per generation)."""
    return _scored(
        ws, head, str(ws.path), backbone_id, head_key(head), resources.generation(ws.path)
    )


@st.cache_resource(show_spinner=False, max_entries=4, ttl=resources.EXTERNAL_TTL)
def _neighbour_index(_ws, path: str, backbone_id: str, tap: str, gen: int) -> NeighbourIndex:
    data = resources.embedded(_ws, backbone_id, tap)
    meta = data.meta.copy()
    meta["group"] = group_of(meta)
    return NeighbourIndex.build(meta, data.x)


def neighbour_index(ws, backbone_id: str, tap: str) -> NeighbourIndex:
    """Labelled images' unit embeddings for cosine nearest neighbours
    (``detector.analysis.NeighbourIndex``, cached per workspace generation)."""
    return _neighbour_index(ws, str(ws.path), backbone_id, tap, resources.generation(ws.path))


# -- concepts ----------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def vocabulary(name: str = "photography"):
    """A concept vocabulary by registry name (``concepts.vocabulary``)."""
    return load_vocabulary(name)


@st.cache_resource(show_spinner=False, max_entries=8)
def _directions(_ws, _encoder, _vocab, backbone_id: str, vocab_hash: str, path: str):
    found = cached_directions(_ws, backbone_id, _vocab)
    if found is not None:
        return found
    return concept_directions(_vocab, _encoder(), backbone_id=backbone_id, workspace=_ws)


def directions(ctx, vocab) -> np.ndarray:
    """Concept directions (Q, dim) for the context's backbone: memory, else the workspace
    cache, else computed with the backbone's text tower (which loads it once)."""
    ws = ctx.workspace()
    return _directions(ws, ctx.backbone, vocab, ctx.backbone_id, vocab.hash, str(ws.path))


@st.cache_resource(show_spinner=False, max_entries=6, ttl=resources.EXTERNAL_TTL)
def _surrogate(_ws, _head, _dirs, _vocab, path, backbone_id, hkey, vocab_hash, gen):
    return workspace_surrogate(
        _ws, _head, backbone_id, _dirs, list(_vocab.ids), vocabulary_hash=vocab_hash
    )


def surrogate(ctx, head, vocab, dirs):
    """The head's lasso surrogate on concept scores (None for the concept model)."""
    if is_concept_model(head):
        return None
    ws = ctx.workspace()
    return _surrogate(
        ws,
        head,
        dirs,
        vocab,
        str(ws.path),
        ctx.backbone_id,
        head_key(head),
        vocab.hash,
        resources.generation(ws.path),
    )


def refit_surrogate(ctx, head):
    """Refit the head's concept surrogate on its reference set (on request only; the version
    goes up) and forget the cached one."""
    vocab = vocabulary()
    dirs = directions(ctx, vocab)
    ws = ctx.workspace()
    sur = workspace_surrogate(
        ws, head, ctx.backbone_id, dirs, list(vocab.ids), vocabulary_hash=vocab.hash, refit=True
    )
    _surrogate.clear()
    return sur


def attributions(ctx, head, projected: np.ndarray, pooled: np.ndarray, names=None):
    """Per-image ``concepts.attribution.Attribution`` for embedded images."""
    if is_concept_model(head):
        return attribute(head, projected=projected, names=names)
    vocab = vocabulary()
    dirs = directions(ctx, vocab)
    sur = surrogate(ctx, head, vocab, dirs)
    features = projected if head.tap == "projected" else pooled
    return attribute(head, projected=projected, features=features, surrogate=sur, names=names)


@st.cache_resource(show_spinner=False, max_entries=4, ttl=resources.EXTERNAL_TTL)
def _concept_report(_ws, _head, _encoder, _vocab, path, backbone_id, hkey, vocab_hash, gen):
    # the text tower is only needed (and the backbone only loaded) when directions are new
    needs_encoder = cached_directions(_ws, backbone_id, _vocab) is None
    return library_concept_report(
        _ws,
        backbone_id=backbone_id,
        vocabulary=_vocab,
        head=_head,
        encoder=_encoder() if needs_encoder else None,
    )


def concept_report(ctx, head):
    """``concepts.report.concept_report`` for the workspace and head (cached per generation)."""
    vocab = vocabulary()
    ws = ctx.workspace()
    hkey = head_key(head) if head is not None else "none"
    return _concept_report(
        ws,
        head,
        ctx.backbone,
        vocab,
        str(ws.path),
        ctx.backbone_id,
        hkey,
        vocab.hash,
        resources.generation(ws.path),
    )


@dataclass
class ConceptScores:
    meta: pd.DataFrame
    unit: np.ndarray  # projected embeddings, rows L2-normalised (for custom phrases)
    scores: np.ndarray  # (n, Q) for the given directions
    names: list[str]


@st.cache_resource(show_spinner=False, max_entries=4, ttl=resources.EXTERNAL_TTL)
def _concept_scores(_ws, _dirs, path, backbone_id, names_key, dirs_key, gen) -> ConceptScores:
    idx = _neighbour_index(_ws, path, backbone_id, "projected", gen)
    scores = idx.unit @ np.asarray(_dirs, dtype=np.float32).T
    return ConceptScores(idx.meta, idx.unit, scores, list(names_key))


def concept_scores(ctx, dirs: np.ndarray, names) -> ConceptScores:
    """Concept scores (cosines) of every labelled image for ``dirs`` (cached)."""
    ws = ctx.workspace()
    return _concept_scores(
        ws,
        dirs,
        str(ws.path),
        ctx.backbone_id,
        tuple(names),
        directions_fingerprint(dirs),
        resources.generation(ws.path),
    )


# -- one upload --------------------------------------------------------------------------------


@dataclass
class ImageResult(ImageAnalysis):
    """Everything the Detect page shows for one uploaded image: the library's analysis
    (``detector.analysis.ImageAnalysis``) and a thumbnail."""

    thumbnail: bytes | None = None


def analyse(ctx, items: list[tuple[str, bytes]], head) -> list[ImageResult]:
    """Embed, score, explain and describe uploaded images (``(name, bytes)`` pairs) through
    ``detector.analysis.analyse_bytes``, the flow ``python -m detector predict`` uses too.

    Embeddings of bytes the workspace has seen are reused; new ones are stored there,
    unlabelled. Attributions come from the cached surrogate (:func:`attributions`),
    neighbours from the cached index (:func:`neighbour_index`).
    """
    ws = ctx.workspace()
    backbone = ctx.backbone()
    found = flow.analyse_bytes(
        items,
        backbone,
        head,
        ws,  # new uploads change only ws.version()
        describe=True,
        attribute=lambda projected, pooled, _names: attributions(ctx, head, projected, pooled),
        neighbours=lambda tap: neighbour_index(ws, backbone.id, tap),
    )
    return [
        ImageResult(**vars(res), thumbnail=thumbnail_bytes(data) if data else None)
        for res, (_, data) in zip(found, items, strict=True)
    ]


def concept_poles(names) -> dict[str, tuple[str, str]]:
    """``{concept id: (positive pole, negative pole)}`` from the default vocabulary (ids it
    does not know are left out)."""
    try:
        vocab = vocabulary()
    except Exception:  # no vocabulary: bars keep their ids
        return {}
    poles = dict(zip(vocab.ids, zip(vocab.positive, vocab.negative, strict=True), strict=True))
    return {n: poles[n] for n in names if n in poles}


def leaning_pole(row, poles: dict) -> str:
    """The pole an image leans towards on one concept (its score above the reference: the
    positive pole), as text; the id when the poles are unknown."""
    pair = poles.get(row["concept"])
    if pair is None:
        return concept_label(row["concept"])
    return pair[0] if float(row["score"]) >= float(row.get("reference", 0.0) or 0.0) else pair[1]


def results_table(results: list[ImageResult]) -> pd.DataFrame:
    """One row per upload for the table and the CSV download: the verdict and its reason
    (failure or warning) up front; cells without a value are empty strings (the thumbnail
    too), sizes are integers.

    Besides the verdict and metadata, each row carries what the file declares about its
    origin (``detector.provenance.declaration_columns``) and ``file vs detector``
    (agree / disagree / n/a, from ``provenance_summary``).
    """
    rows = []
    poles = concept_poles(
        {c for r in results if r.attribution is not None for c in r.attribution.table["concept"]}
    )
    for r in results:
        md = r.metadata or {}
        top_syn = top_real = ""
        if r.attribution is not None:
            t = r.attribution.table
            pos = t[t["contribution"] > 0]
            neg = t[t["contribution"] < 0]
            top_syn = leaning_pole(pos.iloc[0], poles) if len(pos) else ""
            top_real = leaning_pole(neg.iloc[0], poles) if len(neg) else ""
        camera = " ".join(x for x in (md.get("camera_make"), md.get("camera_model")) if x)
        rows.append(
            {
                "thumbnail": data_url(r.thumbnail) or "",
                "file": r.name,
                "verdict": r.verdict or ("failed" if r.error else ""),
                "reason": r.error or r.warning or "",
                "p_synthetic": r.probability,
                "top concept → synthetic": top_syn,
                "top concept → real": top_real,
                "fidelity": None if r.attribution is None else r.attribution.fidelity,
                "camera": camera,
                "software": md.get("software") or "",
                "exif": md.get("exif_present"),
                "c2pa": md.get("c2pa_present"),
                **declaration_columns(r.provenance),
                "file vs detector": (
                    provenance_summary(r.provenance, r.verdict)["agreement"]
                    if r.provenance is not None
                    else ""
                ),
                "format": md.get("format") or "",
                "width": md.get("width"),
                "height": md.get("height"),
                "kB": round(r.n_bytes / 1024, 1),
                "seen before": r.cached,
                "sha256": r.hash or "",
            }
        )
    table = pd.DataFrame(rows)
    text = ("declared_by", "declared_generator", "c2pa_state", "c2pa_signer", "c2pa_source_type")
    for col in text:  # blank, not "None"
        if col in table:
            table[col] = table[col].astype(object).where(table[col].notna(), "")
    for col in ("width", "height"):
        if col in table:
            table[col] = pd.array(table[col], dtype="Int64")
    return table


def export_context(ctx, head) -> dict:
    """What a downloaded table needs to be read later: backbone, detector, threshold, demo."""
    option = getattr(ctx, "head_option", None)
    card = getattr(head, "card_", None) or {}
    return {
        "backbone": ctx.backbone_id,
        "head": (option.name if option else card.get("name")) if head is not None else "",
        "head_type": getattr(head, "head_type", "") if head is not None else "",
        "head_fingerprint": head_fingerprint(head) if head is not None else "",
        "threshold": round(head_threshold(head), 6) if head is not None else None,
        "demo": bool(ctx.demo or card.get("demo")),
    }


def with_context(table: pd.DataFrame, context: dict) -> pd.DataFrame:
    """``table`` with one column per ``context`` entry (same value on every row), appended."""
    out = table.copy()
    for key, value in context.items():
        out[key] = [value] * len(out)
    return out


# -- generators --------------------------------------------------------------------------------


def split_subset(scored_set: ScoredSet, split: str | None) -> ScoredSet:
    """The scored images of one split (all when ``split`` is None)."""
    if split is None:
        return scored_set
    mask = (scored_set.meta["split"] == split).to_numpy()
    return ScoredSet(
        scored_set.meta[mask].reset_index(drop=True),
        scored_set.logit[mask],
        scored_set.probability[mask],
    )


@st.cache_data(show_spinner=False, max_entries=32, ttl=resources.EXTERNAL_TTL)
def _ap_table(_subset, path, hkey, split, pairing, n_boot, gen) -> pd.DataFrame:
    meta = _subset.meta
    return per_generator_ap(
        meta["label"].astype(int).to_numpy(),
        _subset.logit,
        meta["generator"].to_numpy(dtype=object),
        pairing=pairing,
        group=pairing_groups(meta).to_numpy(),
        n_boot=n_boot,
        pairs=meta["pair_id"].to_numpy(dtype=object) if "pair_id" in meta else None,
    )


def in_sample(head, ws, subset: ScoredSet) -> dict:
    """``detector.inference.in_sample_counts`` for the shown images (empty: out of sample)."""
    return in_sample_counts(head_card(head), ws, subset.meta)


def ap_table(ws, head, subset: ScoredSet, split, pairing: str, n_boot: int = 1000):
    """``detector.metrics.per_generator_ap`` of a split (cached per generation)."""
    return _ap_table(
        subset,
        str(ws.path),
        head_key(head),
        split,
        pairing,
        n_boot,
        resources.generation(ws.path),
    )


def stored_transfer(ws, backbone_id: str, head_type: str, pairing: str) -> dict | None:
    """The transfer matrix kept in the workspace for this backbone, head type and pairing
    (computed here or by ``python -m detector matrix``; ``detector.results``)."""
    return stored_results.stored_transfer(ws, backbone_id, head_type, pairing)


# -- robustness and the bias audit -------------------------------------------------------------


def sweep_head_name(head) -> str:
    """The name a robustness sweep records for ``head`` (``RobustnessReport.head``): the name
    in its model card, else its head type."""
    card = getattr(head, "card_", None) or {}
    return str(card.get("name") or getattr(head, "head_type", "head"))


@st.cache_data(show_spinner=False, max_entries=16)
def _stored_sweeps(_ws, path: str, head_name: str, backbone_id: str, version: int) -> list:
    return [r for r in stored_robustness(_ws, head=head_name) if r.backbone == backbone_id]


def stored_sweeps(ws, head, backbone_id: str) -> list:
    """The robustness sweeps kept in the workspace for this head and backbone (one per split
    and pairing), re-read after any write (a sweep from the command line shows at once)."""
    return _stored_sweeps(
        ws, str(ws.path), sweep_head_name(head), backbone_id, resources.version(ws)
    )


@st.cache_resource(show_spinner=False, max_entries=4)
def _stored_audit(_ws, path: str, version: int) -> StoredAudit | None:
    return stored_results.stored_audit(_ws)


@st.cache_data(show_spinner=False, max_entries=8)
def _audit_fingerprint(_images, path: str, version: int) -> str:
    return stored_results.audit_fingerprint(_images)


def audit_fingerprint(ws, images: pd.DataFrame) -> str:
    """``detector.results.audit_fingerprint`` of the workspace's images table, once per
    version."""
    return _audit_fingerprint(images, str(ws.path), resources.version(ws))


def stored_audit(ws) -> StoredAudit | None:
    """The last audit of the workspace (computed by the Data page or by ``python -m detector
    audit WS``; ``detector.results``), read once per version."""
    return _stored_audit(ws, str(ws.path), resources.version(ws))
