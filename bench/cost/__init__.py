"""Deterministic cost: instructions and system calls per request, per model and case.

    cases.py     what is measured: request, connections, request counts
    client.py    the deterministic blocking client (one request in flight, every reply checked)
    tools.py     valgrind and strace: are they here, and how to get them
    probe.py     instructions per request under callgrind (zero/dump around two windows)
    syscalls.py  system calls per request by name (strace -f -c attached for two windows)
    run.py       one model's probe, both tools, and the parallel driver over models
    command.py   ``python -m bench cost``: the table and the JSON record
    xray.py      a probe record as rows and columns for a report section

Both figures are the difference of two windows on one running server (N1 then N2 requests,
after a warm-up), divided by N2 - N1: start-up, shutdown and the measuring tool's own attach
and detach cancel out. A request is counted in every process and thread of the server
(``--trace-children=yes``; ``strace -f`` on every process of the tree).
"""
