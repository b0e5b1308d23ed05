#!/usr/bin/env python3
"""Data Center mode's cost (issue 18): REST and `git ls-remote` latency and server CPU per request
on SQLite against PostgreSQL, and through one node against three behind the gateway, in one run.

    bench/cluster [SECS]      # needs target/release/trove (cargo build --release -p trove),
                              # Debian's postgresql, wrk and git; root runs PostgreSQL as `postgres`

Everything listens on 127.0.0.1 ports the kernel picked; PostgreSQL is a cluster of its own in
bench/.work/cluster (initdb, pg_ctl), stopped at the end. Prints a Markdown table and writes
bench/.work/cluster.json."""
import glob, json, os, re, shutil, signal, socket, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench/.work/cluster"
TROVE = str(ROOT / "target/release/trove")
SECS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
PASSWORD = "bench-admin-password-1"
procs = []

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_port(port, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")

def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)

def pg_tool(tool, *args):
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not bins:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    cmd = [f"{bins[-1]}/{tool}", *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    r = run(cmd)
    if r.returncode:
        raise SystemExit(f"{tool}: {r.stderr}")
    return r

def cpu_snapshot(pids):
    out = {}
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            out[pid] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return out

def cpu_between(a, b):
    """CPU seconds spent between two snapshots, counting processes started in between whole."""
    return sum(t - a.get(pid, 0.0) for pid, t in b.items())

def pg_pids(datadir):
    """The postmaster of our cluster and its children (never another PostgreSQL on the machine)."""
    try:
        master = int((Path(datadir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    out = [master]
    for d in glob.glob("/proc/[0-9]*"):
        try:
            if int(open(f"{d}/stat").read().rsplit(")", 1)[1].split()[1]) == master:
                out.append(int(d.split("/")[-1]))
        except (OSError, ValueError):
            pass
    return out

def start(args, port, what, log):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"), stdin=subprocess.DEVNULL)
    procs.append(p); wait_port(port, what); return p

def node_toml(n, port, db_url, shared):
    cfg = WORK / f"node{n}.toml"
    text = f'listen = "127.0.0.1:{port}"\ndata_dir = "{WORK}/data-{n}"\ntrusted_proxies = ["127.0.0.1"]\n[git]\nmaintenance_after_push = false\n'
    if db_url:
        text += f'[database]\nurl = "{db_url}"\npool_size = 16\n[storage]\nrepositories = "{shared}"\n'
    cfg.write_text(text); return cfg

def admin(cfg, *args, stdin=None):
    r = subprocess.run([TROVE, "admin", "--config", str(cfg), *args], input=stdin, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"trove admin {args}: {r.stderr}")
    return r.stdout

def wrk(url, token):
    r = run(["wrk", "-t1", "-c8", f"-d{SECS}s", "--latency", "-H", f"Authorization: Bearer {token}", url])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", r.stdout).group(1))
    def ms(p):
        v, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", r.stdout).groups()
        return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    n = int(re.search(r"(\d+) requests in", r.stdout).group(1))
    return rps, ms(50), ms(99), n

def ls_remote(url, env):
    times = []; end = time.time() + SECS
    while time.time() < end:
        t = time.time(); r = run(["git", "ls-remote", url], env=env); times.append((time.time() - t) * 1000)
        if r.returncode:
            raise SystemExit(f"ls-remote: {r.stderr}")
    return len(times) / SECS, statistics.median(times), sorted(times)[int(len(times) * 0.99) - 1], len(times)

def scenario(name, cfgs, ports, entry_port, pgdata):
    # Repository and token through the first node's configuration.
    token = admin(cfgs[0], "token", "add", "admin", "--scope", "admin").strip().split()[-1]
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", HOME=str(WORK), GIT_CONFIG_NOSYSTEM="1")
    url = f"http://admin:{token}@127.0.0.1:{entry_port}/scm/tp/test.git"
    server_pids = [p.pid for p in procs]
    snap = lambda: (cpu_snapshot(server_pids), cpu_snapshot(pg_pids(pgdata) if pgdata else []))
    s0 = snap()
    rps, p50, p99, n = wrk(f"http://127.0.0.1:{entry_port}/rest/api/1.0/projects/TP/repos/test", token)
    s1 = snap()
    lrate, l50, l99, ln = ls_remote(url, env)
    s2 = snap()
    c1, p1 = cpu_between(s0[0], s1[0]), cpu_between(s0[1], s1[1])
    c2, p2 = cpu_between(s1[0], s2[0]), cpu_between(s1[1], s2[1])
    return {
        "scenario": name, "rest_rps": rps, "rest_p50_ms": p50, "rest_p99_ms": p99,
        "rest_cpu_us_per_req": c1 * 1e6 / n, "rest_db_cpu_us_per_req": p1 * 1e6 / n,
        "ls_remote_per_s": lrate, "ls_remote_p50_ms": l50, "ls_remote_p99_ms": l99,
        "ls_remote_cpu_us": c2 * 1e6 / ln, "ls_remote_db_cpu_us": p2 * 1e6 / ln,
    }

def setup_repo(cfg, entry_port):
    admin(cfg, "project", "add", "TP")
    admin(cfg, "repo", "add", "TP/test")
    token = admin(cfg, "token", "add", "admin", "--scope", "admin").strip().split()[-1]
    src = WORK / "src"
    if not src.exists():
        run(["git", "init", "-q", "-b", "main", str(src)])
        for i in range(20):
            (src / f"f{i}").write_text(f"{i}\n" * 100)
            run(["git", "-C", str(src), "add", "."]); run(["git", "-C", str(src), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", f"c{i}"])
        for i in range(50):
            run(["git", "-C", str(src), "branch", f"branch-{i}"])
    r = run(["git", "-C", str(src), "push", "-q", f"http://admin:{token}@127.0.0.1:{entry_port}/scm/tp/test.git", "--all"], env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
    if r.returncode:
        raise SystemExit(f"push: {r.stderr}")

def stop_all():
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    procs.clear()

def main():
    shutil.rmtree(WORK, ignore_errors=True); WORK.mkdir(parents=True)
    results = []
    # 1. One node on SQLite.
    port = free_port(); cfg = node_toml(1, port, None, None)
    subprocess.run([TROVE, "admin", "--data", f"{WORK}/data-1", "init"], capture_output=True)
    admin(cfg, "user", "add", "admin", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    start([TROVE, "server", "--config", str(cfg)], port, "trove server", WORK / "sqlite.log")
    setup_repo(cfg, port)
    results.append(scenario("1 node, SQLite", [cfg], [port], port, None))
    stop_all()
    # PostgreSQL of our own.
    pgdir = WORK / "pg"; pgdir.mkdir(); pgdata = pgdir / "data"
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(pgdir)], check=True)
    pg_tool("initdb", "-D", str(pgdata), "-U", "trove", "--auth=trust", "-E", "UTF8", "--no-sync")
    pgport = free_port()
    pg_tool("pg_ctl", "-D", str(pgdata), "-l", str(pgdir / "log"), "-w", "-o", f"-p {pgport} -k {pgdir} -c listen_addresses=127.0.0.1 -c max_connections=200", "start")
    try:
        for db in ("one", "three"):
            run(["psql", "-h", "127.0.0.1", "-p", str(pgport), "-U", "trove", "-d", "postgres", "-c", f"CREATE DATABASE {db}"])
        # 2. One node on PostgreSQL.
        url = f"postgres://trove@127.0.0.1:{pgport}/one"
        shared = WORK / "shared-one"
        port = free_port(); cfg = node_toml(2, port, url, shared)
        admin(cfg, "user", "add", "admin", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
        start([TROVE, "server", "--config", str(cfg)], port, "trove server", WORK / "pg1.log")
        setup_repo(cfg, port)
        results.append(scenario("1 node, PostgreSQL", [cfg], [port], port, pgdata))
        stop_all()
        # 3. Three nodes on PostgreSQL and shared storage, behind the gateway.
        url = f"postgres://trove@127.0.0.1:{pgport}/three"
        shared = WORK / "shared-three"
        ports = [free_port() for _ in range(3)]
        cfgs = [node_toml(10 + i, ports[i], url, shared) for i in range(3)]
        admin(cfgs[0], "user", "add", "admin", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
        for i in range(3):
            start([TROVE, "server", "--config", str(cfgs[i])], ports[i], "trove server", WORK / f"pg3-{i}.log")
        gw = free_port()
        (WORK / "gateway.toml").write_text(
            f'[[listen]]\naddr = "127.0.0.1:{gw}"\n[[server]]\nlisten = ["127.0.0.1:{gw}"]\n[[server.route]]\npath = "/"\n'
            f'upstreams = [{", ".join(f"{chr(34)}http://127.0.0.1:{p}{chr(34)}" for p in ports)}]\nbalance = "bybusyness"\n'
            '[server.route.health]\npath = "/status"\ninterval = 2\n[log]\naccess = "off"\n')
        start([TROVE, "gateway", "--config", str(WORK / "gateway.toml")], gw, "trove gateway", WORK / "gateway.log")
        setup_repo(cfgs[0], gw)
        results.append(scenario("3 nodes, PostgreSQL, behind the gateway", cfgs, ports, gw, pgdata))
        stop_all()
    finally:
        stop_all()
        pg_tool("pg_ctl", "-D", str(pgdata), "-m", "fast", "-w", "stop")
    (ROOT / "bench/.work/cluster.json").write_text(json.dumps(results, indent=1))
    print("| set-up | REST req/s | REST p50 / p99 ms | server CPU µs per REST request (+ PostgreSQL) | ls-remote per s | ls-remote p50 / p99 ms | server CPU µs per ls-remote (+ PostgreSQL) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['scenario']} | {r['rest_rps']:.0f} | {r['rest_p50_ms']:.2f} / {r['rest_p99_ms']:.2f} | {r['rest_cpu_us_per_req']:.0f} (+{r['rest_db_cpu_us_per_req']:.0f}) "
              f"| {r['ls_remote_per_s']:.1f} | {r['ls_remote_p50_ms']:.1f} / {r['ls_remote_p99_ms']:.1f} | {r['ls_remote_cpu_us']:.0f} (+{r['ls_remote_db_cpu_us']:.0f}) |")

if __name__ == "__main__":
    main()
