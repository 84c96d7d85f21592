//! Loads the two real demo models and shows they work, on the device you choose:
//! MiniLM sentence similarities (BERT core, safetensors) and SmolLM2 answering a question
//! (Llama core, quantised GGUF, KV-cached greedy decoding).
//!
//! ```text
//! cargo run --example quickstart                     # CPU (ndarray)
//! cargo run --example quickstart -- --device wgpu     # Vulkan (lavapipe on a CPU)
//! ```

use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Parser;
use splitlm::assets::{self, Asset};
use splitlm::bert::{BertConfig, BertModel};
use splitlm::device::DeviceSpec;
use splitlm::llama::GgufLlamaSource;
use splitlm::nn::batch::PaddingSide;
use splitlm::nn::generate::{Sampling, generate};
use splitlm::nn::head::{l2_normalize, mean_pool};
use splitlm::nn::{SliceSpec, TaskHead, TokenBatch, TransformerSlice};
use splitlm::weights::{SafetensorsCheckpoint, tokenizer_from_gguf};
use tokenizers::Tokenizer;

#[derive(Parser)]
#[command(about = "Load MiniLM and SmolLM2 and show that they work")]
struct Args {
    /// Where the models run: cpu, wgpu, wgpu:N or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// The question for SmolLM2.
    #[arg(long, default_value = "What is the capital of France?")]
    question: String,
    /// Most tokens SmolLM2 may generate.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
}

const SENTENCES: [&str; 4] = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar.",
    "The stock market fell sharply today.",
    "A child is eating an ice cream.",
];

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let device = args.device.probe()?;
    println!("device: {}", args.device);
    sentence_similarities(&device)?;
    answer(&device, &args.question, args.max_new_tokens)?;
    Ok(())
}

fn sentence_similarities(device: &Device) -> Result<()> {
    let dir = assets::ensure(Asset::MiniLm)?;
    let started = Instant::now();
    let config = BertConfig::from_dir(&dir)?;
    let weights = SafetensorsCheckpoint::open(&dir)?;
    let spec = SliceSpec::full(config.num_hidden_layers);
    let model = BertModel::load(&weights, &config, &spec, TaskHead::Hidden, device)?;
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("tokenizer.json").display()))?;
    tokenizer.with_padding(None);
    println!("\nMiniLM loaded in {:.2?}", started.elapsed());

    let ids = SENTENCES
        .iter()
        .map(|s| tokenizer.encode(*s, true).map(|e| e.get_ids().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
    let pad = tokenizer.token_to_id("[PAD]").unwrap_or(0);
    let tokens = TokenBatch::from_sequences(&ids, pad, PaddingSide::Right, device)?;
    let started = Instant::now();
    let states = model
        .forward(&tokens, None)?
        .hidden()
        .context("hidden states")?;
    let embeddings = l2_normalize(mean_pool(states, &tokens.attention_mask));
    let similarity = embeddings.clone().matmul(embeddings.transpose());
    let similarity: Vec<f32> = similarity.into_data().try_into_vec_as::<f32>().unwrap();
    println!(
        "embedded {} sentences in {:.2?}",
        SENTENCES.len(),
        started.elapsed()
    );
    for (i, j) in [(0, 1), (0, 2), (0, 3), (2, 3)] {
        println!(
            "  cos = {:+.3}  {:?} ~ {:?}",
            similarity[i * SENTENCES.len() + j],
            SENTENCES[i],
            SENTENCES[j]
        );
    }
    Ok(())
}

fn answer(device: &Device, question: &str, max_new_tokens: usize) -> Result<()> {
    assets::ensure(Asset::SmolLm2)?;
    let started = Instant::now();
    let source = GgufLlamaSource::open(&assets::smollm2_gguf())?;
    let model = source.load_model(None, TaskHead::CausalLm, device)?;
    let tokenizer = tokenizer_from_gguf(source.file())?;
    println!("\nSmolLM2 loaded in {:.2?}", started.elapsed());

    let prompt = chatml(question);
    let ids = tokenizer
        .encode(prompt.as_str(), false)
        .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?
        .get_ids()
        .to_vec();
    let stop = [
        im_end(&tokenizer),
        tokenizer.token_to_id("<|endoftext|>").unwrap_or(0),
    ];
    let generation = generate(
        &model,
        &ids,
        &Sampling::greedy(max_new_tokens, &stop),
        device,
    )?;
    let text = tokenizer
        .decode(&generation.tokens, true)
        .map_err(|e| anyhow::anyhow!("decoding: {e}"))?;
    println!("Q: {question}\nA: {}", text.trim());
    println!(
        "prompt: {} tokens in {:.2?}; then {} tokens in {:.2?} ({:.1} tokens/s with the KV cache)",
        ids.len(),
        generation.prefill,
        generation.tokens.len().saturating_sub(1),
        generation.decode,
        generation.decode_rate().unwrap_or(0.0)
    );
    Ok(())
}

fn im_end(tokenizer: &Tokenizer) -> u32 {
    tokenizer.token_to_id("<|im_end|>").unwrap_or(2)
}

/// SmolLM2-Instruct's chat template with its default system message.
fn chatml(question: &str) -> String {
    format!(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )
}
