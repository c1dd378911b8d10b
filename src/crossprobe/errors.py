"""Errors that crossprobe raises for bad input: each message names the culprit and the fix."""


class CrossprobeError(Exception):
    """Base class for every error crossprobe raises on purpose."""


class ConfigError(CrossprobeError, ValueError):
    """The configuration, a model or a dataset is unusable; the message says what to change."""


class CacheError(CrossprobeError):
    """A cached artefact is missing, incomplete or corrupted."""
