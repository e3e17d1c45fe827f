"""A tiny name → value registry shared by every objective family (pairwise, listwise, Nash, ...).

Each family keeps one `Registry(kind)`; lookups of unknown names fail with a `PrefjaxError` that lists
every known name (and suggests a close match), so a typo in a config never reaches JAX.

  LOSSES = Registry("pairwise objective")
  LOSSES.register("sigmoid", sigmoid_objective)
  LOSSES.alias("dpo", "sigmoid")
  LOSSES.get("dpo")           # the sigmoid objective
  LOSSES.get("dpoo")          # PrefjaxError: unknown pairwise objective 'dpoo' (did you mean 'dpo'?) ...
  dict(LOSSES.view)           # read-only live mapping name → value, aliases included
"""

import difflib
import types
from typing import Any, Generic, Iterator, TypeVar

from prefjax.errors import PrefjaxError

T = TypeVar("T")


class Registry(Generic[T]):
  """An explicit dict registry of named values of one kind, with aliases and a clear unknown-name error.

  Attributes:
    kind: what the values are, in words ("pairwise objective"); used in error messages.
    view: a read-only, live `Mapping[str, T]` of every registered name (aliases included).
  """

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}
    self._aliases: dict[str, str] = {}
    self.view = types.MappingProxyType(self._entries)

  def register(self, name: str, value: T, *, overwrite: bool = False) -> T:
    """Adds `value` under `name` and returns it.

    Args:
      name: a non-empty string.
      value: what `get(name)` returns.
      overwrite: replace an existing entry of the same name instead of raising.

    Returns:
      `value`, so the call can be used as an expression.

    Raises:
      PrefjaxError: if `name` is not a non-empty string, or is taken and `overwrite` is False.
    """
    if not isinstance(name, str) or not name:
      raise PrefjaxError(f"{self.kind} name must be a non-empty string, got {name!r}")
    if name in self._entries and not overwrite:
      raise PrefjaxError(
          f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it")
    self._entries[name] = value
    self._aliases.pop(name, None)
    for alias, target in self._aliases.items():  # aliases follow an overwritten target
      if target == name:
        self._entries[alias] = value
    return value

  def alias(self, alias: str, target: str, *, overwrite: bool = False) -> T:
    """Registers `alias` as another name for the value already registered as `target`."""
    value = self.get(target)
    self.register(alias, value, overwrite=overwrite)
    self._aliases[alias] = self._aliases.get(target, target)
    return value

  def unregister(self, name: str) -> T:
    """Removes `name` (and every alias that points to it) and returns its value."""
    value = self.get(name)
    del self._entries[name]
    self._aliases.pop(name, None)
    for alias in [a for a, target in self._aliases.items() if target == name]:
      del self._entries[alias]
      del self._aliases[alias]
    return value

  def get(self, name: str) -> T:
    """Returns the value registered as `name`.

    Raises:
      PrefjaxError: for an unknown name (or a non-string); the message lists every known name.
    """
    if isinstance(name, str) and name in self._entries:
      return self._entries[name]
    message = f"unknown {self.kind} {name!r}"
    if isinstance(name, str):
      close = difflib.get_close_matches(name, self._entries, n=1)
      if close:
        message += f" (did you mean {close[0]!r}?)"
    raise PrefjaxError(f"{message}; known {self.kind} names: {', '.join(self.names())}")

  def names(self) -> list[str]:
    """Every registered name, aliases included, sorted."""
    return sorted(self._entries)

  def canonical(self, name: str) -> str:
    """The name an alias points to (a name that is not an alias is its own canonical name)."""
    self.get(name)
    return self._aliases.get(name, name)

  def __getitem__(self, name: str) -> T:
    return self.get(name)

  def __contains__(self, name: Any) -> bool:
    return isinstance(name, str) and name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def __len__(self) -> int:
    return len(self._entries)

  def __repr__(self) -> str:
    return f"Registry({self.kind!r}, names={self.names()})"
