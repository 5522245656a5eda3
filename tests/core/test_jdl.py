"""Tests for ctaprod.core.jdl: DIRAC JDL parsing and rendering."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctaprod.core.jdl import JDLSyntaxError, JDLValue, format_jdl, parse_jdl
from tests.fixtures import fixture_dir

FIXTURE_NAMES = [
    "simple.jdl",
    "lfn_input_data.jdl",
    "lfn_input_sandbox.jdl",
    "input_output_sandbox.jdl",
]


def _dirac_fixtures() -> Path:
    return fixture_dir("dirac-jdl")


def _error(text: str) -> JDLSyntaxError:
    with pytest.raises(JDLSyntaxError) as info:
        parse_jdl(text)
    return info.value


# -- DIRAC fixtures -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in fixture_dir("dirac-jdl").glob("*.jdl")))
def test_every_dirac_fixture_parses_and_round_trips(name: str) -> None:
    attrs = parse_jdl((_dirac_fixtures() / name).read_text())
    assert attrs["Executable"]
    again = parse_jdl(format_jdl(attrs))
    assert again == attrs


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_dirac_fixture_parses_and_round_trips(name: str) -> None:
    attrs = parse_jdl((_dirac_fixtures() / name).read_text())
    assert attrs["Executable"] == "testJob.sh" or name == "simple.jdl"
    assert attrs["OutputSandbox"] == ["StdOut", "StdErr"]
    assert parse_jdl(format_jdl(attrs)) == attrs


def test_all_dirac_fixtures_are_covered() -> None:
    # The tutorial's examples are all there; every fixture (these and the Job API's forms)
    # goes through test_every_dirac_fixture_parses_and_round_trips.
    names = sorted(path.name for path in _dirac_fixtures().glob("*.jdl"))
    assert set(FIXTURE_NAMES) <= set(names)
    assert len(names) > len(FIXTURE_NAMES)


def test_simple_fixture_exact() -> None:
    attrs = parse_jdl((_dirac_fixtures() / "simple.jdl").read_text())
    assert attrs == {
        "JobName": "Simple_Job",
        "Executable": "/bin/ls",
        "Arguments": "-ltr",
        "StdOutput": "StdOut",
        "StdError": "StdErr",
        "OutputSandbox": ["StdOut", "StdErr"],
    }
    order = ["JobName", "Executable", "Arguments", "StdOutput", "StdError", "OutputSandbox"]
    assert list(attrs) == order


def test_lfn_input_data_fixture_exact() -> None:
    attrs = parse_jdl((_dirac_fixtures() / "lfn_input_data.jdl").read_text())
    assert attrs == {
        "JobName": "LFNInputData",
        "Executable": "testJob.sh",
        "StdOutput": "StdOut",
        "StdError": "StdErr",
        "InputSandbox": ["testJob.sh"],
        "InputData": ["LFN:/vo.formation.idgrilles.fr/user/v/vhamar/test.txt"],
        "OutputSandbox": ["StdOut", "StdErr"],
        "OutputSE": "M3PEC-disk",
        "OutputData": ["StdOut"],
    }


# -- accepted syntax ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '[ Executable = "/bin/ls"; Arguments = "-l"; ]',
        '[ Executable = "/bin/ls"; Arguments = "-l" ]',
        '[\n  Executable = "/bin/ls";\n\n  Arguments = "-l";\n]\n',
        '  \n[Executable="/bin/ls";Arguments="-l"]  \n\n',
        'Executable = "/bin/ls";\nArguments = "-l";\n',
        'Executable = "/bin/ls";\nArguments = "-l"',
        'Executable = "/bin/ls";; Arguments = "-l";;',
        "\tExecutable\n=\n\"/bin/ls\"\n;\nArguments = '-l'",
    ],
)
def test_bracketed_and_bare_forms(text: str) -> None:
    assert parse_jdl(text) == {"Executable": "/bin/ls", "Arguments": "-l"}


@pytest.mark.parametrize("text", ["", "   \n", "[]", "[ ; ]", "# only a comment\n", "/* */"])
def test_empty_descriptions(text: str) -> None:
    assert parse_jdl(text) == {}


def test_bare_words_are_strings() -> None:
    text = (
        "Executable = /bin/ls;\n"
        "Site = LCG.CERN.ch;\n"
        "Arguments = -ltr  ;\n"
        "Input = root://eos.cta//store/file.root;\n"
        "Requirements = other.Site == LCG.CERN.ch;\n"
        "Options = mode=fast # a comment after a space ends the word\n"
    )
    assert parse_jdl(text) == {
        "Executable": "/bin/ls",
        "Site": "LCG.CERN.ch",
        "Arguments": "-ltr",
        "Input": "root://eos.cta//store/file.root",
        "Requirements": "other.Site == LCG.CERN.ch",
        "Options": "mode=fast",
    }


def test_numbers_and_booleans() -> None:
    text = (
        "A = 10; B = -3; C = +4; D = 1.5; E = -2e3; F = .5; G = 3.; H = 1E-2;\n"
        'I = true; J = FALSE; K = True; L = "10"; M = "true"; N = 1.2.3; O = 1e999; P = 0x10;'
    )
    attrs = parse_jdl(text)
    assert attrs == {
        "A": 10,
        "B": -3,
        "C": 4,
        "D": 1.5,
        "E": -2000.0,
        "F": 0.5,
        "G": 3.0,
        "H": 0.01,
        "I": True,
        "J": False,
        "K": True,
        "L": "10",
        "M": "true",
        "N": "1.2.3",
        "O": "1e999",
        "P": "0x10",
    }
    assert [type(attrs[k]) for k in "ABDEIJL"] == [int, int, float, float, bool, bool, str]


def test_parametric_keys() -> None:
    text = "Parameters = 10; ParameterStart = 0; ParameterStep = 2.5; ParameterFactor = 1.1;"
    attrs = parse_jdl(text)
    assert attrs == {
        "Parameters": 10,
        "ParameterStart": 0,
        "ParameterStep": 2.5,
        "ParameterFactor": 1.1,
    }
    assert type(attrs["Parameters"]) is int
    assert type(attrs["ParameterStep"]) is float
    assert parse_jdl('Parameters = {"a","b"};') == {"Parameters": ["a", "b"]}


def test_string_escapes_and_quotes() -> None:
    text = r"""
    A = "say \"hi\"";
    B = "back\\slash";
    C = "line\nbreak\ttab";
    D = 'single "quoted"';
    E = 'it\'s';
    F = "C:\dir";
    G = "";
    H = "semi;colon, comma } brace ] bracket # hash /* not a comment */";
    """
    assert parse_jdl(text) == {
        "A": 'say "hi"',
        "B": "back\\slash",
        "C": "line\nbreak\ttab",
        "D": 'single "quoted"',
        "E": "it's",
        "F": "C:\\dir",
        "G": "",
        "H": "semi;colon, comma } brace ] bracket # hash /* not a comment */",
    }


def test_comments_of_each_kind() -> None:
    text = """# a hash comment line
// a slash comment line
/* a block
   comment over lines */
[
    JobName = "x"; // trailing slash comment
    Site = LCG.CERN.ch; # trailing hash comment
    Executable = /bin/ls // comment after a bare word
    ;
    Data = root://host//path/f.root;
    Url = "root://host//path"; /* block */ Tag = /* inline */ "t";
    List = { "a", // inside a list
             "b" /* also here */ };
]
// after the closing bracket
/* and a block */
"""
    assert parse_jdl(text) == {
        "JobName": "x",
        "Site": "LCG.CERN.ch",
        "Executable": "/bin/ls",
        "Data": "root://host//path/f.root",
        "Url": "root://host//path",
        "Tag": "t",
        "List": ["a", "b"],
    }


def test_lists_nested_empty_and_trailing_comma() -> None:
    text = """
    Empty = {};
    Spaced = { };
    Trailing = {"a", "b",};
    Mixed = {1, -2.5, true, word, 'q', LFN:/vo/x.txt};
    Nested = {{1, 2}, {}, {"x", {"deep"}}};
    Multi = {
        "one",
        "two",
    };
    """
    assert parse_jdl(text) == {
        "Empty": [],
        "Spaced": [],
        "Trailing": ["a", "b"],
        "Mixed": [1, -2.5, True, "word", "q", "LFN:/vo/x.txt"],
        "Nested": [[1, 2], [], ["x", ["deep"]]],
        "Multi": ["one", "two"],
    }


def test_keys_keep_their_spelling_and_order() -> None:
    attrs = parse_jdl("zeta = 1; alpha = 2; My_Key.sub = 3; _x = 4;")
    assert list(attrs) == ["zeta", "alpha", "My_Key.sub", "_x"]


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        # unterminated strings point at the opening quote
        ('A = 1;\nB = "abc;\nC = 2;', 2, 5, 'unterminated string: the " here is never closed'),
        ("A = 'abc", 1, 5, "unterminated string: the ' here is never closed"),
        ('A = "ends with backslash\\', 1, 5, "unterminated string"),
        ('A = {"x", "y}', 1, 11, "unterminated string"),
        # missing '='
        (
            '[\n  Executable "/bin/ls";\n]',
            2,
            14,
            "expected '=' after attribute name 'Executable', found '\"'",
        ),
        ("Executable", 1, 11, "expected '=' after attribute name 'Executable', found the end"),
        ("A = 1;\nB : 2;", 2, 3, "expected '=' after attribute name 'B', found ':'"),
        # missing value
        ("A = ;", 1, 5, "missing value after 'A ='"),
        ("A = 1;\nB =", 2, 4, "missing value after 'B ='"),
        ("[ A = ]", 1, 7, "missing value after 'A ='"),
        ("Executable =\nArguments = -l;", 1, 13, "missing value after 'Executable ='"),
        # unterminated list / comment / brackets
        ('A = {"x", "y";\nB = 1;', 1, 5, "unterminated list: the '{' here is never closed"),
        ('A = 1;\nB = { "x"', 2, 5, "unterminated list"),
        ("A = {{1, 2}", 1, 5, "unterminated list"),
        ("A = {1, 2\n]", 1, 5, "unterminated list"),
        ("A = {1,", 1, 5, "unterminated list"),
        ("A = 1;\n/* never\nclosed", 2, 1, "unterminated comment: '/*' is never closed"),
        ('A = "x"; /* open', 1, 10, "unterminated comment"),
        ("  [\nA = 1;", 1, 3, "the '[' opened here is never closed by ']'"),
        # unexpected characters
        ("A = 1;\n3B = 2;", 2, 1, "expected an attribute name, found '3'"),
        ('"A" = 1;', 1, 1, "expected an attribute name, found '\"'"),
        ("A = 1;\n  @ = 2;", 2, 3, "expected an attribute name, found '@'"),
        ("A = };", 1, 5, "unexpected character '}' where a value was expected"),
        ("A = = 1;", 1, 5, "unexpected character '='"),
        ("A = [ B = 1 ];", 1, 5, "unexpected character '['"),
        ("A = {1,,2};", 1, 8, "missing list element before ','"),
        ("A = {,};", 1, 6, "missing list element before ','"),
        ('A = {"a" "b"};', 1, 10, "expected ',' or '}' in the list, found '\"'"),
        ("A = {a\n b};", 2, 2, "expected ',' or '}' in the list, found 'b'"),
        ('A = "x" "y";', 1, 9, "expected ';' after the value of 'A', found '\"'"),
        ('A = "x"\nB = 2;', 2, 1, "expected ';' after the value of 'A', found 'B'"),
        ("A = {1} 2;", 1, 9, "expected ';' after the value of 'A', found '2'"),
        ("A = x, y;", 1, 6, "expected ';' after the value of 'A', found ','"),
        ("A = 1;\n]", 2, 1, "unexpected ']' without a matching '['"),
        # garbage after the closing bracket
        ("[ A = 1; ]\nB = 2;", 2, 1, "unexpected text after the closing ']': 'B'"),
        ("[ A = 1; ] ]", 1, 12, "unexpected text after the closing ']'"),
        ("[ A = 1; ];", 1, 11, "unexpected text after the closing ']': ';'"),
    ],
)
def test_syntax_errors_name_line_and_column(
    text: str, line: int, column: int, message: str
) -> None:
    error = _error(text)
    assert (error.line, error.column) == (line, column), error.message
    assert error.message.startswith(message)
    assert str(error) == f"JDL syntax error at line {line}, column {column}: {error.message}"


def test_duplicate_attribute_is_an_error() -> None:
    error = _error('Executable = "a";\nArguments = "-l";\n  executable = "b";')
    assert (error.line, error.column) == (3, 3)
    assert error.message == "duplicate attribute 'executable' (first set at line 1 as 'Executable')"
    error = _error("[\n  A = 1;\n  A = 2;\n]")
    assert (error.line, error.column) == (3, 3)
    assert error.message == "duplicate attribute 'A' (first set at line 2)"


def test_syntax_error_is_a_value_error() -> None:
    error = _error("A = ")
    assert isinstance(error, ValueError)
    assert str(error) == "JDL syntax error at line 1, column 5: missing value after 'A ='"


# -- format_jdl -----------------------------------------------------------------------------


def test_format_jdl_output() -> None:
    attrs: dict[str, JDLValue] = {
        "JobName": 'say "hi"\n',
        "Executable": "C:\\bin\\run",
        "Parameters": 10,
        "ParameterStep": 2.5,
        "Debug": False,
        "InputSandbox": ["a.sh", ["nested", 1], []],
    }
    text = format_jdl(attrs)
    assert text == (
        "[\n"
        '    JobName = "say \\"hi\\"\\n";\n'
        '    Executable = "C:\\\\bin\\\\run";\n'
        "    Parameters = 10;\n"
        "    ParameterStep = 2.5;\n"
        "    Debug = false;\n"
        '    InputSandbox = {"a.sh", {"nested", 1}, {}};\n'
        "]\n"
    )
    assert parse_jdl(text) == attrs
    assert format_jdl({}) == "[\n]\n"
    assert parse_jdl(format_jdl({})) == {}


def test_format_jdl_keeps_strings_that_look_like_other_types() -> None:
    attrs: dict[str, JDLValue] = {"A": "10", "B": "true", "C": "1.5", "D": "{x}", "E": " pad "}
    assert parse_jdl(format_jdl(attrs)) == attrs


@pytest.mark.parametrize(
    ("attrs", "error"),
    [
        ({"1bad": 1}, ValueError),
        ({"has space": 1}, ValueError),
        ({"Key": 1, "KEY": 2}, ValueError),
        ({"Nan": math.nan}, ValueError),
        ({"Inf": [math.inf]}, ValueError),
        ({"Dict": {"a": 1}}, TypeError),
        ({"NoneValue": None}, TypeError),
    ],
)
def test_format_jdl_rejects_what_jdl_cannot_hold(attrs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        format_jdl(attrs)  # type: ignore[arg-type]


# Parameter-set lists are read as text (see test_parameter_set_list_items_keep_their_text).
_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,15}", fullmatch=True).filter(
    lambda k: k.lower() != "parameters" and not k.lower().startswith("parameters.")
)
_scalars = (
    st.text(max_size=30)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@given(st.dictionaries(_keys, _values, max_size=8))
def test_format_parse_round_trip(attrs: dict[str, JDLValue]) -> None:
    unique: dict[str, JDLValue] = {}
    for key, value in attrs.items():
        if key.lower() not in {k.lower() for k in unique}:
            unique[key] = value
    text = format_jdl(unique)
    parsed = parse_jdl(text)
    assert parsed == unique
    assert list(parsed) == list(unique)
    assert repr(parsed) == repr(unique)  # same types too: True stays True, 1.0 stays 1.0


def test_parameter_set_list_items_keep_their_text() -> None:
    # DIRAC substitutes a listed parameter value as the text written: 1.50 stays "1.50".
    parsed = parse_jdl(
        "Parameters = {1.50, 1e3, 007, true, {/a, 2.0}};\n"
        'parameters.Energy = {0.10, "quoted"};\n'
        "Parameters.n = 3; ParameterStart = 1.50; Other = {1.50, true};"
    )
    assert parsed == {
        "Parameters": ["1.50", "1e3", "007", "true", ["/a", "2.0"]],
        "parameters.Energy": ["0.10", "quoted"],
        "Parameters.n": 3,  # a count, not a list
        "ParameterStart": 1.5,
        "Other": [1.5, True],
    }


def test_dirac_job_api_layout_parses() -> None:
    # The layout of DIRAC's ClassAd.asJDL(): sorted keys, bare values, one item per line,
    # nested lists split over lines.
    parsed = parse_jdl((_dirac_fixtures() / "job_api_parametric.jdl").read_text())
    assert parsed["Parameters.InputData"] == [
        ["LFN:/ctao/sim/a1.dat", "LFN:/ctao/sim/a2.dat"],
        ["LFN:/ctao/sim/b1.dat"],
        ["LFN:/ctao/sim/c1.dat", "LFN:/ctao/sim/c2.dat"],
    ]
    assert parsed["InputData"] == "%(InputData)s"
    assert parsed["JobConfigArgs"] == "/Resources/Tuning=fast"
    assert parsed["ExecutionEnvironment"] == ["CTA_STAGE=simulation", "CTA_LABEL=run%20one"]
    assert parsed["OutputSandbox"] == ["std.err", "std.out"]
