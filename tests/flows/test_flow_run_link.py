"""The session's link to its flow run talks to the run's API with clients of its own, from any thread.

Prefect hands every ``get_client()`` made in a run's context the run's one sync client, and the
session's follower thread runs in a copy of that context (for Prefect's settings).  When the link
took its client from there, the follower shared the engine's client across two threads — its
enter/exit count raced with the engine's (a client left open, its sockets to the API collected
unclosed: CI's ResourceWarning) — and once the run ended that client was closed under the follower.
"""

from __future__ import annotations

import contextvars
import threading

from prefect import flow, task

from ats.trading.run_link import RunLink, current_api_url


def test_the_link_reads_its_run_from_another_thread_after_the_run_has_ended(prefect_api: str) -> None:
    # Arrange: a task makes the link as the node task does, and keeps a copy of its context
    made: dict = {}

    @task
    def make_link() -> None:
        from prefect.runtime import flow_run, task_run

        made["link"] = RunLink(flow_run.id, task_run.id, api_url=current_api_url())
        made["context"] = contextvars.copy_context()

    @flow
    def a_session_run() -> None:
        make_link()

    a_session_run()
    seen: dict = {}

    def follow() -> None:
        try:
            seen["state"] = made["link"].state()
        except Exception as exc:  # noqa: BLE001 - the assertion shows it
            seen["error"] = repr(exc)

    # Act: the follower's way — another thread, in the run's context — after the run and its client ended
    follower = threading.Thread(target=made["context"].run, args=(follow,))
    follower.start()
    follower.join(timeout=60)

    # Assert
    assert made["link"].api_url.rstrip("/") == prefect_api.rstrip("/")
    assert seen == {"state": ("COMPLETED", "Completed")}
