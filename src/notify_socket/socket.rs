//! Where the children's notify sockets live, and one socket: bound, read without blocking, with
//! the sender's credentials and nothing else.
//!
//! [`Place`]: a directory of our own, mode 0700, under `$RUNTIME_DIRECTORY` (systemd's
//! `RuntimeDirectory=`) when set, else the temporary directory (`$TMPDIR`, `/tmp`), so only our
//! user (and root) can reach a socket in it; removed when the replica ends (also on SIGTERM: the
//! leadership loop ends, and the listener's owner removes it). Where no directory can be made (a
//! read-only root filesystem without a writable `/tmp`, as containers run) the sockets are
//! abstract (`@singleton-exec/PID/RANDOM/N`): nothing on disk, gone with the process, reachable
//! by any process of the network namespace, which is why every datagram's sender is checked
//! ([`crate::notify_socket::sender`]) wherever the socket is.
//!
//! [`ChildSocket`]: one per child, so nothing a finished child left queued is read as the next
//! one's. Reading it ([`ChildSocket::receive`]) never blocks and never takes in a file
//! descriptor: the control buffer has room for the credentials alone, so the kernel closes the
//! descriptors a sender passes (`BARRIER=1`'s, which the sender waits to see closed; `FDSTORE=1`'s)
//! as the datagram is read, and none can pile up in this process or leak into a child.

#![forbid(unsafe_code)]

use std::io;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, setsockopt, sockopt, MsgFlags};

/// Where the sockets are made.
#[derive(Debug)]
pub enum Place {
    /// A directory of ours (0700), removed by [`Place::remove`].
    Dir(PathBuf),
    /// Abstract names starting with this (no leading NUL).
    Abstract(String),
}

impl Place {
    /// A private directory under `$RUNTIME_DIRECTORY` or the temporary directory; abstract
    /// sockets when neither can hold one.
    pub fn create() -> Place {
        let runtime = std::env::var_os("RUNTIME_DIRECTORY")
            .and_then(|v| std::env::split_paths(&v).next())
            .filter(|p| p.is_absolute());
        let bases = runtime.into_iter().chain([std::env::temp_dir()]);
        for base in bases {
            match private_dir(&base) {
                Ok(dir) => return Place::Dir(dir),
                Err(e) => tracing::debug!(base = %base.display(), error = %e,
                    "cannot make a directory for the children's notify sockets here"),
            }
        }
        Place::Abstract(format!(
            "singleton-exec/{}/{:016x}",
            std::process::id(),
            random()
        ))
    }

    /// Removes the directory and what is left in it (nothing to do for abstract sockets).
    pub fn remove(&self) {
        if let Place::Dir(dir) = self {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Where the socket of child `n` is: the path, or the abstract name.
    fn address(&self, n: u64) -> Address {
        match self {
            Place::Dir(dir) => Address::Path(dir.join(format!("child-{n}.sock"))),
            Place::Abstract(prefix) => Address::Abstract(format!("{prefix}/{n}")),
        }
    }
}

/// A socket's address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Path(PathBuf),
    Abstract(String),
}

/// Makes `base/singleton-exec.PID.RANDOM`, mode 0700.
fn private_dir(base: &Path) -> io::Result<PathBuf> {
    let mut last = io::Error::other("no attempt");
    for _ in 0..8 {
        let dir = base.join(format!(
            "singleton-exec.{}.{:08x}",
            std::process::id(),
            random() as u32
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// 64 random bits from the standard library's randomly keyed hasher (no extra dependency).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(crate::core::clock::BootInstant::now().as_nanos());
    h.finish()
}

/// One child's notify socket.
#[derive(Debug)]
pub struct ChildSocket {
    socket: UnixDatagram,
    address: Address,
}

/// What the sender of a datagram is, as the kernel says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    /// In our PID namespace; 0 when the sender is outside it.
    pub pid: libc::pid_t,
    pub uid: libc::uid_t,
}

/// One read of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// Nothing is queued.
    Nothing,
    /// A datagram of `len` bytes (its real length, also when it did not fit the buffer).
    Datagram {
        len: usize,
        sender: Option<Credentials>,
        /// Longer than the buffer: only its start was read.
        truncated: bool,
        /// The sender passed file descriptors, which the kernel closed.
        passed_fds: bool,
    },
}

impl ChildSocket {
    /// Binds the socket of child `n` in `place`; an abstract one when the directory cannot hold
    /// it (a path too long for a socket address).
    pub fn bind(place: &Place, n: u64) -> io::Result<ChildSocket> {
        let address = place.address(n);
        let socket = match bind(&address) {
            Ok(s) => s,
            Err(e) if matches!(address, Address::Path(_)) => {
                tracing::debug!(error = %e, "cannot bind the notify socket in its directory: an abstract one instead");
                let address = Place::Abstract(format!(
                    "singleton-exec/{}/{:016x}",
                    std::process::id(),
                    random()
                ))
                .address(n);
                return Ok(ChildSocket {
                    socket: bind(&address)?,
                    address,
                });
            }
            Err(e) => return Err(e),
        };
        Ok(ChildSocket { socket, address })
    }

    /// The value of `NOTIFY_SOCKET` for the child: the path, or `@name` for an abstract socket.
    pub fn env_value(&self) -> String {
        match &self.address {
            Address::Path(p) => p.to_string_lossy().into_owned(),
            Address::Abstract(name) => format!("@{name}"),
        }
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.socket)
    }

    /// Reads one datagram into `buf`, if one is queued.
    pub fn receive(&self, buf: &mut [u8]) -> io::Result<Receive> {
        let mut control = [0u8; CONTROL];
        let mut iov = [IoSliceMut::new(buf)];
        // MSG_TRUNC: the real length of a longer datagram. MSG_CMSG_CLOEXEC: never needed, as
        // no descriptor is taken in, but no descriptor could leak into a child either.
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC | MsgFlags::MSG_CMSG_CLOEXEC;
        let got = recvmsg::<()>(self.socket.as_raw_fd(), &mut iov, Some(&mut control), flags);
        let (len, flags) = match got {
            Ok(msg) => (msg.bytes, msg.flags),
            Err(nix::errno::Errno::EAGAIN) => return Ok(Receive::Nothing),
            Err(e) => return Err(e.into()),
        };
        Ok(Receive::Datagram {
            len,
            sender: credentials(&control),
            truncated: flags.contains(MsgFlags::MSG_TRUNC),
            passed_fds: flags.contains(MsgFlags::MSG_CTRUNC),
        })
    }
}

impl Drop for ChildSocket {
    fn drop(&mut self) {
        if let Address::Path(p) = &self.address {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A bound, non-blocking datagram socket that receives its senders' credentials.
fn bind(address: &Address) -> io::Result<UnixDatagram> {
    let socket = match address {
        Address::Path(p) => UnixDatagram::bind(p)?,
        Address::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            UnixDatagram::bind_addr(&addr)?
        }
    };
    socket.set_nonblocking(true)?;
    setsockopt(&socket, sockopt::PassCred, &true)?;
    Ok(socket)
}

/// The alignment of control messages: a `size_t`.
const ALIGN: usize = std::mem::size_of::<usize>();

const fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Where a control message's data starts.
const DATA: usize = align(std::mem::size_of::<libc::cmsghdr>());

/// Room for one `SCM_CREDENTIALS` message and nothing more (`CMSG_SPACE(sizeof(struct ucred))`):
/// with no room left, the kernel closes any passed descriptor instead of installing it.
const CONTROL: usize = DATA + align(std::mem::size_of::<libc::ucred>());

/// The sender's credentials from a control buffer that was zeroed before the read: the kernel
/// puts them first when the socket has `SO_PASSCRED`. Read field by field from the bytes, so a
/// buffer cut short (`MSG_CTRUNC` after dropped descriptors) is read safely too.
fn credentials(control: &[u8; CONTROL]) -> Option<Credentials> {
    let int = |at: usize| -> Option<i32> {
        Some(i32::from_ne_bytes(
            control.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    let level = int(std::mem::offset_of!(libc::cmsghdr, cmsg_level))?;
    let kind = int(std::mem::offset_of!(libc::cmsghdr, cmsg_type))?;
    if level != libc::SOL_SOCKET || kind != libc::SCM_CREDENTIALS {
        return None;
    }
    let pid = int(DATA + std::mem::offset_of!(libc::ucred, pid))?;
    let uid = int(DATA + std::mem::offset_of!(libc::ucred, uid))? as libc::uid_t;
    Some(Credentials { pid, uid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, OwnedFd};

    fn place() -> (tempfile::TempDir, Place) {
        let base = tempfile::tempdir().unwrap();
        let dir = private_dir(base.path()).unwrap();
        (base, Place::Dir(dir))
    }

    fn receive(sock: &ChildSocket) -> (Vec<u8>, Receive) {
        let mut buf = [0u8; 64];
        let got = sock.receive(&mut buf).unwrap();
        let len = match got {
            Receive::Datagram { len, .. } => len.min(buf.len()),
            Receive::Nothing => 0,
        };
        (buf[..len].to_vec(), got)
    }

    #[test]
    fn a_private_directory_is_ours_alone_and_removed_with_its_sockets() {
        use std::os::unix::fs::PermissionsExt;
        let (_base, place) = place();
        let Place::Dir(dir) = &place else { panic!() };
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        let sock = ChildSocket::bind(&place, 3).unwrap();
        assert_eq!(sock.env_value(), dir.join("child-3.sock").to_string_lossy());
        drop(sock);
        assert!(
            !dir.join("child-3.sock").exists(),
            "unlinked with its socket"
        );
        let _kept = ChildSocket::bind(&place, 4).unwrap();
        place.remove();
        assert!(!dir.exists());
    }

    #[test]
    fn each_datagram_comes_with_its_sender_and_without_its_descriptors() {
        let (_base, place) = place();
        let sock = ChildSocket::bind(&place, 1).unwrap();
        assert_eq!(receive(&sock).1, Receive::Nothing);
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1", sock.env_value()).unwrap();
        let me = Credentials {
            pid: std::process::id() as libc::pid_t,
            uid: std::fs::metadata("/proc/self")
                .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
                .unwrap(),
        };
        let (bytes, got) = receive(&sock);
        assert_eq!(bytes, b"READY=1");
        assert_eq!(
            got,
            Receive::Datagram {
                len: 7,
                sender: Some(me),
                truncated: false,
                passed_fds: false
            }
        );
        // Longer than the buffer: its real length, flagged.
        client.send_to(&[b'x'; 100], sock.env_value()).unwrap();
        let (_, got) = receive(&sock);
        assert!(
            matches!(
                got,
                Receive::Datagram {
                    len: 100,
                    truncated: true,
                    ..
                }
            ),
            "{got:?}"
        );
        // A barrier: the write end of a pipe. Once read, ours is the only end left open, and the
        // reader sees the hang-up: the kernel closed the passed one.
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let fds = [write_end.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"BARRIER=1")];
        let to = nix::sys::socket::UnixAddr::new(sock.env_value().as_str()).unwrap();
        nix::sys::socket::sendmsg(
            client.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::empty(),
            Some(&to),
        )
        .unwrap();
        drop::<OwnedFd>(write_end);
        let open_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
        let (bytes, got) = receive(&sock);
        assert_eq!(bytes, b"BARRIER=1");
        assert!(
            matches!(got, Receive::Datagram { sender: Some(s), passed_fds: true, .. } if s == me),
            "{got:?}"
        );
        assert_eq!(
            std::fs::read_dir("/proc/self/fd").unwrap().count(),
            open_before
        );
        let mut poll = [nix::poll::PollFd::new(
            read_end.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO).unwrap();
        let hung_up = poll[0]
            .revents()
            .unwrap()
            .contains(nix::poll::PollFlags::POLLHUP);
        assert!(hung_up, "the barrier's descriptor is still open somewhere");
    }

    #[test]
    fn an_abstract_socket_is_named_with_an_at_sign() {
        let place = Place::Abstract(format!("singleton-exec-test/{}", std::process::id()));
        let sock = ChildSocket::bind(&place, 7).unwrap();
        let name = sock.env_value();
        assert!(name.starts_with("@singleton-exec-test/"), "{name}");
        use std::os::linux::net::SocketAddrExt;
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap();
        UnixDatagram::unbound()
            .unwrap()
            .send_to_addr(b"WATCHDOG=1", &addr)
            .unwrap();
        assert_eq!(receive(&sock).0, b"WATCHDOG=1");
        place.remove(); // nothing on disk
    }

    #[test]
    fn no_directory_means_abstract_sockets() {
        // /proc takes no new directory, not even from root.
        let place = match private_dir(Path::new("/proc")) {
            Ok(dir) => panic!("made {dir:?}"),
            Err(_) => Place::Abstract("x".into()),
        };
        assert!(matches!(place, Place::Abstract(_)));
        let random_differs = random() != random();
        assert!(random_differs);
    }
}
