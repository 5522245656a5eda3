"""A state machine as data: named states and the legal transitions between them.

Every status change of an entity goes through :meth:`StateMachine.check`, which either accepts
the transition or raises :class:`InvalidTransition` naming the current state. The database
layer then applies it with a conditional UPDATE on the observed state, so that concurrent
writers are resolved atomically.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from ctaprod.core.errors import InvalidTransition

S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    entity: str
    transitions: Mapping[S, frozenset[S]]
    final: frozenset[S] = field(default_factory=frozenset)

    def allowed(self, current: S, target: S) -> bool:
        return target in self.transitions.get(current, frozenset())

    def check(self, ident: object, current: S, target: S) -> None:
        """Raise InvalidTransition unless ``current -> target`` is legal."""
        if not self.allowed(current, target):
            why = "final state" if current in self.final else ""
            raise InvalidTransition(self.entity, ident, current.value, target.value, why)

    def sources(self, target: S) -> frozenset[S]:
        """States from which ``target`` can be reached in one step."""
        return frozenset(s for s, targets in self.transitions.items() if target in targets)


def table(rows: Iterable[tuple[S, Iterable[S]]]) -> dict[S, frozenset[S]]:
    return {src: frozenset(dst) for src, dst in rows}
