"""Trove's benchmark harness (issue 8); run it through `bench/run`, which installs and builds.

Proxies: one origin (crates/gateway/examples/bench_origin.rs) on 127.0.0.1, and in front of it,
each on its own ports: trove gateway, nginx, HAProxy, Apache (the seed's ProxyPass). "direct"
is the origin itself (the limit). Every round runs every figure for every contender, the
contenders' order rotating between rounds; medians across rounds are reported.

Git: `trove up` over HTTPS against git http-backend behind Apache over HTTPS (the seed's
set-up), same certificate, same generated repository.
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(".")
WORK = Path(".")
PROCS = []  # every server we started, stopped at exit


def log(*a):
    print("[bench]", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start listening on 127.0.0.1:{port}; see {WORK}")


def start(name, argv, port=None, env=None, stdout=None):
    out = open(WORK / f"{name}.out", "ab") if stdout is None else stdout
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    PROCS.append(p)
    if port:
        wait_port(port, name)
    return p


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in PROCS:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    PROCS.clear()


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def tree_pids(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for t in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (t / "children").read_text().split()]
            except OSError:
                pass
    return out


def cpu_seconds(pid):
    """User + system CPU time of a process tree so far, in seconds."""
    total = 0
    for p in tree_pids(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def memory_kib(pid):
    """Resident memory of a process tree: PSS summed (RSS for a single process), KiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---------------------------------------------------------------- the contenders' configs


def cert_files():
    d = WORK / "cert"
    if not (d / "server.crt").exists():
        r = run([str(ROOT / "target/release/trove"), "cert", "self-signed", "--host", "localhost", "--ip", "127.0.0.1", "--out", str(d)])
        if r.returncode:
            raise SystemExit(f"trove cert self-signed failed: {r.stderr}")
    crt, key = d / "server.crt", d / "server.key"
    pem = d / "haproxy.pem"
    pem.write_bytes(crt.read_bytes() + key.read_bytes())
    return crt, key, pem


def trove_gateway(origin, p, ps, crt, key, static=None, files=None):
    cfg = WORK / "trove-gateway.toml"
    # First match wins: the sendfile origin's route goes before the catch-all.
    static_route = f"""
[[server.route]]
path = "/sendfile/"
upstream = "http://127.0.0.1:{static}/"
connect_timeout = 5
timeout = 300
""" if static else ""
    for prefix, port in (files or {}).items():
        static_route += f"""
[[server.route]]
path = "/{prefix}/"
upstream = "http://127.0.0.1:{port}/{prefix}/"
connect_timeout = 5
timeout = 300
"""
    cfg.write_text(f"""
[gateway]
keep_alive_timeout = 60   # as every contender here, so 10,000 idle connections stay
timeout = 300

[log]
access = "{WORK}/trove-access.log"
level = "error"

[[listen]]
addr = "127.0.0.1:{p}"

[[listen]]
addr = "127.0.0.1:{ps}"
tls = true

[[server]]
names = ["localhost"]

[server.tls]
cert = "{crt}"
key = "{key}"
{static_route}
[[server.route]]
path = "/"
upstream = "http://127.0.0.1:{origin}/"
connect_timeout = 5
timeout = 300
""")
    return start("trove", [str(ROOT / "target/release/trove"), "gateway", "--config", str(cfg)], p)


def nginx(origin, p, ps, crt, key, files=None):
    files = files or {}
    # The file origins, each an upstream with keep-alive and a location passing the path as is.
    ups = "".join(f"  upstream {prefix} {{ server 127.0.0.1:{port}; keepalive 64; }}\n" for prefix, port in files.items())
    locs = "".join(f"""    location /{prefix}/ {{
      proxy_pass http://{prefix};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 5s;
      proxy_read_timeout 300s;
    }}
""" for prefix in files)
    d = WORK / "nginx"
    d.mkdir(exist_ok=True)
    cfg = d / "nginx.conf"
    cfg.write_text(f"""
user www-data;
worker_processes auto;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log error;
daemon off;
events {{ worker_connections 19000; }}
http {{
  access_log {d}/access.log;
  keepalive_timeout 60s;
  # git pushes: no body size limit, stream the request body instead of spooling it
  client_max_body_size 0;
  proxy_request_buffering off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream origin {{
    server 127.0.0.1:{origin};
    keepalive 64;
  }}
{ups}  server {{
    listen 127.0.0.1:{p};
    listen 127.0.0.1:{ps} ssl http2;
    server_name localhost;
    # nginx 1.22's default is TLS 1.2 only; every other contender speaks TLS 1.3.
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate {crt};
    ssl_certificate_key {key};
{locs}    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_connect_timeout 5s;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
    }}
  }}
}}
""")
    shutil.chown(d, "www-data", "www-data")
    return start("nginx", ["nginx", "-c", str(cfg)], p)


def static_nginx(p, size):
    """A second origin for the `sendfile` figure (issue 16): nginx serving a file of `size` bytes
    with `sendfile on`, as Apache, Tomcat and most static origins send. One process, in the
    foreground, under bench/.work (the system's nginx is not touched)."""
    d = WORK / "static"
    (d / "htdocs").mkdir(parents=True, exist_ok=True)
    f = d / "htdocs/big.bin"
    if not f.exists() or f.stat().st_size != size:
        # Real bytes (not a sparse file), so the pages sent are the page cache's, as in use.
        block = os.urandom(1 << 20)
        with open(f, "wb") as out:
            for _ in range(size >> 20):
                out.write(block)
            out.write(block[: size & ((1 << 20) - 1)])
    (d / "htdocs/nfiles").mkdir(exist_ok=True)
    (d / "htdocs/nfiles/small.bin").write_bytes(SMALL_FILE)
    cfg = d / "nginx.conf"
    cfg.write_text(f"""
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 60s;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{p};
    root {d}/htdocs;
  }}
}}
""")
    return start("static-nginx", ["nginx", "-p", str(d), "-c", str(cfg), "-e", str(d / "error.log")], p)


SMALL_FILE = bytes(range(256)) * 4  # 1 KiB, as the hyper origin's /small


def static_apache(p):
    """An origin no one here wrote (issue 26): Apache 2.4 (event MPM, Debian's defaults:
    `MaxKeepAliveRequests 100`, `EnableSendfile On` set as file servers do) serving the 1 KiB file
    at /afiles/small.bin."""
    d = apache_dir("static-apache")
    (d / "htdocs/afiles").mkdir(exist_ok=True)
    (d / "htdocs/afiles/small.bin").write_bytes(SMALL_FILE)
    conf = apache_prelude(d, []) + f"""
Listen 127.0.0.1:{p}
EnableSendfile On
<Directory {d}/htdocs>
  Require all granted
</Directory>
"""
    (d / "httpd.conf").write_text(conf)
    return start("static-apache", ["/usr/sbin/apache2", "-f", str(d / "httpd.conf"), "-DFOREGROUND"], p)


def haproxy(origin, p, ps, pem, files=None):
    files = files or {}
    uses = "".join(f"  use_backend {prefix} if {{ path_beg /{prefix}/ }}\n" for prefix in files)
    backs = "".join(f"backend {prefix}\n  server f1 127.0.0.1:{port}\n" for prefix, port in files.items())
    cfg = WORK / "haproxy.cfg"
    cfg.write_text(f"""
global
  # the hard descriptor limit here is 20,000: enough for 10,000 idle downstream connections
  ulimit-n 20000
  maxconn 9990   # 2 descriptors per connection + 18 must fit in 20,000
  log stdout format raw local0
defaults
  mode http
  log global
  option httplog
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 60s
frontend web
  bind 127.0.0.1:{p}
  bind 127.0.0.1:{ps} ssl crt {pem} alpn h2,http/1.1
{uses}  default_backend origin
backend origin
  server o1 127.0.0.1:{origin}
{backs}""")
    return start("haproxy", ["haproxy", "-db", "-f", str(cfg)], p, stdout=open(WORK / "haproxy-access.log", "ab"))


def apache_prelude(d, modules):
    mods = ["mpm_event", "authz_core", "authz_host", "ssl", "socache_shmcb", "http2"] + modules
    loads = "".join(f"LoadModule {m}_module modules/mod_{m}.so\n" for m in mods)
    return f"""ServerRoot "/usr/lib/apache2"
DefaultRuntimeDir {d}
PidFile {d}/httpd.pid
Mutex file:{d} default
{loads}User www-data
Group www-data
DocumentRoot {d}/htdocs
ErrorLog {d}/error.log
LogLevel warn
ServerName localhost
LogFormat "%h %l %u %t \\"%r\\" %>s %b \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\"" combined
CustomLog {d}/access.log combined
KeepAliveTimeout 60
SSLSessionCache shmcb:{d}/ssl_scache(512000)
Protocols h2 http/1.1
"""


def apache_dir(name):
    d = WORK / name
    (d / "htdocs").mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    return d


def apache(origin, p, ps, crt, key, files=None):
    d = apache_dir("apache")
    # More specific ProxyPass lines first: Apache takes the first that matches.
    passes = "".join(f"ProxyPass /{prefix}/ http://127.0.0.1:{port}/{prefix}/ connectiontimeout=5 timeout=300\nProxyPassReverse /{prefix}/ http://127.0.0.1:{port}/{prefix}/\n" for prefix, port in (files or {}).items())
    conf = apache_prelude(d, ["proxy", "proxy_http"]) + f"""
Listen 127.0.0.1:{p}
Listen 127.0.0.1:{ps}
ProxyRequests Off
{passes}ProxyPass / http://127.0.0.1:{origin}/ connectiontimeout=5 timeout=300
ProxyPassReverse / http://127.0.0.1:{origin}/
<Proxy *>
  Require all granted
</Proxy>
<VirtualHost 127.0.0.1:{ps}>
  SSLEngine On
  SSLCertificateFile {crt}
  SSLCertificateKeyFile {key}
</VirtualHost>
"""
    (d / "httpd.conf").write_text(conf)
    return start("apache", ["/usr/sbin/apache2", "-f", str(d / "httpd.conf"), "-DFOREGROUND"], p)


# ---------------------------------------------------------------- the figures


def wrk(url, seconds, conns=64, headers=()):
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for h in headers:
        argv += ["-H", h]
    r = run(argv + [url])
    text = r.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)

    def lat(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            return None
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    if not rps:
        log(f"wrk failed on {url}: {text[-400:]} {r.stderr[-400:]}")
        return None
    return {"rps": float(rps.group(1)), "p50_ms": lat(50), "p99_ms": lat(99), "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": sock.group(1) if sock else ""}


def h2load(url, seconds, conns=64, streams=10):
    r = run(["h2load", "-c", str(conns), "-m", str(streams), "-t", "2", "-D", str(seconds), "--warm-up-time=1", url])
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", r.stdout)
    ok = re.search(r"(\d+) succeeded, (\d+) failed", r.stdout)
    proto = re.search(r"Application protocol: (\S+)", r.stdout)
    if not m:
        log(f"h2load failed on {url}: {r.stdout[-400:]} {r.stderr[-400:]}")
        return None
    return {"rps": float(m.group(1)), "failed": int(ok.group(2)) if ok else None, "proto": proto.group(1) if proto else None}


def curl_down(url, size):
    r = run(["curl", "-sS", "-k", "-o", "/dev/null", "-w", "%{speed_download} %{size_download} %{http_code}", f"{url}/big?bytes={size}"])
    speed, got, code = r.stdout.split()
    if int(got) != size or code != "200":
        log(f"download from {url}: got {got} bytes, status {code}")
        return None
    return float(speed) / 2**20


def curl_up(url, path, size):
    r = run(["curl", "-sS", "-k", "-T", str(path), "-H", "Transfer-Encoding: chunked", "-H", "Expect:", "-w", "\n%{speed_upload} %{http_code}", f"{url}/upload"])
    body, _, tail = r.stdout.rpartition("\n")
    speed, code = tail.split()
    if code != "200" or f"received {size} bytes" not in body:
        log(f"upload to {url}: status {code}, {body.strip()[:200]}")
        return None
    return float(speed) / 2**20


def curl_file(url, size):
    """MiB/s of one GET of a static file of `size` bytes (None if it came short)."""
    r = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download} %{size_download} %{http_code}", url])
    speed, got, code = r.stdout.split()
    if int(got) != size or code != "200":
        log(f"{url}: got {got} bytes, status {code}")
        return None
    return float(speed) / 2**20


def median_of(n, measure):
    """The median of `n` measurements (None if any failed)."""
    got = [measure() for _ in range(n)]
    return None if any(v is None for v in got) else statistics.median(got)


def idle_memory(pid, port, n):
    before = memory_kib(pid)
    p = subprocess.Popen([sys.executable, str(ROOT / "bench/idle.py"), str(port), str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    held = int(line[1]) if len(line) == 2 else 0
    time.sleep(0.5)
    during = memory_kib(pid)
    p.stdin.close()
    p.wait(timeout=60)
    time.sleep(1)
    return {"held": held, "before_mib": before / 1024, "mib": during / 1024}


def proxy_bench(args, res):
    crt, key, pem = cert_files()
    origin_port = free_port()
    origin = start("origin", [str(ROOT / "target/release/examples/bench_origin"), f"127.0.0.1:{origin_port}", "1"], origin_port)
    # `sendfile` compares trove with the file's origin itself; alone, it needs no other proxy.
    proxies = ["trove"] if args.figures == {"sendfile"} else ["trove", "nginx", "haproxy", "apache"]
    ports = {name: (free_port(), free_port()) for name in proxies}
    static_port = free_port() if args.figures & {"sendfile", "files"} else None
    if static_port:
        static_nginx(static_port, args.big)
    # Issue 26: origins no one here wrote, serving a 1 KiB file: nginx (sendfile on, one
    # process) and Apache. Every contender routes /nfiles/ and /afiles/ to them.
    files = {}
    if "files" in args.figures:
        files = {"nfiles": static_port, "afiles": free_port()}
        static_apache(files["afiles"])
    starters = {
        "trove": lambda: trove_gateway(origin_port, *ports["trove"], crt, key, static=static_port, files=files),
        "nginx": lambda: nginx(origin_port, *ports["nginx"], crt, key, files=files),
        "haproxy": lambda: haproxy(origin_port, *ports["haproxy"], pem, files=files),
        "apache": lambda: apache(origin_port, *ports["apache"], crt, key, files=files),
    }
    procs = {"direct": origin, **{name: starters[name]() for name in proxies}}
    ports["direct"] = (origin_port, None)
    names = ["direct", *proxies]
    upload = WORK / "upload.bin"
    if not upload.exists() or upload.stat().st_size != args.big:
        with open(upload, "wb") as f:
            f.truncate(args.big)
    figures = res.setdefault("proxy", {})

    def add(fig, name, v):
        figures.setdefault(fig, {}).setdefault(name, []).append(v)

    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[: rnd % len(names)]
        log(f"round {rnd + 1}/{args.rounds}: {' '.join(order)}")
        for name in order:
            p, ps = ports[name]
            http = f"http://127.0.0.1:{p}"
            https = f"https://127.0.0.1:{ps}" if ps else None
            if "small" in args.figures:
                c0 = cpu_seconds(procs[name].pid)
                small = wrk(f"{http}/small", args.secs)
                if small:
                    # CPU per request steadies the comparison on a shared machine: throughput
                    # moves with the neighbours' load, the work a request costs much less.
                    small["cpu_us_per_req"] = (cpu_seconds(procs[name].pid) - c0) * 1e6 / (small["rps"] * args.secs)
                add("small", name, small)
            # A 256 MiB transfer lasts 50-400 ms: one sample per round would measure the
            # neighbours as much as the proxy, so each round takes the median of several.
            if "download" in args.figures:
                add("download", name, median_of(args.transfers, lambda: curl_down(http, args.big)))
            if "upload" in args.figures:
                add("upload", name, median_of(args.transfers, lambda: curl_up(http, upload, args.big)))
            # Issue 16: a file from an origin that sends with sendfile(2), direct and through trove.
            if "sendfile" in args.figures and name in ("direct", "trove"):
                url = f"http://127.0.0.1:{static_port}/big.bin" if name == "direct" else f"{http}/sendfile/big.bin"
                add("sendfile", name, median_of(args.transfers, lambda: curl_file(url, args.big)))
            # Issue 26: 1 KiB files from nginx and from Apache; "direct" is each origin itself.
            for prefix, fig in (("nfiles", "files_nginx"), ("afiles", "files_apache")):
                if prefix in files:
                    url = f"http://127.0.0.1:{files[prefix]}/{prefix}/small.bin" if name == "direct" else f"{http}/{prefix}/small.bin"
                    pid = None if name == "direct" else procs[name].pid
                    c0 = cpu_seconds(pid) if pid else 0
                    got = wrk(url, args.secs)
                    if got and pid:
                        got["cpu_us_per_req"] = (cpu_seconds(pid) - c0) * 1e6 / (got["rps"] * args.secs)
                    add(fig, name, got)
            if https and "https" in args.figures:
                add("https_keepalive", name, wrk(f"{https}/small", args.secs))
                add("https_handshakes", name, wrk(f"{https}/small", args.secs, headers=["Connection: close"]))
                add("h2", name, h2load(f"{https}/small", args.secs))
            if "idle" in args.figures:
                add("idle_memory", name, idle_memory(procs[name].pid, p, args.idle))
            log(f"  {name}: " + ", ".join(f"{k}={_short(v[name][-1])}" for k, v in figures.items() if name in v))
    stop_all()


def _short(v):
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={round(x, 2) if isinstance(x, float) else x}" for k, x in v.items() if k in ("rps", "p99_ms", "mib", "held", "cpu_us_per_req")) + "}"
    return round(v, 1) if isinstance(v, float) else v


# ---------------------------------------------------------------- git


def git_env(ca):
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_SSL_CAINFO", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "GIT_SSL_NO_VERIFY")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_COUNT"] = "2"
    env["GIT_CONFIG_KEY_0"] = "http.sslCAInfo"
    env["GIT_CONFIG_VALUE_0"] = str(ca)
    # Debian's git (libcurl-gnutls) also reads every certificate under /etc/ssl/certs before
    # each handshake, even with sslCAInfo set: 35-50 ms of client CPU per command, the same
    # for both servers, which would make the client, not the server, the thing measured. An
    # empty CA directory keeps verification against our CA only. Both sides get it.
    empty = WORK / "empty-ca-dir"
    empty.mkdir(parents=True, exist_ok=True)
    env["GIT_CONFIG_KEY_1"] = "http.sslCAPath"
    env["GIT_CONFIG_VALUE_1"] = str(empty)
    return env


def git(env, *a, cwd=None, check=True):
    r = subprocess.run(["git", *a], env=env, cwd=cwd, capture_output=True, text=True)
    if check and r.returncode:
        raise SystemExit(f"git {' '.join(a)} failed: {r.stderr[-2000:]}")
    return r


def children_cpu():
    """CPU seconds (user + system) of this process's waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(env, *a, cwd=None):
    t = time.monotonic()
    git(env, *a, cwd=cwd)
    return time.monotonic() - t


def source_repo(commits):
    """The generated repository (cached under bench/.cache by its size)."""
    cache = ROOT / "bench/.cache" / f"repo-{commits}.git"
    if not (cache / "objects/pack").exists() or not any((cache / "objects/pack").glob("*.pack")):
        log(f"generating a repository of {commits} commits (fast-import)")
        shutil.rmtree(cache, ignore_errors=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(cache)], check=True)
        gen = subprocess.Popen([sys.executable, str(ROOT / "bench/gen_repo.py"), str(commits)], stdout=subprocess.PIPE)
        subprocess.run(["git", "-C", str(cache), "fast-import", "--quiet"], stdin=gen.stdout, check=True)
        gen.wait()
        subprocess.run(["git", "-C", str(cache), "repack", "-a", "-d", "-q"], check=True)
    count = run(["git", "-C", str(cache), "count-objects", "-v"]).stdout
    objects = int(re.search(r"in-pack: (\d+)", count).group(1))
    return cache, objects


def trove_up(trove, data, public=True, wrap=()):
    """`trove up` on fresh ports serving HTTPS only, with project TP (public unless told) and an
    admin token; returns (process, HTTPS port, token, adm) where adm(*args) runs `trove admin`.
    `wrap` goes before the command (something that sets the process up, then execs it)."""
    shutil.rmtree(data, ignore_errors=True)
    ps, server_port = free_port(), free_port()
    env_up = dict(os.environ, TROVE_ADMIN_PASSWORD="bench-admin-password-1")
    up = start("trove-up", [*wrap, trove, "up", "--data", str(data), "--https", f"127.0.0.1:{ps}", "--http", "off", "--ssh", "off", "--server", f"127.0.0.1:{server_port}", "--public-url", f"https://127.0.0.1:{ps}"], ps, env=env_up)
    adm = lambda *a: run([trove, "admin", "--data", str(data), *a])
    r = adm("project", "add", "TP", "--name", "Bench", *(["--public"] if public else []))
    if r.returncode:
        raise SystemExit(f"trove admin project add: {r.stderr}")
    # `trove up` answers on its port a moment before it has made the admin account.
    for _ in range(100):
        t = adm("token", "add", "admin", "--scope", "admin")
        if t.returncode == 0 and t.stdout.strip():
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"trove admin token add: {t.stderr}")
    return up, ps, t.stdout.strip().split()[-1], adm


def apache_git(crt, key, wrap=()):
    """Apache + git http-backend over HTTPS, the seed's set-up (mod_cgid, `ScriptAlias /git/`,
    GIT_HTTP_EXPORT_ALL); returns (process, port, the repositories' directory). `wrap` as for
    `trove_up`."""
    d = apache_dir("apache-git")
    root = d / "repos"
    root.mkdir(exist_ok=True)
    pa = free_port()
    backend = Path(run(["git", "--exec-path"]).stdout.strip()) / "git-http-backend"
    conf = apache_prelude(d, ["cgid", "alias", "env"]) + f"""
Listen 127.0.0.1:{pa}
ScriptSock {d}/cgisock
SetEnv GIT_PROJECT_ROOT {root}
SetEnv GIT_HTTP_EXPORT_ALL
ScriptAlias /git/ {backend}/
<Directory "{backend.parent}">
  Require all granted
</Directory>
<VirtualHost 127.0.0.1:{pa}>
  SSLEngine On
  SSLCertificateFile {crt}
  SSLCertificateKeyFile {key}
</VirtualHost>
"""
    (d / "httpd.conf").write_text(conf)
    p = start("apache-git", [*wrap, "/usr/sbin/apache2", "-f", str(d / "httpd.conf"), "-DFOREGROUND"], pa)
    return p, pa, root


def apache_git_repo(root, pa, name):
    """An empty bare repository `name` that Apache's http-backend serves and accepts pushes to."""
    path = root / f"{name}.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "config", "http.receivepack", "true"], check=True)
    subprocess.run(["chown", "-R", "www-data:www-data", str(path)], check=True)
    return path, f"https://127.0.0.1:{pa}/git/{name}.git"


def git_bench(args, res):
    trove = str(ROOT / "target/release/trove")
    src, objects = source_repo(args.commits)
    data = WORK / "trove-data"
    up, ps, token, adm = trove_up(trove, data)
    ca = data / "tls/ca.crt"
    crt, key = data / "tls/server.crt", data / "tls/server.key"

    # Apache + git http-backend, the seed's set-up, same certificate.
    _, pa, root = apache_git(crt, key)

    env = git_env(ca)
    n = [0]

    def new_remote(side):
        n[0] += 1
        name = f"r{n[0]}"
        if side == "trove":
            r = adm("repo", "add", f"TP/{name}")
            if r.returncode:
                raise SystemExit(f"trove admin repo add: {r.stderr}")
            return f"https://admin:{token}@127.0.0.1:{ps}/scm/tp/{name}.git", f"https://127.0.0.1:{ps}/scm/tp/{name}.git"
        _, url = apache_git_repo(root, pa, name)
        return url, url

    sides = ["trove", "apache"]
    figures = res.setdefault("git", {})
    res["git_repo"] = {"commits": args.commits, "objects": objects, "pack_mib": sum(p.stat().st_size for p in (src / "objects/pack").glob("*.pack")) / 2**20}

    def add(fig, side, v):
        figures.setdefault(fig, {}).setdefault(side, []).append(v)

    # The repository each side serves: pushed once, through it (that push is round 0's push).
    remotes = {}
    for side in sides:
        push_url, read_url = new_remote(side)
        add("push", side, timed(env, "-C", str(src), "push", "-q", push_url, "main"))
        remotes[side] = (push_url, read_url)
    scratch = WORK / "clones"
    for rnd in range(args.git_rounds):
        order = sides if rnd % 2 == 0 else sides[::-1]
        log(f"git round {rnd + 1}/{args.git_rounds}: {' '.join(order)}")
        for side in order:
            push_url, url = remotes[side]
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            c = scratch / "c"
            add("clone", side, timed(env, "clone", "-q", "--no-local", url, str(c)))
            add("fetch_noop", side, timed(env, "-C", str(c), "fetch", "-q", "origin"))
            # A small fetch: two new commits pushed from another clone, fetched here.
            w = scratch / "w"
            subprocess.run(["cp", "-a", str(c), str(w)], check=True)
            for i in range(2):
                (w / f"bench-{rnd}-{i}.txt").write_text(f"round {rnd} change {i}\n" * 20)
                git(env, "-C", str(w), "add", "-A")
                git(env, "-C", str(w), "-c", "user.name=Bench", "-c", "user.email=b@example.invalid", "commit", "-q", "-m", f"small {rnd} {i}")
            git(env, "-C", str(w), "push", "-q", push_url, "HEAD:main")
            add("fetch_small", side, timed(env, "-C", str(c), "fetch", "-q", "origin"))
            t = time.monotonic()
            cpu = children_cpu()
            for _ in range(args.lsremote):
                git(env, "ls-remote", url)
            add("ls_remote_per_s", side, args.lsremote / (time.monotonic() - t))
            # The git client's own CPU per command (git and its git-remote-https): the floor
            # under any server's time, since the commands run one after another.
            add("ls_remote_client_ms", side, (children_cpu() - cpu) * 1000 / args.lsremote)
            # The server's capacity rather than one client's latency: 4 clients at once.
            t = time.monotonic()
            clients = [subprocess.Popen(["sh", "-c", f'for i in $(seq {args.lsremote}); do git ls-remote "$0" >/dev/null || exit 1; done', url], env=env) for _ in range(4)]
            if any(c.wait() for c in clients):
                raise SystemExit(f"concurrent ls-remote against {side} failed")
            add("ls_remote_4_per_s", side, 4 * args.lsremote / (time.monotonic() - t))
            if rnd > 0:
                fresh_push, _ = new_remote(side)
                add("push", side, timed(env, "-C", str(src), "push", "-q", fresh_push, "main"))
            log(f"  {side}: " + ", ".join(f"{k}={round(v[side][-1], 3)}" for k, v in figures.items() if side in v))
    shutil.rmtree(scratch, ignore_errors=True)
    stop_all()


# ---------------------------------------------------------------- report


def versions():
    def first(argv, pat=None):
        try:
            r = subprocess.run(argv, capture_output=True, text=True)
            t = (r.stdout + r.stderr).strip().splitlines()
            line = next((l for l in t if pat is None or pat in l), t[0] if t else "?")
            return line.strip()
        except Exception:
            return "?"

    return {
        "trove": first([str(ROOT / "target/release/trove"), "--version"]) + " @ " + first(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "nginx": first(["nginx", "-v"]),
        "haproxy": first(["haproxy", "-v"]),
        "apache": first(["/usr/sbin/apache2", "-v"], "Server version"),
        "git": first(["git", "--version"]),
        "wrk": first(["wrk", "-v"]),
        "h2load": first(["h2load", "--version"]),
        "curl": first(["curl", "--version"]),
        "rustc": first(["rustc", "--version"]),
    }


def machine():
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1), "load_before": os.getloadavg()}


def main():
    global ROOT, WORK
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=".")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["proxy", "git", "pages", "storm"])
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--rounds", type=int)
    # A clone's time moves by ±40% from round to round with the neighbours' load (1.8-4.7 s in
    # one run), and it is short: the git half gets more rounds for its medians.
    ap.add_argument("--git-rounds", type=int)
    ap.add_argument("--figures", help="comma-separated proxy figures to run (small, files, download, upload, sendfile, https, idle); default all")
    args = ap.parse_args()
    args.figures = set(args.figures.split(",")) if args.figures else {"small", "files", "download", "upload", "sendfile", "https", "idle"}
    ROOT = Path(args.root).resolve()
    WORK = ROOT / "bench/.work"
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    os.chmod(WORK, 0o755)
    if args.quick:
        args.rounds, args.secs, args.big, args.idle, args.commits, args.lsremote = args.rounds or 1, 2, 16 * 2**20, 500, 300, 5
    else:
        args.rounds, args.secs, args.big, args.idle, args.commits, args.lsremote = args.rounds or 3, 6, 256 * 2**20, 10000, 3000, 20
    args.git_rounds = args.git_rounds or (args.rounds if args.quick else max(args.rounds, 5))
    args.transfers = 1 if args.quick else 5
    args.page_secs = 6 if args.quick else 60
    res = {"command": "bench/run " + " ".join(sys.argv[3:]), "quick": args.quick, "rounds": args.rounds, "git_rounds": args.git_rounds, "secs": args.secs, "big_bytes": args.big, "idle_conns": args.idle, "machine": machine(), "versions": versions(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    log(f"machine: {res['machine']}")
    try:
        if args.only in (None, "proxy"):
            proxy_bench(args, res)
        if args.only in (None, "git"):
            git_bench(args, res)
        if args.only in (None, "pages"):
            import pages

            stop_all()
            pages.pages_bench(args, res, sys.modules[__name__])
        if args.only in (None, "storm"):
            # The clone storm (issue 26): its own module, its own part of docs/benchmarks.md.
            import clone_storm

            stop_all()
            storm = clone_storm.run_storms(os.environ.get("TROVE") or str(ROOT / "target/release/trove"), args.commits, [5] if args.quick else [20, 50], ["full", "shallow"], WORK / "storm")
            res["storm"] = storm
            if not args.no_docs:
                clone_storm.write_docs(clone_storm.markdown(storm))
    finally:
        stop_all()
    res["machine"]["load_after"] = os.getloadavg()
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    (WORK / "results.json").write_text(json.dumps(res, indent=1))
    log(f"results: {WORK / 'results.json'}")
    import report

    # The storm alone writes only its own part of the page (above); the proxy and git tables stay.
    if args.only != "storm":
        report.write(res, ROOT, docs=not args.no_docs)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        main()
    finally:
        stop_all()
