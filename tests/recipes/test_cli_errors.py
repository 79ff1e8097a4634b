"""recipes/cli_errors.py: which values are local paths, how a missing one is named, URLs safe to print."""

import pytest

from recipes.cli_errors import InputError, RunFailed, check_local_path, is_path_like, public_url, run_cli


@pytest.mark.parametrize(
    ("value", "path_like"),
    [
        ("/abs/model", True),
        ("./model", True),
        ("../model", True),
        ("~/model", True),
        ("outputs/tiny/stage1", True),  # more than one '/'
        ("have/stage2", True),  # first component exists here
        ("org/name", False),  # a Hub id
        ("gpt2", False),
        ("FreedomIntelligence/ALLaVA-Phi2-2_7B", False),
    ],
)
def test_path_like_rule(value, path_like, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "have").mkdir()
    assert is_path_like(value) == path_like


def test_check_local_path_names_the_flag_and_the_missing_part(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert check_local_path("org/name", "--model") == "org/name"
    assert check_local_path("./runs", "--model") == "./runs"  # as given: it names the model in results and caches
    with pytest.raises(InputError) as error:
        check_local_path("./rnus/tiny/stage2", "--model")
    assert str(error.value) == (
        "--model ./rnus/tiny/stage2: no such local path ('rnus' is not in .); a Hub id looks like org/name"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_local_path("~/runs", "--model") == str(tmp_path / "runs")


def test_public_url_drops_credentials_query_and_fragment():
    assert public_url("https://user:pw@judge.example:8443/v1?key=sk-1#x") == "https://judge.example:8443/v1"
    assert public_url("http://[::1]:9/v1") == "http://[::1]:9/v1"
    assert public_url(None) is None


def test_run_cli_turns_expected_errors_into_one_line_and_exit_codes(capsys, monkeypatch):
    def fail(error):
        def main():
            raise error

        return main

    with pytest.raises(SystemExit) as exit_info:
        run_cli(fail(InputError("data.jsonl, line 3:\n  bad field")))
    assert exit_info.value.code == 2 and capsys.readouterr().err == "error: data.jsonl, line 3: bad field\n"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(fail(RunFailed("judge unreachable")))
    assert exit_info.value.code == 1 and capsys.readouterr().err == "failed: judge unreachable\n"
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_cli(fail(KeyError("x")))
    monkeypatch.setenv("LOGLEVEL", "DEBUG")
    with pytest.raises(SystemExit):
        run_cli(fail(InputError("bad")))
    assert "Traceback" in capsys.readouterr().err
    assert run_cli(lambda: 7) == 7
