//! Model resolution against HF cache layouts built in temp dirs, and against a tiny hub served on
//! loopback. No test reads or sets environment variables: everything goes through ResolveOptions.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vlm_models::hub::{resolve_model, HubError, ModelSource, ResolveOptions};

const REPO: &str = "mlx-community/gemma-4-tiny-it-4bit";
const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

fn base_files() -> Vec<(&'static str, String)> {
    vec![
        ("config.json", r#"{"model_type":"gemma4"}"#.into()),
        ("tokenizer.json", r#"{"model":{}}"#.into()),
        ("tokenizer_config.json", r#"{"bos_token":"<bos>"}"#.into()),
    ]
}

fn sharded_files() -> Vec<(&'static str, String)> {
    let mut f = base_files();
    let index = r#"{"metadata":{},"weight_map":{"a.weight":"model-00001-of-00002.safetensors",
        "b.weight":"model-00002-of-00002.safetensors","c.weight":"model-00001-of-00002.safetensors"}}"#;
    f.push(("model.safetensors.index.json", index.into()));
    f.push(("model-00001-of-00002.safetensors", "shard1".into()));
    f.push(("model-00002-of-00002.safetensors", "shard2".into()));
    f
}

/// Writes one snapshot the way huggingface_hub does: content in blobs/, relative links in
/// snapshots/<commit>/, and `refs/<name>` holding the commit for each ref name given.
fn cache_snapshot(
    cache: &Path,
    repo: &str,
    commit: &str,
    files: &[(&str, String)],
    refs: &[&str],
) -> PathBuf {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snap = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(repo_dir.join("blobs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    for (name, content) in files {
        let etag = format!("{:0>64x}", fxhash(content.as_bytes()));
        std::fs::write(repo_dir.join("blobs").join(&etag), content).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(format!("../../blobs/{etag}"), snap.join(name)).unwrap();
        #[cfg(not(unix))]
        std::fs::write(snap.join(name), content).unwrap();
    }
    for r in refs {
        let p = repo_dir.join("refs").join(r);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, commit).unwrap();
    }
    snap
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

fn opts(cache: &Path, offline: bool) -> ResolveOptions {
    ResolveOptions {
        offline,
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    }
}

/// A port nothing listens on: bound, then released.
fn closed_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn assert_one_line(e: &HubError) -> String {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "not one line: {msg}");
    msg
}

// In a module so that `cargo test -p vlm-models hub` selects all of these by name.
mod hub {
    use super::*;

    #[test]
    fn local_directory_resolves_to_itself() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.json"), "{}").unwrap();
        let m = resolve_model(tmp.path().to_str().unwrap(), &opts(tmp.path(), true)).unwrap();
        assert_eq!(
            (m.dir.as_path(), m.source),
            (tmp.path(), ModelSource::Local)
        );
    }

    #[test]
    fn local_directory_without_config_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().to_str().unwrap();
        let e = resolve_model(spec, &opts(tmp.path(), true)).unwrap_err();
        assert!(
            matches!(&e, HubError::NotACheckpoint { dir, missing } if dir == tmp.path() && missing == &["config.json"]),
            "{e:?}"
        );
        let msg = assert_one_line(&e);
        assert!(msg.contains(spec) && msg.contains("config.json"), "{msg}");
    }

    #[test]
    fn path_like_specs_that_do_not_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("models/gemma/4bit");
        let e = resolve_model(deep.to_str().unwrap(), &opts(tmp.path(), true)).unwrap_err();
        assert!(
            matches!(&e, HubError::NoSuchDirectory { path, existing: Some(ex) } if path == &deep && ex == tmp.path()),
            "{e:?}"
        );
        assert!(assert_one_line(&e).starts_with("no such directory"));
        for spec in ["./no-such-model-dir", "../no/such", "a/b/c"] {
            let e = resolve_model(spec, &opts(tmp.path(), true)).unwrap_err();
            assert!(
                matches!(e, HubError::NoSuchDirectory { .. }),
                "{spec}: {e:?}"
            );
        }
        let file = tmp.path().join("config.json");
        std::fs::write(&file, "{}").unwrap();
        let e = resolve_model(file.to_str().unwrap(), &opts(tmp.path(), true)).unwrap_err();
        assert!(matches!(e, HubError::NotADirectory { .. }), "{e:?}");
        for spec in ["gemma", "", "a/b@", "org--x/name"] {
            let e = resolve_model(spec, &opts(tmp.path(), true)).unwrap_err();
            assert!(matches!(e, HubError::InvalidSpec { .. }), "{spec:?}: {e:?}");
        }
    }

    #[test]
    fn repo_id_found_in_cache_through_refs_main() {
        let cache = tempfile::tempdir().unwrap();
        let mut files = base_files();
        files.push(("model.safetensors", "weights".into()));
        files.push(("chat_template.jinja", "{{ x }}".into()));
        let snap = cache_snapshot(cache.path(), REPO, C1, &files, &["main"]);
        let want = ModelSource::Cache {
            repo: REPO.into(),
            revision: "main".into(),
            commit: C1.into(),
        };
        let m = resolve_model(REPO, &opts(cache.path(), true)).unwrap();
        assert_eq!((&m.dir, &m.source), (&snap, &want));
        assert_eq!(
            std::fs::read_to_string(m.dir.join("model.safetensors")).unwrap(),
            "weights"
        );
        // Online too, a complete snapshot is used without touching the network.
        let online = ResolveOptions {
            endpoint: Some(closed_endpoint()),
            ..opts(cache.path(), false)
        };
        assert_eq!(resolve_model(REPO, &online).unwrap().source, want);
    }

    #[test]
    fn revision_through_a_ref_file_and_as_a_commit_hash() {
        let cache = tempfile::tempdir().unwrap();
        let mut files = base_files();
        files.push(("model.safetensors", "w".into()));
        let s1 = cache_snapshot(cache.path(), REPO, C1, &files, &["main"]);
        let s2 = cache_snapshot(cache.path(), REPO, C2, &files, &["v2", "refs/pr/7"]);
        let o = opts(cache.path(), true);
        assert_eq!(resolve_model(&format!("{REPO}@v2"), &o).unwrap().dir, s2);
        let m = resolve_model(&format!("{REPO}@refs/pr/7"), &o).unwrap();
        assert_eq!(
            m.source,
            ModelSource::Cache {
                repo: REPO.into(),
                revision: "refs/pr/7".into(),
                commit: C2.into()
            }
        );
        // A commit hash needs no ref: huggingface_hub writes none for it.
        let m = resolve_model(&format!("{REPO}@{C1}"), &o).unwrap();
        assert_eq!(
            (m.dir, m.source),
            (
                s1,
                ModelSource::Cache {
                    repo: REPO.into(),
                    revision: C1.into(),
                    commit: C1.into()
                }
            )
        );
        let unknown = "3333333333333333333333333333333333333333";
        let e = resolve_model(&format!("{REPO}@{unknown}"), &o).unwrap_err();
        assert!(
            matches!(&e, HubError::NotCached { cached, .. } if cached.snapshot.is_none()),
            "{e:?}"
        );
    }

    #[test]
    fn sharded_checkpoint_with_a_missing_shard_names_it() {
        let cache = tempfile::tempdir().unwrap();
        let snap = cache_snapshot(cache.path(), REPO, C1, &sharded_files(), &["main"]);
        assert_eq!(
            resolve_model(REPO, &opts(cache.path(), true)).unwrap().dir,
            snap
        );
        std::fs::remove_file(snap.join("model-00002-of-00002.safetensors")).unwrap();
        let e = resolve_model(REPO, &opts(cache.path(), true)).unwrap_err();
        let HubError::NotCached { cached, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(cached.missing, ["model-00002-of-00002.safetensors"]);
        assert_eq!(cached.snapshot.as_ref(), Some(&snap));
        assert!(assert_one_line(&e).contains("model-00002-of-00002.safetensors"));
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_deleted_blob_counts_as_missing() {
        let cache = tempfile::tempdir().unwrap();
        let mut files = base_files();
        files.push(("model.safetensors", "w".into()));
        let snap = cache_snapshot(cache.path(), REPO, C1, &files, &["main"]);
        std::fs::remove_file(std::fs::canonicalize(snap.join("tokenizer.json")).unwrap()).unwrap();
        let e = resolve_model(REPO, &opts(cache.path(), true)).unwrap_err();
        assert!(
            matches!(&e, HubError::NotCached { cached, .. } if cached.missing == ["tokenizer.json"]),
            "{e:?}"
        );
    }

    #[test]
    fn index_with_a_shard_outside_the_snapshot_is_rejected() {
        let cache = tempfile::tempdir().unwrap();
        let mut files = base_files();
        files.push((
            "model.safetensors.index.json",
            r#"{"weight_map":{"a":"../../../etc/passwd"}}"#.into(),
        ));
        cache_snapshot(cache.path(), REPO, C1, &files, &["main"]);
        let e = resolve_model(REPO, &opts(cache.path(), true)).unwrap_err();
        assert!(matches!(e, HubError::BadIndex { .. }), "{e:?}");
    }

    #[test]
    fn offline_with_nothing_cached_is_one_line_saying_what_to_do() {
        let cache = tempfile::tempdir().unwrap();
        let e = resolve_model(REPO, &opts(cache.path(), true)).unwrap_err();
        let HubError::NotCached { repo, cached, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (
                repo.as_str(),
                cached.snapshot.as_ref(),
                cached.missing.len()
            ),
            (REPO, None, 0)
        );
        let msg = assert_one_line(&e);
        let repo_dir = cache
            .path()
            .join("models--mlx-community--gemma-4-tiny-it-4bit");
        for part in [
            REPO,
            repo_dir.to_str().unwrap(),
            "offline",
            "run once with network access",
            "local checkpoint directory",
        ] {
            assert!(msg.contains(part), "{part:?} not in: {msg}");
        }
    }

    #[test]
    fn online_against_a_closed_port_is_a_network_error() {
        let cache = tempfile::tempdir().unwrap();
        let endpoint = closed_endpoint();
        let o = ResolveOptions {
            endpoint: Some(endpoint.clone()),
            ..opts(cache.path(), false)
        };
        let e = resolve_model(&format!("{REPO}@v1"), &o).unwrap_err();
        assert!(
            matches!(&e, HubError::Network { endpoint: ep, .. } if *ep == endpoint),
            "{e:?}"
        );
        let msg = assert_one_line(&e);
        for part in [
            endpoint.as_str(),
            REPO,
            "not in the HF cache",
            "HF_HUB_OFFLINE=1",
            "local checkpoint directory",
        ] {
            assert!(msg.contains(part), "{part:?} not in: {msg}");
        }
        // Partly cached: the error says which files are still missing.
        cache_snapshot(cache.path(), REPO, C1, &sharded_files()[..4], &["main"]);
        let e = resolve_model(REPO, &o).unwrap_err();
        assert!(
            assert_one_line(&e).contains(
                "lacks model-00001-of-00002.safetensors, model-00002-of-00002.safetensors"
            ),
            "{e}"
        );
    }

    /// A hub that knows one repo at commit C2: the listing API and `resolve/` with Range support, as
    /// hf-hub's client uses them. Serves loopback only, and stops after a few seconds or connections.
    struct FakeHub {
        endpoint: String,
        requests: Arc<Mutex<Vec<String>>>,
    }

    fn fake_hub(files: Vec<(&'static str, String)>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, files) = (requests.clone(), Arc::new(files));
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while Instant::now() < deadline && served < 64 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let (log, files) = (log.clone(), files.clone());
                        std::thread::spawn(move || serve(stream, &log, &files));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeHub { endpoint, requests }
    }

    fn serve(stream: TcpStream, log: &Mutex<Vec<String>>, files: &[(&str, String)]) {
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        for _ in 0..64 {
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let path = head[0].split(' ').nth(1).unwrap_or("").to_string();
            let header = |name: &str| {
                head.iter().find_map(|h| {
                    h.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_string())
                })
            };
            log.lock().unwrap().push(format!(
                "{path} auth={}",
                header("authorization").unwrap_or_default()
            ));
            let api = format!("/api/models/{REPO}/revision/main");
            let prefix = format!("/{REPO}/resolve/{C2}/");
            let (status, extra, body): (&str, String, Vec<u8>) = if path == api {
                let siblings: Vec<String> = files
                    .iter()
                    .map(|(n, _)| format!(r#"{{"rfilename":"{n}"}}"#))
                    .collect();
                (
                    "200 OK",
                    String::new(),
                    format!(r#"{{"sha":"{C2}","siblings":[{}]}}"#, siblings.join(",")).into_bytes(),
                )
            } else if let Some((_, content)) = path
                .strip_prefix(&prefix)
                .and_then(|f| files.iter().find(|(n, _)| *n == f))
            {
                let bytes = content.as_bytes();
                let range = header("range").unwrap_or_default();
                let (start, end) = match range
                    .strip_prefix("bytes=")
                    .and_then(|r| r.split_once('-'))
                {
                    Some((s, e)) => (s.parse().unwrap_or(0), e.parse().unwrap_or(bytes.len() - 1)),
                    None => (0, bytes.len() - 1),
                };
                let extra = format!(
                "ETag: \"{:x}\"\r\nX-Repo-Commit: {C2}\r\nContent-Range: bytes {start}-{end}/{}\r\n",
                fxhash(bytes),
                bytes.len()
            );
                ("206 Partial Content", extra, bytes[start..=end].to_vec())
            } else {
                ("404 Not Found", String::new(), Vec::new())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\n\r\n",
                body.len()
            );
            if out
                .write_all(head.as_bytes())
                .and_then(|_| out.write_all(&body))
                .is_err()
            {
                return;
            }
        }
        let _ = reader.read(&mut [0u8; 1]);
    }

    #[test]
    fn online_downloads_missing_files_into_the_cache_layout() {
        let cache = tempfile::tempdir().unwrap();
        let mut files = sharded_files();
        files.push(("generation_config.json", "{}".into()));
        files.push(("README.md", "not a checkpoint file".into()));
        let hub = fake_hub(files);
        let o = ResolveOptions {
            endpoint: Some(hub.endpoint.clone()),
            token: Some("tok".into()),
            ..opts(cache.path(), false)
        };
        // An older, incomplete main: the listing moves main to C2 and everything lands there.
        cache_snapshot(cache.path(), REPO, C1, &base_files(), &["main"]);
        let m = resolve_model(REPO, &o).unwrap();
        let repo_dir = cache
            .path()
            .join("models--mlx-community--gemma-4-tiny-it-4bit");
        assert_eq!(m.dir, repo_dir.join("snapshots").join(C2));
        let ModelSource::Downloaded { commit, files, .. } = &m.source else {
            panic!("{:?}", m.source)
        };
        assert_eq!(commit, C2);
        let mut got = files.clone();
        got.sort();
        assert_eq!(
            got,
            [
                "config.json",
                "generation_config.json",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json",
                "tokenizer.json",
                "tokenizer_config.json",
            ]
        );
        assert_eq!(
            std::fs::read_to_string(m.dir.join("model-00002-of-00002.safetensors")).unwrap(),
            "shard2"
        );
        assert!(!m.dir.join("README.md").exists());
        assert_eq!(
            std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
            C2
        );
        assert!(
            !repo_dir.join("refs").join(C2).exists(),
            "stray ref named after the commit"
        );
        let requests = hub.requests.lock().unwrap().clone();
        assert!(
            requests.iter().all(|r| r.ends_with("auth=Bearer tok")),
            "{requests:?}"
        );
        // Now complete: offline finds it, and a second online run fetches nothing.
        let cached = ModelSource::Cache {
            repo: REPO.into(),
            revision: "main".into(),
            commit: C2.into(),
        };
        assert_eq!(
            resolve_model(REPO, &opts(cache.path(), true))
                .unwrap()
                .source,
            cached
        );
        let before = hub.requests.lock().unwrap().len();
        assert_eq!(resolve_model(REPO, &o).unwrap().source, cached);
        assert_eq!(hub.requests.lock().unwrap().len(), before);
    }

    #[test]
    fn hub_refusal_and_incomplete_repo_are_typed() {
        let cache = tempfile::tempdir().unwrap();
        let hub = fake_hub(vec![
            ("config.json", "{}".into()),
            ("model.safetensors", "w".into()),
        ]);
        let o = ResolveOptions {
            endpoint: Some(hub.endpoint.clone()),
            ..opts(cache.path(), false)
        };
        let e = resolve_model("someone/unknown", &o).unwrap_err();
        assert!(matches!(e, HubError::Http { status: 404, .. }), "{e:?}");
        let e = resolve_model(REPO, &o).unwrap_err();
        assert!(
            matches!(&e, HubError::RepoIncomplete { missing, .. } if missing == &["tokenizer.json", "tokenizer_config.json"]),
            "{e:?}"
        );
    }
}
