//! `bench`: a load generator and meter for fixrx-realtime (or a server with the same
//! API). Speaks Engine.IO v4 / Socket.IO v5 over WebSocket itself, signs its own
//! HS256 tokens, drives the REST API open-loop and reads the server's CPU time and
//! RSS from /proc by PID. One JSON line of figures on stdout, a summary on stderr.

mod eio;
mod recovery;
mod util;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use eio::{Local, Outgoing, Role};
use util::{Meter, Rng, Sample, latency_json, new_hist, now_ns, sign};

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Load generator and meter for fixrx-realtime")]
struct Cli {
    /// PID of the server process, for CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: u32,
    /// Base URL of the server, e.g. http://127.0.0.1:3001
    #[arg(long)]
    url: String,
    /// Another process to meter over the same windows (e.g. the server's redis-server):
    /// its CPU is reported as `aux_cpu_us`.
    #[arg(long)]
    aux_pid: Option<u32>,
    /// HS256 secret the server verifies socket tokens with.
    #[arg(long)]
    jwt_secret: String,
    /// Bearer token for the REST API.
    #[arg(long)]
    api_token: String,
    /// Handshakes in flight at once while opening sockets. Keep it under the server's
    /// listen backlog (often 128): an overflowing SYN queue costs a 1 s retransmit.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Give up on one socket's handshake after this many seconds.
    #[arg(long, default_value_t = 10)]
    handshake_timeout_secs: u64,
    /// REST requests in flight at most; beyond that the generator counts sends as skipped.
    #[arg(long, default_value_t = 256)]
    http_in_flight: usize,
    /// How long to wait for deliveries after the last send before counting them lost.
    #[arg(long, default_value_t = 3.0)]
    grace_secs: f64,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug, Clone)]
enum Scenario {
    /// Open N authenticated sockets, hold them idle; handshake rate, CPU and RSS per connection.
    Connections {
        #[arg(long)]
        count: usize,
        /// Seconds to hold the sockets open after the last handshake.
        #[arg(long, default_value_t = 5.0)]
        hold_secs: f64,
    },
    /// Open N sockets and hold them, drop them all at once and reconnect them all at once
    /// (a deploy or a network blip), hold again; RSS per connection before and after.
    ReconnectStorm {
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 5.0)]
        hold_secs: f64,
    },
    /// N user sockets; REST `booking:status_changed` events open-loop at R/s to random users.
    RestFanout {
        #[arg(long)]
        users: usize,
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        seconds: f64,
    },
    /// N vendor sockets in `vendor:v-bench`; E `service:updated` events posted to that vendor.
    Broadcast {
        #[arg(long)]
        sockets: usize,
        #[arg(long)]
        events: u64,
        /// Events posted per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
    },
    /// P user/vendor pairs; users send acked `chat:send` to their vendor at R/s overall.
    Chat {
        #[arg(long)]
        pairs: usize,
        #[arg(long)]
        rate: f64,
        #[arg(long)]
        seconds: f64,
    },
    /// A vendor socket misses M events, reconnects with `auth.offsets`; time to `recovery`.
    Recovery {
        /// Events posted to the vendor's room while the socket is away.
        #[arg(long, default_value_t = 1000)]
        missed: u64,
        /// Disconnect / post / recover cycles in this run.
        #[arg(long, default_value_t = 5)]
        rounds_inside: usize,
        /// Events per `POST /api/v1/events/batch` (at most 500); 1 posts them one by one.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

struct Ctx {
    meter: Meter,
    /// This process, to show when the generator itself is the bottleneck.
    me: Meter,
    /// `--aux-pid`, if given.
    aux: Option<Meter>,
    base: String,
    ws_url: String,
    secret: String,
    api_token: String,
    connect_concurrency: usize,
    handshake_timeout: Duration,
    http_in_flight: usize,
    grace: Duration,
}

/// Sockets opened for a run.
struct Fleet {
    tasks: Vec<JoinHandle<Option<Local>>>,
    senders: Vec<mpsc::UnboundedSender<Outgoing>>,
    opened: u64,
    failed: u64,
    first_error: Option<String>,
    stop: watch::Sender<bool>,
    received: Arc<AtomicU64>,
}

/// One socket to open: its token, its role, whether it sends (chat users).
struct Spec {
    token: String,
    role: Role,
    sends: bool,
}

async fn open_fleet(ctx: &Ctx, specs: Vec<Spec>) -> Fleet {
    let (stop, stop_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(ctx.connect_concurrency.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let n = specs.len();
    let mut tasks = Vec::with_capacity(n);
    let mut senders = Vec::new();
    for spec in specs {
        let out_rx = spec.sends.then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            rx
        });
        let sem = sem.clone();
        let done = done_tx.clone();
        let url = ctx.ws_url.clone();
        let timeout = ctx.handshake_timeout;
        let stop_rx = stop_rx.clone();
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.ok()?;
            let ws = match eio::handshake(&url, &spec.token, timeout).await {
                Ok(ws) => ws,
                Err(e) => {
                    let _ = done.send(Err(format!("{e:#}")));
                    return None;
                }
            };
            drop(permit);
            let _ = done.send(Ok(()));
            drop(done);
            Some(eio::run(ws, spec.role, out_rx, stop_rx, &received).await)
        }));
    }
    drop(done_tx);
    let (mut opened, mut failed, mut first_error) = (0, 0, None);
    for _ in 0..n {
        let Some(r) = done_rx.recv().await else { break };
        match r {
            Ok(()) => opened += 1,
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    Fleet { tasks, senders, opened, failed, first_error, stop, received }
}

/// Figures merged from every socket.
struct Merged {
    latency: hdrhistogram::Histogram<u64>,
    ack: hdrhistogram::Histogram<u64>,
    unique: u64,
    duplicates: u64,
    ack_errors: u64,
    dropped: u64,
}

async fn close_fleet(fleet: Fleet) -> Merged {
    let _ = fleet.stop.send(true);
    let mut m = Merged { latency: new_hist(), ack: new_hist(), unique: 0, duplicates: 0, ack_errors: 0, dropped: 0 };
    for t in fleet.tasks {
        if let Ok(Some(local)) = t.await {
            let _ = m.latency.add(&local.latency);
            let _ = m.ack.add(&local.ack);
            let set: HashSet<u64> = local.seqs.iter().copied().collect();
            m.unique += set.len() as u64;
            m.duplicates += (local.seqs.len() - set.len()) as u64;
            m.ack_errors += local.ack_errors;
            m.dropped += u64::from(local.dropped);
        }
    }
    m
}

/// What the open-loop REST driver achieved.
struct Posted {
    attempted: u64,
    accepted: u64,
    rejected: u64,
    errors: u64,
    skipped: u64,
    send_secs: f64,
    first_error: Option<String>,
}

impl Posted {
    fn json(&self, target_rate: f64) -> Value {
        json!({
            "target_rate": target_rate,
            "attempted": self.attempted,
            "achieved_rate": self.attempted as f64 / self.send_secs.max(1e-9),
            "accepted_202": self.accepted,
            "rejected": self.rejected,
            "errors": self.errors,
            "skipped_generator_saturated": self.skipped,
            "send_secs": self.send_secs,
            "first_error": self.first_error,
        })
    }
}

/// Posts `total` events open-loop at `rate`/s: sends are scheduled by the clock, not by
/// responses; `body(seq, sent_ns)` builds each one.
async fn post_open_loop(ctx: &Ctx, rate: f64, total: u64, body: impl Fn(u64, u64) -> String) -> anyhow::Result<Posted> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(ctx.http_in_flight)
        .timeout(Duration::from_secs(30))
        .build()?;
    let endpoint = format!("{}/api/v1/events", ctx.base);
    let auth = format!("Bearer {}", ctx.api_token);
    let sem = Arc::new(Semaphore::new(ctx.http_in_flight.max(1)));
    let mut tasks: Vec<JoinHandle<Result<u16, String>>> = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let (mut seq, mut skipped) = (0u64, 0u64);
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while seq < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while seq < due {
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                skipped += 1;
                seq += 1;
                continue;
            };
            let req = client
                .post(&endpoint)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(body(seq, now_ns()));
            tasks.push(tokio::spawn(async move {
                let r = req.send().await.map(|r| r.status().as_u16()).map_err(|e| format!("{e:#}"));
                drop(permit);
                r
            }));
            seq += 1;
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    let mut p = Posted {
        attempted: tasks.len() as u64,
        accepted: 0,
        rejected: 0,
        errors: 0,
        skipped,
        send_secs,
        first_error: None,
    };
    for t in tasks {
        match t.await {
            Ok(Ok(202)) => p.accepted += 1,
            Ok(Ok(code)) => {
                p.rejected += 1;
                p.first_error.get_or_insert(format!("HTTP {code}"));
            }
            Ok(Err(e)) => {
                p.errors += 1;
                p.first_error.get_or_insert(e);
            }
            Err(e) => {
                p.errors += 1;
                p.first_error.get_or_insert(e.to_string());
            }
        }
    }
    Ok(p)
}

/// Waits until `received` reaches `expected` or the grace period after the last send ends.
async fn await_deliveries(received: &AtomicU64, expected: u64, grace: Duration) {
    let deadline = Instant::now() + grace;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn per(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The user-space share of the server's CPU between two readings.
fn user_share(a: Snap, b: Snap) -> Option<f64> {
    let total = cpu_delta(a.server, b.server);
    (total > 0).then(|| b.server.user_us.saturating_sub(a.server.user_us) as f64 / total as f64)
}

fn cpu_delta(a: Sample, b: Sample) -> u64 {
    b.cpu_us.saturating_sub(a.cpu_us)
}

/// The server's and this process's readings at one instant.
#[derive(Clone, Copy)]
struct Snap {
    server: Sample,
    bench: Sample,
    aux: Option<Sample>,
}

impl Ctx {
    fn snap(&self) -> anyhow::Result<Snap> {
        let aux = self.aux.as_ref().map(Meter::sample).transpose()?;
        Ok(Snap { server: self.meter.sample()?, bench: self.me.sample()?, aux })
    }
}

/// The server's CPU between two snapshots from schedstat, µs (fractional).
fn precise_cpu_us(a: Snap, b: Snap) -> Option<f64> {
    sched_us(Some(a.server), Some(b.server))
}

/// The `--aux-pid` process's CPU between two snapshots from schedstat, µs (fractional).
fn precise_aux_us(a: Snap, b: Snap) -> Option<f64> {
    sched_us(a.aux, b.aux)
}

fn sched_us(a: Option<Sample>, b: Option<Sample>) -> Option<f64> {
    Some(b?.sched_ns?.saturating_sub(a?.sched_ns?) as f64 / 1000.0)
}

/// CPU used by the `--aux-pid` process between two snapshots, µs.
fn aux_cpu(a: Snap, b: Snap) -> Option<u64> {
    Some(cpu_delta(a.aux?, b.aux?))
}

/// CPU used by the server and by the bench between two snapshots, µs.
fn cpu(a: Snap, b: Snap) -> (u64, u64) {
    (cpu_delta(a.server, b.server), cpu_delta(a.bench, b.bench))
}

fn fleet_json(f: &Fleet) -> Value {
    json!({"opened": f.opened, "failed": f.failed, "first_error": f.first_error})
}

fn check_fleet(f: &Fleet) -> anyhow::Result<()> {
    if f.opened == 0 {
        anyhow::bail!("no socket connected: {}", f.first_error.as_deref().unwrap_or("?"));
    }
    Ok(())
}

async fn connections(ctx: &Ctx, count: usize, hold_secs: f64) -> anyhow::Result<Value> {
    let specs = idle_specs(ctx, count)?;
    let s0 = ctx.snap()?;
    let t0 = Instant::now();
    let fleet = open_fleet(ctx, specs).await;
    let open_secs = t0.elapsed().as_secs_f64();
    let s1 = ctx.snap()?;
    tokio::time::sleep(Duration::from_secs_f64(hold_secs)).await;
    let s2 = ctx.snap()?;
    let fleet_figures = fleet_json(&fleet);
    let opened = fleet.opened;
    let merged = close_fleet(fleet).await;
    Ok(json!({
        "sockets": fleet_figures,
        "open_secs": open_secs,
        "handshakes_per_sec": opened as f64 / open_secs.max(1e-9),
        "server_cpu_us": cpu(s0, s1).0,
        "server_user_share": user_share(s0, s1),
        "server_cpu_per_handshake_us": per(cpu(s0, s1).0, opened),
        "bench_cpu_us": cpu(s0, s1).1,
        "server_cpu_idle_hold_us": cpu(s1, s2).0,
        "server_rss_before_bytes": s0.server.rss_bytes,
        "server_rss_after_bytes": s2.server.rss_bytes,
        "server_rss_per_connection_bytes":
            (opened > 0).then(|| (s2.server.rss_bytes as f64 - s0.server.rss_bytes as f64) / opened as f64),
        "dropped_during_hold": merged.dropped,
    }))
}

fn idle_specs(ctx: &Ctx, count: usize) -> anyhow::Result<Vec<Spec>> {
    (0..count)
        .map(|i| {
            Ok(Spec { token: sign(&ctx.secret, &format!("u-conn-{i}"), "user", None)?, role: Role::Idle, sends: false })
        })
        .collect()
}

async fn reconnect_storm(ctx: &Ctx, count: usize, hold_secs: f64) -> anyhow::Result<Value> {
    let hold = Duration::from_secs_f64(hold_secs);
    let s0 = ctx.snap()?;
    let first = open_fleet(ctx, idle_specs(ctx, count)?).await;
    tokio::time::sleep(hold).await;
    let s1 = ctx.snap()?;
    let first_figures = fleet_json(&first);
    let first_dropped = close_fleet(first).await.dropped;
    // Every socket gone at once, then every one back at once.
    let t0 = Instant::now();
    let again = open_fleet(ctx, idle_specs(ctx, count)?).await;
    let reconnect_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(hold).await;
    let s2 = ctx.snap()?;
    let again_figures = fleet_json(&again);
    let opened = again.opened;
    let merged = close_fleet(again).await;
    let per_conn =
        |s: Snap, n: u64| (n > 0).then(|| (s.server.rss_bytes as f64 - s0.server.rss_bytes as f64) / n as f64);
    Ok(json!({
        "sockets": again_figures,
        "first_sockets": first_figures,
        "reconnect_secs": reconnect_secs,
        "server_cpu_per_reconnect_us": per(cpu(s1, s2).0, opened),
        "server_user_share": user_share(s1, s2),
        "server_rss_before_bytes": s0.server.rss_bytes,
        "server_rss_first_bytes": s1.server.rss_bytes,
        "server_rss_after_bytes": s2.server.rss_bytes,
        "server_rss_per_connection_first_bytes": per_conn(s1, count as u64),
        "server_rss_per_connection_bytes": per_conn(s2, opened),
        "dropped_during_hold": merged.dropped + first_dropped,
    }))
}

async fn rest_fanout(ctx: &Ctx, users: usize, rate: f64, seconds: f64) -> anyhow::Result<Value> {
    let role = Role::Receiver { event: "booking:status_changed" };
    let specs = (0..users)
        .map(|i| {
            Ok(Spec {
                token: sign(&ctx.secret, &format!("u-bench-{i}"), "user", None)?,
                role: role.clone(),
                sends: false,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fleet = open_fleet(ctx, specs).await;
    check_fleet(&fleet)?;
    let total = (rate * seconds).round() as u64;
    let s0 = ctx.snap()?;
    let rng = std::sync::Mutex::new(Rng::new(0x9e37_79b9_7f4a_7c15));
    let posted = post_open_loop(ctx, rate, total, |seq, ns| {
        let user = rng.lock().map(|mut r| r.below(users)).unwrap_or(0);
        format!(
            "{{\"type\":\"booking:status_changed\",\"booking\":{{\"id\":\"b{seq}\",\"userId\":\"u-bench-{user}\",\"vendorId\":\"v-bench-none\",\"status\":\"s\",\"sentAtNs\":{ns},\"benchSeq\":{seq}}}}}"
        )
    })
    .await?;
    let expected = posted.accepted;
    deliveries(ctx, fleet, &posted, rate, expected, s0).await
}

async fn broadcast(ctx: &Ctx, sockets: usize, events: u64, rate: f64) -> anyhow::Result<Value> {
    let role = Role::Receiver { event: "service:updated" };
    let specs = (0..sockets)
        .map(|i| {
            Ok(Spec {
                token: sign(&ctx.secret, &format!("vb-{i}"), "vendor", Some("v-bench"))?,
                role: role.clone(),
                sends: false,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fleet = open_fleet(ctx, specs).await;
    check_fleet(&fleet)?;
    let s0 = ctx.snap()?;
    let posted = post_open_loop(ctx, rate, events, |seq, ns| {
        format!(
            "{{\"type\":\"service:updated\",\"service\":{{\"id\":\"s{seq}\",\"vendorId\":\"v-bench\",\"sentAtNs\":{ns},\"benchSeq\":{seq}}}}}"
        )
    })
    .await?;
    let expected = posted.accepted * fleet.opened;
    deliveries(ctx, fleet, &posted, rate, expected, s0).await
}

/// Waits for `expected` deliveries (or the grace period), closes the fleet and reports
/// what arrived, with the server CPU since `s0`.
async fn deliveries(
    ctx: &Ctx,
    fleet: Fleet,
    posted: &Posted,
    rate: f64,
    expected: u64,
    s0: Snap,
) -> anyhow::Result<Value> {
    await_deliveries(&fleet.received, expected, ctx.grace).await;
    let s1 = ctx.snap()?;
    let fleet_figures = fleet_json(&fleet);
    let m = close_fleet(fleet).await;
    let delivered = m.unique + m.duplicates;
    Ok(json!({
        "sockets": fleet_figures,
        "rest": posted.json(rate),
        "expected_deliveries": expected,
        "delivered": delivered,
        "delivered_unique": m.unique,
        "lost": expected.saturating_sub(m.unique),
        "duplicates": m.duplicates,
        "latency": latency_json(&m.latency),
        "server_cpu_us": cpu(s0, s1).0,
        "server_user_share": user_share(s0, s1),
        "server_cpu_per_delivery_us": per(cpu(s0, s1).0, delivered),
        "bench_cpu_us": cpu(s0, s1).1,
        "server_cpu_sched_us": precise_cpu_us(s0, s1),
        "aux_cpu_us": aux_cpu(s0, s1),
        "aux_cpu_per_delivery_us": aux_cpu(s0, s1).and_then(|a| per(a, delivered)),
        "server_rss_before_bytes": s0.server.rss_bytes,
        "server_rss_after_bytes": s1.server.rss_bytes,
        "dropped_sockets": m.dropped,
    }))
}

async fn chat(ctx: &Ctx, pairs: usize, rate: f64, seconds: f64) -> anyhow::Result<Value> {
    // Vendors first so users' first messages have someone to reach.
    let vendors = (0..pairs)
        .map(|i| {
            let v = format!("cv-{i}");
            Ok(Spec { token: sign(&ctx.secret, &v, "vendor", Some(&v))?, role: Role::ChatVendor, sends: false })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let vendor_fleet = open_fleet(ctx, vendors).await;
    check_fleet(&vendor_fleet)?;
    let users = (0..pairs)
        .map(|i| {
            Ok(Spec {
                token: sign(&ctx.secret, &format!("cu-{i}"), "user", None)?,
                role: Role::ChatUser { vendor: format!("cv-{i}") },
                sends: true,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let user_fleet = open_fleet(ctx, users).await;
    check_fleet(&user_fleet)?;

    let total = (rate * seconds).round() as u64;
    let mut rng = Rng::new(0x2545_f491_4f6c_dd1d);
    let s0 = ctx.snap()?;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut seq, mut unsent) = (0u64, 0u64);
    while seq < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while seq < due {
            let tx = &user_fleet.senders[rng.below(user_fleet.senders.len())];
            if tx.send((seq, now_ns())).is_err() {
                unsent += 1;
            }
            seq += 1;
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    let sent = total - unsent;
    await_deliveries(&vendor_fleet.received, sent, ctx.grace).await;
    // A message's ack may reach its sender after the relay reached the vendor.
    await_deliveries(&user_fleet.received, sent, ctx.grace).await;
    let s1 = ctx.snap()?;
    let (uf, vf) = (fleet_json(&user_fleet), fleet_json(&vendor_fleet));
    let users = close_fleet(user_fleet).await;
    let vendors = close_fleet(vendor_fleet).await;
    Ok(json!({
        "sockets": {"users": uf, "vendors": vf},
        "target_rate": rate,
        "sent": sent,
        "achieved_rate": sent as f64 / send_secs.max(1e-9),
        "acks": users.ack.len(),
        "ack_errors": users.ack_errors,
        "acks_missing": sent.saturating_sub(users.ack.len()),
        "relayed": vendors.unique + vendors.duplicates,
        "relays_lost": sent.saturating_sub(vendors.unique),
        "relay_duplicates": vendors.duplicates,
        "ack_latency": latency_json(&users.ack),
        "relay_latency": latency_json(&vendors.latency),
        "server_cpu_us": cpu(s0, s1).0,
        "server_user_share": user_share(s0, s1),
        "server_cpu_per_message_us": per(cpu(s0, s1).0, sent),
        "bench_cpu_us": cpu(s0, s1).1,
        "dropped_sockets": users.dropped + vendors.dropped,
    }))
}

fn summary(v: &Value) -> String {
    let f = |p: &str| v.pointer(p).map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    match v["scenario"].as_str().unwrap_or("") {
        "connections" => format!(
            "connections: opened {} failed {} | {} handshakes/s | server CPU {} µs/handshake | RSS {} B/conn | dropped {}",
            f("/sockets/opened"),
            f("/sockets/failed"),
            f("/handshakes_per_sec"),
            f("/server_cpu_per_handshake_us"),
            f("/server_rss_per_connection_bytes"),
            f("/dropped_during_hold")
        ),
        "reconnect-storm" => format!(
            "reconnect storm: reopened {} failed {} in {} s | server CPU {} µs/reconnect | RSS {} B/conn before, {} after | dropped {}",
            f("/sockets/opened"),
            f("/sockets/failed"),
            f("/reconnect_secs"),
            f("/server_cpu_per_reconnect_us"),
            f("/server_rss_per_connection_first_bytes"),
            f("/server_rss_per_connection_bytes"),
            f("/dropped_during_hold")
        ),
        "rest-fanout" | "broadcast" => format!(
            "{}: sent {} at {}/s (202: {}) | delivered {} lost {} dup {} | latency ms p50 {} p90 {} p99 {} max {} | server CPU {} µs/delivery",
            v["scenario"].as_str().unwrap_or(""),
            f("/rest/attempted"),
            f("/rest/achieved_rate"),
            f("/rest/accepted_202"),
            f("/delivered"),
            f("/lost"),
            f("/duplicates"),
            f("/latency/p50_ms"),
            f("/latency/p90_ms"),
            f("/latency/p99_ms"),
            f("/latency/max_ms"),
            f("/server_cpu_per_delivery_us")
        ),
        "recovery" => format!(
            "recovery: {} missed x {} rounds | recovery ms median {} max {} (CONNECT ack {}, first event {}) | lost {} dup {} out of order {} not recovered {} | server CPU {} µs/replayed event",
            f("/missed"),
            f("/rounds_inside"),
            f("/recovery_ms/median"),
            f("/recovery_ms/max"),
            f("/connect_ack_ms_median"),
            f("/first_event_ms_median"),
            f("/lost"),
            f("/duplicates"),
            f("/out_of_order"),
            f("/not_recovered"),
            f("/server_cpu_per_replayed_event_us")
        ),
        _ => format!(
            "chat: sent {} at {}/s | acks {} (errors {}) ack ms p50 {} p99 {} | relayed {} lost {} relay ms p50 {} p99 {} | server CPU {} µs/message",
            f("/sent"),
            f("/achieved_rate"),
            f("/acks"),
            f("/ack_errors"),
            f("/ack_latency/p50_ms"),
            f("/ack_latency/p99_ms"),
            f("/relayed"),
            f("/relays_lost"),
            f("/relay_latency/p50_ms"),
            f("/relay_latency/p99_ms"),
            f("/server_cpu_per_message_us")
        ),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    now_ns();
    let base = cli.url.trim_end_matches('/').to_owned();
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        format!("ws://{}", base.strip_prefix("http://").unwrap_or(&base))
    };
    let ctx = Ctx {
        me: Meter::new(std::process::id())?,
        aux: cli
            .aux_pid
            .map(|pid| Meter::new(pid).with_context(|| format!("reading /proc/{pid} (is --aux-pid right?)")))
            .transpose()?,
        meter: Meter::new(cli.server_pid)
            .with_context(|| format!("reading /proc/{} (is --server-pid right?)", cli.server_pid))?,
        ws_url: format!("{ws_base}/socket.io/?EIO=4&transport=websocket"),
        base,
        secret: cli.jwt_secret.clone(),
        api_token: cli.api_token.clone(),
        connect_concurrency: cli.connect_concurrency,
        handshake_timeout: Duration::from_secs(cli.handshake_timeout_secs),
        http_in_flight: cli.http_in_flight,
        grace: Duration::from_secs_f64(cli.grace_secs),
    };
    let (name, params, figures) = match cli.scenario.clone() {
        Scenario::Connections { count, hold_secs } => {
            ("connections", json!({"count": count, "hold_secs": hold_secs}), connections(&ctx, count, hold_secs).await?)
        }
        Scenario::ReconnectStorm { count, hold_secs } => (
            "reconnect-storm",
            json!({"count": count, "hold_secs": hold_secs}),
            reconnect_storm(&ctx, count, hold_secs).await?,
        ),
        Scenario::RestFanout { users, rate, seconds } => (
            "rest-fanout",
            json!({"users": users, "rate": rate, "seconds": seconds}),
            rest_fanout(&ctx, users, rate, seconds).await?,
        ),
        Scenario::Broadcast { sockets, events, rate } => (
            "broadcast",
            json!({"sockets": sockets, "events": events, "rate": rate}),
            broadcast(&ctx, sockets, events, rate).await?,
        ),
        Scenario::Chat { pairs, rate, seconds } => {
            ("chat", json!({"pairs": pairs, "rate": rate, "seconds": seconds}), chat(&ctx, pairs, rate, seconds).await?)
        }
        Scenario::Recovery { missed, rounds_inside, batch } => {
            if batch > 500 {
                anyhow::bail!("--batch: the server takes at most 500 events per batch");
            }
            (
                "recovery",
                json!({"missed": missed, "rounds_inside": rounds_inside, "batch": batch}),
                recovery::recovery(&ctx, missed, rounds_inside.max(1), batch).await?,
            )
        }
    };
    let mut out = json!({
        "scenario": name,
        "params": params,
        "server": {"pid": cli.server_pid, "url": ctx.base, "clk_tck": ctx.meter.ticks_per_sec(), "aux_pid": cli.aux_pid},
        "settings": {
            "connect_concurrency": cli.connect_concurrency,
            "http_in_flight": cli.http_in_flight,
            "grace_secs": cli.grace_secs,
        },
    });
    if let (Some(o), Value::Object(fig)) = (out.as_object_mut(), figures) {
        o.extend(fig);
    }
    println!("{out}");
    eprintln!("{}", summary(&out));
    Ok(())
}
