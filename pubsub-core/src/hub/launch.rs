//! [`launch`]: how an adapter starts a handle, and the [`Context`] its driver is built with.
//!
//! The top of the kit: it builds the router, the supervisor and the task set, and hands the
//! driver to the hub. Re-exported as `pubsub_core::adapter::{launch, Context}`.

use std::future::Future;
use std::sync::Arc;

use crate::adapter::driver::Driver;
use crate::adapter::supervisor::Supervisor;
use crate::adapter::tasks::Tasks;
use crate::router::{Inbound, Router};
use crate::{CommonOptions, Error, Hub, Operation, Result};

/// What a driver gets when its handle is launched.
#[derive(Debug)]
#[non_exhaustive]
pub struct Context<F> {
    /// Where to hand inbound messages.
    pub inbound: Inbound<F>,
    /// Where to report the state of each broker connection.
    pub supervisor: Supervisor,
    /// Where to spawn background tasks (stopped by `close` or when the handle is dropped).
    pub tasks: Tasks,
    /// The shared settings, already validated.
    pub options: CommonOptions,
}

/// Starts a handle: builds the router, supervisor and task set, lets `connect` build the
/// driver around them, and starts the reconciler. Must run inside a tokio runtime.
///
/// ```
/// # async fn demo() -> pubsub_core::Result<()> {
/// use pubsub_core::memory::MemoryBus;
/// // The memory backend is launched like any other; see its source for a complete driver.
/// let handle = MemoryBus::new().connect().await?;
/// # Ok(()) }
/// ```
pub async fn launch<D, C, Fut>(options: CommonOptions, connect: C) -> Result<Hub>
where
    D: Driver,
    C: FnOnce(Context<D::Filter>) -> Fut,
    Fut: Future<Output = Result<D>>,
{
    let decorate = |e: Error| {
        e.with_backend(D::BACKEND)
            .with_operation(Operation::Connect)
    };
    tokio::runtime::Handle::try_current().map_err(|_| decorate(Error::no_runtime()))?;
    let options = options.validated().map_err(decorate)?;
    let router = Arc::new(Router::new(D::FILTER_IS_PATTERN));
    let supervisor = Supervisor::new();
    let tasks = Tasks::new();
    let context = Context {
        inbound: Inbound::new(router.clone()),
        supervisor: supervisor.clone(),
        tasks: tasks.clone(),
        options: options.clone(),
    };
    match connect(context).await {
        Ok(driver) => Ok(super::start(driver, router, supervisor, tasks, options)),
        Err(error) => {
            tasks.cancel();
            Err(decorate(error))
        }
    }
}
