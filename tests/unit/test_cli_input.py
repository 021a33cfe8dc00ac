"""The `solo` command's own input checks: a bad option is one line on stderr and exit code 2, never a traceback."""
from __future__ import annotations

import pytest

from solo.cli import build_parser, main

DEEP = "[" * 100_000


@pytest.mark.parametrize("argv, says", [
    (["deploy", "svc.py", "--config", "{x"], "--config: not valid JSON"),
    (["deploy", "svc.py", "--config", DEEP], "--config: JSON nested too deeply"),
    (["deploy", "svc.py", "--config", "[1]"], "--config must be a JSON object"),
    (["deploy", "svc.py", "--resource", "gpu=abc"], "--resource takes NAME=AMOUNT with a number >= 0"),
    (["deploy", "svc.py", "--resource", "gpu=nan"], "got gpu='nan'"),
    (["deploy", "svc.py", "--resource", "gpu=-1"], "got gpu='-1'"),
    (["deploy", "svc.py", "--resource", "gpu"], "--resource takes KEY=VALUE"),
    (["deploy", "svc.py", "--memory", "9" * 400 + "TiB"], "is too large"),
    (["deploy", "svc.py", "--concurrency", "-5"], "argument --concurrency: -5 is out of range"),
    (["deploy", "svc.py", "--max-restarts", "99999999999"], "argument --max-restarts: 99999999999 is out of range"),
    (["deploy", "svc.py", "--cpus", "nan"], "argument --cpus: 'nan' is not a number >= 0"),
    (["deploy", "svc.py", "--gpus", "-1"], "argument --gpus: '-1' is not a number >= 0"),
    (["call", "svc", "f", "{x"], "arguments: not valid JSON"),
    (["call", "svc", "f", DEEP], "arguments: JSON nested too deeply"),
    (["call", "svc", "f", "--timeout", "-1"], "argument --timeout"),
    (["swap", "svc", "svc.py", "--watch", "inf"], "argument --watch: 'inf' is not a number"),
    (["events", "--after-id", "-1"], "argument --after-id: -1 is out of range"),
    (["events", "--limit", "0"], "argument --limit: 0 is out of range"),
    (["events", "--since", "99999999999999d"], "reaches back before 1970"),
    (["tokens", "mint", "acme", "--ttl", "9" * 400 + "d"], "longer than 100 years"),
    (["tokens", "attenuate", "--public-key", "zz", "--token", "t"], "--public-key is not a root public key"),
    (["tokens", "attenuate", "--public-key", "abcd", "--token", "t"], "--public-key is not a root public key"),
    (["discover", "--label", "x"], "--label takes KEY=VALUE"),
    (["deploy"], "the following arguments are required: file"),
])
def test_bad_option_is_one_line_and_exit_code_2(argv, says, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SOLO_DATA_DIR", str(tmp_path))  # nothing runs there: every check is before any call
    monkeypatch.delenv("SOLO_ADDRESS", raising=False)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, says", [(["up", "--port", "99999"], "argument --port: 99999 is out of range"),
                                        (["up", "--port", "x"], "argument --port: 'x' is not a whole number"),
                                        (["up", "--num-cpus", "0"], "argument --num-cpus: 0 is out of range")])
def test_bad_up_option_is_a_usage_error(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:  # parsing only: nothing is started
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and says in err and len(err.strip().splitlines()) == 1, err
