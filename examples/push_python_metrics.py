"""Push a Python service's own memory counts to a memtrail recorder.

Start it once in your web service and it reports, every interval, on a daemon thread:
  heap_objects      len(gc.get_objects()), objects the garbage collector tracks
  gc_gen0..gc_gen2  objects waiting in each garbage-collector generation (gc.get_count())
  gc_collections    collections run so far (all generations)
  py_objects:TYPE   how many objects of each of the top_types most common types the collector
                    tracks (20 by default), so a leak of one kind of object shows by name
  py_alloc:FILE:LINE  bytes allocated at each of the top_sites largest allocation sites, while
                    tracemalloc is tracing (python3 -X tracemalloc=1, or tracemalloc.start())
  ...plus any counters you register (chat sessions, cache entries, open documents).

memtrail's `regression` query then says which of them the process's memory follows ("tracks
py_objects:Session: 1.0 KiB per unit, R² 0.99"), in `memtrail status` under a leak.

memtrail stores them as custom series next to the process's RSS, so `memtrail query trend
--param kind=custom` tells a growing cache from a leaking heap. Standard library only.

    from push_python_metrics import MemtrailPusher
    pusher = MemtrailPusher("http://127.0.0.1:8181", source="web", interval=15)
    pusher.counter("chat_sessions", lambda: len(app.chat_sessions))
    pusher.start()

Run directly for a one-shot push from this interpreter (what the tests do):
    python3 push_python_metrics.py --url http://127.0.0.1:8181 --once
"""

import argparse
import collections
import gc
import json
import os
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.request


class MemtrailPusher:
    # memtrail's metric names: letters, digits, _ . : -, at most 64 bytes.
    NAME_MAX = 64

    def __init__(self, url, source="python", interval=15.0, token=None, timeout=5.0,
                 top_types=20, top_sites=10):
        self.endpoint = url.rstrip("/") + "/internal/memory/custom"
        self.source = source
        self.interval = interval
        self.token = token or os.environ.get("MEMTRAIL_TOKEN")
        self.timeout = timeout
        self.counters = {}
        self.top_types = top_types
        self.top_sites = top_sites
        self._stop = threading.Event()

    def counter(self, name, read):
        """Report read() (a number) under `name` with every push."""
        self.counters[name] = read

    @classmethod
    def _name(cls, prefix, text):
        clean = "".join(c if c.isalnum() or c in "_.:-" else "_" for c in text)
        return (prefix + clean)[: cls.NAME_MAX]

    def _top_types(self, objects):
        counts = collections.Counter(type(o).__name__ for o in objects)
        return {self._name("py_objects:", name): n for name, n in counts.most_common(self.top_types)}

    def _top_sites(self):
        if not tracemalloc.is_tracing() or self.top_sites <= 0:
            return {}
        stats = tracemalloc.take_snapshot().statistics("lineno")[: self.top_sites]
        sites = {}
        for st in stats:
            frame = st.traceback[0]
            name = self._name("py_alloc:", f"{os.path.basename(frame.filename)}:{frame.lineno}")
            sites[name] = sites.get(name, 0) + st.size
        return sites

    def sample(self):
        objects = gc.get_objects()
        metrics = {"heap_objects": len(objects)}
        metrics.update(self._top_types(objects))
        del objects
        metrics.update(self._top_sites())
        for gen, waiting in enumerate(gc.get_count()):
            metrics[f"gc_gen{gen}"] = waiting
        metrics["gc_collections"] = sum(s["collections"] for s in gc.get_stats())
        for name, read in self.counters.items():
            try:
                metrics[name] = float(read())
            except Exception as e:  # a broken counter must not stop the others
                print(f"memtrail: counter {name} failed: {e}", file=sys.stderr)
        return metrics

    def push_once(self):
        body = json.dumps({"metrics": self.sample(), "source": self.source, "pid": os.getpid()}).encode()
        req = urllib.request.Request(self.endpoint, data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                self.push_once()
            except (urllib.error.URLError, OSError, ValueError) as e:
                print(f"memtrail: push failed: {e}", file=sys.stderr)

    def start(self):
        threading.Thread(target=self._run, name="memtrail-push", daemon=True).start()
        return self

    def stop(self):
        self._stop.set()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8181")
    p.add_argument("--source", default="python")
    p.add_argument("--interval", type=float, default=15.0)
    p.add_argument("--once", action="store_true", help="push once and exit")
    args = p.parse_args()
    pusher = MemtrailPusher(args.url, source=args.source, interval=args.interval)
    cache = [object() for _ in range(1000)]  # something of our own to count
    pusher.counter("demo_cache_entries", lambda: len(cache))
    if args.once:
        status, answer = pusher.push_once()
        print(status, json.dumps(answer))
        return 0 if status == 202 else 1
    pusher.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
