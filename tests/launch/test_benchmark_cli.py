"""`python -m launch.benchmark`: modes by name from `registry.BENCHMARKS`, the core's and
the projects' alike; an unknown mode is one line listing the known ones."""

from tests.launch import cli


def test_unknown_mode_is_one_line_listing_the_known_modes():
    result = cli.run("launch.benchmark", "--mode=nope", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: unknown benchmark mode 'nope'; known: ")
    known = line.split("known: ")[1].split(", ")
    # The core's two modes and the three the projects register.
    assert {"trainer", "input", "altup", "decode", "adatape"} <= set(known)
    assert result.stdout == ""
