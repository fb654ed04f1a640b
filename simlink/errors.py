"""Exceptions with messages that name the offending file, field or value."""


class SimlinkError(Exception):
    """Base class for user-facing errors (the CLI prints these without a traceback)."""


class ScenarioError(SimlinkError):
    """A scenario file is missing, unreadable or invalid."""


class DatasetNotFoundError(SimlinkError):
    """A dataset's files are not where the scenario says (message lists every path tried)."""


class DecodeError(SimlinkError):
    """A source decoder could not turn a (possibly corrupted) bitstream into an image."""
