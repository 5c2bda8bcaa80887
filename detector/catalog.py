"""The head catalog: every head Cue Lens can use, found, listed and loaded in one place.

Three kinds of heads, listed in this order by :func:`list_heads` (the CLI's ``heads`` command
and the dashboard's head picker both read it):

- ``released``: the reference paper's heads (``detector.released``), downloaded on first use;
- ``workspace``: heads trained into a workspace, ``WS/heads/NAME.safetensors``;
- ``imported``: head files imported through the dashboard's Data page (or copied there by
  hand), ``WS/heads/imported/FILE`` (a Cue Lens ``.safetensors`` head or a released-format
  ``.ckpt``/``.pt``/``.pth`` checkpoint).

Every listing row is a :class:`HeadEntry`; its ``key`` (``KIND:NAME``) names one head of a
workspace and is what the dashboard keeps in its URL. :func:`resolve_head` turns what a user
typed (a file, a name, a key) into a loaded head; :func:`load_head_file` loads any head file,
whatever its format. docs/architecture.md, "Heads".
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from detector import released
from detector.heads import HEAD_SUFFIX, HeadError, load_head, read_card, same_features
from detector.identity import is_demo_id

IMPORTED_DIR = "imported"  # WS/heads/imported: head files imported through the Data page
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")  # the released heads' weights-only format
HEAD_FILE_SUFFIXES = (HEAD_SUFFIX, ".ckpt", ".pt", ".pth")  # what the Data page imports
KINDS = ("released", "workspace", "imported")


@dataclass(frozen=True)
class HeadEntry:
    """One head in a listing.

    ``available``: a readable copy is here now (a released head: in the cache or
    ``CUE_LENS_RELEASED_DIR``; else a file whose card reads). ``location``: the file, or the
    download URL of a released head not yet cached. ``error``: why a file is unreadable.
    """

    key: str  # KIND:NAME, unique within one workspace's listing
    kind: str  # released | workspace | imported
    name: str
    location: str
    backbone_id: str | None
    head_type: str | None = None
    tap: str | None = None
    feature_dim: int | None = None
    training_data: str | None = None
    threshold: float | None = None
    demo: bool = False
    created: str | None = None
    available: bool = True
    default: bool = False
    error: str | None = None

    @property
    def usable(self) -> bool:
        """Whether choosing it can work now: released heads are fetched when chosen."""
        return self.kind == "released" or self.available

    @property
    def note(self) -> str:
        """A short remark for pickers: ``default``, ``cached``, or the file's problem."""
        if self.kind == "released":
            return "default" if self.default else ("cached" if self.available else "")
        return self.error or ""

    @property
    def label(self) -> str:
        """``NAME · KIND``, as the head picker shows it."""
        return f"{self.name} · {self.kind}"

    def compatible(self, backbone_id: str) -> bool:
        """Whether it reads embeddings of ``backbone_id`` (a head without an id: any)."""
        return self.backbone_id in (None, backbone_id)

    def as_dict(self) -> dict:
        """The row as plain values (``heads --json``)."""
        return asdict(self)


# -- where heads live ------------------------------------------------------------------------


def workspace_head_path(workspace, name: str) -> Path:
    """``WS/heads/NAME.safetensors`` for a bare head name."""
    name = name[: -len(HEAD_SUFFIX)] if name.endswith(HEAD_SUFFIX) else name
    return Path(workspace.heads_dir) / f"{name}{HEAD_SUFFIX}"


def is_bare_name(spec: str) -> bool:
    """True for a head name without a directory part (``demo`` or ``demo.safetensors``)."""
    return os.sep not in spec and "/" not in spec and not spec.startswith(".")


def imported_dir(workspace) -> Path:
    """``WS/heads/imported``: where imported head files of a workspace are kept."""
    return Path(workspace.heads_dir) / IMPORTED_DIR


# -- listing ---------------------------------------------------------------------------------


def released_entries(cache_dir: str | os.PathLike | None = None) -> list[HeadEntry]:
    """One entry per released head (``available``: found locally right now)."""
    entries = []
    for record in released.RELEASED_HEADS.values():
        local = released.cached_path(record.name, cache_dir)
        entries.append(
            HeadEntry(
                key=f"released:{record.name}",
                kind="released",
                name=record.name,
                location=str(local) if local else record.url,
                backbone_id=record.backbone_id,
                head_type=record.head_type,
                tap=record.tap,
                feature_dim=record.feature_dim,
                training_data=record.training_data,
                threshold=0.5,
                available=local is not None,
                default=record.name == released.DEFAULT_RELEASED,
            )
        )
    return entries


def _file_entry(kind: str, name: str, path: Path) -> HeadEntry:
    """The entry of one head file; an unreadable card is listed with its error."""
    card, error = {}, None
    if path.suffix == HEAD_SUFFIX:
        try:
            card = read_card(path)
        except HeadError as exc:
            error = str(exc)
        backbone_id = card.get("backbone_id")
    else:  # a released-format checkpoint carries no card: its heads read the paper's backbone
        backbone_id = released.BACKBONE_ID
    return HeadEntry(
        key=f"{kind}:{name}",
        kind=kind,
        name=name,
        location=str(path),
        backbone_id=backbone_id,
        head_type=card.get("head_type"),
        tap=card.get("tap"),
        feature_dim=card.get("feature_dim"),
        training_data=_training_label(card),
        threshold=card.get("threshold"),
        demo=bool(card.get("demo")) or is_demo_id(backbone_id),
        created=card.get("created"),
        available=error is None,
        error=error,
    )


def workspace_entries(workspace) -> list[HeadEntry]:
    """Entries of the heads saved in ``WS/heads`` (by name, without the suffix)."""
    folder = Path(workspace.heads_dir)
    files = sorted(folder.glob(f"*{HEAD_SUFFIX}")) if folder.is_dir() else []
    return [_file_entry("workspace", p.stem, p) for p in files]


def imported_entries(workspace) -> list[HeadEntry]:
    """Entries of the head files in ``WS/heads/imported`` (by file name, with the suffix)."""
    folder = imported_dir(workspace)
    files = (
        sorted(
            p
            for p in folder.iterdir()
            if p.suffix in HEAD_FILE_SUFFIXES and not p.name.startswith(".")
        )
        if folder.is_dir()
        else []
    )
    return [_file_entry("imported", p.name, p) for p in files]


def list_heads(workspace=None, *, cache_dir=None) -> list[HeadEntry]:
    """Released heads, then the workspace's trained and imported heads (when given)."""
    entries = released_entries(cache_dir)
    if workspace is not None:
        entries += workspace_entries(workspace) + imported_entries(workspace)
    return entries


def heads_table(workspace=None, *, cache_dir=None):
    """:func:`list_heads` as a DataFrame (one column per ``HeadEntry`` field)."""
    import pandas as pd  # pandas' import is slow; only tables need it

    entries = list_heads(workspace, cache_dir=cache_dir)
    return pd.DataFrame([e.as_dict() for e in entries], columns=list(HeadEntry.__annotations__))


def _training_label(card: dict) -> str | None:
    training = card.get("training") or {}
    if not training:
        return card.get("training_data")
    gens = training.get("train_counts", {}).get("by_generator", {})
    ws = training.get("workspace")
    split = training.get("train_split")
    parts = [f"{Path(ws).name}:{split}" if ws else None, "+".join(sorted(gens)) or None]
    return " ".join(p for p in parts if p) or None


# -- loading ---------------------------------------------------------------------------------


def load_head_file(path: str | os.PathLike):
    """A head from a file: a Cue Lens ``.safetensors`` head (``detector.heads.load_head``) or
    a released-format weights-only checkpoint (``detector.released.import_checkpoint``).
    Never unpickles anything."""
    path = Path(path).expanduser()
    if path.suffix in CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise HeadError(f"{path}: no such head file")
        return released.import_checkpoint(path)
    return load_head(path)


def load_entry(entry: HeadEntry, *, cache_dir=None):
    """The loaded head of a listing entry (a released one is fetched when not cached)."""
    if entry.kind == "released":
        return released.load_released(entry.name, cache_dir=cache_dir)
    return load_head_file(entry.location)


def resolve_head(spec: str | os.PathLike | None = None, *, workspace=None, cache_dir=None):
    """Load a head from a file path, a workspace head name, an imported file's name, a
    released head name, or a listing key (``workspace:NAME``, ``imported:FILE``,
    ``released:NAME``).

    Order: an existing file path; ``WS/heads/NAME.safetensors`` and then
    ``WS/heads/imported/NAME`` when a workspace is given; a released head (downloaded or
    taken from the cache). ``None`` means the default released detector
    (``linear_probe_synthclic``).
    """
    if spec is None:
        return released.load_released(released.DEFAULT_RELEASED, cache_dir=cache_dir)
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return load_head_file(path)
    kind, _, name = spec.partition(":")
    if kind in KINDS and name:
        if kind == "released" and name in released.RELEASED_HEADS:
            return released.load_released(name, cache_dir=cache_dir)
        if kind != "released" and workspace is not None:
            found = next((e for e in list_heads(workspace) if e.key == spec), None)
            if found is not None:
                return load_entry(found)
    if workspace is not None and is_bare_name(spec):
        for candidate in (workspace_head_path(workspace, spec), imported_dir(workspace) / spec):
            if candidate.is_file():
                return load_head_file(candidate)
    if spec in released.RELEASED_HEADS:
        return released.load_released(spec, cache_dir=cache_dir)
    hint = ""
    if workspace is not None:
        names = [e.name for e in workspace_entries(workspace) + imported_entries(workspace)]
        hint = f"; workspace heads: {', '.join(names) or 'none'}"
    raise HeadError(
        f"head {spec!r} not found: not a file, not a workspace head, not a released head "
        f"(released: {', '.join(released.RELEASED_HEADS)}){hint}. "
        f"See `python -m detector heads`."
    )


def find_workspace_head(workspace, backbone_id: str, head_type: str | None = None):
    """The newest readable head of the workspace (trained or imported) whose features match
    ``backbone_id`` (``detector.heads.same_features``), optionally of ``head_type``; None
    when there is none. Works for any backbone, not only the demo's."""
    entries = [
        e
        for e in workspace_entries(workspace) + imported_entries(workspace)
        if e.available
        and e.backbone_id
        and same_features(e.backbone_id, backbone_id)
        and (head_type is None or e.head_type == head_type)
    ]
    if not entries:
        return None
    newest = max(entries, key=lambda e: (e.created or "", e.kind == "workspace", e.name))
    return load_head_file(newest.location)


def save_imported_head(workspace, name: str, data: bytes) -> Path:
    """Store an uploaded head file as ``WS/heads/imported/NAME`` after checking it loads.

    Raises ``HeadError`` (a readable message naming the file) when it is not a head; the
    folder is left as it was.
    """
    safe = Path(name).name
    if Path(safe).suffix not in HEAD_FILE_SUFFIXES:
        raise HeadError(f"{safe}: not a head file (expected {', '.join(HEAD_FILE_SUFFIXES)})")
    folder = imported_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".import-{os.getpid()}-{safe}"  # keeps the suffix the loader dispatches on
    tmp.write_bytes(data)
    try:
        load_head_file(tmp)
    except Exception:
        tmp.unlink(missing_ok=True)
        raise
    target = folder / safe
    os.replace(tmp, target)
    return target
