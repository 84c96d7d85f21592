//! The gRPC transport over loopback (127.0.0.1 only, servers on free ports, every wait
//! bounded): sessions train exactly as in one process, stay apart from each other, and a
//! server refuses bad certificates and bad input without harm to its other sessions.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use burn::tensor::{Device, Int, Tensor, TensorData};
use splitlm_device::DeviceSpec;
use splitlm_net::keys::{Authority, KeyOptions};
use splitlm_net::{Connector, NetworkConfig, ServeOptions, SessionFactory};
use splitlm_nn::generate::Sampling;
use splitlm_nn::testing::fixtures_dir;
use splitlm_nn::{Labels, TaskHead, TokenBatch};
use splitlm_partition::{Partition, Trainability};
use splitlm_party::{
    DataParty, Handshake, ModelParty, OptimizerConfig, PartyError, PartyOptions, PartySlice,
};
use splitlm_protocol::{
    Limits, Message, PROTOCOL_VERSION, Role, StreamTransport, TensorFrame, Transport, WireDType,
    encode, in_process_pair,
};
use splitlm_zoo::{AnyModel, Pretrained};

const STEPS: usize = 3;
const SEED: u64 = 11;

fn cpu() -> Device {
    DeviceSpec::Cpu.device().unwrap().autodiff()
}

/// A tiny model from `fixtures/models`, cut by `partition`, for `task`.
#[derive(Clone, Copy)]
struct Tiny {
    fixture: &'static str,
    partition: Partition,
    task: TaskHead,
}

const CLASSIFY: Tiny = Tiny {
    fixture: "bert",
    partition: Partition::HeadBodyTail {
        n_head: 1,
        n_tail: 1,
    },
    task: TaskHead::SequenceClassification { num_labels: 3 },
};

impl Tiny {
    fn checkpoint(&self) -> Pretrained {
        Pretrained::open(&fixtures_dir().join("models").join(self.fixture)).unwrap()
    }

    fn slice(&self, model: AnyModel) -> PartySlice {
        PartySlice::new(
            model,
            &Trainability::default(),
            &OptimizerConfig::default(),
            10,
            SEED,
        )
        .unwrap()
    }

    fn model_base(&self) -> AnyModel {
        let ckpt = self.checkpoint();
        let slices = self.partition.slices(ckpt.num_layers()).unwrap();
        ckpt.load(&slices.model, self.task, &cpu()).unwrap()
    }

    /// The data party's slices.
    fn data_slices(&self) -> (PartySlice, Option<PartySlice>) {
        let ckpt = self.checkpoint();
        let slices = self.partition.slices(ckpt.num_layers()).unwrap();
        let load = |spec| self.slice(ckpt.load(spec, self.task, &cpu()).unwrap());
        (load(&slices.data_head), slices.data_tail.as_ref().map(load))
    }

    fn connect(&self, transport: Box<dyn Transport>, key: &str) -> Result<DataParty, PartyError> {
        let (head, tail) = self.data_slices();
        DataParty::connect_with(
            head,
            tail,
            transport,
            &PartyOptions::default(),
            Handshake {
                session_key: key.into(),
                terms: terms(),
            },
        )
    }
}

fn terms() -> Vec<(String, String)> {
    vec![("partition".into(), "HBT(1,1)".into())]
}

/// Batch `i` of a stream of random-looking batches: each session trains on its own.
fn batch(i: usize) -> (TokenBatch, Labels) {
    let device = cpu();
    let (b, s) = (2, 6);
    let ids: Vec<i64> = (0..b * s)
        .map(|k| ((k * 7 + i * 13) % 90 + 5) as i64)
        .collect();
    let input_ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), &device);
    let attention_mask = Tensor::<2, Int>::ones([b, s], &device);
    let labels = Tensor::<1, Int>::from_data(
        TensorData::new(vec![(i % 3) as i64, ((i + 1) % 3) as i64], [b]),
        &device,
    );
    (
        TokenBatch {
            input_ids,
            attention_mask,
            token_type_ids: None,
        },
        Labels::Classes(labels),
    )
}

/// Trains `STEPS` steps on batches `first..`; returns the losses bit for bit.
fn train(data: &mut DataParty, first: usize) -> Vec<u32> {
    (first..first + STEPS)
        .map(|i| {
            let (batch, labels) = batch(i);
            data.train_step(&batch, &labels).unwrap().loss.to_bits()
        })
        .collect()
}

/// A whole session over `connector`: open as `key`, train, end.
fn train_a_session(connector: &Connector, key: &str) -> Vec<u32> {
    let mut data = CLASSIFY
        .connect(Box::new(connector.connect_once().unwrap()), key)
        .unwrap();
    let losses = train(&mut data, 0);
    data.finish().unwrap();
    losses
}

/// The same training with both parties in this process.
fn in_process(first: usize) -> Vec<u32> {
    let model = ModelParty::new(CLASSIFY.slice(CLASSIFY.model_base()), WireDType::F32);
    let (data_end, model_end) = in_process_pair(Limits::default());
    let server = model.spawn(model_end);
    let mut data = CLASSIFY.connect(Box::new(data_end), "").unwrap();
    let losses = train(&mut data, first);
    data.finish().unwrap();
    server.join().unwrap().unwrap();
    losses
}

/// Sessions of [`CLASSIFY`] (or of `tiny`), counting how many were opened.
struct Factory {
    tiny: Tiny,
    base: AnyModel,
    opened: AtomicUsize,
}

impl Factory {
    fn new(tiny: Tiny) -> Arc<Self> {
        Arc::new(Self {
            tiny,
            base: tiny.model_base(),
            opened: AtomicUsize::new(0),
        })
    }
}

impl SessionFactory for Factory {
    fn terms(&self) -> Vec<(String, String)> {
        terms()
    }

    fn open(&self, _: &[(String, String)]) -> Result<ModelParty, String> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(ModelParty::new(
            self.tiny.slice(self.base.clone()),
            WireDType::F32,
        ))
    }
}

struct Server {
    url: String,
    factory: Arc<Factory>,
}

/// A server on a free loopback port, serving `tiny` until the test process ends.
fn start(tiny: Tiny, network: NetworkConfig, state: &Path) -> Server {
    let factory = Factory::new(tiny);
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        state: state.to_path_buf(),
        network: network.clone(),
    };
    let (tx, rx) = mpsc::channel();
    let serving = factory.clone();
    std::thread::spawn(move || {
        splitlm_net::serve(options, serving, |addr| tx.send(addr).unwrap()).unwrap();
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let scheme = if network.insecure { "http" } else { "https" };
    Server {
        url: format!("{scheme}://{addr}"),
        factory,
    }
}

fn client_config(server: &Server, base: &NetworkConfig) -> NetworkConfig {
    NetworkConfig {
        connect: Some(server.url.clone()),
        reconnect_for_s: 0.0,
        ..base.clone()
    }
}

fn insecure() -> NetworkConfig {
    NetworkConfig {
        insecure: true,
        ..NetworkConfig::default()
    }
}

fn tls_dir(dir: &Path) -> NetworkConfig {
    splitlm_net::keys::generate(dir, &KeyOptions::default(), false).unwrap();
    NetworkConfig {
        tls: Some(dir.to_path_buf()),
        ..NetworkConfig::default()
    }
}

#[test]
fn a_session_over_grpc_with_mutual_tls_trains_bit_for_bit_as_in_process() {
    let keys = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let network = NetworkConfig {
        chunk_bytes: 1024, // every message travels in several chunks
        ..tls_dir(keys.path())
    };
    let server = start(CLASSIFY, network.clone(), state.path());
    let connector = Connector::new(&client_config(&server, &network)).unwrap();
    let mut data = CLASSIFY
        .connect(Box::new(connector.connect_once().unwrap()), "bitwise")
        .unwrap();
    assert_eq!(train(&mut data, 0), in_process(0));
    data.finish().unwrap();
}

#[test]
fn generation_over_grpc_gives_the_tokens_of_one_process() {
    let gpt2 = Tiny {
        fixture: "gpt2",
        partition: Partition::HeadBodyTail {
            n_head: 1,
            n_tail: 1,
        },
        task: TaskHead::CausalLm,
    };
    let state = tempfile::tempdir().unwrap();
    let server = start(gpt2, insecure(), state.path());
    let connector = Connector::new(&client_config(&server, &insecure())).unwrap();
    let sampling = Sampling::greedy(6, &[]);
    let prompt = [5, 17, 42, 8];
    let mut remote = gpt2
        .connect(Box::new(connector.connect_once().unwrap()), "gen")
        .unwrap();
    let over_grpc = remote.generate(&prompt, &sampling).unwrap().generation;

    let model = ModelParty::new(gpt2.slice(gpt2.model_base()), WireDType::F32);
    let (data_end, model_end) = in_process_pair(Limits::default());
    let _server = model.spawn(model_end);
    let mut local = gpt2.connect(Box::new(data_end), "").unwrap();
    let in_process = local.generate(&prompt, &sampling).unwrap().generation;
    assert_eq!(over_grpc.tokens, in_process.tokens);
    assert_eq!(over_grpc.tokens.len(), 6);
}

#[test]
fn eight_concurrent_sessions_each_train_as_if_alone() {
    let state = tempfile::tempdir().unwrap();
    let server = start(CLASSIFY, insecure(), state.path());
    let config = client_config(&server, &insecure());
    let expected: Vec<Vec<u32>> = (0..8).map(|k| in_process(k * 5)).collect();
    let sessions: Vec<_> = (0..8)
        .map(|k| {
            let config = config.clone();
            std::thread::spawn(move || {
                let connector = Connector::new(&config).unwrap();
                let transport = Box::new(connector.connect_once().unwrap());
                let mut data = CLASSIFY.connect(transport, &format!("load-{k}")).unwrap();
                let losses = train(&mut data, k * 5);
                data.finish().unwrap();
                losses
            })
        })
        .collect();
    for (k, session) in sessions.into_iter().enumerate() {
        assert_eq!(session.join().unwrap(), expected[k], "session {k}");
    }
    assert_eq!(server.factory.opened.load(Ordering::SeqCst), 8);
}

#[test]
fn a_model_party_state_saved_over_grpc_restores_in_a_new_session() {
    let state = tempfile::tempdir().unwrap();
    let server = start(CLASSIFY, insecure(), state.path());
    let connector = Connector::new(&client_config(&server, &insecure())).unwrap();
    let mut first = CLASSIFY
        .connect(Box::new(connector.connect_once().unwrap()), "resumable")
        .unwrap();
    train(&mut first, 0);
    assert_eq!(first.save_peer_state("after-3").unwrap(), 3);
    let head_and_tail = tempfile::tempdir().unwrap();
    first.save_state(head_and_tail.path()).unwrap();
    let straight = train(&mut first, 3);
    drop(first); // the link breaks without an End

    let mut second = CLASSIFY
        .connect(Box::new(connector.connect().unwrap()), "resumable")
        .unwrap();
    second.restore_state(head_and_tail.path()).unwrap();
    assert_eq!(second.restore_peer_state("after-3").unwrap(), 3);
    assert_eq!(train(&mut second, 3), straight);
    let err = second.restore_peer_state("never-saved").unwrap_err();
    assert!(err.to_string().contains("never-saved"), "{err}");
}

/// Opens a raw stream, writes `bytes`, closes the writing side and returns what came back.
fn raw_exchange(connector: &Connector, bytes: &[u8]) -> Vec<Message> {
    use std::io::Write;
    let (reader, mut writer) = connector.open_stream().unwrap();
    writer.write_all(bytes).unwrap();
    writer.flush().unwrap();
    drop(writer);
    let mut transport = StreamTransport::new(reader, std::io::sink(), Limits::default());
    let mut received = Vec::new();
    while let Ok(msg) = transport.recv() {
        received.push(msg);
    }
    received
}

fn hello(key: &str, terms: Vec<(String, String)>) -> Vec<u8> {
    encode(&Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::DataParty,
        party_id: "raw".into(),
        session_key: key.into(),
        terms,
    })
}

fn forward(hidden: TensorFrame) -> Vec<u8> {
    let ints = |shape: Vec<usize>, n: usize| TensorFrame::from_i64(shape, &vec![1; n]).unwrap();
    encode(&Message::Forward {
        step: 0,
        mode: splitlm_protocol::Mode::Train,
        hidden,
        attention_mask: ints(vec![1, 4], 4),
        positions: ints(vec![1, 4], 4),
    })
}

fn error_of(replies: &[Message]) -> String {
    replies
        .iter()
        .find_map(|m| match m {
            Message::Error { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_else(|| format!("no Error among {replies:?}"))
}

#[test]
fn bad_input_ends_only_its_own_session_and_leaves_saved_state_intact() {
    let state = tempfile::tempdir().unwrap();
    let network = NetworkConfig {
        max_message_bytes: 1 << 20,
        ..insecure()
    };
    let server = start(CLASSIFY, network.clone(), state.path());
    let connector = Connector::new(&client_config(&server, &network)).unwrap();
    // A good session, live through everything below, with a saved state.
    let mut good = CLASSIFY
        .connect(Box::new(connector.connect_once().unwrap()), "good")
        .unwrap();
    train(&mut good, 0);
    good.save_peer_state("kept").unwrap();

    let d = 32; // the fixture's hidden size
    let f32s = |shape: Vec<usize>, v: f32| {
        let n = shape.iter().product();
        TensorFrame::from_f32(shape, &vec![v; n], WireDType::F32).unwrap()
    };
    let with_hello = |rest: &[u8]| [hello("raw", terms()), rest.to_vec()].concat();
    let mut oversized = encode(&Message::End { reason: "x".into() });
    oversized[7..15].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let truncated = forward(f32s(vec![1, 4, d], 0.5));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage bytes", b"GET / HTTP/1.1\r\n\r\n".to_vec(), "magic"),
        (
            "a truncated frame",
            with_hello(&truncated[..truncated.len() / 2]),
            "truncated",
        ),
        ("an oversized frame", with_hello(&oversized), "message size"),
        (
            "the wrong dtype",
            with_hello(&forward(
                TensorFrame::from_i64(vec![1, 4, d], &vec![1; 4 * d]).unwrap(),
            )),
            "dtype i64",
        ),
        (
            "the wrong shape",
            with_hello(&forward(f32s(vec![1, 4, d + 1], 0.5))),
            "width 33",
        ),
        (
            "NaN activations",
            with_hello(&forward(f32s(vec![1, 4, d], f32::NAN))),
            "non-finite",
        ),
        (
            "a message out of order",
            with_hello(&encode(&Message::Gradient {
                step: 0,
                grad: f32s(vec![1, 2], 0.0),
            })),
            "expected",
        ),
        (
            "another session's key",
            hello("good", terms()),
            "already being served",
        ),
        (
            "terms that differ",
            hello("other", vec![("partition".into(), "HT(2)".into())]),
            "`partition`",
        ),
    ];
    let mut unexpected = Vec::new();
    for (what, bytes, expected) in cases {
        let replies = raw_exchange(&connector, &bytes);
        let error = error_of(&replies);
        if !error.to_lowercase().contains(expected) {
            unexpected.push(format!(
                "{what}: expected an error about {expected:?}, got {error:?}"
            ));
        }
    }
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    // The good session goes on, and its saved state is intact.
    train(&mut good, 3);
    assert_eq!(good.restore_peer_state("kept").unwrap(), 3);
    good.finish().unwrap();
}

#[test]
fn mutual_tls_refuses_clients_without_a_valid_certificate_before_any_model_work() {
    // One CA issues the server's certificate, a valid client's and an expired client's.
    let years = KeyOptions::default().years;
    let authority = Authority::new(years).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| std::fs::write(keys.path().join(name), text).unwrap();
    write("ca.pem", authority.pem());
    let hosts = KeyOptions::default().hosts;
    let (pem, key) = authority.server(&hosts, years).unwrap();
    write("server.pem", pem);
    write("server.key", key);
    let (pem, key) = authority.client("valid", years).unwrap();
    write("client.pem", pem);
    write("client.key", key);
    let (pem, key) = authority.client("expired", (2000, 2001)).unwrap();
    write("expired.pem", pem);
    write("expired.key", key);
    let network = NetworkConfig {
        tls: Some(keys.path().to_path_buf()),
        ..NetworkConfig::default()
    };
    let state = tempfile::tempdir().unwrap();
    let server = start(CLASSIFY, network.clone(), state.path());

    // Another CA's client certificate.
    let stranger = tempfile::tempdir().unwrap();
    let wrong_ca = NetworkConfig {
        ca: Some(keys.path().join("ca.pem")),
        ..tls_dir(stranger.path())
    };
    // The right CA's certificate, expired.
    let expired = NetworkConfig {
        cert: Some(keys.path().join("expired.pem")),
        key: Some(keys.path().join("expired.key")),
        ..network.clone()
    };
    for (what, config) in [("another CA", wrong_ca), ("expired", expired)] {
        let connector = Connector::new(&client_config(&server, &config)).unwrap();
        let refused = connector
            .connect_once()
            .map(|t| CLASSIFY.connect(Box::new(t), what));
        assert!(
            !matches!(refused, Ok(Ok(_))),
            "a client with a certificate of {what} was served"
        );
    }
    // Plaintext against a TLS server.
    let plain_url = server.url.replace("https://", "http://");
    let plain = Connector::new(&NetworkConfig {
        connect: Some(plain_url),
        reconnect_for_s: 0.0,
        ..insecure()
    })
    .unwrap();
    assert!(plain.connect_once().is_err());
    // No certificate at all: refused by the client's own checks, naming what is missing.
    let none = Connector::new(&client_config(&server, &NetworkConfig::default())).unwrap_err();
    assert!(none.to_string().contains("certificate"), "{none}");
    assert_eq!(
        server.factory.opened.load(Ordering::SeqCst),
        0,
        "a refused client got a model party"
    );
    // The valid client is served.
    let good = Connector::new(&client_config(&server, &network)).unwrap();
    train_a_session(&good, "valid");
}

#[test]
fn admission_is_limited_and_silent_sessions_are_freed() {
    let state = tempfile::tempdir().unwrap();
    let network = NetworkConfig {
        max_sessions: 1,
        idle_timeout_s: 1.0,
        ..insecure()
    };
    let server = start(CLASSIFY, network.clone(), state.path());
    let connector = Connector::new(&client_config(&server, &network)).unwrap();
    // A client that says hello and then nothing (as if killed mid-step).
    let silent = CLASSIFY
        .connect(Box::new(connector.connect_once().unwrap()), "silent")
        .unwrap();
    let refused = connector
        .connect_once()
        .map(|t| CLASSIFY.connect(Box::new(t), "second"));
    let message = match refused {
        Err(e) => e.to_string(),
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => panic!("a second session was admitted past max_sessions = 1"),
    };
    assert!(message.contains("at most 1 sessions"), "{message}");
    std::thread::sleep(Duration::from_millis(2500));
    train_a_session(&connector, "third");
    drop(silent);
    let records = std::fs::read_to_string(state.path().join("sessions.jsonl")).unwrap();
    assert!(
        records.contains("\"silent\"") && records.contains("sent nothing"),
        "{records}"
    );
}

#[test]
fn mutated_sessions_never_bring_the_server_down() {
    let state = tempfile::tempdir().unwrap();
    let network = NetworkConfig {
        max_message_bytes: 1 << 20,
        ..insecure()
    };
    let server = start(CLASSIFY, network.clone(), state.path());
    let connector = Connector::new(&client_config(&server, &network)).unwrap();
    let d = 32;
    let hidden = TensorFrame::from_f32(vec![1, 4, d], &vec![0.25; 4 * d], WireDType::F32).unwrap();
    let valid = [hello("mutated", terms()), forward(hidden)].concat();
    // A small deterministic generator (xorshift) of byte flips, truncations and splices.
    let mut state_word = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state_word ^= state_word << 13;
        state_word ^= state_word >> 7;
        state_word ^= state_word << 17;
        state_word
    };
    for case in 0..64 {
        let mut bytes = valid.clone();
        match case % 3 {
            0 => {
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] ^= 1 << (next() % 8);
                }
            }
            1 => bytes.truncate((next() as usize) % bytes.len()),
            _ => {
                let at = (next() as usize) % bytes.len();
                let junk: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
                bytes.splice(at..at, junk);
            }
        }
        raw_exchange(&connector, &bytes);
    }
    train_a_session(&connector, "after");
}

#[test]
fn plaintext_is_refused_off_loopback_on_both_ends() {
    let state = tempfile::tempdir().unwrap();
    let factory = Factory::new(CLASSIFY);
    let options = ServeOptions {
        listen: "0.0.0.0:0".parse().unwrap(),
        state: state.path().to_path_buf(),
        network: insecure(),
    };
    let err = splitlm_net::serve(options, factory, |_| panic!("listening")).unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let err = Connector::new(&NetworkConfig {
        connect: Some("http://192.0.2.1:7070".into()),
        ..insecure()
    })
    .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let err = Connector::new(&NetworkConfig {
        connect: Some("http://127.0.0.1:7070".into()),
        ..NetworkConfig::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains("plaintext"), "{err}");
}
