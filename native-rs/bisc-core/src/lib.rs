//! Pure-Rust hot paths of bisc: the media packet codec and the file chunk
//! hasher. The Python bindings live in the `bisc-py` crate.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod chunkhash;
pub mod packet;

pub use chunkhash::{
    hash_chunks, hash_chunks_parallel, hash_file_chunks, ChunkHashError, Hash, CHUNK_SIZE,
};
pub use packet::{decode, encode, encode_into, PacketError, PacketHeader, HEADER_SIZE, VERSION};
