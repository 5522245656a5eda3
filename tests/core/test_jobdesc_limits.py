"""What the worker node could not run is refused at submission, naming the attribute."""

from __future__ import annotations

import pytest

from ctaprod.core.errors import InvalidInput
from ctaprod.core.jdl import JDLSyntaxError, parse_jdl
from ctaprod.core.jobdesc import SubmissionLimits, expand, parse_submission

LIMITS = SubmissionLimits()


@pytest.mark.parametrize(
    ("doc", "attribute"),
    [
        ({"Executable": "/bin/echo\x00x"}, "Executable"),
        ({"Executable": "/bin/true", "Arguments": "a\nb"}, "Arguments"),
        ({"Executable": "/bin/true", "Environment": {"A": "x\x1b[2J"}}, "Environment"),
        ({"Executable": "/bin/true", "OutputPath": "/ctao/x/../y"}, "OutputPath"),
        ({"Executable": "/bin/true", "OutputSE": ["a/b"]}, "OutputSE"),
        ({"Executable": "/bin/true", "OutputData": ["LFN:/ctao//x"]}, "OutputData"),
        (
            {"Executable": "/bin/true", "OutputPath": "/ctao/u", "OutputData": ["a b"]},
            "OutputData",
        ),
        ({"Executable": "/bin/true", "InputData": ["/ctao/x\x7f"]}, "InputData"),
        ({"Executable": "/bin/true", "Site": ["S" * 129]}, "Site"),
    ],
)
def test_refused_naming_the_attribute(doc: dict[str, object], attribute: str) -> None:
    with pytest.raises(InvalidInput) as info:
        expand(doc, LIMITS)
    assert attribute in info.value.message
    assert info.value.detail["attribute"].startswith(attribute)


def test_a_tab_in_arguments_is_fine() -> None:
    [job] = expand({"Executable": "/bin/echo", "Arguments": "a\tb"}, LIMITS)
    assert job.arguments == "a\tb"


@pytest.mark.parametrize(
    "text",
    [
        "A = " + "{" * 900 + "}" * 900 + ";",
        "A = " + "9" * 5000 + ";",
        "A = 9223372036854775808;",
        'A = "' + "x" * (1024 * 1024 + 1) + '";',
    ],
)
def test_the_jdl_parser_is_bounded(text: str) -> None:
    with pytest.raises(JDLSyntaxError):
        parse_jdl(text)


@pytest.mark.parametrize(
    "params",
    [
        "Parameters = 30; ParameterFactor = 10;",  # 10**29: past 19 digits
        "Parameters = 3; ParameterStart = 1e300;",
        'Parameters = 3; ParameterStep = "inf";',
        'Parameters = 3; ParameterFactor = "' + "9" * 5000 + '";',
    ],
)
def test_parameter_sequences_are_bounded(params: str) -> None:
    with pytest.raises(InvalidInput, match="Parameter"):
        parse_submission("Executable = /bin/true; " + params, "jdl", LIMITS)
