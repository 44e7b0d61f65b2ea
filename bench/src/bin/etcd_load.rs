//! The etcd side of the side-by-side run: the same put workload as `flotilla bench` (256-byte
//! values, the same keys, a sweep of concurrent clients, a fixed duration) sent to the etcd
//! leader, with latencies in an HDR histogram and results in the shared JSON schema.

use clap::Parser;
use etcd_client::{Client, ConnectOptions, KvClient};
use flotilla_bench::{Results, Run, key_of};
use flotilla_node::workload::{Tally, mix};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// An attempt slower than this counts as an error (`timeout`) and the client goes on.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Puts against an etcd cluster, sweeping the number of concurrent clients.
#[derive(Debug, Parser)]
struct Args {
    /// etcd client URLs of every member, comma-separated; requests go to the leader's.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// Concurrent clients (requests in flight), one run per count.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    clients: Vec<usize>,
    /// Seconds per run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys (picked uniformly).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Clients sharing one gRPC connection (etcd's own benchmark uses 10).
    #[arg(long, default_value_t = 10)]
    clients_per_connection: usize,
    /// Writes the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.clients.contains(&0) || args.clients_per_connection == 0 || args.keys == 0 {
        return Err("--clients, --clients-per-connection and --keys must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(sweep(&args))?;
    if let Some(path) = &args.json {
        results.write(path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn sweep(args: &Args) -> Result<Results, Box<dyn std::error::Error>> {
    let leader = leader_endpoint(&args.endpoints).await?;
    println!("etcd leader: {leader}");
    let mut runs = Vec::new();
    for &clients in &args.clients {
        let run = run_clients(args, &leader, clients).await?;
        print_run(&run);
        runs.push(run);
    }
    Ok(Results {
        system: "etcd".into(),
        groups: None,
        runs,
    })
}

/// The endpoint of the member that is the leader, asked through the maintenance status API.
async fn leader_endpoint(endpoints: &[String]) -> Result<String, Box<dyn std::error::Error>> {
    for endpoint in endpoints {
        let mut client = Client::connect([endpoint], None).await?;
        let status = client.status().await?;
        let member = status.header().map(|header| header.member_id());
        if member == Some(status.leader()) {
            return Ok(endpoint.clone());
        }
    }
    Err(format!("no member of {endpoints:?} says it is the leader").into())
}

async fn run_clients(
    args: &Args,
    leader: &str,
    clients: usize,
) -> Result<Run, Box<dyn std::error::Error>> {
    let mut connections = Vec::new();
    for _ in 0..clients.div_ceil(args.clients_per_connection) {
        let options = ConnectOptions::new().with_timeout(ATTEMPT_TIMEOUT);
        connections.push(Client::connect([leader], Some(options)).await?.kv_client());
    }
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|index| {
            let worker = Worker {
                kv: connections[index % connections.len()].clone(),
                rng: index as u64 ^ 0x5eed,
                keys: args.keys,
                value_size: args.value_size,
            };
            tokio::spawn(worker.run(until))
        })
        .collect();
    let mut total = Tally::new();
    for task in tasks {
        total.merge(&task.await?);
    }
    Ok(into_run(total, clients, args.value_size, started.elapsed()))
}

/// One client: one put in flight at a time until `until`.
struct Worker {
    kv: KvClient,
    rng: u64,
    keys: u64,
    value_size: usize,
}

impl Worker {
    async fn run(mut self, until: Instant) -> Tally {
        let mut tally = Tally::new();
        while Instant::now() < until {
            let key = key_of(self.next_random() % self.keys);
            let value = self.value();
            let started = Instant::now();
            let result = tokio::time::timeout(ATTEMPT_TIMEOUT, self.kv.put(key, value, None)).await;
            match result {
                Ok(Ok(_)) => tally.record("put", started.elapsed().as_micros() as u64),
                Ok(Err(error)) => tally.error(&error_kind(&error)),
                Err(_) => tally.error("timeout"),
            }
        }
        tally
    }

    fn value(&mut self) -> Vec<u8> {
        let seed = self.next_random();
        (0..self.value_size)
            .map(|index| (seed >> (index % 8 * 8)) as u8)
            .collect()
    }

    /// SplitMix64: the same generator as Flotilla's workload.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.rng)
    }
}

fn error_kind(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => format!("grpc {:?}", status.code()),
        etcd_client::Error::TransportError(_) => "transport".into(),
        _ => "client".into(),
    }
}

/// The run's figures in the shared results schema.
fn into_run(tally: Tally, clients: usize, value_size: usize, elapsed: Duration) -> Run {
    let report = tally.report(elapsed.as_secs_f64());
    Run {
        clients,
        value_size,
        seconds: report.seconds,
        ops: report.ops,
        ops_per_second: report.ops_per_second,
        latency_us: report.latency_us,
        errors: report.errors,
        entries_per_fsync: None,
        intervals: Vec::new(),
    }
}

fn print_run(run: &Run) {
    let ms = |micros: u64| micros as f64 / 1000.0;
    let latency = &run.latency_us;
    println!(
        "{:>4} clients: {} puts in {:.1} s = {:.0} puts/s   p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms   errors {:?}",
        run.clients,
        run.ops,
        run.seconds,
        run.ops_per_second,
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.p999),
        ms(latency.max),
        run.errors
    );
}
