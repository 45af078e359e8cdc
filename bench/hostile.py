#!/usr/bin/env python3
"""Hostile clients for bench/hostile.sh: for DURATION seconds, at once,

- IDLE connections that are opened and never send a byte (reopened when the server closes
  them),
- SLOW clients that announce a body of the largest allowed size and trickle it a kilobyte at a
  time (reopened when answered or cut off),
- BATCHERS that send the largest valid batch (INFERLOG_MAX_BATCH rows) and batches five times
  too large, back to back,
- CHUNKED clients, all from one address (127.0.0.2), that send a chunked body of 1 MB and never
  finish it (reopened when answered or cut off),
- FLAT senders of one row of 500,000 numbers (a 1 MB body), back to back.

Prints one JSON object with what each kind of client got. The health prober runs in its own
process (probe mode), so this event loop's own load does not enter its figures.

    hostile.py load ADDR DURATION IDLE SLOW BATCHERS MAX_BODY MAX_BATCH CHUNKED FLAT
    hostile.py probe ADDR DURATION INTERVAL_MS [predict]
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


async def chunked(host, port, stop, stats, size):
    """A chunked body of `size` bytes, never finished, from the address 127.0.0.2."""
    piece = b" " * 65536
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
            writer.write(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % size
                + b'{"features": ['
            )
            await writer.drain()
            sent = 14
            answer = asyncio.ensure_future(read_status(reader))
            while not stop.is_set() and not answer.done() and sent < size:
                part = piece[: min(len(piece), size - sent)]
                writer.write(part)
                await writer.drain()
                sent += len(part)
                await asyncio.sleep(0.01)
            # Held, unfinished, until answered or the run ends.
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({answer, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if answer.done():
                stats["chunked_" + answer.result()] += 1
            else:
                answer.cancel()
                stats["chunked_held"] += 1
            writer.close()
        except OSError:
            stats["chunked_reset"] += 1
            await asyncio.sleep(0.1)


async def flat(host, port, stop, stats):
    """One row of 500,000 numbers, back to back."""
    body = ('{"features": [' + ",".join(["1"] * 500_000) + "]}").encode()
    while not stop.is_set():
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
            stats["flat_" + status] += 1
        except OSError:
            stats["flat_reset"] += 1
            await asyncio.sleep(0.05)


async def load(addr, duration, n_idle, n_slow, n_batchers, max_body, max_batch, n_chunked, n_flat):
    host, port = addr.rsplit(":", 1)
    port = int(port)
    stop = asyncio.Event()
    stats = Counter()
    tasks = [asyncio.ensure_future(idle(host, port, stop, stats)) for _ in range(n_idle)]
    tasks += [asyncio.ensure_future(slow(host, port, stop, stats, max_body)) for _ in range(n_slow)]
    tasks += [
        asyncio.ensure_future(batcher(host, port, stop, stats, max_batch)) for _ in range(n_batchers)
    ]
    tasks += [
        asyncio.ensure_future(chunked(host, port, stop, stats, min(max_body, 1_000_000)))
        for _ in range(n_chunked)
    ]
    tasks += [asyncio.ensure_future(flat(host, port, stop, stats)) for _ in range(n_flat)]
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.wait(tasks, timeout=15)
    for t in tasks:
        t.cancel()
    print(json.dumps(dict(sorted(stats.items()))))


def probe(addr, duration, interval_ms, what="live"):
    """GET /health/live (or a one-row POST /predict) on a new connection every interval:
    latencies in ms."""
    host, port = addr.rsplit(":", 1)
    port = int(port)
    latencies, failures = [], Counter()
    end = time.monotonic() + duration
    if what == "predict":
        body = b'{"features": [5.8, 2.7, 5.1, 1.9]}'
        request = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
    else:
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
        args = list(map(int, sys.argv[3:11]))
        asyncio.run(load(addr, *args))
    else:
        probe(addr, int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])
