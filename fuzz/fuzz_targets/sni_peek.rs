//! Fuzzes [`meridian_sni::peek_client_hello`], the ClientHello peek a zone ingress
//! or egress runs on every passthrough connection before it knows anything about
//! the peer.
//!
//! The input is what the peer sends. It is peeked twice from an in-memory stream
//! (no sockets): once as it comes (reads of up to 4 KiB) and once one byte per read,
//! as a peer trickling its hello would send it. Checked:
//!
//! - the peek never panics, whatever the bytes;
//! - both peeks agree: the same server name and ALPN when one succeeds, and both
//!   succeed or both fail (how TCP splits the hello must not change the outcome);
//! - the bytes handed back (to be replayed to the upstream) are a prefix of the
//!   input, and an error never claims more bytes read than were sent;
//! - a server name rustls returns is a valid DNS name whenever
//!   [`meridian_sni::looks_like_meridian_sni`] accepts it.
//!
//! Seeds: real ClientHellos written by rustls clients (`examples/seed_corpus.rs`).

#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use meridian_sni::{
    PeekError, PeekLimits, PeekedHello, is_valid_dns_name, looks_like_meridian_sni,
    peek_client_hello,
};
use tokio::io::{AsyncRead, ReadBuf};

/// An always-ready stream over `data`, at most `step` bytes per read; then end of stream.
struct Feed<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Feed<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.data.len().min(self.step).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime builds")
    })
}

fn peek(data: &[u8], step: usize) -> Result<PeekedHello, PeekError> {
    let mut stream = Feed { data, step };
    let limits = PeekLimits::default();
    runtime().block_on(peek_client_hello(&mut stream, &limits))
}

fn check(data: &[u8], result: &Result<PeekedHello, PeekError>) {
    match result {
        Ok(hello) => {
            assert!(
                data.starts_with(&hello.bytes),
                "replayed bytes are not a prefix of the input"
            );
            if let Some(name) = &hello.server_name
                && looks_like_meridian_sni(name)
            {
                assert!(is_valid_dns_name(name), "{name:?}");
            }
        }
        Err(error) => {
            assert!(error.bytes_read() <= data.len(), "{error}");
            // Every error renders (it is logged).
            let _ = error.to_string();
            let _ = error.result_label();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = peek(data, usize::MAX);
    check(data, &whole);
    let trickled = peek(data, 1);
    check(data, &trickled);
    match (&whole, &trickled) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.server_name, b.server_name);
            assert_eq!(a.alpn, b.alpn);
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("the split changed the outcome: whole {a:?}, byte by byte {b:?}"),
    }
});
