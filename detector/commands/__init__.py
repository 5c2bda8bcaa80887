"""One module per command of ``python -m detector``; see ``detector.cli``."""
