"""Tests for ctaprod.core.jobdesc: JDL/YAML/JSON submissions into validated job descriptions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ctaprod.core.errors import InvalidInput, TooLarge
from ctaprod.core.jobdesc import (
    SubmissionLimits,
    expand,
    guess_format,
    load_document,
    normalize_keys,
    parse_submission,
    substitute_job_id,
)
from ctaprod.core.jobs import JobDescription
from tests.fixtures import fixture_dir

LIMITS = SubmissionLimits()
FIXTURES = ["simple.jdl", "lfn_input_data.jdl", "lfn_input_sandbox.jdl", "input_output_sandbox.jdl"]


def dirac_fixtures() -> Path:
    return fixture_dir("dirac-jdl")


def one(text: str, fmt: str = "auto", limits: SubmissionLimits = LIMITS) -> JobDescription:
    jobs = parse_submission(text, fmt, limits)
    assert len(jobs) == 1
    return jobs[0]


# -- the DIRAC tutorial JDLs ----------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_dirac_fixture_is_accepted(name: str) -> None:
    desc = one((dirac_fixtures() / name).read_text())
    assert desc.std_output == "StdOut"
    assert desc.std_error == "StdErr"
    assert desc.output_sandbox == ["StdOut", "StdErr"]
    assert guess_format((dirac_fixtures() / name).read_text()) == "jdl"


def test_simple_fixture_fields() -> None:
    desc = one((dirac_fixtures() / "simple.jdl").read_text())
    assert desc.job_name == "Simple_Job"
    assert desc.executable == "/bin/ls"
    assert desc.arguments == "-ltr"
    assert desc.input_sandbox == []
    assert desc.job_type == "User"
    assert desc.priority == 1


def test_lfn_input_data_fixture_fields() -> None:
    desc = one((dirac_fixtures() / "lfn_input_data.jdl").read_text())
    assert desc.job_name == "LFNInputData"
    assert desc.executable == "testJob.sh"
    assert desc.input_sandbox == ["testJob.sh"]
    # The LFN: prefix is dropped, the LFN stays an absolute path.
    assert desc.input_data == ["/vo.formation.idgrilles.fr/user/v/vhamar/test.txt"]
    assert desc.output_se == ["M3PEC-disk"]
    assert desc.output_data == ["StdOut"]


def test_lfn_input_sandbox_fixture_keeps_the_lfn() -> None:
    desc = one((dirac_fixtures() / "lfn_input_sandbox.jdl").read_text())
    assert desc.input_sandbox == [
        "testJob.sh",
        "LFN:/vo.formation.idgrilles.fr/user/v/vhamar/test.txt",
    ]
    assert desc.sandbox_refs() == []


def test_input_output_sandbox_fixture() -> None:
    desc = one((dirac_fixtures() / "input_output_sandbox.jdl").read_text())
    assert desc.job_name == "InputAndOuputSandbox"
    assert desc.input_sandbox == ["testJob.sh"]


def test_bracketed_classad_form() -> None:
    text = '[\n  Executable = "/bin/echo";\n  Arguments = "hello";\n  JobGroup = g1;\n]\n'
    desc = one(text)
    assert (desc.executable, desc.arguments, desc.job_group) == ("/bin/echo", "hello", "g1")


def test_sandbox_refs() -> None:
    sha = "ab" * 32
    desc = one(f'Executable = "x"; InputSandbox = {{"SB:{sha}", "LFN:/a/b"}};')
    assert desc.sandbox_refs() == [sha]


# -- parametric jobs ------------------------------------------------------------------------


def test_parametric_start_step_factor() -> None:
    text = (
        'Executable = "/bin/echo"; Arguments = "value %s index %n";\n'
        "Parameters = 4; ParameterStart = 1; ParameterStep = 2; ParameterFactor = 3;\n"
        'JobName = "p_%n";'
    )
    jobs = parse_submission(text, "jdl", LIMITS)
    # start, start*f+step, ...: 1, 5, 17, 53
    assert [j.arguments for j in jobs] == [
        "value 1 index 0",
        "value 5 index 1",
        "value 17 index 2",
        "value 53 index 3",
    ]
    assert [j.job_name for j in jobs] == ["p_0", "p_1", "p_2", "p_3"]


def test_parametric_step_only_uses_dirac_defaults() -> None:
    # DIRAC: ParameterStart defaults to 1, ParameterFactor to 1.
    jobs = parse_submission(
        'Executable = "x"; Arguments = "%s"; Parameters = 3; ParameterStep = 1;', "jdl", LIMITS
    )
    assert [j.arguments for j in jobs] == ["1", "2", "3"]


def test_parametric_float_values() -> None:
    jobs = parse_submission(
        'Executable = "x"; Arguments = "%s"; Parameters = 3; ParameterStart = 0.5;'
        " ParameterStep = 0.25;",
        "jdl",
        LIMITS,
    )
    # DIRAC writes generated values with Python's str: a float stays a float (1.0, not 1).
    assert [j.arguments for j in jobs] == ["0.5", "0.75", "1.0"]


def test_parametric_index_is_zero_padded_like_dirac() -> None:
    jobs = parse_submission('Executable = "x"; JobName = "j%n"; Parameters = 11;', "jdl", LIMITS)
    assert [j.job_name for j in jobs][:2] == ["j00", "j01"]
    assert jobs[-1].job_name == "j10"


def test_parametric_list() -> None:
    text = (
        'Executable = "run.sh"; Arguments = "--particle %s";\n'
        'Parameters = {"gamma", "proton", "electron"};\n'
        'OutputSandbox = {"out_%s_%n.log"}; InputData = {"LFN:/ctao/%s/file.dat"};'
    )
    jobs = parse_submission(text, "jdl", LIMITS)
    assert [j.arguments for j in jobs] == [
        "--particle gamma",
        "--particle proton",
        "--particle electron",
    ]
    assert [j.output_sandbox for j in jobs] == [
        ["out_gamma_0.log"],
        ["out_proton_1.log"],
        ["out_electron_2.log"],
    ]
    assert jobs[1].input_data == ["/ctao/proton/file.dat"]


def test_parametric_keys_without_parameters() -> None:
    with pytest.raises(InvalidInput, match="ParameterStep' needs 'Parameters'"):
        parse_submission('Executable = "x"; ParameterStep = 2;', "jdl", LIMITS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("Parameters = 0;", "at least 1"),
        ("Parameters = {};", "empty list"),
        ('Parameters = "ten";', "number or a list"),
        ('Parameters = 2; ParameterStep = "a";', "ParameterStep' must be a number"),
        ("Parameters = 2; ParameterFactor = true;", "ParameterFactor' must be a number"),
    ],
)
def test_bad_parametric_values(extra: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_submission(f'Executable = "x"; {extra}', "jdl", LIMITS)


def test_too_many_parametric_jobs() -> None:
    limits = SubmissionLimits(max_parametric_jobs=5)
    assert len(parse_submission('Executable = "x"; Parameters = 5;', "jdl", limits)) == 5
    with pytest.raises(TooLarge, match="6 parametric jobs requested, the limit is 5"):
        parse_submission('Executable = "x"; Parameters = 6;', "jdl", limits)
    with pytest.raises(TooLarge):
        parse_submission('Executable = "x"; Parameters = {1,2,3,4,5,6};', "jdl", limits)


def test_too_many_jobs_in_one_submission() -> None:
    limits = SubmissionLimits(max_jobs_per_call=4)
    docs = json.dumps([{"Executable": "x", "Parameters": 3}, {"Executable": "y", "Parameters": 2}])
    with pytest.raises(TooLarge, match="more than 4 jobs"):
        parse_submission(docs, "json", limits)


def test_job_id_placeholder_is_kept_until_matching() -> None:
    desc = one(
        'Executable = "x"; Arguments = "--id %j"; OutputSandbox = {"out_%j.txt"};'
        ' StdOutput = "job%j.out";'
    )
    assert desc.arguments == "--id %j"
    matched = substitute_job_id(desc, 4711)
    assert matched.arguments == "--id 4711"
    assert matched.output_sandbox == ["out_4711.txt"]
    assert matched.std_output == "job4711.out"
    assert desc.arguments == "--id %j"  # the stored description is not changed


def test_parametric_and_job_id_placeholders_together() -> None:
    jobs = parse_submission(
        'Executable = "x"; Arguments = "%s-%n-%j"; Parameters = {a, b};', "jdl", LIMITS
    )
    assert [substitute_job_id(j, 10 + i).arguments for i, j in enumerate(jobs)] == [
        "a-0-10",
        "b-1-11",
    ]


# -- validation -----------------------------------------------------------------------------


def test_unknown_key_with_suggestion() -> None:
    with pytest.raises(
        InvalidInput,
        match=r"unknown job attribute 'Executible' \(did you mean "
        r"'Executable'\?\)",
    ) as info:
        parse_submission('Executible = "/bin/ls";', "jdl", LIMITS)
    assert info.value.detail["attribute"] == "Executible"


def test_unknown_key_without_a_close_match_is_a_custom_attribute() -> None:
    # DIRAC keeps attributes it does not know; so does ctaprod (shown as job parameters).
    desc = one('Executable = "x"; Zzqqxx = 1; ProductionStep = "merge";')
    assert desc.custom_attributes == {"Zzqqxx": 1, "ProductionStep": "merge"}
    assert desc.custom_parameters() == {"Zzqqxx": "1", "ProductionStep": "merge"}


def test_keys_are_case_insensitive_and_dirac_noise_is_ignored() -> None:
    desc = one(
        'executable = "x"; cputime = 100; OwnerGroup = "other"; JobRequirements = "r";'
        " LogLevel = DEBUG;"
    )
    assert desc.executable == "x"
    assert desc.cpu_time == 100
    assert normalize_keys({"jobname": "a", "SITE": "b"}) == {"JobName": "a", "Site": "b"}


def test_same_key_twice_in_yaml() -> None:
    with pytest.raises(InvalidInput, match="given twice"):
        normalize_keys({"Executable": "a", "executable": "b"})


@pytest.mark.parametrize(
    ("attr", "value"),
    [
        ("Priority", '"high"'),
        ("Priority", "11"),
        ("CPUTime", "{1, 2}"),
        ("CPUTime", '"long"'),
        ("NumberOfProcessors", "0"),
        ("NumberOfProcessors", '"many"'),
        ("MaxRAM", "-1"),
        ("Tags", '{"a", {"b"}}'),
        ("Environment", '{"NOEQUALS"}'),
        ("InputData", '{"relative/file"}'),
        ("OutputSandbox", '{"../escape"}'),
        ("StdOutput", '"/abs/out"'),
    ],
)
def test_wrong_types_and_values(attr: str, value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_submission(f'Executable = "x"; {attr} = {value};', "jdl", LIMITS)
    assert info.value.detail["attribute"].split(".")[0] == attr


def test_missing_executable() -> None:
    with pytest.raises(InvalidInput, match="Executable"):
        parse_submission('JobName = "x";', "jdl", LIMITS)


def test_cpu_time_limits() -> None:
    limits = SubmissionLimits(min_cpu_time=10, max_cpu_time=1000)
    assert one('Executable = "x"; CPUTime = 1000;', "jdl", limits).cpu_time == 1000
    assert one('Executable = "x"; CPUTime = 10;', "jdl", limits).cpu_time == 10
    for bad in (9, 1001):
        with pytest.raises(InvalidInput, match=r"CPUTime .* outside \[10, 1000\]") as info:
            parse_submission(f'Executable = "x"; CPUTime = {bad};', "jdl", limits)
        assert info.value.detail["attribute"] == "CPUTime"


def test_default_cpu_time_must_fit_the_limits() -> None:
    # The default CPUTime (one day) is refused by an installation that allows less.
    with pytest.raises(InvalidInput, match="CPUTime"):
        parse_submission('Executable = "x";', "jdl", SubmissionLimits(max_cpu_time=3600))


def test_too_many_input_data() -> None:
    limits = SubmissionLimits(max_input_data=3)
    ok = ", ".join(f'"LFN:/vo/f{i}"' for i in range(3))
    assert len(one(f'Executable = "x"; InputData = {{{ok}}};', "jdl", limits).input_data) == 3
    bad = ", ".join(f'"LFN:/vo/f{i}"' for i in range(4))
    with pytest.raises(InvalidInput, match="4 InputData files, the limit is 3"):
        parse_submission(f'Executable = "x"; InputData = {{{bad}}};', "jdl", limits)


def test_parametric_error_names_the_job() -> None:
    with pytest.raises(InvalidInput, match="parametric job 1: job attribute 'Priority'"):
        parse_submission(
            'Executable = "x"; Priority = "%s"; Parameters = {3, high};', "jdl", LIMITS
        )


def test_malformed_jdl_gives_line_and_column() -> None:
    text = 'Executable = "/bin/ls";\nArguments = "a" "b";\n'
    with pytest.raises(InvalidInput) as info:
        parse_submission(text, "auto", LIMITS)
    assert info.value.detail == {"line": 2, "column": 17}
    assert "line 2, column 17" in str(info.value)


def test_lists_written_as_strings() -> None:
    desc = one(
        'Executable = "x"; Site = "LCG.A.fr, LCG.B.de"; BannedSites = "LCG.C.it"; Tags = "GPU";'
    )
    assert desc.sites == ["LCG.A.fr", "LCG.B.de"]
    assert desc.banned_sites == ["LCG.C.it"]
    assert desc.tags == ["GPU"]


def test_any_site_and_any_platform_mean_no_requirement() -> None:
    desc = one('Executable = "x"; Site = "ANY"; Platform = "any";')
    assert desc.sites == []
    assert desc.platform == ""


def test_environment_from_jdl_list() -> None:
    desc = one('Executable = "x"; Environment = {"A=1", "B=x=y"};')
    assert desc.environment == {"A": "1", "B": "x=y"}


# -- YAML and JSON --------------------------------------------------------------------------


def test_yaml_document() -> None:
    text = yaml.safe_dump(
        {
            "Executable": "/bin/echo",
            "Arguments": ["a", "b"],
            "CPUTime": 600,
            "Tags": ["GPU"],
            "JobGroup": "g",
        }
    )
    desc = one(text)
    assert (desc.executable, desc.arguments, desc.cpu_time, desc.tags) == (
        "/bin/echo",
        "a b",
        600,
        ["GPU"],
    )


def test_yaml_list_and_parametric() -> None:
    text = "- Executable: /bin/a\n- Executable: /bin/b\n  Arguments: '%s'\n  Parameters: [x, y]\n"
    jobs = parse_submission(text, "auto", LIMITS)
    assert [(j.executable, j.arguments) for j in jobs] == [
        ("/bin/a", ""),
        ("/bin/b", "x"),
        ("/bin/b", "y"),
    ]


def test_json_document_and_list() -> None:
    doc = {"Executable": "/bin/echo", "Priority": 5, "NumberOfProcessors": 4}
    assert one(json.dumps(doc)).number_of_processors == 4
    pretty = json.dumps([doc, {**doc, "Priority": 2}], indent=2)
    assert [j.priority for j in parse_submission(pretty, "auto", LIMITS)] == [5, 2]


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ('Executable = "x";', "jdl"),
        ('[\n Executable = "x";\n]', "jdl"),
        ('# a comment\nExecutable = "x";', "jdl"),
        ('// a comment\n/* block\n comment */\nExecutable = "x";', "jdl"),
        ('JobName: "a=b"\nExecutable: x\n', "yaml"),
        ("# comment\nExecutable: x\n", "yaml"),
        ('{"Executable": "x"}', "json"),
        ('[\n  {\n    "Executable": "x"\n  }\n]', "json"),
        ('[ {"Executable": "x"} ]', "json"),
    ],
)
def test_format_detection(text: str, fmt: str) -> None:
    assert guess_format(text) == fmt
    assert one(text).executable == "x"


def test_explicit_format_wins() -> None:
    with pytest.raises(InvalidInput, match="as json"):
        parse_submission("Executable: x", "json", LIMITS)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string", "[1, 2]"])
def test_yaml_or_json_must_hold_mappings(text: str) -> None:
    with pytest.raises(InvalidInput, match="must be a mapping"):
        load_document(text, "yaml")


def test_broken_yaml_and_json() -> None:
    with pytest.raises(InvalidInput, match="cannot parse the job description as yaml"):
        parse_submission("Executable: [unclosed\n", "yaml", LIMITS)
    with pytest.raises(InvalidInput, match="cannot parse the job description as json"):
        parse_submission('{"Executable": ', "json", LIMITS)


def test_empty_submission() -> None:
    with pytest.raises(InvalidInput, match="no job"):
        parse_submission("[]", "json", LIMITS)


def test_expand_takes_parsed_documents() -> None:
    jobs = expand({"executable": "x", "Parameters": 2, "JobName": "n%s"}, LIMITS)
    assert [j.job_name for j in jobs] == ["n1", "n1"]


def test_round_trip_through_the_stored_form() -> None:
    desc = one((dirac_fixtures() / "lfn_input_data.jdl").read_text())
    stored = desc.model_dump_json(by_alias=True)
    assert JobDescription.model_validate_json(stored) == desc
    assert "InputData" in desc.to_jdl_dict()
