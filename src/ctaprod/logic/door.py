"""The one entry point of every state change, for any entity ("the door").

An entity plugs in with a :class:`Door`: its state machine (``core``), how to read its rows
(row-locked where the engine has concurrent writers), how to write checked steps with
conditional UPDATEs (``db.statechange.ConditionalWriter``), and the implementation of each
hook its machine declares. :func:`change_states` then, inside the caller's write transaction:

1. reads the current rows (or takes those the caller has just read under lock: ``known``);
2. asks ``decide(row)`` for the steps of each entity and checks each against the machine from
   the state actually read (a chain such as Received -> Checking -> Waiting step by step);
   a chain with an illegal step is rejected whole, with the machine's reason;
3. runs the *before* hooks of each step (pure: columns written with the step, such as an end
   time), then writes each entity's chain as one UPDATE conditional on the state read, from
   that state to the chain's last state with the columns of all its steps (later steps win):
   what step-by-step UPDATEs would leave, as no other transaction can see the states in
   between; one executemany per column set for the whole batch;
4. reports the chains whose UPDATE matched nothing as *missed* (the entity changed
   meanwhile): no hook runs for them;
5. runs the *after* hooks (writes such as history rows and task-queue membership) once per
   hook, in declaration order, with every applied step that fires it, in the order applied;
6. returns a :class:`TransitionResult` (applied, rejected with reasons, missed, rows read).

The number of statements of a call is fixed by the number of column sets and hooks, not by
the number of entities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

from ctaprod.core.statemachine import (
    Change,
    Missed,
    Rejected,
    StateMachine,
    Transition,
    TransitionResult,
)

S = TypeVar("S", bound=StrEnum)
T = TypeVar("T")

# A before hook returns columns to write with the step (it may not do I/O).
BeforeHook = Callable[[Transition[S], datetime], Mapping[str, Any]]
# An after hook writes, in the caller's transaction, for all the applied steps that fire it.
AfterHook = Callable[[Connection, Sequence[Transition[S]], "HookContext[T]"], None]
Decide = Callable[[T], Sequence[Change[S]] | None]


@dataclass(frozen=True)
class HookContext(Generic[T]):
    """What an after hook knows besides the transitions: the rows read, who acts, when, and
    facts the caller passed for the hooks (``params``, e.g. what it has computed already)."""

    states: Mapping[int, T]
    source: str
    now: datetime
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Door(Generic[S, T]):
    """How one entity goes through :func:`change_states`."""

    machine: StateMachine[S]
    read: Callable[[Connection, Sequence[int]], Mapping[int, T]]
    status: Callable[[T], S]
    write: Callable[[Connection, Sequence[Transition[S]], datetime], set[int]]
    before: Mapping[str, BeforeHook[S]] = field(default_factory=dict)
    after: Mapping[str, AfterHook[S, T]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = [h.name for h in self.machine.hooks]
        given = [*self.before, *self.after]
        missing = [n for n in declared if n not in given]
        extra = [n for n in given if n not in declared]
        twice = set(self.before) & set(self.after)
        if missing or extra or twice:
            raise ValueError(
                f"{self.machine.entity} door: hooks not implemented {missing}, "
                f"not declared by the machine {extra}, implemented twice {sorted(twice)}"
            )


def change_states(
    door: Door[S, T],
    conn: Connection,
    ids: Sequence[int],
    decide: Decide[T, S],
    *,
    source: str,
    now: datetime,
    strict: bool = False,
    known: Mapping[int, T] | None = None,
    params: Mapping[str, Any] | None = None,
) -> TransitionResult[S, T]:
    """Apply ``decide(row)`` to each entity of ``ids`` through its machine (module docstring).

    ``known`` rows must have been read in this transaction under the same lock as
    ``door.read`` takes. With ``strict``, any rejection (a missing entity, an illegal step)
    raises its domain error before anything is written; ``decide`` may also raise.
    ``params`` go to the after hooks (:class:`HookContext`).
    """
    machine = door.machine
    if known is not None and all(i in known for i in ids):
        states = {i: known[i] for i in ids}
    else:
        states = dict(door.read(conn, ids))
    result: TransitionResult[S, T] = TransitionResult(machine.entity, states)
    chains: list[list[Transition[S]]] = []
    for ident in dict.fromkeys(ids):
        row = states.get(ident)
        if row is None:
            result.rejected.append(Rejected(ident, None, None, f"no {machine.entity} {ident}"))
            continue
        steps = decide(row)
        if steps:
            chain = _plan(door, ident, door.status(row), steps, now, result)
            if chain:
                chains.append(chain)
    if strict:
        result.raise_rejected()
    if chains:
        missed = door.write(conn, [_collapse(chain) for chain in chains], now)
        for chain in chains:
            if chain[0].ident in missed:
                result.missed.append(Missed(chain[0].ident, chain[0].old, chain[-1].new))
            else:
                result.applied.extend(chain)
        # History and other hooks see each entity's steps in order, entities in call order.
    if result.applied:
        hctx = HookContext(states, source, now, params or {})
        for hook in machine.hooks:
            run = door.after.get(hook.name)
            if run is None:
                continue
            fired = [t for t in result.applied if hook.fires(t.old, t.new)]
            if fired:
                run(conn, fired, hctx)
    return result


def _plan(
    door: Door[S, T],
    ident: int,
    current: S,
    steps: Sequence[Change[S]],
    now: datetime,
    result: TransitionResult[S, T],
) -> list[Transition[S]]:
    """The checked chain of one entity, or [] (and a rejection) if a step is illegal."""
    chain: list[Transition[S]] = []
    for step in steps:
        why = door.machine.refusal(current, step.target)
        if why is not None:
            result.rejected.append(Rejected(ident, current, step.target, why))
            return []
        values: dict[str, Any] = dict(step.values or {})
        t = Transition(ident, current, step.target, step.reason, values)
        for hook in door.machine.hooks_for(current, step.target):
            before = door.before.get(hook.name)
            if before is not None:
                values.update(before(t, now))  # the declared invariant wins over the caller
        chain.append(t)
        current = step.target
    return chain


def _collapse(chain: Sequence[Transition[S]]) -> Transition[S]:
    """One write for a chain: from its first state to its last, columns merged in order."""
    if len(chain) == 1:
        return chain[0]
    values: dict[str, Any] = {}
    for t in chain:
        values.update(t.values)
    return Transition(chain[0].ident, chain[0].old, chain[-1].new, chain[-1].reason, values)
