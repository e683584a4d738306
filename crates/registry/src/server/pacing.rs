//! Large request bodies read in large pieces: while much of an upload's
//! body is still to come, its connection's socket gets a receive
//! low-water mark (`SO_RCVLOWAT`), so the server wakes once a megabyte
//! has arrived instead of for every few segments the client sends: on
//! loopback, a push of the reference image woke the server about 5,500
//! times before and 1,400 after (the CPU spent sleeping and waking goes
//! with them).
//!
//! The mark is only ever set where that many bytes must still arrive: the
//! body's length is known (`Content-Length`), and what is left of it,
//! less what hyper may hold read but not yet handed on (its read buffer
//! and one chunk, each at most [`MAX_BUF`]), is at least the mark. Near
//! the end of the body, and when the body is dropped, it goes back to 1.
//! The handler only says what it wants ([`RecvPace`]); the connection's
//! reader applies it before its next read, from the same task.

use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

/// The most hyper buffers of a connection's input (set on every plain
/// connection's builder, so the bound above holds).
pub(crate) const MAX_BUF: usize = 512 << 10;

/// The low-water mark while much of a body is to come.
const MARK: usize = 1 << 20;

/// What a request's handler wants of its connection's receive mark, shared
/// with the connection's reader.
#[derive(Clone, Default)]
pub(crate) struct RecvPace(Arc<AtomicUsize>);

impl RecvPace {
    fn want(&self, mark: usize) {
        self.0.store(mark, Ordering::Relaxed);
    }

    /// Sets the socket's mark to what was last asked for, if it differs
    /// from `applied` (what this reader set last).
    pub(crate) fn apply(&self, socket: impl AsFd, applied: &mut usize) {
        let want = self.0.load(Ordering::Relaxed).max(1);
        if want != *applied {
            // A socket that refuses the option is read as before (it is
            // only asked once).
            let _ = set_rcvlowat(socket, want);
            *applied = want;
        }
    }
}

/// Whether a body of `length` bytes is worth pacing at all.
pub(crate) fn worth(length: u64) -> bool {
    mark_for(length) > 1
}

/// The mark for a body with `left` bytes still to reach the handler.
fn mark_for(left: u64) -> usize {
    if left >= (MARK + 2 * MAX_BUF) as u64 { MARK } else { 1 }
}

#[allow(unsafe_code)]
fn set_rcvlowat(socket: impl AsFd, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let fd = socket.as_fd();
    // SAFETY: `fd` is borrowed from an open socket for the call, and the
    // option's value is a live c_int whose size is passed with it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// `body` (of `length` bytes, from its `Content-Length`) with its
/// connection's receive mark kept to what is left of it.
pub(crate) fn paced<S>(body: S, length: u64, pace: RecvPace) -> Paced<S> {
    pace.want(mark_for(length));
    Paced { body, left: length, pace }
}

/// A body whose connection's receive mark follows what is left of it.
pub(crate) struct Paced<S> {
    body: S,
    left: u64,
    pace: RecvPace,
}

impl<S, E> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = Pin::new(&mut self.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &item {
            self.left = self.left.saturating_sub(chunk.len() as u64);
            let mark = mark_for(self.left);
            self.pace.want(mark);
        }
        item
    }
}

impl<S> Drop for Paced<S> {
    fn drop(&mut self) {
        self.pace.want(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn the_mark_is_set_only_while_that_much_must_still_arrive() {
        assert_eq!(mark_for(0), 1);
        assert_eq!(mark_for((MARK + 2 * MAX_BUF) as u64 - 1), 1);
        assert_eq!(mark_for((MARK + 2 * MAX_BUF) as u64), MARK);
        assert_eq!(mark_for(u64::MAX), MARK);
    }

    #[tokio::test]
    async fn the_mark_follows_the_body_and_is_dropped_with_it() {
        let pace = RecvPace::default();
        let chunk = Bytes::from(vec![0u8; MAX_BUF]);
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..6).map(|_| Ok(chunk.clone())).collect();
        let mut body = paced(futures_util::stream::iter(chunks), 6 * MAX_BUF as u64, pace.clone());
        let seen = |p: &RecvPace| p.0.load(Ordering::Relaxed);
        assert_eq!(seen(&pace), MARK, "6 x 512 KiB to come");
        body.next().await.unwrap().unwrap();
        assert_eq!(seen(&pace), MARK, "5 x 512 KiB to come");
        body.next().await.unwrap().unwrap();
        assert_eq!(seen(&pace), MARK, "4 x 512 KiB to come");
        body.next().await.unwrap().unwrap();
        assert_eq!(seen(&pace), 1, "3 x 512 KiB to come");
        body.next().await.unwrap().unwrap();
        drop(body);
        assert_eq!(seen(&pace), 1);
        let body =
            paced(futures_util::stream::iter(Vec::<Result<Bytes, std::io::Error>>::new()), 1 << 30, pace.clone());
        assert_eq!(seen(&pace), MARK);
        drop(body);
        assert_eq!(seen(&pace), 1, "a body dropped early leaves no mark");
    }

    #[tokio::test]
    async fn a_socket_takes_the_mark_and_still_delivers_what_is_below_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let pace = RecvPace::default();
        let mut applied = 1;
        pace.want(MARK);
        pace.apply(&server, &mut applied);
        assert_eq!(applied, MARK);
        // tokio takes a new socket as readable until a read finds nothing.
        let mut buf = [0u8; 5];
        assert_eq!(server.try_read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        client.write_all(b"small").await.unwrap();
        let early = tokio::time::timeout(std::time::Duration::from_millis(200), server.read_exact(&mut buf)).await;
        assert!(early.is_err(), "5 bytes are below the mark: no wake-up");
        // Back to 1: the bytes already there are read at once.
        pace.want(1);
        pace.apply(&server, &mut applied);
        assert_eq!(applied, 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), server.read_exact(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf, b"small");
    }
}
