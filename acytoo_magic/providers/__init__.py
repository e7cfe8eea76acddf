"""Provider lookup: a built-in name, ``package.module:Class``, an entry point, or any provider object."""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any

from ..errors import ProviderNotFound
from .acytoo import Acytoo
from .base import (
    AsyncGeneratorProvider,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderTimeout,
    ResponseTooLarge,
)
from .local import Local
from .openai import OpenAICompatible

BUILTINS: dict[str, Any] = {"acytoo": Acytoo, "openai": OpenAICompatible, "local": Local}
ENTRY_POINT_GROUP = "acytoo_magic.providers"

__all__ = [
    "BUILTINS",
    "Acytoo",
    "AsyncGeneratorProvider",
    "OpenAICompatible",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderProtocolError",
    "ProviderTimeout",
    "ResponseTooLarge",
    "available",
    "resolve",
]




def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> dict[str, str]:
    """Name -> where it comes from, for ``%acytoo providers``."""
    found = {name: f"{cls.__module__}.{cls.__qualname__}" for name, cls in BUILTINS.items()}
    found.update({name: ep.value for name, ep in _plugins().items() if name not in found})
    return found


def is_provider(obj: Any) -> bool:
    return callable(getattr(obj, "create_async_generator", None))


def resolve(spec: Any) -> Any:
    """Return a provider for ``spec``: a name, ``module:Class``, an entry point, or an object.

    Anything with a ``create_async_generator`` method is accepted as is (a g4f provider class, say).
    """
    if is_provider(spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ProviderNotFound(f"not a provider: {spec!r} (expected a name or module:Class)")
    name = spec.strip()
    if name.lower() in BUILTINS:
        return BUILTINS[name.lower()]
    plugins = _plugins()
    if name in plugins:
        obj = plugins[name].load()
    elif ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise ProviderNotFound(f"cannot load provider {name!r}: {exc}") from None
    else:
        known = ", ".join(sorted(available()))
        raise ProviderNotFound(f"unknown provider {name!r}; known: {known}, or module:Class")
    if not is_provider(obj):
        raise ProviderNotFound(
            f"{name!r} has no create_async_generator(model, messages, proxy=None, **kwargs)"
        )
    return obj


def provider_name(provider: Any) -> str:
    for name, cls in BUILTINS.items():
        if provider is cls:
            return name
    target = provider if inspect.isclass(provider) else type(provider)
    return f"{target.__module__}:{target.__qualname__}"
