//! `meridian raft`: a zone CP's replica group — a table of members and who leads,
//! and the membership changes (add a learner, promote it, remove a replica). Any
//! replica's API will do; changes are forwarded to the leader.

use comfy_table::{Table, presets};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::ApiClient;

/// What to do with the group.
#[derive(clap::Subcommand, Debug)]
pub enum RaftCommand {
    /// Show the members, their roles, who leads and how far behind each is.
    Status,
    /// Add a started replica as a learner (it catches up, then can be promoted).
    AddLearner {
        /// Its --raft-id.
        id: u64,
        /// Its --raft-addr as the others reach it (HOST:PORT).
        addr: String,
    },
    /// Make a learner a voter.
    Promote {
        /// Its --raft-id.
        id: u64,
    },
    /// Remove a replica from the group.
    Remove {
        /// Its --raft-id.
        id: u64,
    },
}

/// Renders `GET /raft` for a person.
pub fn render(status: &Value) -> String {
    let leader = status["leader"].as_u64();
    let mut out = format!(
        "replica {} is {} in term {}; leader: {}\n",
        status["id"],
        status["state"].as_str().unwrap_or("?"),
        status["term"],
        leader.map_or_else(|| "none".to_owned(), |l| l.to_string()),
    );
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(vec!["ID", "ADDRESS", "ROLE", "LEADER", "MATCHED", "LAG"]);
    let shown = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    for member in status["members"].as_array().into_iter().flatten() {
        table.add_row(vec![
            member["id"].to_string(),
            member["addr"].as_str().unwrap_or_default().to_owned(),
            member["role"].as_str().unwrap_or_default().to_owned(),
            if member["id"].as_u64() == leader {
                "*"
            } else {
                ""
            }
            .to_owned(),
            shown(&member["matchedIndex"]),
            shown(&member["lag"]),
        ]);
    }
    out.push_str(&table.to_string());
    out.push('\n');
    out
}

/// Runs `meridian raft …` against `client`.
pub async fn run(client: &ApiClient, command: &RaftCommand) -> anyhow::Result<()> {
    let (method, path, body) = match command {
        RaftCommand::Status => {
            let status = client.send(Method::GET, "/raft", None).await?;
            print!("{}", render(&status.body));
            return Ok(());
        }
        RaftCommand::AddLearner { id, addr } => (
            Method::POST,
            "/raft/learners".to_owned(),
            Some(json!({"id": id, "addr": addr})),
        ),
        RaftCommand::Promote { id } => (Method::POST, format!("/raft/voters/{id}"), None),
        RaftCommand::Remove { id } => (Method::DELETE, format!("/raft/members/{id}"), None),
    };
    let done = client.send(method, &path, body.as_ref()).await?;
    println!("done: committed at log index {}", done.body["logIndex"]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_marks_the_leader_and_lag() {
        let status = json!({"id": 1, "state": "Leader", "term": 3, "leader": 1,
            "members": [
                {"id": 1, "addr": "127.0.0.1:5691", "role": "voter", "matchedIndex": 40, "lag": 0},
                {"id": 2, "addr": "127.0.0.1:5692", "role": "voter", "matchedIndex": 38, "lag": 2},
                {"id": 4, "addr": "127.0.0.1:5694", "role": "learner"}]});
        let text = render(&status);
        assert!(
            text.starts_with("replica 1 is Leader in term 3; leader: 1\n"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().skip(2).collect();
        assert!(
            rows[0].contains("127.0.0.1:5691") && rows[0].contains('*'),
            "{text}"
        );
        assert!(rows[1].trim_end().ends_with('2'), "{text}");
        assert!(
            rows[2].contains("learner") && rows[2].contains('-'),
            "{text}"
        );
    }
}
