"""Tables and figures from run directories; imports neither torch nor Avalanche.

``tables``: loading finished runs, mean ± sd tables, paired differences, generator
summaries; ``figures``: accuracy, forgetting, r sweeps, sample grids, replay balance.
"""
