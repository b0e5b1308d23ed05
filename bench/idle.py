"""Hold N idle keep-alive connections to 127.0.0.1:PORT: each sends one GET, reads the whole
answer, and then stays open. Prints `ready HELD` once all are settled, then waits until its
standard input closes. Used by bench.py for the memory figure."""

import asyncio
import sys


async def one(port, held, opened):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except Exception:
        return
    opened.append(w)
    try:
        w.write(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await w.drain()
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await asyncio.wait_for(r.readexactly(length), 5)
        if b"connection: close" not in head.lower():
            held.append((r, w))
    except Exception:
        pass


async def main():
    port, n = int(sys.argv[1]), int(sys.argv[2])
    held, opened = [], []
    sem = asyncio.Semaphore(500)  # open at most this many at once (accept queues are finite)

    async def limited():
        async with sem:
            await one(port, held, opened)

    # A server that stops accepting (Apache's event MPM has a connection limit) must not stall
    # the run: whatever is open after this long is what it holds.
    tasks = [asyncio.create_task(limited()) for _ in range(n)]
    _, pending = await asyncio.wait(tasks, timeout=float(sys.argv[3]) if len(sys.argv) > 3 else 30)
    for t in pending:
        t.cancel()
    # Connections the server closed after the answer are not idle keep-alive ones.
    await asyncio.sleep(0.5)
    alive = [(r, w) for r, w in held if not r.at_eof()]
    print(f"ready {len(alive)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in opened:
        w.close()


asyncio.run(main())
