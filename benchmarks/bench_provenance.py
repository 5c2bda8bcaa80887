"""Cost of reading what a file declares (``detector.provenance.read_provenance``).

Run: ``.venv/bin/python benchmarks/bench_provenance.py [--repeat 5]``. Prints the median time
per file for: a plain camera JPEG, the same picture signed with Content Credentials (the
c2pa-python Reader validates the signature and hashes the whole file), a Stable Diffusion
PNG, and, when ``../shared/samples`` is there, its files. Signing uses the tests' generated
certificate chain (``tests/provenance_fixtures.py``; needs ``cryptography``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import provenance_fixtures as fx  # noqa: E402

from detector.provenance import read_provenance  # noqa: E402


def median_ms(data_items: list[bytes], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for data in data_items:
            read_provenance(data)
        times.append((time.perf_counter() - start) / len(data_items))
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    photo = fx.picture((2048, 1536))
    cases = {
        "camera JPEG 2048x1536": [fx.encode(photo, "JPEG", quality=90)],
        "signed JPEG 2048x1536 (C2PA validated)": [fx.signed("JPEG", img=photo)],
        "Stable Diffusion PNG 96x64": [fx.sd_png()],
    }
    samples = ROOT.parent / "shared" / "samples"
    if samples.is_dir():
        files = sorted(p for p in samples.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
        cases[f"../shared/samples ({len(files)} files)"] = [p.read_bytes() for p in files]
    for name, items in cases.items():
        size = sum(len(d) for d in items) / len(items) / 1024
        print(f"{name:<45} {median_ms(items, args.repeat):8.2f} ms/file  ({size:,.0f} kB avg)")


if __name__ == "__main__":
    main()
