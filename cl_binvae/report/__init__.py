"""Tables and figures from run directories; imports neither torch nor Avalanche.

``tables``: loading finished runs, mean ± sd tables, paired differences, generator and
method diagnostics, compute; ``overview``: every stream in one table beside the published
values; ``figures``: accuracy, forgetting, r sweeps, sample grids, replay balance.
"""
