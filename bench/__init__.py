"""corstrace's benchmark suite (issue #6): run ``python -m bench`` (or ``python -m bench --quick``).

Not a test: nothing here asserts on timings. The sections are plain functions so that
``tests/test_bench_smoke.py`` can prove each one runs with tiny counts.
"""
