"""The first thing ``ats kill`` does: send the kill to this machine's running sessions.

Standard library only, run before anything else is imported (typer, the settings, the store:
about a second on a loaded machine), so a session halts within milliseconds of the keystroke.
Then the normal ``ats kill`` runs: settings, the latch row in the store (the source of truth:
it refuses new sessions and reaches sessions on other machines through their poll), audited.

Only a well-formed kill is sent here (exactly one of ``--session``/``--mode``/``--all``, a known
mode, no ``--clear``/``--help``); anything else is left to the normal command, which explains
what is wrong and sends nothing.  If the settings or the store then fail, the sessions already
reached stay halted (the safe side) and the command still exits non-zero with the reason.
"""

from __future__ import annotations

import sys

_VALUE_OPTIONS = ("--session", "--mode", "--reason")
_FLAG_OPTIONS = ("--all",)


def parse(argv: list[str]) -> dict[str, str | bool] | None:
    """``kill`` options as a dict, or None when this is not a well-formed kill to send now."""
    if not argv or argv[0] != "kill":
        return None
    found: dict[str, str | bool] = {}
    args = iter(argv[1:])
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in _VALUE_OPTIONS:
            if not eq:
                following = next(args, None)
                if following is None:
                    return None
                value = following
            if name in found:
                return None
            found[name] = value
        elif arg in _FLAG_OPTIONS:
            found[arg] = True
        else:
            return None  # --clear, --help, a typo: the normal command deals with it
    if sum(bool(found.get(k)) for k in ("--session", "--mode", "--all")) != 1:
        return None
    if "--mode" in found and found["--mode"] not in ("paper", "live"):
        return None
    if "--reason" in found and not str(found["--reason"]).strip():
        return None
    return found


def send_kill(argv: list[str]) -> int:
    """Send a well-formed kill to the running sessions of this store on this machine.

    Returns how many sessions it reached (0 when ``argv`` is not such a kill); never raises."""
    options = parse(argv)
    if options is None:
        return 0
    try:
        from ats.governance import kill_wire

        modes = ["paper", "live"] if options.get("--all") else \
            [str(options["--mode"])] if options.get("--mode") else ["paper", "live"]
        session = str(options["--session"]) if options.get("--session") else None
        message = {"kind": "kill", "modes": modes, "session": session,
                   "reason": str(options.get("--reason") or "operator kill"),
                   "actor": kill_wire.operator_from_environment()}
        return kill_wire.send(kill_wire.key_from_environment(), modes, message, session=session)
    except Exception:  # noqa: BLE001 - the latch that follows is the kill switch; this only speeds it up
        return 0


if __name__ == "__main__":
    print(send_kill(sys.argv[1:]))
