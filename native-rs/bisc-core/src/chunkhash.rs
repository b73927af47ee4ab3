//! SHA-256 hashes of the fixed-size chunks of a file or buffer.
//!
//! Chunk `i` covers bytes `[i * CHUNK_SIZE, min((i + 1) * CHUNK_SIZE, size))`;
//! only the last chunk of a file may be shorter than [`CHUNK_SIZE`], and no
//! chunk is empty (an empty file has no chunks).

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// Size of one chunk in bytes (256 KiB).
pub const CHUNK_SIZE: usize = 262_144;

const CHUNK: u64 = CHUNK_SIZE as u64;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Why a range of chunks of a file cannot be hashed.
#[derive(Debug)]
pub enum ChunkHashError {
    /// The file does not hold the requested chunks (or shrank while read):
    /// chunk `chunk` needs the file to have at least `chunk * CHUNK_SIZE + 1`
    /// bytes but it has (or, for a short read, was seen to end at) `size`.
    ShortFile { chunk: u128, size: u64 },
    /// Any other I/O failure.
    Io(io::Error),
}

impl ChunkHashError {
    /// The file size chunk `chunk` needs, at least (`chunk * CHUNK_SIZE + 1`).
    fn needed(chunk: u128) -> u128 {
        chunk * u128::from(CHUNK) + 1
    }
}

impl fmt::Display for ChunkHashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkHashError::ShortFile { chunk, size } => write!(
                f,
                "file is shorter than expected: chunk {chunk} needs bytes up to {}, file has {size}",
                ChunkHashError::needed(*chunk)
            ),
            ChunkHashError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ChunkHashError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChunkHashError::Io(e) => Some(e),
            ChunkHashError::ShortFile { .. } => None,
        }
    }
}

impl From<io::Error> for ChunkHashError {
    fn from(e: io::Error) -> Self {
        ChunkHashError::Io(e)
    }
}

/// SHA-256 of `data`.
#[inline]
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The chunk hashes of an in-memory buffer, on the calling thread.
pub fn hash_chunks(data: &[u8]) -> Vec<Hash> {
    data.chunks(CHUNK_SIZE).map(sha256).collect()
}

/// Resolve a requested thread count: 0 means "all cores"; the result is
/// clamped to `1..=jobs` (and is 1 when there are no jobs).
fn worker_count(threads: usize, jobs: u64) -> usize {
    let wanted = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let jobs = usize::try_from(jobs).unwrap_or(usize::MAX);
    wanted.min(jobs).max(1)
}

/// The chunk hashes of an in-memory buffer, using `threads` threads
/// (0 = available parallelism). Same result as [`hash_chunks`].
pub fn hash_chunks_parallel(data: &[u8], threads: usize) -> Vec<Hash> {
    let chunks: Vec<&[u8]> = data.chunks(CHUNK_SIZE).collect();
    let workers = worker_count(threads, chunks.len() as u64);
    if workers <= 1 {
        return chunks.into_iter().map(sha256).collect();
    }
    let mut out = vec![[0u8; 32]; chunks.len()];
    // Contiguous blocks of output slots per worker: no sharing, no locks.
    let per = chunks.len().div_ceil(workers);
    std::thread::scope(|s| {
        for (slots, inputs) in out.chunks_mut(per).zip(chunks.chunks(per)) {
            s.spawn(move || {
                for (slot, input) in slots.iter_mut().zip(inputs) {
                    *slot = sha256(input);
                }
            });
        }
    });
    out
}

/// Read at `offset` into `buf` without moving any shared file cursor.
#[cfg(unix)]
#[inline]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

/// Read at `offset` into `buf` without moving any shared file cursor.
#[cfg(windows)]
#[inline]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// Fill as much of `buf` as the file holds from `offset`; returns the number
/// of bytes read (less than `buf.len()` only at end of file).
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Hash chunk `index` of a file of `size` bytes into `buf`.
///
/// A read shorter than [`CHUNK_SIZE`] is only accepted if it ends exactly at
/// `size`, i.e. for the file's last chunk.
fn hash_one(file: &File, buf: &mut [u8], index: u64, size: u64) -> Result<Hash, ChunkHashError> {
    let start = index * CHUNK;
    let got = read_full_at(file, buf, start)?;
    if got < CHUNK_SIZE && start + got as u64 != size {
        return Err(ChunkHashError::ShortFile {
            chunk: index.into(),
            size: start + got as u64,
        });
    }
    Ok(sha256(&buf[..got]))
}

/// What one worker produced: `(offset in range, hash)` pairs, or the first
/// failure it hit with its offset in the range.
type WorkerResult = Result<Vec<(u64, Hash)>, (u64, ChunkHashError)>;

/// Hash chunks `first_chunk .. first_chunk + count` of the file at `path`,
/// in order, with `threads` worker threads (0 = available parallelism).
///
/// Memory use is one [`CHUNK_SIZE`] buffer per worker. `count == 0` returns
/// no hashes without opening the file. If the file (by its size when opened)
/// has no chunk `first_chunk + count - 1`, or a chunk reads short other than
/// at the end of the file (it shrank), the error is
/// [`ChunkHashError::ShortFile`], with the same numbers as the Python
/// reference.
pub fn hash_file_chunks(
    path: &Path,
    first_chunk: u64,
    count: u64,
    threads: usize,
) -> Result<Vec<Hash>, ChunkHashError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let last = u128::from(first_chunk) + u128::from(count) - 1;
    if u128::from(size) <= last * u128::from(CHUNK) {
        return Err(ChunkHashError::ShortFile { chunk: last, size });
    }
    // The range lies inside a file of `size` bytes, so chunk offsets do not
    // overflow and `count` hashes (32 bytes per 256 KiB) fit in memory.
    let count_usize =
        usize::try_from(count).map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;

    let workers = worker_count(threads, count);
    if workers == 1 {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut out = Vec::with_capacity(count_usize);
        for index in first_chunk..first_chunk + count {
            out.push(hash_one(&file, &mut buf, index, size)?);
        }
        return Ok(out);
    }

    // Workers claim chunk indices in increasing order from a shared counter,
    // so when one fails every lower chunk has already been claimed and will be
    // finished: the lowest failing chunk is always found.
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let results: Vec<WorkerResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (file, next, stop) = (&file, &next, &stop);
                s.spawn(move || -> WorkerResult {
                    // Own handle per worker: on Windows synchronous I/O on one
                    // handle is serialised.
                    let own;
                    let file = if w == 0 {
                        file
                    } else {
                        own = File::open(path).map_err(|e| (0, e.into()))?;
                        &own
                    };
                    let mut buf = vec![0u8; CHUNK_SIZE];
                    let mut done = Vec::with_capacity(count_usize / workers + 1);
                    while !stop.load(Ordering::Relaxed) {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= count {
                            break;
                        }
                        let index = first_chunk + k;
                        match hash_one(file, &mut buf, index, size) {
                            Ok(h) => done.push((k, h)),
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                return Err((k, e));
                            }
                        }
                    }
                    Ok(done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });

    let mut out = vec![[0u8; 32]; count_usize];
    let mut first_err: Option<(u64, ChunkHashError)> = None;
    for r in results {
        match r {
            Ok(done) => {
                for (k, h) in done {
                    out[k as usize] = h;
                }
            }
            Err((k, e)) => {
                if first_err.as_ref().is_none_or(|(fk, _)| k < *fk) {
                    first_err = Some((k, e));
                }
            }
        }
    }
    match first_err {
        Some((_, e)) => Err(e),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Deterministic pseudo-random bytes.
    fn data(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(contents: &[u8]) -> TempFile {
            use std::sync::atomic::AtomicUsize;
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "bisc-core-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = File::create(&path).unwrap();
            f.write_all(contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(hash_chunks(b"abc"), vec![sha256(b"abc")]);
        assert!(hash_chunks(b"").is_empty());
        assert!(hash_chunks_parallel(b"", 4).is_empty());
    }

    #[test]
    fn chunk_boundaries() {
        let d = data(2 * CHUNK_SIZE + 5, 1);
        let hs = hash_chunks(&d);
        assert_eq!(hs.len(), 3);
        assert_eq!(hs[0], sha256(&d[..CHUNK_SIZE]));
        assert_eq!(hs[1], sha256(&d[CHUNK_SIZE..2 * CHUNK_SIZE]));
        assert_eq!(hs[2], sha256(&d[2 * CHUNK_SIZE..]));
    }

    #[test]
    fn parallel_matches_serial() {
        for len in [
            1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            5 * CHUNK_SIZE + 3,
            7 * CHUNK_SIZE,
        ] {
            let d = data(len, len as u64);
            let serial = hash_chunks(&d);
            for threads in [0, 1, 2, 3, 8] {
                assert_eq!(
                    hash_chunks_parallel(&d, threads),
                    serial,
                    "len {len} threads {threads}"
                );
            }
        }
    }

    #[test]
    fn file_matches_memory() {
        for len in [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17] {
            let d = data(len, 7 + len as u64);
            let f = TempFile::new(&d);
            let want = hash_chunks(&d);
            for threads in [0, 1, 2, 3] {
                let got = hash_file_chunks(&f.0, 0, want.len() as u64, threads).unwrap();
                assert_eq!(got, want, "len {len} threads {threads}");
                // Every sub-range, too.
                for first in 0..want.len() {
                    for count in 0..=(want.len() - first) {
                        let got =
                            hash_file_chunks(&f.0, first as u64, count as u64, threads).unwrap();
                        assert_eq!(got, &want[first..first + count]);
                    }
                }
            }
        }
    }

    fn short_file_err(r: Result<Vec<Hash>, ChunkHashError>) -> (u128, u64, String) {
        match r {
            Err(e @ ChunkHashError::ShortFile { chunk, size }) => (chunk, size, e.to_string()),
            other => panic!("expected ShortFile, got {other:?}"),
        }
    }

    #[test]
    fn range_past_eof() {
        let len = 2 * CHUNK_SIZE + 10;
        let f = TempFile::new(&data(len, 3));
        for threads in [0, 1, 2, 3] {
            // Chunk 3 does not exist: the last requested chunk is reported.
            let (chunk, size, msg) = short_file_err(hash_file_chunks(&f.0, 0, 4, threads));
            assert_eq!((chunk, size), (3, len as u64));
            assert_eq!(
                msg,
                format!(
                    "file is shorter than expected: chunk 3 needs bytes up to {}, file has {len}",
                    3 * CHUNK_SIZE + 1
                )
            );
            let (chunk, _, _) = short_file_err(hash_file_chunks(&f.0, 5, 1, threads));
            assert_eq!(chunk, 5);
            let (chunk, _, _) = short_file_err(hash_file_chunks(&f.0, 5, 3, threads));
            assert_eq!(chunk, 7);
            let (chunk, _, _) = short_file_err(hash_file_chunks(&f.0, 3, 1, threads));
            assert_eq!(chunk, 3);
            // Absurd ranges do not overflow.
            let (chunk, _, msg) = short_file_err(hash_file_chunks(&f.0, u64::MAX, 2, threads));
            assert_eq!(chunk, u128::from(u64::MAX) + 1);
            assert_eq!(
                msg,
                format!(
                    "file is shorter than expected: chunk {} needs bytes up to {}, file has {len}",
                    u128::from(u64::MAX) + 1,
                    (u128::from(u64::MAX) + 1) * CHUNK as u128 + 1
                )
            );
            assert!(hash_file_chunks(&f.0, u64::MAX - 1, 1, threads).is_err());
            assert!(hash_file_chunks(&f.0, 0, u64::MAX, threads).is_err());
        }
        // An empty file has no chunk 0.
        let empty = TempFile::new(b"");
        let (chunk, size, msg) = short_file_err(hash_file_chunks(&empty.0, 0, 1, 2));
        assert_eq!((chunk, size), (0, 0));
        assert_eq!(
            msg,
            "file is shorter than expected: chunk 0 needs bytes up to 1, file has 0"
        );
        // Exactly chunk-aligned: there is no chunk after the last full one.
        let aligned = TempFile::new(&data(CHUNK_SIZE, 4));
        let (chunk, _, msg) = short_file_err(hash_file_chunks(&aligned.0, 1, 1, 1));
        assert_eq!(chunk, 1);
        assert!(msg.ends_with(&format!(
            "needs bytes up to {}, file has {CHUNK_SIZE}",
            CHUNK_SIZE + 1
        )));
    }

    #[test]
    fn short_read_is_detected() {
        // A file that shrinks after its size was taken: emulate by hashing
        // against a larger claimed size.
        let d = data(CHUNK_SIZE + 100, 9);
        let f = TempFile::new(&d);
        let file = File::open(&f.0).unwrap();
        let mut buf = vec![0u8; CHUNK_SIZE];
        let claimed = 2 * CHUNK;
        match hash_one(&file, &mut buf, 1, claimed) {
            Err(ChunkHashError::ShortFile { chunk, size }) => {
                assert_eq!((chunk, size), (1, CHUNK + 100));
            }
            other => panic!("expected ShortFile, got {other:?}"),
        }
        assert_eq!(
            hash_one(&file, &mut buf, 1, d.len() as u64).unwrap(),
            sha256(&d[CHUNK_SIZE..])
        );
        assert_eq!(
            hash_one(&file, &mut buf, 0, d.len() as u64).unwrap(),
            sha256(&d[..CHUNK_SIZE])
        );
    }

    #[test]
    fn zero_count_does_not_open() {
        let path = std::env::temp_dir().join("bisc-core-test-does-not-exist");
        assert!(hash_file_chunks(&path, 0, 0, 1).unwrap().is_empty());
    }

    #[test]
    fn missing_file_is_io_error() {
        let path = std::env::temp_dir().join("bisc-core-test-does-not-exist");
        match hash_file_chunks(&path, 0, 1, 1) {
            Err(ChunkHashError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn worker_counts() {
        assert_eq!(worker_count(5, 2), 2);
        assert_eq!(worker_count(1, 10), 1);
        assert_eq!(worker_count(3, 0), 1);
        assert!(worker_count(0, 100) >= 1);
    }
}
