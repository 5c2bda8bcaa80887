"""Cold start to the first verdict: what the Detect page does for its first upload.

Run: ``.venv/bin/python benchmarks/bench_first_verdict.py --checkpoint FILE [--model M]``
(``benchmarks/bench_reference.py`` leaves a random-weights ViT-L-14-336 checkpoint in
``/tmp/cue-bench``).

In a fresh process, measured from the interpreter's start: importing the library, loading the
backbone (``precision=auto``: on the first run on a machine this includes the precision
probe), then embedding one sample image and scoring it with a linear head, as the page does
(``detector.extract.embed_bytes``); then a second image, for the steady state. The dashboard
starts the load in the background when a page opens (``ui.resources.warm_backbone``), so an
upload arriving ``t`` seconds after opening waits ``max(0, load - t)`` plus the embedding.
Measured outside Streamlit (its own start-up and page drawing come on top).
"""

from __future__ import annotations

import argparse
import time

T0 = time.perf_counter()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model", default="ViT-L-14-336")
    parser.add_argument("--samples", default=str(REPO.parent / "shared" / "samples"))
    args = parser.parse_args()

    import numpy as np

    from detector.backbone import load_backbone
    from detector.extract import embed_bytes

    t_import = time.perf_counter()
    backbone = load_backbone(args.model, args.checkpoint)
    t_load = time.perf_counter()
    images = sorted((Path(args.samples) / "real").glob("*.*"))[:2]
    rng = np.random.default_rng(0)
    w = rng.normal(size=backbone.pooled_dim).astype(np.float32)
    verdicts, times = [], []
    for path in images:
        start = time.perf_counter()
        [result] = embed_bytes([(path.name, path.read_bytes())], backbone)
        verdicts.append(1 / (1 + np.exp(-float(result.pooled @ w) / 100)))
        times.append(time.perf_counter() - start)
    decision = backbone.precision_decision
    print(f"model {args.model}, precision {decision.summary() if decision else backbone.precision}")
    print(f"imports {t_import - T0:.1f} s, backbone load {t_load - t_import:.1f} s")
    print(
        f"first verdict {times[0]:.1f} s after load; cold start to first verdict "
        f"{t_load - T0 + times[0]:.1f} s; next image {times[1]:.1f} s"
    )


if __name__ == "__main__":
    main()
