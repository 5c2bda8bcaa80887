"""Hugging Face ``transformers`` CLIP weights -> an open_clip checkpoint Cue Lens loads.

The paper's code keeps OpenAI's CLIP in the Hugging Face cache in transformers' format
(``openai/clip-vit-large-patch14-336``: ``CLIPModel`` or ``CLIPVisionModelWithProjection``).
:func:`convert_hf_clip` renames and reshapes those tensors into open_clip's layout, so that
``--model ViT-L-14-336 --pretrained OUT`` runs the same network (with QuickGELU, see
``detector.backbone.openai_variant``). Only tensors are read (safetensors, or
``torch.load(weights_only=True)``); nothing is unpickled.

Mapping, per tower (``vision_model`` -> ``visual``, ``text_model`` -> the text tower):
query, key and value projections are concatenated into ``in_proj_weight``/``in_proj_bias``;
``fc1``/``fc2`` become ``mlp.c_fc``/``mlp.c_proj``; ``layer_norm1``/``2`` become
``ln_1``/``ln_2``; ``visual_projection.weight`` (out, in) becomes ``visual.proj`` (in, out),
likewise ``text_projection``. A vision-only source gives a vision-only checkpoint (no text
encoder: concept directions then need another source of text weights).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from detector.errors import CueLensError

HF_REPO = "openai/clip-vit-large-patch14-336"


class ConversionError(CueLensError):
    """A checkpoint cannot be converted."""


def find_hf_snapshot(source: str | os.PathLike) -> Path:
    """The folder holding ``config.json`` and the weights: ``source`` itself, or the newest
    snapshot of ``openai/clip-vit-large-patch14-336`` (or any CLIP repo) under a Hugging Face
    cache directory."""
    root = Path(source).expanduser()
    if (root / "config.json").is_file():
        return root
    candidates = []
    for repo in [root, *root.glob("models--*"), *root.glob("hub/models--*")]:
        for snap in (repo / "snapshots").glob("*") if (repo / "snapshots").is_dir() else []:
            if (snap / "config.json").is_file() and _weight_files(snap):
                candidates.append(snap)
    if not candidates:
        raise ConversionError(
            f"{root}: no transformers CLIP checkpoint here (expected config.json and "
            f"model.safetensors or pytorch_model.bin, or a Hugging Face cache holding "
            f"models--openai--clip-vit-large-patch14-336)"
        )
    preferred = [c for c in candidates if "clip-vit-large-patch14-336" in str(c)]
    return max(preferred or candidates, key=lambda p: p.stat().st_mtime)


def hf_cache_hint() -> str | None:
    """A Hugging Face cache snapshot of the paper's CLIP, if one exists on this machine."""
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HF_HOME")]
    roots += [str(Path("~/.cache/huggingface/hub").expanduser())]
    for root in filter(None, roots):
        base = Path(root)
        for candidate in (base, base / "hub"):
            repo = candidate / "models--openai--clip-vit-large-patch14-336"
            if repo.is_dir():
                try:
                    return str(find_hf_snapshot(repo))
                except ConversionError:
                    continue
    return None


def _weight_files(folder: Path) -> list[Path]:
    found = sorted(folder.glob("*.safetensors"))
    return found or sorted(folder.glob("pytorch_model*.bin"))


def read_hf_state(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a transformers checkpoint folder (sharded files merged)."""
    files = _weight_files(folder)
    if not files:
        raise ConversionError(f"{folder}: no model.safetensors or pytorch_model.bin")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(str(file)))
        else:
            loaded = torch.load(str(file), map_location="cpu", weights_only=True)
            state.update(loaded)
    return state


def _tower(state: dict, src: str, dst: str, layers: int) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(layers):
        a = f"{src}.encoder.layers.{i}."
        b = f"{dst}transformer.resblocks.{i}."
        q, k, v = (state[f"{a}self_attn.{n}_proj.weight"] for n in ("q", "k", "v"))
        out[b + "attn.in_proj_weight"] = torch.cat([q, k, v], dim=0)
        qb, kb, vb = (state[f"{a}self_attn.{n}_proj.bias"] for n in ("q", "k", "v"))
        out[b + "attn.in_proj_bias"] = torch.cat([qb, kb, vb], dim=0)
        pairs = {
            "self_attn.out_proj": "attn.out_proj",
            "layer_norm1": "ln_1",
            "layer_norm2": "ln_2",
            "mlp.fc1": "mlp.c_fc",
            "mlp.fc2": "mlp.c_proj",
        }
        for hf, oc in pairs.items():
            for p in ("weight", "bias"):
                out[f"{b}{oc}.{p}"] = state[f"{a}{hf}.{p}"]
    return out


def _count_layers(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.encoder\.layers\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def hf_to_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers CLIP state dict into open_clip's (``visual.*`` and, when the
    text tower is there, the text keys)."""
    state = {k.removeprefix("model.") if k.startswith("model.") else k: v for k, v in state.items()}
    v = "vision_model"
    if f"{v}.embeddings.class_embedding" not in state:
        raise ConversionError(
            "not a transformers CLIP checkpoint: no vision_model.embeddings.class_embedding"
        )
    if "visual_projection.weight" not in state:
        raise ConversionError(
            "the checkpoint has no visual_projection (a CLIPVisionModel without projection); "
            "the projected tap needs CLIPVisionModelWithProjection or CLIPModel weights"
        )
    out = {
        "visual.class_embedding": state[f"{v}.embeddings.class_embedding"],
        "visual.conv1.weight": state[f"{v}.embeddings.patch_embedding.weight"],
        "visual.positional_embedding": state[f"{v}.embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": state[f"{v}.pre_layrnorm.weight"],
        "visual.ln_pre.bias": state[f"{v}.pre_layrnorm.bias"],
        "visual.ln_post.weight": state[f"{v}.post_layernorm.weight"],
        "visual.ln_post.bias": state[f"{v}.post_layernorm.bias"],
        "visual.proj": state["visual_projection.weight"].t(),
    }
    out.update(_tower(state, v, "visual.", _count_layers(state, v)))
    t = "text_model"
    if f"{t}.embeddings.token_embedding.weight" in state and "text_projection.weight" in state:
        out.update(
            {
                "token_embedding.weight": state[f"{t}.embeddings.token_embedding.weight"],
                "positional_embedding": state[f"{t}.embeddings.position_embedding.weight"],
                "ln_final.weight": state[f"{t}.final_layer_norm.weight"],
                "ln_final.bias": state[f"{t}.final_layer_norm.bias"],
                "text_projection": state["text_projection.weight"].t(),
                "logit_scale": state.get("logit_scale", torch.tensor(4.6052)).reshape(()),
            }
        )
        out.update(_tower(state, t, "", _count_layers(state, t)))
    return {k: t.detach().to(torch.float32).contiguous() for k, t in out.items()}


def convert_hf_clip(source: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Convert the transformers CLIP at ``source`` (a folder or HF cache) into ``out``.

    ``out`` ending in ``.safetensors`` is written with safetensors, anything else with
    ``torch.save`` of a plain tensor dict (loadable with ``weights_only=True``). Returns a
    summary: source folder, output, tensors, whether the text tower was included, and the
    vision config found (hidden size, layers, image size, activation).
    """
    folder = find_hf_snapshot(source)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{folder / 'config.json'}: unreadable ({exc})") from exc
    vision_cfg = config.get("vision_config", config)
    act = vision_cfg.get("hidden_act", "quick_gelu")
    if act != "quick_gelu":
        raise ConversionError(
            f"{folder}: hidden_act is {act!r}; Cue Lens runs converted OpenAI CLIP weights "
            f"with QuickGELU, so only quick_gelu checkpoints convert faithfully"
        )
    converted = hf_to_open_clip(read_hf_state(folder))
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(converted, str(tmp))
    else:
        torch.save(converted, str(tmp))
    os.replace(tmp, out)
    return {
        "source": str(folder),
        "out": str(out),
        "tensors": len(converted),
        "text_tower": any(not k.startswith("visual.") for k in converted),
        "hidden_size": vision_cfg.get("hidden_size"),
        "layers": vision_cfg.get("num_hidden_layers"),
        "image_size": vision_cfg.get("image_size"),
        "hidden_act": act,
    }
