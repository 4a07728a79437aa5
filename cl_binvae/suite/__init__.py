"""The benchmark suite: what a run is, how it runs, and where it is kept.

Configuration (no torch): ``config`` (streams, solvers), ``settings`` and ``replay_settings``
(a method's own settings as flags), ``registry`` (the methods), ``presets`` (protocols),
``run_config`` (a run and its name). Running: ``data``, ``streams``, ``solvers``, ``context``
(what a method's builder gets), ``experiment`` (one run), ``evaluation``, ``driver_plugins``,
``checkpoint``, ``metrics``, ``footprint`` (what a trained strategy keeps). Keeping:
``rundir``, ``atomic``, ``environment``. Command lines: ``cli``.
"""
