//! `/proc` readers the benchmarks use to report CPU time and memory of processes
//! (their own children, or this process).

/// The fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces): state, ppid, …
pub(crate) fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `utime` and `stime` (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks;
/// they cover all the process's threads.
pub(crate) fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let fields = stat_fields(pid)?;
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// A `kB` line of `/proc/<pid>/status` (or `/proc/self/status` for `None`),
/// such as `VmHWM:`, in KiB.
pub(crate) fn status_kib(pid: Option<u32>, key: &str) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_owned(),
        |p| format!("/proc/{p}/status"),
    );
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `getconf CLK_TCK` (the unit of `/proc/<pid>/stat` times), 100 if unknown.
pub(crate) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}
