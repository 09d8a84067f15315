"""`ats data import` and `ats data list` through a Typer app that registers the data group."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from ats.cli.data import register

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


def test_list_of_an_empty_catalog_says_how_to_import(isolated_env):
    result = CliRunner().invoke(make_app(), ["data", "list"])
    assert result.exit_code == 0
    assert "ats data import" in result.output
