"""Checks of config values that name the key and value at fault (``shot=0: must be >= 1``).

Generic helpers for the engine's and the methods' config checks; they import nothing of the
package.
"""

from __future__ import annotations

from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value is invalid; the message names the key."""


def fail(key: str, value: Any, why: str) -> NoReturn:
    raise ConfigError(f"{key}={value!r}: {why}")


def check_int(cfg: DictConfig, key: str, low: int | None = None, high: int | None = None,
         optional: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        fail(key, value, "must be an integer")
    if low is not None and value < low:
        fail(key, value, f"must be >= {low}" + (f" and <= {high}" if high is not None else ""))
    if high is not None and value > high:
        fail(key, value, f"must be <= {high}" + (f" and >= {low}" if low is not None else ""))


def check_number(cfg: DictConfig, key: str, allow_zero: bool = False) -> None:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(key, value, "must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        fail(key, value, "must be >= 0" if allow_zero else "must be > 0")
