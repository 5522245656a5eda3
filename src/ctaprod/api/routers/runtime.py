"""Routes used by pilots and job wrappers: register, match, heartbeats, status, logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import PlainTextResponse

from ctaprod.api.deps import IdentityDep, RegisteringDep, ServicesDep
from ctaprod.api.errors import status_of
from ctaprod.core.errors import Forbidden, InvalidInput
from ctaprod.core.matching import Resource
from ctaprod.core.pilot_states import PilotStatus
from ctaprod.core.schemas import (
    MAX_BATCH,
    HeartbeatItem,
    Id,
    ItemResult,
    MatchResponse,
    PilotFinished,
    PilotInfo,
    PilotLog,
    PilotRegistered,
    PilotRegistration,
    StatusReport,
)
from ctaprod.logic import pilot_queries as PQ
from ctaprod.logic import runtime as R

router = APIRouter(tags=["pilots"])


@router.post("/api/pilots/register")
def register(body: PilotRegistration, svc: ServicesDep, ident: RegisteringDep) -> PilotRegistered:
    """A starting pilot registers; the reply holds a token bound to this pilot."""
    reg = R.register_pilot(svc.ctx, svc.tokens, ident, body.stamp, body.site, body.ce, body.queue)
    return PilotRegistered(pilot_id=reg.pilot_id, session_token=reg.session_token)


@router.post(
    "/api/pilots/{pilot_id}/match",
    responses={204: {"description": "no job"}},
    response_model=MatchResponse,
)
async def match(
    pilot_id: Id, resource: Resource, svc: ServicesDep, ident: IdentityDep
) -> MatchResponse | Response:
    """Claim the best waiting job this resource can run (204 when there is none)."""
    if ident.pilot_id is not None and ident.pilot_id != pilot_id:
        raise Forbidden(f"this token belongs to pilot {ident.pilot_id}, not {pilot_id}")
    # Concurrent requests are served together, in one transaction (api.batching).
    found = await svc.batcher.match(ident, pilot_id, resource)
    if found is None:
        return Response(status_code=204)
    reply = MatchResponse(
        job_id=found.job_id,
        owner=found.owner,
        owner_group=found.owner_group,
        description=found.description,
        job_token=found.job_token,
        attempt=found.attempt,
        heartbeat_interval=found.heartbeat_interval,
        input_sandboxes=found.input_sandboxes,
        sandbox_max_bytes=svc.ctx.settings.sandboxes.max_bytes,
    )
    # Serialized once here, by alias as FastAPI would: returning the model makes FastAPI
    # validate and dump it again (~0.2 ms per match, on the server's hottest route).
    return Response(reply.model_dump_json(by_alias=True), media_type="application/json")


@router.post("/api/pilots/{pilot_id}/finished", status_code=204)
def finished(pilot_id: Id, body: PilotFinished, svc: ServicesDep, ident: IdentityDep) -> None:
    R.pilot_finished(svc.ctx, ident, pilot_id, body.ok, body.reason, body.log, body.jobs_done)


@router.put("/api/pilots/{pilot_id}/log", status_code=204)
def put_log(pilot_id: Id, body: PilotLog, svc: ServicesDep, ident: IdentityDep) -> None:
    R.save_pilot_log(svc.ctx, ident, pilot_id, body.log)


@router.get("/api/pilots")
def list_pilots(
    svc: ServicesDep,
    ident: IdentityDep,
    status: Annotated[list[PilotStatus] | None, Query()] = None,
    site: str | None = None,
    ce: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Id | None = None,
) -> list[PilotInfo]:
    return PQ.search_pilots(svc.ctx, ident, status or [], site, ce, limit, cursor)


@router.get("/api/pilots/{pilot_id}")
def get_pilot(pilot_id: Id, svc: ServicesDep, ident: IdentityDep) -> PilotInfo:
    return PQ.get_pilot(svc.ctx, ident, pilot_id)


@router.get("/api/pilots/{pilot_id}/log", response_class=PlainTextResponse)
def get_log(pilot_id: Id, svc: ServicesDep, ident: IdentityDep) -> str:
    """The pilot's log as it uploaded it (or as its batch system kept it)."""
    return PQ.pilot_log(svc.ctx, ident, pilot_id)


def _item(reply: R.JobReply) -> ItemResult:
    """A reply as the API shows it: a refused item carries its error and HTTP status."""
    if reply.error is None:
        return ItemResult(job_id=reply.job_id, commands=reply.commands)
    return ItemResult(
        job_id=reply.job_id,
        commands=reply.commands,
        error=str(reply.error),
        status=status_of(reply.error),
    )


def _one(reply: R.JobReply) -> ItemResult:
    """The single item of a one-job call: its error, if any, is the call's error (with the
    commands, e.g. Kill, in the detail), unless it carries commands for the wrapper."""
    if reply.error is not None and not reply.commands:
        raise reply.error
    return _item(reply)


@router.post("/api/jobs/heartbeats")
def heartbeats(
    items: Annotated[list[HeartbeatItem], Body(max_length=MAX_BATCH)],
    svc: ServicesDep,
    ident: IdentityDep,
) -> list[ItemResult]:
    """Heartbeats of many jobs of one pilot in one call; replies carry commands (Kill)."""
    if not items:
        raise InvalidInput("no heartbeat given")
    return [_item(r) for r in R.heartbeats(svc.ctx, ident, items)]


@router.post("/api/jobs/{job_id}/heartbeat")
def heartbeat(job_id: Id, item: HeartbeatItem, svc: ServicesDep, ident: IdentityDep) -> ItemResult:
    if item.job_id != job_id:
        raise InvalidInput(f"heartbeat body is for job {item.job_id}, the URL for {job_id}")
    return _one(R.heartbeats(svc.ctx, ident, [item])[0])


@router.post("/api/jobs/status")
def statuses(
    reports: Annotated[list[StatusReport], Body(max_length=MAX_BATCH)],
    svc: ServicesDep,
    ident: IdentityDep,
) -> list[ItemResult]:
    """Status reports of many jobs in one call; each result says if it was applied."""
    if not reports:
        raise InvalidInput("no status report given")
    return [_item(r) for r in R.report_statuses(svc.ctx, ident, reports)]


@router.post("/api/jobs/{job_id}/status")
def status(job_id: Id, report: StatusReport, svc: ServicesDep, ident: IdentityDep) -> ItemResult:
    if report.job_id != job_id:
        raise InvalidInput(f"report body is for job {report.job_id}, the URL for {job_id}")
    reply = R.report_statuses(svc.ctx, ident, [report])[0]
    if reply.error is not None:
        reply.error.detail["commands"] = reply.commands
        raise reply.error
    return _item(reply)
