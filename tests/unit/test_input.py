"""Reading map.input: text formats, files, and shell commands."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from mapwise.errors import InputError
from mapwise.executors.procgroups import pid_alive
from mapwise.items import parse_input_text, read_input

# --------------------------------------------------------------------------- parse_input_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
        ("  [1, 2]\n", [1, 2]),
        ('{"items": [1]}', {"items": [1]}),
        ("42", 42),
        ('"one"', "one"),
        ('{"a": 1}\n{"a": 2}\n', [{"a": 1}, {"a": 2}]),
        ('{"a": 1}\r\n\r\n{"a": 2}', [{"a": 1}, {"a": 2}]),
        ("1\n2\n3\n", [1, 2, 3]),
        ("src/a.py\nsrc/b.py\n", ["src/a.py", "src/b.py"]),
        ("a.py\r\n\r\n  b c.py  \r\n", ["a.py", "  b c.py  "]),
        ("true\nnot json\n", ["true", "not json"]),
        ("\ufeff[1]", [1]),
        ("", []),
        ("  \n\n", []),
    ],
)
def test_parse_input_text(text: str, expected: Any) -> None:
    assert parse_input_text(text, source="test") == expected


# --------------------------------------------------------------------------- files


def read(source: str, base: Path, **kwargs: Any) -> Any:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return read_input(source, base_dir=base, env=env, cwd=base, **kwargs)


def test_json_file_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "items.json").write_text('{"items": [1, 2]}')
    assert read("data/items.json", tmp_path) == {"items": [1, 2]}


def test_invalid_json_file_names_file_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "items.json").write_text('[\n  {"a": 1},\n  {"a": }\n]')
    with pytest.raises(InputError) as caught:
        read("items.json", tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "items.json") in message
    assert "line 3, column 9" in message


def test_jsonl_and_text_files_go_through_text_detection(tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    (tmp_path / "files.txt").write_text("a.py\nb.py\n")
    (tmp_path / "noext").write_text("[3]")
    assert read("items.jsonl", tmp_path) == [{"a": 1}, {"a": 2}]
    assert read("files.txt", tmp_path) == ["a.py", "b.py"]
    assert read("noext", tmp_path) == [3]


def test_absolute_file_path(tmp_path: Path) -> None:
    (tmp_path / "items.json").write_text("[1]")
    assert read(str(tmp_path / "items.json"), Path("/")) == [1]


def test_missing_file_that_looks_like_a_file_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"input file not found: .*findings\.json"):
        read("findings.json", tmp_path)


def test_non_utf8_file_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "items.txt").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read("items.txt", tmp_path)


# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("echo '[1, 2]'", [1, 2]),
        ("echo '{\"items\": [1]}'", {"items": [1]}),
        ('printf \'{"a": 1}\\n{"a": 2}\\n\'', [{"a": 1}, {"a": 2}]),
        ("printf 'x.py\\ny.py\\n'", ["x.py", "y.py"]),
        ("echo 7", 7),
    ],
)
def test_command_output_is_parsed(tmp_path: Path, command: str, expected: Any) -> None:
    assert read(command, tmp_path) == expected


def test_command_runs_in_cwd_with_the_given_env(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MY_VAR": "hello"}
    result = read_input(
        'echo "[\\"$MY_VAR\\", \\"$(ls)\\", \\"${HOME:-unset}\\"]"',
        base_dir=tmp_path,
        env=env,
        cwd=tmp_path,
    )
    assert result == ["hello", "a.txt", "unset"]


def test_command_stdin_is_dev_null(tmp_path: Path) -> None:
    # cat would block forever on an inherited terminal; on /dev/null it ends at once
    assert read("cat; echo '[1]'", tmp_path) == [1]


def test_failing_command_shows_exit_code_and_stderr(tmp_path: Path) -> None:
    command = "for i in $(seq 1 30); do echo line$i >&2; done; exit 3"
    with pytest.raises(InputError) as caught:
        read(command, tmp_path)
    message = str(caught.value)
    assert "exit code 3" in message
    assert command in message
    assert "line30" in message
    assert "line11" in message
    assert "line10\n" not in message  # only the last 20 lines


def test_command_killed_by_signal(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="killed by signal 9"):
        read("kill -9 $$", tmp_path)


def test_command_with_empty_output_produced_no_items(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="produced no items") as caught:
        read("echo warning >&2; true", tmp_path)
    assert "warning" in str(caught.value)


def test_unknown_command_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="exit code 127"):
        read("no-such-command-mapwise", tmp_path)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # Given a command whose background child would outlive it
    pid_file = tmp_path / "child.pid"
    command = f"sleep 60 & echo $! > {pid_file}; echo started >&2; wait"
    # When it times out
    started = time.monotonic()
    with pytest.raises(InputError, match=r"timed out after 0\.5s") as caught:
        read(command, tmp_path, timeout=0.5)
    assert time.monotonic() - started >= 0.5
    assert "started" in str(caught.value)
    # Then the background child was killed too
    child = int(pid_file.read_text())
    assert _gone(child)


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer exists (it may take a moment to be reaped by init)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    """Gone or a zombie: either way it runs nothing."""
    return not pid_alive(pid)
