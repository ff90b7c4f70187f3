"""How gunicorn runs each mediagrid HTTP service: the one definition, loaded by the nodes'
systemd units and by the dev cluster alike::

    MEDIAGRID_SERVICE=storage gunicorn -c python:mediagrid.gunicorn_conf --bind 127.0.0.1:8010

The environment names the service; the command line gives what belongs to the
deployment (the address, and the worker count when it differs from the one here).
"""

from __future__ import annotations

import os

# The WSGI application of each service.
APPS = {
    "tracker": "mediagrid.tracker:create_app()",
    "ids": "mediagrid.idservice:create_app()",
    "gateway": "mediagrid.gateway:create_app()",
    "storage": "mediagrid.storage:create_app()",
}
# Read here and removed, so the services' own settings (MEDIAGRID_*) never see it.
SERVICE = os.environ.pop("MEDIAGRID_SERVICE", "")
if SERVICE not in APPS:
    raise SystemExit(f"mediagrid.gunicorn_conf: MEDIAGRID_SERVICE must be one of {', '.join(APPS)}")

wsgi_app = APPS[SERVICE]
workers = 2
if SERVICE == "storage":
    # One upload holds a worker for as long as the client sends: threads, so a few slow
    # uploads do not starve the others. In a threaded worker the timeout bounds how long
    # the worker's main loop may go silent (it reports every second while threads serve
    # requests), not a request: 300 s, the value the nodes have always run the shim with,
    # spares a worker stalled on a slow group volume (GlusterFS) from being killed.
    worker_class = "gthread"
    threads = 4
    timeout = 300
else:
    # Short request/answer services: sync workers have no GIL contention between
    # threads, which keeps the tail latency low; 30 s (gunicorn's default) for one answer.
    worker_class = "sync"
    timeout = 30
# A restart lets requests in flight finish for this long (then they are cut).
graceful_timeout = 10
# nginx in front enforces the request line and header limits with JSON errors;
# gunicorn's lower defaults would otherwise answer first, in HTML.
limit_request_line = 0
limit_request_fields = 32768
loglevel = "warning"
