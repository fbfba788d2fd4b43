"""Prometheus text-format metrics, without a client library: request counts by route and status, a latency
histogram by route, and gauges the app reports at scrape time (catalogue size, batches run)."""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(**kv: str) -> str:
    esc = {k: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in kv.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc.items()) + "}"


class Metrics:
    """Thread-safe counters; `render(gauges)` gives the `/metrics` body."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.hist: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.sums: dict[str, float] = defaultdict(float)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            counts = self.hist[route]
            for j, b in enumerate(BUCKETS):
                if seconds <= b:
                    counts[j] += 1
                    break
            else:
                counts[-1] += 1
            self.sums[route] += seconds

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        lines = ["# HELP semrec_requests_total HTTP requests by method, route and status.",
                 "# TYPE semrec_requests_total counter"]
        with self._lock:
            for (m, r, s), n in sorted(self.requests.items()):
                lines.append(f"semrec_requests_total{_labels(method=m, route=r, status=str(s))} {n}")
            lines += ["# HELP semrec_request_seconds Request latency by route.",
                      "# TYPE semrec_request_seconds histogram"]
            for route, counts in sorted(self.hist.items()):
                acc = 0
                for b, c in zip(BUCKETS, counts):
                    acc += c
                    lines.append(f"semrec_request_seconds_bucket{_labels(route=route, le=repr(b))} {acc}")
                acc += counts[-1]
                lines.append(f"semrec_request_seconds_bucket{_labels(route=route, le='+Inf')} {acc}")
                lines.append(f"semrec_request_seconds_sum{_labels(route=route)} {self.sums[route]:.6f}")
                lines.append(f"semrec_request_seconds_count{_labels(route=route)} {acc}")
        for name, (help_text, value) in gauges.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"
