"""Model registry: every model is registered by name and built from a config dict.

Models from other packages register without editing accelmri, through the package entry-point group
``accelmri.models`` (:data:`ENTRY_POINT_GROUP`). In the plugin's ``pyproject.toml``::

    [project.entry-points."accelmri.models"]
    my_sr = "my_package.models:MySR"          # a factory: MySR(**config) -> nn.Module

The entry point's name is the model name (``model.name: my_sr`` in a config); its object is a factory (class or
function) called with the config's keyword arguments, or a module that registers the name itself with
:func:`register` when imported. Plugins are imported only when their model is built, and listed by
:func:`available`. A built-in name cannot be taken over by a plugin.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, TypeVar

from torch import nn

__all__ = ["ENTRY_POINT_GROUP", "available", "build", "parameters", "register"]

#: The package entry-point group of third-party models.
ENTRY_POINT_GROUP = "accelmri.models"

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


def _plugins() -> dict[str, EntryPoint]:
    """The installed packages' ``accelmri.models`` entry points by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_plugin(name: str) -> None:
    """Register the plugin model ``name`` if an installed package provides it (nothing happens otherwise).

    Raises:
        ImportError: the plugin's module fails to import.
        TypeError: its object is neither a factory nor a module that registers ``name``.
    """
    plugin = _plugins().get(name)
    if plugin is None:
        return
    try:
        loaded = plugin.load()
    except Exception as err:  # any failure inside a third-party module
        raise ImportError(f"model {name!r} from the entry point {plugin.value!r} ({ENTRY_POINT_GROUP}) failed to "
                          f"import: {err}") from err
    if name in _MODELS:  # the module registered itself
        return
    if isinstance(loaded, ModuleType) or not callable(loaded):
        raise TypeError(f"model {name!r} from the entry point {plugin.value!r} ({ENTRY_POINT_GROUP}) is neither a "
                        "factory nor a module that registers it")
    _MODELS[name] = loaded


def build(name: str, **config: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``config`` (a plugin's on first use).

    Raises:
        KeyError: unknown name (the message lists the registered models).
        ImportError, TypeError: a plugin that cannot be loaded (see :func:`_load_plugin`).
    """
    if name not in _MODELS:
        _load_plugin(name)
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(available())}")
    return _MODELS[name](**config)


def parameters(name: str) -> frozenset[str]:
    """The keyword arguments the registered model ``name`` takes (empty for a factory taking ``**kwargs`` only).

    Raises:
        KeyError, ImportError, TypeError: as :func:`build`.
    """
    if name not in _MODELS:
        _load_plugin(name)
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(available())}")
    return frozenset(key for key, p in inspect.signature(_MODELS[name]).parameters.items()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def available() -> list[str]:
    """Names of the registered models and of the installed plugins' models, sorted."""
    return sorted(set(_MODELS) | set(_plugins()))
