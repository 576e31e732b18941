"""The SDK's own defaults, in one place: change one here and nowhere else.

Each service's wire (base URL, environment variables, paths, body fields, status numbers) lives in its module of
``genstudio_async._services``; the emulator's defaults in ``genstudio_async.emulator._defaults``; the CLI's in
``genstudio_async._cli.defaults``.
"""

from __future__ import annotations

from typing import Final

# --- uploads -------------------------------------------------------------------------------------------------
# The file name an upload of raw bytes is given when the caller names none.
DEFAULT_UPLOAD_FILENAME: Final = "image.png"

# --- timeouts (seconds) ------------------------------------------------------------------------------------
# Submit and poll are small calls: a short per-request timeout. ``wait(timeout=)`` bounds a whole task.
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_UPLOAD_TIMEOUT: Final = 120.0
DEFAULT_DOWNLOAD_TIMEOUT: Final = 120.0
# httpx's timeouts bound each read, not a whole request: a server that drips its answer a byte at a time is
# never cut off by them. Every API request attempt is also bounded as a whole by the client's ``timeout``
# (uploads by DEFAULT_UPLOAD_TIMEOUT), and every downloaded file by this many seconds.
DEFAULT_DOWNLOAD_DEADLINE: Final = 600.0
# The connection pool of the HTTP client the SDK makes (an injected http_client keeps its own).
HTTP_MAX_CONNECTIONS: Final = 100
HTTP_MAX_KEEPALIVE: Final = 20
# API endpoint URLs parsed once and kept (httpx checks every character of a URL string on every request); a
# service with the task id in its path (GPUGeek) has one per task, so only the most recent this many are kept.
API_URL_CACHE_SIZE: Final = 256

# --- size caps (bytes; each is a client argument) ---------------------------------------------------------
# An API answer (decoded: a small gzip answer can inflate a thousandfold) larger than this is refused.
DEFAULT_MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
# A downloaded result file larger than this is refused and nothing is left on disk.
DEFAULT_MAX_DOWNLOAD_BYTES: Final = 512 * 1024 * 1024
# Of a storage host's error answer (403, 404, 5xx) only this much body is read, for the error's message.
MAX_STORAGE_ERROR_BODY_BYTES: Final = 64 * 1024
# The content codings the SDK undoes itself, one per answer at most (a stacked "gzip, gzip" is refused: httpx
# would inflate every layer of a network chunk in one unbounded call, before any cap could count the bytes).
# API requests ask for exactly these; storage downloads ask for "identity" and still undo a single gzip.
ACCEPT_ENCODING: Final = "gzip, deflate"
# A coded body is inflated this many bytes at a time at most, so a cap is never passed by more than this.
DECODE_CHUNK_BYTES: Final = 64 * 1024

# --- retries -----------------------------------------------------------------------------------------------
DEFAULT_MAX_RETRIES: Final = 2
INITIAL_RETRY_DELAY: Final = 0.5
MAX_RETRY_DELAY: Final = 8.0
# A ``Retry-After`` longer than this is not honoured by sleeping; the error is raised instead.
MAX_RETRY_AFTER: Final = 60.0
RETRYABLE_STATUS_CODES: Final = frozenset({408, 429, 500, 502, 503, 504})
# Statuses that prove the server did not take a submit: safe to send it again.
SUBMIT_RETRYABLE_STATUS_CODES: Final = frozenset({429, 503})

# --- pacing (``_pacing``): one rate for all of a client's requests once a rate limit is met -------------------
# On a 429 the rate is multiplied by PACING_DECREASE, once per burst of 429s (a 429 of a request sent after the
# last decrease is a new burst; without a send time, at most once per PACING_DECREASE_EVERY s). The first limit is
# measured against the requests sent and answered in the last PACING_DECREASE_EVERY s. Each answered request then
# adds at least PACING_INCREASE / rate, i.e. the rate grows by PACING_INCREASE requests/s every second.
PACING_DECREASE: Final = 0.7
PACING_DECREASE_EVERY: Final = 1.0
PACING_INCREASE: Final = 1.0
# Above PACING_DECREASE of the rate the server was seen to answer when a limit was first met, the rate grows by
# this share a second; below it, it doubles. 0.7 and 0.25: the 2,000-job benchmark (benchmarks/RESULTS.md, 7) met
# its request goal with 0.5 and 0.1 too, but took 1.9x the floor the limit allows instead of 1.6x.
PACING_GROWTH: Final = 0.25
# A minute without a 429 and the pacing ends (the ceiling, if one was given, stays).
PACING_FORGET_AFTER: Final = 60.0
PACING_MIN_RATE: Final = 0.5
# A rate limit (429) is retried this many times, apart from max_retries: the pace slows down until it passes.
RATE_LIMIT_MAX_RETRIES: Final = 8

# --- progress streaming and polling -------------------------------------------------------------------------
DEFAULT_POLL_INTERVAL: Final = 1.0
DEFAULT_STREAM_IDLE_TIMEOUT: Final = 30.0
# How many of the shared poller's requests are in flight at once (their starts spread over the interval).
POLL_MAX_IN_FLIGHT: Final = 8
# A task the service keeps leaving out of ``get_task_info`` answers this many polls in a row is not found.
POLL_MISSING_LIMIT: Final = 5
# A queue position above this is not believed as progress by the stream's idle watchdog: a socket counting down
# from 10**18 would otherwise reset it for ever. It is still yielded as it is.
STREAM_MAX_QUEUE_POSITION: Final = 10_000
WS_MAX_RECONNECTS: Final = 3
# A socket that carried snapshots for this long was healthy: its loss starts the reconnect budget afresh.
WS_HEALTHY_SESSION_SECONDS: Final = 30.0
WS_RECONNECT_INITIAL_DELAY: Final = 0.25
WS_RECONNECT_MAX_DELAY: Final = 4.0
WS_OPEN_TIMEOUT: Final = 10.0
# A handshake still pending after this long (or after the stream idle timeout, if shorter) no longer holds the
# stream: the task is followed through the shared poller meanwhile, and a terminal status seen there ends it.
WS_HANDSHAKE_GRACE: Final = 1.0
# How long a close handshake may wait for the peer's close frame. It runs in the background: nobody waits on it.
WS_CLOSE_TIMEOUT: Final = 2.0
# When the client is closed, closes still under way get this long to finish; then their connections are cut.
WS_ACLOSE_GRACE: Final = 0.25
WS_MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024
# The socket budget (``_sockets``): a client opens at most SOCKET_BUDGET_SHARE of the open files this process may
# hold, after SOCKET_BUDGET_RESERVED_FDS for everything else (1,024 gives 400); beyond it, streams are polled.
SOCKET_BUDGET_RESERVED_FDS: Final = 224
SOCKET_BUDGET_SHARE: Final = 0.5
SOCKET_BUDGET_MIN: Final = 8
SOCKET_BUDGET_MAX: Final = 4096
# After running out of descriptors shrank the budget, each socket given back this long after the last shortage
# raises it by one again, up to what it was.
SOCKET_BUDGET_RECOVER_AFTER: Final = 10.0
# Handshakes in flight at once per client: ten thousand at once would time each other out.
WS_MAX_HANDSHAKES: Final = 64
# Handshake statuses that mean "this token will never work": no reconnect, straight to polling.
WS_FATAL_HANDSHAKE_STATUSES: Final = frozenset({401, 403, 404})

# --- results -----------------------------------------------------------------------------------------------
DEFAULT_DOWNLOAD_CONCURRENCY: Final = 4
DOWNLOAD_CHUNK_SIZE: Final = 64 * 1024
# Query parameters that sign a result URL rather than name its object (compared case-insensitively): OSS
# signature V1 and V4, and S3-style ``X-Amz-*``. Every other parameter, ``x-oss-process`` among them, is part
# of what the URL names: ``get?id=1`` and ``get?id=2`` are two objects.
SIGNED_URL_PARAMS: Final = frozenset(
    {
        "expires", "ossaccesskeyid", "signature", "security-token",
        "x-oss-signature-version", "x-oss-credential", "x-oss-date", "x-oss-expires", "x-oss-signature",
        "x-oss-additional-headers", "x-oss-security-token",
    }
)
SIGNED_URL_PARAM_PREFIXES: Final = ("x-amz-",)
# An error message shows at most this many characters of a result URL, and never its (signed) query.
SHOWN_URL_CHARS: Final = 120
# Longest file or folder name a download makes, in UTF-8 bytes: NAME_MAX (255) less the 15 bytes that the
# temporary ".<name>.<8 hex>.part" file adds. A longer name from the service is cut (keeping an extension of
# at most DOWNLOAD_MAX_EXTENSION_BYTES) and tagged "~" + DOWNLOAD_NAME_HASH_CHARS hex digits of its hash.
DOWNLOAD_MAX_NAME_BYTES: Final = 240
DOWNLOAD_MAX_EXTENSION_BYTES: Final = 16
DOWNLOAD_NAME_HASH_CHARS: Final = 10
# A download never replaces a different file that is already at its path: it takes the first free name of
# "x-1.png" ... "x-<this many>.png" instead.
DOWNLOAD_MAX_NUMBERED_NAMES: Final = 1000
# How many fresh part-file names a download tries when another process's clean-up keeps taking them.
DOWNLOAD_PART_FILE_ATTEMPTS: Final = 3
# How many first bytes of a downloaded body are looked at to tell an HTML/XML/JSON page from the file expected.
DOWNLOAD_SNIFF_BYTES: Final = 512
# How many files one result may name (distinct objects): a result naming more is refused before anything is
# fetched or written (ResponseTooLargeError). ComfyUI batches are tens of files; a 16 MB answer could name 250,000.
MAX_RESULT_FILES: Final = 10_000

# --- batches -----------------------------------------------------------------------------------------------
DEFAULT_RUN_MANY_CONCURRENCY: Final = 8

# --- the sync twins (GenStudio, GPUGeek) --------------------------------------------------------------------
# The helper thread that runs a sync client's event loop is named this (as a debugger or a thread dump shows it).
SYNC_THREAD_NAME: Final = "genstudio-sync"
# A caller blocked on a sync call wakes this often (seconds) so that Python can act on a Ctrl-C even where a
# blocking wait is not interrupted by the signal (Windows; a signal delivered to another thread).
SYNC_SIGNAL_CHECK_INTERVAL: Final = 0.1
# A sync call interrupted by Ctrl-C is cancelled on the loop and gets this long (seconds) to close its socket and
# leave the poller before KeyboardInterrupt goes on; a task on the service is never cancelled by it. An interrupted
# run_many waits instead until it has cancelled its jobs on the service; past this long it says it is waiting.
SYNC_INTERRUPT_GRACE: Final = 0.5
# The thread that runs a sync iterator's plain-function callbacks (run_many's on_progress), one at a time, is named
# this: one such thread per iterator, started at its first callback, ended when the iterator ends.
SYNC_CALLBACK_THREAD_NAME: Final = "genstudio-sync-callbacks"

# --- secrets in logs, reprs and errors ------------------------------------------------------------------------
# How many leading characters of a key or token may be shown; the rest is replaced by "…".
SECRET_VISIBLE_PREFIX: Final = 6
# How many recent prompt_tokens a client redacts by value (older ones are still caught by their JWT shape).
MAX_REMEMBERED_SECRETS: Final = 256
# Known secrets are found by one compiled pattern; compiling it for 256 tokens takes tens of milliseconds, so it
# is rebuilt once this many secrets were added since, and those few are looked for one by one meanwhile.
REDACT_REBUILD_AFTER: Final = 32
# Field names whose redaction is remembered (until a new secret is learnt): a frame's few extra fields; a longer
# name (a hostile server's) is redacted each time, never kept.
REDACT_NAMES_REMEMBERED: Final = 64
REDACT_NAME_MAX_CHARS: Final = 256
# The pattern holds at most this many first characters of each secret (a match is then checked for the rest), so a
# server that hands out absurdly long tokens cannot make building it slow.
REDACT_PATTERN_SECRET_CHARS: Final = 512
# What an error keeps of a server's body (``error.body``): at most this many values (keys, strings, numbers...),
# this many characters of strings in all, each string cut at this many characters (ending "…"), this deep.
# Redacting a hostile 16 MB body of millions of short strings in full would hold the event loop for seconds.
ERROR_BODY_MAX_VALUES: Final = 1_000
ERROR_BODY_MAX_CHARS: Final = 16_000
ERROR_BODY_MAX_STRING_CHARS: Final = 2_000
ERROR_BODY_MAX_DEPTH: Final = 32
# A text is redacted this many characters (or the longest known secret's length, if longer) beyond where it is
# cut, so a secret straddling the cut is masked whole instead of being cut in two and left unrecognised.
REDACT_CUT_MARGIN: Final = 256

USER_AGENT: Final = "genstudio-async"
