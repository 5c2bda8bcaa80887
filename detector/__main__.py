"""``python -m detector ...``: the Cue Lens command line."""

import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main())
