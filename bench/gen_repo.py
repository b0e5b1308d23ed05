"""Write a `git fast-import` stream for a synthetic repository to stdout: COMMITS commits on
`main`, each changing FILES_PER_COMMIT files of a tree of DIRS directories. Every commit makes
that many blobs, the trees above them and itself, so 3,000 commits of 16 files give about
3,000 * (16 + ~17 + 1) > 100,000 objects. Deterministic (seeded), nothing downloaded.

    python3 gen_repo.py COMMITS [FILES_PER_COMMIT] | git fast-import --quiet
"""

import random
import sys

WORDS = (
    "alpha beta gamma delta proxy route upstream gateway origin header cookie tls handshake "
    "commit tree blob pack fetch push clone branch merge rebase index object delta stream "
    "socket buffer timeout keepalive request response status chunk length trailer"
).split()


def main():
    commits = int(sys.argv[1])
    per = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    dirs = 64
    files_per_dir = 48
    rnd = random.Random(8)
    out = sys.stdout.buffer
    t = 1_700_000_000
    for c in range(commits):
        t += 97
        changes = []
        for _ in range(per):
            d = rnd.randrange(dirs)
            f = rnd.randrange(files_per_dir)
            lines = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(4, 12))) for _ in range(rnd.randrange(8, 40))]
            data = (f"// {c} {d} {f}\n" + "\n".join(lines) + "\n").encode()
            changes.append((f"src/d{d:02}/s{d % 8}/f{f:03}.txt", data))
        msg = f"change {c}: {' '.join(rnd.choice(WORDS) for _ in range(6))}\n".encode()
        out.write(b"commit refs/heads/main\n")
        out.write(f"committer Bench <bench@example.invalid> {t} +0000\n".encode())
        out.write(b"data %d\n" % len(msg) + msg)
        for path, data in changes:
            out.write(f"M 100644 inline {path}\n".encode())
            out.write(b"data %d\n" % len(data) + data + b"\n")
        out.write(b"\n")


main()
