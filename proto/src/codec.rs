//! The data-plane stream's codec: prost, with encode buffers sized for fragments.
//!
//! tonic's encoder keeps one buffer per stream for the stream's life, and that
//! buffer keeps the capacity of the largest message it ever held. With the default
//! settings it also packs every message that is ready into one buffer of up to
//! 32 KiB before yielding. A zone CP holds a stream per proxy, so both multiply by a
//! thousand. Here a buffer starts at, and yields at, one [`crate::fragment::SIZE`]:
//! with messages cut into fragments of that size, each stream's buffer stays about
//! one fragment. Decode buffers start at 1 KiB instead of 8.

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::fragment;

/// Where a stream's decode buffer starts (tonic's default is 8 KiB).
const DECODE_BUFFER: usize = 1024;

/// A [`ProstCodec`] whose encoder yields after each fragment-sized message.
#[derive(Debug, Clone)]
pub struct DpCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for DpCodec<T, U> {
    fn default() -> Self {
        DpCodec(PhantomData)
    }
}

impl<T, U> Codec for DpCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        // Room for a whole fragment and its gRPC and protobuf framing.
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(fragment::SIZE + 64, fragment::SIZE))
    }

    fn decoder(&mut self) -> Self::Decoder {
        // What proxies send is small (ACKs, CSRs); a buffer grows for more.
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(DECODE_BUFFER, DECODE_BUFFER))
    }
}
