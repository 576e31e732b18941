"""What every emulated service shares, and what each must say about itself.

``EmulatorCore`` owns the state both services are built on: the settings, the emulator clock, the counters, the
faults, the object store, the URL signer and the task queue (``TaskStore``: neutral ``TaskState``s). A service
layer subclasses it (GenStudio: ``_service.EmulatorService``; GPUGeek: ``_gpugeek.GPUGeekService``) and adds
its wire: the numbers it gives the states, the shape of its snapshots, its request handlers, its workflow
registry and its HTTP app. The web layers only translate to and from HTTP; a request a service refuses raises
``BusinessError``, which becomes an error envelope.
"""

from __future__ import annotations

import dataclasses
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Generic, TypeVar

from starlette.types import ASGIApp

from .._exceptions import PromptProblem
from ._clock import EmulatorClock
from ._defaults import EMULATOR_OSS_ACCESS_KEY_ID, EMULATOR_OSS_BUCKET, EMULATOR_SIGNATURE_PLUS_SEARCH, QUOTED_CHARS
from ._faults import FaultController, FaultError, Faults
from ._objects import ObjectStore
from ._plan import RenderPlan
from ._signing import UrlSigner
from ._state import STAMP_FIELD, Task, TaskState, TaskStore
from ._stats import EmulatorStats
from ._wire import CODE_INVALID_PROMPT, Envelope


class BusinessError(Exception):
    """A refused request: ``code`` (not 0), a ``msg`` naming the field or id, optional ``data``, and the HTTP
    status to answer with (200, as the services answer business errors, unless said otherwise)."""

    def __init__(self, code: int, msg: str, data: Any = None, *, status_code: int = 200) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.data = data
        self.status_code = status_code


def type_name(value: object) -> str:
    """A JSON value's type as a message names it (``null`` for ``None``)."""
    return "null" if value is None else type(value).__name__


def quoted(text: str) -> str:
    """A client's id or name as a refusal quotes it: escaped, and cut to ``QUOTED_CHARS``."""
    return repr(text[:QUOTED_CHARS])


def prompt_refusal(head: str, problems: Iterable[PromptProblem]) -> BusinessError:
    """The refusal of a prompt with ``problems``: every problem in the message, and each as data."""
    found = list(problems)
    message = f"{head}: " + "; ".join(str(problem) for problem in found)
    return BusinessError(CODE_INVALID_PROMPT, message, {"problems": [dataclasses.asdict(p) for p in found]})


def number_states(numbers: type[IntEnum], **others: IntEnum) -> Mapping[TaskState, int]:
    """A service's numbering of the states: each state by the ``numbers`` member of its own name, and the
    states it has no member for (or numbers otherwise) by ``others``, ``CANCELLED=Status.FAILED``."""
    return {state: others[state.name] if state.name in others else numbers[state.name] for state in TaskState}


Key = TypeVar("Key")
Workflow = TypeVar("Workflow")


class Registry(Generic[Key, Workflow]):
    """A service's workflows by id, in the order they were registered (a layer adds how one is read)."""

    def __init__(self) -> None:
        self._workflows: dict[Key, Workflow] = {}

    def add(self, workflow_id: Key, workflow: Workflow) -> Workflow:
        """Add or replace a workflow."""
        self._workflows[workflow_id] = workflow
        return workflow

    def get(self, workflow_id: Key) -> Workflow | None:
        return self._workflows.get(workflow_id)

    def require(self, workflow_id: Key) -> Workflow:
        """The workflow; ``KeyError`` if there is none."""
        return self._workflows[workflow_id]

    def ids(self) -> list[Key]:
        return list(self._workflows)


@dataclass(frozen=True)
class ServiceSettings:
    """What the service needs to know about timing and limits."""

    api_key: str
    workers: int
    steps: int
    step_seconds: float
    token_ttl: float
    retention: float
    queue_notify_interval: float
    max_upload_bytes: int
    stamp_snapshots: bool = False


class EmulatorCore(ABC):
    """The state of one emulator, whatever service it plays; a service layer adds the wire."""

    #: The service's name, as the emulator's first line says it (``"GenStudio emulator listening on …"``).
    name: ClassVar[str]
    #: The numbers the service gives the states (several states may share one: GenStudio's 4).
    statuses: ClassVar[Mapping[TaskState, int]]
    #: The snapshot field that holds a task's error text, for messages (``errMsg``, ``error_msg``).
    error_field: ClassVar[str]
    envelope: ClassVar[Envelope]
    #: Names of the service's endpoints, for ``Faults.endpoints`` and ``stats.requests``.
    endpoints: ClassVar[frozenset[str]]
    #: The body field of ``POST /_emulator/workflows`` that holds the workflow (``spec``, ``workflow``).
    workflow_field: ClassVar[str]
    #: Faults that mean nothing to this service: setting one is refused, with the reason.
    unsupported_faults: ClassVar[Mapping[str, str]] = {}
    #: Whether it pushes progress over a WebSocket on the API origin (GenStudio) or is only polled (GPUGeek).
    push_stream: ClassVar[bool] = False
    #: Whether result URLs keep the object key's slashes (GPUGeek's ``/comfy/…``) or escape them (OSS's ``%2F``).
    url_keeps_slashes: ClassVar[bool] = False

    def __init__(self, settings: ServiceSettings, *, faults: Faults | None = None) -> None:
        self.settings = settings
        self.clock = EmulatorClock()
        self.stats = EmulatorStats()
        self.faults = FaultController(faults, check=self.check_faults)
        self.objects = ObjectStore(retention_seconds=settings.retention)
        self.tasks = TaskStore(
            clock=self.clock,
            objects=self.objects,
            workers=settings.workers,
            steps=settings.steps,
            step_seconds=settings.step_seconds,
            queue_notify_interval=settings.queue_notify_interval,
            new_task_id=self.new_task_id,
        )
        self._url_secret = secrets.token_bytes(32)
        self.signer: UrlSigner | None = None

    def set_storage_origin(self, origin: str) -> None:
        """Where signed URLs point (known once the storage port is bound)."""
        self.signer = UrlSigner(
            self._url_secret,
            access_key_id=EMULATOR_OSS_ACCESS_KEY_ID,
            bucket=EMULATOR_OSS_BUCKET,
            storage_origin=origin,
            plus_search=EMULATOR_SIGNATURE_PLUS_SEARCH,
            keep_slashes=self.url_keeps_slashes,
        )

    # --- what a service layer provides ---------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def new_task_id() -> str:
        """A fresh task id in the service's format (the store draws again on a collision)."""

    @abstractmethod
    def snapshot(self, task: Task) -> dict[str, Any]:
        """The task as the service's status request reports it."""

    @abstractmethod
    def build_api_app(self, connections: Callable[[], Iterable[Any]]) -> ASGIApp:
        """The ASGI app of the API origin (``connections``: the server's open connections, for WebSockets)."""

    @abstractmethod
    def workflow_key(self, workflow_id: object) -> str | None:
        """The key a workflow id has in the registry and in per-workflow faults; ``None`` if it is no id."""

    def parse_workflow_id(self, text: str) -> Any:
        """A workflow id typed on a command line, in the service's own type (``ValueError`` if it is none)."""
        return text

    @abstractmethod
    def register_workflow(self, workflow_id: Any, source: Any, *, output_nodes: tuple[str, ...] | None = None) -> Any:
        """Add or replace a workflow; ``InvalidInputError``/``ValueError`` for one that cannot be read."""

    @abstractmethod
    def register_builtin_workflows(self) -> None:
        """Register the docs' example workflows."""

    @abstractmethod
    def workflow(self, workflow_id: Any) -> Any:
        """A registered workflow; ``KeyError`` if there is none."""

    @property
    @abstractmethod
    def workflows(self) -> Registry[Any, Any]:
        """The registered workflows."""

    def workflow_ids(self) -> list[Any]:
        """The ids of the registered workflows, in the service's own type."""
        return self.workflows.ids()

    # --- shared behaviour ----------------------------------------------------------------------------------
    def check_faults(self, faults: Faults) -> None:
        """Refuse (``FaultError``) faults this service cannot apply, or endpoints it does not have."""
        for name in faults.changed():
            reason = self.unsupported_faults.get(name)
            if reason is not None:
                raise FaultError(f"fault {name} does not apply to the {self.name} emulator ({reason})")
        unknown = sorted(set(faults.endpoints) - self.endpoints)
        if unknown:
            known = ", ".join(sorted(self.endpoints))
            raise FaultError(f"endpoints: {self.name} has no {', '.join(unknown)}; its endpoints: {known}")

    def status_of(self, task: Task) -> int:
        """The service's number for the task's state."""
        return int(self.statuses[task.state])

    def stamped(self, task: Task, snapshot: dict[str, Any]) -> dict[str, Any]:
        """``snapshot`` with the change stamp when ``stamp_snapshots`` is on (see ``_state``)."""
        if self.settings.stamp_snapshots:
            snapshot[STAMP_FIELD] = task.changed_ns
        return snapshot

    def signed_results(self, task: Task, *, expire_period: int, process: str | None = None) -> dict[str, list[str]]:
        """The task's result files as freshly signed URLs, by output node; ``{}`` before it succeeded."""
        if task.state is not TaskState.SUCCEEDED or self.signer is None:
            return {}
        expires_at = int(self.clock.now()) + expire_period
        return {
            node_id: [self.signer.sign_url(key, expires_at=expires_at, process=process) for key in keys]
            for node_id, keys in task.results.items()
        }

    def queue_task(
        self,
        workflow_key: str,
        plan: RenderPlan,
        *,
        unreadable_images: Collection[str] = (),
        deny: bool = False,
        flags: frozenset[str] = frozenset(),
    ) -> Task:
        """Queue a task for a validated prompt. It fails half way when the workflow's ``fail_tasks`` fault says
        so, or when an image it loads is an upload that is not an image (ComfyUI's LoadImage, PIL, cannot open
        it)."""
        fail_message = self.faults.for_workflow(workflow_key).fail_tasks
        if fail_message is None and unreadable_images:
            fail_message = f"LoadImage: cannot identify image file {next(iter(unreadable_images))!r}"
        task = self.tasks.create(workflow_id=workflow_key, plan=plan, fail_message=fail_message, deny=deny, flags=flags)
        self.stats.submits += 1
        return task

    def cancel_task(self, task: Task) -> None:
        """Cancel a queued or running task (an ended one is left as it is) and count the request."""
        self.tasks.cancel(task)
        self.stats.cancels += 1

    async def wait_status(self, task_id: str, statuses: Collection[int], *, timeout: float) -> dict[str, Any]:
        """Wait until the task has one of the service's ``statuses``; return its snapshot (see ``TaskStore``)."""
        task = await self.tasks.wait_status(
            task_id, statuses, status_of=self.status_of, error_field=self.error_field, timeout=timeout
        )
        return self.snapshot(task)

