//! Client connections parked in the core's lot (`parking`): how a keep-alive connection
//! gives up its task, how it gets one again when its client sends, and the core's watcher
//! task that does it — and closes parked connections whose keep-alive time has run out,
//! and all of them once the core has drained.
//!
//! A parked connection costs a slot in the lot (its descriptor, its peer's address and a
//! deadline) and the kernel's epoll entry; its task, buffers and alarm are gone. It stays
//! counted among the core's open connections (`Clients`: per address, and at the cap,
//! where the core closes the longest parked one first).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use monoio::net::TcpStream;

use super::{ClientConn, OpenConnection, CLIENT_BUFFER_BYTES, DRAIN_IDLE_GRACE};
use crate::alarms::{Alarm, Deadline};
use crate::parking::{self, Car, Woken};
use crate::wire::stream::Buffered;
use crate::worker::Worker;

impl ClientConn {
    /// Parks this connection until its client sends or `deadline` passes; true when the
    /// lot took it (the task then ends without closing it). Not while the core drains.
    pub(super) fn park(&mut self, deadline: Deadline) -> bool {
        let core = &self.core;
        if core.alarms.is_draining() || !core.parking.is_open() || !self.client.data().is_empty() {
            return false;
        }
        // The runtime's stream closes its own descriptor when the task ends; the lot gets
        // a second one of the same socket.
        let Ok(fd) = parking::duplicate(self.client.io.as_raw_fd()) else {
            return false;
        };
        match core.parking.park(
            Car {
                fd,
                ticket: self.peer,
            },
            deadline,
        ) {
            Ok(()) => {
                self.open.park();
                true
            }
            // The kernel would not watch it (its limit of watches): it rests with its task.
            Err(_) => false,
        }
    }
}

/// Gives a parked connection a task again: it reads what made it readable and goes on as
/// any keep-alive connection.
async fn resume(core: Rc<Worker>, car: Car<SocketAddr>) {
    let peer = car.ticket;
    let open = OpenConnection::unpark(&core, peer);
    let Ok(io) = TcpStream::from_std(std::net::TcpStream::from(car.fd)) else {
        return;
    };
    ClientConn {
        open,
        core,
        client: Buffered::new(io, CLIENT_BUFFER_BYTES),
        peer,
        head: Vec::new(),
        out: Vec::new(),
        canceller: None,
    }
    .run(true)
    .await
}

/// Closes a parked connection (its deadline passed, the core needs room, or the core ends).
fn close(core: &Rc<Worker>, car: Car<SocketAddr>) {
    drop(OpenConnection::unpark(core, car.ticket));
}

/// Closes the connection parked longest, to make room at the core's cap; false when none
/// is parked.
pub(crate) fn close_oldest(core: &Rc<Worker>) -> bool {
    match core.parking.take_oldest() {
        Some(car) => {
            close(core, car);
            true
        }
        None => false,
    }
}

/// Why the watcher woke.
enum Wake {
    Readable(std::io::Result<()>),
    Due,
    Parked,
    Drain,
}

/// The core's watcher of its lot, for the core's life: waits until a parked socket is
/// readable (the epoll set's own descriptor, through the runtime), the oldest deadline, a
/// first car, or the drain. Once the core drains, parked clients have `DRAIN_IDLE_GRACE`
/// to send one more request (answered with `Connection: close`); then the rest are closed.
pub(crate) async fn watch(core: Rc<Worker>) {
    let readiness = match core
        .parking
        .readiness()
        .and_then(|fd| TcpStream::from_std(std::net::TcpStream::from(fd)))
    {
        Ok(r) => r,
        Err(e) => {
            if core.parking.is_open() {
                log::warn!("core {}: cannot watch parked connections: {e}", core.id);
            }
            return;
        }
    };
    let mut readable = Box::pin(readiness.readable(false));
    let mut woken = Vec::new();
    loop {
        let wake = match core.parking.oldest_deadline() {
            Some(deadline) => monoio::select! {
                r = &mut readable => Wake::Readable(r),
                alarm = core.alarms.drain_or(deadline) => match alarm {
                    Alarm::Deadline => Wake::Due,
                    Alarm::Drain => Wake::Drain,
                },
            },
            None => monoio::select! {
                r = &mut readable => Wake::Readable(r),
                _ = core.alarms.drain() => Wake::Drain,
                _ = core.parking.until_parked() => Wake::Parked,
            },
        };
        match wake {
            Wake::Readable(r) => {
                if let Err(e) = r {
                    log::warn!("core {}: waiting for parked connections: {e}", core.id);
                }
                wake_ready(&core, &mut woken);
                readable.set(readiness.readable(false));
            }
            Wake::Due => {
                while let Some(car) = core.parking.take_due(|d| core.alarms.is_due(d)) {
                    close(&core, car);
                }
            }
            Wake::Parked => {}
            Wake::Drain => break,
        }
    }
    let mut grace = std::pin::pin!(core.alarms.after(DRAIN_IDLE_GRACE));
    loop {
        monoio::select! {
            r = &mut readable => {
                let _ = r;
                wake_ready(&core, &mut woken);
                readable.set(readiness.readable(false));
            },
            _ = &mut grace => break,
        }
    }
    for car in core.parking.take_all() {
        close(&core, car);
    }
}

/// Gives every parked connection that is readable now a task — unless it only says that
/// its client has gone (end of stream or an error), which closes it here: a wave of
/// clients leaving costs no task and no buffer each.
fn wake_ready(core: &Rc<Worker>, woken: &mut Vec<Woken<SocketAddr>>) {
    core.parking.take_ready(woken);
    for Woken { car, hung_up } in woken.drain(..) {
        if hung_up && !parking::has_bytes(&car.fd) {
            close(core, car);
        } else {
            monoio::spawn(resume(core.clone(), car));
        }
    }
}
