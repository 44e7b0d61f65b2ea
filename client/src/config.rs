//! How a client reaches a cluster: [`ClientConfig`], made by its builder or read from a TOML
//! file, and validated either way before a client uses it.
//!
//! The file's keys (only `endpoints`, `tls_dir`, `cluster_id` and `name` are required):
//!
//! ```toml
//! # Nodes to start from: host:port or id@host:port; one is enough, the client learns the
//! # others from the cluster. The first one tried is chosen at random.
//! endpoints = ["db1.example:7000", "db2.example:7000"]
//! # ca.pem, client-<name>.pem and client-<name>.key; relative to this file's directory.
//! tls_dir = "certs"
//! # The cluster's id, as the certificates name it.
//! cluster_id = "flotilla"
//! # This client's certificate name (client-<name>.pem).
//! name = "app"
//! # How long one attempt waits for an answer (default 1000).
//! attempt_timeout_ms = 1000
//! # How long a request may take in all, retries included (default 10000).
//! deadline_ms = 10000
//! # Pause before retrying a node that is busy or has no leader yet (default 20).
//! retry_pause_ms = 20
//! # A node that could not be dialed is not dialed again for this long (default 500).
//! redial_pause_ms = 500
//! ```

use crate::endpoint::{Endpoint, EndpointError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default `attempt_timeout`.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default `deadline`.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// The default `retry_pause`.
pub const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// The default `redial_pause`.
pub const REDIAL_PAUSE: Duration = Duration::from_millis(500);
/// The longest `redial_pause`.
pub const REDIAL_PAUSE_MAX: Duration = Duration::from_secs(3600);

/// How a client reaches a cluster. Build one with [`ClientConfig::builder`] or read one with
/// [`ClientConfig::from_file`]; [`Client::connect`](crate::Client::connect) validates it again.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Nodes to start from (one is enough: the cluster names the others).
    pub endpoints: Vec<Endpoint>,
    /// `ca.pem`, `client-<name>.pem` and `client-<name>.key`.
    pub tls_dir: PathBuf,
    /// The cluster's id.
    pub cluster_id: String,
    /// This client's certificate name.
    pub name: String,
    /// How long one attempt waits for an answer.
    pub attempt_timeout: Duration,
    /// How long a request may take in all, retries included.
    pub deadline: Duration,
    /// Pause before retrying a node that is busy or has no leader yet.
    pub retry_pause: Duration,
    /// A node that could not be dialed is not dialed again for this long.
    pub redial_pause: Duration,
}

/// Why a client configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An endpoint does not parse.
    #[error("the client configuration has a bad endpoint: {0}")]
    Endpoint(#[from] EndpointError),
    /// A required setting is missing.
    #[error("the client configuration needs `{0}`")]
    Missing(&'static str),
    /// The settings break a rule (the rule, as a sentence).
    #[error("the client configuration breaks a rule: {0}")]
    Rule(&'static str),
    /// The file could not be read.
    #[error("the client configuration {path} could not be read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a client configuration.
    #[error("the client configuration {path} is not valid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        source: Box<toml::de::Error>,
    },
}

impl ClientConfig {
    /// A configuration with the default timings.
    #[must_use]
    pub fn new(
        endpoints: impl IntoIterator<Item = impl Into<Endpoint>>,
        tls_dir: PathBuf,
        cluster_id: &str,
        name: &str,
    ) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls_dir,
            cluster_id: cluster_id.into(),
            name: name.into(),
            attempt_timeout: ATTEMPT_TIMEOUT,
            deadline: DEADLINE,
            retry_pause: RETRY_PAUSE,
            redial_pause: REDIAL_PAUSE,
        }
    }

    /// A builder, with the default timings.
    pub fn builder() -> ClientConfigBuilder {
        ClientConfigBuilder::default()
    }

    /// Reads a TOML file (the keys are in the [module documentation](self)); a relative
    /// `tls_dir` is taken from the file's directory.
    ///
    /// # Errors
    /// The file cannot be read, does not parse, or breaks a rule.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file: FileConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        file.into_builder(base).build()
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rule = |holds: bool, rule| {
            if holds {
                Ok(())
            } else {
                Err(ConfigError::Rule(rule))
            }
        };
        rule(
            !self.endpoints.is_empty(),
            "at least one endpoint is needed",
        )?;
        rule(
            flotilla_transport_quic::ClusterId::new(&self.cluster_id).is_some(),
            "cluster_id must be lowercase DNS labels (letters, digits, inner dashes)",
        )?;
        rule(
            flotilla_transport_quic::identity::is_label(&self.name),
            "name must be a lowercase DNS label (letters, digits, inner dashes)",
        )?;
        rule(
            !self.attempt_timeout.is_zero() && self.attempt_timeout <= self.deadline,
            "attempt_timeout must be positive and at most the deadline",
        )?;
        rule(
            !self.retry_pause.is_zero() && self.retry_pause <= self.deadline,
            "retry_pause must be positive and at most the deadline",
        )?;
        rule(
            self.redial_pause <= REDIAL_PAUSE_MAX,
            "redial_pause must be at most an hour",
        )
    }
}

/// Builds a [`ClientConfig`]; [`build`](Self::build) checks it.
///
/// ```no_run
/// # fn main() -> Result<(), flotilla_client::ConfigError> {
/// let config = flotilla_client::ClientConfig::builder()
///     .endpoint("db1.example:7000")
///     .endpoint("db2.example:7000")
///     .tls_dir("certs")
///     .cluster_id("flotilla")
///     .name("app")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ClientConfigBuilder {
    endpoints: Vec<String>,
    tls_dir: Option<PathBuf>,
    cluster_id: Option<String>,
    name: Option<String>,
    attempt_timeout: Option<Duration>,
    deadline: Option<Duration>,
    retry_pause: Option<Duration>,
    redial_pause: Option<Duration>,
}

impl ClientConfigBuilder {
    /// Adds a node to start from: `host:port` or `id@host:port` (checked by `build`).
    pub fn endpoint(mut self, endpoint: &str) -> Self {
        self.endpoints.push(endpoint.to_owned());
        self
    }

    /// Adds nodes to start from.
    pub fn endpoints<S: AsRef<str>>(mut self, endpoints: impl IntoIterator<Item = S>) -> Self {
        let endpoints = endpoints.into_iter().map(|text| text.as_ref().to_owned());
        self.endpoints.extend(endpoints);
        self
    }

    /// The directory with `ca.pem`, `client-<name>.pem` and `client-<name>.key`.
    pub fn tls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tls_dir = Some(dir.into());
        self
    }

    /// The cluster's id.
    pub fn cluster_id(mut self, cluster_id: &str) -> Self {
        self.cluster_id = Some(cluster_id.to_owned());
        self
    }

    /// This client's certificate name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// How long one attempt waits for an answer.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// How long a request may take in all, retries included.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Pause before retrying a node that is busy or has no leader yet.
    pub fn retry_pause(mut self, pause: Duration) -> Self {
        self.retry_pause = Some(pause);
        self
    }

    /// How long a node that could not be dialed is not dialed again.
    pub fn redial_pause(mut self, pause: Duration) -> Self {
        self.redial_pause = Some(pause);
        self
    }

    /// The configuration, checked.
    ///
    /// # Errors
    /// A bad endpoint, a missing setting, or a broken rule.
    pub fn build(self) -> Result<ClientConfig, ConfigError> {
        let endpoints = self
            .endpoints
            .iter()
            .map(|text| text.parse::<Endpoint>())
            .collect::<Result<Vec<_>, _>>()?;
        let mut config = ClientConfig::new(
            endpoints,
            self.tls_dir.ok_or(ConfigError::Missing("tls_dir"))?,
            &self.cluster_id.ok_or(ConfigError::Missing("cluster_id"))?,
            &self.name.ok_or(ConfigError::Missing("name"))?,
        );
        config.attempt_timeout = self.attempt_timeout.unwrap_or(config.attempt_timeout);
        config.deadline = self.deadline.unwrap_or(config.deadline);
        config.retry_pause = self.retry_pause.unwrap_or(config.retry_pause);
        config.redial_pause = self.redial_pause.unwrap_or(config.redial_pause);
        config.validate()?;
        Ok(config)
    }
}

/// The file's keys, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    endpoints: Vec<String>,
    tls_dir: Option<PathBuf>,
    cluster_id: Option<String>,
    name: Option<String>,
    attempt_timeout_ms: Option<u64>,
    deadline_ms: Option<u64>,
    retry_pause_ms: Option<u64>,
    redial_pause_ms: Option<u64>,
}

impl FileConfig {
    fn into_builder(self, base: &Path) -> ClientConfigBuilder {
        let millis = |ms: Option<u64>| ms.map(Duration::from_millis);
        ClientConfigBuilder {
            endpoints: self.endpoints,
            tls_dir: self.tls_dir.map(|dir| base.join(dir)),
            cluster_id: self.cluster_id,
            name: self.name,
            attempt_timeout: millis(self.attempt_timeout_ms),
            deadline: millis(self.deadline_ms),
            retry_pause: millis(self.retry_pause_ms),
            redial_pause: millis(self.redial_pause_ms),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn builder() -> ClientConfigBuilder {
        ClientConfig::builder()
            .endpoint("db1.example:7000")
            .tls_dir("certs")
            .cluster_id("flotilla")
            .name("app")
    }

    #[test]
    fn a_builder_with_the_required_settings_gets_the_default_timings() {
        let config = builder().build().unwrap();
        assert_eq!(config.endpoints, [Endpoint::new("db1.example", 7000)]);
        assert_eq!(config.deadline, DEADLINE);
        assert_eq!(config.retry_pause, RETRY_PAUSE);
    }

    #[test]
    fn a_builder_refuses_bad_endpoints_missing_settings_and_broken_rules() {
        let error = |builder: ClientConfigBuilder| builder.build().unwrap_err().to_string();
        assert!(error(builder().endpoint("db2")).contains("`db2` has no port"));
        let no_name = ClientConfig::builder()
            .endpoint("a:1")
            .tls_dir("d")
            .cluster_id("c");
        assert!(error(no_name).contains("needs `name`"));
        assert!(error(builder().name("App")).contains("name must be"));
        assert!(error(builder().cluster_id("")).contains("cluster_id must be"));
        let long = builder().attempt_timeout(Duration::from_secs(20));
        assert!(error(long).contains("attempt_timeout must be positive and at most the deadline"));
        let none = ClientConfig::builder()
            .tls_dir("d")
            .cluster_id("c")
            .name("n");
        assert!(error(none).contains("at least one endpoint"));
    }

    #[test]
    fn a_file_sets_every_key_and_takes_tls_dir_from_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        let text = r#"
            endpoints = ["db1.example:7000", "2@10.0.0.2:7000"]
            tls_dir = "certs"
            cluster_id = "prod"
            name = "app"
            attempt_timeout_ms = 500
            deadline_ms = 3000
            retry_pause_ms = 10
            redial_pause_ms = 100
        "#;
        std::fs::write(&path, text).unwrap();
        let config = ClientConfig::from_file(&path).unwrap();
        assert_eq!(config.endpoints.len(), 2);
        assert_eq!(config.tls_dir, dir.path().join("certs"));
        assert_eq!(
            (config.cluster_id.as_str(), config.name.as_str()),
            ("prod", "app")
        );
        assert_eq!(config.attempt_timeout, Duration::from_millis(500));
        assert_eq!(config.deadline, Duration::from_secs(3));
        assert_eq!(config.retry_pause, Duration::from_millis(10));
        assert_eq!(config.redial_pause, Duration::from_millis(100));
    }

    #[test]
    fn a_file_with_an_unknown_key_or_a_missing_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "endpoints = [\"a:1\"]\nendpoint = \"b:2\"\n").unwrap();
        let error = ClientConfig::from_file(&path).unwrap_err().to_string();
        assert!(
            error.contains("is not valid") && error.contains("endpoint"),
            "{error}"
        );
        std::fs::write(
            &path,
            "endpoints = [\"a:1\"]\ntls_dir = \"d\"\nname = \"n\"\n",
        )
        .unwrap();
        let error = ClientConfig::from_file(&path).unwrap_err().to_string();
        assert!(error.contains("needs `cluster_id`"), "{error}");
        let missing = ClientConfig::from_file(&dir.path().join("nope.toml")).unwrap_err();
        assert!(
            missing.to_string().contains("could not be read"),
            "{missing}"
        );
    }
}
