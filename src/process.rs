//! The exporter's own process, as the `process_*` metrics of Prometheus' Go and Rust client
//! libraries describe it: CPU time, resident and virtual memory, open and maximum file
//! descriptors, threads and start time.
//!
//! Owns reading and parsing Linux's `/proc/self` files. Parsing is pure and tested on fixed
//! text; [`ProcessStats::read`] is the only I/O.
//! Must not: fail a scrape (on a system without `/proc`, or when a file cannot be read, the
//! families are simply absent) or read any other process.

use std::path::Path;

/// One reading of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds (`process_cpu_seconds_total`).
    pub cpu_seconds: f64,
    /// Resident set size in bytes (`process_resident_memory_bytes`).
    pub resident_memory_bytes: u64,
    /// Virtual memory size in bytes (`process_virtual_memory_bytes`).
    pub virtual_memory_bytes: u64,
    /// Start time since the Unix epoch, in seconds (`process_start_time_seconds`).
    pub start_time_seconds: f64,
    /// Open file descriptors (`process_open_fds`).
    pub open_fds: u64,
    /// The soft limit on open file descriptors (`process_max_fds`); `None` when unlimited.
    pub max_fds: Option<u64>,
    /// Operating-system threads (`process_threads`).
    pub threads: u64,
}

/// The fields of `/proc/self/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// `utime + stime`, in clock ticks.
    cpu_ticks: u64,
    /// `num_threads`.
    threads: u64,
    /// `starttime`, in clock ticks after boot.
    start_ticks: u64,
    /// `vsize`, in bytes.
    virtual_bytes: u64,
    /// `rss`, in pages.
    resident_pages: u64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where it is not available (not Linux, or a restricted
    /// sandbox).
    pub fn read() -> Option<ProcessStats> {
        let proc = Path::new("/proc");
        let stat = parse_stat(&std::fs::read_to_string(proc.join("self/stat")).ok()?)?;
        let boot_time = parse_boot_time(&std::fs::read_to_string(proc.join("stat")).ok()?)?;
        let limits = std::fs::read_to_string(proc.join("self/limits")).ok()?;
        let open_fds = std::fs::read_dir(proc.join("self/fd")).ok()?.count() as u64;
        let (ticks_per_second, page_size) = system_units();
        Some(ProcessStats {
            cpu_seconds: stat.cpu_ticks as f64 / ticks_per_second,
            resident_memory_bytes: stat.resident_pages * page_size,
            virtual_memory_bytes: stat.virtual_bytes,
            start_time_seconds: boot_time as f64 + stat.start_ticks as f64 / ticks_per_second,
            // Counted as the Go and Rust client libraries count it: the listing's own descriptor
            // is included.
            open_fds,
            max_fds: parse_max_open_files(&limits)?,
            threads: stat.threads,
        })
    }
}

/// Clock ticks per second and the page size, as the kernel reports them.
fn system_units() -> (f64, u64) {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (
        if ticks > 0 { ticks as f64 } else { 100.0 },
        if page > 0 { page as u64 } else { 4096 },
    )
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces or parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; field N is at index N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

/// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|rest| rest.trim().parse().ok())
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`: `Some(None)` when
/// unlimited, `None` when the line is missing or unreadable.
fn parse_max_open_files(text: &str) -> Option<Option<u64>> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line, with a command name that holds a space and a parenthesis.
    const STAT: &str = "4242 (kraken (exp) x) S 1 4242 4242 0 -1 4194560 1208 0 0 0 150 25 0 0 20 0 7 0 123456 61222912 1700 18446744073709551615 1 1 0 0 0 0 0 4096 17987 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.cpu_ticks, 175);
        assert_eq!(stat.threads, 7);
        assert_eq!(stat.start_ticks, 123_456);
        assert_eq!(stat.virtual_bytes, 61_222_912);
        assert_eq!(stat.resident_pages, 1_700);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn boot_time_and_file_limits_are_read_from_their_lines() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1764500000\nprocesses 9\n"),
            Some(1_764_500_000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(Some(1024)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), Some(None));
        assert_eq!(parse_max_open_files(""), None);
    }

    #[test]
    fn reading_this_process_gives_plausible_values() {
        let stats = ProcessStats::read().expect("/proc is available on Linux");
        assert!(stats.resident_memory_bytes > 1024 * 1024, "{stats:?}");
        assert!(stats.virtual_memory_bytes >= stats.resident_memory_bytes);
        assert!(stats.open_fds >= 3, "{stats:?}");
        assert!(stats.threads >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0, "{stats:?}");
        assert!(
            stats.start_time_seconds > now - 86_400.0 * 365.0,
            "{stats:?}"
        );
    }
}
