"""lb_ioloop: the ZeroMQ guide's load-balancing broker on pyzmq and Tornado.

Import everything from here::

    from lb_ioloop import LoadBalancingBroker

The broker (:mod:`lb_ioloop.broker`) moves frames between two ZMQStreams; the
rules for what a frame means live in :mod:`lb_ioloop.protocol`, the ready-worker
queue in :mod:`lb_ioloop.pool`, the example's peers in :mod:`lb_ioloop.tasks`
and the example itself in :mod:`lb_ioloop.demo`.
"""

from .broker import BindError, BrokerCounters, LoadBalancingBroker
from .demo import run_demo
from .pool import ReadyWorkers
from .protocol import READY_TOKENS, MalformedMessage, check_request, reply_to_client
from .tasks import client_task, worker_task

__version__ = "0.1.0"

__all__ = [
    "READY_TOKENS",
    "BindError",
    "BrokerCounters",
    "LoadBalancingBroker",
    "MalformedMessage",
    "ReadyWorkers",
    "__version__",
    "check_request",
    "client_task",
    "reply_to_client",
    "run_demo",
    "worker_task",
]
