"""The installed face of concbench: one top-level name, ``concbench``, in site-packages.

The repository keeps four top-level folders, ``bench``, ``clients``, ``protocol`` and
``servers``, and imports them by those names: the launch contract (docs/protocol.md) starts a
model as ``python -m servers MODEL``, and ``bench regress`` runs that command inside a worktree
of an older revision, whose code knows only those names. Renaming them would break every such
revision. An installed wheel therefore puts the four folders inside ``concbench/`` (setup.py
maps ``concbench.bench`` to ``bench/`` and so on) instead of at the top of site-packages, where
names this generic would collide with other projects'; the ``concbench`` command
(``concbench.command``) puts that folder first on its own ``sys.path`` and on its children's
``PYTHONPATH``, so the code runs unchanged and no other program ever sees a top-level ``bench``.
"""
