//! A core's parking lot: client sockets that wait for their next request without a task.
//!
//! A keep-alive connection that has been idle a while gives up its task and buffers and
//! is parked here: its descriptor and a small ticket in a slot of this table, and a
//! registration in the core's own epoll set (kernel memory, as nginx's idle connections
//! are). When the socket becomes readable (a request, the client's FIN, an error) the core
//! takes it out again (`take_ready`) and gives it a task. Parked sockets are kept oldest
//! first, so the core can close the longest parked one to make room (`take_oldest`) and
//! the ones whose keep-alive time has run out (`take_due`).
//!
//! Single-threaded (it lives in one core's state); the table knows nothing of HTTP. The
//! epoll set is only ever asked without waiting (`epoll_wait` with a zero timeout): the
//! core learns that something is ready by waiting for the epoll descriptor itself to be
//! readable through its runtime (`readiness`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Poll, Waker};

use crate::alarms::Deadline;

/// Events taken from the epoll set per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 64;
/// "No slot" in the oldest-first list.
const NONE: u32 = u32::MAX;

/// A socket with its ticket, as it entered and leaves the lot. Dropping it closes the socket.
pub(crate) struct Car<T> {
    pub(crate) fd: OwnedFd,
    pub(crate) ticket: T,
}

/// A car taken out because its socket became readable.
pub(crate) struct Woken<T> {
    pub(crate) car: Car<T>,
    /// The peer shut its side or the connection failed: maybe nothing but that to read.
    pub(crate) hung_up: bool,
}

/// The lot; `T` is what the parker needs back with the socket.
pub(crate) struct Parking<T> {
    /// The core's epoll set of parked sockets (`None`: none could be made; nothing parks).
    epoll: Option<OwnedFd>,
    lot: RefCell<Lot<T>>,
    /// The core's watcher, while it waits for a first car (`until_parked`).
    watcher: Cell<Option<Waker>>,
}

struct Lot<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    oldest: u32,
    newest: u32,
    len: usize,
}

struct Slot<T> {
    /// Told apart from the slot's earlier cars in the epoll key.
    generation: u32,
    older: u32,
    newer: u32,
    car: Option<(Car<T>, Deadline)>,
}

impl<T> Parking<T> {
    /// A lot with its own epoll set; one that parks nothing when the kernel refuses one.
    pub(crate) fn new() -> Parking<T> {
        // SAFETY: epoll_create1 has no memory arguments; a non-negative result is a new
        // descriptor that only this OwnedFd owns.
        let epoll = unsafe {
            let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
        };
        if epoll.is_none() {
            log::warn!(
                "no epoll set for parked connections ({}): idle connections keep their tasks",
                io::Error::last_os_error()
            );
        }
        Parking {
            epoll,
            lot: RefCell::new(Lot {
                slots: Vec::new(),
                free: Vec::new(),
                oldest: NONE,
                newest: NONE,
                len: 0,
            }),
            watcher: Cell::new(None),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.epoll.is_some()
    }

    /// Parked sockets now.
    pub(crate) fn len(&self) -> usize {
        self.lot.borrow().len
    }

    /// A second descriptor of the epoll set, for the runtime to wait on: it is readable
    /// while some parked socket is.
    pub(crate) fn readiness(&self) -> io::Result<OwnedFd> {
        let Some(epoll) = &self.epoll else {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        };
        epoll.try_clone()
    }

    /// Parks `car` until it is readable or taken out; it expires at `deadline`
    /// (`take_due`). The car comes back when the kernel will not watch it.
    pub(crate) fn park(&self, car: Car<T>, deadline: Deadline) -> Result<(), Car<T>> {
        let Some(epoll) = &self.epoll else {
            return Err(car);
        };
        let mut lot = self.lot.borrow_mut();
        let index = match lot.free.pop() {
            Some(i) => i,
            None => {
                lot.slots.push(Slot {
                    generation: 0,
                    older: NONE,
                    newer: NONE,
                    car: None,
                });
                (lot.slots.len() - 1) as u32
            }
        };
        let generation = lot.slots[index as usize].generation;
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: key(index, generation),
        };
        // SAFETY: both descriptors are open (owned here); `event` outlives the call.
        let added = unsafe {
            libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                car.fd.as_raw_fd(),
                &mut event,
            )
        };
        if added != 0 {
            lot.free.push(index);
            return Err(car);
        }
        let newest = lot.newest;
        let slot = &mut lot.slots[index as usize];
        slot.older = newest;
        slot.newer = NONE;
        slot.car = Some((car, deadline));
        match newest {
            NONE => lot.oldest = index,
            n => lot.slots[n as usize].newer = index,
        }
        lot.newest = index;
        lot.len += 1;
        drop(lot);
        if let Some(w) = self.watcher.take() {
            w.wake();
        }
        Ok(())
    }

    /// Takes out every parked socket that is readable now (without waiting) into `out`.
    pub(crate) fn take_ready(&self, out: &mut Vec<Woken<T>>) {
        let Some(epoll) = &self.epoll else {
            return;
        };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        loop {
            // SAFETY: `events` has room for EVENTS_PER_WAIT entries; timeout 0: no wait.
            let n = unsafe {
                libc::epoll_wait(
                    epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS_PER_WAIT as i32,
                    0,
                )
            };
            if n <= 0 {
                return;
            }
            for event in &events[..n as usize] {
                let (index, generation) = unkey(event.u64);
                if let Some(car) = self.take(index, Some(generation)) {
                    let hung_up = libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR;
                    out.push(Woken {
                        car,
                        hung_up: event.events & hung_up as u32 != 0,
                    });
                }
            }
            if (n as usize) < EVENTS_PER_WAIT {
                return;
            }
        }
    }

    /// Takes out the socket parked longest.
    pub(crate) fn take_oldest(&self) -> Option<Car<T>> {
        let oldest = self.lot.borrow().oldest;
        self.take(oldest, None)
    }

    /// The deadline of the socket parked longest (the earliest: all park for as long).
    pub(crate) fn oldest_deadline(&self) -> Option<Deadline> {
        let lot = self.lot.borrow();
        let slot = lot.slots.get(lot.oldest as usize)?;
        slot.car.as_ref().map(|(_, deadline)| *deadline)
    }

    /// Takes out the socket parked longest if `is_due` says its deadline has come.
    pub(crate) fn take_due(&self, is_due: impl Fn(Deadline) -> bool) -> Option<Car<T>> {
        self.oldest_deadline()
            .filter(|d| is_due(*d))
            .and_then(|_| self.take_oldest())
    }

    /// Takes out every parked socket.
    pub(crate) fn take_all(&self) -> Vec<Car<T>> {
        std::iter::from_fn(|| self.take_oldest()).collect()
    }

    /// Until some socket is parked.
    pub(crate) fn until_parked(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.len() > 0 {
                Poll::Ready(())
            } else {
                self.watcher.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    /// Unlinks the car in slot `index` (if it still holds the car of `generation`, when
    /// given) and stops watching its socket.
    fn take(&self, index: u32, generation: Option<u32>) -> Option<Car<T>> {
        let mut lot = self.lot.borrow_mut();
        let slot = lot.slots.get_mut(index as usize)?;
        if generation.is_some_and(|g| g != slot.generation) {
            return None;
        }
        let (car, _) = slot.car.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        let (older, newer) = (slot.older, slot.newer);
        match older {
            NONE => lot.oldest = newer,
            o => lot.slots[o as usize].newer = newer,
        }
        match newer {
            NONE => lot.newest = older,
            n => lot.slots[n as usize].older = older,
        }
        lot.len -= 1;
        if lot.len == 0 {
            // Empty after a wave: the table's memory goes too.
            lot.slots = Vec::new();
            lot.free = Vec::new();
        } else {
            lot.free.push(index);
        }
        drop(lot);
        if let Some(epoll) = &self.epoll {
            unwatch(epoll.as_raw_fd(), car.fd.as_raw_fd());
        }
        Some(car)
    }
}

/// Removes `fd` from the epoll set: needed before the socket is handed on, because the
/// registration would outlive this descriptor if another one of the same socket lives.
fn unwatch(epoll: RawFd, fd: RawFd) {
    // SAFETY: both descriptors are open; DEL ignores the event argument.
    unsafe {
        libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut());
    }
}

fn key(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn unkey(key: u64) -> (u32, u32) {
    (key as u32, (key >> 32) as u32)
}

/// Whether a socket has bytes to read (without taking them); false at its end of stream or
/// on an error. It may only be asked of a socket that is readable.
pub(crate) fn has_bytes(fd: &OwnedFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: one byte of room at `byte`; MSG_PEEK leaves it in the socket, MSG_DONTWAIT
    // never blocks.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n > 0
}

/// A second descriptor of `fd`'s socket, closed on exec: how a socket leaves its runtime's
/// stream (which closes its own descriptor when dropped) for the lot.
pub(crate) fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC has no memory arguments; a non-negative result is a new
    // descriptor that only the OwnedFd owns.
    unsafe {
        let dup = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0);
        if dup < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(OwnedFd::from_raw_fd(dup))
        }
    }
}

#[cfg(test)]
#[path = "parking_tests.rs"]
mod tests;
