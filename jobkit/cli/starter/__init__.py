"""The files ``jobkit init`` writes into a new project: jobs.yaml, schedules.yaml, .env.example and an example
handler (``example.py``, written as ``tasks/example.py``)."""
