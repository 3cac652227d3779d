//! The ringkv client: the wire contract ([`proto`]) and an async SDK ([`Client`]).
//!
//! ringkv is a Dynamo-style, eventually consistent key-value store. A key holds a set of
//! **siblings** (concurrent writes that neither saw the other) and a **causal context**.
//! A read returns both; a write hands the context back so it replaces exactly the siblings
//! that were read, while writes the reader never saw survive as new siblings. Nothing is
//! lost silently, and the application decides how siblings merge.
//!
//! Where to start: [`Client`] (built with [`Client::builder`] or [`Client::connect`]), its
//! calls [`Client::get`], [`Client::put`] and [`Client::delete`], then [`ReadResult`] and
//! [`SiblingResolver`]. Errors are [`ClientError`]. The generated gRPC code in [`proto`] is
//! the one contract between clients and nodes, and between nodes; the node crate implements
//! its server traits (`proto::kv_server::Kv`, `proto::replica_server::Replica`).
//!
//! # Example: read, merge siblings, write back
//!
//! ```no_run
//! use bytes::Bytes;
//! use ringkv_client::{Client, ClientError, Consistency, SiblingValue, WriteOptions};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), ClientError> {
//!     let client = Client::connect(["127.0.0.1:7101", "127.0.0.1:7102"])?;
//!
//!     // A shopping cart stored as newline-separated items.
//!     let read = client.get("cart:alice").await?;
//!
//!     // Two devices may have added items concurrently: keep the union of all siblings.
//!     let union = |siblings: &[SiblingValue]| {
//!         let mut items: Vec<&[u8]> = siblings
//!             .iter()
//!             .flat_map(|s| s.value.split(|&b| b == b'\n'))
//!             .filter(|item| !item.is_empty())
//!             .collect();
//!         items.sort_unstable();
//!         items.dedup();
//!         Some(Bytes::from(items.join(&b'\n')))
//!     };
//!     let mut cart = read.resolve(&union).unwrap_or_default().to_vec();
//!     cart.extend_from_slice(b"\nbook");
//!
//!     // Writing with the read's context replaces every sibling we merged.
//!     let options = WriteOptions { consistency: Some(Consistency::Quorum), ..Default::default() };
//!     let context = client.put_with("cart:alice", cart, &read.context, options).await?;
//!
//!     // The returned context covers our write; keep it for the next update.
//!     println!("context for the next write: {}", context.to_base64());
//!     Ok(())
//! }
//! ```
//!
//! # Failures and retries
//!
//! A call tries the preferred endpoint first and fails over to the next one on a transport
//! error, `UNAVAILABLE` or a timeout, with jittered exponential backoff, at most
//! [`ClientBuilder::retries`] times. Every attempt is bounded by the request timeout, so no
//! call hangs. Requests the server rejects (`INVALID_ARGUMENT`, ...) are never retried.
#![warn(missing_docs)]

mod client;
mod connection;
mod context;
mod error;
mod message_stream;
mod options;
mod read;
mod received;
mod retry;

pub use client::{Client, ClientBuilder, BACKOFF_MAX, ENDPOINTS_MAX, RESPONSE_BYTES_MAX, RETRIES_MAX};
pub use connection::{Connection, ConnectionTimeouts, Dialer, Dialing, Io, TcpDialer};
pub use context::Context;
pub use error::ClientError;
pub use message_stream::MessageStream;
pub use options::{Consistency, ReadOptions, WriteOptions, TIMEOUT_MAX};
pub use read::{LastWriterWins, ReadResult, SiblingResolver, SiblingValue};
pub use received::SHARE_FROM_BYTES;

/// Code generated from `proto/ringkv.proto` (package `ringkv.v1`): messages, the `Kv` and
/// `Replica` clients (`kv_client`, `replica_client`) and server traits (`kv_server`,
/// `replica_server`). Fields are only ever added to the contract, never renumbered.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod proto {
    tonic::include_proto!("ringkv.v1");
}

/// The README's Rust example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
