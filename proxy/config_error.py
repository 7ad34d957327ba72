"""The one error a proxy configuration raises: where it is wrong, and why. Pure."""

from __future__ import annotations


class ConfigError(ValueError):
    """A registration or flag the proxy cannot run from; `where` names it."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
