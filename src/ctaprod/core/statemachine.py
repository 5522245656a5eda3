"""A state machine as data: named states, the legal transitions, and the hooks they fire.

Every status change of an entity goes through its machine: :meth:`StateMachine.refusal` says
why a transition is illegal (or None), :meth:`StateMachine.check` raises
:class:`InvalidTransition` for it. What must happen with a transition (an end time, queue
membership, a history row) is declared here as a named :class:`Hook` with the states it leaves
and enters, so that the entry point runs it for every caller (the logic layer binds each name
to its implementation and refuses a machine whose hooks it does not implement).

The outcome of a batch of requested changes is a :class:`TransitionResult`: the transitions
applied, those the machine rejected (with the reason), and those *missed*: checked against the
state read, but the conditional write matched nothing because the row changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

from ctaprod.core.errors import InvalidTransition, NotFound

S = TypeVar("S", bound=StrEnum)
T = TypeVar("T")


@dataclass(frozen=True)
class Hook(Generic[S]):
    """A named effect of the transitions from one of ``leaving`` to one of ``entering``.

    None means any state: ``Hook("end_time", entering=FINAL)`` fires on entering a final
    state from anywhere, ``Hook("dequeue", leaving={WAITING})`` on leaving Waiting for
    anywhere, ``Hook("history")`` on every transition. Hooks fire in declaration order.
    """

    name: str
    entering: frozenset[S] | None = None
    leaving: frozenset[S] | None = None

    def fires(self, old: S, new: S) -> bool:
        return (self.entering is None or new in self.entering) and (
            self.leaving is None or old in self.leaving
        )


def on_enter(name: str, states: Iterable[S], *, leaving: Iterable[S] | None = None) -> Hook[S]:
    """A hook fired on entering one of ``states`` (from one of ``leaving``; None: any)."""
    return Hook(name, frozenset(states), None if leaving is None else frozenset(leaving))


def on_leave(name: str, states: Iterable[S]) -> Hook[S]:
    """A hook fired on leaving one of ``states`` for any other state."""
    return Hook(name, None, frozenset(states))


@dataclass(frozen=True)
class StateMachine(Generic[S]):
    entity: str
    transitions: Mapping[S, frozenset[S]]
    final: frozenset[S] = field(default_factory=frozenset)
    hooks: tuple[Hook[S], ...] = ()

    def __post_init__(self) -> None:
        names = [h.name for h in self.hooks]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.entity} machine: hook names must be unique: {names}")
        # Per (old, new): the hooks it fires. Bulk changes plan one step per row: computed
        # once per pair, not once per row.
        object.__setattr__(self, "_fired", {})

    def allowed(self, current: S, target: S) -> bool:
        return target in self.transitions.get(current, frozenset())

    def refusal(self, current: S, target: S) -> str | None:
        """Why ``current -> target`` is illegal, or None when it is legal."""
        if self.allowed(current, target):
            return None
        text = f"cannot go from {current.value} to {target.value}"
        return f"{text} (final state)" if current in self.final else text

    def check(self, ident: object, current: S, target: S) -> None:
        """Raise InvalidTransition unless ``current -> target`` is legal."""
        if not self.allowed(current, target):
            why = "final state" if current in self.final else ""
            raise InvalidTransition(self.entity, ident, current.value, target.value, why)

    def sources(self, target: S) -> frozenset[S]:
        """States from which ``target`` can be reached in one step."""
        return frozenset(s for s, targets in self.transitions.items() if target in targets)

    def hooks_for(self, old: S, new: S) -> tuple[Hook[S], ...]:
        """The hooks that ``old -> new`` fires, in declaration order."""
        cache: dict[tuple[S, S], tuple[Hook[S], ...]] = self._fired  # type: ignore[attr-defined]
        found = cache.get((old, new))
        if found is None:
            found = cache[(old, new)] = tuple(h for h in self.hooks if h.fires(old, new))
        return found


def table(rows: Iterable[tuple[S, Iterable[S]]]) -> dict[S, frozenset[S]]:
    return {src: frozenset(dst) for src, dst in rows}


# --- requested changes and their outcome ---------------------------------------------------


@dataclass(frozen=True)
class Change(Generic[S]):
    """A requested step: go to ``target``, with a reason (minor status, status reason...) and
    other columns to write in the same conditional UPDATE."""

    target: S
    reason: str = ""
    values: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Transition(Generic[S]):
    """One checked step of one entity, from the state read (or left by its previous step)."""

    ident: int
    old: S
    new: S
    reason: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected(Generic[S]):
    """A requested step the machine refused; ``current`` None: the entity does not exist."""

    ident: int
    current: S | None
    target: S | None
    reason: str


@dataclass(frozen=True)
class Missed(Generic[S]):
    """A checked change whose conditional write matched nothing: the entity was no longer in
    ``old`` (the state read) when written, it changed concurrently. ``new`` is the state the
    change would have left (the last of a chain). Nothing of it was written and no hook ran."""

    ident: int
    old: S
    new: S


@dataclass
class TransitionResult(Generic[S, T]):
    """What one call of an entity's entry point did. ``states`` holds the rows read before the
    change (or passed in as known), by ID."""

    entity: str
    states: dict[int, T] = field(default_factory=dict)
    applied: list[Transition[S]] = field(default_factory=list)
    rejected: list[Rejected[S]] = field(default_factory=list)
    missed: list[Missed[S]] = field(default_factory=list)

    def final_status(self) -> dict[int, S]:
        """The status each changed entity was left in (its last applied step)."""
        return {t.ident: t.new for t in self.applied}

    def applied_ids(self) -> set[int]:
        return {t.ident for t in self.applied}

    def missed_ids(self) -> set[int]:
        return {m.ident for m in self.missed}

    def raise_rejected(self) -> None:
        """Raise the domain error of the first rejection (NotFound for a missing entity)."""
        if not self.rejected:
            return
        missing = [r.ident for r in self.rejected if r.current is None]
        if missing:
            raise NotFound(
                f"no {self.entity} {missing[0]}"
                if len(missing) == 1
                else f"no {self.entity}s {', '.join(map(str, missing[:10]))}"
            )
        first = self.rejected[0]
        assert first.current is not None
        assert first.target is not None
        why = "final state" if first.reason.endswith("(final state)") else ""
        if not first.reason.startswith("cannot go from"):
            why = first.reason
        raise InvalidTransition(
            self.entity, first.ident, first.current.value, first.target.value, why
        )
