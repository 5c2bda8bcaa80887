"""Concept vocabularies: CSV files of antonym pairs, listed like a registry.

A vocabulary is a CSV file with one concept per row. Our own format has the columns

``id, positive, negative, category, explanation``

where ``id`` is a snake_case name, ``positive``/``negative`` are the two poles as noun phrases
that read well after "a photograph with ...", ``category`` groups concepts (``lighting``,
``lens and optics``, ...) and ``explanation`` says in one line what the concept is about.

The reference paper's file (``antonyms.csv``: ``attribute_name, positive, negative,
positive_prompt, negative_prompt, category, explanation``) loads as well: ``attribute_name``
is read as ``id``; explicit ``positive_prompt``/``negative_prompt`` columns, where filled, are
used as that pole's only prompt instead of the template ensemble (see ``concepts.directions``).
``category`` and ``explanation`` are optional (empty when absent).

The registry scans ``assets/vocabularies/*.csv`` (the stem is the name) plus any folder or file
added with :func:`add_vocabulary_path` (or listed in the ``CUE_LENS_VOCABULARIES`` environment
variable, ``os.pathsep``-separated), like open_clip's model-config registry. Wherever a name is
expected, a path to a CSV file works too.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from detector.errors import CueLensError
from detector.paths import assets_dir

VOCABULARY_DIR = assets_dir() / "vocabularies"
DEFAULT_VOCABULARY = "photography"
ENV_PATHS = "CUE_LENS_VOCABULARIES"

REQUIRED_COLUMNS = ("id", "positive", "negative")
OPTIONAL_COLUMNS = ("category", "explanation", "positive_prompt", "negative_prompt")
COLUMN_ALIASES = {"attribute_name": "id", "concept": "id", "name": "id"}
KNOWN_COLUMNS = frozenset(REQUIRED_COLUMNS + OPTIONAL_COLUMNS + tuple(COLUMN_ALIASES))

_FIELDS = (
    "positive",
    "negative",
    "category",
    "explanation",
    "positive_prompt",
    "negative_prompt",
)
_ID_PATTERN = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
_extra_paths: list[Path] = []


class VocabularyError(CueLensError):
    """A vocabulary cannot be found or one of its rows is invalid."""


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of antonym concepts; all fields are tuples of the same length.

    ``hash`` is a stable SHA-256 (first 16 hex digits) of the normalised content (every field,
    in row order): equal content gives an equal hash whatever the file is called.
    """

    name: str
    ids: tuple[str, ...]
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    category: tuple[str, ...]
    explanation: tuple[str, ...]
    positive_prompt: tuple[str, ...] = ()
    negative_prompt: tuple[str, ...] = ()
    path: str | None = None
    hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        n = len(self.ids)
        for attr in ("positive_prompt", "negative_prompt"):
            if not getattr(self, attr):
                object.__setattr__(self, attr, ("",) * n)
        for attr in _FIELDS:
            if len(getattr(self, attr)) != n:
                raise ValueError(f"vocabulary {self.name!r}: {attr} has a different length")
        if not self.hash:
            object.__setattr__(self, "hash", _content_hash(self))

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, concept_id: str) -> int:
        """Row of a concept id (raises ``VocabularyError`` naming the vocabulary)."""
        try:
            return self.ids.index(concept_id)
        except ValueError:
            raise VocabularyError(
                f"vocabulary {self.name!r} has no concept {concept_id!r}"
            ) from None

    def to_frame(self) -> pd.DataFrame:
        """One row per concept: id, positive, negative, category, explanation (+ prompts)."""
        return pd.DataFrame(
            {
                "id": self.ids,
                "positive": self.positive,
                "negative": self.negative,
                "category": self.category,
                "explanation": self.explanation,
                "positive_prompt": self.positive_prompt,
                "negative_prompt": self.negative_prompt,
            }
        )

    def subset(self, ids: list[str] | tuple[str, ...]) -> Vocabulary:
        """A vocabulary of the given concepts, in the given order."""
        rows = [self.index(i) for i in ids]

        def pick(values: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(values[r] for r in rows)

        return Vocabulary(
            name=f"{self.name}[{len(rows)}]",
            ids=pick(self.ids),
            positive=pick(self.positive),
            negative=pick(self.negative),
            category=pick(self.category),
            explanation=pick(self.explanation),
            positive_prompt=pick(self.positive_prompt),
            negative_prompt=pick(self.negative_prompt),
            path=self.path,
        )

    @classmethod
    def from_pairs(
        cls,
        pairs: list[tuple[str, str, str]] | list[tuple[str, str, str, str, str]],
        name: str = "custom",
    ) -> Vocabulary:
        """A vocabulary from ``(id, positive, negative[, category, explanation])`` tuples."""
        rows = []
        for i, pair in enumerate(pairs, start=1):
            if len(pair) not in (3, 5):
                raise VocabularyError(f"{name}: pair {i} must have 3 or 5 fields, got {len(pair)}")
            pid, pos, neg, *rest = pair
            cat, expl = rest if rest else ("", "")
            rows.append(
                {"id": pid, "positive": pos, "negative": neg, "category": cat, "explanation": expl}
            )
        return _build(name, None, rows, lambda i: f"{name}: pair {i}")


def _content_hash(vocab: Vocabulary) -> str:
    h = hashlib.sha256()
    for row in zip(
        vocab.ids,
        vocab.positive,
        vocab.negative,
        vocab.positive_prompt,
        vocab.negative_prompt,
        vocab.category,
        vocab.explanation,
        strict=True,
    ):
        h.update("\x1f".join(row).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()[:16]


# -- registry --------------------------------------------------------------------------------


def add_vocabulary_path(path: str | os.PathLike) -> None:
    """Register a CSV file or a folder of CSV files (scanned on every listing)."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise VocabularyError(f"{p}: no such vocabulary file or folder")
    if p not in _extra_paths:
        _extra_paths.append(p)


def _search_paths() -> list[Path]:
    env = [Path(s).expanduser() for s in os.environ.get(ENV_PATHS, "").split(os.pathsep) if s]
    return [VOCABULARY_DIR, *_extra_paths, *env]


def _scan() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for base in _search_paths():
        files = [base] if base.is_file() else sorted(base.glob("*.csv")) if base.is_dir() else []
        for f in files:
            if f.suffix.lower() == ".csv":
                found.setdefault(f.stem, f.resolve())
    return found


def list_vocabularies() -> list[str]:
    """Names of all registered vocabularies (file stems), sorted."""
    return sorted(_scan())


def vocabulary_path(name_or_path: str | os.PathLike) -> Path:
    """The CSV file for a registered name, or the given path when it is a file."""
    registry = _scan()
    key = str(name_or_path)
    if key in registry:
        return registry[key]
    p = Path(key).expanduser()
    if p.is_file():
        return p.resolve()
    known = ", ".join(sorted(registry)) or "none"
    raise VocabularyError(
        f"unknown vocabulary {key!r}: neither a registered name (known: {known}) nor a CSV file"
    )


def load_vocabulary(
    name_or_path: str | os.PathLike | Vocabulary = DEFAULT_VOCABULARY,
) -> Vocabulary:
    """Load and validate a vocabulary by registered name or CSV path (a ``Vocabulary`` passes).

    Raises ``VocabularyError`` naming the file, the row (1-based CSV line) and the reason for:
    unknown or missing columns, empty id or phrase, an id that is not snake_case, duplicate
    ids, identical poles, an empty file.
    """
    if isinstance(name_or_path, Vocabulary):
        return name_or_path
    path = vocabulary_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise VocabularyError(f"{path}: cannot read vocabulary ({exc})") from exc
    return parse_vocabulary(text, name=path.stem, path=str(path))


def parse_vocabulary(text: str, name: str = "custom", path: str | None = None) -> Vocabulary:
    """Validate CSV text into a ``Vocabulary`` (see ``load_vocabulary`` for the checks)."""
    where = path or name
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise VocabularyError(
            f"{where}: empty file (expected a header: {', '.join(REQUIRED_COLUMNS)})"
        )
    unknown = [h for h in header if h.lower() not in KNOWN_COLUMNS]
    if unknown:
        raise VocabularyError(
            f"{where}, line 1: unknown column(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(KNOWN_COLUMNS))})"
        )
    canonical = [COLUMN_ALIASES.get(h.lower(), h.lower()) for h in header]
    dupes = sorted({c for c in canonical if canonical.count(c) > 1})
    if dupes:
        raise VocabularyError(f"{where}, line 1: column(s) given twice: {', '.join(dupes)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in canonical]
    if missing:
        raise VocabularyError(f"{where}, line 1: missing column(s) {', '.join(missing)}")
    rows = []
    for raw in reader:
        line = reader.line_num
        if None in raw:
            raise VocabularyError(f"{where}, line {line}: more fields than columns")
        values = [(raw.get(h) or "").strip() for h in reader.fieldnames]
        if not any(values):
            continue  # blank line
        row = dict(zip(canonical, values, strict=True))
        row["_line"] = line
        rows.append(row)
    return _build(name, path, rows, lambda line: f"{where}, line {line}")


def _build(name: str, path: str | None, rows: list[dict], where) -> Vocabulary:
    if not rows:
        raise VocabularyError(f"{where(1)}: the vocabulary has no concepts")
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=1):
        loc = where(row.get("_line", i))
        cid = row.get("id", "")
        if not cid:
            raise VocabularyError(f"{loc}: empty id")
        if not _ID_PATTERN.match(cid):
            raise VocabularyError(
                f"{loc}: id {cid!r} is not snake_case (lower-case letters, digits, single '_')"
            )
        if cid in seen:
            raise VocabularyError(f"{loc}: duplicate id {cid!r} (first at {where(seen[cid])})")
        seen[cid] = row.get("_line", i)
        for pole in ("positive", "negative"):
            if not row.get(pole, ""):
                raise VocabularyError(f"{loc}: empty {pole} phrase for {cid!r}")
        if row["positive"].lower() == row["negative"].lower():
            raise VocabularyError(f"{loc}: positive and negative phrases of {cid!r} are identical")

    def col(c: str) -> tuple[str, ...]:
        return tuple(r.get(c, "") for r in rows)

    return Vocabulary(
        name=name,
        ids=col("id"),
        positive=col("positive"),
        negative=col("negative"),
        category=col("category"),
        explanation=col("explanation"),
        positive_prompt=col("positive_prompt"),
        negative_prompt=col("negative_prompt"),
        path=path,
    )
