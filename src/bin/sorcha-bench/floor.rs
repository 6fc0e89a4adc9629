//! The `floor` workload: what this machine's loopback TCP can do for a fan-out, with no HTTP,
//! gRPC, store or register involved, so `fanout` figures can be read against it.
//!
//! A second process (this binary's hidden `floor-server` command, standing in for the hub)
//! accepts S subscriber connections, each served by its own task waiting on one broadcast
//! channel — the hub's shape: one task per subscriber, woken per publish, writing the same
//! shared bytes. A publisher connection sends one byte per publish; the server broadcasts a
//! message of B bytes (sequence number first) and acknowledges. Latency is from the
//! acknowledgement to receipt at each subscriber, as in `fanout`.

use crate::{Receipts, proc_cpu, proc_rss_kib, report};
use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::broadcast;

const SUBSCRIBE: u8 = b'S';
const PUBLISH: u8 = b'P';

/// Runs the server side until its publisher connection closes (then exits).
pub(crate) async fn server(bytes: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    let (tx, _) = broadcast::channel::<Bytes>(1024);
    loop {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            match socket.read_u8().await {
                Ok(SUBSCRIBE) => {
                    let mut rx = tx.subscribe();
                    while let Ok(message) = rx.recv().await {
                        if socket.write_all(&message).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(PUBLISH) => {
                    let mut seq = 0u64;
                    while socket.read_u8().await.is_ok() {
                        let mut message = vec![b'x'; bytes];
                        message[..8].copy_from_slice(&seq.to_le_bytes());
                        let _ = tx.send(Bytes::from(message));
                        seq += 1;
                        if socket.write_u8(1).await.is_err() {
                            break;
                        }
                    }
                    std::process::exit(0);
                }
                _ => {}
            }
        });
    }
}

/// Runs the client side against a fresh server process and prints the figures.
pub(crate) async fn run(
    subscribers: usize,
    publishes: usize,
    rate: f64,
    bytes: usize,
) -> anyhow::Result<()> {
    if bytes < 8 {
        bail!("--bytes must be at least 8 (the sequence number)");
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut child = Command::new(std::env::current_exe()?)
        .args(["floor-server", "--bytes", &bytes.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("floor server did not start")??
        .and_then(|l| l.strip_prefix("listening on ").map(str::to_owned))
        .context("floor server did not say where it listens")?;
    let pid = child.id().context("floor server pid")?;
    let mut receivers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut socket = TcpStream::connect(&addr).await?;
        socket.set_nodelay(true)?;
        socket.write_u8(SUBSCRIBE).await?;
        receivers.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(publishes);
            let mut message = vec![0u8; bytes];
            while got.len() < publishes && socket.read_exact(&mut message).await.is_ok() {
                let seq = u64::from_le_bytes(message[..8].try_into().expect("8 bytes"));
                got.push((seq as i64, Instant::now()));
            }
            got
        }));
    }
    // Let the server register every subscriber before the first publish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_before = proc_cpu(pid);
    let clients_before = proc_cpu(std::process::id());
    let mut publisher = TcpStream::connect(&addr).await?;
    publisher.set_nodelay(true)?;
    publisher.write_u8(PUBLISH).await?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut acks = Vec::with_capacity(publishes);
    for i in 0..publishes {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        tokio::time::timeout(Duration::from_secs(30), async {
            publisher.write_u8(0).await?;
            publisher.read_u8().await
        })
        .await
        .context("floor server did not acknowledge a publish")??;
        acks.push(Instant::now());
    }
    // Sequence numbers count publishes from 0, so they index `acks`.
    let mut receipts = Receipts::new();
    receipts
        .add("tcp", receivers, |seq| {
            usize::try_from(seq).ok().and_then(|i| acks.get(i).copied())
        })
        .await?;
    let cpu = proc_cpu(pid).delta(cpu_before);
    let clients = proc_cpu(std::process::id()).delta(clients_before);
    let expected = subscribers * publishes;
    let mut figures = receipts.figures(expected);
    figures["server_rss_mib"] = json!(proc_rss_kib(pid) as f64 / 1024.0);
    cpu.record(&mut figures, "server_publish");
    clients.record(&mut figures, "clients_publish");
    report(
        "floor",
        json!({"subscribers": subscribers, "publishes": publishes, "rate": rate, "bytes": bytes}),
        figures,
        None,
    );
    drop((publisher, child));
    receipts.check(expected)
}
