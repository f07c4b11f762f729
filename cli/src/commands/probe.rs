//! `meridian probe ADDR`: opens connections to an address one after another,
//! sends a line on each, and tallies who answered, as a table. Pointed at a
//! sidecar's outbound in front of the demo echo services of `meridian up`, it
//! shows where the mesh sent each connection (local zone, remote zones, route
//! splits).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use comfy_table::{Table, presets};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Arguments of `meridian probe`.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The address to connect to (e.g. a sidecar outbound).
    pub addr: SocketAddr,
    /// How many connections to open.
    #[arg(long, default_value_t = 20)]
    pub count: u32,
    /// The line sent on each connection.
    #[arg(long, default_value = "hello")]
    pub message: String,
    /// Give up on a connection after this long.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// One connection: send the message, half-close, read the whole answer.
async fn probe_once(addr: SocketAddr, message: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(format!("{message}\n").as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream
        .shutdown()
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if answer.is_empty() {
        return Err("closed without an answer".to_owned());
    }
    Ok(answer)
}

/// Who answered: the demo echo prefixes its answers with `<zone>/<instance>: `.
fn responder(answer: &str) -> String {
    match answer.split_once(": ") {
        Some((who, _)) if !who.is_empty() && !who.contains('\n') => who.to_owned(),
        _ => "(no prefix)".to_owned(),
    }
}

/// Runs `meridian probe`.
pub async fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..args.count {
        let outcome = tokio::time::timeout(args.timeout, probe_once(args.addr, &args.message))
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()));
        let key = match outcome {
            Ok(answer) => responder(&answer),
            Err(e) => format!("(failed: {e})"),
        };
        *tally.entry(key).or_default() += 1;
    }
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(vec!["ANSWERED BY", "CONNECTIONS", "SHARE"]);
    for (who, n) in &tally {
        let share = f64::from(*n) * 100.0 / f64::from(args.count.max(1));
        table.add_row(vec![who.clone(), n.to_string(), format!("{share:.0}%")]);
    }
    println!("{} connections to {}\n{table}", args.count, args.addr);
    if tally.keys().all(|k| k.starts_with("(failed")) {
        anyhow::bail!("no connection to {} got an answer", args.addr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::responder;

    #[test]
    fn responder_is_the_prefix() {
        assert_eq!(responder("zone-2/echo: hello\n"), "zone-2/echo");
        assert_eq!(responder("hello\n"), "(no prefix)");
        assert_eq!(responder(": x"), "(no prefix)");
    }
}
