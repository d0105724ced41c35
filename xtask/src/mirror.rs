//! Which Debian archive mirror to download packages from.
//!
//! `$QEMU_BLOBS_MIRROR` wins: a URL with `dists/` and `pool/` below it. Otherwise the
//! machine's own APT configuration is read (in Rust, no apt tools needed): the one-line
//! format of `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.list`, and the
//! deb822 format of `/etc/apt/sources.list.d/*.sources`. The first `deb` source whose
//! URI path ends in `/debian` and that is not a security archive is used: the security
//! archive carries only security updates, and other repositories (vendor, Ubuntu, ...)
//! do not have Debian's `qemu-user`.
//!
//! Only plain `http://` mirrors are accepted: xtask is built without TLS, and every
//! download is checked against a sha256 (from the pin manifest, or from the package
//! index when pinning, which the person pinning reviews in the manifest diff).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

/// Environment variable naming the mirror explicitly.
pub const MIRROR_ENV: &str = "QEMU_BLOBS_MIRROR";

const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_PARTS: &str = "/etc/apt/sources.list.d";

/// A Debian archive root: `<base>/dists/...` and `<base>/pool/...` exist below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The archive root URL, without a trailing slash.
    base: String,
    /// Where the URL was found, for messages: the variable or the APT file.
    origin: String,
}

impl Mirror {
    /// The mirror from `$QEMU_BLOBS_MIRROR`, else from the machine's APT sources.
    pub fn from_env() -> Result<Mirror> {
        if let Some(url) = std::env::var_os(MIRROR_ENV).filter(|url| !url.is_empty()) {
            let url = url
                .into_string()
                .map_err(|url| anyhow!("${MIRROR_ENV} is not UTF-8: {url:?}"))?;
            return Mirror::new(&url, format!("${MIRROR_ENV}"));
        }
        let mut sources = Vec::new();
        let list = Path::new(SOURCES_LIST);
        if list.exists() {
            sources.extend(read_sources(list)?);
        }
        if let Ok(dir) = std::fs::read_dir(SOURCES_PARTS) {
            let mut files: Vec<PathBuf> = dir
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| {
                    path.extension()
                        .is_some_and(|ext| ext == "list" || ext == "sources")
                })
                .collect();
            // APT reads the parts in lexical order too.
            files.sort();
            for file in files {
                sources.extend(read_sources(&file)?);
            }
        }
        choose(&sources)
    }

    /// A mirror at `url`, found in `origin` (for messages).
    pub fn new(url: &str, origin: String) -> Result<Mirror> {
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(anyhow!(
                "mirror {url} (from {origin}) is not an http:// URL: xtask speaks plain HTTP \
                 only (every download is checked against a sha256); set ${MIRROR_ENV} to an \
                 http:// Debian mirror"
            ));
        }
        Ok(Mirror {
            base: base.to_string(),
            origin,
        })
    }

    /// The URL of `path` (e.g. `pool/main/...deb`) below the archive root.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// The archive root URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Where the mirror URL came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// One `deb` line or stanza entry: a URI and one suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// The archive URI.
    pub uri: String,
    /// The suite (distribution), e.g. `trixie` or `trixie-security`.
    pub suite: String,
    /// The file it was read from.
    pub file: PathBuf,
}

fn read_sources(path: &Path) -> Result<Vec<AptSource>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read APT sources {}", path.display()))?;
    let is_deb822 = path.extension().is_some_and(|ext| ext == "sources");
    Ok(if is_deb822 {
        parse_deb822(&text, path)
    } else {
        parse_one_line(&text, path)
    })
}

/// Parses the one-line format: `deb [opt=value ...] URI suite [component ...]`.
/// `deb-src` lines, comments and blank lines are skipped.
pub fn parse_one_line(text: &str, file: &Path) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some(rest) = line.strip_prefix("deb") else {
            continue;
        };
        if !rest.starts_with([' ', '\t']) {
            continue; // `deb-src`, or not a source line at all
        }
        let mut rest = rest.trim_start();
        if let Some(options) = rest.strip_prefix('[') {
            // Options may contain spaces: `[ arch=amd64 signed-by=/usr/share/... ]`.
            match options.split_once(']') {
                Some((_, after)) => rest = after.trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            sources.push(AptSource {
                uri: uri.to_string(),
                suite: suite.to_string(),
                file: file.to_path_buf(),
            });
        }
    }
    sources
}

/// Parses the deb822 format: stanzas of `Field: value` lines separated by blank lines,
/// continuation lines start with white space, `#` lines are comments. Stanzas whose
/// `Types` lack `deb` or with `Enabled: no` are skipped.
pub fn parse_deb822(text: &str, file: &Path) -> Vec<AptSource> {
    let mut sources = Vec::new();
    let mut stanza: Vec<(String, String)> = Vec::new();
    let mut finish = |stanza: &mut Vec<(String, String)>| {
        let field = |name: &str| {
            stanza
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let is_deb =
            field("Types").is_some_and(|types| types.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|value| !value.trim().eq_ignore_ascii_case("no"));
        if is_deb && enabled {
            for uri in field("URIs").unwrap_or_default().split_whitespace() {
                for suite in field("Suites").unwrap_or_default().split_whitespace() {
                    sources.push(AptSource {
                        uri: uri.to_string(),
                        suite: suite.to_string(),
                        file: file.to_path_buf(),
                    });
                }
            }
        }
        stanza.clear();
    };
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            finish(&mut stanza);
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    finish(&mut stanza);
    sources
}

/// The path part of a URI, without a trailing slash: `/debian` for `http://host/debian/`.
fn uri_path(uri: &str) -> &str {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .map_or("", |slash| &after_scheme[slash..]);
    path.trim_end_matches('/')
}

fn is_security(source: &AptSource) -> bool {
    source.suite.ends_with("-security") || uri_path(&source.uri).ends_with("-security")
}

/// Picks the mirror from the parsed APT sources (see the module docs for the rules).
pub fn choose(sources: &[AptSource]) -> Result<Mirror> {
    let debian = sources
        .iter()
        .filter(|source| !is_security(source))
        .filter(|source| uri_path(&source.uri).ends_with("/debian"));
    let mut https = None;
    for source in debian {
        let origin = source.file.display().to_string();
        if source.uri.starts_with("http://") {
            return Mirror::new(&source.uri, origin);
        }
        https.get_or_insert(source);
    }
    let seen = if sources.is_empty() {
        "no APT sources were found".to_string()
    } else {
        let uris: Vec<&str> = sources.iter().map(|source| source.uri.as_str()).collect();
        format!("APT sources list {}", uris.join(", "))
    };
    let why = match https {
        Some(source) => format!(
            "the Debian archive {} in {} is not plain http:// (xtask has no TLS)",
            source.uri,
            source.file.display()
        ),
        None => format!("no http:// Debian archive (URI path ending in /debian) found: {seen}"),
    };
    Err(anyhow!(
        "{why}; set ${MIRROR_ENV} to an http:// Debian mirror (the URL that has dists/ and pool/ below it)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> PathBuf {
        PathBuf::from("/etc/apt/test")
    }

    fn source(uri: &str, suite: &str) -> AptSource {
        AptSource {
            uri: uri.to_string(),
            suite: suite.to_string(),
            file: file(),
        }
    }

    #[test]
    fn one_line_format() {
        let text = "\
# comment line
deb http://mirror.example/debian trixie main contrib
deb-src http://mirror.example/debian trixie main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://mirror.example/debian trixie-updates main
deb [ trusted=yes ] http://mirror.example/debian-security trixie-security main # trailing comment
  deb	http://other.example/ubuntu noble universe
debian-is-not-a-type http://mirror.example/debian trixie main
deb http://broken.example/only-a-uri
";
        assert_eq!(
            parse_one_line(text, &file()),
            vec![
                source("http://mirror.example/debian", "trixie"),
                source("http://mirror.example/debian", "trixie-updates"),
                source("http://mirror.example/debian-security", "trixie-security"),
                source("http://other.example/ubuntu", "noble"),
            ]
        );
    }

    #[test]
    fn deb822_format() {
        let text = "\
Types: deb deb-src
# a comment inside the stanza
URIs: http://mirror.example/debian http://second.example/debian/
Suites: trixie
  trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://sources-only.example/debian
Suites: trixie

types: deb
uris: http://mirror.example/debian-security
suites: trixie-security

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: trixie
";
        assert_eq!(
            parse_deb822(text, &file()),
            vec![
                source("http://mirror.example/debian", "trixie"),
                source("http://mirror.example/debian", "trixie-updates"),
                source("http://second.example/debian/", "trixie"),
                source("http://second.example/debian/", "trixie-updates"),
                source("http://mirror.example/debian-security", "trixie-security"),
            ]
        );
    }

    #[test]
    fn chooses_first_debian_archive_skipping_security_and_others() {
        let sources = [
            source("http://vendor.example/apt", "stable"),
            source("http://mirror.example/debian", "trixie-security"),
            source("http://security.example/debian-security", "trixie"),
            source("http://mirror.example/debian/", "trixie"),
            source("http://later.example/debian", "trixie"),
        ];
        let mirror = choose(&sources).unwrap();
        assert_eq!(mirror.base(), "http://mirror.example/debian");
        assert_eq!(mirror.origin(), "/etc/apt/test");
        assert_eq!(
            mirror.url("pool/main/q/qemu/x.deb"),
            "http://mirror.example/debian/pool/main/q/qemu/x.deb"
        );
    }

    #[test]
    fn prefers_http_over_https() {
        let sources = [
            source("https://tls.example/debian", "trixie"),
            source("http://mirror.example/debian", "trixie"),
        ];
        assert_eq!(
            choose(&sources).unwrap().base(),
            "http://mirror.example/debian"
        );
    }

    #[test]
    fn no_mirror_says_to_set_the_variable() {
        let err = choose(&[]).unwrap_err().to_string();
        assert!(err.contains("no APT sources were found"), "{err}");
        assert!(err.contains("set $QEMU_BLOBS_MIRROR"), "{err}");

        let sources = [
            source("http://vendor.example/apt", "stable"),
            source("http://mirror.example/debian-security", "trixie-security"),
        ];
        let err = choose(&sources).unwrap_err().to_string();
        assert!(err.contains("http://vendor.example/apt"), "{err}");
        assert!(err.contains("set $QEMU_BLOBS_MIRROR"), "{err}");

        let err = choose(&[source("https://tls.example/debian", "trixie")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://tls.example/debian"), "{err}");
        assert!(err.contains("not plain http://"), "{err}");
    }

    #[test]
    fn explicit_mirror_must_be_http() {
        let mirror = Mirror::new("http://mirror.example/debian/", "test".to_string()).unwrap();
        assert_eq!(
            mirror.url("/dists/trixie"),
            "http://mirror.example/debian/dists/trixie"
        );
        let err = Mirror::new(
            "https://mirror.example/debian",
            "$QEMU_BLOBS_MIRROR".to_string(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not an http:// URL"), "{err}");
    }

    #[test]
    fn uri_paths() {
        assert_eq!(uri_path("http://mirror.example/debian/"), "/debian");
        assert_eq!(uri_path("http://mirror.example"), "");
        assert_eq!(
            uri_path("http://proxy.example:3142/deb/debian"),
            "/deb/debian"
        );
    }
}
