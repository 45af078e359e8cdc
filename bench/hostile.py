#!/usr/bin/env python3
"""Hostile clients for bench/hostile.sh: for DURATION seconds, at once,

- IDLE connections that are opened and never send a byte (reopened when the server closes
  them),
- SLOW clients that announce a body of the largest allowed size and trickle it a kilobyte at a
  time (reopened when answered or cut off),
- BATCHERS that send the largest valid batch (INFERLOG_MAX_BATCH rows) and batches five times
  too large, back to back.

Prints one JSON object with what each kind of client got. The health prober runs in its own
process (probe mode), so this event loop's own load does not enter its figures.

    hostile.py load ADDR DURATION IDLE SLOW BATCHERS MAX_BODY MAX_BATCH
    hostile.py probe ADDR DURATION INTERVAL_MS
"""

import asyncio
import json
import socket
import sys
import time
from collections import Counter


def status_of(head: bytes) -> str:
    try:
        return head.split(b" ", 2)[1].decode()
    except IndexError:
        return "none"


async def read_status(reader) -> str:
    line = await reader.readline()
    return status_of(line) if line else "closed"


async def idle(host, port, stop, stats):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["idle_connect_failed"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["idle_opened"] += 1
        # Held until the server closes it (its request-head timeout) or the run ends.
        try:
            done = asyncio.ensure_future(reader.read(1))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            stopped.cancel()
        except OSError:
            pass
        writer.close()


async def slow(host, port, stop, stats, max_body):
    chunk = b" " * 1024
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"Content-Length: %d\r\n\r\n" % max_body
            )
            await writer.drain()
            sent = 0
            answer = asyncio.ensure_future(read_status(reader))
            while not stop.is_set() and not answer.done() and sent < max_body:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                await asyncio.sleep(0.1)
            if answer.done():
                stats["slow_" + answer.result()] += 1
            else:
                answer.cancel()
            writer.close()
        except OSError:
            stats["slow_reset"] += 1
            await asyncio.sleep(0.1)


async def batcher(host, port, stop, stats, max_batch):
    row = "[5.8, 2.7, 5.1, 1.9]"
    ok = ('{"features": [' + ", ".join([row] * max_batch) + "]}").encode()
    huge = ('{"features": [' + ", ".join([row] * (max_batch * 5)) + "]}").encode()
    n = 0
    while not stop.is_set():
        body = huge if n % 2 else ok
        n += 1
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            await writer.drain()
            status = await read_status(reader)
            await reader.read()
            writer.close()
            stats[("batch_" if body is ok else "huge_") + status] += 1
        except OSError:
            stats["batch_reset"] += 1
            await asyncio.sleep(0.05)


async def load(addr, duration, n_idle, n_slow, n_batchers, max_body, max_batch):
    host, port = addr.rsplit(":", 1)
    port = int(port)
    stop = asyncio.Event()
    stats = Counter()
    tasks = [asyncio.ensure_future(idle(host, port, stop, stats)) for _ in range(n_idle)]
    tasks += [asyncio.ensure_future(slow(host, port, stop, stats, max_body)) for _ in range(n_slow)]
    tasks += [
        asyncio.ensure_future(batcher(host, port, stop, stats, max_batch)) for _ in range(n_batchers)
    ]
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.wait(tasks, timeout=15)
    for t in tasks:
        t.cancel()
    print(json.dumps(dict(sorted(stats.items()))))


def probe(addr, duration, interval_ms):
    """GET /health/live on a new connection every interval: latencies in ms."""
    host, port = addr.rsplit(":", 1)
    port = int(port)
    latencies, failures = [], Counter()
    end = time.monotonic() + duration
    request = b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(request)
                data = b""
                while b"\r\n\r\n" not in data:
                    part = s.recv(4096)
                    if not part:
                        break
                    data += part
                status = status_of(data)
                if status != "200":
                    failures[status] += 1
                    continue
        except OSError as e:
            failures[type(e).__name__] += 1
            continue
        latencies.append((time.monotonic() - started) * 1000)
        time.sleep(max(0.0, interval_ms / 1000 - (time.monotonic() - started)))
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))], 2)

    print(
        json.dumps(
            {
                "probes": len(latencies),
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
                "max_ms": round(latencies[-1], 2),
                "failures": dict(failures),
            }
        )
    )


if __name__ == "__main__":
    mode, addr = sys.argv[1], sys.argv[2]
    if mode == "load":
        duration, n_idle, n_slow, n_batchers, max_body, max_batch = map(int, sys.argv[3:9])
        asyncio.run(load(addr, duration, n_idle, n_slow, n_batchers, max_body, max_batch))
    else:
        probe(addr, int(sys.argv[3]), int(sys.argv[4]))
