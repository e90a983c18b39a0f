"""Reports a person opens in a browser: one self-contained HTML file each, no network needed to view it.

- ``write_score_report``: what ``score.py --report`` writes (worst videos, where their quality drops, how far
  each score can be trusted).
- ``write_run_report``: the ``report.html`` of a ``fit.py`` run directory (curves, scatter, metrics, configs).
"""
