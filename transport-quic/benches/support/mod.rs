//! The loopback setup shared by the criterion bench (`benches/quic.rs`) and the interleaved
//! A/B run (`examples/interleaved_small.rs`): two `QuicTransport`s and a client session to node 2
//! in one process, the batches, and one round of the transport, of raw quinn, or of a request
//! on the pipelined client stream.

use flotilla_raft::{
    Batch, Entry, EntryPayload, GroupId, GroupMessage, LogId, LogIndex, Message, MessageBody,
    NodeId, Term,
};
use flotilla_transport_quic::{
    ClientConnection, ClientSession, ClusterCa, ClusterId, MessageReceiver, MessageSender,
    QuicTransport, TlsSetup, Transport, TransportConfig,
};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

pub(crate) const SMALL_BATCHES: usize = 512;
pub(crate) const SMALL_ENTRY_BYTES: usize = 100;
pub(crate) const BULK_BATCHES: usize = 32;
pub(crate) const BULK_ENTRY_BYTES: usize = 256 << 10;
pub(crate) const RAW_COALESCED_WRITE_BYTES: usize = 64 << 10;

pub(crate) struct Bench {
    pub(crate) runtime: Runtime,
    pub(crate) one: QuicTransport,
    pub(crate) two: QuicTransport,
    session: ClientSession,
    requests: MessageSender<Vec<u8>>,
    responses: MessageReceiver<Vec<u8>>,
    raw_done: mpsc::Receiver<u64>,
}

pub(crate) fn batch(entry_bytes: usize, sequence: u64) -> Batch {
    let entry = Entry {
        term: Term(1),
        index: LogIndex(sequence),
        payload: EntryPayload::Normal(vec![7; entry_bytes].into()),
    };
    let body = MessageBody::AppendEntries {
        prev: LogId::default(),
        entries: vec![entry],
        commit: LogIndex(sequence),
    };
    let message = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body,
    };
    let mut batch = Batch::new(NodeId(1), NodeId(2));
    batch.messages.push(GroupMessage {
        group: GroupId(1),
        message,
    });
    batch
}

/// The batches of one round, built outside the timed part (raw quinn reuses one buffer too).
pub(crate) fn batches(entry_bytes: usize, count: usize) -> Vec<Batch> {
    (0..count)
        .map(|sequence| batch(entry_bytes, sequence as u64))
        .collect()
}

pub(crate) fn encoded_bytes(batch: &Batch) -> usize {
    let mut buf = Vec::new();
    flotilla_transport_quic::frame::encode(
        flotilla_transport_quic::frame::FrameKind::RaftBatch,
        batch,
        u32::MAX,
        &mut buf,
    )
    .unwrap();
    buf.len()
}

pub(crate) fn setup() -> Bench {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = ClusterId::new("bench").unwrap();
    let ca = ClusterCa::generate(&cluster).unwrap();
    let tls = |id| TlsSetup {
        cluster: cluster.clone(),
        ca: ca.certificate(),
        identity: ca.node_identity(NodeId(id)).unwrap(),
    };
    let config = TransportConfig {
        outbound_queue_batches: 1024,
        outbound_snapshot_queue_bytes: 64 << 20,
        ..TransportConfig::default()
    };
    let loopback = "127.0.0.1:0".parse().unwrap();
    let (one, two, session, raw_done) = runtime.block_on(async {
        let one = QuicTransport::bind(NodeId(1), loopback, tls(1), config.clone())
            .await
            .unwrap();
        let two = QuicTransport::bind(NodeId(2), loopback, tls(2), config.clone())
            .await
            .unwrap();
        one.add_peer(NodeId(2), two.local_address().unwrap());
        two.add_peer(NodeId(1), one.local_address().unwrap());
        let client_tls = TlsSetup {
            cluster: cluster.clone(),
            ca: ca.certificate(),
            identity: ca.client_identity("bench").unwrap(),
        };
        let session = ClientSession::connect(
            &client_tls,
            &config,
            NodeId(2),
            two.local_address().unwrap(),
        )
        .await
        .unwrap();
        let client = two.accept_client().await.unwrap();
        let (done_tx, raw_done) = mpsc::channel(16);
        tokio::spawn(serve_client(client, done_tx));
        (one, two, session, raw_done)
    });
    let (requests, responses) = runtime.block_on(session.open_stream()).unwrap();
    Bench {
        runtime,
        one,
        two,
        session,
        requests,
        responses,
        raw_done,
    }
}

/// Echoes requests on each pipelined stream and sinks raw unidirectional streams, reporting the
/// bytes of each.
async fn serve_client(client: ClientConnection, done: mpsc::Sender<u64>) {
    let connection = client.connection().clone();
    tokio::spawn(async move {
        while let Ok(mut stream) = connection.accept_uni().await {
            let mut total = 0u64;
            let mut chunk = vec![0u8; 64 << 10];
            while let Ok(Some(read)) = stream.read(&mut chunk).await {
                total += read as u64;
            }
            done.send(total).await.unwrap();
        }
    });
    while let Ok((mut responses, mut requests)) = client.accept_stream::<Vec<u8>, Vec<u8>>().await {
        tokio::spawn(async move {
            while let Ok(Some(body)) = requests.recv().await {
                responses.send(&body).await.unwrap();
            }
        });
    }
}

impl Bench {
    pub(crate) fn transport_round(&self, batches: Vec<Batch>) {
        let count = batches.len();
        self.runtime.block_on(async {
            for batch in batches {
                self.one.send(batch).unwrap();
            }
            // Drain the way a Raft loop does: wait for one batch, then take all that are waiting.
            let mut received = 0;
            while received < count {
                self.two.recv().await.unwrap();
                received += 1;
                while self.two.try_recv().is_some() {
                    received += 1;
                }
            }
        });
    }

    /// Sends `request` on the pipelined client stream and waits for its echo.
    pub(crate) fn request_round(&mut self, request: &Vec<u8>) -> Vec<u8> {
        self.runtime.block_on(async {
            self.requests.send(request).await.unwrap();
            self.responses.recv().await.unwrap().unwrap()
        })
    }

    /// Sends `bytes` on a new raw stream in writes of `write_bytes`, and waits until the
    /// receiver has read them all. The bytes are built outside the timed part.
    pub(crate) fn raw_round(&mut self, bytes: &[u8], write_bytes: usize) {
        let connection = self.session.connection().clone();
        let done = &mut self.raw_done;
        self.runtime.block_on(async {
            let mut stream = connection.open_uni().await.unwrap();
            for write in bytes.chunks(write_bytes) {
                stream.write_all(write).await.unwrap();
            }
            stream.finish().unwrap();
            assert_eq!(done.recv().await.unwrap(), bytes.len() as u64);
        });
    }
}
