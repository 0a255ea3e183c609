"""Model registry: every model is registered by name and built from a config dict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["available", "build", "register"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
T = TypeVar("T", bound=Callable[..., nn.Module])


def register(name: str) -> Callable[[T], T]:
    """Class/factory decorator registering a model under ``name``.

    Raises:
        ValueError: if ``name`` is already registered.
    """

    def decorator(factory: T) -> T:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = factory
        return factory

    return decorator


def build(name: str, **config: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``config``.

    Raises:
        KeyError: unknown name (the message lists the registered models).
    """
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**config)


def available() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_MODELS)
