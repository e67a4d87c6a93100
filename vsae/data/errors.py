"""The error of bad activation data, shared by every batch source and data check."""

from __future__ import annotations


class DataError(ValueError):
    """Activation data of the wrong shape, type or content; the message names where."""
