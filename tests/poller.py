"""A background poller: one query every few milliseconds on a connection of
its own, keeping the largest value it returned. Used by the tests and by the
bench (replay lag, application lock waits).

    with MaxPoller(lambda: server.connect('postgres'), 'SELECT ...', 0.005) as p:
        ...
    p.peak, p.polls
"""

import threading
import time


class Poller:
    """A query on a connection of its own every interval_s, in a thread,
    until the with-block ends; a subclass's poll(conn) runs it and keeps
    what it needs. `polls` counts them. A failing query is raised at the
    end of the block (not lost in the thread)."""

    def __init__(self, connect, interval_s=0.01, application_name=None):
        self.connect = connect
        self.interval_s = interval_s
        self.application_name = application_name
        self.polls = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self, conn):
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        if self.error is not None and exc[0] is None:
            raise AssertionError(f'{type(self).__name__} query failed: {self.error}')

    def _run(self):
        try:
            with self.connect() as conn:
                if self.application_name:
                    conn.execute('SELECT set_config(\'application_name\', %s, false)',
                                 (self.application_name,))
                while not self._stop.is_set():
                    self.poll(conn)
                    self.polls += 1
                    time.sleep(self.interval_s)
        except Exception as exc:  # reported by __exit__
            self.error = exc


class MaxPoller(Poller):
    """Runs `query` (one row, one number or NULL) every interval_s until the
    with-block ends; `peak` is the largest value seen."""

    def __init__(self, connect, query, interval_s=0.01, application_name=None):
        super().__init__(connect, interval_s, application_name)
        self.query = query
        self.peak = 0.0

    def poll(self, conn):
        value = conn.execute(self.query).fetchone()[0]
        if value is not None and float(value) > self.peak:
            self.peak = float(value)
