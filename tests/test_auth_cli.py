"""`python -m books_scraper.api.auth`: the password hash line an operator pastes into the environment."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
from support import PROJECT

from books_scraper.api.auth import verify_password


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "books_scraper.api.auth", *args], cwd=PROJECT, input=stdin,
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    "args,variable",
    [
        pytest.param([], "BOOKS_API_SCIENTIST_PASSWORD_HASH", id="the-scientist-by-default"),
        pytest.param(["--user", "admin"], "BOOKS_API_ADMIN_PASSWORD_HASH", id="the-admin-when-asked"),
    ],
)
def test_a_piped_password_gives_the_line_to_paste(args, variable):
    result = run(*args, "--iterations", "1000", stdin="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    # What a shell makes of the line: the variable set to a hash of that password.
    shell = subprocess.run(["sh", "-c", f'{line}; printf %s "${variable}"'], capture_output=True, text=True)
    assert verify_password("correct horse battery", shell.stdout)
    assert not verify_password("another password", shell.stdout)
    assert line.startswith(f"{variable}='pbkdf2_sha256$1000$")


def test_help_says_what_it_does():
    result = run("--help")
    assert result.returncode == 0
    assert "--user" in result.stdout and "standard input" in result.stdout


@pytest.mark.parametrize(
    "args,stdin,message",
    [
        pytest.param([], "", "the password is empty", id="nothing-piped"),
        pytest.param(["--user", "nobody"], "pw\n", "invalid choice", id="a-user-metadata-does-not-have"),
    ],
)
def test_bad_input_is_one_line_and_no_traceback(args, stdin, message):
    result = run(*args, stdin=stdin)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
