"""``ats deploy --pool NAME``: the deployments of ``ats serve`` registered to a Prefect work pool.

The same deployments (:func:`deployments.build_deployments`: names, schedules, tags, concurrency
limits, descriptions, go-live only when live trading is enabled), with the code taken from the
project directory: each deployment's one pull step is ``set_working_directory`` to this
repository, and its entrypoint is relative to it, so a ``prefect worker --pool NAME --type
process`` started from this project's environment (same path on its machine) runs them.

* The pool is created (type ``process``) when missing; a pool of another type is refused.
* ``go-live`` and ``gateway-health`` (which watches the gateways of the host it runs on, following
  the last swap) go to the pool's work queue ``live`` (:data:`LIVE_QUEUE`): the host with the live
  gateway; every other deployment to ``default``.  A worker started without ``--work-queue`` polls
  both: start it that way only on the host with the live gateway; every other trading host polls
  ``--work-queue default``.
* Idempotent: a second run updates the deployments in place (one schedule each, not two).  With
  live trading disabled, a ``go-live`` deployment left from an earlier deploy is deleted.
* ``start_watch``: a ``gateway-health`` watch run is started now, as ``ats serve`` does when it
  starts, so the watch resumes after a worker restart instead of at the next midnight (the store
  lease keeps two watch runs from both probing).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ats.core.errors import AtsError, ConfigError, InputError

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient
    from prefect.deployments.runner import RunnerDeployment

    from ats.core.settings import Settings

PROJECT_DIR = Path(__file__).resolve().parents[1]
POOL_TYPE = "process"
LIVE_QUEUE = "live"
DEFAULT_QUEUE = "default"
GO_LIVE = "go-live/go-live"
GATEWAY_HEALTH = "gateway-health/gateway-health"
ON_THE_LIVE_HOST = frozenset({"go-live", "gateway-health"})  # deployment names that go to LIVE_QUEUE
_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class DeployError(AtsError):
    """The deployments could not be registered (the API refused, a pool of the wrong type)."""


@dataclass(frozen=True)
class Deployed:
    """One deployment as registered: ``flow/name``, its work queue, its schedules (count)."""

    name: str
    work_queue: str
    schedules: int
    tags: list[str]


@dataclass(frozen=True)
class DeployResult:
    """What ``ats deploy`` did: the pool (created now or already there) and the deployments."""

    pool: str
    pool_created: bool
    project_dir: str
    deployments: list[Deployed]
    removed: list[str]
    watch_run: str | None = None  # the gateway-health run started now (start_watch)

    def as_json(self) -> dict:
        return asdict(self)


def check_pool_name(pool: str) -> str:
    """``pool`` if it is a usable work pool name, else :class:`InputError` (one line)."""
    if not _POOL_NAME.fullmatch(pool or ""):
        raise InputError(f"work pool name {pool!r} is not valid: 1-100 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return pool


def for_pool(deployment: RunnerDeployment, pool: str, project_dir: Path = PROJECT_DIR) -> RunnerDeployment:
    """``deployment`` (as ``ats serve`` has it) bound to ``pool`` with its code in ``project_dir``."""
    from prefect.runner.storage import LocalStorage

    # to_deployment wrote the entrypoint relative to the current directory: make it the project's.
    path, function = (deployment.entrypoint or "").rsplit(":", 1)
    flow_file = (Path.cwd() / path).resolve()
    deployment.entrypoint = f"{flow_file.relative_to(project_dir.resolve())}:{function}"
    deployment.storage = LocalStorage(path=str(project_dir.resolve()))
    deployment.work_pool_name = pool
    deployment.work_queue_name = LIVE_QUEUE if deployment.name in ON_THE_LIVE_HOST else DEFAULT_QUEUE
    return deployment


def api_url() -> str:
    """The Prefect API ``ats deploy`` registers to; a :class:`ConfigError` if none is configured
    (Prefect would start a temporary server, and the deployments would vanish with it)."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise ConfigError("PREFECT_API_URL is not set: ats deploy registers to a Prefect server "
                          "(e.g. PREFECT_API_URL=http://127.0.0.1:4200/api after `ats server`)")
    return str(url)


def deploy(pool: str, settings: Settings | None = None, project_dir: Path = PROJECT_DIR, *,
           start_watch: bool = False) -> DeployResult:
    """Register every deployment of :func:`deployments.build_deployments` to ``pool``."""
    check_pool_name(pool)
    url = api_url()
    from deployments import build_deployments

    built = [for_pool(d, pool, project_dir) for d in build_deployments(settings)]
    with prefect_api_errors(url):
        return asyncio.run(_deploy(pool, built, str(project_dir.resolve()), start_watch))


@contextmanager
def prefect_api_errors(url: str) -> Iterator[None]:
    """The Prefect API at ``url`` refusing or not answering, as a one-line :class:`DeployError`
    (``ats deploy`` and ``ats serve``; httpx's traceback otherwise)."""
    import httpx

    try:
        yield
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 401:
            raise DeployError(f"the Prefect API at {url} refused the credentials: set PREFECT_API_AUTH_STRING "
                              "(user:password, as the server's PREFECT_SERVER_API_AUTH_STRING)") from None
        raise DeployError(f"the Prefect API at {url} answered {exc.response.status_code}: {exc}") from None
    except httpx.TransportError as exc:
        raise DeployError(f"the Prefect API at {url} does not answer ({type(exc).__name__}): "
                          "is the Prefect server up?") from None


async def _deploy(pool: str, built: list[RunnerDeployment], project_dir: str, start_watch: bool) -> DeployResult:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    watch_run = None
    async with get_client() as client:
        created = await ensure_pool(client, pool)
        deployed = []
        for deployment in built:
            try:
                deployment_id = await deployment.aapply()
            except Exception as exc:  # noqa: BLE001 - the API's refusal, as one line
                raise DeployError(f"deployment {deployment.name!r} was not registered: {exc}") from exc
            stored = await client.read_deployment(deployment_id)
            deployed.append(Deployed(name=f"{deployment.flow_name}/{deployment.name}",
                                     work_queue=stored.work_queue_name or "", schedules=len(stored.schedules),
                                     tags=list(stored.tags)))
            if start_watch and deployed[-1].name == GATEWAY_HEALTH:
                watch_run = str((await client.create_flow_run_from_deployment(deployment_id, tags=["resumed"])).id)
        removed = []
        if GO_LIVE not in {d.name for d in deployed}:
            try:
                stale = await client.read_deployment_by_name(GO_LIVE)
            except ObjectNotFound:
                stale = None
            if stale is not None and stale.work_pool_name == pool:
                await client.delete_deployment(stale.id)
                removed.append(GO_LIVE)
    return DeployResult(pool=pool, pool_created=created, project_dir=project_dir, deployments=deployed,
                        removed=removed, watch_run=watch_run)


async def ensure_pool(client: PrefectClient, pool: str) -> bool:
    """Create the work pool ``pool`` (type ``process``) unless it exists; True if created now."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    try:
        existing = await client.read_work_pool(pool)
    except ObjectNotFound:
        try:
            await client.create_work_pool(WorkPoolCreate(name=pool, type=POOL_TYPE))
        except ObjectAlreadyExists:  # another deploy made it in between
            return False
        return True
    if existing.type != POOL_TYPE:
        raise DeployError(f"work pool {pool!r} is of type {existing.type!r}, not {POOL_TYPE!r}: "
                          "choose another name for ats's pool")
    return False
