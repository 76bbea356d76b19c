//! A core's resting connections, oldest first, for `Clients`: a connection joins when it
//! begins to wait for its next request and leaves when the wait ends, the core takes out
//! the oldest to close it at its cap. A keep-alive connection joins and leaves once per
//! request, so each is O(1) with no allocation: the entries live in a slab (a `Vec` with
//! a free list, grown to the most connections resting at once, and given back when a large
//! wave has left) and are linked in the order they joined. Knows nothing about sockets;
//! single-threaded.

use std::task::Waker;

/// Marks the end of a link.
const NONE: usize = usize::MAX;
/// Entries kept once none is in use: a wave of connections larger than this gives its
/// entries back when the last of it stops resting.
const KEEP_ENTRIES: usize = 256;

/// Where a resting connection's entry is; given back by `leave`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place(usize);

pub(crate) struct RestList {
    entries: Vec<Entry>,
    /// Entries not in use.
    free: Vec<usize>,
    /// The ends of the chain (`NONE` when none rests).
    oldest: usize,
    newest: usize,
}

impl Default for RestList {
    fn default() -> RestList {
        RestList {
            entries: Vec::new(),
            free: Vec::new(),
            oldest: NONE,
            newest: NONE,
        }
    }
}

struct Entry {
    prev: usize,
    next: usize,
    /// In the oldest-first chain (false once taken out to be closed, and when free).
    linked: bool,
    /// The core closed it to make room.
    closed: bool,
    waker: Option<Waker>,
}

impl Entry {
    const FRESH: Entry = Entry {
        prev: NONE,
        next: NONE,
        linked: false,
        closed: false,
        waker: None,
    };
}

impl RestList {
    /// Adds a connection as the newest resting one.
    pub(crate) fn join(&mut self) -> Place {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry::FRESH);
                self.entries.len() - 1
            }
        };
        self.entries[i] = Entry {
            prev: self.newest,
            linked: true,
            ..Entry::FRESH
        };
        match self.newest {
            NONE => self.oldest = i,
            n => self.entries[n].next = i,
        }
        self.newest = i;
        Place(i)
    }

    /// The connection stopped resting (or was closed and saw it): its entry is free.
    pub(crate) fn leave(&mut self, place: Place) {
        self.unlink(place.0);
        self.entries[place.0] = Entry::FRESH;
        self.free.push(place.0);
        if self.free.len() == self.entries.len() && self.entries.len() > KEEP_ENTRIES {
            self.entries = Vec::new();
            self.free = Vec::new();
        }
    }

    /// Takes out the connection that has rested longest and marks it closed; its waker,
    /// to be woken once the list is no longer borrowed. `None` when none rests.
    pub(crate) fn close_oldest(&mut self) -> Option<Option<Waker>> {
        let i = self.oldest;
        if i == NONE {
            return None;
        }
        self.unlink(i);
        let entry = &mut self.entries[i];
        entry.closed = true;
        Some(entry.waker.take())
    }

    pub(crate) fn is_closed(&self, place: Place) -> bool {
        self.entries[place.0].closed
    }

    /// Whom to wake when the connection at `place` is closed.
    pub(crate) fn set_waker(&mut self, place: Place, waker: &Waker) {
        let slot = &mut self.entries[place.0].waker;
        match slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// How many rest (not counting those taken out to be closed).
    #[cfg(test)]
    fn len(&self) -> usize {
        let mut n = 0;
        let mut at = self.oldest;
        while at != NONE {
            n += 1;
            at = self.entries[at].next;
        }
        n
    }

    fn unlink(&mut self, i: usize) {
        let Entry {
            prev, next, linked, ..
        } = self.entries[i];
        if !linked {
            return;
        }
        match prev {
            NONE => self.oldest = next,
            p => self.entries[p].next = next,
        }
        match next {
            NONE => self.newest = prev,
            n => self.entries[n].prev = prev,
        }
        let entry = &mut self.entries[i];
        entry.linked = false;
        entry.prev = NONE;
        entry.next = NONE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_closed_first_whatever_left_in_between() {
        let mut list = RestList::default();
        let a = list.join();
        let b = list.join();
        let c = list.join();
        let d = list.join();
        list.leave(b); // from the middle
        list.leave(d); // the newest
        let e = list.join(); // takes a freed entry
        assert_eq!(list.len(), 3);
        assert!(list.close_oldest().is_some());
        assert!(list.is_closed(a) && !list.is_closed(c) && !list.is_closed(e));
        assert!(list.close_oldest().is_some());
        assert!(list.is_closed(c) && !list.is_closed(e));
        list.leave(a);
        list.leave(c);
        list.leave(e); // the last one: the list is empty
        assert_eq!(list.len(), 0);
        assert!(list.close_oldest().is_none());
        assert_eq!(list.entries.len(), 4, "entries are reused, not grown");
        let f = list.join();
        assert!(!list.is_closed(f), "a reused entry starts afresh");
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn a_wave_larger_than_kept_gives_its_entries_back_when_it_has_left() {
        let mut list = RestList::default();
        let wave: Vec<Place> = (0..KEEP_ENTRIES + 1).map(|_| list.join()).collect();
        assert!(list.close_oldest().is_some());
        for &p in &wave[..KEEP_ENTRIES] {
            list.leave(p);
        }
        assert_eq!(list.entries.len(), KEEP_ENTRIES + 1, "one still rests");
        list.leave(wave[KEEP_ENTRIES]);
        assert_eq!((list.entries.capacity(), list.free.capacity()), (0, 0));
        let p = list.join();
        assert_eq!(list.len(), 1);
        assert!(list.close_oldest().is_some() && list.is_closed(p));
    }

    #[test]
    fn a_closed_connection_is_closed_once() {
        let mut list = RestList::default();
        let a = list.join();
        assert!(list.close_oldest().is_some());
        assert!(list.close_oldest().is_none(), "taken out of the chain");
        assert!(list.is_closed(a));
        list.leave(a);
        assert_eq!(list.free, vec![a.0]);
    }
}
