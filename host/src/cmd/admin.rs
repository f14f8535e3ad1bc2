//! `sluice admin ...`: the admin API from a shell (tenants, tokens, pipelines, plugin
//! deploys and rollbacks), and a tenant's dead letters through the tenant API. Answers are
//! tables or JSON; a refusal prints the service's message and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sluice::config::PipelineSpec;

/// How long a call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `plugins deploy` waits for the version to serve.
const DEPLOY_WAIT: Duration = Duration::from_secs(300);

/// Arguments of `sluice admin`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The admin API.
    #[arg(
        long,
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    url: String,
    /// An admin token (`[[admin.tokens]]`); for `dead-letters`, the tenant's token.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// The tenant API (for `dead-letters`).
    #[arg(long, env = "SLUICE_API_URL", default_value = "http://127.0.0.1:8080")]
    api: String,
    #[command(subcommand)]
    command: AdminCommand,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// A tenant's API tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// A tenant's pipeline.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// A tenant's own plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// A tenant's dead letters (`--token` is the tenant's token).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
    /// The audit log of every change.
    Audit {
        /// Entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Entries at most.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, clap::Subcommand)]
enum TenantsCommand {
    /// List every tenant.
    List,
    /// Show one tenant.
    Show { name: String },
    /// Create a tenant; prints its first token, once.
    Create {
        name: String,
        /// Days raw points are kept.
        #[arg(long, default_value_t = 30)]
        retention_days: u32,
        /// Its quotas, as JSON (`{"points_per_sec":10000}`).
        #[arg(long)]
        limits: Option<String>,
        /// Its pipeline: a JSON or TOML file.
        #[arg(long)]
        pipeline: Option<PathBuf>,
    },
    /// Change a tenant's retention or quotas.
    Update {
        name: String,
        #[arg(long)]
        retention_days: Option<u32>,
        /// Its quotas, as JSON (replacing the ones it has).
        #[arg(long)]
        limits: Option<String>,
    },
    /// Delete a tenant: its tokens stop working at once.
    Delete { name: String },
}

#[derive(Debug, clap::Subcommand)]
enum TokensCommand {
    /// Create a token; prints it, once.
    Create {
        tenant: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Revoke a token by id.
    Revoke { tenant: String, id: String },
}

#[derive(Debug, clap::Subcommand)]
enum PipelineCommand {
    /// Print a tenant's pipeline as JSON.
    Get { tenant: String },
    /// Replace a tenant's pipeline with a JSON or TOML file (checked whole).
    Set { tenant: String, file: PathBuf },
}

#[derive(Debug, clap::Subcommand)]
enum PluginsCommand {
    /// A tenant's own plugins and their versions, and the library's.
    List { tenant: String },
    /// Deploy a component as a tenant's plugin; waits until it serves or fails.
    Deploy {
        tenant: String,
        name: String,
        file: PathBuf,
    },
    /// Make an earlier version serve again.
    Rollback {
        tenant: String,
        name: String,
        version: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum DeadLettersCommand {
    /// The tenant's dead letters, oldest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Re-run the tenant's dead letters through its current pipeline.
    Replay,
}

/// A client of one service.
pub(super) struct Api {
    runtime: tokio::runtime::Runtime,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    token: String,
}

impl Api {
    /// A client sending `token` (empty for public routes).
    pub(super) fn new(token: String) -> anyhow::Result<Self> {
        Ok(Self {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?,
            client: Client::builder(TokioExecutor::new()).build_http(),
            token,
        })
    }

    /// `method` `url` with `body` (content type, bytes): the JSON answered.
    pub(super) fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<Value> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("Authorization", format!("Bearer {}", self.token));
        let bytes = match body {
            Some((content_type, bytes)) => {
                request = request.header("Content-Type", content_type);
                bytes
            }
            None => Vec::new(),
        };
        let request = request
            .body(Full::new(Bytes::from(bytes)))
            .with_context(|| format!("{method} {url}: not a valid request"))?;
        let (status, answer) = self.runtime.block_on(async {
            let response = tokio::time::timeout(CALL_TIMEOUT, self.client.request(request))
                .await
                .map_err(|_| anyhow::anyhow!("{method} {url}: no answer within {CALL_TIMEOUT:?}"))?
                .with_context(|| {
                    format!("cannot reach {url} (is the service running, and listening there?)")
                })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .with_context(|| format!("{method} {url}: reading the answer"))?
                .to_bytes();
            anyhow::Ok((status, bytes))
        })?;
        let json: Value = if answer.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer).into_owned()))
        };
        if !status.is_success() {
            let message = json["message"]
                .as_str()
                .map_or_else(|| json.to_string(), str::to_owned);
            bail!(
                "{} {}: {message}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
        }
        Ok(json)
    }
}

/// A pipeline file: JSON, or TOML (as a tenant's tables in the config file).
fn read_pipeline(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let spec: PipelineSpec = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).with_context(|| format!("{} is not a pipeline", path.display()))?
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a pipeline", path.display()))?
    };
    Ok(serde_json::to_value(spec)?)
}

/// Quotas given as JSON.
fn limits(json: Option<&str>) -> anyhow::Result<Option<Value>> {
    json.map(|j| {
        let limits: sluice::quota::Limits = serde_json::from_str(j)
            .context("--limits: expected JSON such as {\"points_per_sec\":10000}")?;
        Ok(serde_json::to_value(limits)?)
    })
    .transpose()
}

/// `rows` under `header`, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// `v` as a table cell: on one line.
fn text(v: &Value) -> String {
    let cell = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    cell.replace(['\n', '\r'], " ")
}

fn tenants_table(tenants: &[Value]) -> String {
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            vec![
                text(&t["name"]),
                text(&t["retention_days"]),
                t["tokens"].as_array().map_or(0, Vec::len).to_string(),
                text(&t["stages"]),
                text(&t["alerts"]),
                text(&t["rollups"]),
                text(&t["limits"]),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "RETENTION_DAYS",
            "TOKENS",
            "STAGES",
            "ALERTS",
            "ROLLUPS",
            "LIMITS",
        ],
        &rows,
    )
}

fn token_lines(token: &Value) -> String {
    format!(
        "token id {}\ntoken (shown once, keep it now): {}",
        text(&token["id"]),
        text(&token["token"])
    )
}

/// Runs `sluice admin`.
pub fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(args.token)?;
    let admin = |path: &str| format!("{}/admin/v1{path}", args.url.trim_end_matches('/'));
    let json = |v: Value| Some(("application/json", v.to_string().into_bytes()));
    let out = match args.command {
        AdminCommand::Tenants(TenantsCommand::List) => {
            let tenants = api.call("GET", &admin("/tenants"), None)?;
            tenants_table(tenants.as_array().map_or(&[][..], Vec::as_slice))
        }
        AdminCommand::Tenants(TenantsCommand::Show { name }) => {
            let tenant = api.call("GET", &admin(&format!("/tenants/{name}")), None)?;
            serde_json::to_string_pretty(&tenant)?
        }
        AdminCommand::Tenants(TenantsCommand::Create {
            name,
            retention_days,
            limits: quotas,
            pipeline,
        }) => {
            let mut body = serde_json::json!({ "name": name, "retention_days": retention_days });
            if let Some(quotas) = limits(quotas.as_deref())? {
                body["limits"] = quotas;
            }
            if let Some(path) = pipeline {
                body["pipeline"] = read_pipeline(&path)?;
            }
            let created = api.call("POST", &admin("/tenants"), json(body))?;
            format!(
                "{}\n\n{}",
                tenants_table(std::slice::from_ref(&created["tenant"])),
                token_lines(&created["token"])
            )
        }
        AdminCommand::Tenants(TenantsCommand::Update {
            name,
            retention_days,
            limits: quotas,
        }) => {
            let mut body = serde_json::json!({});
            if let Some(days) = retention_days {
                body["retention_days"] = days.into();
            }
            if let Some(quotas) = limits(quotas.as_deref())? {
                body["limits"] = quotas;
            }
            let tenant = api.call("PATCH", &admin(&format!("/tenants/{name}")), json(body))?;
            tenants_table(std::slice::from_ref(&tenant))
        }
        AdminCommand::Tenants(TenantsCommand::Delete { name }) => {
            api.call("DELETE", &admin(&format!("/tenants/{name}")), None)?;
            format!("tenant `{name}` deleted")
        }
        AdminCommand::Tokens(TokensCommand::Create {
            tenant,
            description,
        }) => {
            let body = serde_json::json!({ "description": description });
            let token = api.call(
                "POST",
                &admin(&format!("/tenants/{tenant}/tokens")),
                json(body),
            )?;
            token_lines(&token)
        }
        AdminCommand::Tokens(TokensCommand::Revoke { tenant, id }) => {
            api.call(
                "DELETE",
                &admin(&format!("/tenants/{tenant}/tokens/{id}")),
                None,
            )?;
            format!("token {id} of `{tenant}` revoked")
        }
        AdminCommand::Pipeline(PipelineCommand::Get { tenant }) => {
            let pipeline = api.call("GET", &admin(&format!("/tenants/{tenant}/pipeline")), None)?;
            serde_json::to_string_pretty(&pipeline)?
        }
        AdminCommand::Pipeline(PipelineCommand::Set { tenant, file }) => {
            let body = read_pipeline(&file)?;
            api.call(
                "PUT",
                &admin(&format!("/tenants/{tenant}/pipeline")),
                json(body),
            )?;
            format!("pipeline of `{tenant}` replaced")
        }
        AdminCommand::Plugins(PluginsCommand::List { tenant }) => {
            let plugins = api.call("GET", &admin(&format!("/tenants/{tenant}/plugins")), None)?;
            plugins_table(&plugins)
        }
        AdminCommand::Plugins(PluginsCommand::Deploy { tenant, name, file }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let path = format!("/tenants/{tenant}/plugins/{name}");
            let ticket = api.call("PUT", &admin(&path), Some(("application/wasm", bytes)))?;
            let version = text(&ticket["version"]);
            let deadline = Instant::now() + DEPLOY_WAIT;
            let mut state = ticket;
            while state["state"] == "compiling" {
                if Instant::now() >= deadline {
                    bail!("{name}@{version} still compiling after {DEPLOY_WAIT:?}");
                }
                std::thread::sleep(Duration::from_millis(200));
                state = api.call("GET", &admin(&format!("{path}/versions/{version}")), None)?;
            }
            if state["state"] != "deployed" {
                bail!(
                    "{name}@{version} was not deployed: {}",
                    text(&state["error"])
                );
            }
            format!("{name}@{version} serves `{tenant}`")
        }
        AdminCommand::Plugins(PluginsCommand::Rollback {
            tenant,
            name,
            version,
        }) => {
            let path = format!("/tenants/{tenant}/plugins/{name}/rollback");
            let plugins = api.call(
                "POST",
                &admin(&path),
                json(serde_json::json!({ "version": version })),
            )?;
            format!(
                "{name}@{version} serves `{tenant}` again\n\n{}",
                plugins_table(&plugins)
            )
        }
        AdminCommand::DeadLetters(DeadLettersCommand::List { limit }) => {
            let url = format!(
                "{}/api/v1/dead-letters?limit={limit}",
                args.api.trim_end_matches('/')
            );
            let page = api.call("GET", &url, None)?;
            let rows: Vec<Vec<String>> = page["dead_letters"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|l| {
                    vec![
                        text(&l["time"]),
                        text(&l["stage"]),
                        format!("{}@{}", text(&l["plugin"]), text(&l["version"])),
                        l["items"].as_array().map_or(0, Vec::len).to_string(),
                        text(&l["error"]),
                    ]
                })
                .collect();
            table(&["TIME", "STAGE", "PLUGIN", "ITEMS", "ERROR"], &rows)
        }
        AdminCommand::DeadLetters(DeadLettersCommand::Replay) => {
            let url = format!(
                "{}/api/v1/dead-letters/replay",
                args.api.trim_end_matches('/')
            );
            let done = api.call("POST", &url, None)?;
            format!(
                "re-ran {} letters ({} points); {} derived letters not re-run; {} unparsable",
                text(&done["letters"]),
                text(&done["points"]),
                text(&done["derived"]),
                text(&done["unparsable"])
            )
        }
        AdminCommand::Audit { after, limit } => {
            let page = api.call(
                "GET",
                &admin(&format!("/audit?after={after}&limit={limit}")),
                None,
            )?;
            let rows: Vec<Vec<String>> = page["entries"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .map(|e| {
                    ["seq", "at", "by", "action", "tenant", "detail"]
                        .iter()
                        .map(|k| text(&e[*k]))
                        .collect()
                })
                .collect();
            table(&["SEQ", "AT", "BY", "ACTION", "TENANT", "DETAIL"], &rows)
        }
    };
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn plugins_table(plugins: &Value) -> String {
    let mut rows = Vec::new();
    if let Some(own) = plugins["own"].as_object() {
        for (name, p) in own {
            for v in p["versions"].as_array().map_or(&[][..], Vec::as_slice) {
                let version = text(&v["version"]);
                let serving = if p["active"].as_str() == Some(version.as_str()) {
                    "serving"
                } else {
                    ""
                };
                rows.push(vec![
                    name.clone(),
                    version,
                    text(&v["world"]),
                    text(&v["bytes"]),
                    text(&v["deployed"]),
                    serving.to_owned(),
                ]);
            }
            for (version, state) in p["pending"].as_object().into_iter().flatten() {
                rows.push(vec![
                    name.clone(),
                    version.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("{} {}", text(&state["state"]), text(&state["error"])),
                ]);
            }
        }
    }
    let library: Vec<String> = plugins["library"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(text)
        .collect();
    format!(
        "{}\n\nlibrary: {}",
        table(
            &["PLUGIN", "VERSION", "WORLD", "BYTES", "DEPLOYED", "STATE"],
            &rows
        ),
        library.join(", ")
    )
}
