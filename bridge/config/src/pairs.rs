//! `[[pairs]]`: one relay process serving several bridge pairs (issue 37) — a main chain with
//! several service chains, nested (a service chain's own service chain) or side by side.
//!
//! In such a file each chain is configured once, by name (`[chains.<name>]`: endpoints,
//! confirmations, polling, fees — everything of a chain but a bridge), and each pair names its
//! two chains and carries what belongs to the pair: the two bridges, where indexing starts, its
//! lanes, its service registry, its HTTP API and its store. Every other section is shared.
//!
//! ```toml
//! [chains.kaia]
//! chain_id = 8217
//! rpc_urls = ["http://kaia:8551"]
//! [chains.game]
//! chain_id = 1001
//! rpc_urls = ["http://game:8551"]
//!
//! [[pairs]]
//! name = "game"                      # default "<main>-<service>"
//! main = "kaia"
//! service = "game"
//! bridges = { main = "0x…", service = "0x…" }
//! start_blocks = { main = 100, service = 0 }
//! registry = { address = "0x…" }     # on the pair's main chain
//! listen = "127.0.0.1:9465"          # the pair's HTTP API (default http.listen)
//! store = "relay-game.sqlite"        # default <store.path>-<name>
//! ```
//!
//! Each pair expands into a whole single-pair [`Config`] (`[chains.main]` and
//! `[chains.service]` filled from the named chains and the pair's bridges) and is checked as
//! one, its errors naming the pair. A file without `[[pairs]]` is one pair, exactly as before.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alloy_primitives::Address;
use figment::Figment;
use figment::value::{Dict, Value};
use multibridge_contracts::Lane;
use serde::Deserialize;

use crate::{Config, ConfigError, RegistryConfig};

/// One pair of a relay file, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PairConfig {
    /// Its name (`None`: a single-pair file, which has none).
    pub name: Option<String>,
    /// Its whole configuration, as a single-pair file would give it.
    pub config: Config,
}

/// A value per side of a pair.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sides<T> {
    main: T,
    service: T,
}

/// One `[[pairs]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PairSection {
    #[serde(default)]
    name: Option<String>,
    main: String,
    service: String,
    bridges: Sides<Address>,
    #[serde(default)]
    start_blocks: Option<Sides<u64>>,
    #[serde(default)]
    lanes: Option<Vec<Lane>>,
    #[serde(default)]
    registry: Option<RegistryConfig>,
    #[serde(default)]
    listen: Option<SocketAddr>,
    #[serde(default)]
    store: Option<PathBuf>,
}

impl PairSection {
    fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.main, self.service))
    }
}

fn invalid(path: &Path, field: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        field,
        problem,
    }
}

fn parse(path: &Path, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Whether the document `figment` holds is a file of `[[pairs]]`.
pub(crate) fn is_hub(figment: &Figment) -> bool {
    figment.contains("pairs")
}

/// Expand a file of `[[pairs]]` into one checked [`Config`] per pair.
pub(crate) fn expand(figment: &Figment, path: &Path) -> Result<Vec<PairConfig>, ConfigError> {
    let doc: Dict = figment.extract().map_err(|e| parse(path, e))?;
    let sections: Vec<PairSection> = figment.extract_inner("pairs").map_err(|e| parse(path, e))?;
    if sections.is_empty() {
        return Err(invalid(path, "pairs", "list at least one pair".into()));
    }
    for shared in ["registry", "lanes"] {
        if doc.contains_key(shared) {
            return Err(invalid(
                path,
                "pairs",
                format!(
                    "`{shared}` is per pair in a file with [[pairs]]: move it into each pair that uses it"
                ),
            ));
        }
    }
    let chains: BTreeMap<String, Dict> = figment
        .extract_inner("chains")
        .map_err(|e| parse(path, e))?;
    for (name, chain) in &chains {
        if chain.contains_key("bridge") || chain.contains_key("start_block") {
            return Err(invalid(
                path,
                "chains",
                format!(
                    "chains.{name}: in a file with [[pairs]] a chain has no bridge or start_block of its own: give them per pair (bridges = {{ main = …, service = … }}, start_blocks = …)"
                ),
            ));
        }
    }
    check_pairs(path, &sections, &chains)?;
    let store_path: PathBuf = figment
        .extract_inner("store.path")
        .map_err(|e| parse(path, e))?;
    let mut pairs = Vec::with_capacity(sections.len());
    for section in &sections {
        let name = section.name();
        let mut pair_doc = doc.clone();
        pair_doc.remove("pairs");
        let side = |chain: &str, bridge: Address, start: u64| -> Result<Value, ConfigError> {
            let mut table = chains.get(chain).cloned().unwrap_or_default();
            table.insert("bridge".into(), to_value(path, &bridge)?);
            table.insert("start_block".into(), Value::from(start));
            Ok(Value::from(table))
        };
        let starts = section.start_blocks.unwrap_or(Sides {
            main: 0,
            service: 0,
        });
        let mut pair_chains = Dict::new();
        pair_chains.insert(
            "main".into(),
            side(&section.main, section.bridges.main, starts.main)?,
        );
        pair_chains.insert(
            "service".into(),
            side(&section.service, section.bridges.service, starts.service)?,
        );
        pair_doc.insert("chains".into(), Value::from(pair_chains));
        if let Some(lanes) = &section.lanes {
            pair_doc.insert("lanes".into(), to_value(path, lanes)?);
        }
        if let Some(registry) = &section.registry {
            pair_doc.insert("registry".into(), to_value(path, registry)?);
        }
        let store = section
            .store
            .clone()
            .unwrap_or_else(|| pair_store_path(&store_path, &name));
        set(&mut pair_doc, "store", "path", to_value(path, &store)?);
        if pair_doc.contains_key("etcd") {
            set(&mut pair_doc, "etcd", "elect_by_chain", Value::from(true));
        }
        if let Some(listen) = section.listen {
            set(&mut pair_doc, "http", "listen", to_value(path, &listen)?);
        }
        let config: Config = Figment::from(figment::providers::Serialized::defaults(pair_doc))
            .extract()
            .map_err(|e| parse(path, format!("pair {name}: {e}")))?;
        if let Some((field, problem)) = config.problem() {
            return Err(ConfigError::InPair {
                path: path.to_owned(),
                pair: name,
                field,
                problem,
            });
        }
        pairs.push(PairConfig {
            name: Some(name),
            config,
        });
    }
    check_distinct(path, &pairs)?;
    Ok(pairs)
}

/// The checks across pairs that need only what is written: names, chains, bridges.
fn check_pairs(
    path: &Path,
    sections: &[PairSection],
    chains: &BTreeMap<String, Dict>,
) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    let mut bridges: BTreeMap<(String, Address), String> = BTreeMap::new();
    for section in sections {
        let name = section.name();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                path,
                "pairs.name",
                format!(
                    "pair name {name:?}: use letters, digits, '-' and '_' only (it names the pair in metrics, stores and backups)"
                ),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(invalid(
                path,
                "pairs.name",
                format!("two pairs are named {name:?}: give each its own name"),
            ));
        }
        for chain in [&section.main, &section.service] {
            if !chains.contains_key(chain) {
                return Err(invalid(
                    path,
                    "pairs",
                    format!(
                        "pair {name} names chain {chain:?}, which is not configured: add [chains.{chain}] (configured: {})",
                        chains.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        if section.main == section.service {
            return Err(invalid(
                path,
                "pairs",
                format!(
                    "pair {name} has chain {:?} on both sides: a pair bridges two chains",
                    section.main
                ),
            ));
        }
        for (chain, bridge) in [
            (&section.main, section.bridges.main),
            (&section.service, section.bridges.service),
        ] {
            if let Some(other) = bridges.insert((chain.clone(), bridge), name.clone()) {
                return Err(invalid(
                    path,
                    "pairs.bridges",
                    format!(
                        "pairs {other} and {name} both use bridge {bridge} on chain {chain}: one bridge serves one pair"
                    ),
                ));
            }
        }
    }
    let used: BTreeSet<&String> = sections
        .iter()
        .flat_map(|s| [&s.main, &s.service])
        .collect();
    if let Some(unused) = chains.keys().find(|c| !used.contains(c)) {
        return Err(invalid(
            path,
            "chains",
            format!(
                "chain {unused:?} is used by no pair: remove [chains.{unused}] or add its pair"
            ),
        ));
    }
    Ok(())
}

/// What two pairs of one process may not share: an HTTP address, a store.
fn check_distinct(path: &Path, pairs: &[PairConfig]) -> Result<(), ConfigError> {
    let name = |p: &PairConfig| p.name.clone().unwrap_or_default();
    for (i, a) in pairs.iter().enumerate() {
        for b in pairs.iter().skip(i.saturating_add(1)) {
            if a.config.http.listen == b.config.http.listen {
                return Err(invalid(
                    path,
                    "pairs.listen",
                    format!(
                        "pairs {} and {} both serve their HTTP API on {}: give each pair its own `listen`",
                        name(a),
                        name(b),
                        a.config.http.listen
                    ),
                ));
            }
            if a.config.store.path == b.config.store.path {
                return Err(invalid(
                    path,
                    "pairs.store",
                    format!(
                        "pairs {} and {} both keep their store in {}: give each pair its own `store`",
                        name(a),
                        name(b),
                        a.config.store.path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `relay.sqlite` + `game` → `relay-game.sqlite` (beside it).
pub fn pair_store_path(base: &Path, pair: &str) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "relay".to_owned());
    let file = match base.extension() {
        Some(ext) => format!("{stem}-{pair}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{pair}"),
    };
    base.with_file_name(file)
}

/// One pair to write into a `[[pairs]]` file ([`render_hub`]).
#[derive(Debug, Clone, Copy)]
pub struct NamedPair<'a> {
    /// The pair's name.
    pub name: &'a str,
    /// The name of its main chain (`[chains.<main>]`).
    pub main: &'a str,
    /// The name of its service chain.
    pub service: &'a str,
    /// Its whole configuration, as a single-pair file would give it.
    pub config: &'a Config,
}

/// Why a set of pairs cannot be written as one `[[pairs]]` file.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No pair to write.
    #[error("a [[pairs]] file needs at least one pair")]
    Empty,
    /// One chain name given two different chain settings.
    #[error("chain {0:?} is configured differently by two pairs (a chain is configured once)")]
    ChainDiffers(String),
    /// The shared sections (operator, voting, etcd, …) differ between two pairs.
    #[error(
        "pair {0} differs from the first pair outside its own fields (chains, lanes, registry, listen, store)"
    )]
    SharedDiffers(String),
    /// The TOML writer refused a value.
    #[error("render TOML: {0}")]
    Toml(String),
}

/// Write `pairs` as one `[[pairs]]` file that [`Config::load_pairs`] reads back into the same
/// configs: each chain once under its name, the shared sections once, the rest per pair (the
/// devnet's hub relays, and an operator turning several single-pair files into one).
pub fn render_hub(pairs: &[NamedPair<'_>]) -> Result<String, RenderError> {
    use toml::{Table, Value as Toml};
    let first = pairs.first().ok_or(RenderError::Empty)?;
    let own = ["chains", "lanes", "registry"];
    let shared_of = |config: &Config| -> Result<Table, RenderError> {
        let mut t = toml_table(config)?;
        for key in own {
            t.remove(key);
        }
        for (section, key) in [("http", "listen"), ("store", "path")] {
            if let Some(Toml::Table(s)) = t.get_mut(section) {
                s.remove(key);
            }
        }
        Ok(t)
    };
    let mut doc = toml_table(first.config)?;
    for key in own {
        doc.remove(key);
    }
    let shared = shared_of(first.config)?;
    let mut chains = Table::new();
    let mut entries = Vec::with_capacity(pairs.len());
    for pair in pairs {
        if shared_of(pair.config)? != shared {
            return Err(RenderError::SharedDiffers(pair.name.to_owned()));
        }
        for (name, chain) in [
            (pair.main, &pair.config.chains.main),
            (pair.service, &pair.config.chains.service),
        ] {
            let mut t = toml_table(chain)?;
            t.remove("bridge");
            t.remove("start_block");
            match chains.get(name) {
                Some(Toml::Table(known)) if *known != t => {
                    return Err(RenderError::ChainDiffers(name.to_owned()));
                }
                Some(_) => {}
                None => {
                    chains.insert(name.to_owned(), Toml::Table(t));
                }
            }
        }
        let c = pair.config;
        let sides = |main: Toml, service: Toml| {
            Toml::Table(Table::from_iter([
                ("main".to_owned(), main),
                ("service".to_owned(), service),
            ]))
        };
        let mut entry = Table::new();
        entry.insert("name".into(), Toml::String(pair.name.to_owned()));
        entry.insert("main".into(), Toml::String(pair.main.to_owned()));
        entry.insert("service".into(), Toml::String(pair.service.to_owned()));
        entry.insert(
            "bridges".into(),
            sides(
                toml_value(&c.chains.main.bridge)?,
                toml_value(&c.chains.service.bridge)?,
            ),
        );
        entry.insert(
            "start_blocks".into(),
            sides(
                toml_value(&c.chains.main.start_block)?,
                toml_value(&c.chains.service.start_block)?,
            ),
        );
        entry.insert("lanes".into(), toml_value(&c.lanes)?);
        if let Some(registry) = &c.registry {
            entry.insert("registry".into(), Toml::Table(toml_table(registry)?));
        }
        entry.insert("listen".into(), Toml::String(c.http.listen.to_string()));
        entry.insert("store".into(), toml_value(&c.store.path)?);
        entries.push(Toml::Table(entry));
    }
    doc.insert("chains".into(), Toml::Table(chains));
    doc.insert("pairs".into(), Toml::Array(entries));
    toml::to_string_pretty(&doc).map_err(|e| RenderError::Toml(e.to_string()))
}

fn toml_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<toml::Value, RenderError> {
    toml::Value::try_from(value).map_err(|e| RenderError::Toml(e.to_string()))
}

fn toml_table<T: serde::Serialize + ?Sized>(value: &T) -> Result<toml::Table, RenderError> {
    match toml_value(value)? {
        toml::Value::Table(t) => Ok(t),
        other => Err(RenderError::Toml(format!(
            "expected a table, got {}",
            other.type_str()
        ))),
    }
}

fn to_value(path: &Path, value: &impl serde::Serialize) -> Result<Value, ConfigError> {
    Value::serialize(value).map_err(|e| parse(path, e))
}

/// `doc[section][key] = value`, creating the section.
fn set(doc: &mut Dict, section: &str, key: &str, value: Value) {
    let mut table = doc
        .get(section)
        .and_then(|v| v.as_dict())
        .cloned()
        .unwrap_or_default();
    table.insert(key.into(), value);
    doc.insert(section.into(), Value::from(table));
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"
        [operator]
        address = "0x0000000000000000000000000000000000000007"
        signer = { kind = "dev-key", private_key = "0x00" }
        [chains.root]
        chain_id = 31337
        rpc_urls = ["http://127.0.0.1:1"]
        confirmations = 2
        [chains.game]
        chain_id = 31338
        rpc_urls = ["http://127.0.0.1:2"]
        [chains.guild]
        chain_id = 31339
        rpc_urls = ["http://127.0.0.1:3"]
        [store]
        path = "data/relay.sqlite"
        [http]
        listen = "127.0.0.1:9000"
    "#;

    /// The root with a service chain, and that service chain with its own (nested).
    const PAIRS: &str = r#"
        [[pairs]]
        main = "root"
        service = "game"
        bridges = { main = "0x00000000000000000000000000000000000000a1", service = "0x00000000000000000000000000000000000000b1" }
        start_blocks = { main = 5, service = 6 }
        [[pairs]]
        name = "guild"
        main = "game"
        service = "guild"
        bridges = { main = "0x00000000000000000000000000000000000000a2", service = "0x00000000000000000000000000000000000000b2" }
        listen = "127.0.0.1:9001"
        lanes = ["main-to-service"]
    "#;

    fn load(text: &str) -> Result<Vec<PairConfig>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_pairs(&path)
    }

    fn named(r: Result<Vec<PairConfig>, ConfigError>) -> (String, String) {
        match r {
            Err(ConfigError::Invalid { field, problem, .. }) => (field.to_owned(), problem),
            Err(ConfigError::InPair {
                pair,
                field,
                problem,
                ..
            }) => (format!("{pair}:{field}"), problem),
            other => panic!("expected a named problem, got {other:?}"),
        }
    }

    #[test]
    fn each_pair_expands_into_a_single_pair_config_over_the_named_chains() {
        let pairs = load(&format!("{HEAD}{PAIRS}")).unwrap();
        assert_eq!(pairs.len(), 2);
        let (a, b) = (&pairs[0], &pairs[1]);
        assert_eq!(a.name.as_deref(), Some("root-game"));
        assert_eq!(a.config.chains.main.chain_id, 31337);
        assert_eq!(
            a.config.chains.main.confirmations,
            crate::Confirmations::Depth(2)
        );
        assert_eq!(a.config.chains.main.bridge, Address::with_last_byte(0xa1));
        assert_eq!(a.config.chains.main.start_block, 5);
        assert_eq!(a.config.chains.service.start_block, 6);
        assert_eq!(a.config.lanes, Lane::ALL.to_vec());
        assert_eq!(a.config.http.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(
            a.config.store.path,
            PathBuf::from("data/relay-root-game.sqlite")
        );
        // The nested pair: the first pair's service chain is its main chain.
        assert_eq!(b.name.as_deref(), Some("guild"));
        assert_eq!(b.config.chains.main.chain_id, 31338);
        assert_eq!(b.config.chains.service.chain_id, 31339);
        assert_eq!(
            b.config.chains.service.bridge,
            Address::with_last_byte(0xb2)
        );
        assert_eq!(b.config.lanes, vec![Lane::MainToService]);
        assert_eq!(b.config.http.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            b.config.store.path,
            PathBuf::from("data/relay-guild.sqlite")
        );
        // Every command but `run` needs one pair.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, format!("{HEAD}{PAIRS}")).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("2 pairs (root-game, guild)"), "{err}");
    }

    #[test]
    fn a_single_pair_file_is_one_unnamed_pair() {
        let text = r#"
            [operator]
            address = "0x0000000000000000000000000000000000000007"
            signer = { kind = "dev-key", private_key = "0x00" }
            [chains.main]
            chain_id = 31337
            rpc_urls = ["http://127.0.0.1:1"]
            bridge = "0x0000000000000000000000000000000000000001"
            [chains.service]
            chain_id = 31338
            rpc_urls = ["http://127.0.0.1:2"]
            bridge = "0x0000000000000000000000000000000000000002"
            [store]
            path = "relay.sqlite"
            [http]
            listen = "127.0.0.1:0"
        "#;
        let pairs = load(text).unwrap();
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].name, None);
        assert_eq!(pairs[0].config.store.path, PathBuf::from("relay.sqlite"));
    }

    #[test]
    fn a_pair_whose_chain_is_missing_is_named() {
        let text = format!("{HEAD}{PAIRS}").replace("service = \"guild\"", "service = \"guilds\"");
        let (field, problem) = named(load(&text));
        assert_eq!(field, "pairs");
        assert!(
            problem.contains("pair guild names chain \"guilds\""),
            "{problem}"
        );
        assert!(problem.contains("[chains.guilds]"), "{problem}");
    }

    #[test]
    fn a_chain_used_by_no_pair_is_named() {
        let text = format!(
            "{HEAD}{PAIRS}\n[chains.spare]\nchain_id = 31340\nrpc_urls = [\"http://127.0.0.1:4\"]\n"
        );
        let (field, problem) = named(load(&text));
        assert_eq!(field, "chains");
        assert!(
            problem.contains("\"spare\" is used by no pair"),
            "{problem}"
        );
    }

    #[test]
    fn two_pairs_with_one_bridge_are_refused() {
        // The nested pair's main bridge (on game) is the first pair's service bridge.
        let text = format!("{HEAD}{PAIRS}").replace(
            "main = \"0x00000000000000000000000000000000000000a2\"",
            "main = \"0x00000000000000000000000000000000000000b1\"",
        );
        let (field, problem) = named(load(&text));
        assert_eq!(field, "pairs.bridges");
        assert!(problem.contains("pairs root-game and guild"), "{problem}");
    }

    #[test]
    fn pairs_may_not_share_an_http_address_or_a_store() {
        let text = format!("{HEAD}{PAIRS}").replace("listen = \"127.0.0.1:9001\"", "");
        let (field, problem) = named(load(&text));
        assert_eq!(field, "pairs.listen");
        assert!(problem.contains("127.0.0.1:9000"), "{problem}");
    }

    #[test]
    fn a_problem_inside_a_pair_names_the_pair() {
        // Confirmations 0 are for devnet chains only: give the game chain a real id.
        let text = format!("{HEAD}{PAIRS}")
            .replace("chain_id = 31338", "chain_id = 1001\nconfirmations = 0");
        let (field, problem) = named(load(&text));
        assert_eq!(field, "root-game:chains.service.confirmations");
        assert!(problem.contains("devnet"), "{problem}");
    }

    #[test]
    fn a_chain_with_a_bridge_of_its_own_or_a_shared_registry_is_refused() {
        let text = format!("{HEAD}{PAIRS}").replace(
            "chain_id = 31339",
            "chain_id = 31339\nbridge = \"0x0000000000000000000000000000000000000002\"",
        );
        let (field, problem) = named(load(&text));
        assert_eq!(field, "chains");
        assert!(problem.contains("chains.guild"), "{problem}");
        let text = format!(
            "{HEAD}[registry]\naddress = \"0x0000000000000000000000000000000000000003\"\n{PAIRS}"
        );
        let (field, problem) = named(load(&text));
        assert_eq!(field, "pairs");
        assert!(problem.contains("registry"), "{problem}");
    }

    #[test]
    fn pairs_under_etcd_elect_by_chain_and_a_single_pair_does_not() {
        let etcd = "[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n";
        let pairs = load(&format!("{HEAD}{etcd}{PAIRS}")).unwrap();
        assert!(
            pairs
                .iter()
                .all(|p| p.config.etcd.as_ref().unwrap().elect_by_chain)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.toml");
        let mut single = pairs[0].config.clone();
        single.etcd.as_mut().unwrap().elect_by_chain = false;
        std::fs::write(&path, single.to_toml().unwrap()).unwrap();
        let loaded = Config::load(&path).unwrap();
        assert!(!loaded.etcd.unwrap().elect_by_chain);
    }

    #[test]
    fn store_paths_get_the_pair_name_beside_the_base() {
        assert_eq!(
            pair_store_path(Path::new("/var/lib/mb/relay.sqlite"), "game"),
            PathBuf::from("/var/lib/mb/relay-game.sqlite")
        );
        assert_eq!(
            pair_store_path(Path::new("store"), "game"),
            PathBuf::from("store-game")
        );
    }

    #[test]
    fn a_rendered_hub_file_reads_back_into_the_same_pairs() {
        let pairs = load(&format!("{HEAD}{PAIRS}")).unwrap();
        let named: Vec<NamedPair<'_>> = pairs
            .iter()
            .zip([("root", "game"), ("game", "guild")])
            .map(|(p, (main, service))| NamedPair {
                name: p.name.as_deref().unwrap(),
                main,
                service,
                config: &p.config,
            })
            .collect();
        let text = render_hub(&named).unwrap();
        assert_eq!(load(&text).unwrap(), pairs, "{text}");
        // One chain, two settings: refused rather than one silently winning.
        let mut other = pairs[1].config.clone();
        other.chains.main.confirmations = crate::Confirmations::Depth(9);
        let clash = [
            named[0],
            NamedPair {
                config: &other,
                ..named[1]
            },
        ];
        assert!(matches!(
            render_hub(&clash),
            Err(RenderError::ChainDiffers(c)) if c == "game"
        ));
    }
}
