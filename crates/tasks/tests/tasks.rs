//! Task data: the encoder reproduces MiniLM's tokenizer with our padding and truncation; the
//! movie-review set has its published counts and a fixed split.

use splitlm_device::DeviceSpec;
use splitlm_nn::batch::PaddingSide;
use splitlm_nn::testing::asset;
use splitlm_tasks::Encoder;
use splitlm_tasks::dataset::{Example, Target};

#[test]
fn minilm_tokenizer_pads_and_truncates_our_way() {
    let dir = asset(splitlm_assets::Asset::MiniLm);
    let encoder = Encoder::from_file(&dir.join("tokenizer.json"), 8, PaddingSide::Right).unwrap();
    let cpu = DeviceSpec::Cpu.device().unwrap();
    let examples = vec![
        Example {
            text: "hello world".into(),
            text_pair: None,
            target: Target::Class(1),
        },
        Example {
            text: "a much longer sentence that will certainly be truncated".into(),
            text_pair: None,
            target: Target::Class(0),
        },
    ];
    let batch = encoder.tokens(&examples, &cpu).unwrap();
    assert_eq!(
        batch.dims(),
        [2, 8],
        "padded to the longest, truncated to 8 (not MiniLM's 128)"
    );
    let ids = batch
        .input_ids
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    assert_eq!(&ids[..8], &[101, 7592, 2088, 102, 0, 0, 0, 0]);
    assert_eq!(
        (ids[8], ids[15]),
        (101, 102),
        "truncation keeps [CLS] … [SEP]"
    );
    let mask = batch
        .attention_mask
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    assert_eq!(&mask[..8], &[1, 1, 1, 1, 0, 0, 0, 0]);
    let pair = vec![Example {
        text: "hello".into(),
        text_pair: Some("world".into()),
        target: Target::Class(0),
    }];
    let batch = encoder.tokens(&pair, &cpu).unwrap();
    let types = batch
        .token_type_ids
        .unwrap()
        .into_data()
        .try_into_vec_as::<i64>()
        .unwrap();
    assert_eq!(types, vec![0, 0, 0, 1, 1]);
}

#[test]
fn the_movie_review_set_has_the_published_counts_and_a_fixed_split() {
    asset(splitlm_assets::Asset::Sentiment);
    let path = splitlm_assets::movie_reviews();
    let snippets = splitlm_tasks::sentiment::read_scored_snippets(&path).unwrap();
    assert_eq!(snippets.len(), 10_605);
    let positive = snippets.iter().filter(|s| s.score > 0.0).count();
    let negative = snippets.iter().filter(|s| s.score < 0.0).count();
    assert_eq!((positive, negative), (5_242, 5_326));
    let (train, test) = splitlm_tasks::sentiment::binary_split(&path, 0.1, 0).unwrap();
    assert_eq!((train.len(), test.len()), (9_511, 1_057));
    let (train2, test2) = splitlm_tasks::sentiment::binary_split(&path, 0.1, 0).unwrap();
    assert_eq!(
        (train[0].clone(), test[0].clone()),
        (train2[0].clone(), test2[0].clone())
    );
    assert!(test.iter().all(|t| !train[..100].contains(t)));
}
