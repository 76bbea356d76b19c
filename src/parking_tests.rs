//! Tests of `parking.rs` on real loopback sockets: what comes out of the lot when a client
//! sends or hangs up, oldest-first order, deadlines, and a lot without its epoll set.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::*;
use crate::alarms::Alarms;

/// A connected pair: the client's end and the server's descriptor (as the lot gets it).
fn pair(listener: &TcpListener) -> (TcpStream, OwnedFd) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, OwnedFd::from(server))
}

fn ready_tickets(lot: &Parking<u32>) -> Vec<u32> {
    let mut out = Vec::new();
    lot.take_ready(&mut out);
    let mut tickets: Vec<u32> = out.into_iter().map(|w| w.car.ticket).collect();
    tickets.sort();
    tickets
}

#[test]
fn a_parked_socket_comes_out_when_its_client_sends_and_not_before() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lot = Parking::<u32>::new();
    let alarms = Alarms::default();
    let mut clients = Vec::new();
    for ticket in 0..5 {
        let (client, fd) = pair(&listener);
        clients.push(client);
        assert!(lot
            .park(
                Car { fd, ticket },
                alarms.deadline_in(Duration::from_secs(1))
            )
            .is_ok());
    }
    assert_eq!(lot.len(), 5);
    assert!(ready_tickets(&lot).is_empty(), "nothing was sent yet");
    clients[1].write_all(b"GET / HTTP/1.1\r\n").unwrap();
    clients[3].shutdown(std::net::Shutdown::Write).unwrap();
    // Loopback delivers before write returns; the epoll set sees both at once.
    let mut out = Vec::new();
    lot.take_ready(&mut out);
    out.sort_by_key(|w| w.car.ticket);
    let taken: Vec<(u32, bool, bool)> = out
        .iter()
        .map(|w| (w.car.ticket, w.hung_up, has_bytes(&w.car.fd)))
        .collect();
    // The one that sent has bytes; the one that only shut its side is hung up with none.
    assert_eq!(taken, [(1, false, true), (3, true, false)]);
    assert_eq!(lot.len(), 3);
    // Taken out means no longer watched: more bytes bring nothing back.
    clients[1].write_all(b"Host: x\r\n").unwrap();
    assert!(ready_tickets(&lot).is_empty());
    assert_eq!(lot.take_oldest().map(|c| c.ticket), Some(0));
    assert_eq!(lot.take_oldest().map(|c| c.ticket), Some(2));
    assert_eq!(lot.take_oldest().map(|c| c.ticket), Some(4));
    assert!(lot.take_oldest().is_none());
    assert_eq!(lot.len(), 0);
}

#[test]
fn the_oldest_comes_out_first_however_the_middle_leaves() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lot = Parking::<u32>::new();
    let alarms = Alarms::default();
    let mut clients = Vec::new();
    for ticket in 0..6 {
        let (client, fd) = pair(&listener);
        clients.push(client);
        lot.park(
            Car { fd, ticket },
            alarms.deadline_in(Duration::from_secs(1)),
        )
        .unwrap_or_else(|_| panic!("not parked"));
    }
    // The newest and a middle one leave; a new one reuses a freed slot.
    clients[5].write_all(b"x").unwrap();
    clients[2].write_all(b"x").unwrap();
    assert_eq!(ready_tickets(&lot), [2, 5]);
    let (client, fd) = pair(&listener);
    clients.push(client);
    lot.park(
        Car { fd, ticket: 6 },
        alarms.deadline_in(Duration::from_secs(1)),
    )
    .unwrap_or_else(|_| panic!("not parked"));
    let order: Vec<u32> = lot.take_all().into_iter().map(|c| c.ticket).collect();
    assert_eq!(order, [0, 1, 3, 4, 6]);
    // A slot's earlier car cannot be taken by its stale key.
    assert!(lot.take(0, Some(0)).is_none());
}

#[test]
fn only_cars_whose_deadline_has_come_are_due() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lot = Parking::<u32>::new();
    let alarms = Alarms::default();
    let mut clients = Vec::new();
    for ticket in 0..3 {
        let (client, fd) = pair(&listener);
        clients.push(client);
        lot.park(
            Car { fd, ticket },
            alarms.deadline_in(crate::alarms::TICK * ticket),
        )
        .unwrap_or_else(|_| panic!("not parked"));
    }
    let due = |lot: &Parking<u32>| {
        std::iter::from_fn(|| lot.take_due(|d| alarms.is_due(d)))
            .map(|c| c.ticket)
            .collect::<Vec<_>>()
    };
    assert!(due(&lot).is_empty());
    alarms.tick();
    assert_eq!(due(&lot), [0]);
    alarms.tick();
    assert_eq!(due(&lot), [1]);
    assert!(lot.oldest_deadline().is_some_and(|d| !alarms.is_due(d)));
    alarms.tick();
    assert_eq!(due(&lot), [2]);
    assert_eq!(lot.oldest_deadline(), None);
}

#[test]
fn a_closed_lot_parks_nothing_and_gives_the_car_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let lot = Parking::<u32> {
        epoll: None,
        ..Parking::new()
    };
    let (_client, fd) = pair(&listener);
    let back = lot.park(
        Car { fd, ticket: 7 },
        Alarms::default().deadline_in(Duration::ZERO),
    );
    assert_eq!(back.err().map(|c| c.ticket), Some(7));
    assert_eq!(lot.len(), 0);
}
