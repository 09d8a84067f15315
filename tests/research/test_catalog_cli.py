"""`ats data import` and `ats data list` through a Typer app that registers the data group."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from ats.cli.data import register
from support import run_ats

GOOD = "date,open,high,low,close,volume\n2024-01-02,400.00,402.50,398.25,401.00,1000\n"


def make_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app


def test_import_then_list_as_json(tmp_path, isolated_env):
    csv = tmp_path / "bars.csv"
    csv.write_text(GOOD)
    runner = CliRunner()
    result = runner.invoke(make_app(), ["data", "import", "--csv", str(csv), "--instrument", "QQQ.NASDAQ"])
    assert result.exit_code == 0, result.output
    assert "imported 1 bars of QQQ.NASDAQ" in result.output
    listed = runner.invoke(make_app(), ["data", "list", "--json"])
    assert listed.exit_code == 0
    assert json.loads(listed.stdout) == [{
        "instrument_id": "QQQ.NASDAQ", "bar_type": "QQQ.NASDAQ-1-DAY-LAST-EXTERNAL",
        "first_date": "2024-01-02", "last_date": "2024-01-02", "bars": 1,
    }]
    table = runner.invoke(make_app(), ["data", "list"])
    assert "QQQ.NASDAQ" in table.output and "2024-01-02" in table.output


def test_import_of_a_bad_file_exits_2_naming_the_line(tmp_path, isolated_env):
    csv = tmp_path / "bars.csv"
    csv.write_text(GOOD.replace("398.25", "403.00"))
    result = CliRunner().invoke(make_app(), ["data", "import", "--csv", str(csv), "--instrument", "QQQ.NASDAQ"])
    assert result.exit_code == 2
    assert "line 2: high 402.5 is below low 403.0" in result.output
    assert not isolated_env.exists()


def test_import_names_the_file_once_in_one_line(tmp_path, isolated_env):
    folder = tmp_path / "bars"
    folder.mkdir()
    latin = tmp_path / "latin.csv"
    latin.write_bytes(GOOD.replace("1000", "1000\xa0").encode("latin-1"))

    as_folder = run_ats("data", "import", "--csv", f"{folder}/", "--instrument", "QQQ.NASDAQ")
    not_utf8 = run_ats("data", "import", "--csv", str(latin), "--instrument", "QQQ.NASDAQ")

    assert (as_folder.returncode, not_utf8.returncode) == (2, 2)
    assert as_folder.stderr.splitlines() == [f"error: {folder}: is a directory, not a CSV file: give the path of the CSV file"]
    assert not_utf8.stderr.count(str(latin)) == 1 and len(not_utf8.stderr.splitlines()) == 1, not_utf8.stderr
    assert "line 2: not UTF-8 text" in not_utf8.stderr
    assert not isolated_env.exists()


def test_list_of_an_empty_catalog_says_how_to_import(isolated_env):
    result = CliRunner().invoke(make_app(), ["data", "list"])
    assert result.exit_code == 0
    assert "ats data import" in result.output
