#!/usr/bin/env python3
"""`make bench`: rgate against the physical limit, against its peers and against the floor,
in one run.

What it does, on 127.0.0.1 only, every step bounded in time:
  1. builds rgate and the bench targets in release mode, and the Pingora peer
     (benches/pingora, its own Cargo project and target dir); runs the micro-benchmarks
     (benches/hot_path.rs);
  2. starts one fast backend (`benchtool backend`) and, all with the same route
     (/api/bench -> backend) and the same default response (403 "This is not reachable"):
     rgate with --cores 1; nginx with one worker, HAProxy with one thread, when installed;
     Pingora with one worker thread, when it built. The report says which were missing and
     why. Beside them, the two floors: `benchtool relay` (epoll) and `benchtool relay-uring`
     (io_uring on monoio), which pair each client connection with a backend connection and
     copy bytes both ways without parsing HTTP: no proxy can spend less per request;
  3. for each of direct / the proxies / the floors: a closed-loop keep-alive run (wrk when
     installed, else `benchtool load`) and a fixed-rate run (`benchtool load --rate`,
     latency measured from each request's due time); for direct and the proxies, a
     connection-per-request run;
  4. requests/s under a CPU quota (`--cpu-quota 50`): each proxy and floor held to that
     share of one CPU by a cgroup, so that the proxy and not the load generator is what runs
     out, and the direct run beside them shows the headroom (`--cpu-quota 0` skips it);
  5. the proxies only: RSS per idle keep-alive connection (10,000 of them) and a 1 GiB upload
     streamed through, with the proxy's RSS sampled while it passes;
  6. failing instances (rgate, nginx, HAProxy): three instances behind each proxy, one of
     which refuses connections or hangs; requests/s and client errors for each
     (`--no-faults` skips it);
  7. abuse (every proxy): normal traffic's p99 at a fixed rate, alone and beside 1,000 slow
     connections (slow headers, slow body, slow read), and the proxy's RSS before, during and
     after (`--no-abuse` skips it);
  8. prints a markdown report and writes it as JSON to target/bench/.

`--cores N` is another run: rgate with N cores, nginx with N workers, HAProxy and Pingora
with N threads, closed-loop keep-alive at 1 and at N, and the scaling (requests/s at N over
N x requests/s at 1). It needs N + 1 CPUs; with fewer it says so and measures nothing.

CPU placement (the machine this was written on has 2 CPUs): each proxy and floor runs alone
on CPU 0; the backend and the load generator share CPU 1 (with --cores N: the proxy on the
first N CPUs, the rest on the others). The direct run therefore measures what the backend
and the load generator can do together on their CPU: the ceiling of this harness. Each
closed-loop figure says which CPU was the limit (see `bound_by`).

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
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
# Where cargo builds: $CARGO_TARGET_DIR when set (relative to the repo, where cargo runs).
TARGET = ROOT / (os.environ.get("CARGO_TARGET_DIR") or "target")
PINGORA_DIR = ROOT / "benches" / "pingora"
PINGORA_TARGET = TARGET / "pingora"
PINGORA_EXE = PINGORA_TARGET / "release" / "rgate-bench-pingora"
ROUTE = "/api/bench"
DEFAULT_STATUS = 403
DEFAULT_BODY = "This is not reachable"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

# The contenders, by the names the report's rows carry.
DIRECT = "direct"
RGATE = "rgate"
PEERS = ("nginx", "haproxy", "pingora")
# The floors, and the benchtool subcommand of each.
FLOORS = {"floor (epoll)": "relay", "floor (io_uring)": "relay-uring"}
DISPLAY = {"nginx": "nginx", "haproxy": "HAProxy", "pingora": "Pingora"}

# Client connections each proxy accepts (nginx's worker_connections, HAProxy's maxconn):
# room for the 10,000 idle connections of the memory run.
MAX_CLIENT_CONNECTIONS = 20_000
# Descriptors HAProxy keeps for itself (listeners, pollers, logs).
HAPROXY_SPARE_FILES = 100
# Open files the run asks for (root may raise the hard limit): HAProxy counts two per
# client connection (its own and a backend's) and refuses to start short of that.
WANTED_OPEN_FILES = 65_536
# Idle keep-alive connections each proxy keeps to the backend (nginx's `keepalive`).
UPSTREAM_IDLE = 64
# How long a client or backend connection may stay idle in nginx and HAProxy (nginx's
# keepalive_timeout; HAProxy's client and server timeouts): longer than any run.
IDLE_TIMEOUT_S = 75
# The fixed-rate run offers this share of the slower proxy's closed-loop throughput: well
# below saturation, where latency (not capacity) is what differs. A request arriving alone
# costs a proxy 2-3x the CPU of one in a busy closed loop (a wake-up per request), so half
# of the closed-loop rate can already saturate it.
FIXED_RATE_SHARE = 0.3
# A closed-loop run was bound by a side's CPU when that side used at least this share of
# the CPU it was given (the rest is the time it spent waiting for the other side).
BOUND_SHARE = 0.9
# The default CPU quota of the capped run, in per cent of one CPU: well below a core, so the
# proxy runs out of CPU long before the load generator does.
DEFAULT_CPU_QUOTA = 50
# CFS bandwidth control period of the quota (the kernel's default).
CFS_PERIOD_US = 100_000
# Under the quota, the direct run must serve at least this many times the fastest capped
# contender's requests/s for the figures to measure the proxies, not the load generator.
QUOTA_HEADROOM = 1.5
# rgate's log level in every run.
LOG_LEVEL = "warn"
# Each cargo build (the first Pingora build takes minutes on 2 CPUs).
BUILD_LIMIT_S = 1200
# The measurements, from the micro-benchmarks to the report, must end within this, whatever
# hangs. The builds before them are bounded by BUILD_LIMIT_S each instead: the first build
# of Pingora alone takes 5-8 minutes on 2 CPUs. A default run measures for about 12 minutes
# (seven contenders in the keep-alive, fixed-rate and capped runs, four proxies in the
# memory and abuse runs).
WHOLE_RUN_LIMIT_S = 1080

# Where processes run (taskset lists): the proxies and floors on PROXY_CPUS, the backend and
# the load generator on CLIENT_CPUS. Set once, by `main`, from --cores (see `placement`).
PROXY_CPUS = "0"
CLIENT_CPUS = "1"

STARTED: list[subprocess.Popen] = []
# Run-time directories already handed out, per kind of process (see `instance_name`).
INSTANCES: dict[str, int] = {}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class NotAvailable(Exception):
    """A contender or a mode this machine cannot run; the message says why, for the report."""


# ----- processes and /proc -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpus: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if shutil.which("taskset") else argv


def cpu_list(cpus: str) -> list[int]:
    """The CPUs of a taskset list as written by `placement` ("0", "2,3")."""
    return [int(c) for c in cpus.split(",")]


def find_program(name: str) -> str | None:
    """`name` on PATH, or in /usr/sbin (Debian installs nginx and haproxy there, and a
    non-root PATH may lack it)."""
    return shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)


def instance_name(stem: str) -> str:
    """`stem` for the first process of a kind in the run, `stem-1`, `stem-2`… after: each
    has its own config and log files, and the first may still run beside later ones."""
    n = INSTANCES.get(stem, 0)
    INSTANCES[stem] = n + 1
    return stem if n == 0 else f"{stem}-{n}"


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


def stop_one(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout=5)
    STARTED.remove(p)


def run_bounded(argv: list[str], limit_s: float, **kw) -> subprocess.CompletedProcess:
    """`subprocess.run` whose timeout (or an interrupt) ends the whole process group — cargo's
    rustc and linker children too, not only cargo."""
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    try:
        out, err = p.communicate(timeout=limit_s)
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


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


# ----- CPU placement ---------------------------------------------------------------------


def placement(cores: int, cpus: list[int]) -> tuple[str, str]:
    """(proxy CPUs, client CPUs) as taskset lists: the proxy on the first `cores` of the
    CPUs this process may use, the backend and the load generator on all the others.
    NotAvailable when no CPU would be left for them: sharing one would measure the load
    generator's contention, not the proxy."""
    if len(cpus) < cores + 1:
        raise NotAvailable(
            f"--cores {cores} needs at least {cores + 1} CPUs ({cores} for the proxy, at least "
            f"one more for the load generator and the backend); this machine has {len(cpus)}, "
            "so they cannot be placed apart and nothing was measured")
    return ",".join(map(str, cpus[:cores])), ",".join(map(str, cpus[cores:]))


def proxy_cpus(cores: int) -> str:
    """The first `cores` of PROXY_CPUS: a one-core proxy stays on one CPU in a --cores run."""
    return ",".join(PROXY_CPUS.split(",")[:cores])


# ----- contenders: each one's configuration is generated in its start_* function ----------


class Contender:
    def __init__(self, name: str, port: int, process: subprocess.Popen | None, cores: int = 1,
                 max_clients: int | None = None):
        self.name = name
        self.port = port
        self.process = process
        self.cores = cores
        # The client connections it accepts at most, when below what the runs open.
        self.max_clients = max_clients

    def pids(self) -> list[int]:
        """The processes whose CPU counts as the proxy's."""
        if self.process is None:
            return []
        return [self.process.pid, *proc_children(self.process.pid)]

    def worker_pid(self) -> int | None:
        """The process that serves (nginx: its one worker; the others are one process)."""
        pids = self.pids()
        return pids[-1] if pids else None


def expect_ok(c: Contender) -> Contender:
    """Waits until `c` answers on ROUTE with a 200 (through the proxy, from the backend)."""
    status = wait_http(c.port, ROUTE)
    if not status.startswith("HTTP/1.1 200"):
        raise RuntimeError(f"{c.name} answered {status!r} on {ROUTE}")
    return c


def start_backend(tool: str, threads: int = 1) -> Contender:
    port = free_port()
    argv = [tool, "backend", "--listen", f"127.0.0.1:{port}", "--threads", str(threads)]
    return expect_ok(Contender(DIRECT, port, start(pinned(CLIENT_CPUS, argv), "backend")))


def start_rgate(backend_ports: list[int], extra: str = "", cores: int = 1) -> Contender:
    """rgate routing ROUTE to the instances at `backend_ports`; `extra`: top-level YAML."""
    port = free_port()
    stem = instance_name("rgate")
    config = OUT / f"{stem}.yml"
    addresses = ", ".join(f'"127.0.0.1:{p}"' for p in backend_ports)
    config.write_text(
        "# generated by benches/bench.py\n"
        "routes:\n"
        f"  - path_prefix: {ROUTE}\n"
        "    backend: bench\n"
        "default_response:\n"
        f"  body: {DEFAULT_BODY}\n"
        f"  status_code: {DEFAULT_STATUS}\n"
        "backends:\n"
        "  - name: bench\n"
        f"    addresses: [{addresses}]\n"
        + extra
    )
    for stale in (f"{stem}.db", f"{stem}.db-wal", f"{stem}.db-shm"):
        (OUT / stale).unlink(missing_ok=True)
    argv = [
        str(TARGET / "release" / "rgate"),
        "--cores", str(cores),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--config", str(config),
        "--db", str(OUT / f"{stem}.db"),
        "--pid-file", str(OUT / f"{stem}.pid"),
        "--log-level", LOG_LEVEL,
        "--drain-timeout", "2",
    ]
    return expect_ok(Contender(RGATE, port, start(pinned(proxy_cpus(cores), argv), stem), cores))


def cpu_mask(cpus: str) -> str:
    """nginx's worker_cpu_affinity mask for a taskset list: CPU 0 is the rightmost bit."""
    wanted = set(cpu_list(cpus))
    return "".join("1" if c in wanted else "0" for c in reversed(range(max(wanted) + 1)))


def start_nginx(backend_ports: list[int], location_extra: str = "", cores: int = 1) -> Contender:
    """nginx routing ROUTE to the instances at `backend_ports` (nginx's defaults for failing
    ones: max_fails=1, fail_timeout=10s, proxy_next_upstream error timeout);
    `location_extra`: more directives for that location."""
    nginx = find_program("nginx")
    if nginx is None:
        raise NotAvailable("not installed")
    port = free_port()
    d = OUT / instance_name("nginx")
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "temp" / sub).mkdir(parents=True, exist_ok=True)
    # With several workers, each pinned to one of the proxy's CPUs, as rgate pins its cores.
    affinity = f"worker_cpu_affinity {cpu_mask(proxy_cpus(cores))};" if cores > 1 else ""
    # As close to rgate's behaviour as nginx allows, and nginx at its fastest otherwise:
    # no access log (rgate only counts in memory), keep-alive without a request limit on
    # both sides, request bodies streamed (not spooled to disk), the same forwarded fields.
    conf = f"""# generated by benches/bench.py
daemon off;
master_process on;
user root root;
worker_processes {cores};
{affinity}
worker_rlimit_nofile {MAX_CLIENT_CONNECTIONS};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {MAX_CLIENT_CONNECTIONS}; }}
http {{
    access_log off;
    client_body_temp_path {d}/temp/client_body;
    proxy_temp_path {d}/temp/proxy;
    fastcgi_temp_path {d}/temp/fastcgi;
    uwsgi_temp_path {d}/temp/uwsgi;
    scgi_temp_path {d}/temp/scgi;
    keepalive_requests 100000000;
    keepalive_timeout {IDLE_TIMEOUT_S}s;
    client_max_body_size 0;
    upstream bench_backend {{
        {"".join(f"server 127.0.0.1:{p}; " for p in backend_ports)}
        keepalive {UPSTREAM_IDLE};
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
            return {DEFAULT_STATUS} "{DEFAULT_BODY}";
        }}
    }}
}}
"""
    (d / "nginx.conf").write_text(conf)
    argv = [nginx, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")]
    return expect_ok(Contender("nginx", port, start(pinned(proxy_cpus(cores), argv), d.name), cores))


# HAProxy's failure handling in the fault runs, as close to nginx's defaults as HAProxy
# allows without health checks (nginx's max_fails is passive; HAProxy's needs `check`):
# a failed connect or a response timeout is retried (`retries 3` is its default), each
# retry on another server (nginx's `proxy_next_upstream error timeout`).
HAPROXY_FAILOVER = """    option redispatch 1
    retry-on conn-failure empty-response response-timeout
"""


def haproxy_maxconn() -> int:
    """HAProxy's connection limit: it counts two descriptors per client connection (its own
    and a backend's) and refuses to start if the open-file limit cannot hold them all."""
    open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return min(MAX_CLIENT_CONNECTIONS, (open_files - HAPROXY_SPARE_FILES) // 2)


def start_haproxy(backend_ports: list[int], timeout_s: float | None = None,
                  failover: str = "", cores: int = 1) -> Contender:
    """HAProxy routing ROUTE to the instances at `backend_ports`, round robin, with idle
    backend connections shared by all clients (`http-reuse always`, the pooling rgate and
    nginx do); `timeout_s`: connect and response timeouts (default: long, like nginx's);
    `failover`: more directives for the backend section."""
    haproxy = find_program("haproxy")
    if haproxy is None:
        raise NotAvailable("not installed")
    port = free_port()
    d = OUT / instance_name("haproxy")
    d.mkdir(parents=True, exist_ok=True)
    connect, server = (f"{timeout_s}s", f"{timeout_s}s") if timeout_s else ("5s", f"{IDLE_TIMEOUT_S}s")
    maxconn = haproxy_maxconn()
    cpu_map = (f"    cpu-map auto:1/1-{cores} {' '.join(proxy_cpus(cores).split(','))}\n"
               if cores > 1 else "")
    servers = "".join(f"    server s{i} 127.0.0.1:{p}\n" for i, p in enumerate(backend_ports))
    # No `log` line anywhere: HAProxy logs nothing (rgate's and nginx's access logs are off
    # too). Keep-alive on both sides is HAProxy's default mode (http-keep-alive).
    conf = f"""# generated by benches/bench.py
global
    nbthread {cores}
{cpu_map}    maxconn {maxconn}
    pidfile {d}/haproxy.pid

defaults
    mode http
    maxconn {maxconn}
    timeout connect {connect}
    timeout server {server}
    timeout client {IDLE_TIMEOUT_S}s
    timeout http-keep-alive {IDLE_TIMEOUT_S}s
    timeout http-request {IDLE_TIMEOUT_S}s

frontend bench
    bind 127.0.0.1:{port} backlog 4096
    acl bench path_beg {ROUTE}
    http-request return status {DEFAULT_STATUS} content-type "text/plain; charset=utf-8" string "{DEFAULT_BODY}" unless bench
    option forwardfor
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Proto http
    default_backend bench

backend bench
    balance roundrobin
    http-reuse always
{failover}{servers}"""
    (d / "haproxy.cfg").write_text(conf)
    argv = [haproxy, "-db", "-f", str(d / "haproxy.cfg")]
    p = start(pinned(proxy_cpus(cores), argv), d.name)
    return expect_ok(Contender("haproxy", port, p, cores, max_clients=maxconn))


def build_pingora(skip: bool, no_build: bool) -> tuple[str, float | None]:
    """The Pingora peer's binary (benches/pingora, its own workspace, built into its own
    target dir) and the seconds its build took; NotAvailable says why there is none."""
    if skip:
        raise NotAvailable("skipped (--no-pingora)")
    if no_build:
        if PINGORA_EXE.exists():
            return str(PINGORA_EXE), None
        raise NotAvailable(f"not built (--no-build, and no earlier build at {PINGORA_EXE})")
    if shutil.which("cmake") is None:
        raise NotAvailable("not built (cmake is not installed: pingora-core always compresses "
                           "with zlib-ng, whose build needs it; `apt-get install cmake`)")
    log("building the Pingora peer (benches/pingora; the first build takes several minutes)")
    build_log = OUT / "pingora-build.log"
    started = time.monotonic()
    try:
        with build_log.open("wb") as f:
            r = run_bounded(["cargo", "build", "--release", "--locked",
                             "--manifest-path", str(PINGORA_DIR / "Cargo.toml"),
                             "--target-dir", str(PINGORA_TARGET)],
                            BUILD_LIMIT_S, cwd=PINGORA_DIR, stdout=f, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        raise NotAvailable(f"not built (the build took over {BUILD_LIMIT_S} s)") from None
    except OSError as e:
        raise NotAvailable(f"not built (could not run cargo: {e})") from None
    if r.returncode != 0:
        errors = [l for l in build_log.read_text(errors="replace").splitlines()
                  if l.startswith("error")] or ["see the log"]
        raise NotAvailable(f"not built ({errors[0][:160]}; {build_log.relative_to(ROOT)})")
    compiled = "Compiling rgate-bench-pingora" in build_log.read_text(errors="replace")
    return str(PINGORA_EXE), (time.monotonic() - started) if compiled else None


def start_pingora(exe: str | None, backend_ports: list[int], cores: int = 1) -> Contender:
    """The Pingora peer (benches/pingora/src/main.rs has the whole configuration): one
    backend, pooled keep-alive to it, the same route, default response and forwarded
    fields."""
    if exe is None:
        raise NotAvailable("not built")
    if len(backend_ports) != 1:
        raise NotAvailable("the Pingora peer proxies to one backend instance only")
    port = free_port()
    d = OUT / instance_name("pingora")
    d.mkdir(parents=True, exist_ok=True)
    argv = [exe, "--listen", f"127.0.0.1:{port}", "--to", f"127.0.0.1:{backend_ports[0]}",
            "--run-dir", str(d), "--threads", str(cores)]
    return expect_ok(Contender("pingora", port, start(pinned(proxy_cpus(cores), argv), d.name), cores))


def start_floor(tool: str, name: str, backend_port: int) -> Contender:
    """A floor: `benchtool relay` or `relay-uring`, single-threaded, pinned like a proxy."""
    port = free_port()
    argv = [tool, FLOORS[name], "--listen", f"127.0.0.1:{port}", "--to", f"127.0.0.1:{backend_port}"]
    stem = instance_name(FLOORS[name])
    return expect_ok(Contender(name, port, start(pinned(proxy_cpus(1), argv), stem)))


class Programs:
    """What the run starts besides rgate: benchtool, and the Pingora binary when it built."""

    def __init__(self, tool: str, pingora: str | None):
        self.tool = tool
        self.pingora = pingora


def proxy_starters(progs: Programs, backend_ports: list[int],
                   cores: int = 1) -> dict[str, Callable[[], Contender]]:
    """Every proxy of the comparison in front of `backend_ports` with its bench settings."""
    return {
        RGATE: lambda: start_rgate(backend_ports, cores=cores),
        "nginx": lambda: start_nginx(backend_ports, cores=cores),
        "haproxy": lambda: start_haproxy(backend_ports, cores=cores),
        "pingora": lambda: start_pingora(progs.pingora, backend_ports, cores=cores),
    }


def start_available(starters: dict[str, Callable[[], Contender]],
                    missing: dict[str, str] | None = None) -> list[Contender]:
    """Starts each contender this machine has; records why the others are absent."""
    started = []
    for name, starter in starters.items():
        try:
            started.append(starter())
        except NotAvailable as e:
            if missing is not None and name not in missing:
                missing[name] = str(e)
                log(f"{name}: {e}")
    return started


# ----- the CPU quota ---------------------------------------------------------------------


def cgroup_with_cpu() -> tuple[str, Path]:
    """("v2" | "v1", mount point) of a cgroup hierarchy with the cpu controller: v2's
    unified hierarchy when cpu is among its controllers, else v1's cpu hierarchy (hybrid
    systems bind cpu to v1, where cpu.cfs_quota_us is the same CFS bandwidth control
    that v2's cpu.max sets). NotAvailable when neither is mounted and writable."""
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    for _, point, kind, *_ in mounts:
        controllers = Path(point) / "cgroup.controllers"
        if kind == "cgroup2" and controllers.exists() and "cpu" in controllers.read_text().split():
            return "v2", Path(point)
    for _, point, kind, options, *_ in mounts:
        if kind == "cgroup" and "cpu" in options.split(","):
            return "v1", Path(point)
    raise NotAvailable("no cgroup hierarchy with the cpu controller is mounted")


class CpuQuota:
    """A cgroup that holds its processes to `percent` of one CPU per CFS period. Processes
    go in for a run (`enter`) and back to the cgroup they came from after it (`leave`);
    `remove` takes the cgroup away and undoes what was enabled for it."""

    def __init__(self, percent: int):
        self.percent = percent
        self.interface, self.root = cgroup_with_cpu()
        if not os.access(self.root, os.W_OK):
            raise NotAvailable(f"{self.root} is not writable (the capped run needs root)")
        self.enabled_cpu = False
        if self.interface == "v2":
            # A child cgroup gets cpu.max only when its parent hands the controller down.
            subtree = self.root / "cgroup.subtree_control"
            if "cpu" not in subtree.read_text().split():
                subtree.write_text("+cpu\n")
                self.enabled_cpu = True
        self.path = self.root / f"rgate-bench-{os.getpid()}"
        self.origins: dict[int, Path] = {}
        self.path.mkdir()
        try:
            self._set_quota(CFS_PERIOD_US * percent // 100)
        except OSError:
            self.remove()
            raise

    def _set_quota(self, quota_us: int) -> None:
        if self.interface == "v2":
            (self.path / "cpu.max").write_text(f"{quota_us} {CFS_PERIOD_US}\n")
        else:
            (self.path / "cpu.cfs_period_us").write_text(f"{CFS_PERIOD_US}\n")
            (self.path / "cpu.cfs_quota_us").write_text(f"{quota_us}\n")

    def describe(self) -> str:
        if self.interface == "v2":
            return f"cgroup v2 cpu.max {CFS_PERIOD_US * self.percent // 100} {CFS_PERIOD_US}"
        return (f"cgroup v1 cpu.cfs_quota_us {CFS_PERIOD_US * self.percent // 100} per "
                f"cpu.cfs_period_us {CFS_PERIOD_US}: this machine's cpu controller is on v1")

    def _cgroup_of(self, pid: int) -> Path:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            ours = controllers == "" if self.interface == "v2" else "cpu" in controllers.split(",")
            if ours:
                return self.root / path.lstrip("/")
        raise RuntimeError(f"process {pid} is in no {self.interface} cpu cgroup")

    def enter(self, pids: list[int]) -> None:
        """Moves each process (all its threads) into the quota."""
        for pid in pids:
            self.origins[pid] = self._cgroup_of(pid)
            (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def leave(self) -> None:
        """Moves every process that entered back to where it was."""
        for pid, origin in self.origins.items():
            try:
                (origin / "cgroup.procs").write_text(f"{pid}\n")
            except OSError:
                pass  # it has exited
        self.origins.clear()

    def throttling(self) -> tuple[int, int]:
        """(CFS periods with runnable processes, periods in which the quota ran out)."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        return int(stat["nr_periods"]), int(stat["nr_throttled"])

    def remove(self) -> None:
        self.leave()
        deadline = time.monotonic() + 5
        while self.path.exists():
            try:
                self.path.rmdir()
            except OSError:
                if time.monotonic() > deadline:
                    log(f"could not remove {self.path}; remove it by hand")
                    break
                time.sleep(0.1)  # a process killed just now may not have left yet
        if self.enabled_cpu:
            try:
                (self.root / "cgroup.subtree_control").write_text("-cpu\n")
            except OSError:
                pass  # another cgroup started using it meanwhile: leave it on


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
        # One wrk thread per load-generator CPU (one on a 2-CPU machine).
        threads = min(len(cpu_list(CLIENT_CPUS)), self.connections)
        argv = [self.wrk, f"-t{threads}", f"-c{self.connections}", f"-d{max(1, round(seconds))}s",
                "--timeout", "5s", "-s", str(OUT / "wrk-report.lua")]
        if close:
            argv += ["-H", "Connection: close"]
        argv.append(f"http://127.0.0.1:{port}{ROUTE}")
        out = subprocess.run(pinned(CLIENT_CPUS, argv), capture_output=True, text=True,
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
        out = subprocess.run(pinned(CLIENT_CPUS, argv), capture_output=True, text=True,
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
    """Runs `run()` and adds the proxy's and the backend's CPU time per request, the share
    of its CPUs that each side used (which one bounded the run: `bound_by`), and the share
    of the machine that other work took meanwhile (noise)."""
    pids = c.pids() if c.name != DIRECT else []
    before = cpu_split(pids) if pids else (0.0, 0.0)
    backend_before = cpu_seconds(backend.pids())
    busy_before, own_before, wall_before = busy_seconds(), own_seconds(), time.monotonic()
    r = run()
    n = max(1, r["requests"])
    after = cpu_split(pids) if pids else (0.0, 0.0)
    user, system = after[0] - before[0], after[1] - before[1]
    proxy = user + system
    back = cpu_seconds(backend.pids()) - backend_before
    own = own_seconds() - own_before
    wall = time.monotonic() - wall_before
    if pids:
        r["proxy_cpu_us_per_req"] = proxy / n * 1e6
        r["proxy_user_us_per_req"] = user / n * 1e6
        r["proxy_sys_us_per_req"] = system / n * 1e6
        # Of one CPU: a proxy with N cores can reach N.
        r["proxy_cpu_share"] = proxy / wall
        # The kernel counts CPU time in clock ticks: a figure below this one is not seen.
        r["cpu_tick_us_per_req"] = 1e6 / CLK_TCK / n
    r["backend_cpu_us_per_req"] = back / n * 1e6
    # The load generator (a waited-for child: in `own`), the backend and this driver, of
    # the CPUs they were given.
    r["client_cpu_share"] = (own + back) / wall / len(cpu_list(CLIENT_CPUS))
    other = (busy_seconds() - busy_before) - own - proxy - back
    r["other_cpu_share"] = max(0.0, other) / (wall * (os.cpu_count() or 1))
    return r


def closed_loop(load: Load, backend: Contender, seconds: float):
    """A measured closed-loop keep-alive run against one contender, for `interleaved`."""
    return lambda c: measured(c, backend, lambda: load.closed(c.port, seconds))


def interleaved(contenders: list[Contender], rounds: int, what: str,
                run_one: Callable[[Contender], dict]) -> dict[str, dict]:
    """`rounds` rounds, each running `run_one` against every contender in turn (direct,
    rgate, nginx, …, direct, …) so that a slow spell of the machine falls on all of them,
    not on one; each contender's rounds merged by `median_run`."""
    runs: dict[str, list] = {c.name: [] for c in contenders}
    for n in range(rounds):
        for c in contenders:
            log(f"round {n + 1}/{rounds}, {c.name}: {what}")
            runs[c.name].append(run_one(c))
    return {name: median_run(rs) for name, rs in runs.items()}


def warm_up(load: Load, contenders: list[Contender]) -> None:
    for c in contenders:
        log(f"{c.name}: warm-up")
        load.closed(c.port, 2)


# ----- memory runs --------------------------------------------------------------------


def idle_connections(tool: str, c: Contender, count: int) -> dict:
    pid = c.worker_pid()
    rss_before = status_kib(pid, "VmRSS")
    p = subprocess.Popen(
        pinned(CLIENT_CPUS, [tool, "idle", "--addr", f"127.0.0.1:{c.port}", "--path", ROUTE,
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
            pinned(CLIENT_CPUS, [tool, "upload", "--addr", f"127.0.0.1:{c.port}", "--path", ROUTE,
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

# The connect and response timeouts every proxy gets in the fault runs (nginx's default of
# 60 s would make a hanging instance cost a minute per try).
FAULT_TIMEOUT_S = 1
FAULT_SECONDS = 6


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





def fault_starters(ports: list[int]) -> dict[str, Callable[[], Contender]]:
    """The proxies of the fault runs (Pingora's peer has one backend only), each with the
    same timeouts and its default failure handling (HAProxy: see HAPROXY_FAILOVER)."""
    ms = FAULT_TIMEOUT_S * 1000
    return {
        RGATE: lambda: start_rgate(
            ports, f"timeouts:\n  connect_ms: {ms}\n  response_header_ms: {ms}\n"),
        "nginx": lambda: start_nginx(
            ports, f"proxy_connect_timeout {FAULT_TIMEOUT_S}s; "
                   f"proxy_read_timeout {FAULT_TIMEOUT_S}s;"),
        "haproxy": lambda: start_haproxy(ports, FAULT_TIMEOUT_S, HAPROXY_FAILOVER),
    }


def fault_runs(tool: str, load: Load, healthy: int) -> dict:
    """Each proxy in front of three instances, one refusing or hanging, each with the same
    timeouts and the proxies' default failure handling; a fresh proxy per run."""
    second = start_backend(tool)
    results: dict = {}
    for kind, make in (("none (all healthy)", lambda: HealthyInstance(tool)),
                       ("refusing", RefusingInstance), ("hanging", HangingInstance)):
        bad = make()
        ports = [healthy, bad.port, second.port]
        try:
            results[kind] = {}
            for name, starter in fault_starters(ports).items():
                try:
                    c = starter()
                except NotAvailable:
                    continue  # the report already says why
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
            os.sched_setaffinity(0, set(cpu_list(CLIENT_CPUS)))
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


def abuse_runs(progs: Programs, load: Load, backend_port: int) -> dict:
    """For every proxy (each fresh, default settings): normal traffic at a fixed rate,
    alone, then beside `ABUSE_CONNECTIONS` slow clients; RSS before, during and after."""
    results: dict = {}
    for name, starter in proxy_starters(progs, [backend_port]).items():
        try:
            c = starter()
        except NotAvailable:
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


# ----- requests/s under a CPU quota -----------------------------------------------------


def quota_runs(quota: CpuQuota, load: Load, backend: Contender, contenders: list[Contender],
               rounds: int, seconds: float) -> dict:
    """Closed-loop keep-alive with each proxy and floor in turn held to the quota, direct
    (no proxy, nothing capped) interleaved with them: their requests/s is what the proxy
    can do with that much CPU, as long as direct shows that the load generator and the
    backend could deliver much more (`QUOTA_HEADROOM`)."""

    def capped(close: bool) -> Callable[[Contender], dict]:
        def run(c: Contender) -> dict:
            if c.name == DIRECT:
                return measured(c, backend, lambda: load.closed(c.port, seconds, close))
            quota.enter(c.pids())
            try:
                periods0, throttled0 = quota.throttling()
                r = measured(c, backend, lambda: load.closed(c.port, seconds, close))
                periods1, throttled1 = quota.throttling()
            finally:
                quota.leave()
            r["throttled_share"] = (throttled1 - throttled0) / max(1, periods1 - periods0)
            return r
        return run

    # A new connection per request through the floors would measure the backend's accept
    # path as much as theirs: direct and the proxies only.
    http = [c for c in contenders if c.name not in FLOORS]
    return {
        "percent": quota.percent, "interface": quota.describe(),
        "runs": interleaved(contenders, rounds,
                            f"closed-loop keep-alive held to {quota.percent} % of a CPU "
                            f"for {seconds:.0f} s", capped(False)),
        "new_connection": interleaved(http, rounds,
                                      f"a new connection per request held to {quota.percent} % "
                                      f"of a CPU for {seconds:.0f} s", capped(True)),
    }


# ----- the runs --------------------------------------------------------------------------


def full_run(args, progs: Programs, load: Load, report: dict) -> None:
    """The default run (one core per proxy); fills `report`."""
    backend = start_backend(progs.tool)
    proxies = start_available(proxy_starters(progs, [backend.port]), report["missing"])
    if not any(p.name == RGATE for p in proxies):
        raise RuntimeError("rgate did not start")
    floors = [start_floor(progs.tool, name, backend.port) for name in FLOORS]
    cpu_runs(args, load, backend, [backend, *proxies, *floors], report)
    for f in floors:
        stop_one(f.process)
    connection_and_memory_runs(args, progs.tool, load, backend, proxies, report)
    rgate = next(p for p in proxies if p.name == RGATE)
    report["access_log"] = access_log_runs(load, backend, rgate, args.rounds, args.seconds)
    if not args.no_faults:
        report["faults"] = fault_runs(progs.tool, load, backend.port)
    if not args.no_abuse:
        report["abuse"] = abuse_runs(progs, load, backend.port)


def cpu_runs(args, load: Load, backend: Contender, everyone: list[Contender],
             report: dict) -> None:
    """Closed-loop keep-alive, then a fixed rate, then (unless --cpu-quota 0) closed loop
    under the CPU quota: direct, every proxy and the floors, rounds interleaved."""
    warm_up(load, everyone)
    report["keep_alive"] = interleaved(
        everyone, args.rounds, f"closed-loop keep-alive for {args.seconds:.0f} s",
        closed_loop(load, backend, args.seconds))
    proxies = [c for c in everyone if c.name in (RGATE, *PEERS)]
    rate = args.rate or round(min(report["keep_alive"][p.name]["rps"] for p in proxies)
                              * FIXED_RATE_SHARE, -2)
    report["fixed_rate_rps"] = rate
    report["fixed_rate"] = interleaved(
        everyone, args.rounds, f"fixed rate {rate:,.0f}/s for {args.seconds:.0f} s",
        lambda c: measured(c, backend, lambda: load.fixed(c.port, rate)))
    for p in proxies:
        report["peak_rss_kib"][p.name] = status_kib(p.worker_pid(), "VmHWM")
    if not args.cpu_quota:
        return
    try:
        quota = CpuQuota(args.cpu_quota)
    except (NotAvailable, OSError) as e:
        report["missing"]["cpu quota"] = str(e)
        log(f"no capped run: {e}")
        return
    try:
        report["quota"] = quota_runs(quota, load, backend, everyone, args.rounds, args.seconds)
    finally:
        quota.remove()


def connection_and_memory_runs(args, tool: str, load: Load, backend: Contender,
                               proxies: list[Contender], report: dict) -> None:
    """A new connection per request (direct and the proxies), then memory: a large body
    streamed through, then idle keep-alive connections held (the proxies)."""
    for c in [backend, *proxies]:
        log(f"{c.name}: new connection per request for {report['close_seconds']:.0f} s")
        report["new_connection"][c.name] = measured(
            c, backend, lambda: load.closed(c.port, report["close_seconds"], close=True))
        time.sleep(1)
    # The body first: memory the idle run grows may stay in the allocator and would
    # hide the growth the body causes.
    for c in [backend, *proxies]:
        log(f"{c.name}: streaming a {args.body_bytes / 2**20:.0f} MiB body")
        report["large_body"][c.name] = large_body(tool, c, args.body_bytes)
    for p in proxies:
        # A proxy that accepts fewer would leave the rest waiting in its backlog.
        count = min(args.idle, p.max_clients or args.idle)
        log(f"{p.name}: {count} idle keep-alive connections")
        report["idle"][p.name] = idle_connections(tool, p, count)


def cores_run(args, progs: Programs, load: Load, report: dict) -> None:
    """--cores N: every proxy at 1 core and at N, closed-loop keep-alive; the backend gets
    a thread per load-generator CPU so that it is not what runs out first."""
    backend = start_backend(progs.tool, threads=len(cpu_list(CLIENT_CPUS)))
    report["cores"] = {"n": args.cores, "at": {}}
    for cores in (1, args.cores):
        proxies = start_available(proxy_starters(progs, [backend.port], cores), report["missing"])
        try:
            contenders = [backend, *proxies]
            warm_up(load, contenders)
            report["cores"]["at"][str(cores)] = interleaved(
                contenders, args.rounds,
                f"{cores} core(s), closed-loop keep-alive for {args.seconds:.0f} s",
                closed_loop(load, backend, args.seconds))
        finally:
            for p in proxies:
                stop_one(p.process)


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


def program_versions() -> dict[str, str]:
    """The version of each contender and load generator this machine has."""
    versions = {}
    # What each prints for -v, and where the version is in it.
    for name, pattern in (("nginx", r"nginx/(\S+)"), ("haproxy", r"HAProxy version (\S+)"),
                          ("wrk", r"wrk (\S+)")):
        exe = find_program(name)
        if exe:
            r = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10)
            found = re.search(pattern, r.stdout + r.stderr)
            versions[name] = found.group(1) if found else "?"
    lock = PINGORA_DIR / "Cargo.lock"
    found = re.search(r'name = "pingora-proxy"\nversion = "([^"]+)"', lock.read_text())
    if found:
        versions["pingora"] = f"pingora-proxy {found.group(1)}"
    return versions


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "load_average": os.getloadavg(), "busy_before": cpu_busy_fraction(),
        "versions": program_versions(),
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


def round_ratio(mode: dict, get, other: str) -> str:
    """rgate/`other` of `get(result)`, round by round (each pair ran in the same round):
    the median of the per-round ratios, then every round's, so the spread is visible."""
    rg, ot = mode[RGATE].get("rounds"), mode[other].get("rounds")
    if not rg or not ot:
        return ratio(get(mode[RGATE]), get(mode[other]))
    rs = sorted(get(a) / get(b) for a, b in zip(rg, ot)
                if get(a) is not None and get(b))
    if not rs:
        return "—"
    return f"{statistics.median(rs):.2f} (rounds: {', '.join(f'{r:.2f}' for r in rs)})"


def rps(r: dict):
    return r["rps"]


def cpu_per_req(r: dict):
    return r.get("proxy_cpu_us_per_req")


def user_per_req(r: dict):
    return r.get("proxy_user_us_per_req")


def sys_per_req(r: dict):
    return r.get("proxy_sys_us_per_req")


def p99(r: dict):
    return r["latency_us"]["p99"]


def per_req(r: dict, key: str) -> str:
    """A CPU-per-request figure in µs, or `< tick` where the run was too short for the
    kernel's clock-tick accounting to see any (a floor's user time in a 2 s run)."""
    v, tick = r.get(key), r.get("cpu_tick_us_per_req")
    if v is None:
        return "—"
    return f"< {tick:.2f}" if v == 0 and tick else f"{v:.1f}"


def times(a, b, tick) -> str:
    """a/b, or a lower bound for it where b was below the clock tick (`per_req`)."""
    if a is None or b is None:
        return "—"
    if b == 0:
        return f"> {a / tick:.0f}×" if tick else "—"
    return f"{a / b:.2f}×"


def rounds_of(report: dict) -> str:
    n = report["rounds"]
    return f"{n} round{'s' if n != 1 else ''} of {report['seconds']:g} s"


def split_cpu(r: dict) -> str:
    """A proxy's CPU per request as `user + sys`: the kernel's share is the TCP work both
    proxies must do; the user share is the proxy's own."""
    if r.get("proxy_user_us_per_req") is None:
        return "—"
    return f"{r['proxy_user_us_per_req']:.1f} + {r['proxy_sys_us_per_req']:.1f}"


def bound_by(r: dict, proxy_cpus: float) -> str:
    """Which side's CPU limited a closed-loop run: the proxy's when it used nearly all the
    CPU it was given (`proxy_cpus`: 1 for one pinned core, 0.5 under a 50 % quota), else
    the client side's (load generator, backend and driver) when they used nearly all of
    theirs, else neither (then it was latency: wake-ups, the loopback, other load)."""
    proxy, client = r.get("proxy_cpu_share"), r.get("client_cpu_share")
    if client is None:
        return "—"
    used = ([f"proxy {proxy / proxy_cpus:.0%}"] if proxy is not None else []) + [
        f"client side {client:.0%}"]
    if proxy is not None and proxy >= BOUND_SHARE * proxy_cpus:
        verdict = "proxy CPU"
    elif client >= BOUND_SHARE:
        verdict = "client-side CPU"
    else:
        verdict = "neither"
    return f"{verdict} ({', '.join(used)})"


def in_order(mode: dict, names=(DIRECT, RGATE, *PEERS, *FLOORS)) -> list[str]:
    return [n for n in names if n in mode]


def render_header(report: dict) -> list[str]:
    m = report["machine"]
    v = m["versions"]
    built = report.get("pingora_build_seconds")
    missing = report["missing"]
    peers = [f"nginx {v.get('nginx', '?')}" if "nginx" not in missing else None,
             f"HAProxy {v.get('haproxy', '?')}" if "haproxy" not in missing else None,
             f"Pingora ({v.get('pingora', '?')}"
             + (f", compiled in {built:.0f} s by this run" if built else "") + ")"
             if "pingora" not in missing else None]
    lines = [
        f"## rgate benchmark — {report['started']}",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} CPUs, Linux {m['kernel']}; "
        f"CPU busy before the run {m['busy_before']:.0%}. "
        f"Proxies and floors on CPU {report['proxy_cpus']}; backend and load generator on "
        f"CPU {report['client_cpus']}.",
        "",
        "Contenders: rgate (this tree), " + ", ".join(p for p in peers if p)
        + "; floors: `benchtool relay` (epoll) and `benchtool relay-uring` (io_uring, monoio); "
        f"load: {'wrk ' + v['wrk'] if 'wrk' in v else 'benchtool load'}.",
        "",
    ]
    if m["busy_before"] > 0.05:
        lines += [f"**The machine was not quiet: {m['busy_before']:.0%} of its CPU time was busy "
                  "just before the run, so other work shared these CPUs and the numbers are "
                  "noisy.**", ""]
    for note in report.get("notes", []):
        lines += [note, ""]
    for name, why in report["missing"].items():
        if name == "cpu quota":
            lines += [f"**Capped run: not run ({why}).**", ""]
        else:
            lines += [f"**{DISPLAY.get(name, name)}: {why}** — no {name} rows below.", ""]
    return lines


def render_keep_alive(report: dict) -> list[str]:
    keep = report["keep_alive"]
    names = in_order(keep)
    lines = [
        f"### Keep-alive, closed loop ({report['connections']} connections, "
        f"{rounds_of(report)}, medians, "
        f"{keep[names[0]]['generator']})",
        "",
        "| | requests/s | p50 µs | p99 µs | p99.9 µs | proxy CPU µs/req | of it user + sys "
        "| proxy peak RSS MiB | bound by (CPU used) | other load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for n in names:
        r = keep[n]
        l = r["latency_us"]
        rss = report["peak_rss_kib"].get(n)
        lines.append(
            f"| {n} | {fmt(r['rps'])} | {fmt(l['p50'])} | {fmt(l['p99'])} | {fmt(l['p99_9'])} "
            f"| {fmt(r.get('proxy_cpu_us_per_req'), 1)} | {split_cpu(r)} "
            f"| {fmt(rss and rss / 1024, 1)} | {bound_by(r, 1)} | {r['other_cpu_share']:.0%} |")
    lines += ["", "*bound by*: the side whose CPU ran out (used ≥ "
              f"{BOUND_SHARE:.0%} of what it was given: one CPU for the proxy; the load generator, "
              "backend and driver share the other). Where the proxy is the bound, requests/s is "
              "its capacity on one core; where the client side is, requests/s says only that "
              "the proxy keeps up with the load generator, and CPU per request is the figure "
              "to compare."]
    return lines


def render_fixed(report: dict) -> list[str]:
    fixed = report["fixed_rate"]
    if not fixed:
        return []
    lines = [
        "",
        f"### Fixed rate ({report['fixed_rate_rps']:,.0f} requests/s, {report['connections']} "
        f"connections, {rounds_of(report)}, medians, "
        "latency from each request's due time)",
        "",
        "Bound by the offered rate, below every contender's capacity: latency and CPU per "
        "request at a moderate load, not throughput.",
        "",
        "| | achieved/s | errors | p50 µs | p99 µs | p99.9 µs | max µs | proxy CPU µs/req "
        "| other load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in in_order(fixed):
        r = fixed[n]
        l = r["latency_us"]
        lines.append(
            f"| {n} | {fmt(r['rps'])} | {r['errors']} | {fmt(l['p50'])} | {fmt(l['p99'])} "
            f"| {fmt(l['p99_9'])} | {fmt(l['max'])} | {fmt(r.get('proxy_cpu_us_per_req'), 1)} "
            f"| {r['other_cpu_share']:.0%} |")
    return lines


def render_new_connection(report: dict) -> list[str]:
    close = report["new_connection"]
    if not close:
        return []
    lines = [
        "",
        f"### New connection per request ({report['connections']} connections, "
        f"{report['close_seconds']:.0f} s)",
        "",
        "| | requests/s | errors | p99 µs | proxy CPU µs/req | bound by (CPU used) "
        "| other load |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for n in in_order(close):
        r = close[n]
        lines.append(f"| {n} | {fmt(r['rps'])} | {r['errors']} | "
                     f"{fmt(r['latency_us']['p99'])} | {fmt(r.get('proxy_cpu_us_per_req'), 1)} "
                     f"| {bound_by(r, 1)} | {r['other_cpu_share']:.0%} |")
    return lines


def render_memory(report: dict) -> list[str]:
    idle, body = report["idle"], report["large_body"]
    if not idle and not body:
        return []

    def mib(kib):
        return None if kib is None else kib / 1024

    size_bytes = report["body_bytes"]
    size = (f"{size_bytes / 2**30:g} GiB" if size_bytes % 2**30 == 0
            else f"{size_bytes / 2**20:.0f} MiB")
    lines = ["", "### Memory", "",
             f"| | {size} upload MiB/s | RSS before it MiB | RSS growth during it KiB "
             "| idle conns held | KiB RSS per idle conn | RSS after they close MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in in_order({**body, **idle}):
        i = idle.get(n, {})
        b = body.get(n, {})
        lines.append(
            f"| {n} | {fmt(b.get('mib_per_s'))} | {fmt(mib(b.get('rss_before_kib')), 1)} "
            f"| {fmt(b.get('rss_growth_kib'))} | {fmt(i.get('connections'))} "
            f"| {fmt(i.get('kib_per_connection'), 2)} | {fmt(mib(i.get('rss_after_close_kib')), 1)} |")
    lines += ["", "(direct: the backend's own memory.)"]
    return lines


def render_floors(report: dict) -> list[str]:
    keep = report["keep_alive"]
    floors = in_order(keep, tuple(FLOORS))
    proxies = in_order(keep, (RGATE, *PEERS))
    if not floors or not proxies:
        return []
    lines = [
        "", "### Over the floor: CPU per request, closed-loop keep-alive (medians)", "",
        "The floors pair each client connection with a backend connection and copy bytes both "
        "ways, parsing nothing: the kernel time a proxy spends above a floor's comes from its "
        "I/O pattern (more system calls or segments per request), the user time above it from "
        "its own code.", "",
        "| | user µs/req | kernel µs/req | "
        + " | ".join(f"user, kernel ÷ {f}" for f in floors) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in floors) + " |",
    ]
    for n in floors + proxies:
        r = keep[n]
        cells = [f"{ratio(user_per_req(r), user_per_req(keep[f]))}, "
                 f"{ratio(sys_per_req(r), sys_per_req(keep[f]))}" for f in floors]
        lines.append(f"| {n} | {per_req(r, 'proxy_user_us_per_req')} "
                     f"| {per_req(r, 'proxy_sys_us_per_req')} | " + " | ".join(cells) + " |")
    rg = keep.get(RGATE)
    if rg:
        lines.append("")
        for f in floors:
            fl = keep[f]
            tick = fl.get("cpu_tick_us_per_req")
            lines.append(
                f"* rgate / {f}: user {per_req(rg, 'proxy_user_us_per_req')}/"
                f"{per_req(fl, 'proxy_user_us_per_req')} µs "
                f"({times(user_per_req(rg), user_per_req(fl), tick)}), kernel "
                f"{per_req(rg, 'proxy_sys_us_per_req')}/{per_req(fl, 'proxy_sys_us_per_req')} µs "
                f"({times(sys_per_req(rg), sys_per_req(fl), tick)})")
    return lines


def render_quota(report: dict) -> list[str]:
    q = report.get("quota")
    if not q:
        return []
    runs = q["runs"]
    share = q["percent"] / 100
    lines = [
        "", f"### Requests/s under a CPU quota: each proxy and floor held to {q['percent']} % "
        f"of one CPU (closed-loop keep-alive, {rounds_of(report)}, medians)", "",
        f"Quota: {q['interface']}. direct has no proxy and nothing capped: what the load "
        "generator and the backend deliver on their own.", "",
        "| | requests/s | proxy CPU µs/req | of it user + sys | CPU periods throttled "
        "| bound by (CPU used, of the quota for the proxy) | other load |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for n in in_order(runs):
        r = runs[n]
        lines.append(f"| {n} | {fmt(r['rps'])} | {capped_cells(r, share)} "
                     f"| {r['other_cpu_share']:.0%} |")
    capped = [runs[n]["rps"] for n in runs if n != DIRECT]
    if DIRECT in runs and capped:
        headroom = runs[DIRECT]["rps"] / max(capped)
        lines.append("")
        if headroom >= QUOTA_HEADROOM:
            lines.append(
                f"* direct / the fastest capped contender, requests/s: {headroom:.1f}× — the "
                "load generator and the backend had room to spare, so these requests/s measure "
                f"what each proxy does with {q['percent']} % of a CPU.")
        else:
            lines.append(
                f"* **direct / the fastest capped contender, requests/s: only {headroom:.1f}× "
                f"(needs ≥ {QUOTA_HEADROOM}): the load generator side may bound these figures; "
                "lower --cpu-quota.**")
    if RGATE in runs:
        for peer in in_order(runs, PEERS):
            lines.append(f"* rgate/{peer} requests/s under the quota: "
                         f"{round_ratio(runs, rps, peer)}")
    return lines + render_quota_new_connection(report)


def capped_cells(r: dict, share: float) -> str:
    """A capped run's CPU per request, its split, the throttled periods and the bound, as
    table cells."""
    throttled = r.get("throttled_share")
    return (f"{fmt(cpu_per_req(r), 1)} | {split_cpu(r)} "
            f"| {'—' if throttled is None else f'{throttled:.0%}'} | {bound_by(r, share)}")


def render_quota_new_connection(report: dict) -> list[str]:
    runs = report["quota"].get("new_connection")
    if not runs:
        return []
    q = report["quota"]
    lines = [
        "", f"### A new connection per request under the CPU quota ({q['percent']} % of one CPU "
        f"per proxy, {rounds_of(report)}, medians)", "",
        "Uncapped (above), the load generator's side runs out first when every request opens a "
        "connection, so those requests/s say little about the proxies; held to the quota, each "
        "proxy's accept, first read and close path is what runs out.", "",
        "| | requests/s | errors | proxy CPU µs/req | of it user + sys | CPU periods throttled "
        "| bound by (CPU used, of the quota for the proxy) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for n in in_order(runs):
        r = runs[n]
        lines.append(f"| {n} | {fmt(r['rps'])} | {r['errors']} "
                     f"| {capped_cells(r, q['percent'] / 100)} |")
    if RGATE in runs:
        lines.append("")
        for peer in in_order(runs, PEERS):
            lines.append(f"* rgate/{peer} new-connection requests/s under the quota: "
                         f"{round_ratio(runs, rps, peer)}")
    return lines


# The performance issue's targets against nginx (requests/s with the proxy as the bound:
# under the quota; the uncapped figure is shown beside it).
NGINX_TARGETS = {"rps": " (target ≥ 1.2 under the quota)", "cpu": "", "p99": " (target ≤ 1)",
                 "close": " (target ≥ 1.1 under the quota)"}
# User time per request rgate aims at, and its CPU per request over the io_uring floor's.
USER_TARGET_US = 1.5
FLOOR_TARGET = 1.1


def render_ratios(report: dict) -> list[str]:
    keep, fixed, close = report["keep_alive"], report["fixed_rate"], report["new_connection"]
    idle, body = report["idle"], report["large_body"]
    rg = keep.get(RGATE)
    lines = ["", "### Ratios", ""]
    if rg:
        lines.append(f"* rgate/direct requests/s: {ratio(rg['rps'], keep[DIRECT]['rps'])}")
    quota = report.get("quota") or {}
    capped, capped_close = quota.get("runs", {}), quota.get("new_connection", {})
    for peer in in_order(keep, PEERS) if rg else []:
        t = NGINX_TARGETS if peer == "nginx" else {"rps": "", "cpu": "", "p99": "", "close": ""}
        if RGATE in capped and peer in capped:
            lines.append(f"* rgate/{peer} requests/s under the quota: "
                         f"{round_ratio(capped, rps, peer)}{t['rps']}; uncapped "
                         f"{round_ratio(keep, rps, peer)}")
        else:
            lines.append(f"* rgate/{peer} requests/s: {round_ratio(keep, rps, peer)}")
        lines.append(f"* rgate/{peer} proxy CPU per request: "
                     f"{round_ratio(keep, cpu_per_req, peer)} (target < 1); "
                     f"user time only {round_ratio(keep, user_per_req, peer)}; "
                     f"kernel time only {round_ratio(keep, sys_per_req, peer)}")
        if peer in fixed:
            lines.append(f"* rgate/{peer} p99 at the fixed rate: "
                         f"{round_ratio(fixed, p99, peer)}{t['p99']}")
        if RGATE in capped_close and peer in capped_close:
            lines.append(f"* rgate/{peer} new-connection requests/s under the quota: "
                         f"{round_ratio(capped_close, rps, peer)}{t['close']}; uncapped "
                         f"{ratio(close[RGATE]['rps'], close[peer]['rps']) if peer in close else '—'}")
        elif peer in close:
            lines.append(f"* rgate/{peer} new-connection requests/s: "
                         f"{ratio(close[RGATE]['rps'], close[peer]['rps'])}")
    uring_floor = keep.get("floor (io_uring)")
    if rg and uring_floor:
        lines.append(f"* rgate / floor (io_uring), CPU per request: "
                     f"{ratio(cpu_per_req(rg), cpu_per_req(uring_floor))} "
                     f"(target ≤ {FLOOR_TARGET}); user time per request "
                     f"{user_per_req(rg):.1f} µs (target ≤ {USER_TARGET_US})")
    if RGATE in idle:
        line = f"* rgate KiB per idle connection: {idle[RGATE]['kib_per_connection']:.2f}"
        if "nginx" in idle:
            line += (f", nginx {idle['nginx']['kib_per_connection']:.2f} (target ≤ nginx); "
                     f"RSS after they close {idle[RGATE]['rss_after_close_kib'] / 1024:.1f} MiB "
                     f"(before {idle[RGATE]['rss_before_kib'] / 1024:.1f}), nginx "
                     f"{idle['nginx']['rss_after_close_kib'] / 1024:.1f} MiB (target ≤ nginx)")
        lines.append(line)
    if RGATE in body and "rss_growth_kib" in body[RGATE]:
        size = report["body_bytes"]
        lines.append(f"* rgate RSS growth during a {size / 2**20:.0f} MiB body: "
                     f"{body[RGATE]['rss_growth_kib'] / 1024:.1f} MiB (target < 16)")
    lines += ["", "*other load*: the share of the machine's CPU time that processes outside the "
              "bench used during the run; above a few per cent, the numbers beside it are noisy."]
    return lines


def render_cores(report: dict) -> list[str]:
    n = report["cores"]["n"]
    at1, atn = report["cores"]["at"]["1"], report["cores"]["at"][str(n)]
    lines = [
        f"### Scaling to {n} cores (rgate --cores {n}, nginx {n} workers, HAProxy and Pingora "
        f"{n} threads; closed-loop keep-alive, {report['connections']} connections, "
        f"{rounds_of(report)}, medians)", "",
        "| | requests/s at 1 | requests/s at " + str(n) + f" | scaling | proxy CPU µs/req at 1 "
        f"| at {n} | bound by at {n} (CPU used) | other load at {n} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name in in_order(atn):
        one, many = at1.get(name), atn[name]
        scaling = "—" if name == DIRECT or not one else f"{many['rps'] / (n * one['rps']):.2f}"
        lines.append(
            f"| {name} | {fmt(one and one['rps'])} | {fmt(many['rps'])} | {scaling} "
            f"| {fmt(one and cpu_per_req(one), 1)} | {fmt(cpu_per_req(many), 1)} "
            f"| {bound_by(many, n)} | {many['other_cpu_share']:.0%} |")
    lines += ["", f"*scaling*: requests/s at {n} ÷ ({n} × requests/s at 1); 1.00 is linear. "
              f"Where the bound at {n} is the client side, the load generator ran out first and "
              "the scaling says only that much."]
    if RGATE in atn:
        for peer in in_order(atn, PEERS):
            lines.append(f"* rgate/{peer} requests/s at {n}: {round_ratio(atn, rps, peer)}")
    return lines
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
    if RGATE in abuse:
        r = abuse[RGATE]
        growth = (r["rss_after_kib"] - r["rss_before_kib"]) / max(1, r["rss_before_kib"])
        lines.append("")
        lines.append(f"* rgate p99 under attack / alone: "
                     f"{ratio(p99(r['under_attack']), p99(r['alone']))} (target ≤ 2)")
        for peer in in_order(abuse, PEERS):
            target = " (target ≤ 1)" if peer == "nginx" else ""
            lines.append(f"* rgate/{peer} p99 under attack: "
                         f"{ratio(p99(r['under_attack']), p99(abuse[peer]['under_attack']))}"
                         + target)
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
    # HAProxy's failure handling here: see HAPROXY_FAILOVER.
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




def render(report: dict) -> str:
    lines = render_header(report)
    if "cores" in report:
        lines += render_cores(report)
    else:
        lines += render_keep_alive(report)
        lines += render_fixed(report)
        lines += render_floors(report)
        lines += render_quota(report)
        lines += render_new_connection(report)
        lines += render_memory(report)
        lines += render_ratios(report)
        if report.get("faults"):
            lines += render_faults(report["faults"])
        if "access_log" in report:
            lines += render_access_log(report["access_log"])
        if report.get("abuse"):
            lines += render_abuse(report["abuse"])
    lines += ["", "### Micro-benchmarks (benches/hot_path.rs)", "", report["micro"].strip(), ""]
    m = report["machine"]
    lines.append(f"Load average at the start {m['load_average'][0]:.2f}, at the end "
                 f"{report['load_average_end'][0]:.2f} (the bench itself keeps both CPUs busy).")
    return "\n".join(lines)


# ----- main -----------------------------------------------------------------------------


def build() -> dict[str, str]:
    log(f"building (release, into {TARGET})")
    run_bounded(["cargo", "build", "--release", "--bins"], BUILD_LIMIT_S, cwd=ROOT).check_returncode()
    r = run_bounded(["cargo", "build", "--release", "--bench", "hot_path", "--bench", "benchtool",
                     "--message-format=json"], BUILD_LIMIT_S, cwd=ROOT,
                    stdout=subprocess.PIPE, text=True)
    r.check_returncode()
    exes = {}
    for line in r.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            exes[msg["target"]["name"]] = msg["executable"]
    return exes


def built_earlier() -> dict[str, str]:
    """--no-build: the newest bench executables already in the target dir."""
    exes = {}
    for name in ("hot_path", "benchtool"):
        found = sorted((TARGET / "release/deps").glob(f"{name}-*"), key=os.path.getmtime)
        exes[name] = str([f for f in found if os.access(f, os.X_OK) and f.suffix == ""][-1])
    return exes


def raise_open_files() -> int:
    """Raises this process's open-file limit (which every contender inherits) to
    WANTED_OPEN_FILES where allowed, else to its hard limit; returns the limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in (max(hard, WANTED_OPEN_FILES), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return limit
        except (ValueError, OSError):
            continue
    return hard


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5, help="length of each load run")
    ap.add_argument("--rounds", type=int, default=3,
                    help="keep-alive, fixed-rate and capped runs per contender, interleaved; "
                         "the report gives medians")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--idle", type=int, default=10_000, help="idle connections to hold")
    ap.add_argument("--body-bytes", type=int, default=1 << 30)
    ap.add_argument("--rate", type=float,
                    help="fixed rate (default: 30%% of the slowest proxy's closed-loop rate)")
    ap.add_argument("--cpu-quota", type=int, default=DEFAULT_CPU_QUOTA, metavar="PERCENT",
                    help="the capped run: each proxy held to PERCENT of one CPU by a cgroup "
                         f"(default {DEFAULT_CPU_QUOTA}; 0 skips it)")
    ap.add_argument("--cores", type=int, default=1,
                    help="N > 1: only the scaling run, every proxy at 1 and at N cores "
                         "(needs N + 1 CPUs)")
    ap.add_argument("--no-wrk", action="store_true", help="use benchtool even if wrk is installed")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-pingora", action="store_true", help="neither build nor run Pingora")
    ap.add_argument("--no-faults", action="store_true", help="skip the failing-instance runs")
    ap.add_argument("--no-abuse", action="store_true", help="skip the slow-client runs")
    args = ap.parse_args()
    if args.cores < 1:
        ap.error("--cores must be at least 1")
    if not 0 <= args.cpu_quota <= 100:
        ap.error("--cpu-quota is a percentage of one CPU: 0 (off) to 100")
    return args


def main() -> int:
    global PROXY_CPUS, CLIENT_CPUS
    args = parse_args()
    try:
        PROXY_CPUS, CLIENT_CPUS = placement(args.cores, sorted(os.sched_getaffinity(0)))
    except NotAvailable as e:
        print(f"make bench --cores {args.cores}: cannot place the processes: {e}.")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    hard = raise_open_files()
    notes = []
    if find_program("haproxy") and haproxy_maxconn() < args.idle:
        notes.append(f"HAProxy accepts at most {haproxy_maxconn():,} connections here (its "
                     f"maxconn: it counts two descriptors per connection, and the open-file "
                     f"limit is {hard:,}), so it holds fewer idle connections than the others.")
    if hard < args.idle + 1000:
        log(f"open-file limit {hard}: holding {hard - 1000} idle connections, not {args.idle}")
        args.idle = max(100, hard - 1000)

    exes = built_earlier() if args.no_build else build()
    missing: dict[str, str] = {}
    pingora, pingora_seconds = None, None
    try:
        pingora, pingora_seconds = build_pingora(args.no_pingora, args.no_build)
    except NotAvailable as e:
        missing["pingora"] = str(e)
        log(f"Pingora: {e}")
    progs = Programs(exes["benchtool"], pingora)

    def overtime(*_):
        raise TimeoutError(f"bench exceeded {WHOLE_RUN_LIMIT_S} s")

    signal.signal(signal.SIGALRM, overtime)
    signal.alarm(WHOLE_RUN_LIMIT_S)
    subprocess.run([progs.tool, "self-check"], check=True, timeout=60, capture_output=True)
    log("micro-benchmarks")
    micro = subprocess.run(pinned(proxy_cpus(1), [exes["hot_path"]]), check=True, timeout=120,
                           capture_output=True, text=True).stdout

    report: dict = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(), "connections": args.connections, "seconds": args.seconds,
        "rounds": args.rounds, "proxy_cpus": PROXY_CPUS, "client_cpus": CLIENT_CPUS,
        "close_seconds": min(args.seconds, 5.0), "micro": micro, "body_bytes": args.body_bytes,
        "keep_alive": {}, "fixed_rate": {}, "new_connection": {}, "peak_rss_kib": {},
        "idle": {}, "large_body": {}, "missing": missing, "notes": notes,
        "pingora_build_seconds": pingora_seconds,
    }
    try:
        load = Load(progs.tool, args.connections, args.seconds, not args.no_wrk)
        if args.cores > 1:
            cores_run(args, progs, load, report)
        else:
            full_run(args, progs, load, report)
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
