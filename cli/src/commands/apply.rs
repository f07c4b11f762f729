//! `meridian apply -f FILE`: create or update every document of a YAML/JSON file,
//! reporting each document's result; exits non-zero if any failed.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use meridian_model::ResourceKind;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::client::ApiClient;
use crate::paths;

/// Arguments of `meridian apply`.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The file to apply (`-` for standard input); may hold several YAML documents.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

/// Splits a multi-document YAML (or JSON) text into documents, skipping empty ones.
pub fn split_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut documents = Vec::new();
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .map_err(|e| anyhow!("document {} is not valid YAML: {e}", index + 1))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

fn target(document: &Value) -> anyhow::Result<(ResourceKind, String, String)> {
    let field = |name: &str| document.get(name).and_then(Value::as_str);
    let type_name = field("type").ok_or_else(|| anyhow!("it has no `type`"))?;
    let kind = ResourceKind::from_type_name(type_name)
        .ok_or_else(|| anyhow!("unknown type {type_name:?}; known types: {}", known_types()))?;
    let name = field("name").ok_or_else(|| anyhow!("it has no `name`"))?;
    let mesh = match (kind.is_mesh_scoped(), field("mesh")) {
        (true, Some(mesh)) => mesh.to_owned(),
        (true, None) => bail!("a {type_name} needs a `mesh`"),
        (false, _) => String::new(),
    };
    Ok((kind, mesh, name.to_owned()))
}

fn known_types() -> String {
    ResourceKind::ALL
        .iter()
        .map(|k| k.type_name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(kind: ResourceKind, mesh: &str, name: &str) -> String {
    if mesh.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {name} (mesh {mesh})")
    }
}

/// Runs `meridian apply`.
pub async fn run(client: &ApiClient, args: &ApplyArgs) -> anyhow::Result<()> {
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let documents =
        split_documents(&text).with_context(|| format!("parsing {}", args.file.display()))?;
    if documents.is_empty() {
        bail!("{} holds no documents", args.file.display());
    }
    let mut failed = 0;
    for (index, document) in documents.iter().enumerate() {
        let number = index + 1;
        let (kind, mesh, name) = match target(document) {
            Ok(target) => target,
            Err(error) => {
                failed += 1;
                println!("document {number}: not applied: {error}");
                continue;
            }
        };
        let what = describe(kind, &mesh, &name);
        match client
            .send(
                Method::PUT,
                &paths::item(kind, &mesh, &name),
                Some(document),
            )
            .await
        {
            Ok(response) => {
                let verb = if response.status == StatusCode::CREATED {
                    "created"
                } else {
                    "configured"
                };
                println!("{what}: {verb}");
                // As kubectl prints a server's warnings.
                for warning in response.body["warnings"].as_array().into_iter().flatten() {
                    if let Some(warning) = warning.as_str() {
                        eprintln!("Warning: {what}: {warning}");
                    }
                }
            }
            Err(error) => {
                failed += 1;
                println!("{what}: not applied: {error:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} document(s) failed", documents.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_multi_document_yaml_and_skips_empty_documents() {
        let docs =
            split_documents("---\ntype: Mesh\nname: a\n---\n---\ntype: Mesh\nname: b\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["name"], "b");
    }

    #[test]
    fn reports_which_document_is_broken() {
        let err = split_documents("type: Mesh\nname: a\n---\nname: [unclosed\n").unwrap_err();
        assert!(
            err.to_string().starts_with("document 2 is not valid YAML"),
            "{err}"
        );
    }

    #[test]
    fn targets_need_type_name_and_mesh() {
        let doc: Value = serde_json::json!({"type": "MeshTCPRoute", "name": "r"});
        assert!(
            target(&doc)
                .unwrap_err()
                .to_string()
                .contains("needs a `mesh`")
        );
        let doc: Value = serde_json::json!({"type": "Banana", "name": "r"});
        assert!(
            target(&doc)
                .unwrap_err()
                .to_string()
                .contains("unknown type")
        );
        let doc: Value = serde_json::json!({"type": "Zone", "name": "z"});
        assert_eq!(
            target(&doc).unwrap(),
            (ResourceKind::Zone, String::new(), "z".into())
        );
    }
}
