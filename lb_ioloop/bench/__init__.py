"""``lb-ioloop bench``: this project's broker measured side by side with references.

The same load runs against each broker in turn, in one run, so that the
figures can be compared as ratios on a shared, noisy machine:

* :mod:`.references` holds the reference brokers, written for this purpose
  and kept small: the guide's blocking ``zmq.Poller`` loop, and the guide's
  ``lbbroker3.py`` ZMQStream design (one message per callback, sends queued
  through the stream). External brokers (e.g. a C one) can be added.
* :mod:`.load` is the load: one process of W REQ workers that answer at once,
  one process of C DEALER clients that each keep D requests in flight.
* :mod:`.runner` starts the broker and the load as separate processes and
  measures the broker process's CPU time from the OS (``/proc``).
* :mod:`.report` prints the table, and writes JSON and an optional plot.
"""

from .runner import BenchResult, LoadShape, run_bench

__all__ = ["BenchResult", "LoadShape", "run_bench"]
