//! Workload 6, memory: a process's peak resident set, read from Linux's
//! `/proc/{pid}/status` (`VmHWM`, the high-water mark of its RSS).

/// The `VmHWM` line of a `/proc/{pid}/status` text, in bytes.
pub fn peak_rss_in(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line["VmHWM:".len()..].split_whitespace();
    let amount: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(amount * 1024),
        _ => None,
    }
}

/// The peak RSS of process `pid` in bytes; `None` where `/proc` cannot say (the process
/// is gone, or this is not Linux).
pub fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    peak_rss_in(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status =
            "Name:\tkeyed-count\nVmPeak:\t 1000000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(peak_rss_in(status), Some(20 * 1024 * 1024));
        assert_eq!(peak_rss_in("Name:\tx\n"), None);
        assert_eq!(peak_rss_in("VmHWM:\t12 MB\n"), None);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(peak_rss_of(std::process::id()).is_some_and(|bytes| bytes > 0));
    }
}
