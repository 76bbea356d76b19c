#!/usr/bin/env python3
"""`make bench`: rgate against the physical limit and against nginx, in one run.

What it does, on 127.0.0.1 only, every step bounded in time:
  1. builds rgate and the bench targets in release mode, runs the micro-benchmarks
     (benches/hot_path.rs);
  2. starts one fast backend (`benchtool backend`), rgate with --cores 1, and nginx with
     one worker and upstream keep-alive when nginx is installed, all with the same route
     (/api/bench -> backend) and the same default response (403 "This is not reachable");
  3. for each of direct / rgate / nginx: a closed-loop keep-alive run (wrk when installed,
     else `benchtool load`), a fixed-rate run (`benchtool load --rate`, latency measured
     from each request's due time), and a connection-per-request run;
  4. rgate and nginx only: RSS per idle keep-alive connection (10,000 of them) and a
     1 GiB upload streamed through, with the proxy's RSS sampled while it passes;
  5. failing instances: three instances behind each proxy, one of which refuses connections
     or hangs (accepts, never answers); requests/s and client errors for each (`--no-faults`
     skips it);
  6. abuse: normal traffic's p99 at a fixed rate, alone and beside 1,000 slow connections
     (slow headers, slow body, slow read), and the proxy's RSS before, during and after
     (`--no-abuse` skips it);
  7. prints a markdown report and writes it as JSON to target/bench/.

CPU placement (the machine this was written on has 2 CPUs): the proxy runs alone on CPU 0;
the backend and the load generator share CPU 1. The direct run therefore measures what the
backend and the load generator can do together on one CPU: the ceiling of this harness.

Why Python: the driver starts processes, reads /proc and formats tables; none of it is on
a measured path, and Python 3.11's standard library does it in one readable file with no
dependency. Everything that is measured or that generates load is Rust (benches/benchtool)
or wrk.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
ROUTE = "/api/bench"
DEFAULT_BODY = "This is not reachable"
PROXY_CPU = "0"
CLIENT_CPU = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
# The fixed-rate run offers this share of the slower proxy's closed-loop throughput: well
# below saturation, where latency (not capacity) is what differs. A request arriving alone
# costs a proxy 2-3x the CPU of one in a busy closed loop (a wake-up per request), so half
# of the closed-loop rate can already saturate it.
FIXED_RATE_SHARE = 0.3
# The whole bench must end well within this, whatever hangs.
WHOLE_RUN_LIMIT_S = 900

STARTED: list[subprocess.Popen] = []


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----- processes and /proc -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if shutil.which("taskset") else argv


def start(argv: list[str], name: str, **kw) -> subprocess.Popen:
    log_file = open(OUT / f"{name}.log", "wb")
    p = subprocess.Popen(argv, stdout=kw.pop("stdout", log_file), stderr=log_file, **kw)
    STARTED.append(p)
    return p


def stop_all() -> None:
    for p in reversed(STARTED):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(STARTED):
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    STARTED.clear()


def wait_http(port: int, path: str, timeout: float = 10.0) -> str:
    """Waits until a GET on `path` gets a status line; returns it."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                data = s.recv(4096)
                if data.startswith(b"HTTP/1."):
                    return data.split(b"\r\n", 1)[0].decode()
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not answer within {timeout}s ({last})")


def proc_children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def cpu_split(pids: list[int]) -> tuple[float, float]:
    """(user, sys) seconds of these processes (all their threads), from /proc/<pid>/stat."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])  # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids: list[int]) -> float:
    """user + sys of these processes (all their threads)."""
    return sum(cpu_split(pids))


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rss_kib(pid: int) -> int:
    """Resident set from statm: cheap enough to sample every few milliseconds."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB


# ----- contenders ----------------------------------------------------------------------


class Contender:
    def __init__(self, name: str, port: int, process: subprocess.Popen | None):
        self.name = name
        self.port = port
        self.process = process

    def pids(self) -> list[int]:
        """The processes whose CPU counts as the proxy's."""
        if self.process is None:
            return []
        return [self.process.pid, *proc_children(self.process.pid)]

    def worker_pid(self) -> int | None:
        """The process that serves (nginx: its one worker)."""
        pids = self.pids()
        return pids[-1] if pids else None


def start_backend(tool: str) -> Contender:
    port = free_port()
    p = start(pinned(CLIENT_CPU, [tool, "backend", "--listen", f"127.0.0.1:{port}"]), "backend")
    status = wait_http(port, ROUTE)
    if not status.startswith("HTTP/1.1 200"):
        raise RuntimeError(f"backend answered {status!r}")
    return Contender("direct", port, p)


def start_rgate(backend_ports: list[int], extra: str = "") -> Contender:
    """rgate routing ROUTE to the instances at `backend_ports`; `extra`: top-level YAML."""
    port = free_port()
    # Each rgate of the run has its own files: the first may still run beside later ones.
    n = sum(1 for p in STARTED if p.args and "rgate" in str(p.args))
    stem = "rgate" if n == 0 else f"rgate-{n}"
    config = OUT / f"{stem}.yml"
    addresses = ", ".join(f'"127.0.0.1:{p}"' for p in backend_ports)
    config.write_text(
        "# generated by benches/bench.py\n"
        "routes:\n"
        f"  - path_prefix: {ROUTE}\n"
        "    backend: bench\n"
        "default_response:\n"
        f"  body: {DEFAULT_BODY}\n"
        "  status_code: 403\n"
        "backends:\n"
        "  - name: bench\n"
        f"    addresses: [{addresses}]\n"
        + extra
    )
    for stale in (f"{stem}.db", f"{stem}.db-wal", f"{stem}.db-shm"):
        (OUT / stale).unlink(missing_ok=True)
    argv = [
        str(ROOT / "target" / "release" / "rgate"),
        "--cores", "1",
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--config", str(config),
        "--db", str(OUT / f"{stem}.db"),
        "--pid-file", str(OUT / f"{stem}.pid"),
        "--log-level", LOG_LEVEL,
        "--drain-timeout", "2",
    ]
    p = start(pinned(PROXY_CPU, argv), stem)
    status = wait_http(port, ROUTE)
    if not status.startswith("HTTP/1.1 200"):
        raise RuntimeError(f"rgate answered {status!r} on {ROUTE}")
    return Contender("rgate", port, p)


def start_nginx(backend_ports: list[int], location_extra: str = "") -> Contender | None:
    """nginx routing ROUTE to the instances at `backend_ports` (nginx's defaults for failing
    ones: max_fails=1, fail_timeout=10s, proxy_next_upstream error timeout);
    `location_extra`: more directives for that location."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    port = free_port()
    n = sum(1 for p in STARTED if p.args and "nginx" in str(p.args))
    d = OUT / ("nginx" if n == 0 else f"nginx-{n}")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "temp" / sub).mkdir(parents=True, exist_ok=True)
    # As close to rgate's behaviour as nginx allows, and nginx at its fastest otherwise:
    # no access log (rgate only counts in memory), keep-alive without a request limit on
    # both sides, request bodies streamed (not spooled to disk), the same forwarded fields.
    conf = f"""# generated by benches/bench.py
daemon off;
master_process on;
user root root;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_max_body_size 0;
    upstream bench_backend {{
        {"".join(f"server 127.0.0.1:{p}; " for p in backend_ports)}
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location {ROUTE} {{
            proxy_pass http://bench_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_request_buffering off;
            {location_extra}
        }}
        location / {{
            default_type "text/plain; charset=utf-8";
            return 403 "{DEFAULT_BODY}";
        }}
    }}
}}
"""
    (d / "nginx.conf").write_text(conf)
    argv = [nginx, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
    p = start(pinned(PROXY_CPU, argv), d.name)
    status = wait_http(port, ROUTE)
    if not status.startswith("HTTP/1.1 200"):
        raise RuntimeError(f"nginx answered {status!r} on {ROUTE}")
    return Contender("nginx", port, p)


# ----- load ------------------------------------------------------------------------------

WRK_SCRIPT = """-- generated by benches/bench.py: wrk's summary as one JSON line
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,' ..
    '"p50":%.1f,"p90":%.1f,"p99":%.1f,"p99_9":%.1f,"max":%.1f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
"""


class Load:
    def __init__(self, tool: str, connections: int, seconds: float, use_wrk: bool):
        self.tool = tool
        self.connections = connections
        self.seconds = seconds
        self.wrk = shutil.which("wrk") if use_wrk else None
        if self.wrk:
            (OUT / "wrk-report.lua").write_text(WRK_SCRIPT)

    def closed(self, port: int, seconds: float, close: bool = False) -> dict:
        if self.wrk:
            return self._wrk(port, seconds, close)
        return self._tool(port, seconds, None, close)

    def fixed(self, port: int, rate: float) -> dict:
        return self._tool(port, self.seconds, rate, False)

    def _wrk(self, port: int, seconds: float, close: bool) -> dict:
        argv = [self.wrk, "-t1", f"-c{self.connections}", f"-d{max(1, round(seconds))}s",
                "--timeout", "5s", "-s", str(OUT / "wrk-report.lua")]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(f"http://127.0.0.1:{port}{ROUTE}")
        out = subprocess.run(pinned(CLIENT_CPU, argv), capture_output=True, text=True,
                             timeout=seconds + 30, check=True).stdout
        line = next(l for l in out.splitlines() if l.startswith("JSON "))
        r = json.loads(line[5:])
        secs = r["duration_us"] / 1e6
        return {
            "generator": "wrk",
            "requests": r["requests"], "errors": r["errors"], "non_2xx": r["non_2xx"],
            "seconds": secs, "rps": r["requests"] / secs,
            "latency_us": {k: r[k] for k in ("p50", "p90", "p99", "p99_9", "max")},
        }

    def _tool(self, port: int, seconds: float, rate: float | None, close: bool) -> dict:
        argv = [self.tool, "load", "--addr", f"127.0.0.1:{port}", "--path", ROUTE,
                "--connections", str(self.connections), "--seconds", str(seconds)]
        if rate:
            argv += ["--rate", f"{rate:.0f}"]
        if close:
            argv.append("--close")
        out = subprocess.run(pinned(CLIENT_CPU, argv), capture_output=True, text=True,
                             timeout=seconds + 30, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["generator"] = "benchtool" + (f" @ {rate:.0f}/s" if rate else "")
        return r


def busy_seconds() -> float:
    """CPU time spent by anything on the machine so far (all CPUs, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / CLK_TCK


def own_seconds() -> float:
    """CPU time of this driver and of the load generators it has waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        u = resource.getrusage(who)
        total += u.ru_utime + u.ru_stime
    return total


def measured(c: Contender, backend: Contender, run) -> dict:
    """Runs `run()` and adds the proxy's and the backend's CPU time per request, and the
    share of the machine that other work took meanwhile (noise)."""
    pids = c.pids() if c.name != "direct" else []
    before = cpu_split(pids) if pids else (0.0, 0.0)
    backend_before = cpu_seconds(backend.pids())
    busy_before, own_before, wall_before = busy_seconds(), own_seconds(), time.monotonic()
    r = run()
    n = max(1, r["requests"])
    after = cpu_split(pids) if pids else (0.0, 0.0)
    user, system = after[0] - before[0], after[1] - before[1]
    proxy = user + system
    back = cpu_seconds(backend.pids()) - backend_before
    if pids:
        r["proxy_cpu_us_per_req"] = proxy / n * 1e6
        r["proxy_user_us_per_req"] = user / n * 1e6
        r["proxy_sys_us_per_req"] = system / n * 1e6
    r["backend_cpu_us_per_req"] = back / n * 1e6
    other = (busy_seconds() - busy_before) - (own_seconds() - own_before) - proxy - back
    wall = time.monotonic() - wall_before
    r["other_cpu_share"] = max(0.0, other) / (wall * (os.cpu_count() or 1))
    return r


# ----- memory runs --------------------------------------------------------------------


def idle_connections(tool: str, c: Contender, count: int) -> dict:
    pid = c.worker_pid()
    rss_before = status_kib(pid, "VmRSS")
    p = subprocess.Popen(
        pinned(CLIENT_CPU, [tool, "idle", "--addr", f"127.0.0.1:{c.port}", "--path", ROUTE,
                            "--count", str(count), "--seconds", "40"]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    STARTED.append(p)
    try:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        if not ready:
            raise RuntimeError("idle connections not opened within 60 s")
        opened = json.loads(p.stdout.readline())
        time.sleep(1.0)  # let the proxy settle (buffers shrink, reads re-armed)
        rss_held = status_kib(pid, "VmRSS")
    finally:
        p.stdin.close()
        p.wait(timeout=30)
    time.sleep(0.5)
    n = max(1, opened["opened"])
    return {
        "connections": opened["opened"], "failed": opened["failed"],
        "open_seconds": opened["seconds"],
        "rss_before_kib": rss_before, "rss_held_kib": rss_held,
        "kib_per_connection": (rss_held - rss_before) / n,
        "rss_after_close_kib": status_kib(pid, "VmRSS"),
    }


def large_body(tool: str, c: Contender, size: int) -> dict:
    pid = c.worker_pid()
    before = rss_kib(pid) if pid else 0
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    if pid:
        sampler.start()
    try:
        out = subprocess.run(
            pinned(CLIENT_CPU, [tool, "upload", "--addr", f"127.0.0.1:{c.port}", "--path", ROUTE,
                                "--bytes", str(size)]),
            capture_output=True, text=True, timeout=120, check=True).stdout
    finally:
        done.set()
        if pid:
            sampler.join(timeout=2)
    r = json.loads(out)
    if pid:
        r.update({"rss_before_kib": before, "rss_peak_kib": peak[0],
                  "rss_growth_kib": peak[0] - before})
    return r


# ----- failing instances ------------------------------------------------------------------

# The connect and response timeouts both proxies get in the fault runs (nginx's default of
# 60 s would make a hanging instance cost a minute per try).
FAULT_TIMEOUT_S = 1
FAULT_SECONDS = 6
LOG_LEVEL = "warn"


class HangingInstance:
    """An instance that accepts connections and reads requests but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)
            except OSError:
                pass

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=2)
        for c in self.held:
            c.close()
        self.sock.close()


class HealthyInstance:
    """No fault: the third instance is another fast backend (the run to compare with)."""

    def __init__(self, tool: str) -> None:
        self.backend = start_backend(tool)
        self.port = self.backend.port

    def close(self) -> None:
        stop_one(self.backend.process)


class RefusingInstance:
    """A port that is bound but not listening: every connect is refused."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def stop_one(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
    STARTED.remove(p)


def fault_runs(tool: str, load: "Load", healthy: int) -> dict:
    """rgate and nginx in front of three instances, one refusing or hanging, each with the
    same timeouts and the proxies' default failure handling; a fresh proxy per run."""
    second = start_backend(tool)
    results: dict = {}
    for kind, make in (("none (all healthy)", lambda: HealthyInstance(tool)),
                       ("refusing", RefusingInstance), ("hanging", HangingInstance)):
        bad = make()
        ports = [healthy, bad.port, second.port]
        try:
            results[kind] = {}
            starters = [
                ("rgate", lambda: start_rgate(
                    ports, f"timeouts:\n  connect_ms: {FAULT_TIMEOUT_S * 1000}\n"
                           f"  response_header_ms: {FAULT_TIMEOUT_S * 1000}\n")),
                ("nginx", lambda: start_nginx(
                    ports, f"proxy_connect_timeout {FAULT_TIMEOUT_S}s; "
                           f"proxy_read_timeout {FAULT_TIMEOUT_S}s;")),
            ]
            for name, starter in starters:
                c = starter()
                if c is None:
                    continue
                log(f"{name}: one of three instances {kind}, {FAULT_SECONDS} s, "
                    f"then {FAULT_SECONDS} s more")
                try:
                    first = load.closed(c.port, FAULT_SECONDS)
                    # The same proxy, once it has dealt with the fault (ejected it, or
                    # marked it down): what clients see from then on.
                    after = load.closed(c.port, FAULT_SECONDS)
                    results[kind][name] = {"first": first, "after": after}
                finally:
                    stop_one(c.process)
        finally:
            bad.close()
    return results


# ----- abuse: slow clients ---------------------------------------------------------------

ABUSE_CONNECTIONS = 1000
ABUSE_RATE = 1000
# How often each slow connection sends (or reads) its next few bytes.
DRIP_EVERY_S = 2.0


class SlowClients:
    """`count` slow connections to a proxy, a third of each kind, kept up (a connection the
    proxy closes is opened again) from one thread until `stop`: slow headers (a header line
    per drip, never the end of the head), slow body (a POST announcing 10 MB, a byte per
    drip), slow read (a GET of an 8 MiB body, read a few bytes per drip with a small receive
    buffer)."""

    KINDS = ("headers", "body", "read")

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.done = threading.Event()
        self.reopened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self, kind: str) -> socket.socket | None:
        s = socket.socket()
        if kind == "read":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", self.port))
            if kind == "headers":
                s.sendall(f"GET {ROUTE} HTTP/1.1\r\nHost: x\r\n".encode())
            elif kind == "body":
                s.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: 10000000\r\n\r\n".encode())
            else:
                s.sendall(f"GET {ROUTE}/big HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        except OSError:
            s.close()
            return None
        s.setblocking(False)
        return s

    def _drip(self, kind: str, s: socket.socket) -> bool:
        """One drip; False when the proxy closed the connection."""
        try:
            if kind == "headers":
                s.send(b"X-Slow: 1\r\n")
            elif kind == "body":
                s.send(b"x")
            else:
                return s.recv(16) != b""
            return True
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _run(self) -> None:
        # On the load generator's CPU, not the proxy's (Linux: 0 is this thread).
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {int(CLIENT_CPU)})
        conns: list[tuple[str, socket.socket | None]] = [
            (self.KINDS[i % 3], None) for i in range(self.count)]
        while not self.done.is_set():
            started = time.monotonic()
            for i, (kind, s) in enumerate(conns):
                if self.done.is_set():
                    break
                if s is None or not self._drip(kind, s):
                    if s is not None:
                        s.close()
                        self.reopened += 1
                    conns[i] = (kind, self._open(kind))
            self.done.wait(max(0.0, DRIP_EVERY_S - (time.monotonic() - started)))
        for _, s in conns:
            if s is not None:
                s.close()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=30)


def abuse_runs(tool: str, load: "Load", backend_port: int) -> dict:
    """For rgate and nginx (each fresh, default settings): normal traffic at a fixed rate,
    alone, then beside `ABUSE_CONNECTIONS` slow clients; RSS before, during and after."""
    results: dict = {}
    for name, starter in (("rgate", lambda: start_rgate([backend_port])),
                          ("nginx", lambda: start_nginx([backend_port]))):
        c = starter()
        if c is None:
            continue
        try:
            pid = c.worker_pid()
            load.closed(c.port, 1)  # warm up
            time.sleep(1)
            rss_before = rss_kib(pid)
            log(f"{name}: {ABUSE_RATE}/s alone")
            alone = load.fixed(c.port, ABUSE_RATE)
            log(f"{name}: {ABUSE_RATE}/s beside {ABUSE_CONNECTIONS} slow connections")
            attack = SlowClients(c.port, ABUSE_CONNECTIONS)
            time.sleep(2 * DRIP_EVERY_S)  # all of them open and dripping
            under = load.fixed(c.port, ABUSE_RATE)
            rss_during = rss_kib(pid)
            attack.stop()
            time.sleep(3)
            rss_after = rss_kib(pid)
            results[name] = {
                "alone": alone, "under_attack": under,
                "rss_before_kib": rss_before, "rss_during_kib": rss_during,
                "rss_after_kib": rss_after, "slow_reopened": attack.reopened,
            }
        finally:
            stop_one(c.process)
    return results


def render_abuse(abuse: dict) -> list[str]:
    lines = [
        "", f"### Abuse: {ABUSE_RATE}/s of normal traffic beside {ABUSE_CONNECTIONS} slow "
        "connections (a third each: slow headers, slow body, slow read), default settings", "",
        "| proxy | p99 alone µs | p99 under attack µs | ratio | errors under attack | "
        "RSS before / during / after KiB | slow connections closed by the proxy |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, r in abuse.items():
        a, u = r["alone"]["latency_us"]["p99"], r["under_attack"]["latency_us"]["p99"]
        errors = r["under_attack"]["errors"] + r["under_attack"]["non_2xx"]
        lines.append(f"| {name} | {fmt(a)} | {fmt(u)} | {ratio(u, a)} | {errors} | "
                     f"{r['rss_before_kib']:,} / {r['rss_during_kib']:,} / {r['rss_after_kib']:,} | "
                     f"{r['slow_reopened']} |")
    if "rgate" in abuse:
        r = abuse["rgate"]
        growth = (r["rss_after_kib"] - r["rss_before_kib"]) / max(1, r["rss_before_kib"])
        lines.append("")
        lines.append(f"* rgate p99 under attack / alone: "
                     f"{ratio(r['under_attack']['latency_us']['p99'], r['alone']['latency_us']['p99'])}"
                     " (target ≤ 2)")
        if "nginx" in abuse:
            lines.append(f"* rgate/nginx p99 under attack: "
                         f"{ratio(r['under_attack']['latency_us']['p99'], abuse['nginx']['under_attack']['latency_us']['p99'])}"
                         " (target ≤ 1)")
        lines.append(f"* rgate RSS after the attack vs before: {growth * 100:+.1f} % (target within ±10 %)")
    return lines


def render_faults(faults: dict) -> list[str]:
    lines = [
        "", f"### Failing instances: 3 instances, one failing ({FAULT_SECONDS} s closed loop, "
        f"{FAULT_TIMEOUT_S} s connect and response timeouts, each proxy's default "
        "failure handling)", "",
        "| one instance | proxy | run | requests/s | client errors | non-2xx | p99 µs |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, by_proxy in faults.items():
        for name, runs in by_proxy.items():
            for run, r in runs.items():
                lines.append(f"| {kind} | {name} | {run} | {fmt(r['rps'])} | {r['errors']} | "
                             f"{r['non_2xx']} | {fmt(r['latency_us']['p99'])} |")
    healthy = faults.get("none (all healthy)", {}).get("rgate", {}).get("after")
    for kind in ("refusing", "hanging"):
        after = faults.get(kind, {}).get("rgate", {}).get("after")
        if healthy and after:
            lines.append(f"* rgate p99 once the {kind} instance is out / all healthy: "
                         f"{ratio(after['latency_us']['p99'], healthy['latency_us']['p99'])} "
                         "(target ≤ 2)")
    return lines


# ----- the access log's cost ---------------------------------------------------------------


def access_log_runs(load: "Load", backend: Contender, plain: Contender, rounds: int,
                    seconds: float) -> dict:
    """Closed-loop keep-alive through rgate without and with a json access log to a file,
    interleaved; medians of CPU per request and requests/s (issue target: <= 15 % more CPU)."""
    path = OUT / "access.json"
    path.unlink(missing_ok=True)
    logged = start_rgate([backend.port],
                         f"access_log:\n  path: {path}\n  format: json\n")
    logged.name = "rgate + access log"
    load.closed(logged.port, 2)
    runs: dict[str, list] = {plain.name: [], logged.name: []}
    for n in range(rounds):
        for c in (plain, logged):
            log(f"round {n + 1}/{rounds}, {c.name}: closed-loop keep-alive for {seconds:.0f} s")
            runs[c.name].append(measured(c, backend, lambda: load.closed(c.port, seconds)))
    stop_one(logged.process)
    lines = sum(1 for _ in path.open()) if path.exists() else 0
    path.unlink(missing_ok=True)
    return {"off": median_run(runs[plain.name]), "on": median_run(runs[logged.name]),
            "lines_written": lines}


def render_access_log(r: dict) -> list[str]:
    off, on = r["off"], r["on"]
    return [
        "",
        "## Access log cost (json to a file, closed-loop keep-alive, medians)",
        "",
        "| access log | requests/s | proxy CPU µs/request (user + kernel) |",
        "| --- | ---: | ---: |",
        f"| off | {fmt(off['rps'])} | {split_cpu(off)} |",
        f"| on | {fmt(on['rps'])} | {split_cpu(on)} |",
        f"* CPU per request, on / off: "
        f"{ratio(on['proxy_cpu_us_per_req'], off['proxy_cpu_us_per_req'])} (target ≤ 1.15); "
        f"{r['lines_written']:,} lines written",
    ]


# ----- report ---------------------------------------------------------------------------


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """How busy all CPUs were over `seconds` (from /proc/stat), before anything starts."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = {}
    for name, argv in (("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "-v"])):
        if shutil.which(argv[0]):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            versions[name] = (r.stdout + r.stderr).strip().splitlines()[0]
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "load_average": os.getloadavg(), "busy_before": cpu_busy_fraction(),
        "versions": versions,
    }


def fmt(v, digits: int = 0) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "—"


def median_run(runs: list[dict]) -> dict:
    """The rounds of one contender in one mode as one result: the median of every number
    (each on its own), the rest from the first round; the rounds themselves kept."""
    def merge(values: list):
        first = values[0]
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values if k in v]) for k in first}
        if isinstance(first, (int, float)) and not isinstance(first, bool):
            return statistics.median(values)
        return first
    out = merge(runs)
    out["rounds"] = runs
    return out


def round_ratio(mode: dict, get) -> str:
    """rgate/nginx of `get(result)`, round by round (each pair ran back to back): the
    median of the per-round ratios, then every round's, so the spread is visible."""
    rg, ng = mode["rgate"].get("rounds"), mode["nginx"].get("rounds")
    if not rg or not ng:
        return ratio(get(mode["rgate"]), get(mode["nginx"]))
    rs = sorted(get(a) / get(b) for a, b in zip(rg, ng)
                if get(a) is not None and get(b))
    if not rs:
        return "—"
    return f"{statistics.median(rs):.2f} (rounds: {', '.join(f'{r:.2f}' for r in rs)})"


def split_cpu(r: dict) -> str:
    """A proxy's CPU per request as `user + sys`: the kernel's share is the TCP work both
    proxies must do; the user share is the proxy's own."""
    if r.get("proxy_user_us_per_req") is None:
        return "—"
    return f"{r['proxy_user_us_per_req']:.1f} + {r['proxy_sys_us_per_req']:.1f}"


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"## rgate benchmark — {report['started']}",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} CPUs, Linux {m['kernel']}; "
        f"CPU busy before the run {m['busy_before']:.0%}. "
        f"Proxy on CPU {PROXY_CPU}; backend and load generator on CPU {CLIENT_CPU}.",
        "",
    ]
    if m["busy_before"] > 0.05:
        lines += [f"**The machine was not quiet: {m['busy_before']:.0%} of its CPU time was busy "
                  "just before the run, so other work shared these CPUs and the numbers are "
                  "noisy.**", ""]
    if report.get("nginx_missing"):
        lines += ["**nginx is not installed: the nginx column is empty.**", ""]
    keep = report["keep_alive"]
    fixed = report["fixed_rate"]
    names = [n for n in ("direct", "rgate", "nginx") if n in keep]
    lines += [
        f"### Keep-alive, closed loop ({report['connections']} connections, "
        f"{report['rounds']} rounds of {report['seconds']:.0f} s, medians, "
        f"{keep[names[0]]['generator']})",
        "",
        "| | requests/s | p50 µs | p99 µs | p99.9 µs | proxy CPU µs/req | of it user + sys "
        "| proxy peak RSS MiB | other load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in names:
        r = keep[n]
        l = r["latency_us"]
        rss = report["peak_rss_kib"].get(n)
        lines.append(
            f"| {n} | {fmt(r['rps'])} | {fmt(l['p50'])} | {fmt(l['p99'])} | {fmt(l['p99_9'])} "
            f"| {fmt(r.get('proxy_cpu_us_per_req'), 1)} | {split_cpu(r)} "
            f"| {fmt(rss and rss / 1024, 1)} | {r['other_cpu_share']:.0%} |")
    if fixed:
        rate = report["fixed_rate_rps"]
        lines += [
            "",
            f"### Fixed rate ({rate:,.0f} requests/s, {report['connections']} connections, "
            f"{report['rounds']} rounds of {report['seconds']:.0f} s, medians, "
            "latency from each request's due time)",
            "",
            "| | achieved/s | errors | p50 µs | p99 µs | p99.9 µs | max µs | proxy CPU µs/req "
            "| other load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for n in names:
            r = fixed[n]
            l = r["latency_us"]
            lines.append(
                f"| {n} | {fmt(r['rps'])} | {r['errors']} | {fmt(l['p50'])} | {fmt(l['p99'])} "
                f"| {fmt(l['p99_9'])} | {fmt(l['max'])} | {fmt(r.get('proxy_cpu_us_per_req'), 1)} "
                f"| {r['other_cpu_share']:.0%} |")
    close = report["new_connection"]
    if close:
        lines += [
            "",
            f"### New connection per request ({report['connections']} connections, "
            f"{report['close_seconds']:.0f} s)",
            "",
            "| | requests/s | errors | p99 µs | proxy CPU µs/req | other load |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for n in names:
            r = close[n]
            lines.append(f"| {n} | {fmt(r['rps'])} | {r['errors']} | "
                         f"{fmt(r['latency_us']['p99'])} | {fmt(r.get('proxy_cpu_us_per_req'), 1)} "
                         f"| {r['other_cpu_share']:.0%} |")
    idle = report["idle"]
    body = report["large_body"]
    def mib(kib):
        return None if kib is None else kib / 1024

    b = report["body_bytes"]
    size = f"{b / 2**30:g} GiB" if b % 2**30 == 0 else f"{b / 2**20:.0f} MiB"
    lines += ["", "### Memory", "",
              f"| | {size} upload MiB/s | RSS before it MiB | RSS growth during it KiB "
              "| idle conns held | KiB RSS per idle conn | RSS after they close MiB |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in names:
        i = idle.get(n, {})
        b = body.get(n, {})
        lines.append(
            f"| {n} | {fmt(b.get('mib_per_s'))} | {fmt(mib(b.get('rss_before_kib')), 1)} "
            f"| {fmt(b.get('rss_growth_kib'))} | {fmt(i.get('connections'))} "
            f"| {fmt(i.get('kib_per_connection'), 2)} | {fmt(mib(i.get('rss_after_close_kib')), 1)} |")
    lines.append("")
    lines.append("(direct: the backend's own memory.)")
    k = report["keep_alive"]
    lines += ["", "### Ratios", ""]
    rg = k.get("rgate")
    if rg:
        lines.append(f"* rgate/direct requests/s: {ratio(rg['rps'], k['direct']['rps'])}")
    if rg and "nginx" in k:
        ng = k["nginx"]
        lines.append("* rgate/nginx requests/s: "
                     f"{round_ratio(k, lambda r: r['rps'])} (target ≥ 1.3)")
        lines.append("* rgate/nginx proxy CPU per request: "
                     f"{round_ratio(k, lambda r: r.get('proxy_cpu_us_per_req'))} (target ≤ 0.5); "
                     f"user time only {round_ratio(k, lambda r: r.get('proxy_user_us_per_req'))}; "
                     f"kernel time only {round_ratio(k, lambda r: r.get('proxy_sys_us_per_req'))}")
        lines.append("* rgate's kernel time alone / nginx's whole CPU time, per request: "
                     f"{ratio(rg.get('proxy_sys_us_per_req'), ng.get('proxy_cpu_us_per_req'))} "
                     "(above 0.5, no change to rgate's own code can meet the CPU target)")
        if fixed:
            lines.append("* rgate/nginx p99 at the fixed rate: "
                         f"{round_ratio(fixed, lambda r: r['latency_us']['p99'])} (target ≤ 1)")
        if close:
            lines.append("* rgate/nginx new-connection requests/s: "
                         f"{ratio(close['rgate']['rps'], close['nginx']['rps'])}")
    if "rgate" in idle:
        lines.append(f"* rgate KiB per idle connection: {idle['rgate']['kib_per_connection']:.2f} (target ≤ 4)")
    if "rgate" in body and "rss_growth_kib" in body["rgate"]:
        lines.append(f"* rgate RSS growth during a {size} body: "
                     f"{body['rgate']['rss_growth_kib'] / 1024:.1f} MiB (target < 16)")
    lines += ["", "*other load*: the share of the machine's CPU time that processes outside the "
              "bench used during the run; above a few per cent, the numbers beside it are noisy."]
    if report.get("faults"):
        lines += render_faults(report["faults"])
    if "access_log" in report:
        lines += render_access_log(report["access_log"])
    if report.get("abuse"):
        lines += render_abuse(report["abuse"])
    lines += ["", "### Micro-benchmarks (benches/hot_path.rs)", "", report["micro"].strip(), ""]
    lines.append(f"Load average at the start {m['load_average'][0]:.2f}, at the end "
                 f"{report['load_average_end'][0]:.2f} (the bench itself keeps both CPUs busy).")
    return "\n".join(lines)


# ----- main -----------------------------------------------------------------------------


def build() -> dict[str, str]:
    log("building (release)")
    subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True, timeout=1200)
    out = subprocess.run(
        ["cargo", "build", "--release", "--bench", "hot_path", "--bench", "benchtool",
         "--message-format=json"], cwd=ROOT, check=True, timeout=1200,
        stdout=subprocess.PIPE, text=True).stdout
    exes = {}
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            exes[msg["target"]["name"]] = msg["executable"]
    return exes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5, help="length of each load run")
    ap.add_argument("--rounds", type=int, default=3,
                    help="keep-alive and fixed-rate runs per contender, interleaved; "
                         "the report gives medians")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--idle", type=int, default=10_000, help="idle connections to hold")
    ap.add_argument("--body-bytes", type=int, default=1 << 30)
    ap.add_argument("--rate", type=float,
                    help="fixed rate (default: 30%% of the slower proxy's closed-loop rate)")
    ap.add_argument("--no-wrk", action="store_true", help="use benchtool even if wrk is installed")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-faults", action="store_true", help="skip the failing-instance runs")
    ap.add_argument("--no-abuse", action="store_true", help="skip the slow-client runs")
    args = ap.parse_args()

    def overtime(*_):
        raise TimeoutError(f"bench exceeded {WHOLE_RUN_LIMIT_S} s")

    signal.signal(signal.SIGALRM, overtime)
    signal.alarm(WHOLE_RUN_LIMIT_S)
    OUT.mkdir(parents=True, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 1000:
        log(f"open-file limit {hard}: holding {hard - 1000} idle connections, not {args.idle}")
        args.idle = max(100, hard - 1000)

    if args.no_build:
        exes = {}
        for name in ("hot_path", "benchtool"):
            found = sorted((ROOT / "target/release/deps").glob(f"{name}-*"), key=os.path.getmtime)
            exes[name] = str([f for f in found if os.access(f, os.X_OK) and f.suffix == ""][-1])
    else:
        exes = build()
    tool = exes["benchtool"]
    subprocess.run([tool, "self-check"], check=True, timeout=60, capture_output=True)
    log("micro-benchmarks")
    micro = subprocess.run(pinned(PROXY_CPU, [exes["hot_path"]]), check=True, timeout=120,
                           capture_output=True, text=True).stdout

    report: dict = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(), "connections": args.connections, "seconds": args.seconds,
        "rounds": args.rounds,
        "close_seconds": min(args.seconds, 5.0), "micro": micro, "body_bytes": args.body_bytes,
        "keep_alive": {}, "fixed_rate": {}, "new_connection": {}, "peak_rss_kib": {},
        "idle": {}, "large_body": {},
    }
    try:
        backend = start_backend(tool)
        contenders = [backend, start_rgate([backend.port])]
        nginx = start_nginx([backend.port])
        if nginx:
            contenders.append(nginx)
        else:
            report["nginx_missing"] = True
            log("nginx is not installed: comparing against the backend only")
        load = Load(tool, args.connections, args.seconds, not args.no_wrk)

        # Rounds interleave the contenders (direct, rgate, nginx, direct, …) so that a
        # slow spell of the machine falls on all of them, not on one.
        for c in contenders:
            log(f"{c.name}: warm-up")
            load.closed(c.port, 2)
        runs: dict[str, list] = {c.name: [] for c in contenders}
        for n in range(args.rounds):
            for c in contenders:
                log(f"round {n + 1}/{args.rounds}, {c.name}: closed-loop keep-alive "
                    f"for {args.seconds:.0f} s")
                runs[c.name].append(measured(c, backend, lambda: load.closed(c.port, args.seconds)))
        for c in contenders:
            report["keep_alive"][c.name] = median_run(runs[c.name])
        proxies = [report["keep_alive"][c.name]["rps"] for c in contenders if c.name != "direct"]
        rate = args.rate or round(min(proxies) * FIXED_RATE_SHARE, -2)
        report["fixed_rate_rps"] = rate
        runs = {c.name: [] for c in contenders}
        for n in range(args.rounds):
            for c in contenders:
                log(f"round {n + 1}/{args.rounds}, {c.name}: fixed rate {rate:,.0f}/s "
                    f"for {args.seconds:.0f} s")
                runs[c.name].append(measured(c, backend, lambda: load.fixed(c.port, rate)))
        for c in contenders:
            report["fixed_rate"][c.name] = median_run(runs[c.name])
        for c in contenders:
            if c.name != "direct":
                report["peak_rss_kib"][c.name] = status_kib(c.worker_pid(), "VmHWM")
        for c in contenders:
            log(f"{c.name}: new connection per request for {report['close_seconds']:.0f} s")
            report["new_connection"][c.name] = measured(
                c, backend, lambda: load.closed(c.port, report["close_seconds"], close=True))
            time.sleep(1)
        # The body first: memory the idle run grows may stay in the allocator and would
        # hide the growth the body causes.
        for c in contenders:
            log(f"{c.name}: streaming a {args.body_bytes / 2**20:.0f} MiB body")
            report["large_body"][c.name] = large_body(tool, c, args.body_bytes)
        for c in contenders:
            if c.name == "direct":
                continue
            log(f"{c.name}: {args.idle} idle keep-alive connections")
            report["idle"][c.name] = idle_connections(tool, c, args.idle)
        rgate = next(c for c in contenders if c.name == "rgate")
        report["access_log"] = access_log_runs(load, backend, rgate, args.rounds, args.seconds)
        if not args.no_faults:
            report["faults"] = fault_runs(tool, load, backend.port)
        if not args.no_abuse:
            report["abuse"] = abuse_runs(tool, load, backend.port)
    finally:
        stop_all()
        signal.alarm(0)
    report["load_average_end"] = os.getloadavg()

    text = render(report)
    print(text)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for path in (OUT / f"bench-{stamp}.json", OUT / "latest.json"):
        path.write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "latest.md").write_text(text + "\n")
    log(f"report: {OUT / 'latest.json'} (and bench-{stamp}.json, latest.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
