"""Streamlit helpers of the Cue Lens dashboard and its Plotly chart builders.

Plain Python (no Streamlit import), testable alone:

- ``charts``: functions from numbers to Plotly figures;
- ``settings``: environment settings; ``jobs``: background work with progress and cancel;
- ``tasks`` / ``training``: what the background jobs run (library calls).

Streamlit side:

- ``resources``: everything cached (models, heads, workspace views, the job registry);
- ``context``: the session's workspace, backbone and detector; ``frame``: sidebar and notices;
- ``adapters`` / ``analysis``: small arrangements of library calls for the pages, with their
  caches; ``views``: shared widgets (notices, error messages, job panels, model cards).

The library (``detector``, ``concepts``) never imports this package.
"""
