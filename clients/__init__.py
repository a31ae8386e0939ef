"""concbench clients: the load-generating swarm and the original lesson's chat client.

- ``python -m clients swarm --target HOST:PORT ...`` (``clients.swarm.run_swarm``): worker
  processes, each driving its share of the connections from one ``select.epoll`` loop, closed
  or open loop, merged into one JSON-ready record (``clients.record.RECORD_KEYS``). The
  parts: ``clients.config`` (what to run), ``clients.plan`` (what a worker is handed),
  ``clients.worker`` (a worker: a core and one module per load shape), ``clients.record``.
- ``python -m clients chat --target HOST:PORT``: type lines, see the answers.
"""
