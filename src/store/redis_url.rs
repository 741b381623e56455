//! Where Redis is, named by a URL: one server or a cluster. The stores, the keyspace watcher and
//! an app's Socket.IO adapter read the same URL, so that they all reach the same Redis.

use fred::error::{Error, ErrorKind};
use fred::prelude::Config;

/// The schemes fred reads (TLS ones need one of its TLS features).
const SCHEMES: [&str; 14] = [
    "redis",
    "rediss",
    "valkey",
    "valkeys",
    "redis-cluster",
    "rediss-cluster",
    "valkey-cluster",
    "valkeys-cluster",
    "redis-sentinel",
    "rediss-sentinel",
    "valkey-sentinel",
    "valkeys-sentinel",
    "redis+unix",
    "valkey+unix",
];

/// Reads a Redis URL into fred's [`Config`].
///
/// - `redis://HOST:PORT[/DB]` (or `rediss://` with one of fred's TLS features): one server;
/// - `redis-cluster://HOST:PORT[,HOST:PORT...]`: a Redis Cluster, given by one or more of its
///   nodes (the rest are discovered from them); fred's own form,
///   `redis-cluster://HOST:PORT?node=HOST:PORT&node=...`, is read too;
/// - every other scheme fred knows (`redis-sentinel://`, `redis+unix://`), as fred reads it.
///
/// ```
/// let config = socketio_sessions::store::redis_config(
///     "redis-cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000",
/// )?;
/// assert!(config.server.is_clustered());
/// # Ok::<(), socketio_sessions::store::fred::error::Error>(())
/// ```
pub fn redis_config(url: &str) -> Result<Config, Error> {
    Config::from_url(&with_node_parameters(url)?)
}

/// A cluster URL's comma-separated nodes as fred's `node` query parameters: the first stays the
/// URL's host (with any credentials), every other becomes `node=HOST:PORT`.
fn with_node_parameters(url: &str) -> Result<String, Error> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(Error::new(
            ErrorKind::Config,
            "a Redis URL starts with a scheme, e.g. `redis://HOST:PORT` or `redis-cluster://HOST:PORT,HOST:PORT`",
        ));
    };
    if !SCHEMES.contains(&scheme) {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "`{scheme}://` is not a Redis URL scheme; use one of {}",
                SCHEMES.join(", ")
            ),
        ));
    }
    let authority_ends = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_ends);
    // Credentials come before the host: a comma there is part of a password, not a node list.
    let (credentials, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    if !scheme.ends_with("-cluster") || !hosts.contains(',') {
        return Ok(url.to_owned());
    }
    let mut nodes = hosts.split(',').map(str::trim);
    let first = nodes.next().unwrap_or_default();
    let mut parameters = Vec::new();
    for node in nodes {
        if node.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "an empty node in the cluster URL's list (`HOST:PORT,HOST:PORT`)",
            ));
        }
        parameters.push(format!("node={node}"));
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) if !query.is_empty() => (path, format!("{query}&")),
        Some((path, _)) => (path, String::new()),
        None => (tail, String::new()),
    };
    Ok(format!(
        "{scheme}://{credentials}{first}{path}?{query}{}",
        parameters.join("&")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_list_becomes_node_parameters() {
        let url = "redis-cluster://a:7000,b:7001,c:7002";
        assert_eq!(
            with_node_parameters(url).unwrap(),
            "redis-cluster://a:7000?node=b:7001&node=c:7002"
        );
        let config = redis_config(url).unwrap();
        assert!(config.server.is_clustered());
        assert_eq!(config.server.hosts().len(), 3);
    }

    #[test]
    fn credentials_paths_and_queries_are_kept() {
        assert_eq!(
            with_node_parameters("redis-cluster://u:p,w@a:1,b:2/0?x=1").unwrap(),
            "redis-cluster://u:p,w@a:1/0?x=1&node=b:2"
        );
        let one = "redis-cluster://a:7000?node=b:7001";
        assert_eq!(with_node_parameters(one).unwrap(), one);
        assert_eq!(
            with_node_parameters("redis://127.0.0.1:6379/2").unwrap(),
            "redis://127.0.0.1:6379/2"
        );
        assert!(
            !redis_config("redis://127.0.0.1:6379")
                .unwrap()
                .server
                .is_clustered()
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(redis_config("127.0.0.1:6379").is_err());
        assert!(redis_config("redis-cluster://a:1,,b:2").is_err());
        assert!(redis_config("nope://a:1").is_err());
    }
}
