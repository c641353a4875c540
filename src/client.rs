//! The `weir` verbs that talk to a running `weir server` over its REST API: `submit`,
//! `list`, `status`, `cancel`, `stop`, `resume`. A thin client: every verb is one request
//! (`stop` then polls its savepoint), and prints the answer as text or, with `--output json`,
//! as the JSON the server sent.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use weir_server::api;

/// How a verb prints its answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
}

/// A client of one server.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client of the server at `url` (e.g. `http://127.0.0.1:8081`).
    pub fn new(url: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Client {
            base: url.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            agent,
        }
    }

    /// Sends a request and returns the JSON body of a 2xx answer; any other answer is an
    /// error with the server's message.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", "application/json");
        let request = match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        };
        let request = request
            .body(body.unwrap_or_default())
            .with_context(|| format!("bad request to {url}"))?;
        let mut response = self.agent.run(request).map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the Weir server at {}: {e} (start one with `weir server`, or point \
                 WEIR_SERVER / --server at it)",
                self.base
            )
        })?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {method} {path}"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<api::ErrorResponse>(&text)
                .map(|e| {
                    let mut message = e.errors.join("; ");
                    if let (Some(line), Some(column)) = (e.line, e.column) {
                        message.push_str(&format!(" (line {line}, column {column})"));
                    }
                    message
                })
                .unwrap_or(text);
            bail!("{message} (HTTP {})", status.as_u16());
        }
        serde_json::from_str(&text)
            .with_context(|| format!("the server's answer to {method} {path} is not JSON"))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<(T, serde_json::Value)> {
        let value = self.call("GET", path, None)?;
        let typed = serde_json::from_value(value.clone())
            .with_context(|| format!("unexpected answer to GET {path}"))?;
        Ok((typed, value))
    }

    /// `weir submit`: sends the script with this directory for its relative paths.
    pub fn submit(
        &self,
        file: &Path,
        shards: Option<usize>,
        from_savepoint: Option<&Path>,
        output: Output,
    ) -> anyhow::Result<()> {
        let sql = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read SQL file {}", file.display()))?;
        let cwd = std::env::current_dir().context("cannot read the working directory")?;
        let savepoint = from_savepoint
            .map(std::path::absolute)
            .transpose()
            .context("bad savepoint path")?;
        let request = api::SubmitRequest {
            sql,
            parallelism: shards,
            savepoint_path: savepoint.map(|p| p.display().to_string()),
            allow_non_restored_state: false,
            working_directory: Some(cwd.display().to_string()),
        };
        let answer = self.call("POST", "/jobs", Some(serde_json::to_string(&request)?))?;
        let id: api::SubmitResponse = serde_json::from_value(answer)?;
        match output {
            Output::Text => println!("{}", id.jobid),
            Output::Json => println!("{}", serde_json::json!({ "id": id.jobid })),
        }
        Ok(())
    }

    /// `weir list`.
    pub fn list(&self, output: Output) -> anyhow::Result<()> {
        let (jobs, raw): (api::JobsOverview, _) = self.get("/jobs")?;
        if output == Output::Json {
            println!("{raw}");
            return Ok(());
        }
        if jobs.jobs.is_empty() {
            println!("no jobs");
            return Ok(());
        }
        println!("{:<32}  {:<10}  {:>10}  NAME", "ID", "STATUS", "DURATION");
        for job in jobs.jobs {
            println!(
                "{:<32}  {:<10}  {:>10}  {}",
                job.id,
                status(job.status),
                seconds(job.duration),
                job.name
            );
        }
        Ok(())
    }

    /// `weir status ID`.
    pub fn status(&self, id: &str, output: Output) -> anyhow::Result<()> {
        let (job, raw): (api::JobDetails, _) = self.get(&format!("/jobs/{id}"))?;
        if output == Output::Json {
            println!("{raw}");
            return Ok(());
        }
        println!("{} ({})", job.name, job.jid);
        println!("status:   {}", status(job.state));
        println!("duration: {}", seconds(job.duration));
        println!("shards:   {}   restarts: {}", job.parallelism, job.restarts);
        if let Some(savepoint) = &job.savepoint {
            println!("savepoint: {savepoint}");
        }
        if !job.vertices.is_empty() {
            println!(
                "\n{:<40} {:>3} {:>14} {:>14} {:>12}  WATERMARK",
                "OPERATOR", "P", "ROWS IN", "ROWS OUT", "ROWS OUT/S"
            );
            for v in &job.vertices {
                let m = &v.metrics;
                let watermark = m
                    .current_input_watermark
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or("-".to_string(), |t| {
                        t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
                    });
                println!(
                    "{:<40} {:>3} {:>14} {:>14} {:>12.0}  {watermark}",
                    v.name,
                    v.parallelism,
                    m.read_records,
                    m.write_records,
                    m.write_records_per_second
                );
            }
        }
        Ok(())
    }

    /// `weir cancel ID`.
    pub fn cancel(&self, id: &str, output: Output) -> anyhow::Result<()> {
        let answer = self.call("PATCH", &format!("/jobs/{id}?mode=cancel"), None)?;
        match output {
            Output::Text => println!("cancelling {id}"),
            Output::Json => println!("{answer}"),
        }
        Ok(())
    }

    /// `weir stop ID`: a savepoint, then the job stops; waits for the savepoint.
    pub fn stop(
        &self,
        id: &str,
        savepoint_dir: Option<&Path>,
        output: Output,
    ) -> anyhow::Result<()> {
        let target = savepoint_dir
            .map(std::path::absolute)
            .transpose()
            .context("bad savepoint directory")?;
        let request = api::StopRequest {
            target_directory: target.map(|p| p.display().to_string()),
            drain: false,
        };
        let answer = self.call(
            "POST",
            &format!("/jobs/{id}/stop"),
            Some(serde_json::to_string(&request)?),
        )?;
        let trigger: api::TriggerResponse = serde_json::from_value(answer)?;
        loop {
            let (info, raw): (api::SavepointInfo, _) =
                self.get(&format!("/jobs/{id}/savepoints/{}", trigger.request_id))?;
            let Some(operation) = info.operation.filter(|_| info.status.id == "COMPLETED") else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            if output == Output::Json {
                println!("{raw}");
            }
            return match (operation.location, operation.failure_cause) {
                (Some(location), _) => {
                    if output == Output::Text {
                        println!("stopped {id} with a savepoint at {location}");
                    }
                    Ok(())
                }
                (None, cause) => bail!(
                    "the savepoint of {id} failed: {}",
                    cause.unwrap_or_else(|| "no cause given".into())
                ),
            };
        }
    }

    /// `weir resume ID`.
    pub fn resume(&self, id: &str, output: Output) -> anyhow::Result<()> {
        let answer = self.call("POST", &format!("/jobs/{id}/resume"), None)?;
        match output {
            Output::Text => println!("resumed {id} from its savepoint"),
            Output::Json => println!("{answer}"),
        }
        Ok(())
    }
}

fn status(status: api::JobStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}
