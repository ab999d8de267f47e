"""Compatibility run: Starlette's and FastAPI's own test suites with corstrace around every app they build.

    python -m tests.compat                 # both suites, bare, then wrapped with the inspector on and off
    python -m tests.compat starlette --inspector off -- -k cors

See ``runner.py`` for how a run is set up, ``_plugin/corstrace_compat.py`` for how corstrace gets outermost,
and ``exclusions.py`` for what is excluded and which corstrace bugs are known.
"""
