"""A background poller: one query every few milliseconds on a connection of
its own, keeping the largest value it returned. Used by the tests and by the
bench (replay lag, application lock waits).

    with MaxPoller(lambda: server.connect('postgres'), 'SELECT ...', 0.005) as p:
        ...
    p.peak, p.polls
"""

import threading
import time


class MaxPoller:
    """Runs `query` (one row, one number or NULL) every interval_s until the
    with-block ends; `peak` is the largest value seen, `polls` how many ran.
    A failing query is raised at the end of the block (not lost in the
    thread)."""

    def __init__(self, connect, query, interval_s=0.01, application_name=None):
        self.connect = connect
        self.query = query
        self.interval_s = interval_s
        self.application_name = application_name
        self.peak = 0.0
        self.polls = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        if self.error is not None and exc[0] is None:
            raise AssertionError(f'poller query failed: {self.error}')

    def _run(self):
        try:
            with self.connect() as conn:
                if self.application_name:
                    conn.execute('SELECT set_config(\'application_name\', %s, false)',
                                 (self.application_name,))
                while not self._stop.is_set():
                    value = conn.execute(self.query).fetchone()[0]
                    self.polls += 1
                    if value is not None and float(value) > self.peak:
                        self.peak = float(value)
                    time.sleep(self.interval_s)
        except Exception as exc:  # reported by __exit__
            self.error = exc
