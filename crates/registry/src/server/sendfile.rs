//! Blobs sent with `sendfile(2)`: the stored file's page-cache pages go
//! into the socket without being copied through this process.
//!
//! hyper writes every response. A blob's body is a run of frames that
//! point into [`MARKER`], a static buffer no real data ever lives in; each
//! frame stands for a range of a file, queued on the connection
//! ([`SendQueue`]) when the frame is made. The connection's writer
//! ([`SendfileIo`]) sends whatever precedes a marker frame with `writev`,
//! and for the marker frame calls `sendfile` on the queued range instead.
//! A marker frame the writer cannot match with the range at the head of
//! the queue fails the connection: zeros are never sent for a blob.
//!
//! Where a file's filesystem refuses `sendfile`, the writer reads the range
//! and writes it instead. Either way the file is read on the connection's
//! thread, as the kernel finds it (the page cache, a local disk).
//!
//! Only plain-TCP HTTP/1 connections carry a queue, and they are built
//! with hyper's vectored writes forced on, so hyper hands body frames to
//! the writer as they are (never copied into its header buffer). Over TLS
//! or HTTP/2 a blob is read and sent as before.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::pacing::RecvPace;

/// The most one frame stands for.
const FRAME: usize = 1 << 20;

/// What marker frames point into. A `static` has an address of its own
/// (it is never merged with other constants), so a slice into it is known
/// by its address alone.
static MARKER: [u8; FRAME] = [0; FRAME];

/// What a file is read in where it cannot be sent with `sendfile`.
const COPY: usize = 256 << 10;

/// Ranges smaller than this are read and sent as bytes: a separate
/// `sendfile` costs more than copying them.
pub(crate) const MIN_SENDFILE: u64 = 64 << 10;

/// Whether `buf` is (what is left of) a marker frame.
fn is_marker(buf: &[u8]) -> bool {
    let base = MARKER.as_ptr() as usize;
    let at = buf.as_ptr() as usize;
    !buf.is_empty() && at >= base && at < base + FRAME
}

/// A range of a file a marker frame stands for.
struct Range {
    /// What the file holds (a blob's digest), for errors.
    what: Arc<str>,
    file: Arc<File>,
    offset: u64,
    left: usize,
}

/// The file ranges a connection's marker frames stand for, in the order
/// hyper writes them (one response at a time on an HTTP/1 connection).
#[derive(Clone, Default)]
pub(crate) struct SendQueue(Arc<Mutex<VecDeque<Range>>>);

impl SendQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Range>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A body of `len` bytes of `file` (holding `what`) from `offset`, to
    /// be sent on this queue's connection.
    pub(crate) fn body(
        &self,
        what: &str,
        file: File,
        offset: u64,
        len: u64,
    ) -> impl Stream<Item = io::Result<Bytes>> + use<> {
        let queue = self.clone();
        let what: Arc<str> = what.into();
        let file = Arc::new(file);
        let (mut offset, mut left) = (offset, len);
        futures_util::stream::poll_fn(move |_| {
            if left == 0 {
                return Poll::Ready(None);
            }
            let n = left.min(FRAME as u64) as usize;
            queue.lock().push_back(Range { what: what.clone(), file: file.clone(), offset, left: n });
            offset += n as u64;
            left -= n as u64;
            Poll::Ready(Some(Ok(Bytes::from_static(&MARKER[..n]))))
        })
    }
}

/// A plain TCP connection that sends marker frames with `sendfile`.
pub(crate) struct SendfileIo {
    tcp: TcpStream,
    queue: SendQueue,
    /// The receive mark the request being read asks for, and the one set.
    pace: RecvPace,
    lowat: usize,
    /// Once a file's filesystem refuses `sendfile` (`EINVAL`, `ENOSYS`):
    /// the buffer its ranges are read into and written from instead.
    copying: Option<Vec<u8>>,
}

impl SendfileIo {
    pub(crate) fn new(tcp: TcpStream, queue: SendQueue, pace: RecvPace) -> Self {
        SendfileIo { tcp, queue, pace, lowat: 1, copying: None }
    }

    /// Sends by reading and writing, as where `sendfile` is refused.
    #[cfg(test)]
    fn copying(mut self) -> Self {
        self.copying = Some(vec![0; COPY]);
        self
    }

    /// Sends (part of) the range at the head of the queue; `want` is what
    /// is left of its marker frame, which must be what is left of it.
    fn poll_sendfile(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let mut queue = self.queue.lock();
        let Some(range) = queue.front_mut() else {
            return Poll::Ready(Err(io::Error::other("a blob frame came with no file range queued")));
        };
        if range.left != want {
            return Poll::Ready(Err(io::Error::other("a blob frame does not match its file range")));
        }
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            let sent = match &mut self.copying {
                None => self.tcp.try_io(Interest::WRITABLE, || {
                    let mut off = range.offset;
                    Ok(rustix::fs::sendfile(&self.tcp, &*range.file, Some(&mut off), range.left)?)
                }),
                // What the socket does not take now is read again next
                // time (from the page cache).
                Some(buf) => {
                    let k = range.left.min(buf.len());
                    match rustix::io::pread(&*range.file, &mut buf[..k], range.offset) {
                        Ok(0) => Ok(0),
                        Ok(got) => self.tcp.try_write(&buf[..got]),
                        Err(e) => Err(e.into()),
                    }
                }
            };
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{}: its file ends at byte {}, before its size", range.what, range.offset),
                    )));
                }
                Ok(n) => {
                    range.offset += n as u64;
                    range.left -= n;
                    if range.left == 0 {
                        queue.pop_front();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                Err(e)
                    if self.copying.is_none()
                        && matches!(
                            rustix::io::Errno::from_io_error(&e),
                            Some(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS)
                        ) =>
                {
                    self.copying = Some(vec![0; COPY]);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for SendfileIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.pace.apply(&this.tcp, &mut this.lowat);
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Bytes before the first marker frame go by writev; a marker
        // frame first goes by sendfile.
        let Some(first) = bufs.iter().position(|b| !b.is_empty()) else { return Poll::Ready(Ok(0)) };
        if is_marker(&bufs[first]) {
            return this.poll_sendfile(cx, bufs[first].len());
        }
        let end = bufs[first..].iter().position(|b| is_marker(b)).map_or(bufs.len(), |i| first + i);
        Pin::new(&mut this.tcp).poll_write_vectored(cx, &bufs[first..end])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use futures_util::StreamExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A connected pair: our writer on one end, the peer's end.
    async fn pair(queue: &SendQueue) -> (SendfileIo, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (ours, _) = listener.accept().await.unwrap();
        (SendfileIo::new(ours, queue.clone(), RecvPace::default()), peer)
    }

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[tokio::test]
    async fn headers_go_by_writev_and_frames_by_sendfile() {
        send_around_frames(false).await;
    }

    #[tokio::test]
    async fn frames_are_read_and_written_where_sendfile_is_refused() {
        send_around_frames(true).await;
    }

    async fn send_around_frames(copying: bool) {
        let data: Vec<u8> = (0..(FRAME + 5000)).map(|i| (i % 251) as u8).collect();
        let queue = SendQueue::default();
        let (io, mut peer) = pair(&queue).await;
        let mut io = if copying { io.copying() } else { io };
        let frames: Vec<Bytes> =
            queue.body("data", file_of(&data), 3, data.len() as u64 - 3).map(Result::unwrap).collect().await;
        assert_eq!(frames.len(), 2);
        let n = io.write_vectored(&[IoSlice::new(b"head "), IoSlice::new(&frames[0])]).await.unwrap();
        assert_eq!(n, 5, "what precedes a frame goes alone");
        for frame in &frames {
            io.write_all(frame).await.unwrap();
        }
        io.write_all(b" tail").await.unwrap();
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [&b"head "[..], &data[3..], b" tail"].concat());
    }

    #[tokio::test]
    async fn a_frame_never_goes_out_as_zeros() {
        let queue = SendQueue::default();
        let (mut io, _peer) = pair(&queue).await;
        // No range queued for it.
        let e = io.write(&MARKER[..10]).await.unwrap_err();
        assert!(e.to_string().contains("no file range"), "{e}");
        // A file shorter than the range its frame stands for.
        let frames: Vec<Bytes> = queue.body("short", file_of(b"short"), 0, 100).map(Result::unwrap).collect().await;
        assert_eq!(io.write(&frames[0]).await.unwrap(), 5);
        let e = io.write(&frames[0][5..]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().starts_with("short: its file ends at byte 5"), "{e}");
        // A frame that is not what the queue's head is.
        let _ = queue.body("ten", file_of(b"0123456789"), 0, 10).map(Result::unwrap).collect::<Vec<_>>().await;
        let e = io.write(&MARKER[..4]).await.unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn only_slices_into_the_marker_are_markers() {
        assert!(is_marker(&MARKER[..10]));
        assert!(is_marker(&MARKER[FRAME - 1..]));
        assert!(!is_marker(&MARKER[..0]));
        assert!(!is_marker(vec![0u8; 16].as_slice()));
        assert!(!is_marker(&[0u8; 4]));
    }
}
