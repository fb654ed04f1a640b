"""The sweep: grid expansion, caching, execution and the result store."""

from simlink.sweep.grid import Cell, cell_seed, expand_grid
from simlink.sweep.runner import run_scenario
from simlink.sweep.store import ResultStore

__all__ = ["Cell", "ResultStore", "cell_seed", "expand_grid", "run_scenario"]
