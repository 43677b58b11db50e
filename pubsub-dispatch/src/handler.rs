//! [`Handler`]: an async function of extractors, and the [`Service`] it becomes.

use std::future::Future;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower_service::Service;

use crate::error::HandlerError;
use crate::extract::FromIncoming;
use crate::meta::Incoming;

/// An async function that handles one message: `async fn(A1, …, An) -> Result<(), HandlerError>`
/// where each argument is a [`FromIncoming`] extractor (0 to 4 of them).
///
/// The error type is [`HandlerError`] itself, so that a closure's `?` converts any error
/// (`HandlerError` takes every `std::error::Error`) and its `Ok(())` needs no annotation:
///
/// ```
/// use pubsub_dispatch::{Raw, Route};
/// let route = Route::new("numbers.>", |Raw(bytes): Raw| async move {
///     let text = std::str::from_utf8(&bytes)?;
///     let n: u64 = text.trim().parse()?;
///     println!("{n}");
///     Ok(())
/// });
/// # let _ = route;
/// ```
///
/// ```
/// use pubsub_dispatch::{Event, HandlerError, Meta, Raw};
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64 }
///
/// async fn created(order: Event<Order>) -> Result<(), HandlerError> {
///     println!("order {} ({:?})", order.id, order.meta.id());
///     Ok(())
/// }
/// async fn audit(Raw(bytes): Raw, meta: Meta) -> Result<(), HandlerError> {
///     println!("{} bytes on {}", bytes.len(), meta.topic());
///     Ok(())
/// }
/// # let _ = pubsub_dispatch::Route::new("orders.*.created", created);
/// # let _ = pubsub_dispatch::Route::new("orders.>", audit);
/// ```
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// Handles one attempt.
    fn call(&self, incoming: Incoming) -> BoxFuture<'static, Result<(), HandlerError>>;
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> Handler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Clone + Send + Sync + 'static,
            // One error type, not any `E: Into<HandlerError>`: a closure's `Ok(())` and `?`
            // then infer it (E0282/E0283 otherwise).
            Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
            $($arg: FromIncoming + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn call(&self, incoming: Incoming) -> BoxFuture<'static, Result<(), HandlerError>> {
                $(
                    let $arg = match $arg::from_incoming(&incoming) {
                        Ok(value) => value,
                        Err(e) => return Box::pin(std::future::ready(Err(e))),
                    };
                )*
                Box::pin((self)($($arg),*))
            }
        }
    };
}

impl_handler!();
impl_handler!(A1);
impl_handler!(A1, A2);
impl_handler!(A1, A2, A3);
impl_handler!(A1, A2, A3, A4);

/// A [`Handler`] as a tower [`Service`] (the innermost service of a route).
pub struct HandlerService<H, Args> {
    handler: H,
    _args: PhantomData<fn() -> Args>,
}

impl<H, Args> HandlerService<H, Args> {
    /// Wraps `handler`.
    pub fn new(handler: H) -> Self {
        HandlerService {
            handler,
            _args: PhantomData,
        }
    }
}

impl<H: Clone, Args> Clone for HandlerService<H, Args> {
    fn clone(&self) -> Self {
        HandlerService::new(self.handler.clone())
    }
}

impl<H, Args> Service<Incoming> for HandlerService<H, Args>
where
    H: Handler<Args>,
{
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, incoming: Incoming) -> Self::Future {
        self.handler.call(incoming)
    }
}
