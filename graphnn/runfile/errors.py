"""RunFileError: what every run-file check raises (names the file or --set item and the key).
"""
from __future__ import annotations




class RunFileError(ValueError):
    """A run file (or a --set override) is wrong: the message names where, the key and
    what is allowed."""

    def __init__(self, message: str, where: str | None = None, key: str | None = None):
        self.where, self.key, self.detail = where, key, message
        text = message
        if key:
            text = f"{key}: {text}"
        if where:
            text = f"{where}: {text}"
        super().__init__(text)


def _kind(v) -> str:
    """The TOML name of a value's type, for messages."""
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "table"
    return type(v).__name__
