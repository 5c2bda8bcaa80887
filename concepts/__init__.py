"""Text-grounded concepts: why a detector calls an image synthetic.

- ``concepts.vocabulary``: CSV vocabularies of antonym pairs, listed like a registry;
- ``concepts.directions``: prompt-ensemble text directions, cached per workspace;
- ``concepts.scores``: cosine of projected embeddings with the directions;
- ``concepts.bottleneck``: the concept bottleneck detector's directions from a vocabulary,
  its training on a workspace and the released checkpoints (the model itself, head type
  ``concept``, is ``detector.heads.ConceptBottleneck``, re-exported here);
- ``concepts.attribution``: exact attributions of the concept model, lasso surrogates with
  their fidelity for the other heads;
- ``concepts.importance``: importances per class, single-concept AUC per generator, the
  concept x generator matrix, custom concepts;
- ``concepts.report``: the workspace-level views the ``concepts`` and ``explain`` commands print;
- ``concepts.synthetic``: planted structure for tests and benchmarks.

See docs/concepts.md for the API the dashboard calls.
"""

import detector  # noqa: F401  (sets the OpenMP wait policy before torch loads)
