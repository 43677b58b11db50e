//! What an idle subscription costs: 100 000 subscriptions on one memory handle, none of them
//! receiving anything, with the heap counted by a counting global allocator.
//!
//! Run: `cargo bench -p pubsub-core --bench idle`. Prints the bytes per subscription for
//! 100 000 distinct patterns (each its own native filter) and for 100 000 subscriptions that
//! share one pattern, and the time to subscribe and to drop them. The aim is under 1 KiB each.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use pubsub_core::memory::MemoryBus;
use pubsub_core::Pattern;

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SUBSCRIPTIONS: usize = 100_000;

async fn measure(label: &str, pattern: impl Fn(usize) -> String) {
    let handle = MemoryBus::new().connect().await.expect("connect");
    let patterns: Vec<Pattern> = (0..SUBSCRIPTIONS)
        .map(|i| pattern(i).parse().expect("pattern"))
        .collect();
    let before = IN_USE.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut subs = Vec::with_capacity(SUBSCRIPTIONS);
    for p in patterns {
        subs.push(handle.subscribe(p).await.expect("subscribe"));
    }
    let took = started.elapsed();
    let used = IN_USE.load(Ordering::Relaxed) - before;
    let started = Instant::now();
    drop(subs);
    let dropped_in = started.elapsed();
    println!(
        "  {label:<28} {:>6.0} B per subscription; subscribe {:>5.2} µs each, drop all {:>6.1} ms",
        used as f64 / SUBSCRIPTIONS as f64,
        took.as_secs_f64() * 1e6 / SUBSCRIPTIONS as f64,
        dropped_in.as_secs_f64() * 1e3
    );
    handle.close().await.expect("close");
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("{SUBSCRIPTIONS} idle subscriptions on one memory handle (heap in use, counted)");
        measure("distinct patterns", |i| format!("room.{i}.>")).await;
        measure("one shared pattern", |_| "room.*.msg".to_string()).await;
    });
}
