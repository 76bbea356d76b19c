//! Listening sockets: created here with a deep accept queue, owned by the process (not by a
//! core), so that they can outlive any one core and be handed to a successor process.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd};

/// The kernel's accept queue length we ask for (capped by net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening socket on `bind:port` with SO_REUSEADDR and close-on-exec.
pub(crate) fn bind(bind: &str, port: u16) -> io::Result<TcpListener> {
    let ip: IpAddr = bind.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--bind {bind:?} is not an IP address"),
        )
    })?;
    let addr = SocketAddr::new(ip, port);
    let domain = if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns; the listener takes it over and
    // closes it on every error path below by being dropped.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    enable(&listener, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    let (storage, len) = sockaddr(&addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes for this family.
    if unsafe { libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")));
    }
    // SAFETY: valid, bound socket.
    if unsafe { libc::listen(fd, LISTEN_BACKLOG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Sets TCP_NODELAY on a listening socket (bound here or inherited). Linux copies it to
/// every connection the socket accepts, which saves a setsockopt per client connection;
/// without it, the last small segment of a response written in pieces could wait for the
/// client's delayed ACK.
pub(crate) fn set_nodelay_for_accepted(listener: &TcpListener) -> io::Result<()> {
    enable(listener, libc::IPPROTO_TCP, libc::TCP_NODELAY).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot set TCP_NODELAY on the listening socket: {e}"),
        )
    })
}

/// Turns on an integer socket option of `listener`.
fn enable(listener: &TcpListener, level: libc::c_int, option: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd owned by `listener`, pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            level,
            option,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        let listener = bind("127.0.0.1", 0).unwrap();
        set_nodelay_for_accepted(&listener).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let limit = Instant::now() + Duration::from_secs(5);
        let accepted = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < limit => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY inherited");
        assert!(
            !client.nodelay().unwrap(),
            "the client's own socket is untouched"
        );
    }
}
