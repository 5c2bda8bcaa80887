"""``python -m detector convert-weights HF_DIR_OR_CACHE OUT``: transformers CLIP -> open_clip."""

from __future__ import annotations

import argparse

from detector.cli import print_json
from detector.commands.common import add_json_option


def register(sub) -> None:
    p = sub.add_parser(
        "convert-weights",
        help="convert a transformers CLIP checkpoint (the paper's HF cache) for --pretrained",
        description="Convert a Hugging Face transformers CLIP checkpoint (CLIPModel or "
        "CLIPVisionModelWithProjection, e.g. openai/clip-vit-large-patch14-336 as the "
        "authors' code caches it) into an open_clip checkpoint that `--model ViT-L-14-336 "
        "--pretrained OUT` loads (run with QuickGELU, as OpenAI trained it).",
    )
    p.add_argument(
        "source",
        help="a checkpoint folder (config.json + model.safetensors / pytorch_model.bin) or a "
        "Hugging Face cache directory holding models--openai--clip-vit-large-patch14-336",
    )
    p.add_argument("out", help="output file (.safetensors, or .pt for a plain tensor dict)")
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from detector.convert import convert_hf_clip  # torch and safetensors: only when converting

    summary = convert_hf_clip(args.source, args.out)
    if args.json:
        print_json(summary)
        return 0
    towers = "image and text towers" if summary["text_tower"] else "image tower only"
    print(
        f"converted {summary['source']} ({summary['layers']} layers, width "
        f"{summary['hidden_size']}, {summary['image_size']} px, {summary['hidden_act']}; "
        f"{towers}) -> {summary['out']}"
    )
    print(f"use it with: python -m detector embed DATA -w WS --pretrained {summary['out']}")
    return 0
