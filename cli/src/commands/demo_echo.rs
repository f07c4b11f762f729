//! The demo echo service of `meridian up`: answers every connection with
//! `<identity>: ` followed by whatever the client sends, and closes its side
//! when the client closes its own. The prefix shows which instance (and zone)
//! a connection reached.

use std::future::Future;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

async fn serve_one(mut stream: TcpStream, identity: String) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    stream.write_all(format!("{identity}: ").as_bytes()).await?;
    let (mut reader, mut writer) = stream.split();
    tokio::io::copy(&mut reader, &mut writer).await?;
    writer.shutdown().await
}

/// Binds `addr` and serves until the task is dropped.
pub async fn spawn(
    addr: SocketAddr,
    identity: String,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let identity = identity.clone();
                    tokio::spawn(async move {
                        if let Err(error) = serve_one(stream, identity).await {
                            tracing::debug!(%error, "demo echo connection failed");
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "demo echo accept failed"),
            }
        }
    }))
}

/// Arguments of the hidden `meridian demo-echo`.
#[derive(clap::Args, Debug)]
pub struct DemoEchoArgs {
    /// Where to listen.
    #[arg(long)]
    pub listen: SocketAddr,
    /// The prefix of every answer, e.g. `zone-2/echo`.
    #[arg(long)]
    pub identity: String,
}

/// Runs the demo echo service until `shutdown` resolves.
pub async fn run(args: DemoEchoArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let task = spawn(args.listen, args.identity.clone()).await?;
    println!(
        "meridian demo-echo: {} answering on {}",
        args.identity, args.listen
    );
    shutdown.await;
    task.abort();
    Ok(())
}
