//! Parallel gzip, pigz-style: the input is cut into 1 MiB chunks, each
//! compressed on a worker thread into an independent gzip member, and the
//! members are written in order. A multi-member gzip stream is valid gzip
//! (RFC 1952, section 2.2); every reader we care about (Go's `gzip.Reader`
//! used by Docker and containerd, zlib's `gunzip`, ours) reads it whole.
//! Small layers (one chunk) come out exactly as with a serial encoder, and
//! the output depends only on the input and the level, never on the number
//! of threads.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const CHUNK: usize = 1 << 20;

/// A `Write` that gzips what it is given on all cores into `inner`.
pub struct ParallelGzWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    jobs: Option<SyncSender<(u64, Vec<u8>)>>,
    done: Receiver<(u64, Vec<u8>)>,
    workers: Vec<JoinHandle<()>>,
    sent: u64,
    written: u64,
    max_in_flight: u64,
    pending: BTreeMap<u64, Vec<u8>>,
}

impl<W: Write> ParallelGzWriter<W> {
    /// Compresses into `inner` at `level` with one worker per core.
    pub fn new(inner: W, level: flate2::Compression) -> Self {
        Self::with_threads(inner, level, std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Compresses into `inner` at `level` on `threads` workers (at least one).
    pub fn with_threads(inner: W, level: flate2::Compression, threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, job_rx) = sync_channel::<(u64, Vec<u8>)>(threads * 2);
        let (done_tx, done) = sync_channel::<(u64, Vec<u8>)>(threads * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let (rx, tx) = (Arc::clone(&job_rx), done_tx.clone());
                std::thread::spawn(move || {
                    loop {
                        let job = rx.lock().expect("no worker panics holding it").recv();
                        let Ok((seq, data)) = job else { return };
                        let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2 + 64), level);
                        let member =
                            e.write_all(&data).and_then(|()| e.finish()).expect("compressing into memory cannot fail");
                        if tx.send((seq, member)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        ParallelGzWriter {
            inner,
            buf: Vec::with_capacity(CHUNK),
            jobs: Some(jobs),
            done,
            workers,
            sent: 0,
            written: 0,
            max_in_flight: threads as u64 * 2,
            pending: BTreeMap::new(),
        }
    }

    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, member) = self.done.recv().map_err(|_| io::Error::other("a gzip worker stopped"))?;
        self.pending.insert(seq, member);
        while let Some(m) = self.pending.remove(&self.written) {
            self.inner.write_all(&m)?;
            self.written += 1;
        }
        Ok(())
    }

    fn submit(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        while self.sent - self.written >= self.max_in_flight {
            self.collect_one()?;
        }
        let jobs = self.jobs.as_ref().expect("not finished");
        jobs.send((self.sent, chunk)).map_err(|_| io::Error::other("the gzip workers stopped"))?;
        self.sent += 1;
        Ok(())
    }

    /// Compresses what is left, writes every member and returns `inner`.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.sent == 0 {
            let last = std::mem::take(&mut self.buf);
            self.submit(last)?;
        }
        self.jobs = None;
        while self.written < self.sent {
            self.collect_one()?;
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.submit(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Members are only complete at chunk boundaries; flushing the inner
        // writer is all that can be done before `finish`.
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn round_trips_through_a_multi_member_reader() {
        for len in [0usize, 10, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 12345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut w = ParallelGzWriter::new(Vec::new(), flate2::Compression::fast());
            for piece in data.chunks(100_003) {
                w.write_all(piece).unwrap();
            }
            let gz = w.finish().unwrap();
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{len}");
        }
    }
}
