//! `recovery`: a vendor socket that missed M events comes back with `auth.offsets`.
//!
//! Each round: connect, receive one event (the primer) and keep its `offsets`,
//! disconnect; post M `service:updated` to the vendor's room (batches, or one by one,
//! each answered before the next so their order is defined); reconnect with
//! `{"token", "offsets"}` and time CONNECT (`40{…}` sent) → `recovery` received,
//! checking that exactly the M events arrived before it, in order, once each.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::eio::{self, Ws};
use crate::util::{scan_u64, sign};
use crate::{Ctx, Snap, aux_cpu, cpu, per, precise_aux_us, precise_cpu_us};

const VENDOR: &str = "v-recovery";
const SUB: &str = "vr-0";

/// What one round saw.
struct Round {
    recovery_ms: f64,
    connect_ack_ms: Option<f64>,
    first_event_ms: Option<f64>,
    post_ms: f64,
    received: u64,
    unique: u64,
    duplicates: u64,
    out_of_order: u64,
    lost: u64,
    after_recovery: u64,
    unexpected: u64,
    reported_replayed: Option<u64>,
    recovered: bool,
    report: Value,
    server_cpu_us: u64,
    server_cpu_sched_us: Option<f64>,
    bench_cpu_us: u64,
    aux_cpu_us: Option<u64>,
    aux_cpu_sched_us: Option<f64>,
    rss_after: u64,
}

pub async fn recovery(ctx: &Ctx, missed: u64, rounds: usize, batch: usize) -> anyhow::Result<Value> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let token = sign(&ctx.secret, SUB, "vendor", Some(VENDOR))?;
    let s_start = ctx.snap()?;
    let mut done = Vec::with_capacity(rounds);
    for r in 0..rounds {
        done.push(round(ctx, &client, &token, r, missed, batch).await.with_context(|| format!("round {r}"))?);
    }
    let s_end = ctx.snap()?;

    let mut ms: Vec<f64> = done.iter().map(|d| d.recovery_ms).collect();
    ms.sort_by(f64::total_cmp);
    let sum = |f: fn(&Round) -> u64| done.iter().map(f).sum::<u64>();
    let server_cpu = sum(|d| d.server_cpu_us);
    let sched = done.iter().map(|d| d.server_cpu_sched_us).sum::<Option<f64>>();
    let received = sum(|d| d.received);
    let aux = done.iter().map(|d| d.aux_cpu_us).sum::<Option<u64>>();
    let aux_sched = done.iter().map(|d| d.aux_cpu_sched_us).sum::<Option<f64>>();
    let not_recovered = done.iter().filter(|d| !d.recovered || d.reported_replayed != Some(missed)).count() as u64;
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        median(&v)
    };
    Ok(json!({
        "missed": missed,
        "rounds_inside": rounds,
        "recovery_ms": {
            "median": median(&ms),
            "max": ms.last(),
            "min": ms.first(),
            "all": done.iter().map(|d| d.recovery_ms).collect::<Vec<_>>(),
        },
        "recovery_ms_median": median(&ms),
        "recovery_ms_max": ms.last(),
        "connect_ack_ms_median": med(done.iter().filter_map(|d| d.connect_ack_ms).collect()),
        "first_event_ms_median": med(done.iter().filter_map(|d| d.first_event_ms).collect()),
        "post_ms_median": med(done.iter().map(|d| d.post_ms).collect()),
        "expected_replayed": missed * rounds as u64,
        "received": received,
        "received_unique": sum(|d| d.unique),
        "lost": sum(|d| d.lost),
        "duplicates": sum(|d| d.duplicates),
        "out_of_order": sum(|d| d.out_of_order),
        "after_recovery": sum(|d| d.after_recovery),
        "unexpected": sum(|d| d.unexpected),
        "not_recovered": not_recovered,
        "last_report": done.last().map(|d| d.report.clone()),
        // A recovery takes milliseconds: the 10 ms ticks of /proc/<pid>/stat are too coarse,
        // so the per-event figure comes from schedstat when the kernel has it.
        "server_cpu_us": server_cpu,
        "server_cpu_sched_us": sched,
        "server_cpu_per_replayed_event_us": match sched {
            Some(us) if received > 0 => Some(us / received as f64),
            _ => per(server_cpu, received),
        },
        "server_cpu_per_replayed_event_source": if sched.is_some() { "schedstat" } else { "stat_ticks" },
        "aux_cpu_us": aux,
        "aux_cpu_sched_us": aux_sched,
        "aux_cpu_per_replayed_event_us": match aux_sched {
            Some(us) if received > 0 => Some(us / received as f64),
            _ => aux.and_then(|a| per(a, received)),
        },
        "bench_cpu_us": sum(|d| d.bench_cpu_us),
        "server_cpu_whole_run_us": cpu(s_start, s_end).0,
        "server_rss_after_bytes": done.last().map(|d| d.rss_after),
    }))
}

fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

async fn round(
    ctx: &Ctx,
    client: &reqwest::Client,
    token: &str,
    r: usize,
    missed: u64,
    batch: usize,
) -> anyhow::Result<Round> {
    let timeout = ctx.handshake_timeout + ctx.grace;
    // 1. Connect, receive the primer, keep its offsets, leave.
    let mut ws = eio::handshake(&ctx.ws_url, token, ctx.handshake_timeout).await.context("first connect")?;
    let primer = format!("prime-{r}-{}", std::process::id());
    post(ctx, client, "/api/v1/events", service_event(&primer, None)).await.context("posting the primer")?;
    let offsets = tokio::time::timeout(timeout, async {
        loop {
            let t = eio::next_text(&mut ws).await?;
            if t == "2" {
                ws.send(Message::text("3")).await?;
            } else if t.starts_with("42[\"service:updated\"") && t.contains(&primer) {
                let payload = event_payload(&t)?;
                match payload.get("offsets") {
                    Some(Value::Object(o)) if !o.is_empty() => return Ok::<_, anyhow::Error>(Value::Object(o.clone())),
                    _ => bail!("the event carries no `offsets` (is HISTORY_ENABLED=false?): {t:.300}"),
                }
            }
        }
    })
    .await
    .context("the primer never arrived")??;
    close(ws).await;

    // 2. M events to the vendor's room while the socket is away.
    let t_post = Instant::now();
    let mut i = 0u64;
    while i < missed {
        if batch <= 1 {
            post(ctx, client, "/api/v1/events", service_event(&format!("r{r}-{i}"), Some(i))).await?;
            i += 1;
        } else {
            let n = (missed - i).min(batch as u64);
            let events: Vec<String> = (i..i + n).map(|k| service_event(&format!("r{r}-{k}"), Some(k))).collect();
            let answer =
                post(ctx, client, "/api/v1/events/batch", format!("{{\"events\":[{}]}}", events.join(","))).await?;
            let accepted = answer.get("events").and_then(Value::as_array).map_or(0, Vec::len) as u64;
            if accepted != n {
                bail!("batch of {n} answered with {accepted} events: {answer:.300}");
            }
            i += n;
        }
    }
    let post_ms = t_post.elapsed().as_secs_f64() * 1e3;
    // Let the server finish with the departed socket and the posts (the log reader), so
    // the CPU window below holds the recovery only.
    tokio::time::sleep(Duration::from_millis(100)).await;

    // 3. Reconnect with the offsets; time CONNECT → `recovery`.
    let mut ws =
        tokio::time::timeout(ctx.handshake_timeout, eio::open(&ctx.ws_url)).await.context("reconnect timed out")??;
    let connect = format!("40{}", json!({"token": token, "offsets": offsets}));
    let s0: Snap = ctx.snap()?;
    let t0 = Instant::now();
    ws.send(Message::text(connect)).await?;
    let since = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
    let (mut connect_ack_ms, mut first_event_ms) = (None, None);
    let mut seqs: Vec<u64> = Vec::with_capacity(usize::try_from(missed).unwrap_or(0));
    let mut unexpected = 0u64;
    let report = tokio::time::timeout(timeout, async {
        loop {
            let t = eio::next_text(&mut ws).await.context("before `recovery`")?;
            if t == "2" {
                ws.send(Message::text("3")).await?;
            } else if t.starts_with("42[\"recovery\"") {
                return Ok::<_, anyhow::Error>((Instant::now(), event_payload(&t)?));
            } else if t.starts_with("42[\"service:updated\"") {
                first_event_ms.get_or_insert_with(|| since(Instant::now()));
                match scan_u64(&t, "\"benchSeq\":") {
                    Some(seq) if t.contains(&format!("\"r{r}-{seq}\"")) => seqs.push(seq),
                    _ => unexpected += 1,
                }
            } else if t.starts_with("40") {
                connect_ack_ms.get_or_insert_with(|| since(Instant::now()));
            } else if t.starts_with("44") {
                bail!("reconnect refused: {t:.300}");
            } else if t.starts_with("42") {
                unexpected += 1;
            }
        }
    })
    .await;
    let (t_rec, report) = match report {
        Ok(r) => r?,
        Err(_) => bail!("no `recovery` within {timeout:?} of CONNECT ({} of {missed} events received)", seqs.len()),
    };
    let s1 = ctx.snap()?;
    let recovery_ms = since(t_rec);

    // Anything replayed after `recovery` breaks the contract: listen a little longer.
    let mut after_recovery = 0u64;
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m
                && t.as_str().starts_with("42[\"service:updated\"")
            {
                after_recovery += 1;
            }
        }
    })
    .await;
    close(ws).await;

    let mut seen = std::collections::HashSet::new();
    let (mut duplicates, mut out_of_order, mut last) = (0u64, 0u64, None::<u64>);
    for &s in &seqs {
        if !seen.insert(s) {
            duplicates += 1;
        } else if last.is_some_and(|l| s <= l) {
            out_of_order += 1;
        }
        last = Some(last.map_or(s, |l| l.max(s)));
    }
    let unique = seen.iter().filter(|&&s| s < missed).count() as u64;
    Ok(Round {
        recovery_ms,
        connect_ack_ms,
        first_event_ms,
        post_ms,
        received: seqs.len() as u64,
        unique,
        duplicates,
        out_of_order,
        lost: missed - unique,
        after_recovery,
        unexpected,
        reported_replayed: report.get("replayed").and_then(Value::as_u64),
        recovered: report.get("recovered") == Some(&Value::Bool(true)),
        report,
        server_cpu_us: cpu(s0, s1).0,
        server_cpu_sched_us: precise_cpu_us(s0, s1),
        bench_cpu_us: cpu(s0, s1).1,
        aux_cpu_us: aux_cpu(s0, s1),
        aux_cpu_sched_us: precise_aux_us(s0, s1),
        rss_after: s1.server.rss_bytes,
    })
}

/// A `service:updated` to the bench vendor; `seq` goes in as `benchSeq`.
fn service_event(id: &str, seq: Option<u64>) -> String {
    let seq = seq.map(|s| format!(",\"benchSeq\":{s}")).unwrap_or_default();
    format!("{{\"type\":\"service:updated\",\"service\":{{\"id\":\"{id}\",\"vendorId\":\"{VENDOR}\"{seq}}}}}")
}

/// POSTs `body` and returns the 202's JSON; anything else is an error.
async fn post(ctx: &Ctx, client: &reqwest::Client, path: &str, body: String) -> anyhow::Result<Value> {
    let r = client
        .post(format!("{}{path}", ctx.base))
        .header("authorization", format!("Bearer {}", ctx.api_token))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    if status != 202 {
        bail!("POST {path}: HTTP {status}: {text:.300}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The first argument of a `42["name",{…}]` frame.
fn event_payload(frame: &str) -> anyhow::Result<Value> {
    let v: Value = serde_json::from_str(&frame[2..]).with_context(|| format!("bad event frame {frame:.200}"))?;
    Ok(v.get(1).cloned().unwrap_or(Value::Null))
}

/// Closes our side and waits (briefly) for the server's close, so the socket is gone
/// before the next step.
async fn close(mut ws: Ws) {
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = ws.next().await {} }).await;
}
