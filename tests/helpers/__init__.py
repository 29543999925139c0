"""What the test suites share, imported as ``helpers.<module>`` (``tests`` is on
``sys.path`` through ``pythonpath`` in ``pyproject.toml``'s pytest settings).

- :mod:`helpers.project`: a project folder (``Project``), workflows as dicts
  (``mapreduce``), the CLI in a subprocess or in-process (``CliRun``, ``run_main``);
- :mod:`helpers.jobdb`: ``JobDb``, read-only queries on a job's database;
- :mod:`helpers.processes`: liveness of processes and process groups, from ``/proc``;
- :mod:`helpers.jobs`: jobs stopped and resumed for real (``Workspace``, ``Coordinator``,
  the marker lines their commands write);
- :mod:`helpers.reliability`: seeds that reproduce, the no-traceback check;
- :mod:`helpers.damage`: a job killed halfway to damage, and the user's repair flow;
- :mod:`helpers.cluster`: the executor choice, a local Dask cluster, one whose workers
  tests may kill (``OwnCluster``);
- :mod:`helpers.continuation`: attempts continued after a crash or a lost worker (the
  fake agent's log, ``crash``, the three-step template and its checks).

Fixtures stay in the ``conftest.py`` files; they build on these helpers.
"""
