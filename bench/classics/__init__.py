"""The classics: the field's known results, reproduced on this machine beside their sources.

    python -m bench classics            run bench/scenarios/classics.toml, then analyse it
    python -m bench classics RUN_DIR    analyse a finished classics run again

One module per experiment, each declaring its published source and expectation (``PUBLISHED``),
the scenario group it reads (``GROUP``) and ``analyse(run) -> Finding``:

    idle          CPU per request against idle connections held (select, poll, epoll...)
    convoy        small requests behind a long WORK: the GIL's switch interval
    cores         CPU-bound WORK on one CPU, then two
    echo_table    MagicStack's uvloop echo table: the ordering and the ratios
    omission      coordinated omission: the server stopped inside the window
    overload      0.5-2x each model's capacity: goodput and the tail over time
    open_closed   the same load offered open and closed: the tails

``document`` runs them all and writes ``classics.json`` (``FORMAT``) into the run folder;
the verb is ``bench/run/classics.py`` (it runs the scenario, this analysis and the report);
``bench/report/classics.py`` draws the report's part from the file.
"""
