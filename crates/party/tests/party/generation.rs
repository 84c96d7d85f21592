//! Generation through the split model: the same tokens as the whole model, one position per
//! step across each cut after the prompt.

use std::path::Path;

use burn::tensor::Device;
use splitlm_nn::TaskHead;
use splitlm_nn::generate::{Sampling, generate};
use splitlm_nn::testing::{asset, fixtures_dir};
use splitlm_partition::Partition;
use splitlm_party::{
    DataParty, ModelParty, PartyError, PartyOptions, PartySlice, SessionReport, SplitGeneration,
};
use splitlm_protocol::{Limits, Message, Mode, Transport, WireDType, in_process_pair};
use splitlm_zoo::Pretrained;

use crate::common::cpu;

struct Generator {
    data: DataParty,
    server: std::thread::JoinHandle<Result<SessionReport, PartyError>>,
}

fn split(ckpt: &Pretrained, partition: Partition, dtype: WireDType, device: &Device) -> Generator {
    let slices = partition.slices(ckpt.num_layers()).unwrap();
    let load = |spec| PartySlice::frozen(ckpt.load(spec, TaskHead::CausalLm, device).unwrap());
    let model = ModelParty::new(load(&slices.model).unwrap(), dtype);
    let (data_end, model_end) = in_process_pair(Limits::default());
    let server = model.spawn(model_end);
    let tail = slices.data_tail.as_ref().map(|s| load(s).unwrap());
    let options = PartyOptions {
        wire_dtype: dtype,
        ..PartyOptions::default()
    };
    let data = DataParty::connect(
        load(&slices.data_head).unwrap(),
        tail,
        Box::new(data_end),
        &options,
    )
    .unwrap();
    Generator { data, server }
}

fn unsplit(ckpt: &Pretrained, prompt: &[u32], sampling: &Sampling, device: &Device) -> Vec<u32> {
    let spec = splitlm_nn::SliceSpec::full(ckpt.num_layers());
    let whole = ckpt.load(&spec, TaskHead::CausalLm, device).unwrap();
    generate(&whole, prompt, sampling, &device.clone().inner())
        .unwrap()
        .tokens
}

fn fixture() -> Pretrained {
    Pretrained::open(&fixtures_dir().join("models/llama")).unwrap()
}

const PROMPTS: [&[u32]; 3] = [&[5, 9, 13, 2], &[1], &[40, 41, 42, 43, 44, 45, 46]];

#[test]
fn split_greedy_equals_whole_model_greedy() {
    let ckpt = fixture();
    let device = cpu();
    let sampling = Sampling::greedy(12, &[]);
    for partition in [
        Partition::head_body_tail(1, 1),
        Partition::head_body_tail(0, 0),
        Partition::head_tail(1),
    ] {
        let mut split = split(&ckpt, partition, WireDType::F32, &device);
        for prompt in PROMPTS {
            let expected = unsplit(&ckpt, prompt, &sampling, &device);
            let got = split.data.generate(prompt, &sampling).unwrap();
            assert_eq!(got.generation.tokens, expected, "{partition:?}, {prompt:?}");
        }
        split.data.finish().unwrap();
        let report = split.server.join().unwrap().unwrap();
        assert_eq!(report.decode_steps, 3 * 12, "{partition:?}");
    }
}

#[test]
fn sampling_is_reproducible_and_matches_the_whole_model() {
    let ckpt = fixture();
    let device = cpu();
    let sampling = Sampling {
        max_new_tokens: 10,
        // The random fixture's next-token distributions are sharp: a high temperature
        // flattens them enough for draws to leave the greedy path.
        temperature: 4.0,
        top_k: 40,
        top_p: 0.98,
        seed: 3,
        ..Sampling::default()
    };
    let mut split = split(
        &ckpt,
        Partition::head_body_tail(1, 1),
        WireDType::F32,
        &device,
    );
    let got = split.data.generate(PROMPTS[0], &sampling).unwrap();
    assert_eq!(
        got.generation.tokens,
        unsplit(&ckpt, PROMPTS[0], &sampling, &device)
    );
    let greedy = unsplit(&ckpt, PROMPTS[0], &Sampling::greedy(10, &[]), &device);
    assert_ne!(got.generation.tokens, greedy, "sampling at T = 4 draws");
}

#[test]
fn generation_stops_at_a_stop_token() {
    let ckpt = fixture();
    let device = cpu();
    let free = unsplit(&ckpt, PROMPTS[2], &Sampling::greedy(8, &[]), &device);
    let stop = free[3];
    let first = free.iter().position(|&t| t == stop).unwrap();
    let mut split = split(&ckpt, Partition::head_tail(1), WireDType::F32, &device);
    let got = split
        .data
        .generate(PROMPTS[2], &Sampling::greedy(8, &[stop]))
        .unwrap();
    assert_eq!(got.generation.tokens, free[..=first]);
}

fn bytes_per_token(generation: &SplitGeneration) -> (u64, u64) {
    let first = generation.step_bytes[0];
    assert!(
        generation.step_bytes.iter().all(|b| *b == first),
        "every step after the prompt moves the same bytes: {:?}",
        generation.step_bytes
    );
    (first.sent, first.received)
}

#[test]
fn each_generated_token_sends_one_position_per_cut() {
    let ckpt = fixture();
    let device = cpu();
    let d = ckpt.hidden_size() as u64;
    let sampling = Sampling::greedy(10, &[]);
    let mut per_dtype = Vec::new();
    for dtype in [WireDType::F32, WireDType::F16] {
        let mut split = split(&ckpt, Partition::head_body_tail(1, 1), dtype, &device);
        let g = split.data.generate(PROMPTS[2], &sampling).unwrap();
        let (sent, received) = bytes_per_token(&g);
        // One position's activations plus a constant: framing, one mask and one position id.
        assert!(
            sent > d * dtype.size() as u64 && sent < d * dtype.size() as u64 + 160,
            "{dtype:?}: {sent}"
        );
        assert!(received > d * dtype.size() as u64 && received < d * dtype.size() as u64 + 160);
        assert!(g.prompt_bytes.sent > 7 * d * dtype.size() as u64);
        per_dtype.push((sent, received));
    }
    // f32 → f16 saves exactly two bytes per hidden value each way.
    assert_eq!(per_dtype[0].0 - per_dtype[1].0, 2 * d);
    assert_eq!(per_dtype[0].1 - per_dtype[1].1, 2 * d);
}

#[test]
fn an_infer_step_without_a_prompt_is_refused() {
    let ckpt = fixture();
    let slices = Partition::head_body_tail(1, 1)
        .slices(ckpt.num_layers())
        .unwrap();
    let body = ckpt
        .load(&slices.model, TaskHead::CausalLm, &cpu())
        .unwrap();
    let model = ModelParty::new(PartySlice::frozen(body).unwrap(), WireDType::F32);
    let (mut data_end, model_end) = in_process_pair(Limits::default());
    let server = model.spawn(model_end);
    data_end
        .send(&Message::Hello {
            version: splitlm_protocol::PROTOCOL_VERSION,
            role: splitlm_protocol::Role::DataParty,
            party_id: "rogue".into(),
            session_key: String::new(),
            terms: Vec::new(),
        })
        .unwrap();
    data_end.recv().unwrap();
    let d = ckpt.hidden_size();
    let frame = |shape: Vec<usize>| {
        splitlm_protocol::TensorFrame::from_f32(
            shape.clone(),
            &vec![0.5; shape.iter().product()],
            WireDType::F32,
        )
        .unwrap()
    };
    let ints = |v: Vec<i64>| splitlm_protocol::TensorFrame::from_i64(vec![1, v.len()], &v).unwrap();
    data_end
        .send(&Message::Forward {
            step: 0,
            mode: Mode::Infer,
            hidden: frame(vec![1, 1, d]),
            attention_mask: ints(vec![1]),
            positions: ints(vec![4]),
        })
        .unwrap();
    match data_end.recv().unwrap() {
        Message::Error { message, .. } => assert!(message.contains("Prefill"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    let err = server.join().unwrap().unwrap_err().to_string();
    assert!(err.contains("Prefill"), "{err}");
}

/// The real SmolLM2-135M-Instruct cut Head–Body–Tail 2/2: split greedy answers equal the whole
/// model's token for token on five chat prompts.
#[test]
fn smollm2_split_greedy_equals_unsplit_on_five_prompts() {
    asset(splitlm_assets::Asset::SmolLm2);
    let path = splitlm_assets::smollm2_gguf();
    let ckpt = Pretrained::open(Path::new(&path)).unwrap();
    let tokenizer = ckpt.tokenizer().unwrap();
    let device = cpu();
    let sampling = Sampling::greedy(16, &[2]);
    let mut split = split(
        &ckpt,
        Partition::head_body_tail(2, 2),
        WireDType::F32,
        &device,
    );
    let d = ckpt.hidden_size() as u64;
    for question in [
        "What is the capital of France?",
        "Name three colours.",
        "What is 2 + 3?",
        "Write a haiku about the sea.",
        "Who wrote Hamlet?",
    ] {
        let prompt = format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n");
        let ids = tokenizer.encode(prompt, false).unwrap().get_ids().to_vec();
        let expected = unsplit(&ckpt, &ids, &sampling, &device);
        let got = split.data.generate(&ids, &sampling).unwrap();
        assert_eq!(got.generation.tokens, expected, "{question}");
        if got.step_bytes.len() > 1 {
            let (sent, received) = bytes_per_token(&got);
            assert!(
                sent - 4 * d < 160 && received - 4 * d < 160,
                "{sent} {received}"
            );
        }
    }
    split.data.finish().unwrap();
    split.server.join().unwrap().unwrap();
}
