"""Cue Lens library: synthetic image detection with frozen CLIP features.

Data flows one way: images -> ``images`` -> ``extract`` (through ``backbone``) -> ``store``
-> ``heads`` / ``concepts`` -> ``metrics`` -> dashboard pages or CLI output.
"""

import os as _os

__version__ = "0.1.0"

# Idle OpenMP threads sleep instead of spinning. Torch's CPU kernels run on an OpenMP team
# per calling thread; when two of them share the cores (two ``embed`` runs, the dashboard and
# a command, several dashboard sessions), spinning threads hold the cores the others wait
# for: two concurrent tiny-clip embeds took 1.2-23 s instead of 0.3 s, and two ViT-B-16
# forwards ran 11% slower in total (benchmarks/bench_concurrent.py). One process alone runs
# as fast either way. This must be set before torch loads; a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
