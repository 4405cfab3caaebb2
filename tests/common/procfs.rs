//! Readings of a process from /proc: descriptors, threads, memory, CPU time.

use std::thread;
use std::time::Duration;

/// Open file descriptors and threads of a process.
pub fn fds_and_threads(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}

/// [`fds_and_threads`] once two readings 100 ms apart agree (or after 5 s): threads that
/// are ending and their descriptors are not counted.
pub fn steady_fds_and_threads(pid: u32) -> (usize, usize) {
    let mut last = fds_and_threads(pid);
    for _ in 0..50 {
        thread::sleep(Duration::from_millis(100));
        let now = fds_and_threads(pid);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ, 100 on every Linux ABI
}
