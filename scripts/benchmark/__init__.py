"""Callboard's benchmark (``scripts/bench``): baselines, submit, end to end, latency and memory.

``python -m scripts.benchmark --help`` lists the knobs. Modules, one concern each:
``options`` (the knobs), ``runner`` (the processes it starts), ``resources`` (its own database
and Redis db), ``load`` and ``pyload`` (wrk, or a Python load generator), ``baselines`` (stock
Dramatiq and bare waitress), ``measures`` (the Callboard figures), ``report`` (table and RESULT
line) and ``main`` (the order of the phases). ``stock_actors`` and ``bare_app`` are what the
baselines run. Nothing here is imported by Callboard itself.
"""
