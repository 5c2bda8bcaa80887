"""Dataset bias audit: properties that alone tell real from synthetic images.

A detector trained on a dataset whose real photos are large camera JPEGs and whose synthetic
images are 512 px PNGs can reach a high AP by learning "PNG" or "small" instead of any trace
of generation. The audit reads, for every labelled image, facts that are not the picture's
content (from headers only, through ``detector.images.image_metadata``):

- ``format`` (JPEG, PNG, WEBP ...), ``mode`` (the stored colour mode), ``exif_present``;
- ``jpeg_quality`` (estimated from the quantisation tables; JPEG files only);
- ``width``, ``height`` (upright), ``aspect_ratio`` (width / height), ``file_size`` (bytes);
- ``declared_ai``: whether the file's own metadata declares it AI-generated (Content
  Credentials, XMP ``DigitalSourceType``, PNG generation settings, EXIF Software naming a
  generator; see ``detector.provenance``), with ``declared_by`` naming the sources. A
  detector must not be evaluated on images whose metadata gives the answer away: any
  declaration seen in one class only is flagged;

and tests each property alone as a classifier of real vs synthetic, in three scopes: all
images; each generator's images against all real ones; and, inside each source (``source``
column: the repository or pair group a file came from), its real against its synthetic
images, where dataset builders most often mix two pipelines.

Separation is the ROC AUC of the best rule on that property alone: the value itself for
numeric properties (taken in whichever direction separates, so AUC is 0.5..1); the
in-sample synthetic share of the category for categorical ones. A property is flagged when
its AUC is at least ``threshold`` (0.8), or when a file format occurs in one class only,
with a plain-language warning saying what a detector could learn instead and what to do.
Scopes with fewer than ``min_per_class`` images of either class are not tested (with one
real and one synthetic image every differing property would "separate" them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from detector.datasets import Dataset, Record, load_dataset, records_from_images
from detector.images import ImageDecodeError, image_metadata
from detector.provenance import declaration_columns, safe_read_provenance
from detector.store import DB_NAME, Workspace

__all__ = [
    "CATEGORICAL_PROPERTIES",
    "DEFAULT_MIN_PER_CLASS",
    "DEFAULT_THRESHOLD",
    "NUMERIC_PROPERTIES",
    "AuditReport",
    "audit",
    "audit_figure",
    "audit_table",
    "display_table",
    "image_properties",
    "is_workspace_dir",
    "property_separation",
    "property_text",
    "scope_label",
    "scope_text",
    "separation_sentence",
    "summarise_groups",
    "value_text",
]

DEFAULT_THRESHOLD = 0.8
DEFAULT_MIN_PER_CLASS = 3
NUMERIC_PROPERTIES = ("jpeg_quality", "width", "height", "aspect_ratio", "file_size")
CATEGORICAL_PROPERTIES = ("format", "mode", "exif_present", "declared_ai")
PROPERTIES = ("format", *NUMERIC_PROPERTIES, "exif_present", "mode", "declared_ai")
_ONE_CLASS_CHECKED = ("format", "declared_ai")  # categories seen in one class only are flagged

# What a detector would learn from each property, and what to do about it.
_PLAIN = {
    "format": (
        "the file format",
        "convert both classes to the same format (or re-encode both identically) before training",
    ),
    "jpeg_quality": (
        "the JPEG compression level",
        "re-compress both classes at the same quality, or sample images with matching quality",
    ),
    "width": (
        "the image width",
        "resize or crop both classes to the same sizes, or sample images of matching sizes",
    ),
    "height": (
        "the image height",
        "resize or crop both classes to the same sizes, or sample images of matching sizes",
    ),
    "aspect_ratio": (
        "the aspect ratio",
        "centre-crop both classes to the same aspect ratio, or balance the ratios",
    ),
    "file_size": (
        "the file size",
        "match sizes and compression of both classes (file size follows both)",
    ),
    "exif_present": (
        "whether camera metadata (EXIF) is present",
        "strip metadata from both classes; different metadata usually means different "
        "processing pipelines, which leave traces in the pixels too",
    ),
    "mode": (
        "the colour mode",
        "convert both classes to the same colour mode (8-bit RGB) before saving",
    ),
    "declared_ai": (
        "metadata declaring the image AI-generated (Content Credentials, XMP, PNG "
        "generation settings or EXIF Software)",
        "strip generation metadata from every image (or evaluate on stripped copies): the "
        "detector must be judged on pixels, not on what the file says",
    ),
}


@dataclass
class AuditReport:
    """The audit of one dataset or workspace.

    - ``images``: one row per audited image: path, label (0/1), class, generator, source,
      split and the properties;
    - ``summary``: one row per class and generator (see :func:`summarise_groups`);
    - ``separations``: one row per (scope, group, property) tested: auc, direction, medians,
      counts, ``one_class_only`` categories and ``flagged``;
    - ``warnings``: the flagged rows as dicts with a plain-language ``message``;
    - ``errors``: files that could not be read (``{"path", "reason"}``).
    """

    source: str
    images: pd.DataFrame
    summary: pd.DataFrame
    separations: pd.DataFrame
    warnings: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD
    min_per_class: int = DEFAULT_MIN_PER_CLASS

    @property
    def flagged(self) -> bool:
        return bool(self.warnings)

    def as_dict(self) -> dict:
        """JSON-ready summary (the CLI's ``--json`` output)."""
        counts = self.images["class"].value_counts() if len(self.images) else pd.Series()
        return {
            "source": self.source,
            "images": len(self.images),
            "real": int(counts.get("real", 0)),
            "synthetic": int(counts.get("synthetic", 0)),
            "threshold": self.threshold,
            "min_per_class": self.min_per_class,
            "flagged": len(self.warnings),
            "warnings": self.warnings,
            "summary": _records(self.summary),
            "separations": _records(self.separations),
            "errors": self.errors,
        }

    @classmethod
    def from_dict(cls, doc: dict, images: list[dict] | None = None) -> AuditReport:
        """Inverse of :meth:`as_dict`, with the per-image table given as ``images`` records
        (``as_dict`` keeps only their count); used for audits kept in the workspace."""
        frame = pd.DataFrame(
            images or [],
            columns=[
                "path", "label", "class", "generator", "source", "split", *PROPERTIES,
                "declared_by",
            ],
        )  # fmt: skip
        for name in NUMERIC_PROPERTIES:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
        frame["label"] = frame["label"].astype(int)
        separations = pd.DataFrame(doc.get("separations") or [], columns=SEPARATION_COLUMNS)
        separations["flagged"] = separations["flagged"].astype(bool)
        return cls(
            source=doc["source"],
            images=frame,
            summary=pd.DataFrame(doc.get("summary") or []),
            separations=separations,
            warnings=list(doc.get("warnings") or []),
            errors=list(doc.get("errors") or []),
            threshold=float(doc.get("threshold", DEFAULT_THRESHOLD)),
            min_per_class=int(doc.get("min_per_class", DEFAULT_MIN_PER_CLASS)),
        )


SEPARATION_COLUMNS = [
    "scope", "group", "property", "auc", "direction", "real_value", "synthetic_value",
    "n_real", "n_synthetic", "one_class_only", "flagged",
]  # fmt: skip


def _records(df: pd.DataFrame) -> list[dict]:
    clean = df.astype(object).where(df.notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in clean.to_dict(orient="records")
    ]


# -- reading properties ----------------------------------------------------------------------


def _properties_of(path: str) -> tuple[dict | None, str | None]:

    try:
        meta = image_metadata(path)
    except ImageDecodeError as exc:
        return None, exc.reason
    except Exception as exc:  # header parsing of untrusted files: never stop the audit
        return None, f"cannot read image header ({type(exc).__name__})"
    width, height = meta["width"], meta["height"]
    return {
        "format": meta["format"],
        "jpeg_quality": meta["jpeg_quality"],
        "width": width,
        "height": height,
        "aspect_ratio": width / height if height else None,
        "file_size": meta["file_size"],
        "exif_present": bool(meta["exif_present"]),
        "mode": meta["mode"],
        **_declared(declaration_columns(safe_read_provenance(path))),
    }, None


def _declared(columns: dict) -> dict:
    return {"declared_ai": columns["declared_ai"], "declared_by": columns["declared_by"]}


Progress = Callable[[int, int], None]
PROGRESS_EVERY = 100  # files between two progress calls


def _read_properties(
    paths: Sequence[str], workers: int, progress: Progress | None
) -> list[tuple[dict | None, str | None]]:
    """``_properties_of`` for every path on a thread pool, in order.

    ``progress(done, total)`` is called at the start, every ``PROGRESS_EVERY`` files and at
    the end; an exception it raises stops the reading (files not yet started are skipped)
    and propagates: that is how a caller cancels.
    """
    total = len(paths)
    if progress is not None:
        progress(0, total)
    results: list[tuple[dict | None, str | None]] = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for result in pool.map(_properties_of, paths):
            results.append(result)
            done = len(results)
            if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
                progress(done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def image_properties(
    records: Sequence[Record], *, workers: int = 4, progress: Progress | None = None
) -> tuple[pd.DataFrame, list[dict]]:
    """Properties of labelled records as a DataFrame, plus ``{"path", "reason"}`` errors.

    Columns: path, label (0 real / 1 synthetic), class, generator (``real`` for real
    images), source, split, format, jpeg_quality, width, height, aspect_ratio, file_size,
    exif_present, mode. Unlabelled records are skipped; only headers are read.
    ``progress(done, total)`` follows the files read (see ``audit``).
    """
    labelled = [r for r in records if r.label in (0, 1)]
    results = _read_properties([str(r.path) for r in labelled], workers, progress)
    rows, errors = [], []
    for record, (props, error) in zip(labelled, results, strict=True):
        if props is None:
            errors.append({"path": str(record.path), "reason": error})
            continue
        rows.append(_row(record, props))
    return _frame(rows), errors


def _row(record: Record, props: dict) -> dict:
    return {
        "path": str(record.path),
        "label": int(record.label),
        "class": "synthetic" if record.label == 1 else "real",
        "generator": (record.generator or "unknown") if record.label == 1 else "real",
        "source": record.source,
        "split": record.split,
        **props,
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    columns = ["path", "label", "class", "generator", "source", "split", *PROPERTIES, "declared_by"]
    df = pd.DataFrame(rows, columns=columns)
    for name in NUMERIC_PROPERTIES:
        df[name] = pd.to_numeric(df[name], errors="coerce").astype(float)
    df["label"] = df["label"].astype(int)
    return df


def _workspace_properties(
    ws: Workspace, workers: int, progress: Progress | None = None
) -> tuple[pd.DataFrame, list[dict]]:
    """Properties of a workspace's labelled images, read from their files.

    A file that is no longer readable is audited from the facts stored at embedding time
    (format, size, mode; no JPEG quality or EXIF) and listed in the errors.
    """
    meta = ws.images(with_errors=False)
    meta = meta[meta["label"].notna()].reset_index(drop=True)
    records = records_from_images(meta)
    results = _read_properties([str(r.path) for r in records], workers, progress)
    rows, errors = [], []
    for record, stored, (props, error) in zip(
        records, meta.itertuples(index=False), results, strict=True
    ):
        if props is None:
            if stored.width and stored.height:
                props = {
                    "format": stored.format,
                    "jpeg_quality": None,
                    "width": stored.width,
                    "height": stored.height,
                    "aspect_ratio": stored.width / stored.height,
                    "file_size": stored.n_bytes,
                    "exif_present": None,
                    "mode": stored.mode,
                    "declared_ai": None,
                    "declared_by": None,
                }
                error = f"{error}; audited from the facts stored in the workspace"
            errors.append({"path": str(record.path), "reason": error})
            if props is None:
                continue
        rows.append(_row(record, props))
    return _frame(rows), errors


# -- separation ------------------------------------------------------------------------------


def _numeric_auc(y: np.ndarray, values: np.ndarray) -> float:
    return float(roc_auc_score(y, values))


def _categorical_auc(y: np.ndarray, values: pd.Series) -> float:
    keys = values.astype(str).to_numpy()
    share = pd.Series(y, index=keys).groupby(level=0).mean()
    return float(roc_auc_score(y, share.loc[keys].to_numpy()))


def property_separation(
    frame: pd.DataFrame, prop: str, *, min_per_class: int = DEFAULT_MIN_PER_CLASS
) -> dict | None:
    """How well ``prop`` alone separates the frame's real (label 0) from synthetic images.

    Returns ``None`` when fewer than ``min_per_class`` images of either class have the
    property; otherwise a dict with ``auc`` (0.5..1), ``direction`` (which class has the
    higher values, numeric properties), ``real_value``/``synthetic_value`` (medians, or the
    most common category), counts and ``one_class_only`` (categories seen in one class only,
    as ``{category: class}``).
    """
    present = frame[frame[prop].notna()]
    y = present["label"].to_numpy()
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    if n_real < min_per_class or n_fake < min_per_class:
        return None
    values = present[prop]
    out = {"property": prop, "n_real": n_real, "n_synthetic": n_fake, "one_class_only": {}}
    if prop in NUMERIC_PROPERTIES:
        auc = _numeric_auc(y, values.to_numpy(dtype=float))
        out["direction"] = (
            "synthetic higher" if auc > 0.5 else "real higher" if auc < 0.5 else "none"
        )
        out["auc"] = max(auc, 1.0 - auc)
        out["real_value"] = float(values[y == 0].median())
        out["synthetic_value"] = float(values[y == 1].median())
    else:
        out["auc"] = _categorical_auc(y, values)
        out["direction"] = None
        out["real_value"] = str(values[y == 0].astype(str).mode().iloc[0])
        out["synthetic_value"] = str(values[y == 1].astype(str).mode().iloc[0])
        if prop in _ONE_CLASS_CHECKED:
            classes = present.groupby(values.astype(str))["label"].agg(["min", "max", "size"])
            out["one_class_only"] = {
                str(cat): {
                    "class": "synthetic" if row["min"] == 1 else "real",
                    "n": int(row["size"]),
                }
                for cat, row in classes.iterrows()
                if row["min"] == row["max"] and (prop == "format" or str(cat) == "True")
            }
    return out


def _scopes(images: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(scope, group, frame): all images, each generator vs all reals, each source."""
    scopes = [("all", "all images", images)]
    reals = images[images["label"] == 0]
    generators = sorted(images.loc[images["label"] == 1, "generator"].dropna().unique())
    if len(generators) > 1:
        for gen in generators:
            scopes.append(
                ("generator", gen, pd.concat([reals, images[images["generator"] == gen]]))
            )
    sources = images["source"].dropna()
    for src in sorted(sources.unique()):
        part = images[images["source"] == src]
        if part["label"].nunique() == 2:
            scopes.append(("source", str(src), part))
    return scopes


def scope_label(scope: str, group: str) -> str:
    """Where a separation was tested, short: ``all images``, ``generator X``, ``source Y``."""
    return "all images" if scope == "all" else f"{scope} {group}"


def scope_text(scope: str, group: str) -> str:
    """Where a separation was tested, as the start of a sentence."""
    if scope == "all":
        return "Across all images"
    if scope == "generator":
        return f"For generator {group} (its images against all real images)"
    return f"Within source {group}"


def value_text(prop: str, value) -> str:
    """A typical value of an audited property as a reader sees it (``512 px``, ``84 KiB``,
    ``quality 84``); ``n/a`` for a missing one. The CLI's warnings and the dashboard's
    table both use it."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, str):
        return value
    if prop in ("width", "height"):
        return f"{value:.0f} px"
    if prop == "file_size":
        return f"{value / 1024:.0f} KiB"
    if prop == "aspect_ratio":
        return f"{value:.2f}"
    if prop == "jpeg_quality":
        return f"quality {value:.0f}"
    return str(value)


def property_text(prop: str) -> str:
    """An audited property's column name in words (``jpeg quality``)."""
    return str(prop).replace("_", " ")


def separation_sentence(row) -> str:
    """One tested separation (a row of :func:`audit_table`) in a sentence."""
    real = value_text(row["property"], row["real_value"])
    synthetic = value_text(row["property"], row["synthetic_value"])
    verdict = (
        "flagged: it alone separates the classes"
        if row["flagged"]
        else "not flagged: it does not separate the classes on its own"
    )
    return (
        f"{scope_text(row['scope'], row['group'])}, the {property_text(row['property'])} is "
        f"typically {real} for real and {synthetic} for synthetic images "
        f"({int(row['n_real']):,} and {int(row['n_synthetic']):,} images); alone it reaches "
        f"AUC {float(row['auc']):.2f} (0.5: no separation, 1: perfect), {verdict}."
    )


DISPLAY_COLUMNS = [
    "scope", "property", "AUC", "typical real", "typical synthetic", "real", "synthetic",
    "flagged",
]  # fmt: skip


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`audit_table` in words: one row per (scope, property) tested, with readable
    scopes, properties and typical values; the order (flagged first) is kept."""
    return pd.DataFrame(
        [
            {
                "scope": scope_label(r.scope, r.group),
                "property": property_text(r.property),
                "AUC": float(r.auc),
                "typical real": value_text(r.property, r.real_value),
                "typical synthetic": value_text(r.property, r.synthetic_value),
                "real": int(r.n_real),
                "synthetic": int(r.n_synthetic),
                "flagged": bool(r.flagged),
            }
            for r in table.itertuples(index=False)
        ],
        columns=DISPLAY_COLUMNS,
    )


def _message(row: dict) -> str:
    what, fix = _PLAIN[row["property"]]
    where = scope_text(row["scope"], row["group"])
    counts = f"{row['n_real']} real, {row['n_synthetic']} synthetic images"
    if row["one_class_only"] and row["property"] == "declared_ai":
        info = row["one_class_only"]["True"]
        lead = (
            f"{where}, {info['n']} {info['class']} image(s) carry {what}, and no image of the "
            f"other class does"
        )
    elif row["one_class_only"]:
        parts = [
            f"{cat} only among {info['class']} images ({info['n']} file(s))"
            for cat, info in row["one_class_only"].items()
        ]
        lead = f"{where}, a file format is used by one class only: {'; '.join(parts)}"
    else:
        real = value_text(row["property"], row["real_value"])
        synthetic = value_text(row["property"], row["synthetic_value"])
        lead = (
            f"{where}, {what} alone separates real from synthetic images "
            f"(AUC {row['auc']:.2f}; typical real {real}, typical synthetic {synthetic})"
        )
    return (
        f"{lead} [{counts}]. A detector can score well here by learning {what} instead of "
        f"traces of generation. To fix: {fix}."
    )


def _separations(
    images: pd.DataFrame, threshold: float, min_per_class: int
) -> tuple[pd.DataFrame, list[dict]]:
    rows = []
    for scope, group, frame in _scopes(images):
        for prop in PROPERTIES:
            result = property_separation(frame, prop, min_per_class=min_per_class)
            if result is None:
                continue
            flagged = result["auc"] >= threshold or bool(result["one_class_only"])
            rows.append({"scope": scope, "group": group, **result, "flagged": flagged})
    table = pd.DataFrame(rows, columns=SEPARATION_COLUMNS)
    warnings = []
    for row in rows:
        if row["flagged"]:
            warnings.append(
                {
                    "scope": row["scope"],
                    "group": row["group"],
                    "property": row["property"],
                    "auc": round(row["auc"], 4),
                    "severity": "strong" if row["auc"] >= 0.95 else "warning",
                    "message": _message(row),
                }
            )
    return table, warnings


# -- summary per class and generator -----------------------------------------------------------


def _counts_text(values: pd.Series) -> str:
    counts = values.dropna().astype(str).value_counts()
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def summarise_groups(images: pd.DataFrame, by: Sequence[str] = ("class", "generator")):
    """One row per group (default: class and generator) describing its images.

    Columns: the group keys, n, formats (``"JPEG 10, PNG 2"``), jpeg_quality_median,
    width_median/min/max, height_median/min/max, aspect_ratio_median, file_size_median
    (bytes), exif_share (0..1 of images with EXIF), modes, declared_ai (images whose
    metadata declares them AI-generated) and declared_by (``"c2pa 3, png-parameters 1"``).
    """
    by = list(by)
    rows = []
    if images.empty:
        return pd.DataFrame(columns=[*by, "n"])
    for key, part in images.groupby(by, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        exif = part["exif_present"].dropna()
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "n": len(part),
                "formats": _counts_text(part["format"]),
                "jpeg_quality_median": part["jpeg_quality"].median(),
                "width_median": part["width"].median(),
                "width_min": part["width"].min(),
                "width_max": part["width"].max(),
                "height_median": part["height"].median(),
                "height_min": part["height"].min(),
                "height_max": part["height"].max(),
                "aspect_ratio_median": part["aspect_ratio"].median(),
                "file_size_median": part["file_size"].median(),
                "exif_share": float(exif.astype(bool).mean()) if len(exif) else None,
                "modes": _counts_text(part["mode"]),
                "declared_ai": int(part["declared_ai"].fillna(False).astype(bool).sum()),
                "declared_by": _counts_text(
                    part["declared_by"].dropna().str.split("+").explode()
                    if "declared_by" in part
                    else pd.Series(dtype=object)
                ),
            }
        )
    return pd.DataFrame(rows)


# -- entry points ----------------------------------------------------------------------------


def is_workspace_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a workspace directory (holds the workspace database)."""
    path = Path(path).expanduser()
    return path.is_dir() and (path / DB_NAME).is_file()


def audit(
    source: str | os.PathLike | Dataset | Workspace,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
    workers: int = 4,
    progress: Progress | None = None,
) -> AuditReport:
    """Audit a dataset (folder, CSV manifest, ``Dataset``) or a workspace (dir or object).

    Reads each labelled image's header, summarises it per class and generator, and flags
    every property that alone separates real from synthetic images (see module docstring).
    Raises ``DatasetError``/``WorkspaceError`` only when the source itself cannot be read.
    ``progress(done, total)`` follows the files read (every 100 files); an exception it
    raises stops the audit and propagates (the dashboard's Cancel).
    """
    if not 0.5 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in 0.5..1, got {threshold}")
    if isinstance(source, Workspace):
        images, errors = _workspace_properties(source, workers, progress)
        name = str(source.path)
    elif isinstance(source, Dataset):
        images, errors = image_properties(source.records, workers=workers, progress=progress)
        errors = list(source.errors) + errors
        name = source.name
    elif is_workspace_dir(source):
        with Workspace(Path(source).expanduser(), create=False) as ws:
            images, errors = _workspace_properties(ws, workers, progress)
            name = str(ws.path)
    else:
        dataset = load_dataset(source)
        images, errors = image_properties(dataset.records, workers=workers, progress=progress)
        errors = list(dataset.errors) + errors
        name = dataset.name
    separations, warnings = _separations(images, threshold, min_per_class)
    return AuditReport(
        source=name,
        images=images,
        summary=summarise_groups(images),
        separations=separations,
        warnings=warnings,
        errors=errors,
        threshold=threshold,
        min_per_class=min_per_class,
    )


def audit_table(report: AuditReport, *, flagged_only: bool = False) -> pd.DataFrame:
    """The separations of a report for display: scope, group, property, AUC, medians, flag.

    Sorted with flagged rows first, then by AUC (highest first). ``flagged_only`` keeps the
    flagged rows. For the dashboard's audit panel; ``report.summary`` is the per class and
    generator table and ``report.warnings`` the plain-language messages.
    """
    table = report.separations.copy()
    if flagged_only:
        table = table[table["flagged"]]
    if table.empty:
        return table.reset_index(drop=True)
    table = table.sort_values(["flagged", "auc"], ascending=[False, False], kind="stable")
    return table.reset_index(drop=True)


def audit_figure(report: AuditReport, prop: str, *, scope: str = "all", group: str | None = None):
    """A plotly figure of one property's values by class, for one scope of the audit.

    ``scope``/``group`` as in ``report.separations`` (``"all"``; ``"generator"`` and a
    generator name; ``"source"`` and a source). Numeric properties: one box per class with
    every image as a point; categorical ones: counts per category and class. The title
    carries the AUC when the scope was tested.
    """
    import plotly.graph_objects as go  # lazy: only the dashboard draws figures

    if prop not in PROPERTIES:
        raise ValueError(f"unknown property {prop!r} (known: {', '.join(PROPERTIES)})")
    frame = next(
        (f for s, g, f in _scopes(report.images) if s == scope and (group is None or g == group)),
        report.images.iloc[0:0],
    )
    row = report.separations[
        (report.separations["scope"] == scope)
        & (report.separations["property"] == prop)
        & ((report.separations["group"] == group) if group is not None else True)
    ]
    title = f"{scope_text(scope, group or '')}: {_PLAIN[prop][0]} by class"
    if len(row):
        title += f": AUC {row['auc'].iloc[0]:.2f}" + (
            " (flagged)" if row["flagged"].iloc[0] else ""
        )
    fig = go.Figure()
    colours = {"real": "#3056d3", "synthetic": "#e07b00"}
    for cls in ("real", "synthetic"):
        part = frame[frame["class"] == cls]
        if prop in NUMERIC_PROPERTIES:
            fig.add_trace(
                go.Box(
                    y=part[prop],
                    name=cls,
                    boxpoints="all",
                    jitter=0.4,
                    marker_color=colours[cls],
                    text=part["path"].map(lambda p: Path(p).name),
                )
            )
        else:
            counts = part[prop].astype(str).value_counts().sort_index()
            fig.add_trace(
                go.Bar(x=counts.index, y=counts.values, name=cls, marker_color=colours[cls])
            )
    fig.update_layout(title=title, yaxis_title=prop if prop in NUMERIC_PROPERTIES else "images")
    return fig
