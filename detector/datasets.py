"""Datasets: folder layouts and CSV manifests turned into records.

Two layouts (docs/architecture.md, "Contracts"):

- a folder ``ROOT/[split/]CLASS/**/image``: CLASS ``real``, ``0_real`` or ``nature`` means
  real, any other name is the generator. Inside a generator folder, a path component
  ``0_real``/``real`` or ``1_fake``/``fake`` overrides the label (CNNSpot's
  ``progan/airplane/0_real`` layout); those reals get the generator folder as their
  ``source``, so "matched" pairing compares each generator with its own reals.
- a CSV manifest with columns ``path,label[,generator,split,pair_id,source]`` (``source_repo``
  is read as ``source``); paths are relative to the CSV's folder and may not leave it; label
  ``real``/``synthetic`` (also ``fake``) or ``0``/``1``.
- a Parquet listing (``.parquet``) with a ``path`` column and the manifest's optional
  columns (``label`` may be missing or empty: unknown). In a listing and in a CSV manifest a
  ``path`` may also be a URI (``file:///...``, ``s3://bucket/key``, ``gs://...``), read
  through pyarrow's filesystems (``detector.uris``); a URI names its object explicitly, so
  the "stay inside the folder" rule applies to relative paths only.

Files are decoded later by content; here a folder scan only skips hidden files and files
that are plainly not images (text, tables, archives).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from detector.errors import CueLensError
from detector.uris import is_uri

REAL_CLASS_NAMES = {"real", "0_real", "nature"}
FAKE_CLASS_NAMES = {"fake", "1_fake", "synthetic"}
SPLIT_NAMES = {"train", "val", "valid", "validation", "test"}
UNKNOWN_GENERATOR = "unknown"
NOT_IMAGE_SUFFIXES = {
    ".csv", ".tsv", ".txt", ".md", ".json", ".jsonl", ".yaml", ".yml", ".xml", ".html",
    ".py", ".sh", ".zip", ".tar", ".gz", ".7z", ".sqlite", ".db", ".parquet", ".pt", ".ckpt",
    ".safetensors", ".npy", ".npz", ".pdf", ".mp4", ".mov", ".avi",
}  # fmt: skip
LABEL_VALUES = {
    "real": 0, "0": 0, "0_real": 0, "nature": 0,
    "synthetic": 1, "fake": 1, "1": 1, "1_fake": 1, "generated": 1, "ai": 1,
}  # fmt: skip
MANIFEST_COLUMNS = {"path", "label", "generator", "split", "pair_id", "source", "source_repo"}


class DatasetError(CueLensError):
    """The dataset as a whole cannot be read (missing folder, manifest without columns...)."""


@dataclass
class Record:
    """One image file of a dataset. ``label``: 0 real, 1 synthetic, None unknown."""

    path: Path | str  # a local file, or a URI string (``detector.uris``)
    label: int | None
    generator: str | None = None
    split: str | None = None
    pair_id: str | None = None
    source: str | None = None


def records_from_images(images) -> list[Record]:
    """Records of workspace images, one per row of a ``Workspace.images()`` frame (columns path,
    label, generator, split, pair_id, source; labels must be known)."""
    return [
        Record(
            path=Path(row.path),
            label=int(row.label),
            generator=row.generator,
            split=row.split,
            pair_id=row.pair_id,
            source=row.source,
        )
        for row in images.itertuples(index=False)
    ]


@dataclass
class Dataset:
    """Records of a folder or manifest, plus per-row problems found while reading it."""

    root: Path
    kind: str  # "folder" | "manifest" | "listing" | "files"
    records: list[Record] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)  # {"path", "reason"}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def name(self) -> str:
        return str(self.root)


def load_dataset(source: str | os.PathLike) -> Dataset:
    """Read a dataset folder, a CSV manifest, a Parquet listing, or a single image file."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_folder(path.resolve())
    if path.suffix.lower() in (".csv", ".tsv"):
        return load_manifest(path)
    if path.suffix.lower() == ".parquet":
        return load_listing(path)
    return Dataset(root=path.parent.resolve(), kind="files", records=[Record(path.resolve(), None)])


def _is_candidate(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() not in NOT_IMAGE_SUFFIXES
    )


def _load_folder(root: Path) -> Dataset:
    dataset = Dataset(root=root, kind="folder")
    top = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not top:
        raise DatasetError(
            f"{root}: no class folders; expected ROOT/[split/]CLASS/**/image with CLASS "
            f"'real' (or 0_real, nature) and one folder per generator"
        )
    has_splits = all(p.name.lower() in SPLIT_NAMES for p in top)
    groups = [(p.name.lower(), p) for p in top] if has_splits else [(None, root)]
    for split, base in groups:
        if split in ("valid", "validation"):
            split = "val"
        if not base.resolve().is_relative_to(root):
            _refuse_link(dataset, base)
            continue
        for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            if class_dir.name.startswith("."):
                continue
            if not class_dir.resolve().is_relative_to(root):
                _refuse_link(dataset, class_dir)
                continue
            _scan_class(dataset, class_dir, split)
    if not dataset.records:
        raise DatasetError(f"{root}: no image files found under the class folders")
    return dataset


def _refuse_link(dataset: Dataset, path: Path) -> None:
    """As for manifest paths, nothing outside the dataset's folder is read: a symbolic link
    (file or folder) that leads out of it becomes a per-path error."""
    dataset.errors.append(
        {"path": str(path), "reason": "symbolic link leads outside the dataset folder; refused"}
    )


def _scan_class(dataset: Dataset, class_dir: Path, split: str | None) -> None:
    class_name = class_dir.name
    is_real_class = class_name.lower() in REAL_CLASS_NAMES
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_parts = [p.lower() for p in Path(dirpath).relative_to(class_dir).parts]
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not _is_candidate(path):
                continue
            if path.is_symlink() and not path.resolve().is_relative_to(dataset.root):
                _refuse_link(dataset, path)
                continue
            if is_real_class:
                dataset.records.append(Record(path, 0, None, split))
                continue
            label = 1
            for part in rel_parts:
                if part in REAL_CLASS_NAMES:
                    label = 0
                elif part in FAKE_CLASS_NAMES:
                    label = 1
            if label == 0:
                dataset.records.append(Record(path, 0, None, split, source=class_name))
            else:
                dataset.records.append(Record(path, 1, class_name, split, source=class_name))


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def load_manifest(csv_path: str | os.PathLike) -> Dataset:
    """Read a CSV manifest (see module docstring); rows with problems become errors."""
    csv_path = Path(csv_path).expanduser().resolve()
    root = csv_path.parent
    dataset = Dataset(root=root, kind="manifest")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            sample = f.read(4096)
            f.seek(0)
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample else csv.excel
            reader = csv.DictReader(f, dialect=dialect)
            columns = {c.strip().lower() for c in (reader.fieldnames or [])}
            if "path" not in columns or "label" not in columns:
                raise DatasetError(
                    f"{csv_path}: a manifest needs the columns 'path' and 'label' "
                    f"(found: {', '.join(sorted(columns)) or 'none'})"
                )
            for line, raw in enumerate(reader, start=2):
                row = {(k or "").strip().lower(): v for k, v in raw.items()}
                _manifest_row(dataset, csv_path, line, row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{csv_path}: cannot read manifest ({exc})") from exc
    return dataset


def load_listing(parquet_path: str | os.PathLike) -> Dataset:
    """Read a Parquet listing: column ``path`` (local path relative to the file's folder, or
    a URI) plus the manifest's optional columns; ``label`` may be absent or null (unknown).
    Rows with problems become errors, as in a manifest."""
    parquet_path = Path(parquet_path).expanduser().resolve()
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DatasetError(
            f"{parquet_path}: reading a Parquet listing needs pyarrow "
            f"(pip install -r requirements-scale.txt)"
        ) from exc
    try:
        table = pq.read_table(parquet_path)
    except Exception as exc:  # ArrowInvalid, OSError: not a Parquet file, truncated...
        raise DatasetError(f"{parquet_path}: cannot read Parquet listing ({exc})") from exc
    names = {name.strip().lower(): name for name in table.column_names}
    if "path" not in names:
        raise DatasetError(
            f"{parquet_path}: a listing needs the column 'path' "
            f"(found: {', '.join(sorted(names)) or 'none'})"
        )
    wanted = [key for key in MANIFEST_COLUMNS if key in names]
    columns = {key: table.column(names[key]).to_pylist() for key in wanted}
    dataset = Dataset(root=parquet_path.parent, kind="listing")
    for i in range(table.num_rows):
        row = {key: None if col[i] is None else str(col[i]) for key, col in columns.items()}
        _manifest_row(dataset, parquet_path, i + 1, row, label_required=False)
    return dataset


def _manifest_row(
    dataset: Dataset, csv_path: Path, line: int, row: dict, label_required: bool = True
) -> None:
    rel = _clean(row.get("path"))
    where = f"{csv_path.name} {'line' if label_required else 'row'} {line}"
    if rel is None:
        dataset.errors.append({"path": where, "reason": "empty path"})
        return
    if is_uri(rel):
        target: Path | str = rel
    else:
        target = (dataset.root / rel).resolve()
        if not target.is_relative_to(dataset.root):
            dataset.errors.append(
                {"path": rel, "reason": f"{where}: path leaves the manifest's folder; refused"}
            )
            return
    label_text = (_clean(row.get("label")) or "").lower()
    if not label_text and not label_required:
        dataset.records.append(
            Record(
                path=target,
                label=None,
                generator=_clean(row.get("generator")),
                split=_split(row.get("split")),
                pair_id=_clean(row.get("pair_id")),
                source=_clean(row.get("source")) or _clean(row.get("source_repo")),
            )
        )
        return
    if label_text not in LABEL_VALUES:
        dataset.errors.append(
            {
                "path": str(target),
                "reason": f"{where}: unknown label {row.get('label')!r} "
                "(use real/synthetic or 0/1)",
            }
        )
        return
    label = LABEL_VALUES[label_text]
    generator = _clean(row.get("generator"))
    if label == 1 and generator is None:
        generator = UNKNOWN_GENERATOR
    if label == 0:
        generator = None
    dataset.records.append(
        Record(
            path=target,
            label=label,
            generator=generator,
            split=_split(row.get("split")),
            pair_id=_clean(row.get("pair_id")),
            source=_clean(row.get("source")) or _clean(row.get("source_repo")),
        )
    )


def _split(value: str | None) -> str | None:
    split = _clean(value)
    if split is None:
        return None
    split = split.lower()
    return "val" if split in ("valid", "validation") else split
