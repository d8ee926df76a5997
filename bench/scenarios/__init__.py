"""The scenarios: ``fanout``, ``idle``, ``storm``, ``resume`` and ``rooms``.

Each is an async function from options and a ``Target`` to a result record;
``bench.runner`` picks one, runs it (once per point of a sweep) and reports.
"""
