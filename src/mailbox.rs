//! A one-way mailbox from a control-plane thread to one core: the sender pushes and wakes
//! the core's waiting task (monoio's `sync` feature lets a waker cross threads), the core
//! awaits `recv` in a task of its own. The lock is taken by the sender when it sends and by
//! that one task when it is woken: never on the request path, and never by two cores.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

struct Inbox<T> {
    queue: VecDeque<T>,
    /// The receiving task, while it waits.
    waker: Option<Waker>,
    /// The sender is gone: once the queue is empty, `recv` says so.
    closed: bool,
}

/// The sending end (`Send`: it lives on a control-plane thread).
pub(crate) struct Sender<T>(Arc<Mutex<Inbox<T>>>);

/// The receiving end, moved into the core's thread.
pub(crate) struct Receiver<T>(Arc<Mutex<Inbox<T>>>);

/// A new mailbox.
pub(crate) fn mailbox<T>() -> (Sender<T>, Receiver<T>) {
    let inbox = Arc::new(Mutex::new(Inbox {
        queue: VecDeque::new(),
        waker: None,
        closed: false,
    }));
    (Sender(inbox.clone()), Receiver(inbox))
}

fn lock<T>(inbox: &Mutex<Inbox<T>>) -> MutexGuard<'_, Inbox<T>> {
    // A panic elsewhere while holding the lock leaves a queue that is still consistent.
    inbox.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Sender<T> {
    pub(crate) fn send(&self, item: T) {
        let waker = {
            let mut inbox = lock(&self.0);
            inbox.queue.push_back(item);
            inbox.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut inbox = lock(&self.0);
            inbox.closed = true;
            inbox.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, in order; `None` once the sender is gone and nothing is left.
    pub(crate) async fn recv(&self) -> Option<T> {
        std::future::poll_fn(|cx| {
            let mut inbox = lock(&self.0);
            if let Some(item) = inbox.queue.pop_front() {
                return Poll::Ready(Some(item));
            }
            if inbox.closed {
                return Poll::Ready(None);
            }
            inbox.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The next item if one is there now.
    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<T> {
        lock(&self.0).queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_across_threads_and_close_ends() {
        let (tx, rx) = mailbox::<u32>();
        let sender = std::thread::spawn(move || {
            for i in 0..100 {
                tx.send(i);
            }
        });
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("a runtime");
        let got = rt.block_on(async move {
            let mut got = Vec::new();
            while let Some(i) = rx.recv().await {
                got.push(i);
            }
            got
        });
        sender.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }
}
