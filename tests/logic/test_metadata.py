"""Metadata use cases on a real database: fields, values with permissions and events,
queries across directory and file levels (nearest wins), pages, counts, bad input."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ctaprod.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from ctaprod.core.identity import Identity
from ctaprod.core.metadata import FieldDeclaration
from ctaprod.core.properties import TokenKind
from ctaprod.db.tables import catalog_events
from ctaprod.logic import metadata as M
from tests.db.test_metadata_tree import Tree

ADMIN = Identity("admin", "ctao_admin", TokenKind.USER, frozenset({"Admin"}))
ALICE = Identity("alice", "ctao_user", TokenKind.USER, frozenset({"NormalUser"}))
EVE = Identity("eve", "other", TokenKind.USER, frozenset({"NormalUser"}))
FIELDS = {
    "MCCampaign": "string", "site": "string", "particle": "string", "thetaP": "float",
    "phiP": "float", "data_level": "int", "runNumber": "int", "outputType": "string",
    "array_layout": "string", "nsb": "int", "configuration_id": "int",
    "tel_sim_prog": "string", "tel_sim_prog_version": "string", "start": "datetime",
}  # fmt: skip
BASE = "/ctao/MC/PROD6"


def lfns(ctx: Any, query: Any, path: str | None = None) -> list[str]:
    return [lfn for page in M.find_lfns(ctx, query, path) for lfn in page]


@pytest.fixture
def ctx(services: Any) -> Any:
    for name, ftype in FIELDS.items():
        M.add_field(services.ctx, ADMIN, FieldDeclaration(name=name, type=ftype))
    return services.ctx


@pytest.fixture
def tree(ctx: Any) -> Tree:
    """Two sites x two particles, 3 files each; runNumber on files; thetaP on both levels."""
    tree = Tree()
    with ctx.db.write() as conn:
        for site in ("Paranal", "LaPalma"):
            for particle in ("gamma", "proton"):
                tree.add_files(conn, [f"{BASE}/{site}/{particle}/f{i}" for i in range(3)])
    M.set_metadata(ctx, ALICE, BASE, {"MCCampaign": "Prod6", "thetaP": 20})
    for site in ("Paranal", "LaPalma"):
        M.set_metadata(ctx, ALICE, f"{BASE}/{site}", {"site": site})
        for particle in ("gamma", "proton"):
            M.set_metadata(ctx, ALICE, f"{BASE}/{site}/{particle}", {"particle": particle})
            for i in range(3):
                M.set_metadata(ctx, ALICE, f"{BASE}/{site}/{particle}/f{i}", {"runNumber": i})
    # One file overrides the directory's thetaP.
    M.set_metadata(ctx, ALICE, f"{BASE}/Paranal/gamma/f2", {"thetaP": 40.0})
    return tree


def test_fields_declare_list_remove(ctx: Any) -> None:
    names = [f.name for f in M.list_fields(ctx)]
    assert names == sorted([*FIELDS, "prod_step_id"])  # the server declares prod_step_id
    with pytest.raises(Forbidden, match="ProductionManagement or Admin"):
        M.add_field(ctx, ALICE, FieldDeclaration(name="x", type="int"))
    with pytest.raises(Conflict, match="'site' is already declared"):
        M.add_field(ctx, ADMIN, FieldDeclaration(name="SITE", type="int"))
    with pytest.raises(Conflict, match="'site' is already declared"):
        M.add_field(ctx, ADMIN, FieldDeclaration(name="SITE", type="string"))  # letter case
    with pytest.raises(Conflict, match=r"'site' is already declared \(type string\)"):
        M.add_field(ctx, ADMIN, FieldDeclaration(name="site", type="int"))
    # The same name and type again: nothing changes (an extension declared it, a script ran
    # twice), the field as it is comes back.
    before = {f.name: f for f in M.list_fields(ctx)}
    again = M.add_field(ctx, ADMIN, FieldDeclaration(name="site", type="string"))
    assert again == before["site"]
    assert {f.name: f for f in M.list_fields(ctx)} == before
    with pytest.raises(InvalidInput, match="invalid metadata field name"):
        FieldDeclaration(name="1bad", type="int")
    with pytest.raises(InvalidInput, match="unknown metadata type"):
        FieldDeclaration(name="good", type="complex")
    M.remove_field(ctx, ADMIN, "nsb")
    with pytest.raises(NotFound):
        M.remove_field(ctx, ADMIN, "nsb")


def test_field_in_use_cannot_be_removed(ctx: Any, tree: Tree) -> None:
    with pytest.raises(Conflict, match="in use"):
        M.remove_field(ctx, ADMIN, "runNumber")
    with pytest.raises(Conflict, match="in use"):
        M.remove_field(ctx, ADMIN, "site")


def test_get_shows_own_and_effective_with_origin(ctx: Any, tree: Tree) -> None:
    view = M.get_metadata(ctx, f"{BASE}/Paranal/gamma/f2")
    assert view.kind == "file"
    assert view.own == {"runNumber": 2, "thetaP": 40.0}
    origins = {v.field: (v.value, v.origin) for v in view.effective}
    assert origins == {
        "MCCampaign": ("Prod6", BASE),
        "site": ("Paranal", f"{BASE}/Paranal"),
        "particle": ("gamma", f"{BASE}/Paranal/gamma"),
        "thetaP": (40.0, f"{BASE}/Paranal/gamma/f2"),
        "runNumber": (2, f"{BASE}/Paranal/gamma/f2"),
    }
    dview = M.get_metadata(ctx, f"{BASE}/Paranal")
    assert dview.kind == "directory"
    assert dview.own == {"site": "Paranal"}
    with pytest.raises(NotFound):
        M.get_metadata(ctx, "/ctao/nothing/here")


def test_set_checks_types_fields_and_permission(ctx: Any, tree: Tree) -> None:
    path = f"{BASE}/Paranal"
    with pytest.raises(InvalidInput, match=r"'thetaP' is of type float: value 'high'"):
        M.set_metadata(ctx, ALICE, path, {"thetaP": "high"})
    with pytest.raises(InvalidInput, match="did you mean 'particle'"):
        M.set_metadata(ctx, ALICE, path, {"particles": "gamma"})
    with pytest.raises(Forbidden, match="eve/other may not change"):
        M.set_metadata(ctx, EVE, path, {"site": "X"})
    with pytest.raises(InvalidInput, match="LFN"):
        M.set_metadata(ctx, ALICE, "relative/path", {"site": "X"})
    # Nothing was half-written.
    assert M.get_metadata(ctx, path).own == {"site": "Paranal"}
    # Another member of the directory's group may write; so may an admin.
    bob = Identity("bob", "ctao_user", TokenKind.USER, frozenset({"NormalUser"}))
    M.set_metadata(ctx, bob, path, {"nsb": "5"})
    M.set_metadata(ctx, ADMIN, path, {"start": "2024-01-02T03:04:05"})
    own = M.get_metadata(ctx, path).own
    assert own["nsb"] == 5
    assert own["start"].isoformat() == "2024-01-02T03:04:05+00:00"


def test_events_written_with_the_change(ctx: Any, tree: Tree) -> None:
    with ctx.db.read() as conn:
        kinds = conn.execute(select(catalog_events.c.kind)).scalars().all()
    assert kinds.count("dir_meta") == 7
    assert kinds.count("file_meta") == 13


def test_queries_on_both_levels_nearest_wins(ctx: Any, tree: Tree) -> None:
    gamma = f"{BASE}/Paranal/gamma"
    assert lfns(ctx, "site=Paranal particle=gamma") == [f"{gamma}/f{i}" for i in range(3)]
    # thetaP: 20 from the directory except f2 (40 on the file).
    assert lfns(ctx, "site=Paranal particle=gamma thetaP=20") == [f"{gamma}/f0", f"{gamma}/f1"]
    assert lfns(ctx, "thetaP>30") == [f"{gamma}/f2"]
    assert len(lfns(ctx, "thetaP!=40")) == 11
    ranged = lfns(ctx, {"particle": "gamma", "runNumber": {">=": 1, "<": 2}})
    assert sorted(ranged) == [f"{BASE}/LaPalma/gamma/f1", f"{gamma}/f1"]
    assert len(lfns(ctx, "site in (Paranal, LaPalma) particle nin (proton)")) == 6
    assert len(lfns(ctx, "runNumber=0")) == 4  # driven by the file index
    assert lfns(ctx, "runNumber=0 particle=proton", f"{BASE}/LaPalma") == [
        f"{BASE}/LaPalma/proton/f0"
    ]
    assert len(lfns(ctx, "")) == 12
    assert lfns(ctx, "nsb=1") == []  # declared, no value anywhere


def test_pages_and_counts(ctx: Any, tree: Tree) -> None:
    for query in ("MCCampaign=Prod6", "runNumber>=0", ""):
        seen, cursor = [], None
        while True:
            page = M.find_page(ctx, query, cursor=cursor, limit=5)
            seen += page.lfns
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert sorted(seen) == sorted(lfns(ctx, query))
        assert len(seen) == 12
        assert M.count_files(ctx, query).model_dump() == {"count": 12, "total_size": 1200}
    assert M.count_files(ctx, "particle=gamma thetaP=20").count == 5
    with pytest.raises(InvalidInput, match="invalid cursor"):
        M.find_page(ctx, "site=Paranal", cursor="zzz")


def test_bad_queries(ctx: Any, tree: Tree) -> None:
    with pytest.raises(InvalidInput, match="'partcle' is not declared; did you mean 'particle'"):
        M.count_files(ctx, "partcle=gamma")
    with pytest.raises(InvalidInput, match="unknown operator"):
        M.count_files(ctx, {"thetaP": {"~": 20}})
    with pytest.raises(InvalidInput, match="syntax error"):
        M.count_files(ctx, "thetaP >")
    with pytest.raises(InvalidInput, match="is of type float"):
        M.find_lfns(ctx, "thetaP=abc")
    with pytest.raises(NotFound, match="no directory"):
        M.find_lfns(ctx, "site=Paranal", "/ctao/none")


def test_ctadirac_dataset_fixtures_run_as_written(ctx: Any) -> None:
    folder = Path(__file__).parents[1] / "fixtures" / "ctadirac" / "datasets"
    tree = Tree()
    for path in sorted(folder.glob("*.json")):
        text = path.read_text()
        values = ast.literal_eval(text)
        flat = {k: (v["="] if isinstance(v, dict) else v) for k, v in values.items()}
        top = f"/ctao/{path.stem}"
        with ctx.db.write() as conn:
            tree.add_files(conn, [f"{top}/Data/f1", f"{top}/Data/f2", f"{top}/Log/f3"])
        M.set_metadata(ctx, ALICE, top, {k: v for k, v in flat.items() if k != "outputType"})
        M.set_metadata(ctx, ALICE, f"{top}/Data", {"outputType": "Data"})
        M.set_metadata(ctx, ALICE, f"{top}/Log", {"outputType": "Log"})
        assert lfns(ctx, text) == [f"{top}/Data/f1", f"{top}/Data/f2"], path.name


def test_string_values_match_case_sensitively(ctx: Any, tree: Tree) -> None:
    """particle=Gamma is not particle=gamma, on every engine (MariaDB included)."""
    assert lfns(ctx, {"particle": "Gamma"}) == []
    assert len(lfns(ctx, {"particle": "gamma"})) == 6
    M.set_metadata(ctx, ALICE, f"{BASE}/Paranal/gamma/f0", {"outputType": "DL1"})
    assert lfns(ctx, {"outputType": "dl1"}) == []
    assert lfns(ctx, {"outputType": "DL1"}) == [f"{BASE}/Paranal/gamma/f0"]


def test_effective_values_of_many_files_nearest_wins(ctx: Any, tree: Tree) -> None:
    """db.metadata.effective_file_values, what the transformation trigger evaluates queries
    on: directory values inherited, the file's own over them."""
    from ctaprod.core.metaquery import matches, parse

    paths = [f"{BASE}/Paranal/gamma/f2", f"{BASE}/LaPalma/proton/f0"]
    by_lfn = {p: tree.files[p] for p in paths}
    with ctx.db.read() as conn:
        values = ctx.meta.effective_file_values(
            conn, [*by_lfn.values(), 987_654], ctx.meta.field_types(conn)
        )
    assert set(values) == set(by_lfn.values())  # unknown files are absent
    f2, f0 = values[by_lfn[paths[0]]], values[by_lfn[paths[1]]]
    assert f2 == {
        "MCCampaign": "Prod6",
        "site": "Paranal",
        "particle": "gamma",
        "runNumber": 2,
        "thetaP": 40.0,
    }
    assert f0["thetaP"] == 20.0
    assert (f0["site"], f0["particle"], f0["runNumber"]) == ("LaPalma", "proton", 0)
    assert matches(parse("particle=gamma thetaP>30"), f2)
    assert not matches(parse("particle=gamma thetaP>30"), f0)
    # The same answer as the SQL query engine.
    assert lfns(ctx, "particle=gamma thetaP>30") == [paths[0]]
