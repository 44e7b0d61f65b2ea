//! Connects to a Flotilla cluster and puts, gets, compare-and-swaps, scans and deletes a few
//! keys under a prefix of its own, printing each step.
//!
//! ```text
//! cargo run -p flotilla-client --example quickstart -- \
//!     --endpoints db1.example:7000,db2.example:7000 --tls-dir flotilla-certs \
//!     --cluster-id flotilla --name app
//! cargo run -p flotilla-client --example quickstart -- --config client.toml
//! ```
//!
//! Each flag may come from the environment instead: `FLOTILLA_ENDPOINTS`, `FLOTILLA_TLS_DIR`,
//! `FLOTILLA_CLUSTER_ID`, `FLOTILLA_NAME`, `FLOTILLA_CONFIG`.

use flotilla_client::{Client, ClientConfig};
use std::error::Error;
use std::path::PathBuf;

const USAGE: &str = "usage: quickstart [--config FILE] | [--endpoints HOST:PORT,... --tls-dir DIR \
                     --cluster-id ID --name NAME] [--prefix TEXT]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let setting = |flag: &str, variable: &str| {
        let position = args.iter().position(|arg| arg == flag);
        position
            .and_then(|position| args.get(position + 1).cloned())
            .or_else(|| std::env::var(variable).ok())
    };
    let config = match setting("--config", "FLOTILLA_CONFIG") {
        Some(path) => ClientConfig::from_file(&PathBuf::from(path))?,
        None => {
            let required = |flag: &str, variable: &str| {
                setting(flag, variable)
                    .ok_or_else(|| format!("{flag} or {variable} is needed\n{USAGE}"))
            };
            let endpoints = required("--endpoints", "FLOTILLA_ENDPOINTS")?;
            ClientConfig::builder()
                .endpoints(endpoints.split(',').map(str::trim))
                .tls_dir(required("--tls-dir", "FLOTILLA_TLS_DIR")?)
                .cluster_id(&required("--cluster-id", "FLOTILLA_CLUSTER_ID")?)
                .name(&required("--name", "FLOTILLA_NAME")?)
                .build()?
        }
    };
    let prefix = setting("--prefix", "FLOTILLA_PREFIX").unwrap_or_else(|| "quickstart/".into());
    run(config, &prefix).await
}

async fn run(config: ClientConfig, prefix: &str) -> Result<(), Box<dyn Error>> {
    let client = Client::connect(config).await?;
    println!(
        "connected: {} nodes, {} ranges",
        client.nodes().len(),
        client.map().ranges().count()
    );
    let key = |name: &str| format!("{prefix}{name}");
    let text = |value: Option<Vec<u8>>| match value {
        Some(value) => format!("{:?}", String::from_utf8_lossy(&value)),
        None => "nothing".to_owned(),
    };

    let greeting = key("greeting");
    let previous = client.put(&greeting, "hello").await?;
    println!("put {greeting} = \"hello\" (replaced {})", text(previous));
    let value = client.get(&greeting).await?;
    println!("get {greeting} -> {}", text(value));

    let swap = client.cas(&greeting, Some(b"hello"), Some(b"hi")).await?;
    println!(
        "cas {greeting} \"hello\" -> \"hi\": swapped {}",
        swap.swapped
    );
    let swap = client.cas(&greeting, Some(b"hello"), Some(b"hey")).await?;
    println!(
        "cas {greeting} \"hello\" -> \"hey\": swapped {}, current {}",
        swap.swapped,
        text(swap.current)
    );

    for (name, value) in [
        ("fruit/apple", "red"),
        ("fruit/banana", "yellow"),
        ("fruit/cherry", "dark red"),
    ] {
        client.put(key(name), value).await?;
    }
    let start = key("fruit/").into_bytes();
    let end = key("fruit0").into_bytes();
    let mut scan = client.scan(start..end).page_pairs(2);
    let mut scanned = 0;
    while let Some((key, value)) = scan.next().await? {
        println!(
            "scan {} = {}",
            String::from_utf8_lossy(&key),
            text(Some(value))
        );
        scanned += 1;
    }
    println!("scanned {scanned} pairs");

    let deleted = client.delete(&greeting).await?;
    println!("delete {greeting} (it was {})", text(deleted));
    println!("get {greeting} -> {}", text(client.get(&greeting).await?));
    for name in ["fruit/apple", "fruit/banana", "fruit/cherry"] {
        client.delete(key(name)).await?;
    }
    println!("done");
    Ok(())
}
