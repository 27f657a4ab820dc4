"""The worker layer: tasks that run PLIP (and later search and ingest) away from the bot's event loop.

- `contracts`: the JSON requests and results (and `TaskError`) that cross the queue.
- `app`: the Celery app factory and the routing table (task name -> queue).
- `model_tasks`, `case_tasks`: the task functions, each module with its own registry; `steps`: what
  they share. `tasks`: every task (`TASKS`) and their registration on a Celery app.
- `runtime`: task specs, the shared execution path, and each process's resources (from the Container
  the caller passes in).
- `batching`: micro-batching of images from concurrent requests into one forward pass.
- `blobs`: short-lived storage for uploaded bytes (messages carry keys, not megabytes).
- `client`: `TaskClient`, what the bot calls; `embedded`: the no-broker, in-process worker.

Nothing here builds anything at import time; the composition root (`plipbot.composition.Container`)
and `plipbot worker` build apps and clients from Settings.
"""
