"""``python -m ats.live``: a live (real money) trading session behind every gate (see ``ats.cli.run``)."""

from ats.cli._common import run_app
from ats.cli.run import make_app

app = make_app("live")

if __name__ == "__main__":
    run_app(app)
