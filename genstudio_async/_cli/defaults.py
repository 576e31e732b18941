"""The ``genstudio`` command's own defaults (the SDK's are in ``genstudio_async._constants``).

Importing this module imports nothing else: ``genstudio --help`` reads its flags' defaults here.
"""

from __future__ import annotations

from typing import Final

# --- the `genstudio` command (genstudio_async.cli) ------------------------------------------------------------
# Which service a command talks to: --service NAME, else this environment variable, else GenStudio (the names
# and the default are the emulator's: genstudio_async.emulator._defaults.SERVICE_*).
CLI_SERVICE_ENV: Final = "GENSTUDIO_SERVICE"
# Where `genstudio run` saves a task's files: CLI_RUN_OUTPUT_DIR/<prompt_id>/<node id>/<file name>.
CLI_RUN_OUTPUT_DIR: Final = "genstudio-output"
# The <prompt_id> folder is named from the server's id made safe (no separator, no leading dot) and at most this
# many UTF-8 bytes (file systems allow 255): a longer id is cut and ends in a hash of the whole id.
CLI_TASK_FOLDER_MAX_BYTES: Final = 64
# `genstudio watch FILE`: a saved Submission ({"prompt_id", "prompt_token"}) is a few hundred bytes; a bigger
# file is refused unread (it may come from anywhere, and would be read whole).
CLI_SUBMISSION_FILE_MAX_BYTES: Final = 64 * 1024
# `watch --timeout S` bounds the whole follow, the first question about the tasks included. Once S has passed,
# a task's wait is given this much (wait() takes a positive timeout): it then times out at once.
CLI_TIMEOUT_FLOOR_SECONDS: Final = 0.001
# `watch --cancel-on-timeout` after a service that did not answer within --timeout: each cancel gets this long
# (a silent service would otherwise hold the command for the SDK's full retries), then is given up, and said so.
CLI_CANCEL_ON_TIMEOUT_SECONDS: Final = 10.0
# Where `genstudio batch` saves each job's files: CLI_BATCH_OUTPUT_DIR/<job name>/<node id>/<file name>.
CLI_BATCH_OUTPUT_DIR: Final = "genstudio-batch"
CLI_BATCH_CONCURRENCY: Final = 4
# `genstudio batch JOBS`: the jobs file must be a regular file (a FIFO would block, /dev/zero never ends) of at
# most this many bytes (read whole, then checked: ~100 000 jobs of a few hundred bytes each fit well).
CLI_JOBS_FILE_MAX_BYTES: Final = 64 * 1024 * 1024
# A batch job's local image ("images"): read once at load (hashed and kept: the bytes checked are the bytes sent),
# so each distinct image is held in memory; a bigger one is a problem of its job (exit 2).
CLI_BATCH_IMAGE_MAX_BYTES: Final = 32 * 1024 * 1024
# The batch journal lives next to the jobs file unless told otherwise: JOBS.jsonl + this suffix.
CLI_JOURNAL_SUFFIX: Final = ".journal"
# The journal holds prompt tokens (credentials for 24 h): only its owner may read it.
CLI_JOURNAL_MODE: Final = 0o600
# How many hex digits of a line's SHA-256 name a job that has no "id" (with its line number: "3-1a2b3c4d").
CLI_JOB_HASH_DIGITS: Final = 8
# A job submitted again (edited since its journaled task, or --retry-failed) first has its output folder's earlier
# files moved aside to <folder>.previous-<n> (n from 1): nothing is deleted; past this many such folders it stops.
CLI_BATCH_PREVIOUS_SUFFIX: Final = ".previous-"
CLI_BATCH_MAX_PREVIOUS: Final = 1000
# After Ctrl-C, how long a batch waits for the answers of submits already sent, so their tasks get journaled.
CLI_STOP_GRACE_SECONDS: Final = 30.0
# `genstudio demo`: an in-process emulator slow enough to watch (queue positions, then percent), ~5 s in all.
CLI_DEMO_OUTPUT_DIR: Final = "genstudio-demo"
CLI_DEMO_STEP_SECONDS: Final = 0.1
CLI_DEMO_WORKERS: Final = 1
# Tasks of "other users" queued ahead of each demo generation, so the queue position is seen to move.
CLI_DEMO_TASKS_AHEAD: Final = (2, 1)
# How often the demo asks a service without a progress socket (GPUGeek) for its task: well under one emulated
# step, so every queue position and the move to "running" are seen (it is an in-process emulator: no cost).
CLI_DEMO_POLL_INTERVAL: Final = 0.05
# `--events` (`--json-stream`): the version every JSON-lines event carries, and the JSON Schema of those events,
# shipped in this package (genstudio_async/_cli/<file>; the README documents each event type).
CLI_EVENT_SCHEMA: Final = "genstudio.event/1"
CLI_EVENT_SCHEMA_FILE: Final = "event.schema.json"
