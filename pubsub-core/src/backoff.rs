//! [`Backoff`]: the reconnect policy every driver uses.

use std::time::Duration;

use rand::Rng;

/// Exponential reconnect backoff with a cap and jitter.
///
/// Attempt `n` (from 0) waits `initial × multiplier^n`, capped at `max`; [`Backoff::delay`]
/// then takes a random fraction of up to `jitter` off that, so that many clients cut off at
/// once do not all come back in the same instant. The default is 100 ms, doubling, capped at
/// 5 s, with 20 % jitter.
///
/// The `with_*` setters clamp values that make no sense (a multiplier below 1, a jitter outside
/// `0..=1`, a cap below the initial delay); the delay functions treat the public fields the
/// same way, so no setting can make them panic.
///
/// ```
/// use std::time::Duration;
/// use pubsub_core::Backoff;
///
/// let backoff = Backoff::default()
///     .with_initial(Duration::from_millis(50))
///     .with_max(Duration::from_secs(2))
///     .with_jitter(0.5);
/// assert_eq!(backoff.base_delay(0), Duration::from_millis(50));
/// assert_eq!(backoff.base_delay(3), Duration::from_millis(400));
/// assert_eq!(backoff.base_delay(1000), Duration::from_secs(2));
///
/// let d = backoff.delay(2); // somewhere in 100 ms ..= 200 ms
/// assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
///
/// let first: Vec<Duration> = backoff.delays().take(3).collect();
/// assert_eq!(first.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// Delay before the first retry (attempt 0).
    pub initial: Duration,
    /// Upper bound of every delay.
    pub max: Duration,
    /// Growth factor from one attempt to the next (at least 1).
    pub multiplier: f64,
    /// Fraction of each delay that is randomised, in `0.0..=1.0`: a delay falls in
    /// `base × (1 − jitter) ..= base`.
    pub jitter: f64,
}

/// Default first delay.
const DEFAULT_INITIAL: Duration = Duration::from_millis(100);
/// Default cap.
const DEFAULT_MAX: Duration = Duration::from_secs(5);
/// Default growth factor.
const DEFAULT_MULTIPLIER: f64 = 2.0;
/// Default jitter fraction.
const DEFAULT_JITTER: f64 = 0.2;

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: DEFAULT_INITIAL,
            max: DEFAULT_MAX,
            multiplier: DEFAULT_MULTIPLIER,
            jitter: DEFAULT_JITTER,
        }
    }
}

impl Backoff {
    /// Sets the first delay; raises `max` to it if `max` was lower.
    pub fn with_initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self.max = self.max.max(initial);
        self
    }

    /// Sets the cap; lowers `initial` to it if `initial` was higher.
    pub fn with_max(mut self, max: Duration) -> Self {
        self.max = max;
        self.initial = self.initial.min(max);
        self
    }

    /// Sets the growth factor; anything below 1 (or NaN) becomes 1, a constant delay.
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = clamp_multiplier(multiplier);
        self
    }

    /// Sets the randomised fraction, clamped to `0.0..=1.0` (NaN becomes 0, no jitter).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = clamp_jitter(jitter);
        self
    }

    /// The delay before retry `attempt` (from 0) without jitter: `initial × multiplier^attempt`,
    /// capped at `max`. Never decreases as `attempt` grows; any `attempt` is fine.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let max = self.cap();
        let factor = clamp_multiplier(self.multiplier).powf(f64::from(attempt));
        let nanos = self.initial.as_nanos() as f64 * factor;
        if !nanos.is_finite() || nanos >= max.as_nanos() as f64 {
            return max;
        }
        // `as` saturates; the `min` keeps the result under the cap after rounding.
        Duration::from_nanos(nanos.round() as u64).min(max)
    }

    /// The delay before retry `attempt` (from 0): [`Backoff::base_delay`] minus a random
    /// fraction of up to `jitter` of it, so within `base × (1 − jitter) ..= base` and never
    /// above `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        let jitter = clamp_jitter(self.jitter);
        if jitter == 0.0 || base.is_zero() {
            return base;
        }
        let fraction = jitter * rand::rng().random::<f64>();
        let cut = Duration::try_from_secs_f64(base.as_secs_f64() * fraction).unwrap_or_default();
        base.saturating_sub(cut)
    }

    /// An endless iterator of jittered delays for attempts 0, 1, 2, … (the last attempt
    /// number repeats once `u32::MAX` is reached, which the cap makes harmless).
    ///
    /// ```
    /// use std::time::Duration;
    /// use pubsub_core::Backoff;
    ///
    /// let backoff = Backoff::default().with_jitter(0.0);
    /// let ms: Vec<u128> = backoff.delays().take(8).map(|d| d.as_millis()).collect();
    /// assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    /// ```
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let policy = self.clone();
        let attempts = std::iter::successors(Some(0u32), |a| Some(a.saturating_add(1)));
        attempts.map(move |attempt| policy.delay(attempt))
    }

    /// The effective cap: never below `initial`.
    fn cap(&self) -> Duration {
        self.max.max(self.initial)
    }
}

/// A multiplier of at least 1 (NaN becomes 1).
fn clamp_multiplier(multiplier: f64) -> f64 {
    if multiplier >= 1.0 {
        multiplier
    } else {
        1.0
    }
}

/// A jitter fraction in `0.0..=1.0` (NaN becomes 0).
fn clamp_jitter(jitter: f64) -> f64 {
    if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn defaults() {
        let b = Backoff::default();
        assert_eq!(b.initial, 100 * MS);
        assert_eq!(b.max, 5000 * MS);
        assert_eq!(b.multiplier, 2.0);
        assert_eq!(b.jitter, 0.2);
    }

    #[test]
    fn base_delays_grow_then_cap() {
        let b = Backoff::default();
        let got: Vec<_> = (0..9).map(|a| b.base_delay(a)).collect();
        let want: Vec<_> = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]
            .iter()
            .map(|&m| m * MS)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn huge_attempts_and_extreme_settings_do_not_panic() {
        let b = Backoff::default();
        assert_eq!(b.base_delay(u32::MAX), b.max);
        assert!(b.delay(u32::MAX) <= b.max);

        let mut wild = Backoff::default().with_max(Duration::MAX);
        wild.multiplier = f64::INFINITY;
        assert_eq!(wild.base_delay(0), wild.initial);
        assert_eq!(wild.base_delay(1), Duration::MAX);
        assert!(wild.delay(1) <= Duration::MAX);
        wild.jitter = 1.0;
        let _ = wild.delay(u32::MAX);

        let nan = Backoff {
            multiplier: f64::NAN,
            jitter: f64::NAN,
            ..Backoff::default()
        };
        assert_eq!(nan.base_delay(10), nan.initial);
        assert_eq!(nan.delay(10), nan.initial);
    }

    #[test]
    fn setters_clamp() {
        let b = Backoff::default().with_multiplier(0.5).with_jitter(7.0);
        assert_eq!(b.multiplier, 1.0);
        assert_eq!(b.jitter, 1.0);
        assert_eq!(Backoff::default().with_jitter(-1.0).jitter, 0.0);
        assert_eq!(Backoff::default().with_jitter(f64::NAN).jitter, 0.0);
        assert_eq!(Backoff::default().with_multiplier(f64::NAN).multiplier, 1.0);

        let b = Backoff::default().with_max(50 * MS);
        assert_eq!((b.initial, b.max), (50 * MS, 50 * MS));
        let b = Backoff::default().with_initial(10_000 * MS);
        assert_eq!((b.initial, b.max), (10_000 * MS, 10_000 * MS));
    }

    #[test]
    fn fields_set_directly_are_treated_like_setters() {
        // A cap below initial: the cap becomes initial.
        let b = Backoff {
            max: MS,
            multiplier: 0.1,
            ..Backoff::default()
        };
        assert_eq!(b.base_delay(0), b.initial);
        assert_eq!(b.base_delay(5), b.initial);
    }

    #[test]
    fn no_jitter_is_deterministic() {
        let b = Backoff::default().with_jitter(0.0);
        for a in 0..20 {
            assert_eq!(b.delay(a), b.base_delay(a));
        }
    }

    #[test]
    fn jitter_varies_delays() {
        let b = Backoff::default().with_jitter(1.0);
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| b.delay(3)).collect();
        assert!(distinct.len() > 1);
    }

    #[test]
    fn zero_initial_stays_zero() {
        let b = Backoff::default().with_initial(Duration::ZERO);
        assert!(b.delays().take(10).all(|d| d.is_zero()));
    }

    #[test]
    fn delays_iterator_follows_attempts() {
        let b = Backoff::default().with_jitter(0.0);
        let got: Vec<_> = b.delays().take(4).collect();
        assert_eq!(got, [100 * MS, 200 * MS, 400 * MS, 800 * MS]);
    }

    fn arb_backoff() -> impl Strategy<Value = Backoff> {
        (
            0u64..10_000_000_000,
            0u64..100_000_000_000,
            0.0f64..20.0,
            -0.5f64..1.5,
        )
            .prop_map(|(initial, max, multiplier, jitter)| {
                Backoff::default()
                    .with_initial(Duration::from_nanos(initial))
                    .with_max(Duration::from_nanos(max))
                    .with_multiplier(multiplier)
                    .with_jitter(jitter)
            })
    }

    proptest! {
        #[test]
        fn prop_delay_within_bounds(b in arb_backoff(), attempt in any::<u32>()) {
            let base = b.base_delay(attempt);
            let d = b.delay(attempt);
            prop_assert!(base <= b.max);
            prop_assert!(d <= base);
            // One nanosecond of slack for float rounding of the lower bound.
            let lowest = base.mul_f64(1.0 - b.jitter).saturating_sub(Duration::from_nanos(1));
            prop_assert!(d >= lowest, "{d:?} < {lowest:?} (base {base:?})");
        }

        #[test]
        fn prop_base_delays_monotone_up_to_cap(b in arb_backoff(), start in 0u32..200) {
            let mut previous = b.base_delay(start);
            for attempt in start + 1..start + 64 {
                let next = b.base_delay(attempt);
                prop_assert!(next >= previous);
                prop_assert!(next <= b.max);
                previous = next;
            }
            prop_assert!(b.base_delay(start) >= b.initial.min(b.max));
        }
    }
}
