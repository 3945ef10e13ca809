//! The standard `process_*` metrics (CPU, memory, file descriptors, start time), read
//! from `/proc/self` at each scrape, under the names every Prometheus client uses, so
//! stock dashboards and alerts work unchanged. Linux only: elsewhere none is exported.
//!
//! A figure that cannot be read (a `/proc` without it, a sandbox) is left out of that
//! scrape, and said once at debug level: `/metrics` itself never fails for it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Registered on an unprefixed registry: the names are `process_*`, not `fixrx_process_*`.
#[derive(Debug)]
pub struct ProcessCollector {
    #[cfg(target_os = "linux")]
    system: linux::System,
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        ProcessCollector {
            #[cfg(target_os = "linux")]
            system: linux::System::load(),
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for ProcessCollector {
    #[cfg(target_os = "linux")]
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.system.encode(encoder)
    }

    #[cfg(not(target_os = "linux"))]
    fn encode(&self, _encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::atomic::{AtomicBool, Ordering};

    use procfs::process::{LimitValue, Process};
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::registry::Unit;

    /// What does not change while the process runs, read once.
    #[derive(Debug)]
    pub struct System {
        ticks_per_second: f64,
        page_size: u64,
        /// Unix seconds; `None` when `/proc/stat` or our own stat could not be read.
        start_time: Option<f64>,
        /// A failed read is logged once, not at every scrape.
        warned: AtomicBool,
    }

    impl System {
        pub fn load() -> System {
            // `sysconf(_SC_CLK_TCK)`: 100 on every mainstream kernel, but not promised.
            let ticks_per_second = procfs::ticks_per_second().max(1) as f64;
            let start_time = Process::myself()
                .and_then(|me| me.stat())
                .and_then(|stat| Ok(procfs::boot_time_secs()? as f64 + stat.starttime as f64 / ticks_per_second))
                .ok();
            System { ticks_per_second, page_size: procfs::page_size(), start_time, warned: AtomicBool::new(false) }
        }

        fn unreadable(&self, what: &str, e: &procfs::ProcError) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(what, error = %e, "process metrics: /proc unreadable; left out of /metrics");
            }
        }

        pub fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let me = match Process::myself() {
                Ok(me) => me,
                Err(e) => {
                    self.unreadable("/proc/self", &e);
                    return Ok(());
                }
            };
            match me.stat() {
                Ok(stat) => {
                    let cpu = (stat.utime + stat.stime) as f64 / self.ticks_per_second;
                    let cpu = ConstCounter::new(cpu);
                    let help = "Total user and system CPU time spent in seconds.";
                    cpu.encode(encoder.encode_descriptor(
                        "process_cpu",
                        help,
                        Some(&Unit::Seconds),
                        cpu.metric_type(),
                    )?)?;
                    let rss = gauge(stat.rss.saturating_mul(self.page_size));
                    let help = "Resident memory size in bytes.";
                    rss.encode(encoder.encode_descriptor(
                        "process_resident_memory",
                        help,
                        Some(&Unit::Bytes),
                        rss.metric_type(),
                    )?)?;
                    let vsize = gauge(stat.vsize);
                    let help = "Virtual memory size in bytes.";
                    vsize.encode(encoder.encode_descriptor(
                        "process_virtual_memory",
                        help,
                        Some(&Unit::Bytes),
                        vsize.metric_type(),
                    )?)?;
                    let threads = ConstGauge::new(stat.num_threads);
                    let help = "Number of OS threads in the process.";
                    threads.encode(encoder.encode_descriptor(
                        "process_threads",
                        help,
                        None,
                        threads.metric_type(),
                    )?)?;
                }
                Err(e) => self.unreadable("/proc/self/stat", &e),
            }
            match me.fd_count() {
                Ok(open) => {
                    let open = gauge(u64::try_from(open).unwrap_or(u64::MAX));
                    let help = "Number of open file descriptors.";
                    open.encode(encoder.encode_descriptor("process_open_fds", help, None, open.metric_type())?)?;
                }
                Err(e) => self.unreadable("/proc/self/fd", &e),
            }
            match me.limits() {
                Ok(limits) => {
                    // The soft limit is the one `open` and `accept` fail at.
                    let max = match limits.max_open_files.soft_limit {
                        LimitValue::Value(n) => n,
                        LimitValue::Unlimited => u64::MAX,
                    };
                    let max = gauge(max);
                    let help = "Maximum number of open file descriptors.";
                    max.encode(encoder.encode_descriptor("process_max_fds", help, None, max.metric_type())?)?;
                }
                Err(e) => self.unreadable("/proc/self/limits", &e),
            }
            if let Some(start) = self.start_time {
                let start = ConstGauge::new(start);
                let help = "Start time of the process since the Unix epoch in seconds.";
                start.encode(encoder.encode_descriptor(
                    "process_start_time",
                    help,
                    Some(&Unit::Seconds),
                    start.metric_type(),
                )?)?;
            }
            Ok(())
        }
    }

    /// A gauge of a count or a size (Prometheus gauges are signed).
    fn gauge(n: u64) -> ConstGauge<i64> {
        ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
