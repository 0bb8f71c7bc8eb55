//! The operator commands, `picket silence …` and `picket status`: clients of
//! the operator API in the manner of amtool. Flags are checked here (64);
//! what the API refuses is 65 with its message; an API that does not answer
//! is 1.

use std::process::ExitCode;

use anyhow::anyhow;
use api::silences::request::SilenceRequest;
use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Subcommand};
use protocol::HumanDuration;
use protocol::silence::{Glob, SilenceMatch};

use crate::Failure;
use crate::api_client::ApiClient;
use crate::render::{self, CheckView, PreviewView, SilenceView};

/// Where the API is. The token is PICKET_API_TOKEN, read from the environment only.
#[derive(Args, Clone, Debug)]
pub struct ApiTarget {
    /// Base URL of a handler's or standalone's API (its PICKET_LISTEN).
    #[arg(long, env = "PICKET_API_URL", default_value = "http://127.0.0.1:9750", global = true)]
    pub api_url: String,
}

#[derive(Subcommand, Debug)]
pub enum SilenceCommand {
    /// Silence the notifications of what the match selects; prints the new id.
    Add(SilenceArgs),
    /// List silences: active ones unless told otherwise.
    #[command(group(ArgGroup::new("which").args(["expired", "pending", "all"])))]
    List {
        /// Expired ones instead (kept at least 7 days).
        #[arg(long)]
        expired: bool,
        /// Ones that have not started yet.
        #[arg(long)]
        pending: bool,
        /// Active, pending and expired.
        #[arg(long)]
        all: bool,
    },
    /// Expire a silence now; it stays listed, with who expired it.
    Expire {
        /// The silence's id, as `add` printed it.
        id: String,
    },
    /// What a silence with these flags would match right now; creates nothing.
    Preview(SilenceArgs),
}

/// One silence, as flags (README "Silences").
#[derive(Args, Clone, Debug)]
#[command(group(ArgGroup::new("end").args(["duration", "until"]).required(true)))]
pub struct SilenceArgs {
    /// Glob over check names, e.g. 'api-*'.
    #[arg(long, value_parser = parse_glob)]
    check: Option<Glob>,
    /// Glob over subscriptions, e.g. 'aws-us-east-1'.
    #[arg(long, value_parser = parse_glob)]
    subscription: Option<Glob>,
    /// A label the check must carry, NAME=GLOB; repeatable, all must match.
    #[arg(long = "label", value_name = "NAME=GLOB", value_parser = parse_label)]
    labels: Vec<(String, Glob)>,
    /// How long from its start, e.g. 2h or 1h30m.
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<HumanDuration>,
    /// When it ends (RFC 3339, e.g. 2026-12-03T18:00:00Z).
    #[arg(long, value_name = "TIME")]
    until: Option<DateTime<Utc>>,
    /// When it starts (RFC 3339); default now.
    #[arg(long, value_name = "TIME")]
    from: Option<DateTime<Utc>>,
    /// Expire once everything it matched has been OK twice in a row.
    #[arg(long)]
    ends_on_resolve: bool,
    /// Allow a match by labels alone, naming no check and no subscription.
    #[arg(long)]
    force: bool,
    /// Why: who asked, which change (required).
    #[arg(long)]
    comment: String,
}

fn parse_glob(text: &str) -> Result<Glob, String> {
    Glob::new(text).map_err(|e| e.to_string())
}

fn parse_label(text: &str) -> Result<(String, Glob), String> {
    let (name, glob) = text.split_once('=').ok_or_else(|| format!("{text:?} is not NAME=GLOB"))?;
    if name.is_empty() {
        return Err(format!("{text:?} has no label name before '='"));
    }
    Ok((name.to_owned(), parse_glob(glob)?))
}

impl SilenceArgs {
    fn request(self) -> SilenceRequest {
        SilenceRequest {
            matcher: SilenceMatch {
                check: self.check,
                subscription: self.subscription,
                labels: self.labels.into_iter().collect(),
            },
            duration: self.duration,
            ends_at: self.until,
            starts_at: self.from,
            ends_on_resolve: self.ends_on_resolve,
            comment: self.comment,
            force: self.force,
        }
    }
}

pub async fn silence(api: &ApiTarget, command: SilenceCommand) -> Result<ExitCode, Failure> {
    let client = ApiClient::from_env(&api.api_url)?;
    let text = match command {
        SilenceCommand::Add(args) => {
            let created: SilenceView = client.post("/api/v1/silences", &args.request()).await?;
            created.id
        }
        SilenceCommand::List { expired, pending, all } => {
            let path = match (expired, pending, all) {
                (true, _, _) => "/api/v1/silences?state=expired",
                (_, true, _) => "/api/v1/silences?state=pending",
                (_, _, true) => "/api/v1/silences",
                _ => "/api/v1/silences?state=active",
            };
            let silences: Vec<SilenceView> = client.get(path).await?;
            render::silences_table(&silences)
        }
        SilenceCommand::Expire { id } => {
            if !is_silence_id(&id) {
                return Err(Failure::Config(anyhow!("{id:?} is not a silence id (picket silence list shows them)")));
            }
            let silence: SilenceView =
                client.post(&format!("/api/v1/silences/{id}/expire"), &serde_json::json!({})).await?;
            render::expired_line(&silence)
        }
        SilenceCommand::Preview(args) => {
            let preview: PreviewView = client.post("/api/v1/silences/preview", &args.request()).await?;
            render::preview_report(preview, Utc::now())
        }
    };
    crate::commands::print_out(&text);
    Ok(ExitCode::SUCCESS)
}

pub async fn status(api: &ApiTarget) -> Result<ExitCode, Failure> {
    let client = ApiClient::from_env(&api.api_url)?;
    let rows: Vec<CheckView> = client.get("/api/v1/checks").await?;
    crate::commands::print_out(&render::status_report(rows, Utc::now()));
    Ok(ExitCode::SUCCESS)
}

/// Whether `id` can be a silence's: a made one's, or a maintenance window's
/// (`maintenance:<name>`, which the API refuses to expire, saying why).
/// Nothing else reaches the request's path.
fn is_silence_id(id: &str) -> bool {
    let word = |s: &str, extra: &[char]| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || extra.contains(&c))
    };
    match id.split_once(':') {
        Some((_, name)) if handlers::silence::is_window(id) => word(name, &['.']),
        _ => word(id, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::is_silence_id;

    #[test]
    fn only_silence_ids_reach_the_path() {
        for id in ["3f9a0c1d2e4b5a69", "maintenance:db.upgrade-2"] {
            assert!(is_silence_id(id), "{id}");
        }
        for id in ["", "..", "a/b", "maintenance:", "maintenance:../x", "other:x", "a?b"] {
            assert!(!is_silence_id(id), "{id}");
        }
    }
}
