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
ALL_FIXTURES = sorted(p.name for p in fixture_dir("dirac-jdl").glob("*.jdl"))


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


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_every_dirac_fixture_is_accepted(name: str) -> None:
    text = (dirac_fixtures() / name).read_text()
    assert guess_format(text) == "jdl"
    assert parse_submission(text, "auto", LIMITS)


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


# -- DIRAC's parametric jobs as its Job API and its users write them ------------------------


def test_named_parameter_sets_expand_in_parallel() -> None:
    jobs = parse_submission(
        'Executable = "x"; Arguments = "%(particle)s-%(energy)s-%n";'
        " Parameters.particle = {gamma, proton, electron}; Parameters.energy = {1, 10, 100};",
        "jdl",
        LIMITS,
    )
    # One job per position, not the 9 of a product.
    assert [j.arguments for j in jobs] == ["gamma-1-0", "proton-10-1", "electron-100-2"]


def test_dirac_job_api_layout_fixture() -> None:
    jobs = parse_submission(
        (dirac_fixtures() / "job_api_parametric.jdl").read_text(), "jdl", LIMITS
    )
    assert [j.job_name for j in jobs] == ["sim_0", "sim_1", "sim_2"]
    assert [j.job_group for j in jobs] == ["prod_101", "prod_202", "prod_303"]
    # Listed values are substituted as written: 1.50 and 1e3 keep their text.
    assert [j.arguments.split(" --cfg")[0] for j in jobs] == [
        "--seed 101 --energy 0.5",
        "--seed 202 --energy 1.50",
        "--seed 303 --energy 1e3",
    ]
    # One InputData list per job, as lists (never Python text).
    assert [j.input_data for j in jobs] == [
        ["/ctao/sim/a1.dat", "/ctao/sim/a2.dat"],
        ["/ctao/sim/b1.dat"],
        ["/ctao/sim/c1.dat", "/ctao/sim/c2.dat"],
    ]
    first = jobs[0]
    assert first.processor_range() == (2, 4)
    assert first.execution_environment == {"CTA_STAGE": "simulation", "CTA_LABEL": "run one"}
    # The Job API already wrote --cfg into the arguments: not appended twice.
    assert first.command_arguments() == first.arguments
    assert first.command_arguments().count("--cfg") == 1
    assert first.custom_attributes == {"ProductionStep": "simulation"}


def test_named_sequences_and_dirac_float_formatting() -> None:
    jobs = parse_submission((dirac_fixtures() / "named_sequences.jdl").read_text(), "jdl", LIMITS)
    # zenith: 20 + 10 n; azimuth: 1 * 2^n; unnamed: 0 + 0.1 n written as DIRAC's str() does.
    assert [j.arguments for j in jobs] == [
        "--zenith 20 --azimuth 1 --offset 0.0",
        "--zenith 30 --azimuth 2 --offset 0.1",
        "--zenith 40 --azimuth 4 --offset 0.2",
        "--zenith 50 --azimuth 8 --offset 0.30000000000000004",
    ]
    assert jobs[3].output_sandbox == ["StdOut", "StdErr", "scan_50.log"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("Parameters = {1.50, 2.0, 1e3, 007};", ["1.50", "2.0", "1e3", "007"]),
        ("Parameters = 3; ParameterStart = 1; ParameterStep = 0.5;", ["1.0", "1.5", "2.0"]),
        ("Parameters = 3; ParameterStart = 2; ParameterFactor = 1.5;", ["2.0", "3.0", "4.5"]),
        ("Parameters = 2; ParameterStart = 1.0;", ["1.0", "1.0"]),
        ('Parameters = 2; ParameterStart = "3"; ParameterStep = "2";', ["3", "5"]),
    ],
)
def test_parameter_values_are_written_as_dirac_writes_them(
    params: str, expected: list[str]
) -> None:
    jobs = parse_submission(f'Executable = "x"; Arguments = "%s"; {params}', "jdl", LIMITS)
    assert [j.arguments for j in jobs] == expected


def test_parameter_sets_of_different_lengths() -> None:
    with pytest.raises(InvalidInput, match="different lengths") as info:
        parse_submission(
            'Executable = "x"; Parameters.a = {1, 2, 3}; Parameters.b = {1, 2};', "jdl", LIMITS
        )
    assert "Parameters.a has 3" in str(info.value)
    assert "Parameters.b has 2" in str(info.value)
    with pytest.raises(InvalidInput, match="different lengths"):
        parse_submission('Executable = "x"; Parameters = 4; Parameters.b = {1, 2};', "jdl", LIMITS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('Parameters.a = {1, 2}; Arguments = "%(b)s";', r"no parameter set 'b'.*named sets are: a"),
        ('Parameters.run = {1, 2}; Arguments = "%(Run)s";', r"did you mean '%\(run\)s'"),
        ('Arguments = "%(seed)s";', r"Arguments.*'%\(seed\)s'.*defines no named parameter set"),
        ('Parameters.a = {1, 2}; OutputSandbox = {"%(c)s.log"};', r"OutputSandbox.*'c'"),
    ],
)
def test_unknown_placeholders(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_submission(f'Executable = "x"; {text}', "jdl", LIMITS)


def test_percent_s_without_an_unnamed_set_is_left_alone() -> None:
    # DIRAC substitutes %s only with an unnamed set: `date +%s` keeps its meaning.
    jobs = parse_submission(
        'Executable = "x"; Arguments = "%(a)s $(date +%s)"; Parameters.a = {p, q};', "jdl", LIMITS
    )
    assert [j.arguments for j in jobs] == ["p $(date +%s)", "q $(date +%s)"]


def test_named_start_step_without_a_count_needs_parameters() -> None:
    with pytest.raises(InvalidInput, match=r"'ParameterStep.a' needs 'Parameters'"):
        parse_submission('Executable = "x"; ParameterStep.a = 2;', "jdl", LIMITS)
    with pytest.raises(InvalidInput, match="cannot be used with the listed values"):
        parse_submission(
            'Executable = "x"; Parameters.a = {1, 2}; ParameterStep.a = 2;', "jdl", LIMITS
        )


@pytest.mark.parametrize(
    "params",
    [
        "Parameters = 5000; ParameterFactor = 10;",  # a 5,000-digit integer
        "Parameters = 5000; ParameterStart = 1; ParameterFactor = 1e300;",  # float overflow
        "Parameters.a = {1,2,3,4,5}; ParameterStart.b = 1; ParameterFactor.b = 1e200;",
    ],
)
def test_runaway_parameter_factor_is_an_invalid_input(params: str) -> None:
    with pytest.raises(InvalidInput, match=r"ParameterFactor.*too large"):
        parse_submission(f'Executable = "x"; Arguments = "%s"; {params}', "jdl", LIMITS)


def test_nested_lists_are_substituted_as_lists() -> None:
    jobs = parse_submission((dirac_fixtures() / "nested_input_data.jdl").read_text(), "jdl", LIMITS)
    assert [j.input_data for j in jobs] == [
        ["/ctao/dl0/run1/a.dat", "/ctao/dl0/run1/b.dat"],
        ["/ctao/dl0/run2/a.dat"],
    ]
    # Inside a longer string a list is written as a JDL list, not as Python's repr.
    assert jobs[1].arguments == 'inputs: {"LFN:/ctao/dl0/run2/a.dat"}'
    assert "['" not in jobs[0].arguments


def test_list_placeholder_items_are_spliced_into_a_list() -> None:
    jobs = parse_submission(
        'Executable = "x"; InputData = {"LFN:/ctao/calib.dat", %(files)s};'
        ' Parameters.files = {{"LFN:/ctao/a", "LFN:/ctao/b"}, {"LFN:/ctao/c"}};',
        "jdl",
        LIMITS,
    )
    assert [j.input_data for j in jobs] == [
        ["/ctao/calib.dat", "/ctao/a", "/ctao/b"],
        ["/ctao/calib.dat", "/ctao/c"],
    ]


def test_yaml_named_sets_with_nested_lists() -> None:
    doc = {
        "Executable": "x",
        "Parameters.InputData": [["LFN:/a/1", "LFN:/a/2"], ["LFN:/b/1"]],
        "Parameters.tag": ["A", "B"],
        "InputData": "%(InputData)s",
        "JobName": "%(tag)s_%n",
        "Environment": {"TAG": "%(tag)s"},
    }
    jobs = parse_submission(yaml.safe_dump(doc), "yaml", LIMITS)
    assert [(j.job_name, j.input_data, j.environment) for j in jobs] == [
        ("A_0", ["/a/1", "/a/2"], {"TAG": "A"}),
        ("B_1", ["/b/1"], {"TAG": "B"}),
    ]


# -- custom attributes, typos -----------------------------------------------------------------


def test_custom_attributes_fixture() -> None:
    desc = one((dirac_fixtures() / "custom_attributes.jdl").read_text())
    assert desc.custom_parameters() == {
        "ProductionID": "00042",
        "DataLevel": "DL1",
        "CalibrationSteps": '{"pedestal", "flatfield"}',
        "Telescope": "LST1",
        "ZenithAngle": "20.5",
    }
    assert (desc.min_ram_mb, desc.max_ram_mb, desc.memory_requirement_mb()) == (2048, 4096, 2048)
    assert desc.grid_ce == ["ce01.cta-observatory.org"]
    assert desc.processor_range() == (2, None)
    # Shown back in the JDL as top-level attributes.
    assert desc.to_jdl_dict()["Telescope"] == "LST1"
    assert "custom_attributes" not in desc.to_jdl_dict()


@pytest.mark.parametrize(
    ("key", "known"),
    [
        ("Exectuable", "Executable"),
        ("InputSandBx", "InputSandbox"),
        ("JobNmae", "JobName"),
        ("MaxNumberOfProcesors", "MaxNumberOfProcessors"),
        ("ParametersStep", "ParameterStep"),
        ("OuptutData", "OutputData"),
        ("Prority", "Priority"),
    ],
)
def test_likely_typos_are_refused_with_a_suggestion(key: str, known: str) -> None:
    with pytest.raises(InvalidInput, match=rf"'{key}' \(did you mean '{known}'\?\)") as info:
        parse_submission(f'Executable = "x"; {key} = 1;', "jdl", LIMITS)
    assert info.value.detail["attribute"] == key


def test_dirac_names_close_to_ours_are_not_typos() -> None:
    desc = one('Executable = "x"; Parameter = 3; ParameterNumber = 1; Tag = {"GPU"};')
    assert desc.custom_attributes == {"Parameter": 3, "ParameterNumber": 1}
    assert desc.tags == ["GPU"]  # DIRAC reads Tag as Tags


def test_custom_attribute_values_must_be_jdl_values() -> None:
    with pytest.raises(InvalidInput, match="custom_attributes"):
        expand({"Executable": "x", "Nested": {"a": 1}}, LIMITS)


# -- processors, RAM, CE, environment, config arguments -------------------------------------


def test_processor_forms() -> None:
    assert one('Executable = "x";').processor_range() == (1, 1)
    assert one('Executable = "x"; NumberOfProcessors = 4;').processor_range() == (4, 4)
    # As DIRAC's Job API writes setNumberOfProcessors(4): NumberOfProcessors and its maximum.
    both = one('Executable = "x"; NumberOfProcessors = 4; MaxNumberOfProcessors = 4;')
    assert both.processor_range() == (4, 4)
    assert one('Executable = "x"; MinNumberOfProcessors = 2;').processor_range() == (2, None)
    ranged = one('Executable = "x"; MinNumberOfProcessors = 2; MaxNumberOfProcessors = 8;')
    assert ranged.processor_range() == (2, 8)
    assert ranged.cpu_limit_seconds() == 8 * ranged.cpu_time
    assert one('Executable = "x"; MinNumberOfProcessors = 2;').cpu_limit_seconds() is None
    with pytest.raises(InvalidInput, match="MaxNumberOfProcessors 2 is less than"):
        one('Executable = "x"; MinNumberOfProcessors = 4; MaxNumberOfProcessors = 2;')
    with pytest.raises(InvalidInput, match="NumberOfProcessors 4 is outside"):
        one('Executable = "x"; NumberOfProcessors = 4; MaxNumberOfProcessors = 2;')


def test_ram_and_grid_ce() -> None:
    assert one('Executable = "x"; MaxRAM = 3000;').memory_requirement_mb() == 3000
    assert one('Executable = "x"; MinRAM = 1000; MaxRAM = 3000;').memory_requirement_mb() == 1000
    with pytest.raises(InvalidInput, match="MinRAM 4000 MB is more than MaxRAM"):
        one('Executable = "x"; MinRAM = 4000; MaxRAM = 3000;')
    assert one('Executable = "x"; GridCE = "a.org, b.org";').grid_ce == ["a.org", "b.org"]


@pytest.mark.parametrize(
    "value",
    ['{"A=1", "B=x%20y"}', '"A=1;B=x%20y"', "{A=1, B=x%20y}"],
)
def test_execution_environment_forms(value: str) -> None:
    desc = one(f'Executable = "x"; Environment = {{"C=3"}}; ExecutionEnvironment = {value};')
    assert desc.execution_environment == {"A": "1", "B": "x y"}
    assert desc.payload_environment() == {"C": "3", "A": "1", "B": "x y"}
    # Written back in DIRAC's form, and read back to the same values.
    again = one(json.dumps(desc.to_jdl_dict()), "json")
    assert again.execution_environment == desc.execution_environment


def test_execution_environment_errors() -> None:
    with pytest.raises(InvalidInput, match="not NAME=value"):
        one('Executable = "x"; ExecutionEnvironment = {"JUSTANAME"};')
    with pytest.raises(InvalidInput, match="not a variable name"):
        one('Executable = "x"; ExecutionEnvironment = {"1A=2"};')
    with pytest.raises(InvalidInput, match="differs in Environment and ExecutionEnvironment"):
        one('Executable = "x"; Environment = {"A=1"}; ExecutionEnvironment = {"A=2"};')


def test_job_config_args_are_appended_as_dirac_does() -> None:
    desc = one('Executable = "x"; Arguments = "a b"; JobConfigArgs = "/Site/X=1";')
    assert desc.command_arguments() == "a b --cfg /Site/X=1"
    assert desc.arguments == "a b"
    bare = one('Executable = "x"; JobConfigArgs = "/Site/X=1";')
    assert bare.command_arguments() == "--cfg /Site/X=1"


# -- %j ---------------------------------------------------------------------------------------


def test_one_job_id_rule_for_every_string_value() -> None:
    desc = one(
        'Executable = "x"; Environment = {"OUT=out_%j"}; ExecutionEnvironment = {"ID=%j"};'
        ' OutputMetadata = "{\\"run_%j\\": \\"job %j\\"}"; RunLabel = "r%j";'
        ' Steps = {"a%j", {"b%j"}};'
    )
    got = substitute_job_id(desc, 7)
    assert got.environment == {"OUT": "out_7"}
    assert got.execution_environment == {"ID": "7"}
    # Values only: a metadata field name is a name, not text to fill in.
    assert got.output_metadata == {"run_%j": "job 7"}
    assert got.custom_attributes == {"RunLabel": "r7", "Steps": ["a7", ["b7"]]}
