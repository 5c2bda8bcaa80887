"""Cue Lens library: synthetic image detection with frozen CLIP features.

Data flows one way: images -> ``images`` -> ``extract`` (through ``backbone``) -> ``store``
-> ``heads`` / ``concepts`` -> ``metrics`` -> dashboard pages or CLI output.
"""

__version__ = "0.1.0"
