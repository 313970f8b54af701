//! Wall-clock timing for benchmark commands and timing exercises (appendix A.9), with the
//! device synchronised so that GPU work is counted when it finishes, not when it is queued.

use std::time::Instant;

use tch::Device;

/// Waits for all queued work on `device` (a no-op on the CPU).
pub fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// Runs `f` once and returns its result with its wall time in seconds.
pub fn timed<T>(device: Device, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    synchronize(device);
    let start = Instant::now();
    let out = f()?;
    synchronize(device);
    Ok((out, start.elapsed().as_secs_f64()))
}

/// Runs `f` `warmup` times, then `repeats` timed times, and returns the median in seconds.
pub fn median_seconds(device: Device, warmup: usize, repeats: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    synchronize(device);
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            synchronize(device);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_the_timed_runs() {
        let mut calls = 0;
        let seconds = median_seconds(Device::Cpu, 2, 3, || {
            calls += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        });
        assert_eq!(calls, 5);
        assert!(seconds >= 0.002, "{seconds}");
    }
}
