"""The sweep: grid expansion, training before the sweep, payload paths, error policies, the
runner and the result store. Names load on first use (the scenario schema imports the error
policies from here without pulling in the runner)."""

from simlink.lazy import lazy_exports

_NAMES = {
    **dict.fromkeys(["Cell", "cell_seed", "expand_grid"], "simlink.sweep.grid"),
    "run_scenario": "simlink.sweep.runner",
    "ResultStore": "simlink.sweep.store",
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
__all__ = sorted(_NAMES)
