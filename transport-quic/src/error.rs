//! The errors of every transport operation, one enum per operation, each variant a sentence.

use crate::alert::TlsAlert;
use flotilla_raft::NodeId;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes end before the frame does: the header or payload is cut short.
    #[error("the frame is truncated: {needed_bytes} bytes needed, {available_bytes} available")]
    Truncated {
        /// Bytes the frame needs.
        needed_bytes: u64,
        /// Bytes that were there.
        available_bytes: u64,
    },
    /// The first byte is not the Flotilla frame magic.
    #[error("the frame starts with {found:#04x}, not the Flotilla magic byte")]
    BadMagic {
        /// The byte found.
        found: u8,
    },
    /// The frame's version is one this build does not speak.
    #[error("the frame has version {found}, which this node does not speak")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The frame kind byte names no known kind.
    #[error("the frame has kind {found}, which is unknown")]
    UnknownKind {
        /// The kind byte found.
        found: u8,
    },
    /// The frame is of a kind this stream does not carry.
    #[error("the frame has kind {found}, but this stream carries kind {expected}")]
    UnexpectedKind {
        /// The kind the stream carries.
        expected: u8,
        /// The kind found.
        found: u8,
    },
    /// The frame is larger than the configured maximum.
    #[error("the frame needs {frame_bytes} bytes, over the limit of {frame_bytes_max}")]
    TooLarge {
        /// Size of the whole frame, header included.
        frame_bytes: u64,
        /// The configured limit.
        frame_bytes_max: u32,
    },
    /// The payload does not decode as the expected message.
    #[error("the frame payload does not decode: {reason}")]
    PayloadInvalid {
        /// What the decoder said.
        reason: String,
    },
    /// The payload decodes but leaves bytes over.
    #[error("the frame payload has {extra_bytes} bytes left over after the message")]
    TrailingBytes {
        /// How many bytes were left.
        extra_bytes: u64,
    },
}

/// Why a frame could not be read from or written to a QUIC stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The peer sent bytes that are not a valid frame.
    #[error("the peer sent a bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The stream or its connection failed while reading.
    #[error("the stream failed while reading: {0}")]
    Read(#[from] quinn::ReadError),
    /// The stream or its connection failed while writing.
    #[error("the stream failed while writing: {0}")]
    Write(#[from] quinn::WriteError),
    /// The connection failed before the stream could be opened or accepted.
    #[error("the connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The stream was closed before a frame arrived.
    #[error("the stream ended before a frame arrived")]
    Ended,
    /// A frame's payload did not arrive whole in time after its header.
    #[error(
        "the peer sent {received_bytes} of a frame's {payload_bytes} payload bytes and then \
         nothing for the rest of {timeout_ms} ms: the stream was given up"
    )]
    SlowFrame {
        /// The deadline.
        timeout_ms: u64,
        /// Payload bytes that arrived in time.
        received_bytes: usize,
        /// Payload bytes the header announced.
        payload_bytes: usize,
    },
}

/// Why a connection to a node or a client endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The UDP socket could not be bound.
    #[error("the endpoint could not bind its socket: {0}")]
    Bind(#[from] std::io::Error),
    /// quinn refused to start the connection (bad address, endpoint stopping, ...).
    #[error("the connection could not start: {0}")]
    Start(#[from] quinn::ConnectError),
    /// The QUIC or TLS handshake failed (unreachable peer, timeout...).
    #[error("the handshake failed: {0}")]
    Handshake(quinn::ConnectionError),
    /// A TLS alert ended the handshake: one end refused the other's certificate.
    #[error("the handshake failed: {0}")]
    Alert(TlsAlert),
    /// The handshake did not finish within the configured time.
    #[error("the handshake did not finish in {timeout_ms} ms")]
    Timeout {
        /// The configured handshake timeout.
        timeout_ms: u64,
    },
    /// The peer did not answer the dial's first packet in time (it is down, or the path is).
    #[error("the peer did not answer within {timeout_ms} ms")]
    NoAnswer {
        /// The configured `dial_answer_timeout_ms`.
        timeout_ms: u64,
    },
    /// The peer's certificate names someone else than the node we dialed.
    #[error("the peer presented identity {found}, not node {expected}")]
    WrongPeer {
        /// The node we dialed.
        expected: NodeId,
        /// What its certificate says.
        found: String,
    },
    /// The peer's certificate proves an identity that is not a node's.
    #[error("the peer presented identity {found}, which is not a node's")]
    NotANode {
        /// What its certificate says.
        found: String,
    },
    /// The TLS configuration could not be built.
    #[error("the TLS configuration is invalid: {0}")]
    Tls(#[from] TlsError),
    /// The transport configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The endpoint's own certificate does not name this node of this cluster.
    #[error("this endpoint's certificate names {found}, not node {local} of its cluster")]
    NotThisNode {
        /// The node id the endpoint was started as.
        local: NodeId,
        /// What the certificate says.
        found: String,
    },
}

impl From<quinn::ConnectionError> for ConnectError {
    /// A TLS alert is named; any other failure is kept as quinn gave it.
    fn from(error: quinn::ConnectionError) -> Self {
        match TlsAlert::of(&error) {
            Some(alert) => Self::Alert(alert),
            None => Self::Handshake(error),
        }
    }
}

/// Why TLS material or a configuration could not be built or a certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration or the certificate.
    #[error("rustls refused it: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("the client certificate verifier could not be built: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The rustls configuration cannot be used for QUIC.
    #[error("the rustls configuration cannot be used for QUIC: {0}")]
    NotQuic(String),
    /// The certificate could not be parsed.
    #[error("the certificate could not be parsed: {0}")]
    CertificateUnparsable(String),
    /// The certificate carries no SAN of the form `node-<id>.<cluster>` or `client-<name>.<cluster>`.
    #[error("the certificate carries no Flotilla identity")]
    NoIdentity,
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
}

/// Why dev certificates could not be created, written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen could not build a key or a certificate.
    #[error("the certificate could not be generated: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written or read.
    #[error("the file {path} could not be accessed: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("the file {path} holds no usable PEM item: {reason}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A client name is not a DNS label.
    #[error("the client name {name:?} is not a lowercase DNS label")]
    BadClientName {
        /// The name.
        name: String,
    },
    /// The CA certificate's subject is not the single common name a Flotilla CA has, so no
    /// certificate can be signed under it.
    #[error("the CA certificate {path} does not name its subject by one common name")]
    CaSubject {
        /// The CA certificate.
        path: std::path::PathBuf,
    },
    /// A certificate signed with the CA key does not verify against the CA certificate: the
    /// key belongs to another CA.
    #[error("{key} is not the key of {certificate}: what it signs does not verify ({reason})")]
    CaKeyMismatch {
        /// The CA certificate.
        certificate: std::path::PathBuf,
        /// The CA key.
        key: std::path::PathBuf,
        /// What the verifier said.
        reason: String,
    },
    /// A CA already exists where a new one would be written; it is not replaced.
    #[error(
        "{path} exists: a new CA would lock out every node and client its certificates were \
         signed for"
    )]
    CaExists {
        /// The CA file.
        path: std::path::PathBuf,
    },
    /// A certificate file already exists; it is not overwritten.
    #[error("{path} already exists; remove it first to replace that certificate")]
    Exists {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// Why a batch was not queued; in every case it is dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The batch's `from` is not this node: a bug in the caller.
    #[error("the batch is from node {from}, but this transport is node {local}")]
    NotFromThisNode {
        /// The batch's `from`.
        from: NodeId,
        /// This node.
        local: NodeId,
    },
    /// No peer with that node id is known.
    #[error("node {to} is not a known peer")]
    UnknownPeer {
        /// The destination.
        to: NodeId,
    },
    /// The peer's outbound queue is full (slow or down peer); the batch was dropped.
    #[error("the queue to node {to} is full; the batch was dropped")]
    QueueFull {
        /// The destination.
        to: NodeId,
    },
    /// The peer is down (in-memory transport) or the transport is shut down.
    #[error("node {to} is unreachable; the batch was dropped")]
    Unreachable {
        /// The destination.
        to: NodeId,
    },
}

/// A sentence for each `TransportConfig` limit that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the transport configuration is invalid: {reason}")]
pub struct ConfigError {
    /// What is wrong, as a sentence.
    pub reason: String,
}
