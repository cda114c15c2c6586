"""Callboard's benchmark (``scripts/bench``): baselines, submit, end to end, latency and memory.

``scripts/bench --help`` lists the knobs. One concern per module: ``options`` (the knobs),
``runner`` (the processes it starts, ``/proc`` readers), ``resources`` (its own database and
Redis db), ``stack`` (Callboard's Procfile processes), ``load`` and ``pyload`` (wrk, or a Python
load generator), ``client`` (its own HTTP requests), ``baselines`` (stock Dramatiq and bare
waitress, run by ``stock_actors`` and ``bare_app``), ``measures`` (submit and end to end),
``latency`` (submit → start), ``cpu`` (CPU use), ``profiling`` (optional py-spy), ``report``
(table and RESULT line), ``context`` (what phases share) and ``main`` (the order of the phases).
Nothing here is imported by Callboard itself.
"""
