//! `raftsched schedule create|list|get|pause|resume|delete`.

use raftsched_client::api;
use raftsched_client::rules::{limits, validate_schedule_name, Timing};
use serde_json::Value;

use crate::cli::{ReadArgs, ScheduleCommand, ScheduleCreateArgs, ScheduleNameArgs};
use crate::client_cmds::{build_spec, connect};
use crate::error::CliError;
use crate::output::{format_ms, spec_text};
pub use raftsched_client::api::json::schedule_json;

pub async fn run(command: ScheduleCommand) -> Result<(), CliError> {
    match command {
        ScheduleCommand::Create(args) => create(*args).await,
        ScheduleCommand::List(args) => list(args).await,
        ScheduleCommand::Get(args) => get(args).await,
        ScheduleCommand::Pause(args) => pause(args, true).await,
        ScheduleCommand::Resume(args) => pause(args, false).await,
        ScheduleCommand::Delete(args) => delete(args).await,
    }
}

fn check_name(name: &str) -> Result<(), CliError> {
    validate_schedule_name(name).map_err(CliError::Usage)
}

async fn create(args: ScheduleCreateArgs) -> Result<(), CliError> {
    check_name(&args.name)?;
    // Parsed here for a clear usage error before any network call; the replicas check again.
    Timing::parse(&args.cron, &args.timezone).map_err(CliError::Usage)?;
    if args.max_catch_up == 0 || args.max_catch_up > limits::CATCH_UP_RUNS_MAX {
        return Err(CliError::Usage(format!(
            "--max-catch-up must be 1..={} (--catch-up none runs no missed occurrence)",
            limits::CATCH_UP_RUNS_MAX
        )));
    }
    if args.start_deadline_ms == 0 || args.start_deadline_ms > limits::START_DEADLINE_MS_MAX {
        return Err(CliError::Usage(format!("--start-deadline-ms must be 1..={}", limits::START_DEADLINE_MS_MAX)));
    }
    let spec = api::ScheduleSpec {
        cron: args.cron.clone(),
        timezone: args.timezone.clone(),
        overlap: args.overlap.clone(),
        catch_up: args.catch_up.clone(),
        max_catch_up: args.max_catch_up,
        start_deadline_ms: args.start_deadline_ms,
        task: Some(build_spec(&args.task)?),
    };
    let client = connect(&args.cluster)?;
    let request = api::CreateScheduleRequest {
        name: args.name.clone(),
        spec: Some(spec),
        concurrency_key: args.concurrency.concurrency_key.clone().unwrap_or_default(),
        concurrency_limit: args.concurrency.concurrency_limit.unwrap_or(0),
    };
    let reply = client.create_schedule_request(request).await?;
    let next = if reply.has_next_due { format_ms(reply.next_due_ms) } else { "never".to_string() };
    let verb = if reply.created { "created" } else { "exists (same spec)" };
    outln!("schedule {} {verb}; next occurrence {next}", args.name);
    Ok(())
}

async fn list(args: ReadArgs) -> Result<(), CliError> {
    let client = connect(&args.cluster)?;
    let schedules = client.list_schedules(args.stale).await?.schedules;
    if args.json {
        outln!("{}", Value::Array(schedules.iter().map(schedule_json).collect()));
        return Ok(());
    }
    outln!("{:<24} {:<20} {:<8} {:<24} {:>6} {:>7}", "NAME", "CRON", "STATE", "NEXT", "RUNS", "MISSED");
    for s in &schedules {
        let cron = s.spec.as_ref().map_or("", |c| c.cron.as_str());
        let state = if s.paused { "paused" } else { "active" };
        let next = if s.has_next_due { format_ms(s.next_due_ms) } else { "-".to_string() };
        outln!("{:<24} {:<20} {:<8} {:<24} {:>6} {:>7}", s.name, cron, state, next, s.runs_total, s.missed_total);
    }
    Ok(())
}

async fn get(args: ScheduleNameArgs) -> Result<(), CliError> {
    check_name(&args.name)?;
    let client = connect(&args.cluster)?;
    let s = client.get_schedule(&args.name, false).await?;
    if args.json {
        outln!("{}", schedule_json(&s));
        return Ok(());
    }
    let spec = s.spec.clone().unwrap_or_default();
    outln!("name:        {}", s.name);
    outln!("cron:        {} ({})", spec.cron, spec.timezone);
    outln!(
        "policies:    overlap {}, catch-up {} (max {}), start deadline {} ms",
        spec.overlap,
        spec.catch_up,
        spec.max_catch_up,
        spec.start_deadline_ms
    );
    outln!("task:        {}", spec_text(spec.task.as_ref()));
    outln!("state:       {}", if s.paused { "paused" } else { "active" });
    outln!("next:        {}", if s.has_next_due { format_ms(s.next_due_ms) } else { "-".to_string() });
    outln!("runs:        {} ({} missed)", s.runs_total, s.missed_total);
    for r in &s.history {
        let what =
            if r.missed.is_empty() { format!("ran as task {}", r.task_id) } else { format!("missed ({})", r.missed) };
        let when = if r.count == 1 {
            format_ms(r.occurrence_ms)
        } else {
            let plus = if r.count_capped { "+" } else { "" };
            format!(
                "{} .. {} ({}{plus} occurrences)",
                format_ms(r.occurrence_ms),
                format_ms(r.last_occurrence_ms),
                r.count
            )
        };
        outln!("  {when}: {what}, fired at {}", format_ms(r.fired_at_ms));
    }
    Ok(())
}

async fn pause(args: ScheduleNameArgs, paused: bool) -> Result<(), CliError> {
    check_name(&args.name)?;
    let client = connect(&args.cluster)?;
    let reply = client.pause_schedule(&args.name, paused).await?;
    if paused {
        outln!("schedule {} paused", args.name);
    } else {
        let next = if reply.has_next_due { format_ms(reply.next_due_ms) } else { "never".to_string() };
        outln!("schedule {} resumed; next occurrence {next}", args.name);
    }
    Ok(())
}

async fn delete(args: ScheduleNameArgs) -> Result<(), CliError> {
    check_name(&args.name)?;
    let client = connect(&args.cluster)?;
    client.delete_schedule(&args.name).await?;
    outln!("schedule {} deleted", args.name);
    Ok(())
}
