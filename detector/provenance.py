"""What an image file says about its own origin: Content Credentials and generator metadata.

The detector judges pixels; this module reads what the file *declares*, so the two can be
put side by side. Four kinds of declaration are read, from the bytes alone:

- **Content Credentials (C2PA)**, read and validated by the Content Authenticity
  Initiative's own library (``c2pa-python``): the active manifest's claim generator, the
  signer and issuer of its certificate, the signing time (present only when the signer used
  a time-stamp authority), the validation state, the failing checks, the actions (with their
  ``digitalSourceType``) and the ingredients. Validation runs offline: remote manifests and
  certificate revocation (OCSP) are never fetched, and no trust list is downloaded. A
  signature that checks out against a certificate outside the local trust anchors
  (``CUE_LENS_C2PA_TRUST_ANCHORS``, a PEM file; none by default) is reported as "valid,
  untrusted signer".
- **IPTC / XMP ``DigitalSourceType``** in the file's XMP packet.
- **PNG text chunks** written by generation tools: Stable Diffusion web UIs' ``parameters``
  (prompt, seed, model), ComfyUI's ``prompt`` and ``workflow`` graphs (JSON), InvokeAI's
  ``invokeai_metadata``, a ``Software``/``Source`` chunk naming a generator.
- **EXIF ``Software``** naming a known generator.

Everything is a claim made by whoever wrote the file: metadata can be stripped or forged,
and only a valid C2PA signature ties a claim to a certificate. :func:`provenance_summary`
words the declarations and sets them beside a detector verdict, saying plainly when the two
disagree; it never turns a declaration into a verdict.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from detector.images import (
    ImageDecodeError,
    _exif_text,
    _open,
    _quiet_pillow,
    _read_exif,
    _resolve_input,
)

__all__ = [
    "AI_SOURCE_TYPES",
    "GENERATOR_NAMES",
    "TRUST_ANCHORS_ENV",
    "ContentCredentials",
    "Declaration",
    "Provenance",
    "declaration_columns",
    "provenance_record",
    "provenance_summary",
    "read_provenance",
    "safe_read_provenance",
]

AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
"""IPTC digital source types that declare an image made (wholly or partly) by generative AI."""

CAPTURE_SOURCE_TYPES = ("digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm")
"""IPTC digital source types that declare a camera (or scanned film) capture."""

TRUST_ANCHORS_ENV = "CUE_LENS_C2PA_TRUST_ANCHORS"
"""Environment variable: a local PEM file of root certificates whose C2PA signers are trusted."""

GENERATOR_NAMES = (
    "Midjourney",
    "DALL-E",
    "DALL·E",
    "Stable Diffusion",
    "Stability AI",
    "SDXL",
    "Adobe Firefly",
    "Firefly",
    "NovelAI",
    "ComfyUI",
    "AUTOMATIC1111",
    "InvokeAI",
    "Fooocus",
    "Imagen",
    "Ideogram",
    "Leonardo.Ai",
    "Flux",
    "Bing Image Creator",
    "Image Creator from Microsoft Designer",
    "ChatGPT",
    "GPT-4o",
    "Gemini",
    "Sora",
    "Runway",
    "Craiyon",
)
"""Names that, in an EXIF ``Software`` field or a PNG ``Software``/``Source`` chunk, name an
image generator (matched as whole words, ignoring case)."""

_GENERATOR_PATTERN = re.compile(
    r"(?<![\w])(" + "|".join(re.escape(n) for n in GENERATOR_NAMES) + r")(?![\w])", re.IGNORECASE
)
_XMP_START, _XMP_END = b"<x:xmpmeta", b"</x:xmpmeta>"
_XMP_MAX = 4 * 1024 * 1024  # larger XMP packets are not read
_SOURCE_TYPE_PATTERNS = (
    re.compile(r"DigitalSourceType\s*=\s*[\"']([^\"']{1,300})[\"']"),
    re.compile(r"DigitalSourceType[^>]{0,200}?rdf:resource\s*=\s*[\"']([^\"']{1,300})[\"']"),
    re.compile(r"<[\w.-]+:DigitalSourceType>\s*([^<\s]{1,300})\s*<"),
)
_TEXT_LIMIT = 500  # characters kept of a prompt or other free text
_UNTRUSTED = "signingCredential.untrusted"


@dataclass
class ContentCredentials:
    """The active C2PA manifest of a file, as read and validated by ``c2pa-python``.

    ``state`` is ``"trusted"`` (valid, signer chains to a local trust anchor), ``"valid"``
    (valid signature and content hashes, signer not on a trust list), ``"invalid"`` (some
    check failed: see ``failures``) or ``"unreadable"`` (a manifest store is there but could
    not be read: ``error``). ``actions`` are dicts with ``action``, ``digital_source_type``
    (the IPTC term, e.g. ``trainedAlgorithmicMedia``) and ``software_agent``;
    ``ingredients`` dicts with ``title``, ``relationship`` and ``format``.
    """

    state: str
    claim_generator: str | None = None
    signer: str | None = None
    issuer: str | None = None
    signed_at: str | None = None
    title: str | None = None
    failures: list[str] = field(default_factory=list)
    actions: list[dict] = field(default_factory=list)
    ingredients: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def digital_source_type(self) -> str | None:
        """The source type of the ``c2pa.created`` action, else of any action, else None."""
        created = [a for a in self.actions if a.get("action") == "c2pa.created"]
        for action in created + self.actions:
            if action.get("digital_source_type"):
                return action["digital_source_type"]
        return None

    @property
    def state_text(self) -> str:
        return {
            "trusted": "valid signature from a trusted signer",
            "valid": "valid signature, but the signer's certificate is not on a trust list "
            "(none is fetched; see SECURITY.md)",
            "invalid": "INVALID: " + ("; ".join(self.failures) or "validation failed"),
            "unreadable": f"manifest could not be read ({self.error})",
        }.get(self.state, self.state)


@dataclass
class Declaration:
    """One thing the file says about how it was made.

    ``source``: ``c2pa``, ``xmp``, ``png-parameters``, ``comfyui``, ``png-text`` or
    ``exif-software``. ``kind``: ``ai`` (declares generative AI), ``capture`` (declares a
    camera capture) or ``other``. ``text`` completes "the file declares ...". ``details``
    holds model, seed, prompt, generator, source type where known. ``signed`` is true for a
    C2PA claim whose signature validated.
    """

    source: str
    kind: str
    text: str
    signed: bool = False
    details: dict = field(default_factory=dict)


@dataclass
class Provenance:
    """Everything :func:`read_provenance` found in one file."""

    format: str | None = None
    content_credentials: ContentCredentials | None = None
    xmp_source_type: str | None = None
    generation: dict = field(default_factory=dict)
    exif_software: str | None = None
    declarations: list[Declaration] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def declares_ai(self) -> bool:
        """Whether any declaration says generative AI made the image.

        A C2PA claim whose validation failed still counts as a declaration (it is in the
        file), but :func:`provenance_summary` words it as failing validation.
        """
        return any(d.kind == "ai" for d in self.declarations)

    @property
    def declares_capture(self) -> bool:
        return any(d.kind == "capture" for d in self.declarations)

    @property
    def declared_generator(self) -> str | None:
        """The generator the first AI declaration names, if any."""
        for d in self.declarations:
            if d.kind == "ai" and d.details.get("generator"):
                return str(d.details["generator"])
        return None

    def to_dict(self) -> dict:
        """JSON-ready form (the CLI's ``--json``)."""
        out = asdict(self)
        if self.content_credentials is not None:
            cc = out["content_credentials"]
            cc["digital_source_type"] = self.content_credentials.digital_source_type
            cc["state_text"] = self.content_credentials.state_text
        out["declares_ai"] = self.declares_ai
        out["declares_capture"] = self.declares_capture
        out["declared_generator"] = self.declared_generator
        return out


# -- reading -----------------------------------------------------------------------------------


def read_provenance(
    data: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    path: str | None = None,
    trust_anchors: str | None = None,
) -> Provenance:
    """Read a file's Content Credentials and generator metadata (offline, no pixels decoded).

    Args:
        data: encoded bytes, or a path to read them from.
        path: name used in errors; defaults to ``data`` when it is a path.
        trust_anchors: PEM text of root certificates to trust for C2PA signers; default:
            the file named by ``$CUE_LENS_C2PA_TRUST_ANCHORS``, else none.

    Returns:
        A :class:`Provenance`. Damaged metadata never raises: what could not be read is
        listed in ``errors``.

    Raises:
        ImageDecodeError: only when the file cannot be read at all (missing, empty).
    """
    data, path = _resolve_input(data, path)
    prov = Provenance()
    info: dict[str, Any] = {}
    with _quiet_pillow():
        try:
            img = _open(data)
            prov.format = img.format
            info = dict(img.info)
            software = _exif_software(img)
        except Exception:  # not an image we decode: C2PA and XMP may still be read
            software = None
    prov.content_credentials = _content_credentials(data, prov.format, trust_anchors, prov)
    prov.xmp_source_type = _xmp_source_type(data, info)
    prov.generation = _png_generation(info, prov) if prov.format == "PNG" else {}
    prov.exif_software = software
    prov.declarations = _declarations(prov)
    return prov


def _exif_software(img) -> str | None:
    if img.format == "PNG" and "exif" not in img.info:
        return None  # avoid decoding the PNG to its end looking for a late eXIf chunk
    return _exif_text(_read_exif(img), 0x0131)


_MIME = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "HEIF": "image/heif",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
}


def _offline_context(trust_anchors: str | None):
    """A c2pa Context that fetches nothing: no remote manifests, no OCSP, local anchors only."""
    import c2pa

    if trust_anchors is None:
        anchors_file = os.environ.get(TRUST_ANCHORS_ENV)
        if anchors_file:
            with open(anchors_file, encoding="utf-8") as handle:
                trust_anchors = handle.read()
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    return c2pa.Context(c2pa.Settings.from_dict(settings))


def _content_credentials(
    data: bytes, fmt: str | None, trust_anchors: str | None, prov: Provenance
) -> ContentCredentials | None:
    if b"jumb" not in data:  # every embedded manifest store is a JUMBF box
        return None
    try:
        import c2pa
    except ImportError:
        prov.errors.append("c2pa-python is not installed: Content Credentials not read")
        return None
    try:
        context = _offline_context(trust_anchors)
        mime = _MIME.get(fmt or "")
        stream = io.BytesIO(data)
        if mime is not None:
            reader = c2pa.Reader.try_create(mime, stream, context=context)
        else:
            reader = c2pa.Reader.try_create(stream, context=context)
    except Exception as exc:
        if _not_supported(exc):
            return None
        return ContentCredentials(state="unreadable", error=_short(exc))
    if reader is None:
        return None
    try:
        with reader:
            store = json.loads(reader.json())
    except Exception as exc:
        return ContentCredentials(state="unreadable", error=_short(exc))
    return _credentials_from_store(store)


def _not_supported(exc: BaseException) -> bool:
    name = type(exc).__name__
    return "NotSupported" in name or "ManifestNotFound" in name or "JumbfNotFound" in str(exc)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__.lstrip('_')}: {exc}".strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _credentials_from_store(store: dict) -> ContentCredentials:
    """Condense a c2pa manifest store report (``Reader.json()``) to its active manifest."""
    manifests = store.get("manifests") or {}
    manifest = manifests.get(store.get("active_manifest") or "") or {}
    raw_state = str(store.get("validation_state") or "").lower()
    statuses = store.get("validation_status") or []
    codes = [s.get("code", "") for s in statuses if isinstance(s, dict)]
    failures = [
        f"{s.get('code')}: {s.get('explanation') or ''}".rstrip(": ")
        for s in statuses
        if isinstance(s, dict) and s.get("code") != _UNTRUSTED
    ]
    if raw_state == "trusted":
        state = "trusted"
    elif raw_state == "invalid" or failures:
        state = "invalid"
    elif raw_state == "valid" or _UNTRUSTED in codes:
        state = "valid"
    else:
        state = "invalid" if failures else "valid"
    signature = manifest.get("signature_info") or {}
    return ContentCredentials(
        state=state,
        claim_generator=_claim_generator(manifest),
        signer=signature.get("common_name") or signature.get("issuer"),
        issuer=signature.get("issuer"),
        signed_at=signature.get("time"),
        title=manifest.get("title"),
        failures=failures,
        actions=_actions(manifest),
        ingredients=[
            {
                "title": ing.get("title"),
                "relationship": ing.get("relationship"),
                "format": ing.get("format"),
            }
            for ing in manifest.get("ingredients") or []
            if isinstance(ing, dict)
        ],
    )


def _claim_generator(manifest: dict) -> str | None:
    infos = manifest.get("claim_generator_info") or []
    if infos and isinstance(infos[0], dict) and infos[0].get("name"):
        version = infos[0].get("version")
        return f"{infos[0]['name']} {version}" if version else str(infos[0]["name"])
    generator = manifest.get("claim_generator")
    return str(generator) if generator else None


def _actions(manifest: dict) -> list[dict]:
    out = []
    for assertion in manifest.get("assertions") or []:
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            agent = action.get("softwareAgent")
            if isinstance(agent, dict):
                agent = agent.get("name")
            out.append(
                {
                    "action": action.get("action"),
                    "digital_source_type": _source_term(action.get("digitalSourceType")),
                    "software_agent": agent,
                }
            )
    return out


def _source_term(value: Any) -> str | None:
    """``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`` -> the term."""
    if not value:
        return None
    return str(value).rstrip("/").rsplit("/", 1)[-1].strip() or None


def _xmp_packet(data: bytes, info: dict) -> str | None:
    packet = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if isinstance(packet, bytes):
        packet = packet.decode("utf-8", errors="replace")
    if isinstance(packet, str) and packet:
        return packet[:_XMP_MAX]
    start = data.find(_XMP_START)
    if start < 0:
        return None
    end = data.find(_XMP_END, start, start + _XMP_MAX)
    if end < 0:
        return None
    return data[start : end + len(_XMP_END)].decode("utf-8", errors="replace")


def _xmp_source_type(data: bytes, info: dict) -> str | None:
    packet = _xmp_packet(data, info)
    if not packet or "DigitalSourceType" not in packet:
        return None
    for pattern in _SOURCE_TYPE_PATTERNS:
        found = pattern.search(packet)
        if found:
            return _source_term(found.group(1))
    return None


def _clip(text: Any) -> str | None:
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"


def _png_generation(info: dict, prov: Provenance) -> dict:
    """Generation settings from a PNG's text chunks: tool, model, seed, prompt."""
    if isinstance(info.get("parameters"), str):
        return {"tool": "Stable Diffusion web UI", **_a1111_parameters(info["parameters"])}
    for key in ("prompt", "workflow"):
        if isinstance(info.get(key), str):
            try:
                graph = json.loads(info[key])
            except ValueError:
                prov.errors.append(f"PNG text chunk {key!r} is not valid JSON")
                continue
            found = _comfy_prompt(graph) if key == "prompt" else _comfy_workflow(graph)
            if found is not None:
                return {"tool": "ComfyUI", **found}
    if isinstance(info.get("invokeai_metadata"), str):
        try:
            meta = json.loads(info["invokeai_metadata"])
        except ValueError:
            meta = {}
        model = meta.get("model")
        model = model.get("name") if isinstance(model, dict) else model
        return {
            "tool": "InvokeAI",
            "model": _clip(model),
            "seed": meta.get("seed"),
            "prompt": _clip(meta.get("positive_prompt")),
        }
    for key in ("Software", "Source"):
        value = info.get(key)
        if isinstance(value, str) and _GENERATOR_PATTERN.search(value):
            return {"tool": _clip(value), "prompt": _clip(info.get("Description"))}
    return {}


_A1111_SETTINGS_MAX = 2000  # characters of the settings line parsed (bounds the regex's work)
_A1111_FIELD = re.compile(r'\s*([\w .-]+?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _a1111_parameters(text: str) -> dict:
    """Parse a Stable Diffusion web UI ``parameters`` chunk (prompt, negative, settings line)."""
    lines = text.strip().splitlines()
    settings: dict[str, str] = {}
    if lines and re.match(r"\s*Steps:", lines[-1]):
        line = lines[-1][:_A1111_SETTINGS_MAX]
        settings = {k.strip(): v.strip().strip('"') for k, v in _A1111_FIELD.findall(line)}
        lines = lines[:-1]
    body = "\n".join(lines)
    prompt, _, negative = body.partition("Negative prompt:")
    seed = settings.get("Seed")
    return {
        "model": _clip(settings.get("Model") or settings.get("Model hash")),
        "seed": int(seed) if seed and seed.lstrip("-").isdigit() else seed,
        "prompt": _clip(prompt),
        "negative_prompt": _clip(negative),
        "sampler": settings.get("Sampler"),
        "steps": settings.get("Steps"),
    }


_COMFY_MODEL_INPUTS = ("ckpt_name", "unet_name", "model_name")
_COMFY_SEED_INPUTS = ("seed", "noise_seed")


def _comfy_prompt(graph: Any) -> dict | None:
    """Model, seed and positive prompt of a ComfyUI API-format graph (node id -> node)."""
    if not isinstance(graph, dict):
        return None
    nodes = {k: v for k, v in graph.items() if isinstance(v, dict) and "class_type" in v}
    if not nodes:
        return None
    model = seed = prompt = None
    for node in nodes.values():
        inputs = node.get("inputs") or {}
        if model is None:
            model = next(
                (inputs[k] for k in _COMFY_MODEL_INPUTS if isinstance(inputs.get(k), str)), None
            )
        if seed is None:
            seed = next(
                (inputs[k] for k in _COMFY_SEED_INPUTS if isinstance(inputs.get(k), int)), None
            )
        positive = inputs.get("positive")
        if prompt is None and isinstance(positive, list) and positive:
            source = nodes.get(str(positive[0])) or {}
            text = (source.get("inputs") or {}).get("text")
            prompt = text if isinstance(text, str) else None
    if prompt is None:
        prompt = next(
            (
                n["inputs"]["text"]
                for n in nodes.values()
                if "CLIPTextEncode" in str(n.get("class_type"))
                and isinstance((n.get("inputs") or {}).get("text"), str)
            ),
            None,
        )
    return {"model": _clip(model), "seed": seed, "prompt": _clip(prompt)}


def _comfy_workflow(graph: Any) -> dict | None:
    """Model, seed and a prompt from a ComfyUI UI-format workflow (``nodes`` with widgets)."""
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        return None
    model = seed = prompt = None
    for node in graph["nodes"]:
        if not isinstance(node, dict):
            continue
        kind, values = str(node.get("type", "")), node.get("widgets_values") or []
        if not isinstance(values, list) or not values:
            continue
        if model is None and "Loader" in kind and isinstance(values[0], str):
            model = values[0]
        elif seed is None and "KSampler" in kind and isinstance(values[0], int):
            seed = values[0]
        elif prompt is None and "CLIPTextEncode" in kind and isinstance(values[0], str):
            prompt = values[0]
    return {"model": _clip(model), "seed": seed, "prompt": _clip(prompt)}


# -- declarations and the summary --------------------------------------------------------------


def _source_kind(term: str | None) -> str:
    if term in AI_SOURCE_TYPES:
        return "ai"
    if term in CAPTURE_SOURCE_TYPES:
        return "capture"
    return "other"


def _source_words(term: str) -> str:
    return {
        "trainedAlgorithmicMedia": "that generative AI made it (trainedAlgorithmicMedia)",
        "compositeWithTrainedAlgorithmicMedia": "that it is a composite including "
        "generative-AI content (compositeWithTrainedAlgorithmicMedia)",
        "digitalCapture": "that it is a digital camera capture (digitalCapture)",
        "computationalCapture": "that it is a computational camera capture (computationalCapture)",
    }.get(term, f"the digital source type {term}")


def _declarations(prov: Provenance) -> list[Declaration]:
    out: list[Declaration] = []
    cc = prov.content_credentials
    if cc is not None and cc.state != "unreadable":
        term = cc.digital_source_type
        by = cc.claim_generator or "an unnamed tool"
        signer = cc.signer or "an unnamed signer"
        signed = cc.state in ("trusted", "valid")
        what = _source_words(term) if term else "Content Credentials without a source type"
        how = (
            f"in Content Credentials signed by {signer}"
            if signed
            else f"in Content Credentials whose validation FAILED (signer {signer})"
        )
        agents = [a["software_agent"] for a in cc.actions if a.get("software_agent")]
        generator = agents[0] if agents else cc.claim_generator
        out.append(
            Declaration(
                source="c2pa",
                kind=_source_kind(term),
                text=f"{what}, {how}, made with {by}",
                signed=signed,
                details={"generator": generator, "source_type": term, "state": cc.state},
            )
        )
    if prov.xmp_source_type:
        term = prov.xmp_source_type
        out.append(
            Declaration(
                source="xmp",
                kind=_source_kind(term),
                text=f"{_source_words(term)} in its XMP metadata (unsigned)",
                details={"source_type": term},
            )
        )
    gen = prov.generation
    if gen:
        tool = gen.get("tool") or "a generation tool"
        parts = [f"model {gen['model']}" if gen.get("model") else None]
        parts.append(f"seed {gen['seed']}" if gen.get("seed") is not None else None)
        settings = ", ".join(p for p in parts if p)
        source = {"Stable Diffusion web UI": "png-parameters", "ComfyUI": "comfyui"}.get(
            tool, "png-text"
        )
        out.append(
            Declaration(
                source=source,
                kind="ai",
                text=f"generation settings of {tool}"
                + (f" ({settings})" if settings else "")
                + " in its PNG text chunks (unsigned)",
                details={"generator": gen.get("model") or tool, **gen},
            )
        )
    if prov.exif_software:
        named = _GENERATOR_PATTERN.search(prov.exif_software)
        if named:
            out.append(
                Declaration(
                    source="exif-software",
                    kind="ai",
                    text=f"a generator in its EXIF Software field: {prov.exif_software!r} "
                    "(unsigned)",
                    details={"generator": named.group(1), "software": prov.exif_software},
                )
            )
    return out


def provenance_summary(prov: Provenance | None, verdict: str | None = None) -> dict:
    """The detector's verdict and the file's declarations side by side.

    Returns ``{"declares", "statement", "detector", "agreement", "sentence"}``:
    ``declares`` is ``ai``, ``capture`` or ``nothing``; ``statement`` "The file declares
    ..." (never a verdict); ``agreement`` is ``agree``, ``disagree`` or ``n/a`` (no verdict,
    an inconclusive one, or nothing declared); ``sentence`` says both in one line, starting
    with "Disagreement:" when the file and the detector contradict each other.
    """
    # the verdict words live with the scoring code (torch); credentials are read without it
    from detector.inference import LIKELY_REAL, LIKELY_SYNTHETIC

    decls = prov.declarations if prov is not None else []
    ai = [d for d in decls if d.kind == "ai"]
    capture = [d for d in decls if d.kind == "capture"]
    if ai:
        declares, lead = "ai", ai[0]
    elif capture:
        declares, lead = "capture", capture[0]
    else:
        declares, lead = "nothing", None
    if lead is None:
        others = "; ".join(d.text for d in decls)
        statement = (
            f"The file declares {others}."
            if others
            else "The file declares nothing about how it was made (no Content Credentials, no "
            "generator metadata)."
        )
    else:
        rest = [d.text for d in decls if d is not lead]
        statement = f"The file declares {lead.text}." + (
            f" Also: {'; '.join(rest)}." if rest else ""
        )
    detector = verdict or "no verdict"
    agreement = "n/a"
    if verdict in (LIKELY_REAL, LIKELY_SYNTHETIC) and declares != "nothing":
        says_synthetic = verdict == LIKELY_SYNTHETIC
        agreement = "agree" if says_synthetic == (declares == "ai") else "disagree"
    short = {
        "ai": "declared AI-generated",
        "capture": "declared a camera capture",
        "nothing": "no declaration",
    }[declares]
    if lead is not None and lead.source == "c2pa":
        state = (prov.content_credentials.state if prov.content_credentials else "") or ""
        who = prov.content_credentials.signer or "an unnamed signer"
        short = (
            f"signed as {'AI-generated' if declares == 'ai' else 'a camera capture'} by {who}"
            if state in ("trusted", "valid")
            else f"{short} in a manifest that FAILS validation"
        )
    elif lead is not None:
        short += f" ({lead.source}, unsigned)"
    prefix = {"disagree": "Disagreement: ", "agree": "Agreement: "}.get(agreement, "")
    claim = "the file declares nothing about its origin" if lead is None else f"the file is {short}"
    return {
        "declares": declares,
        "statement": statement,
        "detector": detector,
        "agreement": agreement,
        "sentence": f"{prefix}{claim}; detector: {detector}.",
    }


def declaration_columns(prov: Provenance | None) -> dict:
    """Flat columns for tables and CSV exports.

    ``declared_ai`` (bool), ``declared_capture`` (bool), ``declared_by`` (the sources, e.g.
    ``"c2pa+xmp"``), ``declared_generator``, ``c2pa_state`` (trusted / valid / invalid /
    unreadable / None), ``c2pa_signer``, ``c2pa_source_type``.
    """
    if prov is None:
        return {
            "declared_ai": None,
            "declared_capture": None,
            "declared_by": None,
            "declared_generator": None,
            "c2pa_state": None,
            "c2pa_signer": None,
            "c2pa_source_type": None,
        }
    cc = prov.content_credentials
    return {
        "declared_ai": prov.declares_ai,
        "declared_capture": prov.declares_capture,
        "declared_by": "+".join(d.source for d in prov.declarations) or None,
        "declared_generator": prov.declared_generator,
        "c2pa_state": cc.state if cc else None,
        "c2pa_signer": cc.signer if cc else None,
        "c2pa_source_type": cc.digital_source_type if cc else None,
    }


def safe_read_provenance(data, *, path: str | None = None) -> Provenance | None:
    """:func:`read_provenance`, or None when the file cannot be read at all."""
    try:
        return read_provenance(data, path=path)
    except ImageDecodeError:
        return None


def provenance_record(data, verdict: str | None = None, *, path: str | None = None) -> dict:
    """The provenance block of one image in ``predict --json`` / ``explain --json``.

    ``{"declares", "statement", "detector", "agreement", "sentence", "columns", "details"}``:
    :func:`provenance_summary` against ``verdict``, :func:`declaration_columns` and
    :meth:`Provenance.to_dict` (``None`` when the file cannot be read).
    """
    prov = safe_read_provenance(data, path=path)
    return {
        **provenance_summary(prov, verdict),
        "columns": declaration_columns(prov),
        "details": prov.to_dict() if prov is not None else None,
    }
