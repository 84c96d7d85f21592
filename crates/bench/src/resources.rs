//! What a run cost the machine beyond time: peak resident memory, read from Linux's
//! `/proc/PID/status` (`VmHWM`, the high-water mark of the resident set). Elsewhere the
//! readings are `None`, and records leave the field out rather than report a guess.

/// This process's peak resident memory so far, MiB.
pub fn peak_rss_mib() -> Option<f64> {
    read_peak("/proc/self/status")
}

/// Peak resident memory so far of process `pid` (a child still running), MiB.
pub fn peak_rss_mib_of(pid: u32) -> Option<f64> {
    read_peak(&format!("/proc/{pid}/status"))
}

fn read_peak(path: &str) -> Option<f64> {
    let status = std::fs::read_to_string(path).ok()?;
    parse_peak(&status)
}

fn parse_peak(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: f64 = fields.next()?.parse().ok()?;
    match fields.next()? {
        "kB" => Some(value / 1024.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark_in_mib() {
        let status = "Name:\tsplitlm\nVmPeak:\t 9000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_peak(status), Some(200.0));
        assert_eq!(parse_peak("VmRSS:\t 1024 kB\n"), None);
        assert_eq!(parse_peak("VmHWM:\t 12 pages\n"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_has_a_peak() {
        let kept = vec![1u8; 8 << 20];
        let peak = peak_rss_mib().expect("Linux has /proc/self/status");
        assert!(peak >= 8.0, "{peak} MiB after touching 8 MiB");
        drop(kept);
    }
}
