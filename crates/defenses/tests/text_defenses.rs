//! SanText+, CusText and RanText on real text: movie reviews through MiniLM's tokenizer and
//! input embeddings, the defenses built from configuration as a run builds them
//! (`splitlm_train::defense_env`). Prints, per defense at its defaults, the fraction of tokens
//! replaced and the time one 16×64 batch takes.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Device;
use serde_json::json;
use splitlm_defenses::{Defense, DefenseConfig, DefenseEnv, HookContext, TextCodec};
use splitlm_nn::TaskHead;
use splitlm_nn::TokenBatch;
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::testing::asset;
use splitlm_partition::Partition;
use splitlm_train::{DefenseData, TokenizerCodec, defense_env};
use splitlm_zoo::Pretrained;

const CTX: HookContext = HookContext {
    step: 0,
    training: true,
};
const SEQ: usize = 64;
const ROWS: usize = 16;

struct Setup {
    env: DefenseEnv,
    codec: Arc<dyn TextCodec>,
    batch: TokenBatch,
}

fn device() -> Device {
    splitlm_device::DeviceSpec::Cpu.device().unwrap()
}

/// `text`'s ids, cut to `SEQ` with its final `[SEP]` kept.
fn ids_of(codec: &dyn TextCodec, text: &str) -> Vec<u32> {
    let mut ids = codec.encode(text);
    if ids.len() > SEQ {
        let last = *ids.last().unwrap();
        ids.truncate(SEQ - 1);
        ids.push(last);
    }
    ids
}

/// MiniLM's environment for `configs`, trained on 1,000 reviews, and a batch of 16 others.
fn setup(configs: &[DefenseConfig]) -> Setup {
    let minilm = asset(splitlm_assets::Asset::MiniLm);
    asset(splitlm_assets::Asset::Sentiment);
    let ckpt = Pretrained::open(&minilm).unwrap();
    let tokenizer = ckpt.tokenizer().unwrap();
    let pad = tokenizer.token_to_id("[PAD]").unwrap();
    let codec: Arc<dyn TextCodec> =
        Arc::new(TokenizerCodec::new(tokenizer, pad, PaddingSide::Right));
    let (train, test) =
        splitlm_tasks::sentiment::binary_split(&splitlm_assets::movie_reviews(), 0.1, 0).unwrap();
    let training_inputs: Vec<Vec<u32>> = train[..1000]
        .iter()
        .map(|e| ids_of(codec.as_ref(), &e.text))
        .collect();
    let data = DefenseData {
        text: codec.clone(),
        training_inputs: Arc::new(training_inputs),
    };
    let device = device().autodiff();
    let slices = Partition::head_tail(1).slices(ckpt.num_layers()).unwrap();
    let task = TaskHead::SequenceClassification { num_labels: 2 };
    let env = defense_env(configs, Some(&data), &ckpt, task, &slices, &device).unwrap();
    let rows: Vec<Vec<u32>> = test[..ROWS]
        .iter()
        .map(|e| ids_of(codec.as_ref(), &e.text))
        .collect();
    let batch = TokenBatch::from_sequences(&rows, pad, PaddingSide::Right, &device).unwrap();
    Setup { env, codec, batch }
}

fn config(table: serde_json::Value) -> DefenseConfig {
    serde_json::from_value(table).unwrap()
}

fn build(setup: &Setup, table: serde_json::Value, seed: u64) -> Box<dyn Defense> {
    config(table).build(seed, &setup.env).unwrap()
}

fn ints(t: &burn::tensor::Tensor<2, burn::tensor::Int>) -> Vec<i64> {
    t.clone().into_data().try_into_vec_as::<i64>().unwrap()
}

/// Each row's attended ids.
fn rows_of(batch: &TokenBatch) -> Vec<Vec<u32>> {
    let [b, s] = batch.input_ids.dims();
    let (ids, mask) = (ints(&batch.input_ids), ints(&batch.attention_mask));
    (0..b)
        .map(|r| {
            (0..s)
                .filter(|&t| mask[r * s + t] != 0)
                .map(|t| ids[r * s + t] as u32)
                .collect()
        })
        .collect()
}

/// The fraction of the original rows' tokens (specials aside) missing from the new rows,
/// counted as multisets, since the new text tokenizes to other positions.
fn replaced_fraction(codec: &dyn TextCodec, before: &TokenBatch, after: &TokenBatch) -> f64 {
    let specials = codec.special_ids();
    let (mut total, mut kept) = (0usize, 0usize);
    for (old, new) in rows_of(before).iter().zip(rows_of(after)) {
        let mut pool: Vec<u32> = new;
        for id in old.iter().filter(|id| !specials.contains(id)) {
            total += 1;
            if let Some(i) = pool.iter().position(|x| x == id) {
                pool.swap_remove(i);
                kept += 1;
            }
        }
    }
    1.0 - kept as f64 / total as f64
}

/// The fraction of the output's whitespace words, letters only, that are whole tokens of the
/// vocabulary.
fn real_word_fraction(codec: &dyn TextCodec, batch: &TokenBatch) -> f64 {
    let (mut words, mut real) = (0usize, 0usize);
    for row in rows_of(batch) {
        for w in codec.decode(&row, true).split_whitespace() {
            if w.chars().all(char::is_alphabetic) {
                words += 1;
                real += usize::from(codec.token_to_id(w).is_some());
            }
        }
    }
    real as f64 / words as f64
}

/// The batch's shape, its rows framed by `[CLS]` … `[SEP]`, padded on the right with the pad
/// id under a zero mask.
fn assert_well_formed(codec: &dyn TextCodec, before: &TokenBatch, after: &TokenBatch, what: &str) {
    assert_eq!(after.input_ids.dims(), before.input_ids.dims(), "{what}");
    assert_eq!(
        after.attention_mask.dims(),
        before.attention_mask.dims(),
        "{what}"
    );
    let (cls, sep) = (
        codec.token_to_id("[CLS]").unwrap(),
        codec.token_to_id("[SEP]").unwrap(),
    );
    let [b, s] = after.input_ids.dims();
    let (ids, mask) = (ints(&after.input_ids), ints(&after.attention_mask));
    for r in 0..b {
        let real = (0..s).take_while(|&t| mask[r * s + t] == 1).count();
        assert!(real >= 2, "{what}: row {r} lost its frame");
        assert!(
            mask[r * s + real..(r + 1) * s].iter().all(|&m| m == 0),
            "{what}: row {r}"
        );
        assert!(
            ids[r * s + real..(r + 1) * s]
                .iter()
                .all(|&id| id == codec.pad_id() as i64),
            "{what}: row {r}'s padding"
        );
        assert_eq!(ids[r * s] as u32, cls, "{what}: row {r}");
        assert_eq!(ids[r * s + real - 1] as u32, sep, "{what}: row {r}");
        let inner = &ids[r * s + 1..r * s + real - 1];
        assert!(
            inner.iter().all(|&id| id as u32 != cls && id as u32 != sep),
            "{what}: row {r} has specials inside"
        );
    }
}

fn defaults() -> [(&'static str, serde_json::Value); 3] {
    [
        ("santext", json!({"kind": "santext"})),
        ("custext", json!({"kind": "custext"})),
        ("rantext", json!({"kind": "rantext"})),
    ]
}

#[test]
fn the_defaults_replace_tokens_by_real_words_in_a_well_formed_batch() {
    let tables: Vec<DefenseConfig> = defaults().into_iter().map(|(_, t)| config(t)).collect();
    let setup = setup(&tables);
    let original_real = real_word_fraction(setup.codec.as_ref(), &setup.batch);
    println!("original text: {original_real:.3} of its words are whole tokens");
    for (name, table) in defaults() {
        let start = Instant::now();
        let mut defense = build(&setup, table.clone(), 1);
        let built = start.elapsed();
        let start = Instant::now();
        let out = defense.on_input(setup.batch.clone(), &CTX);
        let first = start.elapsed();
        let start = Instant::now();
        let again = defense.on_input(setup.batch.clone(), &CTX);
        let second = start.elapsed();
        let replaced = replaced_fraction(setup.codec.as_ref(), &setup.batch, &out);
        let real = real_word_fraction(setup.codec.as_ref(), &out);
        println!(
            "{name}: params {}\n  build {built:?}; 16×64 batch {first:?} (first), {second:?} \
             (again); replaced {replaced:.3}; real words {real:.3}",
            defense.params()
        );
        println!(
            "  e.g. {:?}\n   -> {:?}",
            setup.codec.decode(&rows_of(&setup.batch)[0], true),
            setup.codec.decode(&rows_of(&out)[0], true)
        );
        assert_well_formed(setup.codec.as_ref(), &setup.batch, &out, name);
        assert_well_formed(setup.codec.as_ref(), &setup.batch, &again, name);
        assert!(replaced > 0.1, "{name} replaced only {replaced}");
        assert!(real > 0.6, "{name}: only {real} of the words are real");
    }
}

#[test]
fn draws_follow_the_seed() {
    let tables: Vec<DefenseConfig> = defaults().into_iter().map(|(_, t)| config(t)).collect();
    let setup = setup(&tables);
    for (name, table) in defaults() {
        let run = |seed| {
            let mut d = build(&setup, table.clone(), seed);
            ints(&d.on_input(setup.batch.clone(), &CTX).input_ids)
        };
        assert_eq!(run(7), run(7), "{name}: same seed");
        assert_ne!(run(7), run(8), "{name}: another seed");
    }
}

#[test]
fn a_larger_epsilon_keeps_more_tokens() {
    let pairs = [
        // Word pieces rejoined, so that only the mechanism's replacements count; p = 0, so
        // that only the sensitive words (90 % of the vocabulary, the rarest) are drawn.
        (
            "santext",
            json!({"kind": "santext", "epsilon": 0.01, "p": 0.0,
                   "sensitive_word_percentage": 0.9, "join": "detokenize"}),
            json!({"kind": "santext", "epsilon": 1000.0, "p": 0.0,
                   "sensitive_word_percentage": 0.9, "join": "detokenize"}),
        ),
        (
            "custext",
            json!({"kind": "custext", "epsilon": 0.01}),
            json!({"kind": "custext", "epsilon": 100.0}),
        ),
        (
            "rantext",
            json!({"kind": "rantext", "epsilon": 1.0}),
            json!({"kind": "rantext", "epsilon": 1000.0}),
        ),
    ];
    let tables: Vec<DefenseConfig> = pairs.iter().map(|(_, t, _)| config(t.clone())).collect();
    let setup = setup(&tables);
    for (name, small, large) in pairs {
        let fraction = |table: serde_json::Value| {
            let out = build(&setup, table, 3).on_input(setup.batch.clone(), &CTX);
            replaced_fraction(setup.codec.as_ref(), &setup.batch, &out)
        };
        let (loose, tight) = (fraction(small), fraction(large));
        println!("{name}: replaced {loose:.3} at the small ε, {tight:.3} at the large");
        let floor = if name == "santext" { 0.2 } else { 0.5 };
        assert!(loose > floor, "{name}: a small ε replaced only {loose}");
        assert!(
            tight < 0.3 && tight + 0.1 < loose,
            "{name}: a large ε replaced {tight}"
        );
    }
}

#[test]
fn rows_without_text_stay_and_missing_pieces_are_named() {
    let tables = [config(json!({"kind": "santext"}))];
    let setup = setup(&tables);
    let pad = setup.codec.pad_id();
    let cls = setup.codec.token_to_id("[CLS]").unwrap();
    let sep = setup.codec.token_to_id("[SEP]").unwrap();
    let bare = TokenBatch::from_sequences(
        &[vec![cls, sep], vec![cls, 2023, 3185, sep]],
        pad,
        PaddingSide::Right,
        &setup.batch.input_ids.device(),
    )
    .unwrap();
    for (name, table) in defaults() {
        let mut defense = build(&setup, table, 0);
        let out = defense.on_input(bare.clone(), &CTX);
        assert_eq!(
            &ints(&out.input_ids)[..4],
            &[cls as i64, sep as i64, pad as i64, pad as i64]
        );
        assert_eq!(&ints(&out.attention_mask)[..4], &[1, 1, 0, 0], "{name}");
        let without = DefenseEnv::bare(device(), 384, 30522);
        let err = config(json!({"kind": name}))
            .build(0, &without)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(name) && err.contains("needs"), "{err}");
    }
    let err = config(json!({"kind": "santext", "p": 2.0}))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("p must"), "{err}");
}
