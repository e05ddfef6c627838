"""The jobs.yaml texts the tests run on, one per kind of test, and the rows of the export tests' database.

Handlers live in ``tests/handlers`` (``tests.handlers:record``, ``tests.handlers.flow:tick`` ...).
"""

from __future__ import annotations

#: The default project of the integration tests: a handler of each kind on the seed's three queues.
TEST_JOBS = """
queues:
  critical: {weight: 6}
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 3
  backoff: {min: 100ms, max: 400ms}
  timeout: 10s
tasks:
  test:record: {handler: "tests.handlers:record"}
  test:flaky: {handler: "tests.handlers:flaky", max_retries: 3}
  test:always_fails: {handler: "tests.handlers:always_fails", max_retries: 2}
  test:permanent: {handler: "tests.handlers:permanent"}
  test:bad_value: {handler: "tests.handlers:bad_value", skip_retry_on: [ValueError]}
  test:slow: {handler: "tests.handlers:slow", timeout: 1s, max_retries: 1}
  test:noop: {handler: "tests.handlers:noop", queue: low}
  test:greet: {handler: "tests.handlers:greet"}
"""

#: Results, cancellation and progress (tests/handlers/lifecycle.py).
LIFECYCLE_JOBS = """
queues:
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 3
  backoff: {min: 30s, max: 60s}
  timeout: 60s
tasks:
  life:rows: {handler: "tests.handlers.lifecycle:rows", api: true}
  life:no_rows: {handler: "tests.handlers.lifecycle:no_rows", max_retries: 1, backoff: {min: 50ms, max: 100ms}}
  life:retrying: {handler: "tests.handlers.lifecycle:no_rows", max_retries: 5}
  life:secret: {handler: "tests.handlers.lifecycle:secret_result", sensitive: [token], api: true}
  life:leaky: {handler: "tests.handlers.lifecycle:leaky", sensitive: [token]}
  life:refuse_key: {handler: "tests.handlers.lifecycle:refuse_key", sensitive: [url.query], max_retries: 0}
  life:too_big: {handler: "tests.handlers.lifecycle:too_big", max_payload: 1000}
  life:not_json: {handler: "tests.handlers.lifecycle:not_json"}
  life:brief: {handler: "tests.handlers.lifecycle:rows", retention: 1s}
  life:forgetful: {handler: "tests.handlers.lifecycle:rows", retention: 0s}
  life:nap_loop: {handler: "tests.handlers.lifecycle:nap_loop", api: true}
  life:nap_once: {handler: "tests.handlers.lifecycle:nap_once"}
  life:steady: {handler: "tests.handlers.lifecycle:steady"}
  life:counted: {handler: "tests.handlers.lifecycle:counted", queue: low}
  life:step: {handler: "tests.handlers.lifecycle:rows", queue: low}
  life:work: {handler: "tests.handlers:work"}
  life:unique: {handler: "tests.handlers:work", unique: 1m, unique_key: "{{ n }}"}
workflows:
  life:two_steps:
    steps:
      - {task: life:step, payload: {n: "{{ input.n }}"}}
      - {task: life:rows, payload: {n: 2}}
  life:secret_flow:
    steps:
      - {task: life:secret, payload: {token: "{{ input.token }}"}}
      - {task: life:rows, payload: {n: 1}}
"""

#: Workflows and flow-controlled tasks.
FLOW_JOBS = """
queues:
  default: {weight: 1}
defaults:
  queue: default
  max_retries: 2
  backoff: {min: 100ms, max: 200ms}
  timeout: 10s
tasks:
  flow:fetch: {handler: "tests.handlers.flow:fetch"}
  flow:double: {handler: "tests.handlers.flow:double"}
  flow:square: {handler: "tests.handlers.flow:square"}
  flow:total: {handler: "tests.handlers.flow:total"}
  flow:once: {handler: "tests.handlers.flow:tick", unique: 1m}
  flow:once_per_n: {handler: "tests.handlers.flow:tick", unique: 1m, unique_key: "{{ n }}"}
  flow:rated: {handler: "tests.handlers.flow:tick", rate_limit: 10/s, max_retries: 0}
  flow:capped: {handler: "tests.handlers.flow:tick", concurrency: 2, max_retries: 0}
workflows:
  flow:report:
    api: true
    steps:
      - task: flow:fetch
        payload: {key: "{{ input.key }}", n: "{{ input.n }}"}
      - group:
          - {task: flow:double, payload: {key: "{{ input.key }}", value: "{{ prev }}"}}
          - {task: flow:square, payload: {key: "{{ input.key }}", value: "{{ prev }}"}}
      - task: flow:total
        payload: {key: "{{ input.key }}", values: "{{ prev }}"}
"""

#: Alert rules posting to a webhook receiver (``OPS_JOBS.format(url=...)``), reports and the health check.
OPS_JOBS = """
queues:
  critical: {{weight: 6}}
  default: {{weight: 3}}
  low: {{weight: 1}}
defaults:
  queue: default
  max_retries: 1
  backoff: {{min: 50ms, max: 100ms}}
  timeout: 10s
tasks:
  test:record: {{handler: "tests.handlers:record"}}
  test:permanent: {{handler: "tests.handlers:permanent"}}
  test:always_fails: {{handler: "tests.handlers:always_fails", queue: low}}
  test:noop: {{handler: "tests.handlers:noop", queue: low}}
  notification:send: {{handler: "jobkit.actors.notification:send_notification", queue: critical}}
  report:generate: {{handler: "jobkit.actors.report:generate_report"}}
  system:health_check: {{handler: "jobkit.actors.system:health_check", max_retries: 0}}
alerts:
  dead-tasks: {{when: archived, queues: [default], channels: [{{webhook: "{url}"}}, log], cooldown: 2s}}
  slow-low: {{when: latency, queue: low, over: 50ms, channels: [{{webhook: "{url}"}}], cooldown: 1h}}
  failing: {{when: failure_rate, queue: default, over: 0.5, window: 1m, min_processed: 2,
             channels: [{{webhook: "{url}"}}], cooldown: 1h}}
  dead-growth: {{when: archived_growth, queue: default, over: 2, window: 1h, channels: [{{webhook: "{url}"}}],
                 cooldown: 1h}}
"""

#: The built-in tasks with fast retries, and three declared exports.
BUILTIN_JOBS = """
queues:
  critical: {weight: 6}
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 2
  backoff: {min: 100ms, max: 200ms}
  timeout: 20s
tasks:
  email:send: {handler: "jobkit.actors.email:send_email", api: true}
  email:verification: {handler: "jobkit.actors.email:send_verification_email", queue: critical}
  email:password_reset: {handler: "jobkit.actors.email:send_password_reset_email", queue: critical}
  notification:send: {handler: "jobkit.actors.notification:send_notification"}
  export:process: {handler: "jobkit.actors.export:process_export", queue: low}
  cleanup:old_files: {handler: "jobkit.actors.cleanup:cleanup_old_files", queue: low}
exports:
  posts_by_user:
    sql: "SELECT id, title, created_at FROM posts WHERE user_id = :user_id ORDER BY id"
  all_posts:
    sql: "SELECT id, user_id, title, score FROM posts ORDER BY id"
  posts_between:
    sql: "SELECT id, title FROM posts WHERE id BETWEEN :low AND :high ORDER BY id"
"""

POSTS: list[tuple[int, int, str, str, float | None]] = [
    (1, 1, "Hello, world", "2025-01-01 12:00:00", 1.5),
    (2, 1, 'She said "hi"\nand left', "2025-01-02 09:30:00", None),
    (3, 2, '=HYPERLINK("http://evil")', "2025-01-03 16:45:00", -2.0),
    (4, 1, "Ünïcode ✓", "2025-01-04 08:15:00", 0.0),
]

#: The API tests' tasks: only their signatures matter (no worker runs them).
API_JOBS = """
queues:
  critical: {weight: 6}
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 3
tasks:
  email:send: {handler: "tests.handlers.api:send_email", api: true}
  export:process: {handler: "tests.handlers.api:process_export", queue: low}
  test:greet: {handler: "tests.handlers.api:greet", api: true}
  test:internal: {handler: "tests.handlers.api:internal"}
exports:
  posts_by_user:
    sql: "SELECT id, title FROM posts WHERE user_id = :user_id"
"""

#: The queues of the repository's jobs.yaml, with tasks whose handlers the browser tests control.
DASHBOARD_JOBS = """
queues:
  critical: {weight: 6}
  default: {weight: 3}
  low: {weight: 1}
defaults:
  queue: default
  max_retries: 3
  backoff: {min: 100ms, max: 400ms}
  timeout: 10s
  retention: 1h
tasks:
  dash:fragile: {handler: "tests.handlers.dashboard:fragile", max_retries: 0}
  dash:greet: {handler: "tests.handlers.dashboard:greet"}
  dash:urgent: {handler: "tests.handlers.dashboard:greet", queue: critical}
  dash:later: {handler: "tests.handlers.dashboard:greet", queue: low}
  dash:echo: {handler: "tests.handlers.dashboard:echo"}
  dash:limited: {handler: "tests.handlers.dashboard:echo", rate_limit: 50/s, concurrency: 2}
  dash:steps: {handler: "tests.handlers.dashboard:stepped", api: true, timeout: 1m}
  dash:nap: {handler: "tests.handlers.dashboard:nap", timeout: 1m}
  export:process: {handler: "jobkit.actors.export:process_export", timeout: 2m}
exports:
  all_posts:
    sql: "SELECT id, user_id, title, score FROM posts ORDER BY id"
workflows:
  dash:flow:
    api: true
    steps:
      - task: dash:echo
        payload: {value: "{{ input.n }}"}
      - group:
          - {task: dash:echo, payload: {value: "{{ prev }}"}}
          - {task: dash:limited, payload: {value: "{{ prev }}"}}
"""

#: durability: one task that waits for a replica's acknowledgement, one that does not (the fail-over tests).
REPLICATED_JOBS = """
queues:
  default: {weight: 1}
  load: {weight: 1}
defaults:
  queue: default
  max_retries: 3
  backoff: {min: 100ms, max: 400ms}
  timeout: 10s
tasks:
  test:safe: {handler: "tests.handlers:noop", durability: replicated, api: true}
  test:fast: {handler: "tests.handlers:noop", api: true}
  test:safe_load: {handler: "tests.handlers:noop", durability: replicated, queue: load}
  test:fast_load: {handler: "tests.handlers:noop", queue: load}
  test:record: {handler: "tests.handlers:record", api: true}
"""
