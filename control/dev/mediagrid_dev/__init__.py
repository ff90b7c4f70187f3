"""The loopback dev cluster: development and test tooling, never installed on nodes.

Split by concern: ports, mariadb (a throwaway server), conffile (the services' TOML),
services (processes and gunicorn), nginx (the nginx role's files), cluster, cli.
"""

from .cluster import DevCluster
from .ports import wait_port

__all__ = ["DevCluster", "wait_port"]
