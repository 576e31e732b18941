"""genstudio_async: an asyncio-native SDK for GenStudio's hosted ComfyUI workflow API.

```python
from genstudio_async import AsyncGenStudio

async with AsyncGenStudio() as client:                 # api_key from GENSTUDIO_API_KEY
    sub = await client.submit("wf-…", {"6": {"inputs": {"text": "a red fox"}}})
    info = await client.get_task(sub)
```
"""

from ._client import AsyncGenStudio
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GenStudioError,
    InternalServerError,
    InvalidInputError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    PromptProblem,
    PromptValidationError,
    RateLimitError,
    ResponseTooLargeError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskPermissionError,
    TaskTimeoutError,
)
from ._version import __version__
from .types import (
    ImagePostProcess,
    JobOutcome,
    ProgressEvent,
    Submission,
    TaskInfo,
    TaskResult,
    TaskStatus,
)
from .workflow import ApiWorkflow, LocalImage, PromptBuilder, WorkflowSpec

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "ApiWorkflow",
    "AsyncGenStudio",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "GenStudioError",
    "ImagePostProcess",
    "InternalServerError",
    "InvalidInputError",
    "InvalidResponseError",
    "JobOutcome",
    "LocalImage",
    "NotFoundError",
    "PermissionDeniedError",
    "ProgressEvent",
    "PromptBuilder",
    "PromptProblem",
    "PromptValidationError",
    "RateLimitError",
    "ResponseTooLargeError",
    "Submission",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskInfo",
    "TaskPermissionError",
    "TaskResult",
    "TaskStatus",
    "TaskTimeoutError",
    "WorkflowSpec",
    "__version__",
]
