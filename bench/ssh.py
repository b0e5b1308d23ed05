#!/usr/bin/env python3
"""Git over SSH (issue 24): a full clone of the benchmark repository (bench/gen_repo.py, 3,000
commits, cached under bench/.cache) from one `trove up`, over its SSH server and over HTTPS
through its gateway, and from OpenSSH's own sshd running git-upload-pack on a bare copy of the
same repository (the physical reference: what SSH plus git cost with nothing of ours in the
way), in one run, rounds alternating the order.

    bench/ssh [ROUNDS]        # default 5; TROVE=path to skip the build

Measured per clone: wall time (the client waits for all of it) and the server's CPU seconds:
the `trove up` process tree (its `trove server` and their git processes; utime+stime+cutime+cstime
from /proc of each), or the sshd listener's tree (its per-connection processes and their git). Needs git, ssh, ssh-keygen and
/usr/sbin/sshd (`apt-get install openssh-server`; this script starts its own sshd on a
127.0.0.1 port the kernel picked, with its own host key and config, and stops it). Prints a
Markdown table and writes bench/.work/ssh/ssh.json."""
import json, os, shutil, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import bench as B  # noqa: E402  (its process helpers and the generated repository)

WORK = ROOT / "bench/.work/ssh"
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
TROVE = os.environ.get("TROVE") or str(ROOT / "target/release/trove")
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    """CPU seconds of `pid` and every process under it: each one's own (utime+stime) and its
    waited-for children's (cutime+cstime), so a `trove up` that runs `trove server` as a child,
    whose git processes are its children, is counted whole, and nothing twice."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
            todo.extend(c for c, (parent, _) in stats.items() if parent == p)
    return total / TICK


def main():
    B.ROOT, B.WORK = ROOT, WORK
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    if not Path("/usr/sbin/sshd").exists():
        raise SystemExit("bench/ssh: /usr/sbin/sshd is missing: apt-get install openssh-server")
    src, objects = B.source_repo(3000)
    pack_mib = sum(p.stat().st_size for p in (src / "objects/pack").glob("*.pack")) / 2**20

    # trove up: HTTPS gateway and SSH.
    data = WORK / "trove-data"
    ps, sp, sshp = B.free_port(), B.free_port(), B.free_port()
    env_up = dict(os.environ, TROVE_ADMIN_PASSWORD="bench-admin-password-1")
    up = B.start("trove-up", [TROVE, "up", "--data", str(data), "--https", f"127.0.0.1:{ps}", "--http", "off", "--server", f"127.0.0.1:{sp}",
                              "--ssh", f"127.0.0.1:{sshp}", "--public-url", f"https://127.0.0.1:{ps}"], ps, env=env_up)
    B.wait_port(sshp, "trove's ssh")
    adm = lambda *a: B.run([TROVE, "admin", "--data", str(data), *a])
    if adm("project", "add", "TP", "--name", "Bench").returncode or adm("repo", "add", "TP/bench").returncode:
        raise SystemExit("trove admin could not make TP/bench")
    for _ in range(100):
        t = adm("token", "add", "admin", "--scope", "admin")
        if t.returncode == 0 and t.stdout.strip():
            break
        time.sleep(0.1)
    token = t.stdout.strip().split()[-1]
    env = B.git_env(data / "tls/ca.crt")
    B.git(env, "-C", str(src), "push", "-q", f"https://admin:{token}@127.0.0.1:{ps}/scm/tp/bench.git", "main")

    # One client key, known to both servers; known_hosts with both servers' host keys.
    key = WORK / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-f", str(key)], check=True)
    public = (WORK / "client_key.pub").read_text().strip()
    import urllib.request
    req = urllib.request.Request(f"https://127.0.0.1:{ps}/rest/ssh/1.0/keys", data=json.dumps({"text": public, "label": "bench"}).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    import ssl
    urllib.request.urlopen(req, context=ssl.create_default_context(cafile=str(data / "tls/ca.crt"))).read()

    # OpenSSH's sshd on a copy of the same repository.
    sd = WORK / "sshd"
    sd.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-f", str(sd / "host_key")], check=True)
    (sd / "authorized_keys").write_text(public + "\n")
    bare = sd / "bench.git"
    subprocess.run(["git", "clone", "-q", "--bare", "--no-local", str(src), str(bare)], check=True)
    # One pack with a reachability bitmap, as Trove's maintenance leaves a repository after a
    # push: without it git would count every object at each clone and the reference would be slow
    # for a reason that is not SSH's.
    subprocess.run(["git", "-C", str(bare), "repack", "-a", "-d", "-b", "-q"], check=True)
    op = B.free_port()
    (sd / "sshd_config").write_text(f"""Port {op}
ListenAddress 127.0.0.1
HostKey {sd}/host_key
PidFile {sd}/sshd.pid
AuthorizedKeysFile {sd}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
""")
    Path("/run/sshd").mkdir(exist_ok=True)
    sshd = B.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(sd / "sshd_config")], op)
    user = os.environ.get("USER") or "root"

    hosts = WORK / "known_hosts"
    lines = [f"[127.0.0.1]:{sshp} {(data / f).read_text().strip()}" for f in ("ssh_host_ed25519_key.pub",)]
    lines.append(f"[127.0.0.1]:{op} {(sd / 'host_key.pub').read_text().strip()}")
    hosts.write_text("\n".join(lines) + "\n")
    env["GIT_SSH_COMMAND"] = f"ssh -F /dev/null -i {key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={hosts}"

    sides = {
        "trove, SSH": (f"ssh://git@127.0.0.1:{sshp}/tp/bench.git", up.pid),
        "trove, HTTPS (gateway)": (f"https://admin:{token}@127.0.0.1:{ps}/scm/tp/bench.git", up.pid),
        "OpenSSH sshd + git": (f"ssh://{user}@127.0.0.1:{op}{bare}", sshd.pid),
    }
    res = {k: {"wall": [], "cpu": []} for k in sides}
    order = list(sides)
    for rnd in range(ROUNDS):
        for name in (order if rnd % 2 == 0 else order[::-1]):
            url, pid = sides[name]
            target = WORK / "clone"
            shutil.rmtree(target, ignore_errors=True)
            time.sleep(0.2)
            c0 = cpu(pid)
            res[name]["wall"].append(B.timed(env, "clone", "-q", "--no-local", url, str(target)))
            time.sleep(0.3)  # the server's children are waited for
            res[name]["cpu"].append(cpu(pid) - c0)
            B.log(f"round {rnd + 1} {name}: {res[name]['wall'][-1]:.2f} s, server CPU {res[name]['cpu'][-1]:.2f} s")
    shutil.rmtree(WORK / "clone", ignore_errors=True)
    B.stop_all()

    ref = "OpenSSH sshd + git"
    med = {k: (statistics.median(v["wall"]), statistics.median(v["cpu"])) for k, v in res.items()}
    print(f"Full clone, {objects} objects, {pack_mib:.1f} MiB pack; medians of {ROUNDS}.\n")
    print("| server | wall, s | server CPU, s | wall ÷ sshd | CPU ÷ sshd |")
    print("|---|---|---|---|---|")
    for k, (w, c) in med.items():
        print(f"| {k} | {w:.2f} | {c:.2f} | {w / med[ref][0]:.2f} | {c / med[ref][1]:.2f} |")
    (WORK / "ssh.json").write_text(json.dumps({"objects": objects, "pack_mib": pack_mib, "rounds": ROUNDS, "runs": res}, indent=2))


if __name__ == "__main__":
    try:
        main()
    finally:
        B.stop_all()
