//! The codec of the `sorcha.peer.v1` services (server and client): prost, as tonic's default,
//! with a small initial buffer.
//!
//! tonic gives every call an encode buffer of 8 KiB by default and keeps it for the call's
//! life. A push stream lives for hours and carries notifications of a few hundred bytes, so on
//! a hub with thousands of subscribers those buffers were a quarter of each stream's memory.
//! Starting at 1 KiB costs nothing for small messages; large ones (full-sync batches) grow the
//! buffer as before and are still sent in chunks of up to 32 KiB.

use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::prost::Message;
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial encode/decode buffer of a call.
const BUFFER_BYTES: usize = 1024;
/// Encoded messages are handed to HTTP/2 once this many bytes are buffered (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Prost encoding with [`BUFFER_BYTES`] initial buffers; named by `build.rs` as the codec of
/// every generated service and client.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }
}
