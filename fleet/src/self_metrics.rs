//! What every locus daemon says about itself on `/metrics`: `locus_build_info{version,
//! revision}` and the `process_*` series of the Prometheus client guidelines (CPU, memory,
//! file descriptors, start time), read from `/proc/self` at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

use crate::metrics::Registry;

/// The version of this build (the workspace version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision this build comes from (`build.rs`): short hash, `-dirty` when the work tree
/// had changes, "unknown" outside a git checkout unless `LOCUS_GIT_REVISION` was set.
pub const REVISION: &str = env!("LOCUS_GIT_REVISION");

/// `VERSION (REVISION)`, for `locus --version`.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("LOCUS_GIT_REVISION"),
    ")"
);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

/// Registers `locus_build_info` and the `process_*` collector in `registry`.
pub fn register(registry: &mut Registry) {
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: VERSION.into(),
            revision: REVISION.into(),
        })
        .set(1);
    registry.register(
        "locus_build_info",
        "The locus build: version and git revision (always 1)",
        build,
    );
    registry.register_collector(Box::new(ProcessCollector));
}

/// Reads the process's own CPU time, memory, descriptors and start time on each scrape.
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self` told at one scrape; missing fields are left out of the output.
#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

/// Linux reports `utime`, `stime` and `starttime` in clock ticks of `USER_HZ`, which the
/// kernel fixes at 100 for user space on every architecture it supports.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut s = Self::parse(&stat, &status, &limits, &boot);
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        s
    }

    /// Parses the text of `/proc/self/{stat,status,limits}` and `/proc/stat`.
    fn parse(stat: &str, status: &str, limits: &str, proc_stat: &str) -> Self {
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        // `fields[0]` is field 3 (state): field n is fields[n - 3].
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu_seconds = match (field(14), field(15)) {
            (Some(u), Some(s)) => Some((u + s) / USER_HZ),
            _ => None,
        };
        let kib = |key: &str| {
            status.lines().find_map(|l| {
                let v = l.strip_prefix(key)?.trim().strip_suffix("kB")?;
                v.trim().parse::<f64>().ok().map(|k| k * 1024.0)
            })
        };
        let btime = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok());
        let start_time_seconds = match (btime, field(22)) {
            (Some(b), Some(ticks)) => Some(b + ticks / USER_HZ),
            _ => None,
        };
        let max_fds = limits.lines().find_map(|l| {
            l.strip_prefix("Max open files")?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        });
        Self {
            cpu_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            start_time_seconds,
            open_fds: None,
            max_fds,
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                c.metric_type(),
            )?)?;
        }
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                s.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds,
            ),
        ] {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "4242 (locus (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    3 0 12345 1000000 2000 18446744073709551615";
        let status = "Name:\tlocus\nVmSize:\t  10240 kB\nVmRSS:\t    2048 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let s = ProcessStats::parse(stat, status, limits, "cpu 1 2 3\nbtime 1700000000\n");
        assert_eq!(s.cpu_seconds, Some(3.0));
        assert_eq!(s.resident_bytes, Some(2048.0 * 1024.0));
        assert_eq!(s.virtual_bytes, Some(10240.0 * 1024.0));
        assert_eq!(s.start_time_seconds, Some(1_700_000_000.0 + 123.45));
        assert_eq!(s.max_fds, Some(1024.0));
        // Garbage gives no values rather than wrong ones.
        assert_eq!(ProcessStats::parse("", "", "", ""), ProcessStats::default());
    }

    #[test]
    fn the_live_process_reports_itself() {
        let mut r = Registry::default();
        register(&mut r);
        let text = crate::metrics::encode_prometheus(&r);
        for want in [
            "locus_build_info{version=\"",
            "# TYPE process_cpu_seconds_total counter",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(want), "{want} in {text}");
        }
    }
}
