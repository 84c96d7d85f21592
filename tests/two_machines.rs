//! The two parties as two processes of the `splitlm` binary over loopback gRPC with mutual TLS:
//! the same run as in one process (Head–Tail and Head–Body–Tail), a server killed mid-run and
//! restarted, a client killed mid-run, and a client without certificates. Servers listen on
//! 127.0.0.1 only; every wait is bounded and every child process is killed on drop.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_splitlm");
const HBT: &str = r#"partition = { kind = "head_body_tail", n_head = 2, n_tail = 2 }"#;
const HT: &str = r#"partition = { kind = "head_tail", n_head = 2 }"#;

/// `configs/sentiment.toml` (the main job) cut by `partition`, shrunk to a few steps.
fn config(dir: &Path, partition: &str) -> PathBuf {
    let main_job = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sentiment.toml"),
    )
    .unwrap();
    let text = main_job
        .lines()
        .map(|l| {
            if l.starts_with("partition =") {
                partition
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join(format!("run-{}.toml", partition.len()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Overrides shrinking the main job: `steps` steps of 16 examples of 32 tokens.
fn small(steps: usize, records: &Path, checkpoints: &Path) -> Vec<String> {
    [
        format!("task.train_examples={}", steps * 16),
        "task.eval_examples=16".into(),
        "task.max_len=32".into(),
        "train.checkpoint_every=1".into(),
        format!("train.checkpoint_dir={}", checkpoints.display()),
        format!("output.records={}", records.display()),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

/// A `splitlm serve` process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(config: &Path, port: u16, state: &Path, keys: &Path, extra: &[String]) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--state")
            .arg(state)
            .arg("--tls")
            .arg(keys)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the server listens within 2 minutes");
        Server {
            child,
            url: format!("https://{addr}"),
        }
    }

    fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keys(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    let out = Command::new(BIN)
        .args(["keys", "--out"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    keys
}

fn train_command(config: &Path, args: &[String]) -> Command {
    let mut command = Command::new(BIN);
    command.arg("train").arg(config).arg("--quiet").args(args);
    command
}

/// Runs to the end within `limit`, or fails.
fn finish(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last record of a records file.
fn last_record(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// Every tensor of a safetensors file, by name (the metadata holds run-specific ids).
fn tensors(file: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

/// The newest checkpoint directory under `root` (as `latest` names it).
fn latest(root: &Path) -> PathBuf {
    let name = std::fs::read_to_string(root.join("latest")).unwrap();
    root.join(name.trim())
}

/// The directories of the model-party states a server saved, for every session.
fn server_states(state: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(identities) = std::fs::read_dir(state) else {
        return found;
    };
    for identity in identities.flatten().filter(|e| e.path().is_dir()) {
        for session in std::fs::read_dir(identity.path()).unwrap().flatten() {
            for tag in std::fs::read_dir(session.path()).unwrap().flatten() {
                let name = tag.file_name().to_string_lossy().into_owned();
                if tag.path().is_dir() && !name.ends_with(".partial") {
                    found.push(tag.path());
                }
            }
        }
    }
    found
}

/// The remote run's final parameters equal the in-process run's, tensor by tensor: the data
/// party's from its checkpoints, the model party's from the server's state.
fn same_parameters(local: &Path, remote: &Path, state: &Path) {
    let (local, remote) = (latest(local), latest(remote));
    for part in ["data-head", "data-tail"] {
        let file = format!("{part}.safetensors");
        if local.join(&file).exists() {
            assert_eq!(
                tensors(&local.join(&file)),
                tensors(&remote.join(&file)),
                "{part}"
            );
        }
    }
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(remote.join("model-party.remote.json")).unwrap())
            .unwrap();
    let tag = saved["tag"].as_str().unwrap();
    let on_server = server_states(state)
        .into_iter()
        .find(|p| p.file_name().unwrap() == tag)
        .expect("the server holds the state the checkpoint names");
    assert_eq!(
        tensors(&local.join("model-party.safetensors")),
        tensors(&on_server.join("model-party.safetensors")),
        "the model party's parameters"
    );
}

fn same_training(local: &serde_json::Value, remote: &serde_json::Value) {
    for field in ["steps", "epoch_losses", "after"] {
        assert_eq!(local[field], remote[field], "{field}");
    }
}

#[test]
fn training_over_grpc_with_mutual_tls_equals_training_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    for (name, partition) in [("hbt", HBT), ("ht", HT)] {
        let run = dir.path().join(name);
        let config = config(dir.path(), partition);
        let local_args = small(3, &run.join("local.jsonl"), &run.join("local-ckpt"));
        succeeded(&finish(
            train_command(&config, &local_args),
            Duration::from_secs(300),
        ));

        let state = run.join("state");
        let server = Server::start(&config, 0, &state, &keys, &[]);
        let mut remote_args = small(3, &run.join("remote.jsonl"), &run.join("remote-ckpt"));
        remote_args.extend(["--connect".into(), server.url.clone(), "--tls".into()]);
        remote_args.push(keys.display().to_string());
        succeeded(&finish(
            train_command(&config, &remote_args),
            Duration::from_secs(300),
        ));
        let (local, remote) = (
            last_record(&run.join("local.jsonl")),
            last_record(&run.join("remote.jsonl")),
        );
        same_training(&local, &remote);
        assert_eq!(remote["model_party"], server.url.as_str());
        same_parameters(&run.join("local-ckpt"), &run.join("remote-ckpt"), &state);
        let sessions = std::fs::read_to_string(state.join("sessions.jsonl")).unwrap();
        assert!(
            sessions.contains("\"identity\":\"CN=splitlm data party\""),
            "{sessions}"
        );
    }
}

#[test]
fn a_server_killed_mid_run_and_restarted_leaves_the_run_as_if_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let config = config(dir.path(), HBT);
    let steps = 6;
    let local_args = small(
        steps,
        &dir.path().join("local.jsonl"),
        &dir.path().join("lc"),
    );
    succeeded(&finish(
        train_command(&config, &local_args),
        Duration::from_secs(300),
    ));

    let state = dir.path().join("state");
    let server = Server::start(&config, 0, &state, &keys, &[]);
    let port = server.port();
    let mut args = small(
        steps,
        &dir.path().join("remote.jsonl"),
        &dir.path().join("rc"),
    );
    args.extend(["--connect".into(), server.url.clone(), "--tls".into()]);
    args.push(keys.display().to_string());
    let mut client = train_command(&config, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two model-party checkpoints on disk: the data party has finished the first of its own.
    let started = Instant::now();
    while server_states(&state).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoints"
        );
        assert!(
            client.try_wait().unwrap().is_none(),
            "the client ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    std::thread::sleep(Duration::from_millis(500));
    let _restarted = Server::start(&config, port, &state, &keys, &[]);
    let started = Instant::now();
    while client.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the client hangs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = client.wait_with_output().unwrap();
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reconnecting"), "{stderr}");
    same_training(
        &last_record(&dir.path().join("local.jsonl")),
        &last_record(&dir.path().join("remote.jsonl")),
    );
    same_parameters(&dir.path().join("lc"), &dir.path().join("rc"), &state);
}

#[test]
fn a_client_killed_mid_run_frees_its_session_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let config = config(dir.path(), HBT);
    let state = dir.path().join("state");
    let server = Server::start(&config, 0, &state, &keys, &[]);
    let mut args = small(6, &dir.path().join("r.jsonl"), &dir.path().join("ckpt"));
    args.extend(["--connect".into(), server.url.clone(), "--tls".into()]);
    args.push(keys.display().to_string());
    args.extend(["--set".into(), "network.session=kept-name".into()]);
    let mut client = train_command(&config, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while server_states(&state).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    client.kill().unwrap();
    client.wait().unwrap();
    let records = state.join("sessions.jsonl");
    let started = Instant::now();
    while !std::fs::read_to_string(&records).is_ok_and(|r| r.contains("\"failed\"")) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not end the killed client's session"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same session name is free again.
    let mut args = small(2, &dir.path().join("r2.jsonl"), &dir.path().join("ckpt2"));
    args.extend(["--connect".into(), server.url.clone(), "--tls".into()]);
    args.push(keys.display().to_string());
    args.extend(["--set".into(), "network.session=kept-name".into()]);
    succeeded(&finish(
        train_command(&config, &args),
        Duration::from_secs(300),
    ));
}

#[test]
fn a_client_without_certificates_is_refused_with_a_message_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let config = config(dir.path(), HBT);
    let state = dir.path().join("state");
    let server = Server::start(&config, 0, &state, &keys, &[]);
    let args = vec!["--connect".to_string(), server.url.clone()];
    let out = finish(train_command(&config, &args), Duration::from_secs(120));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
    // Plaintext to a TLS server is refused too.
    let plain = server.url.replace("https://", "http://");
    let args = vec!["--connect".to_string(), plain, "--insecure".into()];
    let out = finish(train_command(&config, &args), Duration::from_secs(120));
    assert!(!out.status.success());
    assert!(
        !state.join("sessions.jsonl").exists(),
        "a refused client got a session"
    );
}
