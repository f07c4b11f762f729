//! Cutting a large [`ControlMessage`] into [`Fragment`]s and putting it back
//! together (`proto/dp.proto`, step 4).
//!
//! Both ends of the data-plane stream use this module, so the framing lives once:
//! the zone CP calls [`split`] for a proxy that announced [`FEATURE`], the proxy
//! feeds every fragment to a [`Reassembler`]. A message that fits in one fragment
//! travels whole.
//!
//! Invariants: fragments of one message are consecutive on the stream; a
//! reassembled message is never itself a fragment; the reassembler never holds
//! more than [`MAX_MESSAGE`] bytes (what tonic refuses for a whole message by
//! default), so a peer cannot make it grow without bound.

use prost::Message;
use prost::bytes::Bytes;

use crate::dp::control_message::Message as ToProxy;
use crate::dp::{ControlMessage, Fragment};

/// The `Hello.features` entry of a proxy that reassembles fragments.
pub const FEATURE: &str = "fragments";
/// The data carried by one fragment.
pub const SIZE: usize = 16 * 1024;
/// The largest message a [`Reassembler`] puts back together (tonic's default
/// limit for a message received whole).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// `message` as it goes on the stream: itself if it fits in one fragment, else
/// its encoding cut into fragments of [`SIZE`] bytes (slices of one buffer).
pub fn split(message: ControlMessage) -> Vec<ControlMessage> {
    if message.encoded_len() <= SIZE {
        return vec![message];
    }
    let encoded = Bytes::from(message.encode_to_vec());
    let count = encoded.len().div_ceil(SIZE);
    (0..count)
        .map(|i| {
            let data = encoded.slice(i * SIZE..((i + 1) * SIZE).min(encoded.len()));
            ControlMessage {
                message: Some(ToProxy::Fragment(Fragment {
                    data,
                    last: i + 1 == count,
                })),
            }
        })
        .collect()
}

/// Why fragments did not make a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The fragments so far exceed [`MAX_MESSAGE`].
    #[error("fragmented message exceeds {MAX_MESSAGE} bytes ({0} bytes so far)")]
    TooLarge(usize),
    /// The concatenated data is not a `ControlMessage`.
    #[error("fragments of {len} bytes do not decode as a ControlMessage: {reason}")]
    Undecodable {
        /// The reassembled length.
        len: usize,
        /// The decoder's complaint.
        reason: String,
    },
    /// The reassembled message is itself a fragment.
    #[error("a reassembled message is itself a fragment")]
    Nested,
}

/// Collects fragments until the last, then yields the message.
#[derive(Debug, Default)]
pub struct Reassembler {
    buf: Vec<u8>,
}

impl Reassembler {
    /// Takes the next message off the stream: `Some` when `message` is whole or
    /// completes one, `None` while fragments are pending. After an error the
    /// partial message is dropped and the next fragment starts a new one.
    pub fn push(
        &mut self,
        message: ControlMessage,
    ) -> Result<Option<ControlMessage>, FragmentError> {
        let Some(ToProxy::Fragment(fragment)) = message.message else {
            return Ok(Some(message));
        };
        if self.buf.len() + fragment.data.len() > MAX_MESSAGE {
            let len = self.buf.len() + fragment.data.len();
            self.buf = Vec::new();
            return Err(FragmentError::TooLarge(len));
        }
        self.buf.extend_from_slice(&fragment.data);
        if !fragment.last {
            return Ok(None);
        }
        let buf = std::mem::take(&mut self.buf);
        let whole =
            ControlMessage::decode(buf.as_slice()).map_err(|e| FragmentError::Undecodable {
                len: buf.len(),
                reason: e.to_string(),
            })?;
        if matches!(whole.message, Some(ToProxy::Fragment(_))) {
            return Err(FragmentError::Nested);
        }
        Ok(Some(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::{Config, Error};

    fn config(len: usize) -> ControlMessage {
        ControlMessage {
            message: Some(ToProxy::Config(Config {
                version: 7,
                config: (0..len).map(|i| (i % 251) as u8).collect(),
            })),
        }
    }

    fn fragment(data: &[u8], last: bool) -> ControlMessage {
        ControlMessage {
            message: Some(ToProxy::Fragment(Fragment {
                data: Bytes::copy_from_slice(data),
                last,
            })),
        }
    }

    #[test]
    fn a_small_message_travels_whole() {
        let small = config(100);
        assert_eq!(split(small.clone()), vec![small]);
    }

    #[test]
    fn a_large_message_is_cut_and_put_back_together() {
        let large = config(3 * SIZE + 10);
        let parts = split(large.clone());
        assert_eq!(parts.len(), 4);
        let mut reassembler = Reassembler::default();
        let mut out = Vec::new();
        for part in parts {
            assert!(
                part.encoded_len() <= SIZE + 16,
                "one fragment and its framing"
            );
            out.extend(reassembler.push(part).expect("valid fragments"));
        }
        assert_eq!(out, vec![large]);
        // The reassembler is ready for the next message.
        let small = config(5);
        assert_eq!(reassembler.push(small.clone()), Ok(Some(small)));
    }

    #[test]
    fn garbage_fragments_are_an_error_not_a_panic() {
        let mut reassembler = Reassembler::default();
        assert_eq!(reassembler.push(fragment(&[0xff; 3], false)), Ok(None));
        assert!(matches!(
            reassembler.push(fragment(&[0xff; 3], true)),
            Err(FragmentError::Undecodable { len: 6, .. })
        ));
        // The error dropped the partial message.
        let error = ControlMessage {
            message: Some(ToProxy::Error(Error { detail: "x".into() })),
        };
        let encoded = error.encode_to_vec();
        assert_eq!(reassembler.push(fragment(&encoded, true)), Ok(Some(error)));
    }

    #[test]
    fn a_fragment_of_fragments_is_refused() {
        let inner = fragment(b"abc", true).encode_to_vec();
        let mut reassembler = Reassembler::default();
        assert_eq!(
            reassembler.push(fragment(&inner, true)),
            Err(FragmentError::Nested)
        );
    }

    #[test]
    fn reassembly_stops_at_the_size_limit() {
        let mut reassembler = Reassembler::default();
        let chunk = vec![0u8; SIZE];
        for _ in 0..MAX_MESSAGE / SIZE {
            assert_eq!(reassembler.push(fragment(&chunk, false)), Ok(None));
        }
        assert_eq!(
            reassembler.push(fragment(&[0], false)),
            Err(FragmentError::TooLarge(MAX_MESSAGE + 1))
        );
    }
}
