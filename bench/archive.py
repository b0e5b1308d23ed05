#!/usr/bin/env python3
"""The archive endpoint's memory at size (issue 23): a repository of SIZE_MIB of incompressible
files is downloaded with `…/archive` (tar, zip, and tar at a slow client's pace) from a
`trove server` on SQLite while a thread samples the server's resident memory every 20 ms.
If the archive streams, the server's peak stays within a few MiB of its resident size before
the download, whatever the archive's size; if it buffered, the peak would grow by the archive.

    bench/archive.py [SIZE_MIB]      # default 512; needs git, curl, and a trove binary
    TROVE=target/debug/trove bench/archive.py 1024

The binary is $TROVE, else target/release/trove, else target/debug/trove (memory, not speed,
is measured, so a debug build is good enough). The work directory is bench/.work/archive;
everything listens on a 127.0.0.1 port the kernel picked. Prints a Markdown table and writes
bench/.work/archive.json."""
import json, os, shutil, signal, socket, subprocess, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench/.work/archive"
SIZE_MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 512
FILE_MIB = 8
PASSWORD = "bench-admin-password-1"


def trove_binary():
    for c in [os.environ.get("TROVE"), ROOT / "target/release/trove", ROOT / "target/debug/trove"]:
        if c and Path(c).exists():
            return str(c)
    raise SystemExit("no trove binary: build one (cargo build -p trove) or set TROVE")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_port(port):
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"trove server did not listen on {port}")


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode:
        raise SystemExit(f"{args[:3]}: {r.stderr}")
    return r.stdout


def git(*args, cwd):
    return run(["git", "-C", str(cwd), "-c", "user.name=Bench", "-c", "user.email=b@example.com", "-c", "core.compression=0", *args],
               env=dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1"))


def status_kib(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def download(url, token, pid, rate=None):
    """Downloads `url` with curl while sampling the server's RSS: (peak RSS KiB, bytes, s to first byte, s in all)."""
    peak = [status_kib(pid, "VmRSS")]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], status_kib(pid, "VmRSS"))
            time.sleep(0.02)
    t = threading.Thread(target=sample); t.start()
    args = ["curl", "-sf", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}", "-w", "%{size_download} %{time_starttransfer} %{time_total}", url]
    if rate:
        args[1:1] = ["--limit-rate", rate]
    try:
        out = run(args)
    finally:
        done.set(); t.join()
    size, ttfb, total = out.split()
    return peak[0], int(size), float(ttfb), float(total)


def main():
    trove = trove_binary()
    shutil.rmtree(WORK, ignore_errors=True); WORK.mkdir(parents=True)
    port = free_port()
    cfg = WORK / "trove.toml"
    cfg.write_text(f'listen = "127.0.0.1:{port}"\ndata_dir = "{WORK}/data"\n[git]\nmaintenance_after_push = false\n')
    admin = lambda *a, stdin=None: run([trove, "admin", "--config", str(cfg), *a], input=stdin)
    subprocess.run([trove, "admin", "--data", f"{WORK}/data", "init"], capture_output=True)
    admin("user", "add", "admin", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    admin("project", "add", "TP"); admin("repo", "add", "TP/test")
    token = admin("token", "add", "admin", "--scope", "admin").strip().split()[-1]
    # The repository: SIZE_MIB of random files, pushed straight into the bare repository on disk.
    src = WORK / "src"
    git("init", "-q", "-b", "main", str(src), cwd=WORK)
    for i in range(max(1, SIZE_MIB // FILE_MIB)):
        d = src / f"d{i // 16}"; d.mkdir(exist_ok=True)
        with open(d / f"blob{i}.bin", "wb") as f:
            f.write(os.urandom(FILE_MIB << 20))
    git("add", ".", cwd=src); git("commit", "-qm", "data", cwd=src)
    repo_dir = next((WORK / "data/repositories").rglob("HEAD")).parent
    git("push", "-q", str(repo_dir), "main", cwd=src)
    shutil.rmtree(src)
    server = subprocess.Popen([trove, "server", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                              stderr=open(WORK / "server.log", "w"), stdin=subprocess.DEVNULL)
    rows = {}
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/rest/api/1.0/projects/TP/repos/test/archive"
        # Warm up (first request: connection pool, SQLite pages), then measure.
        run(["curl", "-sf", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}/rest/api/1.0/projects/TP/repos/test"])
        before = status_kib(server.pid, "VmRSS")
        rows["tar"] = download(f"{url}?format=tar", token, server.pid)
        rows["zip"] = download(f"{url}?format=zip", token, server.pid)
        rows["tar, client at 64 MiB/s"] = download(f"{url}?format=tar", token, server.pid, rate="64M")
        hwm = status_kib(server.pid, "VmHWM")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    out = {"size_mib": SIZE_MIB, "binary": trove, "rss_before_kib": before, "vm_hwm_kib": hwm,
           "rows": {k: {"peak_rss_kib": p, "bytes": b, "ttfb_s": f, "total_s": t} for k, (p, b, f, t) in rows.items()}}
    (ROOT / "bench/.work/archive.json").write_text(json.dumps(out, indent=1))
    print(f"Repository: {SIZE_MIB} MiB of incompressible files. Server resident before: {before / 1024:.1f} MiB; "
          f"its high-water mark after all downloads: {hwm / 1024:.1f} MiB ({trove}).\n")
    print("| download | archive, MiB | first byte, ms | total, s | server peak RSS, MiB | growth, MiB |")
    print("|---|---|---|---|---|---|")
    for k, (p, b, f, t) in rows.items():
        print(f"| {k} | {b / 2**20:.0f} | {f * 1000:.0f} | {t:.1f} | {p / 1024:.1f} | {(p - before) / 1024:.1f} |")


if __name__ == "__main__":
    main()
