//! `raftsched flow submit FILE` and `raftsched flow get KEY`.

use std::io::Read;

use raftsched_client::api;
use serde_json::Value;

use crate::cli::{FlowGetArgs, FlowSubmitArgs};
use crate::client_cmds::connect;
use crate::error::CliError;

/// Bytes of a flow file read (the request must fit the server's 1 MiB message limit anyway).
const FLOW_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// The flow file as JSON: JSON itself, or YAML when the name ends .yaml or .yml.
fn read_flow_file(path: &str) -> Result<Value, CliError> {
    let mut text = String::new();
    let read = if path == "-" {
        std::io::stdin().take(FLOW_FILE_BYTES_MAX + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(FLOW_FILE_BYTES_MAX + 1).read_to_string(&mut text))
    };
    read.map_err(|e| CliError::Usage(format!("cannot read {path}: {e}")))?;
    if text.len() as u64 > FLOW_FILE_BYTES_MAX {
        return Err(CliError::Usage(format!("{path} is over {FLOW_FILE_BYTES_MAX} bytes")));
    }
    if path.ends_with(".yaml") || path.ends_with(".yml") {
        return serde_yaml::from_str(&text).map_err(|e| CliError::Usage(format!("{path}: not YAML: {e}")));
    }
    serde_json::from_str(&text).map_err(|e| CliError::Usage(format!("{path}: not JSON: {e}")))
}

pub async fn submit(args: FlowSubmitArgs) -> Result<(), CliError> {
    let mut flow = raftsched_api::json::flow_from_json(read_flow_file(&args.file)?)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file)))?;
    match (&args.key, flow.key.is_empty()) {
        (Some(key), true) => flow.key = key.clone(),
        (Some(key), false) if *key != flow.key => {
            return Err(CliError::Usage(format!("--key {key:?} and the file's key {:?} differ", flow.key)))
        }
        (None, true) => return Err(CliError::Usage("the flow needs a key: --key, or \"key\" in the file".into())),
        _ => {}
    }
    let names: Vec<String> = flow.tasks.iter().map(|t| t.name.clone()).collect();
    let client = connect(&args.cluster)?;
    let reply = client.submit_flow(flow).await?;
    if args.json {
        let tasks: Vec<Value> =
            names.iter().zip(&reply.ids).map(|(n, id)| serde_json::json!({"name": n, "id": id})).collect();
        outln!("{}", serde_json::json!({"created": reply.created, "tasks": tasks}));
    } else {
        for (name, id) in names.iter().zip(&reply.ids) {
            outln!("{id} {name}");
        }
        if !reply.created {
            eprintln!("the same flow was submitted before under this key: these are its tasks");
        }
    }
    Ok(())
}

pub async fn get(args: FlowGetArgs) -> Result<(), CliError> {
    let client = connect(&args.cluster)?;
    let tasks = client.get_flow(&args.key, args.stale).await?.tasks;
    if args.json {
        outln!("{}", Value::Array(tasks.iter().map(raftsched_api::json::task_json).collect()));
        return Ok(());
    }
    let name_of = |t: &api::Task| t.key.strip_prefix(&format!("{}/", args.key)).unwrap_or(&t.key).to_string();
    let names: std::collections::BTreeMap<u64, String> = tasks.iter().map(|t| (t.id, name_of(t))).collect();
    outln!("{:<24} {:>8} {:<10} after", "name", "id", "state");
    for t in &tasks {
        let after: Vec<String> =
            t.after.iter().map(|id| names.get(id).cloned().unwrap_or_else(|| id.to_string())).collect();
        outln!("{:<24} {:>8} {:<10} {}", name_of(t), t.id, t.state, after.join(", "));
    }
    Ok(())
}
