"""Placeholders and output LFN templates (ctaprod.core.trans_templates)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctaprod.core.errors import InvalidInput
from ctaprod.core.trans_templates import (
    IN_JOB,
    IN_METADATA,
    TaskValues,
    check_output_template,
    placeholders_in,
    render_lfns,
    substitute,
)

VALUES = TaskValues(
    transformation_id=42,
    transformation="Prod6_DL2",
    task_id=7,
    run_number=1234,
    input_lfns=("/ctao/in/run1.simtel.zst", "/ctao/in/run2.simtel.zst"),
    output_lfns=("/ctao/out/a.h5", "/ctao/out/b.h5"),
)


def test_substitute_text_and_types() -> None:
    assert substitute("t{{transformation_id}}_{{ task_id }}", IN_JOB, VALUES, "x") == "t42_7"
    # A whole value keeps its type.
    assert substitute("{{task_id}}", IN_JOB, VALUES, "x") == 7
    assert substitute("{{input_lfns}}", IN_JOB, VALUES, "x") == list(VALUES.input_lfns)
    # Inside a text a list is space-separated.
    assert substitute("-i {{input_lfns}}", IN_JOB, VALUES, "x") == (
        "-i /ctao/in/run1.simtel.zst /ctao/in/run2.simtel.zst"
    )
    # A list item that renders to a list is spliced in.
    assert substitute(["a", "{{output_lfns}}", "b"], IN_JOB, VALUES, "x") == [
        "a",
        "/ctao/out/a.h5",
        "/ctao/out/b.h5",
        "b",
    ]
    assert substitute({"k": "{{input_name}}"}, IN_JOB, VALUES, "x") == {"k": "run1.simtel.zst"}
    assert substitute("{{input_stem}}", IN_JOB, VALUES, "x") == "run1.simtel"
    assert substitute("{{output_name}}", IN_JOB, VALUES, "x") == "a.h5"
    assert substitute("{{run_number // 1000 : 3}}xxx", IN_JOB, VALUES, "x") == "001xxx"
    assert substitute("{{run_number:8}}", IN_JOB, VALUES, "x") == "00001234"
    assert substitute(3, IN_JOB, VALUES, "x") == 3


def test_dirac_and_shell_syntax_is_left_alone() -> None:
    text = "run %j %s %n %(X)s @{JOB_ID} ${HOME} $PATH {a, b} {x}"
    assert substitute(text, IN_JOB, VALUES, "x") == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{nope}}", "unknown placeholder {{nope}}"),
        ("{{task_id", "malformed placeholder"),
        ("{{ Task_ID }}", "malformed placeholder"),
        ("{{task_id:x}}", "malformed placeholder"),
        ("{{input_name:3}}", "is not a number"),
        ("{{task_id // 0}}", "divides by zero"),
        ("{{task_id:30}}", "width 30"),
    ],
)
def test_bad_placeholders(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("{", r"\{").replace("(", r"\(")):
        placeholders_in(text, IN_JOB, "job_template.Arguments")


def test_placeholder_not_allowed_where_used() -> None:
    with pytest.raises(InvalidInput, match=r"output_metadata.x: placeholder \{\{input_lfn\}\}"):
        placeholders_in("{{input_lfn}}", IN_METADATA, "output_metadata.x")


def test_missing_values_are_errors() -> None:
    empty = TaskValues(1, "t", 1)
    with pytest.raises(InvalidInput, match="run numbers"):
        substitute("{{run_number}}", IN_JOB, empty, "x")
    with pytest.raises(InvalidInput, match="no input files"):
        substitute("{{input_lfn}}", IN_JOB, empty, "x")
    with pytest.raises(InvalidInput, match="no output LFN template"):
        substitute("{{output_lfn}}", IN_JOB, empty, "x")


def _check(template: str, *, run_numbers: bool = True, has_input: bool = True) -> bool:
    return check_output_template(
        template, bases=["/ctao/MC", "/ctao/user/a/alice"], run_numbers=run_numbers,
        has_input=has_input,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("template", "per_input"),
    [
        ("/ctao/MC/{{transformation_id}}/out_{{task_id}}.h5", False),
        ("/ctao/MC/{{run_number//1000:3}}xxx/run{{run_number:6}}.simtel.zst", False),
        ("/ctao/MC/{{task_id}}/{{transformation}}.h5", False),  # prefix literal, '/' after
        ("/ctao/MC/x/{{input_stem}}_{{task_id}}.DL2.h5", True),
        ("/ctao/MC/x/{{input_name}}.DL2.h5", True),
        ("/ctao/MC/x/{{input_name}}{{task_id}}", True),  # input_name alone suffices
        ("/ctao/user/a/alice/t_{{task_id}}", False),
        ("/ctao/MC/t_{{task_id}}1.h5", False),  # a fixed suffix may start with a digit
        ("/ctao/MC/1{{task_id}}1.h5", False),  # fixed prefix and suffix
        ("/ctao/MC/{{transformation_id}}{{task_id}}.h5", False),  # the ID is fixed per trans.
        ("/ctao/MC/{{input_stem}}_{{run_number}}", True),
    ],
)
def test_good_output_templates(template: str, per_input: bool) -> None:
    assert _check(template) is per_input


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("/ctao/MC/../etc/{{task_id}}.h5", r"'\.\.' component"),
        ("/ctao/MC/./{{task_id}}.h5", r"'\.' or '\.\.' component"),
        ("/ctao/MC//{{task_id}}.h5", "empty"),
        ("/ctao/other/{{task_id}}.h5", "not under the allowed areas"),
        ("/ctao/MCX/{{task_id}}.h5", "not under the allowed areas"),
        ("ctao/MC/{{task_id}}.h5", "absolute base directory"),
        ("{{transformation}}/{{task_id}}.h5", "absolute base directory"),
        ("/ctao/MC/{{input_lfn}}.h5", "cannot be used here"),
        ("/ctao/MC/a b/{{task_id}}", "not allowed"),
        ("/ctao/MC/out.h5", "same LFN to several tasks"),
        ("/ctao/MC/{{transformation_id}}/out.h5", "same LFN to several tasks"),
        ("/ctao/MC/{{task_id//10}}/out.h5", "same LFN to several tasks"),
        ("/ctao/MC/{{input_stem}}{{task_id}}.h5", "same LFN to several tasks"),
        ("/ctao/MC/{{task_id}}{{input_stem}}.h5", "same LFN to several tasks"),
        ("/ctao/MC/{{input_stem}}1{{task_id}}.h5", "same LFN to several tasks"),
        ("/ctao/MC/{{input_stem}}.h5", "same LFN to several tasks"),
        ("", "non-empty"),
    ],
)
def test_bad_output_templates(template: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        _check(template)
    assert info.value.detail["key"] == "output_lfn_template"


def test_run_number_and_input_placeholders_depend_on_the_type() -> None:
    with pytest.raises(InvalidInput, match="cannot be used here"):
        _check("/ctao/MC/run{{run_number}}.h5", run_numbers=False)
    with pytest.raises(InvalidInput, match="cannot be used here"):
        _check("/ctao/MC/{{input_name}}", has_input=False)


def test_render_lfns() -> None:
    templates = ["/ctao/MC/{{input_stem}}_{{task_id}}.h5", "/ctao/MC/log_{{task_id}}.tgz"]
    assert render_lfns(templates, VALUES, [True, False]) == [
        "/ctao/MC/run1.simtel_7.h5",
        "/ctao/MC/run2.simtel_7.h5",
        "/ctao/MC/log_7.tgz",
    ]


# The readable-digits rule is what makes accepted templates collision-free: check it on
# random templates built from literal pieces and placeholders.
PIECES = st.sampled_from(
    ["/", "_", "1", "0", "a", ".h5", "{{task_id}}", "{{task_id:3}}", "{{transformation_id}}",
     "{{transformation}}", "{{task_id//10}}", "{{run_number}}", "{{run_number // 7:2}}"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, min_size=1, max_size=6), st.sampled_from(["t", "t1", "x_y"]))
def test_accepted_templates_never_collide(pieces: list[str], name: str) -> None:
    template = "/ctao/MC/d" + "".join(pieces)
    try:
        _check(template, has_input=False)
    except InvalidInput:
        return
    seen: dict[str, int] = {}
    for task in [*range(1, 130), 1000, 1001, 10_000, 12_345]:
        for trans_id in (1, 12):
            values = TaskValues(trans_id, name, task, run_number=task + 99)
            lfn = render_lfns([template], values, [False])[0]
            key = f"{trans_id}:{lfn}"
            assert seen.setdefault(key, task) == task, (template, lfn)
