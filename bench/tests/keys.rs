//! The etcd load uses the same keys as Flotilla's workload.

#[test]
fn keys_match_the_flotilla_workload() {
    for index in [0, 1, 2, 99, 100_000, u64::MAX] {
        assert_eq!(
            flotilla_bench::key_of(index),
            flotilla_node::workload::key_of(index)
        );
    }
}
