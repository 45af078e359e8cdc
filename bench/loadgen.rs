//! A small HTTP/1.1 load generator for inferlog's benchmarks (`bench/run.sh` drives it).
//!
//! Each of `--connections` keep-alive connections sends one request, reads the whole response,
//! and repeats until `--duration` has passed; the last response is always read, so "answered"
//! counts are exact and can be checked against the audit rows. Prints one JSON object:
//! requests, ok (2xx), non_2xx, errors, duration_s, rps, p50/p90/p99/p99.9/max latency in µs.
//!
//!
//! With `--rate R` it is open-loop: requests go out on a fixed schedule, R a second in all
//! (each connection's k-th at `start + (k * connections + c) / R`). A request that falls due
//! while its connection still waits for the last answer is measured from the moment it was
//! due, not from when it could be sent: a server that stalls is charged for every request
//! that should have gone out meanwhile, which a client waiting for each answer would not send
//! (coordinated omission). Every latency is kept and sorted, so the percentiles (p99.9 too)
//! are exact.
//!
//! Usage: loadgen --addr 127.0.0.1:8080 [--method POST] [--path /predict] [--body JSON]
//!                [--connections 64] [--duration 10] [--threads 1] [--rate R]
//!        loadgen --addr 127.0.0.1:8080 --wait-ready 30   (waits for /health/ready)

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Opts {
    addr: String,
    method: String,
    path: String,
    body: String,
    connections: usize,
    duration: Duration,
    threads: usize,
    wait_ready: Option<u64>,
    /// Requests a second in all, on a fixed schedule (open loop); `None`: each connection
    /// sends its next request when the last is answered.
    rate: Option<f64>,
}

fn opts() -> Opts {
    let mut o = Opts {
        addr: "127.0.0.1:8080".into(),
        method: "GET".into(),
        path: "/health/live".into(),
        body: String::new(),
        connections: 64,
        duration: Duration::from_secs(10),
        threads: 1,
        wait_ready: None,
        rate: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--addr" => o.addr = v,
            "--method" => o.method = v,
            "--path" => o.path = v,
            "--body" => o.body = v,
            "--body-file" => o.body = std::fs::read_to_string(&v).expect("body file"),
            "--connections" => o.connections = v.parse().expect("connections"),
            "--duration" => o.duration = Duration::from_secs_f64(v.parse().expect("duration")),
            "--threads" => o.threads = v.parse().expect("threads"),
            "--wait-ready" => o.wait_ready = Some(v.parse().expect("seconds")),
            "--rate" => o.rate = Some(v.parse::<f64>().expect("rate")).filter(|r| *r > 0.0),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

#[derive(Default)]
struct Tally {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

/// Reads one response; returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(std::io::Error::other)?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// When one connection's requests are due: the first at `first`, then every `every`.
#[derive(Clone, Copy)]
struct Schedule {
    first: Instant,
    every: Duration,
}

async fn connection(
    addr: String,
    request: std::sync::Arc<Vec<u8>>,
    deadline: Instant,
    schedule: Option<Schedule>,
) -> Tally {
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(4096);
    let mut due = schedule.map(|s| s.first);
    'outer: while Instant::now() < deadline {
        let Ok(mut stream) = TcpStream::connect(&addr).await else {
            tally.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        while Instant::now() < deadline {
            // Open loop: a request whose moment came while the last one was still unanswered
            // is measured from that moment (the server's delay); one the connection was free
            // for is sent when the timer fires and measured from then, so the timer's own
            // lateness (up to a millisecond) is not charged to the server.
            let started = match (due, schedule) {
                (Some(at), Some(s)) => {
                    if at >= deadline {
                        break 'outer;
                    }
                    due = Some(at + s.every);
                    if Instant::now() >= at {
                        at
                    } else {
                        tokio::time::sleep_until(at.into()).await;
                        Instant::now()
                    }
                }
                _ => Instant::now(),
            };
            if stream.write_all(&request).await.is_err() {
                tally.errors += 1;
                continue 'outer;
            }
            match read_response(&mut stream, &mut buf).await {
                Ok(status) => {
                    let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    tally.latencies_us.push(us);
                    if (200..300).contains(&status) {
                        tally.ok += 1;
                    } else {
                        tally.non_2xx += 1;
                    }
                }
                Err(_) => {
                    tally.errors += 1;
                    continue 'outer;
                }
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

async fn wait_ready(addr: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let request = b"GET /health/ready HTTP/1.1\r\nHost: bench\r\n\r\n".to_vec();
    let mut buf = Vec::new();
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(addr).await
            && s.write_all(&request).await.is_ok()
            && read_response(&mut s, &mut buf)
                .await
                .is_ok_and(|st| st == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("server at {addr} not ready after {secs}s");
    std::process::exit(1);
}

fn main() {
    let o = opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if let Some(secs) = o.wait_ready {
            wait_ready(&o.addr, secs).await;
            return;
        }
        let mut request = format!("{} {} HTTP/1.1\r\nHost: bench\r\n", o.method, o.path);
        if !o.body.is_empty() {
            request += &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                o.body.len()
            );
        }
        request += "\r\n";
        request += &o.body;
        let request = std::sync::Arc::new(request.into_bytes());
        let started = Instant::now();
        let deadline = started + o.duration;
        let connections = o.connections.max(1);
        let tasks: Vec<_> = (0..connections)
            .map(|c| {
                let schedule = o.rate.map(|rate| Schedule {
                    first: started + Duration::from_secs_f64(c as f64 / rate),
                    every: Duration::from_secs_f64(connections as f64 / rate),
                });
                tokio::spawn(connection(
                    o.addr.clone(),
                    request.clone(),
                    deadline,
                    schedule,
                ))
            })
            .collect();
        let mut all = Tally::default();
        for t in tasks {
            let t = t.await.expect("connection task");
            all.ok += t.ok;
            all.non_2xx += t.non_2xx;
            all.errors += t.errors;
            all.latencies_us.extend(t.latencies_us);
        }
        let secs = started.elapsed().as_secs_f64();
        all.latencies_us.sort_unstable();
        let requests = all.ok + all.non_2xx;
        println!(
            "{{\"requests\":{requests},\"ok\":{},\"non_2xx\":{},\"errors\":{},\"duration_s\":{secs:.3},\"rps\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
            all.ok,
            all.non_2xx,
            all.errors,
            requests as f64 / secs,
            percentile(&all.latencies_us, 0.50),
            percentile(&all.latencies_us, 0.90),
            percentile(&all.latencies_us, 0.99),
            percentile(&all.latencies_us, 0.999),
            all.latencies_us.last().copied().unwrap_or(0),
        );
    });
}
