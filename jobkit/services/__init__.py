"""The service layer: dispatching, queue inspection and operations, workflows, limits, workers and Redis facts,
alerts, health, metrics, reports and API tokens. Each service is built on a :class:`~jobkit.services.client.Client`
it is given; none reads a process-wide global."""
