//! [`watch_polled`]: connection events for a client that only tells its state when asked (an
//! application's own client, whose event callbacks are not the adapter's).

use std::time::Duration;

use super::{LinkReporter, Tasks};

/// Reports the state `read` returns now, then polls it every `every` on `tasks` and reports
/// each change with `report` (until the handle stops).
pub fn watch_polled<S, R, P>(tasks: &Tasks, link: LinkReporter, every: Duration, read: R, report: P)
where
    S: PartialEq + Send + 'static,
    R: Fn() -> S + Send + 'static,
    P: Fn(&LinkReporter, &S) + Send + 'static,
{
    let mut last = read();
    report(&link, &last);
    tasks.spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let state = read();
            if state != last {
                report(&link, &state);
                last = state;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::adapter::Supervisor;

    #[tokio::test(start_paused = true)]
    async fn reports_the_state_now_and_each_change() {
        let supervisor = Supervisor::new();
        let tasks = Tasks::new();
        let up = Arc::new(AtomicBool::new(true));
        let read = {
            let up = up.clone();
            move || up.load(Ordering::Relaxed)
        };
        let every = Duration::from_millis(50);
        watch_polled(
            &tasks,
            supervisor.link(),
            every,
            read,
            |link, up| match up {
                true => link.up(),
                false => link.down(),
            },
        );
        assert!(supervisor.is_up());
        up.store(false, Ordering::Relaxed);
        tokio::time::sleep(every * 2).await;
        assert!(!supervisor.is_up());
        up.store(true, Ordering::Relaxed);
        tokio::time::sleep(every * 2).await;
        assert!(supervisor.is_up());
        tasks.cancel();
    }
}
