//! Runs the `orders` example's service on `memory://` and checks what it reports.

#[allow(dead_code)]
#[path = "../examples/orders.rs"]
mod orders;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_example_runs_on_memory() {
    let bus = pubsub_test_support::unique_prefix("orders_example");
    let summary = orders::run(&format!("memory://{bus}"))
        .await
        .expect("the example runs");
    assert_eq!(summary.reserved, [1]);
    assert_eq!(summary.paid, [(1, 2)], "the payment succeeded on its retry");
    let mut dead = summary.dead_letters.clone();
    dead.sort();
    assert_eq!(
        dead,
        [
            (
                "orders.eu.created".to_owned(),
                "decode".to_owned(),
                "1".to_owned()
            ),
            (
                "orders.us.created".to_owned(),
                "permanent".to_owned(),
                "1".to_owned()
            ),
        ]
    );
}
