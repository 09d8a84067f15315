"""``python -m ats.paper``: a paper trading session (see ``ats.cli.run``)."""

from ats.cli._common import run_app
from ats.cli.run import make_app

app = make_app("paper")

if __name__ == "__main__":
    run_app(app)
