//! Rate limiting for log lines about repeated failures: the first one is logged, later ones at
//! most once per interval with the count of those suppressed in between.

/// Decides which occurrences of one kind of event get a log line.
#[derive(Debug)]
pub struct LogThrottle {
    interval_nanos: u64,
    last_logged: Option<u64>,
    suppressed: u64,
}

impl LogThrottle {
    /// A throttle that logs at most once per `interval_nanos`.
    pub const fn new(interval_nanos: u64) -> Self {
        Self {
            interval_nanos,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Call on every occurrence: `Some(suppressed)` means log now, mentioning `suppressed`
    /// earlier occurrences that were not logged; `None` means stay quiet.
    pub fn allow(&mut self, now_nanos: u64) -> Option<u64> {
        let due = match self.last_logged {
            None => true,
            Some(last) => now_nanos.saturating_sub(last) >= self.interval_nanos,
        };
        if due {
            self.last_logged = Some(now_nanos);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn first_is_logged_then_once_per_interval_with_the_count() {
        let mut throttle = LogThrottle::new(10);
        assert_eq!(throttle.allow(100), Some(0));
        assert_eq!(throttle.allow(101), None);
        assert_eq!(throttle.allow(109), None);
        assert_eq!(throttle.allow(110), Some(2));
        assert_eq!(throttle.allow(111), None);
        assert_eq!(
            throttle.allow(50),
            None,
            "a clock going backwards stays quiet"
        );
    }
}
