//! Run with: `cargo run -p meshtrace-demo-upstream -- [ADDR]` (default `127.0.0.1:8080`).

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|e| anyhow::anyhow!("listen address {arg:?} is not valid: {e}"))?,
        None => meshtrace_demo_upstream::DEFAULT_ADDR.parse()?,
    };
    let bound = meshtrace_demo_upstream::start(addr).await?;
    println!("meshtrace-demo-upstream: echoing request headers as JSON on http://{bound}");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
