#!/usr/bin/env python3
"""Pull requests at size (issue 19): the diff of a pull request that changes 1,000 files and
50,000 lines, and the list of 1,000 pull requests, from a release `trove server` on SQLite:
time to first byte and to the last byte (median of RUNS), and the server's peak memory.

    bench/pull-requests [RUNS]   # needs target/release/trove and git

The floor beside each figure is git itself producing the same diff on the same machine
(`git diff` of the same two commits, to /dev/null), so the ratio says what the server adds.
Everything listens on 127.0.0.1 ports the kernel picked; the work directory is
bench/.work/pull-requests. Prints a Markdown table and writes bench/.work/pull-requests.json."""
import concurrent.futures, json, os, shutil, signal, socket, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench/.work/pull-requests"
TROVE = str(ROOT / "target/release/trove")
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 9
PASSWORD = "bench-admin-password-1"
FILES, LINES_PER_FILE, PRS = 1000, 50, 1000

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
    return run(["git", "-C", str(cwd), "-c", "user.name=Bench", "-c", "user.email=b@example.com", *args],
               env=dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1"))

def peak_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

def timed(url, token, accept="application/json"):
    """curl's time to first byte and total, in ms, and the size."""
    out = run(["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}", "-H", f"Accept: {accept}",
               "-w", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}", url])
    code, ttfb, total, size = out.split()
    if code != "200":
        raise SystemExit(f"{url}: HTTP {code}")
    return float(ttfb) * 1000, float(total) * 1000, int(size)

def median_of(f):
    xs = [f() for _ in range(RUNS)]
    return statistics.median(x[0] for x in xs), statistics.median(x[1] for x in xs), xs[0][2]

def main():
    if not Path(TROVE).exists():
        raise SystemExit("build it first: cargo build --release -p trove")
    shutil.rmtree(WORK, ignore_errors=True); WORK.mkdir(parents=True)
    port = free_port()
    cfg = WORK / "trove.toml"
    cfg.write_text(f'listen = "127.0.0.1:{port}"\ndata_dir = "{WORK}/data"\n[git]\nmaintenance_after_push = false\n')
    admin = lambda *a, stdin=None: run([TROVE, "admin", "--config", str(cfg), *a], input=stdin)
    subprocess.run([TROVE, "admin", "--data", f"{WORK}/data", "init"], capture_output=True)
    admin("user", "add", "admin", "--admin", "--password-stdin", stdin=PASSWORD + "\n")
    admin("project", "add", "TP"); admin("repo", "add", "TP/test")
    token = admin("token", "add", "admin", "--scope", "admin").strip().split()[-1]
    server = subprocess.Popen([TROVE, "server", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                              stderr=open(WORK / "server.log", "w"), stdin=subprocess.DEVNULL)
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        api = f"{base}/rest/api/1.0/projects/TP/repos/test"
        # main: 1,000 files of 100 lines; `big` changes 50 lines in each (50,000 lines).
        src = WORK / "src"
        git("init", "-q", "-b", "main", str(src), cwd=WORK)
        for i in range(FILES):
            d = src / f"dir{i // 100}"; d.mkdir(exist_ok=True)
            (d / f"file{i}.txt").write_text("".join(f"line {n} of file {i}\n" for n in range(100)))
        git("add", ".", cwd=src); git("commit", "-qm", "base", cwd=src)
        git("checkout", "-q", "-b", "big", cwd=src)
        for i in range(FILES):
            p = src / f"dir{i // 100}" / f"file{i}.txt"
            lines = p.read_text().splitlines(keepends=True)
            for n in range(0, 100, 2):
                lines[n] = f"changed line {n} of file {i}\n"
            p.write_text("".join(lines))
        git("commit", "-qam", "change 50,000 lines", cwd=src)
        git("checkout", "-q", "main", cwd=src)
        # 1,000 more branches, one commit each, for 1,000 pull requests.
        for i in range(PRS):
            git("checkout", "-q", "-b", f"topic-{i}", "main", cwd=src)
            (src / f"topic{i}.txt").write_text(f"{i}\n")
            git("add", ".", cwd=src); git("commit", "-qm", f"topic {i}", cwd=src)
        git("checkout", "-q", "main", cwd=src)
        git("push", "-q", f"http://admin:{token}@127.0.0.1:{port}/scm/tp/test.git", "--all", cwd=src)

        def create(frm, title):
            body = json.dumps({"title": title, "fromRef": {"id": f"refs/heads/{frm}"}, "toRef": {"id": "refs/heads/main"}})
            out = run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", f"Authorization: Bearer {token}",
                       "-H", "Content-Type: application/json", "--data", body, f"{api}/pull-requests"])
            if out != "201":
                raise SystemExit(f"creating the pull request from {frm}: HTTP {out}")
        create("big", "Change 50,000 lines")
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda i: create(f"topic-{i}", f"Topic {i}"), range(PRS)))
        create_s = time.time() - t0

        rss_before = rss_kib(server.pid)
        results = {}
        results["diff (JSON, capped at 10,000 lines)"] = median_of(lambda: timed(f"{api}/pull-requests/1/diff", token))
        results["diff (text/plain, whole)"] = median_of(lambda: timed(f"{api}/pull-requests/1/diff", token, "text/plain"))
        results["changes (1,000 files)"] = median_of(lambda: timed(f"{api}/pull-requests/1/changes?limit=1000", token))
        results["list, 25 of 1,001"] = median_of(lambda: timed(f"{api}/pull-requests", token))
        results["list, 1,000 of 1,001"] = median_of(lambda: timed(f"{api}/pull-requests?limit=1000", token))
        peak = peak_kib(server.pid)
        # The floor: git writing the same diff itself.
        repo_dir = next((WORK / "data/repositories").rglob("HEAD")).parent
        def git_diff():
            t = time.time()
            subprocess.run(["git", "--git-dir", str(repo_dir), "diff", "-M", "main...big"], stdout=subprocess.DEVNULL, check=True)
            return (time.time() - t) * 1000, (time.time() - t) * 1000, 0
        floor = median_of(git_diff)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    out = {"runs": RUNS, "create_1000_prs_s": create_s, "server_rss_before_kib": rss_before, "server_peak_kib": peak,
           "git_diff_ms": floor[1], "rows": {k: {"ttfb_ms": v[0], "total_ms": v[1], "bytes": v[2]} for k, v in results.items()}}
    (ROOT / "bench/.work/pull-requests.json").write_text(json.dumps(out, indent=1))
    print(f"Creating {PRS} pull requests (8 at a time): {create_s:.1f} s. `git diff main...big` itself: {floor[1]:.0f} ms.")
    print(f"Server memory: {rss_before / 1024:.0f} MiB resident before the reads, {peak / 1024:.0f} MiB peak.\n")
    print("| request | time to first byte, ms | total, ms | bytes | total ÷ git diff |")
    print("|---|---|---|---|---|")
    for k, (ttfb, total, size) in results.items():
        print(f"| {k} | {ttfb:.0f} | {total:.0f} | {size:,} | {total / floor[1]:.2f} |")

if __name__ == "__main__":
    main()
