//! QUIC transports on 127.0.0.1: the mutual-TLS refusal matrix, malformed frames closing only
//! their own connection, reconnect after a restart, snapshots not blocking heartbeats, the
//! byte bound on a down peer's snapshot queue, and the pipelined client protocol on the same
//! endpoint.
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    GUARD, batch, closed, quic_cluster, raw_client_config, raw_connect, raw_peer, recv, run,
    sequence, wait_until,
};
use flotilla_raft::NodeId;
use flotilla_transport_quic::frame::{self, FrameKind, HEADER_BYTES, MAGIC, VERSION};
use flotilla_transport_quic::streams::CLOSE_MALFORMED_FRAME;
use flotilla_transport_quic::{
    ALPN_CLIENT, ALPN_RAFT, AlertSender, ClientSession, ClusterCa, ClusterId, ConnectError,
    CounterSnapshot, Identity, QuicTransport, SendError, TlsAlert, Transport, TransportConfig,
};
use time::{Duration, OffsetDateTime};
use tokio::sync::mpsc;

/// A message on a test client stream: an id and its text.
type Ask = (u64, String);

fn test_ca() -> ClusterCa {
    ClusterCa::generate(&common::cluster_id()).unwrap()
}

/// Dials node `target` as a Raft peer with `identity` (or none) and asserts it is refused,
/// visibly in the target's counters (the total and `reason`'s), and that nothing it might send
/// is delivered.
async fn assert_refused(
    trusted: &ClusterCa,
    identity: Option<&Identity>,
    target: &QuicTransport,
    reason: fn(&CounterSnapshot) -> u64,
) {
    let before = target.counters();
    let config = raw_client_config(&trusted.certificate(), identity, ALPN_RAFT);
    let (_endpoint, outcome) = raw_connect(config, target).await;
    if let Ok(connection) = outcome {
        // TLS 1.3: the client may finish before the server judges its certificate.
        if let Ok(mut stream) = connection.open_uni().await {
            let _ = stream
                .write_all(&encoded(&batch(5, target.node_id().0, 1)))
                .await;
        }
        closed(&connection).await;
    }
    wait_until("the target counts the refusal", || {
        target.counters().connections_refused > before.connections_refused
    })
    .await;
    let after = target.counters();
    assert_eq!(reason(&after), reason(&before) + 1, "{after:?}");
    assert_eq!(target.try_recv(), None);
}

fn encoded(batch: &flotilla_raft::Batch) -> Vec<u8> {
    let mut buf = Vec::new();
    frame::encode(FrameKind::RaftBatch, batch, 64 << 20, &mut buf).unwrap();
    buf
}

#[test]
fn three_endpoints_exchange_batches() {
    run(async {
        let nodes = quic_cluster(&test_ca(), &[1, 2, 3]).await;
        for (from, to) in [(1, 2), (2, 3), (3, 1), (2, 1), (1, 3), (3, 2)] {
            nodes[from - 1]
                .send(batch(from as u64, to as u64, 100 + from as u64))
                .unwrap();
            let got = recv(&nodes[to - 1]).await;
            assert_eq!(
                (got.from, got.to, sequence(&got)),
                (NodeId(from as u64), NodeId(to as u64), 100 + from as u64)
            );
        }
        for node in &nodes {
            assert_eq!(node.counters().connections_refused, 0);
        }
        for node in nodes {
            node.shutdown().await;
        }
    });
}

#[test]
fn mtls_matrix_refuses_every_bad_certificate() {
    run(async {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1, 2]).await;
        let target = &nodes[1];
        let now = OffsetDateTime::now_utc();
        // No client certificate at all.
        assert_refused(&ca, None, target, |c| c.refused_no_certificate).await;
        // A node certificate signed by another CA.
        let other_ca = test_ca();
        assert_refused(
            &ca,
            Some(&other_ca.node_identity(NodeId(5)).unwrap()),
            target,
            |c| c.refused_unknown_ca,
        )
        .await;
        // An expired certificate from the right CA.
        let expired = ca
            .sign(
                "node-5.test-cluster",
                now - Duration::days(10),
                now - Duration::days(1),
            )
            .unwrap();
        assert_refused(&ca, Some(&expired), target, |c| {
            c.refused_certificate_expired
        })
        .await;
        // The right CA, but another cluster id.
        let foreign = ca
            .sign(
                "node-5.other-cluster",
                now - Duration::hours(1),
                now + Duration::days(1),
            )
            .unwrap();
        assert_refused(&ca, Some(&foreign), target, |c| c.refused_bad_certificate).await;
        // A client certificate is not a peer.
        let ops = ca.client_identity("ops").unwrap();
        assert_refused(&ca, Some(&ops), target, |c| c.refused_wrong_protocol).await;
        // The cluster keeps working.
        nodes[0].send(batch(1, 2, 1)).unwrap();
        assert_eq!(recv(target).await.from, NodeId(1));
        for node in nodes {
            node.shutdown().await;
        }
    });
}

#[test]
fn a_batch_sent_as_another_node_is_dropped_and_counted() {
    run(async {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1, 2]).await;
        let (_endpoint, connection) =
            raw_peer(&ca, &ca.node_identity(NodeId(5)).unwrap(), &nodes[1]).await;
        let mut stream = connection.open_uni().await.unwrap();
        // Node 5's certificate, batch claiming to come from node 1.
        stream.write_all(&encoded(&batch(1, 2, 1))).await.unwrap();
        // Then an honest batch on the same stream, which must still arrive.
        stream.write_all(&encoded(&batch(5, 2, 2))).await.unwrap();
        let got = recv(&nodes[1]).await;
        assert_eq!((got.from, sequence(&got)), (NodeId(5), 2));
        assert_eq!(nodes[1].counters().dropped_bad_sender, 1);
        assert_eq!(nodes[1].counters().batches_received, 1);
        for node in nodes {
            node.shutdown().await;
        }
    });
}

/// Sends `bytes` on a raw peer connection to node 2 and asserts that only that connection is
/// closed (as malformed) while nodes 1 and 3 still deliver to node 2.
fn assert_bad_bytes_close_only_their_connection(bytes: Vec<u8>, finish: bool) {
    run(async move {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1, 2, 3]).await;
        nodes[0].send(batch(1, 2, 1)).unwrap();
        recv(&nodes[1]).await;
        let (_endpoint, connection) =
            raw_peer(&ca, &ca.node_identity(NodeId(6)).unwrap(), &nodes[1]).await;
        let mut stream = connection.open_uni().await.unwrap();
        stream.write_all(&bytes).await.unwrap();
        if finish {
            stream.finish().unwrap();
        }
        match closed(&connection).await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, CLOSE_MALFORMED_FRAME.into());
            }
            other => panic!("closed for another reason: {other}"),
        }
        assert_eq!(nodes[1].counters().frames_malformed, 1);
        for sender in [0, 2] {
            let from = nodes[sender].node_id().0;
            nodes[sender].send(batch(from, 2, 50 + from)).unwrap();
            let got = recv(&nodes[1]).await;
            assert_eq!((got.from.0, sequence(&got)), (from, 50 + from));
        }
        for node in nodes {
            node.shutdown().await;
        }
    });
}

#[test]
fn garbage_bytes_close_that_connection_only() {
    assert_bad_bytes_close_only_their_connection(
        b"GET / HTTP/1.1\r\nHost: flotilla\r\n\r\n".to_vec(),
        true,
    );
}

#[test]
fn a_truncated_frame_closes_that_connection_only() {
    let mut bytes = encoded(&common::snapshot_batch(6, 2, 100));
    bytes.truncate(bytes.len() / 2);
    assert_bad_bytes_close_only_their_connection(bytes, true);
}

#[test]
fn a_frame_over_the_limit_closes_that_connection_before_its_payload() {
    let payload_bytes: u32 = 64 << 20;
    let mut header = vec![MAGIC, VERSION, FrameKind::RaftBatch as u8];
    header.extend_from_slice(&payload_bytes.to_be_bytes());
    assert_eq!(header.len(), HEADER_BYTES);
    // The stream is left open with no payload: the limit must be checked on the header alone.
    assert_bad_bytes_close_only_their_connection(header, false);
}

#[test]
fn a_restarted_peer_is_reconnected_and_delivery_resumes() {
    run(async {
        let ca = test_ca();
        let mut nodes = quic_cluster(&ca, &[1, 2, 3]).await;
        nodes[0].send(batch(1, 3, 1)).unwrap();
        recv(&nodes[2]).await;
        let address = nodes[2].local_address().unwrap();
        nodes.pop().unwrap().shutdown().await;
        let restarted = rebind(3, address, common::node_tls(&ca, 3), common::config()).await;
        restarted.add_peer(NodeId(1), nodes[0].local_address().unwrap());
        restarted.add_peer(NodeId(2), nodes[1].local_address().unwrap());
        assert_eq!(
            common::send_until_received(&nodes[0], &restarted, batch(1, 3, 2))
                .await
                .from,
            NodeId(1)
        );
        assert_eq!(
            common::send_until_received(&restarted, &nodes[1], batch(3, 2, 3))
                .await
                .from,
            NodeId(3)
        );
        assert_eq!(
            common::send_until_received(&restarted, &nodes[0], batch(3, 1, 4))
                .await
                .from,
            NodeId(3)
        );
        assert!(nodes[0].counters().connections_established >= 3);
        restarted.shutdown().await;
        for node in nodes {
            node.shutdown().await;
        }
    });
}

/// A peer that crashes (it tells no one) and comes back on the same address with the same
/// identity. The node that dials it still holds the dead connection; its next packet reaches
/// the restarted endpoint, which answers with a stateless reset it can sign (its reset key
/// comes from the node's private key), so the dialer drops the connection and redials at once.
/// A client connected to the crashed process gets the same reset on its next request. The
/// idle timeout is set far past the guard: without the reset, the dead connections would stand
/// until the test gave up. (Regression: with quinn's random reset key per endpoint, a
/// restarted node was cut off from a dialing peer, and from its clients, for the idle timeout.)
#[test]
fn a_crashed_peer_that_comes_back_resets_the_dead_connection_at_once() {
    common::init_tracing();
    let runtime = |workers| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap()
    };
    let (main, doomed) = (runtime(2), runtime(1));
    let ca = test_ca();
    let config = TransportConfig {
        idle_timeout_ms: 3_600_000,
        ..common::config()
    };
    let loopback: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let tls = common::node_tls(&ca, 2);
    let first = main
        .block_on(QuicTransport::bind(
            NodeId(1),
            loopback,
            common::node_tls(&ca, 1),
            config.clone(),
        ))
        .unwrap();
    let second = doomed
        .block_on(QuicTransport::bind(
            NodeId(2),
            loopback,
            tls.clone(),
            config.clone(),
        ))
        .unwrap();
    let (first_address, second_address) = (
        first.local_address().unwrap(),
        second.local_address().unwrap(),
    );
    doomed.block_on(async { second.add_peer(NodeId(1), first_address) });
    let client_tls = flotilla_transport_quic::TlsSetup {
        cluster: ClusterId::new("test-cluster").unwrap(),
        ca: ca.certificate(),
        identity: ca.client_identity("ops").unwrap(),
    };
    let (session, (mut requests, mut responses)) = main.block_on(async {
        first.add_peer(NodeId(2), second_address);
        common::send_until_received(&first, &second, batch(1, 2, 1)).await;
        let session = ClientSession::connect(&client_tls, &config, NodeId(2), second_address)
            .await
            .unwrap();
        let stream = session.open_stream::<String, String>().await.unwrap();
        (session, stream)
    });
    // The crash: node 2's tasks stop with its runtime, which drives every send, so nothing it
    // drops afterwards (the transport closes its connections on drop) reaches the wire.
    doomed.shutdown_timeout(std::time::Duration::from_secs(10));
    drop(second);
    main.block_on(async {
        let restarted = rebind(2, second_address, tls, config).await;
        restarted.add_peer(NodeId(1), first_address);
        let got = common::send_until_received(&first, &restarted, batch(1, 2, 2)).await;
        assert_eq!(got.from, NodeId(1));
        assert!(first.counters().connections_established >= 2);
        // A client's connection to the crashed process is reset too, on its next request.
        let request = async {
            requests.send(&"ping".to_owned()).await?;
            responses.recv().await
        };
        let outcome = tokio::time::timeout(GUARD, request).await;
        assert!(matches!(outcome, Ok(Err(_))), "{outcome:?}");
        assert!(
            matches!(
                session.connection().close_reason(),
                Some(quinn::ConnectionError::Reset)
            ),
            "{:?}",
            session.connection().close_reason()
        );
        restarted.shutdown().await;
        first.shutdown().await;
    });
}

/// Binds node `id` again on the address it had, retrying while the old socket is released.
async fn rebind(
    id: u64,
    address: std::net::SocketAddr,
    tls: flotilla_transport_quic::TlsSetup,
    config: TransportConfig,
) -> QuicTransport {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        match QuicTransport::bind(NodeId(id), address, tls.clone(), config.clone()).await {
            Ok(transport) => return transport,
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "cannot rebind: {error}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn a_snapshot_in_flight_does_not_block_heartbeats() {
    run(async {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1, 2]).await;
        let (_endpoint, connection) =
            raw_peer(&ca, &ca.node_identity(NodeId(7)).unwrap(), &nodes[1]).await;
        let snapshot = encoded(&common::snapshot_batch(7, 2, 4 << 20));
        let (first_half, second_half) = snapshot.split_at(snapshot.len() / 2);
        let mut snapshot_stream = connection.open_uni().await.unwrap();
        snapshot_stream.write_all(first_half).await.unwrap();
        // Half a multi-megabyte snapshot frame is in flight; heartbeats on the Raft stream arrive.
        let mut raft_stream = connection.open_uni().await.unwrap();
        for sequence_number in 0..10 {
            raft_stream
                .write_all(&encoded(&batch(7, 2, sequence_number)))
                .await
                .unwrap();
            assert_eq!(sequence(&recv(&nodes[1]).await), sequence_number);
        }
        snapshot_stream.write_all(second_half).await.unwrap();
        let got = recv(&nodes[1]).await;
        assert!(got.messages[0].message.is_snapshot_chunk());
        assert_eq!(got, common::snapshot_batch(7, 2, 4 << 20));
        for node in nodes {
            node.shutdown().await;
        }
    });
}

#[test]
fn the_transport_sends_snapshots_and_heartbeats_on_separate_streams() {
    run(async {
        let nodes = quic_cluster(&test_ca(), &[1, 2]).await;
        let mut mixed = common::snapshot_batch(1, 2, 6 << 20);
        mixed.messages.extend(batch(1, 2, 1).messages);
        nodes[0].send(mixed).unwrap();
        for sequence_number in 2..40 {
            nodes[0].send(batch(1, 2, sequence_number)).unwrap();
        }
        let (mut snapshots, mut heartbeats) = (0, Vec::new());
        while snapshots + heartbeats.len() < 40 {
            let got = recv(&nodes[1]).await;
            // The transport split the mixed batch: no batch mixes a chunk with other messages.
            assert!(
                got.messages.iter().all(|m| m.message.is_snapshot_chunk())
                    || got.messages.iter().all(|m| !m.message.is_snapshot_chunk())
            );
            match got.messages[0].message.is_snapshot_chunk() {
                true => snapshots += 1,
                false => heartbeats.push(sequence(&got)),
            }
        }
        assert_eq!(snapshots, 1);
        assert_eq!(heartbeats, (1..40).collect::<Vec<_>>());
        for node in nodes {
            node.shutdown().await;
        }
    });
}

/// Dials node 1 of `node`'s cluster with the client protocol, as client `ops`.
async fn ops_session(ca: &ClusterCa, node: &QuicTransport) -> ClientSession {
    let client_tls = flotilla_transport_quic::TlsSetup {
        cluster: ClusterId::new("test-cluster").unwrap(),
        ca: ca.certificate(),
        identity: ca.client_identity("ops").unwrap(),
    };
    let address = node.local_address().unwrap();
    ClientSession::connect(&client_tls, &common::config(), NodeId(1), address)
        .await
        .unwrap()
}

/// A client that knows only an address learns which node listens there from the node's
/// certificate; a certificate of the same CA naming a node of another cluster is refused.
#[test]
fn a_client_dialing_an_address_learns_the_node_id_from_its_certificate() {
    run(async {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1, 7]).await;
        let client_tls = flotilla_transport_quic::TlsSetup {
            cluster: common::cluster_id(),
            ca: ca.certificate(),
            identity: ca.client_identity("ops").unwrap(),
        };
        let address = nodes[1].local_address().unwrap();
        let (session, node) =
            ClientSession::connect_to_any_node(&client_tls, &common::config(), address)
                .await
                .unwrap();
        assert_eq!(node, NodeId(7));
        session.close().await;
        let now = OffsetDateTime::now_utc();
        let stranger_tls = flotilla_transport_quic::TlsSetup {
            cluster: ClusterId::new("other-cluster").unwrap(),
            ca: ca.certificate(),
            identity: ca
                .sign(
                    "node-3.other-cluster",
                    now - Duration::days(1),
                    now + Duration::days(1),
                )
                .unwrap(),
        };
        let stranger = QuicTransport::bind(
            NodeId(3),
            common::loopback(),
            stranger_tls,
            common::config(),
        )
        .await
        .unwrap();
        let address = stranger.local_address().unwrap();
        let dialed =
            ClientSession::connect_to_any_node(&client_tls, &common::config(), address).await;
        assert!(
            matches!(
                &dialed,
                Err(ConnectError::Alert(_) | ConnectError::Handshake(_))
            ),
            "{:?}",
            dialed.map(|(_, node)| node)
        );
        stranger.shutdown().await;
        for node in nodes {
            node.shutdown().await;
        }
    });
}

#[test]
fn clients_use_their_own_protocol_on_the_same_endpoint() {
    run(async {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1]).await;
        let session = ops_session(&ca, &nodes[0]).await;
        let node = &nodes[0];
        let serve = async {
            let client = node.accept_client().await.unwrap();
            assert_eq!(client.identity().san(), "client-ops.test-cluster");
            let (mut answers, mut questions) =
                client.accept_stream::<String, String>().await.unwrap();
            let question = questions.recv().await.unwrap().unwrap();
            answers.send(&format!("{question} pong")).await.unwrap();
            answers.finish();
            client
        };
        let ask = async {
            let (mut questions, mut answers) =
                session.open_stream::<String, String>().await.unwrap();
            questions.send(&"ping".to_owned()).await.unwrap();
            let answer = answers.recv().await.unwrap();
            // The node finished its side after answering: the stream then ends cleanly.
            (answer, answers.recv().await.unwrap())
        };
        let ((answer, end), _client) = tokio::join!(ask, serve);
        assert_eq!(answer.as_deref(), Some("ping pong"));
        assert_eq!(end, None);
        // A client certificate on the client protocol is fine; without a certificate it is not.
        let config = raw_client_config(&ca.certificate(), None, ALPN_CLIENT);
        let before = node.counters().connections_refused;
        let (_endpoint, outcome) = raw_connect(config, node).await;
        if let Ok(connection) = outcome {
            closed(&connection).await;
        }
        wait_until("the anonymous client is refused", || {
            node.counters().connections_refused > before
        })
        .await;
        session.close().await;
        for node in nodes {
            node.shutdown().await;
        }
    });
}

/// A client whose certificate the node refuses learns the TLS alert: from the dial if the node
/// judged it in time, else from its session once its first stream fails.
#[test]
fn a_refused_client_learns_the_tls_alert() {
    run(async {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1]).await;
        let other_ca = test_ca();
        let client_tls = flotilla_transport_quic::TlsSetup {
            cluster: common::cluster_id(),
            ca: ca.certificate(),
            identity: other_ca.client_identity("ops").unwrap(),
        };
        let address = nodes[0].local_address().unwrap();
        let dialed =
            ClientSession::connect(&client_tls, &common::config(), NodeId(1), address).await;
        let alert = match dialed {
            Err(ConnectError::Alert(alert)) => alert,
            Err(other) => panic!("refused without an alert: {other}"),
            Ok(session) => {
                if let Ok((mut questions, mut answers)) =
                    session.open_stream::<String, String>().await
                {
                    let _ = questions.send(&"ping".to_owned()).await;
                    assert!(
                        answers.recv().await.is_err(),
                        "a refused client got an answer"
                    );
                }
                closed(session.connection()).await;
                session.alert().expect("the session names the alert")
            }
        };
        assert_eq!(
            alert,
            TlsAlert {
                code: 48,
                sender: AlertSender::Peer
            }
        );
        assert!(alert.to_string().contains("unknown_ca"), "{alert}");
        wait_until("the node counts an unknown CA", || {
            nodes[0].counters().refused_unknown_ca == 1
        })
        .await;
        for node in nodes {
            node.shutdown().await;
        }
    });
}

#[test]
fn a_client_stream_carries_pipelined_requests_answered_in_completion_order() {
    run(async {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1]).await;
        let session = ops_session(&ca, &nodes[0]).await;
        let node = &nodes[0];
        let serve = async {
            let client = node.accept_client().await.unwrap();
            let (answers, mut questions) = client.accept_stream::<Ask, Ask>().await.unwrap();
            let mut asked = Vec::new();
            while let Some(question) = questions.recv().await.unwrap() {
                asked.push(question);
            }
            // The last question completes first; the answer to the second is over the limit.
            let (queue, queued) = mpsc::unbounded_channel();
            for (id, text) in asked.into_iter().rev() {
                let text = if id == 2 {
                    "x".repeat(8 << 20)
                } else {
                    format!("{text} pong")
                };
                queue.send((id, text)).unwrap();
            }
            drop(queue);
            let refuse = |&(id, _): &Ask, _| Some((id, "too large".to_owned()));
            answers.write_bursts(queued, refuse).await.unwrap();
            client
        };
        let ask = async {
            let (questions, mut answers) = session.open_stream::<Ask, Ask>().await.unwrap();
            let (queue, queued) = mpsc::unbounded_channel();
            for id in 1..=3 {
                queue.send((id, format!("ping {id}"))).unwrap();
            }
            drop(queue);
            questions.write_bursts(queued, |_, _| None).await.unwrap();
            let mut answered = Vec::new();
            while let Some(answer) = answers.recv().await.unwrap() {
                answered.push(answer);
            }
            answered
        };
        let (answered, _client) = tokio::join!(ask, serve);
        let expected = [(3, "ping 3 pong"), (2, "too large"), (1, "ping 1 pong")];
        let expected: Vec<Ask> = expected.map(|(id, text)| (id, text.to_owned())).into();
        assert_eq!(answered, expected);
        session.close().await;
        for node in nodes {
            node.shutdown().await;
        }
    });
}

#[test]
fn a_peer_that_dials_before_it_is_added_is_still_used_for_sending() {
    run(async {
        let ca = test_ca();
        let one = QuicTransport::bind(
            NodeId(1),
            common::loopback(),
            common::node_tls(&ca, 1),
            common::config(),
        )
        .await
        .unwrap();
        let two = QuicTransport::bind(
            NodeId(2),
            common::loopback(),
            common::node_tls(&ca, 2),
            common::config(),
        )
        .await
        .unwrap();
        one.add_peer(NodeId(2), two.local_address().unwrap());
        wait_until("node 1 has dialed node 2", || {
            two.counters().connections_established == 1
        })
        .await;
        two.add_peer(NodeId(1), one.local_address().unwrap());
        two.send(batch(2, 1, 9)).unwrap();
        assert_eq!(sequence(&recv(&one).await), 9);
        one.shutdown().await;
        two.shutdown().await;
    });
}

#[test]
fn a_node_of_another_cluster_is_refused_in_both_directions() {
    run(async {
        let ca = test_ca();
        let nodes = quic_cluster(&ca, &[1]).await;
        let now = OffsetDateTime::now_utc();
        // Same CA, same node id as the peer node 1 expects, but another cluster id.
        let identity = ca
            .sign(
                "node-2.other-cluster",
                now - Duration::hours(1),
                now + Duration::days(1),
            )
            .unwrap();
        let other = ClusterId::new("other-cluster").unwrap();
        let tls = flotilla_transport_quic::TlsSetup {
            cluster: other,
            ca: ca.certificate(),
            identity,
        };
        let foreign = QuicTransport::bind(NodeId(2), common::loopback(), tls, common::config())
            .await
            .unwrap();
        // Node 1 dials it: its certificate does not name node-2.test-cluster.
        nodes[0].add_peer(NodeId(2), foreign.local_address().unwrap());
        wait_until("node 1 fails to connect", || {
            nodes[0].counters().connect_failures >= 1
        })
        .await;
        // And it refuses node 1's certificate, which names test-cluster.
        wait_until("the foreign node refuses node 1", || {
            foreign.counters().connections_refused >= 1
        })
        .await;
        assert_eq!(nodes[0].counters().connections_established, 0);
        assert_eq!(foreign.counters().connections_established, 0);
        foreign.shutdown().await;
        for node in nodes {
            node.shutdown().await;
        }
    });
}

/// A flood of handshakes past `handshakes_max` is refused before any cryptography (counted),
/// and once the flood is over the node takes handshakes again.
#[test]
fn handshakes_past_the_limit_are_refused_unstarted() {
    run(async {
        let ca = test_ca();
        let config = TransportConfig {
            handshakes_max: 1,
            ..common::config()
        };
        let node = QuicTransport::bind(
            NodeId(1),
            common::loopback(),
            common::node_tls(&ca, 1),
            config,
        )
        .await
        .unwrap();
        let tls = flotilla_transport_quic::TlsSetup {
            cluster: ClusterId::new("test-cluster").unwrap(),
            ca: ca.certificate(),
            identity: ca.client_identity("ops").unwrap(),
        };
        let mut flood = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let (tls, address) = (tls.clone(), node.local_address().unwrap());
            flood.spawn(async move {
                ClientSession::connect(&tls, &common::config(), NodeId(1), address)
                    .await
                    .is_ok()
            });
        }
        let mut refused = 0;
        while let Some(connected) = flood.join_next().await {
            refused += usize::from(!connected.unwrap());
        }
        assert!(refused > 0, "32 handshakes at once against a limit of 1");
        assert!(node.counters().refused_handshakes_busy > 0);
        // The node finishes its side of a handshake a moment after the client: retry briefly.
        let address = node.local_address().unwrap();
        let mut again = None;
        for _ in 0..50 {
            match ClientSession::connect(&tls, &common::config(), NodeId(1), address).await {
                Ok(session) => {
                    again = Some(session);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        again
            .expect("the node takes handshakes again after the flood")
            .close()
            .await;
        node.shutdown().await;
    });
}

/// A peer that is down pins at most `outbound_snapshot_queue_bytes` of snapshot chunks in its
/// snapshot queue, whatever the number of batches; past that, snapshot batches are refused
/// and counted, while Raft batches still queue on their own stream.
#[test]
fn snapshot_chunks_queued_for_a_down_peer_are_bounded_in_bytes() {
    run(async {
        let ca = test_ca();
        let config = TransportConfig {
            outbound_snapshot_queue_bytes: 1 << 20,
            ..common::config()
        };
        let tls = common::node_tls(&ca, 1);
        let node = QuicTransport::bind(NodeId(1), common::loopback(), tls, config)
            .await
            .unwrap();
        // Node 9's address has nobody listening: its writers never get a connection.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        node.add_peer(NodeId(9), silent.local_addr().unwrap());
        drop(silent);
        for _ in 0..4 {
            node.send(common::snapshot_batch(1, 9, 256 << 10)).unwrap();
        }
        let refused = node.send(common::snapshot_batch(1, 9, 1));
        assert!(
            matches!(refused, Err(SendError::QueueFull { to: NodeId(9) })),
            "{refused:?}"
        );
        node.send(batch(1, 9, 0)).unwrap();
        assert_eq!(node.counters().dropped_queue_full, 1);
        node.shutdown().await;
    });
}
