//! Clock, token signing, byte scanning, histograms and the server meter.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

static START: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds since the first call; the same clock stamps and receives.
pub fn now_ns() -> u64 {
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// 1 µs .. 10 min, 3 significant figures.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// The unsigned integer right after `key` in `text`, if any.
pub fn scan_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let rest = &text.as_bytes()[at..];
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    std::str::from_utf8(&rest[..n]).ok()?.parse().ok()
}

/// Latency figures in ms from a µs histogram.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64) / 1000.0;
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "mean_ms": h.mean() / 1000.0,
    })
}

/// An HS256 token with `sub`, `exp` (one day), `role` and, for vendors, `vendorId`.
pub fn sign(secret: &str, sub: &str, role: &str, vendor_id: Option<&str>) -> anyhow::Result<String> {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 86_400;
    let mut claims = json!({"sub": sub, "exp": exp, "role": role});
    if let Some(v) = vendor_id {
        claims["vendorId"] = json!(v);
    }
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Reads the server's CPU time and RSS from /proc by PID.
pub struct Meter {
    pid: u32,
    ticks_per_sec: u64,
}

/// One reading: CPU time used so far (µs) and resident set size (bytes).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub cpu_us: u64,
    /// The user-space part of `cpu_us` (the rest is the kernel's).
    pub user_us: u64,
    pub rss_bytes: u64,
    /// CPU time of the threads alive now, ns, from `/proc/<pid>/task/*/schedstat`: exact
    /// where `cpu_us` has 10 ms ticks, but blind to threads that exit in between.
    pub sched_ns: Option<u64>,
}

impl Meter {
    pub fn new(pid: u32) -> anyhow::Result<Meter> {
        // `getconf CLK_TCK`; 100 on practically every Linux if getconf is missing.
        let ticks_per_sec = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(100);
        let m = Meter { pid, ticks_per_sec };
        m.sample()?;
        Ok(m)
    }

    pub fn ticks_per_sec(&self) -> u64 {
        self.ticks_per_sec
    }

    pub fn sample(&self) -> anyhow::Result<Sample> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the `)` closing comm: state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow::anyhow!("bad /proc stat"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: u64 = fields.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let ticks: u64 = utime + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(Sample {
            cpu_us: ticks * 1_000_000 / self.ticks_per_sec,
            user_us: utime * 1_000_000 / self.ticks_per_sec,
            rss_bytes: rss_kb * 1024,
            sched_ns: self.sched_ns(),
        })
    }

    fn sched_ns(&self) -> Option<u64> {
        let mut total = 0u64;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid)).ok()? {
            let Ok(task) = task else { continue };
            // A thread that exits between the listing and the read is skipped.
            let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
            total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(total)
    }
}

/// A tiny xorshift generator: enough to pick random targets without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % (n.max(1) as u64)) as usize
    }
}
