#!/usr/bin/env python3
"""Webhooks (issue 22), against one `trove server` on SQLite and a receiver on 127.0.0.1:

1. the added latency of a push: the median time of `git push` of one new commit, with no
   webhook, then with 10 webhooks on the repository asking for repo:refs_changed (the push
   writes its event to the outbox before git's answer; delivery happens after);
2. events delivered per second: 10 webhooks, COMMENTS pull-request comments posted as fast as
   REST takes them (4 at a time): deliveries / (last delivery received - first comment posted).

    bench/webhooks [PUSHES] [COMMENTS]     # defaults 30 and 200; TROVE=path to skip the build

The receiver (Python's ThreadingHTTPServer) answers 200 at once. Everything listens on
127.0.0.1 ports the kernel picked; the work directory is bench/.work/webhooks. Prints a
Markdown table and writes bench/.work/webhooks.json."""
import base64, concurrent.futures, http.server, json, os, shutil, socket, statistics, subprocess, sys, threading, time, urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench/.work/webhooks"
TROVE = os.environ.get("TROVE") or str(ROOT / "target/release/trove")
PUSHES = int(sys.argv[1]) if len(sys.argv) > 1 else 30
COMMENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
PASSWORD = "bench-admin-password-1"
AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

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
        raise SystemExit(f"{args[:4]}: {r.stderr}")
    return r.stdout

ENV = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1")

def git(*args, cwd):
    return run(["git", "-C", str(cwd), "-c", "user.name=Bench", "-c", "user.email=b@example.com", *args], env=ENV)

def rest(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": AUTH, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        text = r.read()
        return json.loads(text) if text else None

received = []
lock = threading.Lock()

class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        self.rfile.read(n)
        with lock:
            received.append((time.monotonic(), self.headers.get("X-Event-Key")))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass

def wait_received(n, limit=600):
    deadline = time.time() + limit
    while time.time() < deadline:
        with lock:
            if len(received) >= n:
                return
        time.sleep(0.01)
    raise SystemExit(f"only {len(received)} of {n} deliveries arrived")

def main():
    shutil.rmtree(WORK, ignore_errors=True); WORK.mkdir(parents=True)
    data, port = WORK / "data", free_port()
    (WORK / "trove.toml").write_text(f'listen = "127.0.0.1:{port}"\ndata_dir = "{data}"\n[git]\nmaintenance_after_push = false\n')
    run([TROVE, "admin", "--data", str(data), "init"])
    run([TROVE, "admin", "--data", str(data), "user", "add", "admin", "--admin", "--password-stdin"], input=PASSWORD + "\n")
    run([TROVE, "admin", "--data", str(data), "project", "add", "BP"])
    run([TROVE, "admin", "--data", str(data), "repo", "add", "BP/r"])
    run([TROVE, "admin", "--data", str(data), "settings", "webhook-allow", "127.0.0.0/8"])
    rx = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=rx.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{rx.server_address[1]}/hook"
    server = subprocess.Popen([TROVE, "server", "--config", str(WORK / "trove.toml")], stdout=open(WORK / "server.log", "w"), stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        api = f"{base}/rest/api/1.0/projects/BP/repos/r"
        work = WORK / "work"
        run(["git", "init", "-q", "-b", "main", str(work)])
        git("remote", "add", "origin", f"http://admin:{PASSWORD}@127.0.0.1:{port}/scm/bp/r.git", cwd=work)
        def push_once(i, branch="main"):
            (work / "f.txt").write_text(f"{i}\n")
            git("add", "f.txt", cwd=work); git("commit", "-q", "-m", f"c{i}", cwd=work)
            t = time.perf_counter(); git("push", "-q", "origin", branch, cwd=work); return (time.perf_counter() - t) * 1000
        push_once(0)
        bare = [push_once(i) for i in range(1, PUSHES + 1)]
        for i in range(10):
            rest(api, "POST", "/webhooks", {"name": f"hook{i}", "url": hook_url, "events": ["repo:refs_changed", "pr:comment:added"], "configuration": {"secret": "s"}})
        hooked = [push_once(i) for i in range(PUSHES + 1, 2 * PUSHES + 1)]
        wait_received(10 * PUSHES)
        # Throughput: comments on one pull request, 4 at a time.
        git("checkout", "-q", "-b", "feature", cwd=work); push_once(10**6, "feature")
        wait_received(10 * PUSHES + 10)
        rest(api, "POST", "/pull-requests", {"title": "t", "fromRef": {"id": "refs/heads/feature"}, "toRef": {"id": "refs/heads/main"}})
        with lock:
            received.clear()
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: rest(api, "POST", "/pull-requests/1/comments", {"text": f"comment {i}"}), range(COMMENTS)))
        posted = time.monotonic() - start
        wait_received(10 * COMMENTS)
        with lock:
            last = max(t for t, _ in received)
        elapsed = last - start
        result = {
            "push_ms_median_no_webhooks": statistics.median(bare),
            "push_ms_median_10_webhooks": statistics.median(hooked),
            "push_added_ms": statistics.median(hooked) - statistics.median(bare),
            "comments": COMMENTS, "deliveries": 10 * COMMENTS,
            "comments_posted_s": posted, "delivered_s": elapsed,
            "deliveries_per_s": 10 * COMMENTS / elapsed,
            "binary": TROVE,
        }
    finally:
        server.terminate(); server.wait(30); rx.shutdown()
    (WORK.parent / "webhooks.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | value |\n|---|---|")
    print(f"| push, median of {PUSHES}, no webhook | {result['push_ms_median_no_webhooks']:.1f} ms |")
    print(f"| push, median of {PUSHES}, 10 webhooks | {result['push_ms_median_10_webhooks']:.1f} ms |")
    print(f"| added by 10 webhooks | {result['push_added_ms']:.1f} ms |")
    print(f"| {COMMENTS} comments posted (4 at a time) | {posted:.2f} s |")
    print(f"| {10 * COMMENTS} deliveries, from the first comment to the last delivery | {elapsed:.2f} s |")
    print(f"| deliveries per second | {result['deliveries_per_s']:.0f} |")

main()
