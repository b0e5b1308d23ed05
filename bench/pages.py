"""Pages and REST under load, start-up and memory at rest (issue 26), for `bench/run --only pages`.

`trove up` (release, HTTPS through its gateway, SQLite) serves the benchmark repository; 100
users sign in (a session each for the pages, a token each for REST). Then wrk (bench/pages.lua)
plays them, keep-alive, on a mix of what people open: the repository page, a file, the commit
list, a commit, and REST's repository list and branches:

- **people**: 100 connections, each waiting 0.5-1.5 s between requests (someone reading),
  for `secs` seconds: p50, p99 and errors. The target is absolute (no peer serves these
  pages): p99 under 100 ms and no error.
- **saturated**: the same 100 connections with no wait: the most the server answers, and
  the latency when it is flat out;
- **each kind alone**, saturated, 10 connections: which page costs what.

Also measured: `trove up` from its start to its first answered `git ls-remote` (a restart on
an existing data directory), and its memory at rest (RSS) before and after the load."""

import json
import os
import re
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar

USERS = 100
PASSWORD = "bench-user-password-1"
ADMIN_PASSWORD = "bench-admin-password-1"  # as bench.trove_up sets it
KINDS = {
    "repository page": "repo",
    "file view": "file",
    "commit list": "commits",
    "commit page": "commit",
    "REST repository list": "rest_repos",
    "REST branches": "rest_branches",
}


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_all(pid):
    """CPU seconds of a process and the children it has waited for (git), so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def parse_wrk(text):
    def lat(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not m:
            return None
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if not rps:
        return None
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)) if total else None,
        "p50_ms": lat(50),
        "p90_ms": lat(90),
        "p99_ms": lat(99),
        "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0),
    }


def pages_bench(args, res, b):
    """`b` is bench.py's module (its helpers and its WORK/ROOT)."""
    trove = str(b.ROOT / "target/release/trove")
    src, _ = b.source_repo(args.commits)
    data = b.WORK / "pages-data"
    t0 = time.monotonic()
    up, ps, admin_token, _ = b.trove_up(trove, data, public=False)
    first_listen = time.monotonic() - t0
    argv, env_up = up.args, dict(os.environ, TROVE_ADMIN_PASSWORD=ADMIN_PASSWORD)
    adm = lambda *a, stdin=None: subprocess.run([trove, "admin", "--data", str(data), *a], capture_output=True, text=True, input=stdin)
    r = adm("repo", "add", "TP/bench")
    if r.returncode:
        raise SystemExit(f"trove admin repo add: {r.stderr}")
    ca = data / "tls/ca.crt"
    env = b.git_env(ca)
    base = f"https://127.0.0.1:{ps}"
    b.git(env, "-C", str(src), "push", "-q", f"https://admin:{admin_token}@127.0.0.1:{ps}/scm/tp/bench.git", "main")

    # The users: an account, read access to the project, a token and a web session each.
    tls = ssl.create_default_context(cafile=str(ca))
    b.log(f"pages: making {USERS} users and signing them in")

    def user(i):
        name = f"user{i:03d}"
        r = adm("user", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
        if r.returncode:
            raise SystemExit(f"trove admin user add {name}: {r.stderr}")
        token = adm("token", "add", name, "--scope", "read").stdout.strip().split()[-1]
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=tls), urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{base}/login").read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": name, "password": PASSWORD, "csrf": csrf, "next": ""}).encode()
        opener.open(urllib.request.Request(f"{base}/login", data=form, headers={"Origin": base}))
        session = next((c.value for c in jar if c.name == "trove_session"), None)
        if not session:
            raise SystemExit(f"{name} could not sign in")
        return session, token

    with ThreadPoolExecutor(4) as pool:
        creds = list(pool.map(user, range(USERS)))
    # Every user may read the project: one grant per user, as a team's project would have.
    for i in range(USERS):
        r = urllib.request.Request(f"{base}/rest/api/latest/projects/TP/permissions/users?name=user{i:03d}&permission=PROJECT_READ", method="PUT",
                                   headers={"Authorization": f"Bearer {admin_token}"})
        urllib.request.urlopen(r, context=tls).read()
    (b.WORK / "pages-creds.txt").write_text("".join(f"{s}\t{t}\n" for s, t in creds))

    # What they open: 20 files and 20 commits spread over the history, and the rest.
    commits = b.run(["git", "-C", str(src), "log", "--format=%H", "main"]).stdout.split()
    commits = commits[:: max(1, len(commits) // 20)][:20]
    files = b.run(["git", "-C", str(src), "ls-tree", "-r", "--name-only", "main"]).stdout.split("\n")
    files = [f for f in files if f][:: max(1, len(files) // 20)][:20]
    repo = "/projects/TP/repos/bench"
    kinds = {
        "repo": [repo],
        "file": [f"{repo}/browse/{urllib.parse.quote(f)}" for f in files],
        "commits": [f"{repo}/commits"],
        "commit": [f"{repo}/commits/{c}" for c in commits],
        "rest_repos": ["/rest/api/latest/projects/TP/repos?limit=25", "/rest/api/latest/repos?limit=25"],
        "rest_branches": [f"/rest/api/latest/projects/TP/repos/bench/branches?limit=25"],
    }
    # Every path answers 200 to its user before anyone measures anything.
    s0, t0_ = creds[0]
    for kind, paths in kinds.items():
        for p in paths:
            h = {"Authorization": f"Bearer {t0_}"} if p.startswith("/rest/") else {"Cookie": f"trove_session={s0}"}
            with urllib.request.urlopen(urllib.request.Request(base + p, headers=h), context=tls) as r:
                if r.status != 200:
                    raise SystemExit(f"{p}: HTTP {r.status}")
    mix = WORK_paths(b, "pages-mix.txt", [p for k in kinds for p in kinds[k] * (10 // len(kinds[k]) or 1)])

    def wrk(path_file, conns, secs, think):
        c0 = cpu_all(up.pid)
        r = b.run(["wrk", "-t2", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "10s", "-s", str(b.ROOT / "bench/pages.lua"), base,
                   "--", str(path_file), str(b.WORK / "pages-creds.txt"), str(think[0]), str(think[1])])
        got = parse_wrk(r.stdout)
        if not got:
            b.log(f"wrk failed: {r.stdout[-600:]} {r.stderr[-600:]}")
            return None
        got["cpu_ms_per_req"] = (cpu_all(up.pid) - c0) * 1000 / max(1, got["requests"] or 1)
        return got

    out = res.setdefault("pages", {})
    rest_before = rss_kib(up.pid)
    b.log(f"pages: {USERS} people reading, {args.page_secs} s")
    out["people"] = wrk(mix, USERS, args.page_secs, (500, 1500))
    b.log(f"  {out['people']}")
    out["saturated"] = wrk(mix, USERS, max(5, args.page_secs // 3), (0, 0))
    b.log(f"  saturated: {out['saturated']}")
    out["kinds"] = {}
    for label, kind in KINDS.items():
        f = WORK_paths(b, f"pages-{kind}.txt", kinds[kind])
        out["kinds"][label] = wrk(f, 10, max(3, args.page_secs // 6), (0, 0))
        b.log(f"  {label}: {out['kinds'][label]}")
    time.sleep(2)
    out["rss_mib_before_load"] = rest_before / 1024
    out["rss_mib_after_load"] = rss_kib(up.pid) / 1024

    # Start-up: stop it, start it again on the same data, and count until git is answered.
    up.terminate()
    up.wait(timeout=30)
    t0 = time.monotonic()
    up = b.start("trove-up-pages-again", argv, None, env=env_up)
    url = f"https://admin:{admin_token}@127.0.0.1:{ps}/scm/tp/bench.git"
    deadline = t0 + 60
    while True:
        r = subprocess.run(["git", "ls-remote", url, "HEAD"], env=env, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"trove up did not answer git within 60 s: {r.stderr}")
        time.sleep(0.01)
    out["restart_to_git_s"] = time.monotonic() - t0
    out["first_start_listen_s"] = first_listen
    time.sleep(3)
    out["rss_mib_at_rest"] = rss_kib(up.pid) / 1024
    b.log(f"pages: restart→git {out['restart_to_git_s']:.3f} s, rest {out['rss_mib_at_rest']:.1f} MiB")
    up.terminate()
    up.wait(timeout=30)


def WORK_paths(b, name, paths):
    f = b.WORK / name
    f.write_text("".join(p + "\n" for p in paths))
    return f


def markdown(res):
    p = res.get("pages")
    if not p:
        return []

    def f(x, nd=1):
        return "–" if x is None else f"{x:,.{nd}f}"

    def row(label, w):
        if not w:
            return f"| {label} | – | – | – | – | – | – |"
        return f"| {label} | {f(w['rps'], 0)} | {f(w['p50_ms'], 2)} | {f(w['p99_ms'], 2)} | {f(w.get('cpu_ms_per_req'), 2)} | {w['errors']} | {w['requests']:,} |"

    L = ["### Pages and REST under load (issue 26)\n",
         f"`trove up` (HTTPS through its gateway, SQLite), {USERS} signed-in users (a session each for pages, a token each for REST), "
         "keep-alive, each request a random page of the mix (repository page, one of 20 files, commit list, one of 20 commits, "
         "REST repository list, REST branches) as a random user. wrk (bench/pages.lua) measures from request to answer.\n",
         "| load | req/s | p50 (ms) | p99 (ms) | server CPU per request, git included (ms) | errors | requests |",
         "|---|---|---|---|---|---|---|",
         row(f"{USERS} people, 0.5–1.5 s between requests", p.get("people")),
         row(f"{USERS} connections, no wait (saturated)", p.get("saturated"))]
    for label, w in p.get("kinds", {}).items():
        L.append(row(f"{label} alone, 10 connections, no wait", w))
    ppl = p.get("people") or {}
    ok = ppl.get("p99_ms") is not None and ppl["p99_ms"] < 100 and ppl.get("errors") == 0
    L.append(f"\nTarget: with {USERS} people, p99 under 100 ms and no error: **{'met' if ok else 'missed'}** "
             f"({f(ppl.get('p99_ms'), 2)} ms, {ppl.get('errors', '–')} errors).\n")
    L.append("| start-up and memory | |\n|---|---|")
    L.append(f"| first `trove up` on an empty data directory until it serves (certificate, admin account and a token made) | {f(p.get('first_start_listen_s'), 3)} s |")
    L.append(f"| restart on the same data until the first `git ls-remote` is answered | {f(p.get('restart_to_git_s'), 3)} s |")
    L.append(f"| memory at rest after a restart (RSS) | {f(p.get('rss_mib_at_rest'))} MiB |")
    L.append(f"| memory before the load, after setting up 100 users (RSS) | {f(p.get('rss_mib_before_load'))} MiB |")
    L.append(f"| memory after the load (RSS) | {f(p.get('rss_mib_after_load'))} MiB |")
    L.append("")
    return L


if __name__ == "__main__":
    print(json.dumps({"see": "bench/run --only pages"}))
