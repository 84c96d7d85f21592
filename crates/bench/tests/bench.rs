//! The jobs end to end on the real demo assets, at toy sizes: train with checkpoints, evaluate
//! the saved state, generate through the split; records land in the JSON-lines file.

use splitlm_bench::config::SampleSplit;
use splitlm_bench::records::{self, AttackTarget, Record};
use splitlm_bench::{Quiet, RunConfig, jobs};
use splitlm_nn::testing::asset;
use splitlm_partition::Partition;

#[test]
fn train_checkpoint_then_eval_restores_the_trained_model() {
    asset(splitlm_assets::Asset::MiniLm);
    asset(splitlm_assets::Asset::Sentiment);
    let dir = tempfile::tempdir().unwrap();
    let records_path = dir.path().join("runs.jsonl");
    let ckpt = dir.path().join("ckpt");
    let overrides = vec![
        "task.train_examples=48".to_string(),
        "task.eval_examples=40".to_string(),
        "train.eval_every=2".to_string(),
        format!("train.checkpoint_dir={}", ckpt.display()),
        format!("output.records={}", records_path.display()),
    ];
    let config = RunConfig::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/sentiment.toml"),
        &overrides,
    )
    .unwrap();
    let trained = jobs::train(&config, &mut Quiet).unwrap().record;
    assert_eq!(trained.steps, 3);
    assert_eq!(trained.evaluations.len(), 2, "steps 2 and 3");
    assert!(trained.bytes_sent > 0);
    assert!(
        std::fs::read_to_string(ckpt.join("latest"))
            .unwrap()
            .contains("step-000003")
    );

    let evaluated = jobs::evaluate(&config, Some(&ckpt)).unwrap().record;
    assert_eq!(
        evaluated.mp, trained.mp,
        "the checkpoint holds the trained state"
    );
    let untrained = jobs::evaluate(&config, None).unwrap().record;
    assert_eq!(untrained.mp, trained.before.value);

    let lines = records::read(&records_path).unwrap();
    assert_eq!(lines.len(), 3);
    let first = lines[0]
        .as_train()
        .expect("the training record comes first");
    assert_eq!(
        first.setting.setting,
        "head-body-tail (n_head = 2, n_tail = 2)"
    );
    assert_eq!(
        first.setting.partition,
        Some(Partition::head_body_tail(2, 2))
    );
}

#[test]
fn smollm2_trains_on_chat_answers_and_generates_through_the_split() {
    asset(splitlm_assets::Asset::SmolLm2);
    asset(splitlm_assets::Asset::Chatterbot);
    let dir = tempfile::tempdir().unwrap();
    let records_path = dir.path().join("runs.jsonl");
    let overrides = vec![
        "task.train_examples=8".to_string(),
        "task.eval_examples=2".to_string(),
        "train.batch_size=4".to_string(),
        "generate.max_new_tokens=6".to_string(),
        format!("output.records={}", records_path.display()),
    ];
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smollm2-chat.toml");
    let config = RunConfig::load(&path, &overrides).unwrap();
    let trained = jobs::train(&config, &mut Quiet).unwrap().record;
    assert_eq!(trained.steps, 2);
    assert!(trained.epoch_losses[0].is_finite());
    assert_eq!(trained.after.metric, "rouge_l_f1");

    let generated = jobs::generate(
        &config,
        &["What is the capital of France?".to_string()],
        false,
        true,
        None,
    )
    .unwrap()
    .record;
    let answer = &generated.answers[0];
    assert_eq!(answer.same_as_unsplit, Some(true));
    assert!(answer.answer.contains("Paris"), "{answer:?}");
}

#[test]
fn a_broken_config_names_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[model]\nsource = \"minilm\"\n[task]\nkind = \"sentiment\"\n[train]\nbatch = 4\n",
    )
    .unwrap();
    let err = RunConfig::load(&path, &[]).unwrap_err().to_string();
    assert!(err.contains("bad.toml") && err.contains("batch"), "{err}");
    let err = RunConfig::load(&dir.path().join("absent.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("absent.toml") && err.contains("no such file"),
        "{err}"
    );
    std::fs::write(&path, "[model\nsource = 1").unwrap();
    let err = RunConfig::load(&path, &[]).unwrap_err().to_string();
    assert!(err.contains("bad.toml"), "{err}");
}

/// Each task kind that reads user files runs train → evaluate on the committed fixtures in the
/// public formats (tiny sizes: this checks the plumbing, not the scores).
#[test]
fn every_file_based_task_kind_trains_and_scores_on_fixtures() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tasks/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let records_path = dir.path().join("runs.jsonl");
    let common = format!(
        "[train]\nbatch_size = 2\n[generate]\nmax_new_tokens = 4\n[output]\nrecords = {:?}\n",
        records_path.display().to_string()
    );
    asset(splitlm_assets::Asset::MiniLm);
    asset(splitlm_assets::Asset::SmolLm2);
    let mut cases = Vec::new();
    {
        for (task, file, metric) in [
            ("sst2", "sst2.tsv", "accuracy"),
            ("stsb", "stsb.tsv", "pearson"),
        ] {
            let path = fixtures.join("glue").join(file).display().to_string();
            cases.push((
                format!(
                    "[model]\nsource = \"minilm\"\n[split]\npartition = {{ kind = \"head_tail\", n_head = 2 }}\n\
                     [task]\nkind = \"glue\"\ntask = \"{task}\"\ntrain = {path:?}\ndev = {path:?}\n"
                ),
                metric,
            ));
        }
    }
    {
        let file = |name: &str| fixtures.join("formats").join(name).display().to_string();
        let split = "[split]\npartition = { kind = \"head_body_tail\", n_head = 1, n_tail = 1 }\n\
                     [finetune]\nstrategy = \"lora\"\nembeddings = false\ntask_head = false\n";
        for (task, metric) in [
            (
                format!(
                    "kind = \"instruction\"\nformat = \"alpaca\"\npath = {:?}",
                    file("alpaca_data.json")
                ),
                "rouge2_recall",
            ),
            (
                format!(
                    "kind = \"instruction\"\nformat = \"dolly\"\npath = {:?}",
                    file("databricks-dolly-15k.jsonl")
                ),
                "rouge2_recall",
            ),
            (
                format!(
                    "kind = \"math\"\nformat = \"gsm8k\"\npath = {:?}",
                    file("gsm8k_test.jsonl")
                ),
                "final_answer_accuracy",
            ),
            (
                format!(
                    "kind = \"lambada\"\npath = {:?}",
                    file("lambada_test_plain_text.txt")
                ),
                "next_word_accuracy",
            ),
        ] {
            cases.push((
                format!(
                    "[model]\nsource = \"smollm2\"\n{split}[task]\n{task}\nmax_len = 48\neval_examples = 1\n"
                ),
                metric,
            ));
        }
    }
    for (text, metric) in &cases {
        let config = RunConfig::from_toml(&format!("{text}{common}"), &[])
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let record = jobs::train(&config, &mut Quiet)
            .unwrap_or_else(|e| panic!("{e:#}\n{text}"))
            .record;
        assert_eq!(record.after.metric, *metric, "{text}");
        assert!(record.steps >= 1);
        assert!(record.after.value.is_finite(), "{record:?}");
    }
    if !cases.is_empty() {
        assert_eq!(records::read(&records_path).unwrap().len(), cases.len());
    }
}

#[test]
fn a_defense_grid_trains_attacks_and_reports_every_setting() {
    asset(splitlm_assets::Asset::MiniLm);
    asset(splitlm_assets::Asset::Sentiment);
    let dir = tempfile::tempdir().unwrap();
    let records_path = dir.path().join("grid.jsonl");
    let overrides = vec![
        "task.train_examples=32".to_string(),
        "task.eval_examples=32".to_string(),
        "attacker.samples=2".to_string(),
        "attacker.batch_size=2".to_string(),
        "task.max_len=24".to_string(),
        format!("output.records={}", records_path.display()),
    ];
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/grid-sentiment.toml");
    let mut config = RunConfig::load(&path, &overrides).unwrap();
    // The shipped grid at toy size: three of its settings, a much shorter RWI.
    let grid = config.grid.as_mut().unwrap();
    grid.settings
        .retain(|s| ["none", "Laplace ε=20", "sparsify 99%"].contains(&s.name.as_str()));
    assert_eq!(grid.settings.len(), 3);
    for attack in &mut config.attacks {
        if let splitlm_attacks::AttackConfig::Rwi(s) = attack {
            s.steps = 20;
        }
    }
    let done = jobs::grid(&config, &mut Quiet).unwrap();

    let lines = records::read(&records_path).unwrap();
    let jobs_seen: Vec<&str> = lines
        .iter()
        .map(|l| match l {
            Record::Train(_) => "train",
            Record::Attack(_) => "attack",
            _ => "other",
        })
        .collect();
    assert_eq!(
        jobs_seen,
        ["train", "attack", "attack"].repeat(3),
        "each run is followed by its two attacks"
    );
    let run = lines[0].as_train().unwrap();
    for line in &lines[1..3] {
        let attack = line.as_attack().unwrap();
        assert_eq!(attack.run_id, run.run_id);
        assert_eq!(attack.samples, 2);
        assert_eq!(
            attack.prior.white_box_head,
            Some(splitlm_attacks::HeadVersion::FineTuned)
        );
    }

    let report = &done.report;
    assert_eq!(report.rows.len(), 3);
    let vmi = |row: usize| {
        report.rows[row]
            .attacks
            .iter()
            .find(|a| a.name == "vmi")
            .unwrap()
            .ap
    };
    eprintln!("{}", report.table());
    // Undefended, the pretrained head's first-step activations give most tokens back; Laplace
    // noise of b = 81.82 / 20 = 4.1 leaves the attacker next to nothing.
    assert!(vmi(0) > 0.5, "{}", report.table());
    assert!(vmi(1) < 0.5 * vmi(0), "{}", report.table());
    let baseline = report.rows[0].attacks[0].dcs.unwrap();
    assert!(baseline < 0.75, "an undefended run scores near 0.586");
    assert!(
        std::fs::read_to_string(&done.plot)
            .unwrap()
            .starts_with("<svg")
    );
    assert_eq!(done.plot, records_path.with_extension("svg"));
}

#[test]
fn label_attacks_are_refused_where_the_model_party_sees_no_label_gradient() {
    let err = RunConfig::from_toml(
        "[model]\nsource = \"minilm\"\n[split]\npartition = { kind = \"head_body_tail\", \
         n_head = 2, n_tail = 2 }\n[task]\nkind = \"sentiment\"\n[[attacks]]\nkind = \"dls\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("attacks[0]") && err.contains("Head–Tail"),
        "{err}"
    );
    let err = RunConfig::from_toml(
        "[model]\nsource = \"minilm\"\n[split]\npartition = { kind = \"head_tail\", n_head = 2 }\n\
         [task]\nkind = \"sentiment\"\n[[attacks]]\nkind = \"vmi\"\nsteps = 0\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("attacks[0]") && err.contains("steps"), "{err}");
}

#[test]
fn label_attacks_run_through_a_head_tail_grid_and_noise_on_gradients_blunts_them() {
    asset(splitlm_assets::Asset::MiniLm);
    asset(splitlm_assets::Asset::Sentiment);
    let dir = tempfile::tempdir().unwrap();
    let records_path = dir.path().join("ht.jsonl");
    let overrides = vec![
        "task.train_examples=32".to_string(),
        "task.eval_examples=16".to_string(),
        "task.max_len=24".to_string(),
        format!("output.records={}", records_path.display()),
    ];
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/grid-sentiment-ht.toml");
    let mut config = RunConfig::load(&path, &overrides).unwrap();
    config.attacks.retain(|a| a.name() != "vmi");
    let grid = config.grid.as_mut().unwrap();
    grid.settings
        .retain(|s| ["none", "grad Laplace ε=0.05"].contains(&s.name.as_str()));
    let report = jobs::grid(&config, &mut Quiet).unwrap().report;
    eprintln!("{}", report.table());
    let ap = |row: usize, name: &str| {
        report.rows[row]
            .attacks
            .iter()
            .find(|a| a.name == name)
            .unwrap()
            .ap
    };
    assert_eq!(ap(0, "dls"), 1.0, "{}", report.table());
    assert_eq!(ap(0, "bli"), 1.0, "{}", report.table());
    assert_eq!(ap(0, "ds"), 1.0, "{}", report.table());
    // The reference's b = Δf / ε = 0.01 / 0.05 = 0.2 against logit gradients of about 1/32:
    // the labels are noise.
    assert!(ap(1, "dls") < 0.9, "{}", report.table());
    assert!(report.rows[1].t_dcs["label_inference"] > report.rows[0].t_dcs["label_inference"]);
}

/// The reference's attack setting on a Head–Body–Tail run: label attacks on the first
/// training batch (BLI through the data party's tail, which its prior declares), inversion on
/// samples re-sent through the trained head after training.
#[test]
fn head_body_tail_runs_label_attacks_and_inverts_samples_sent_after_training() {
    asset(splitlm_assets::Asset::MiniLm);
    asset(splitlm_assets::Asset::Sentiment);
    let dir = tempfile::tempdir().unwrap();
    let records_path = dir.path().join("hbt.jsonl");
    let toml = format!(
        "[model]\nsource = \"minilm\"\n\
         [split]\npartition = {{ kind = \"head_body_tail\", n_head = 2, n_tail = 2 }}\n\
         [finetune]\nstrategy = \"lora\"\nembeddings = false\n\
         [task]\nkind = \"sentiment\"\nmax_len = 24\ntrain_examples = 16\neval_examples = 8\n\
         [train]\nbatch_size = 8\n\
         [attacker]\nsamples = 3\nbatch_size = 2\nsplit = \"train\"\n\
         [[attacks]]\nkind = \"bli\"\nsteps = 100\n\
         [[attacks]]\nkind = \"ns\"\n\
         [[attacks]]\nkind = \"vmi\"\nsteps = 5\n\
         [output]\nrecords = \"{}\"\n",
        records_path.display()
    );
    let config = RunConfig::from_toml(&toml, &[]).unwrap();
    jobs::train(&config, &mut Quiet).unwrap();
    let lines = records::read(&records_path).unwrap();
    let attacks: Vec<_> = lines.iter().filter_map(|l| l.as_attack()).collect();
    assert_eq!(attacks.len(), 3);
    let (bli, ns, vmi) = (attacks[0], attacks[1], attacks[2]);
    for label in [bli, ns] {
        assert_eq!(
            label.samples, 8,
            "{}: the whole first batch",
            label.attack.name
        );
        assert_eq!(
            label.target,
            Some(AttackTarget::ObservedSteps {
                from: 0,
                steps: 1,
                max_samples: 4096
            })
        );
    }
    assert!(bli.prior.tail_at_observed_step, "BLI got the tail");
    assert!((0.0..=1.0).contains(&bli.ap));
    assert!(ns.ap >= 0.5, "NS reports max(acc, 1 − acc): {}", ns.ap);
    assert_eq!(vmi.samples, 3, "three samples re-sent after training");
    assert_eq!(
        vmi.target,
        Some(AttackTarget::AfterTraining {
            samples: 3,
            split: SampleSplit::Train,
            batch_size: 2
        })
    );
    assert_eq!(
        vmi.prior.white_box_head,
        Some(splitlm_attacks::HeadVersion::FineTuned),
        "the reference's attacker holds the fine-tuned head"
    );
}
