//! The text data sets of the asset cache read with the published counts and known records:
//! the ChatterBot English corpus, GEM's E2E NLG task and the SQuAD v1.1 dev set (both from
//! BIG-bench). Each test fetches its asset into the cache when it is absent.

use std::collections::HashMap;

use splitlm_nn::testing::asset;
use splitlm_tasks::{chatterbot, e2e};

#[test]
fn the_english_chatterbot_corpus_has_its_published_counts() {
    asset(splitlm_assets::Asset::Chatterbot);
    let conversations = chatterbot::read_dir(&splitlm_assets::chatterbot_english()).unwrap();
    assert_eq!(conversations.len(), 2_026);
    let pairs = chatterbot::qa_pairs(&conversations);
    assert_eq!(pairs.len(), 2_306);
    let turns: usize = conversations.iter().map(|c| c.turns.len()).sum();
    assert_eq!(turns, 4_332);

    let mut per_category: HashMap<&str, usize> = HashMap::new();
    for c in &conversations {
        *per_category.entry(c.category.as_str()).or_default() += 1;
    }
    assert_eq!(per_category.len(), 21);
    assert_eq!(per_category["tech support"], 1_050);
    assert_eq!(per_category["trivia"], 261);
    assert_eq!(per_category["AI"], 105);
    assert_eq!(per_category["health"], 1);

    // Files are read in name order: ai.yml first.
    assert_eq!(
        conversations[0].turns,
        [
            "What is AI?",
            "Artificial Intelligence is the branch of engineering and science devoted to \
             constructing machines that think."
        ]
    );
    let health: Vec<_> = conversations
        .iter()
        .filter(|c| c.category == "health")
        .collect();
    assert_eq!(health[0].turns.len(), 9);
    assert_eq!(health[0].turns[8], "Get well soon dear");
    // A quoted number stays text.
    assert!(pairs.iter().any(|p| {
        p.question == "What year was President John F. Kennedy assassinated?" && p.answer == "1963"
    }));
    // Block scalars keep their lines.
    let quicksort = pairs
        .iter()
        .find(|p| p.category == "coding" && p.answer.starts_with("Sure. Here's quicksort"))
        .unwrap();
    assert!(
        quicksort
            .answer
            .starts_with("Sure. Here's quicksort in Python:\n\n```\ndef quicksort(arr):\n"),
        "{:?}",
        quicksort.answer
    );
    // trivia.yml's one conversation written as a lone scalar.
    let lone: Vec<_> = conversations
        .iter()
        .filter(|c| c.turns.len() == 1)
        .collect();
    assert_eq!(lone.len(), 1);
    assert!(lone[0].turns[0].ends_with("\"two little ducks\"? - '22'"));

    let (train, test) = chatterbot::split(&conversations, 0.1, 0).unwrap();
    assert_eq!((train.len(), test.len()), (1_823, 203));
    assert_eq!(
        chatterbot::split(&conversations, 0.1, 0).unwrap(),
        (train, test)
    );
}

#[test]
fn the_e2e_task_has_1000_examples_over_213_inputs() {
    asset(splitlm_assets::Asset::E2eNlg);
    let task = e2e::read_task(&splitlm_assets::e2e_nlg()).unwrap();
    assert_eq!(task.name, "e2e_nlg");
    assert_eq!(
        task.input_prefix,
        "\nThere is a restaurant with the following attributes: "
    );
    assert_eq!(task.output_prefix, "\nDescribe the restaurant: ");
    let examples = &task.examples;
    assert_eq!(examples.len(), 1_000);
    assert!(examples.iter().all(|e| e.targets.len() == 1));
    assert_eq!(
        examples[0],
        e2e::DataToText {
            input: "name: Blue Spice, eatType: coffee shop, area: city centre".into(),
            targets: vec!["A coffee shop in the city centre area called Blue Spice.".into()],
        }
    );
    assert_eq!(
        examples[999].attributes().unwrap(),
        [
            ("name", "The Cricketers"),
            ("eatType", "restaurant"),
            ("customer rating", "1 out of 5"),
            ("familyFriendly", "yes"),
            ("near", "Avalon"),
        ]
    );
    assert!(examples.iter().all(|e| e.attributes().is_some()));

    let grouped = e2e::group_by_input(examples);
    assert_eq!(grouped.len(), 213);
    assert_eq!(grouped.iter().map(|g| g.targets.len()).max(), Some(35));
    let (train, test) = e2e::split(examples, 0.2, 0).unwrap();
    assert_eq!((train.len(), test.len()), (170, 43));
}

#[test]
fn the_squad_dev_set_has_10565_questions() {
    asset(splitlm_assets::Asset::SquadDev);
    let text = std::fs::read_to_string(splitlm_assets::squad_dev()).unwrap();
    let root: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(root["version"], "1.1");
    let articles = root["data"].as_array().unwrap();
    let paragraphs: Vec<&serde_json::Value> = articles
        .iter()
        .flat_map(|a| a["paragraphs"].as_array().unwrap())
        .collect();
    let questions: Vec<&serde_json::Value> = paragraphs
        .iter()
        .flat_map(|p| p["qas"].as_array().unwrap())
        .collect();
    let answers: usize = questions
        .iter()
        .map(|q| q["answers"].as_array().unwrap().len())
        .sum();
    // The official file has 10,570 questions; BIG-bench dropped 5 (and some answers).
    assert_eq!(
        (articles.len(), paragraphs.len(), questions.len(), answers),
        (48, 2_067, 10_565, 34_680)
    );
    assert_eq!(articles[0]["title"], "Super_Bowl_50");
    let first = questions[0];
    assert_eq!(first["id"], "56be4db0acb8001400a502ec");
    assert_eq!(
        first["question"],
        "Which NFL team represented the AFC at Super Bowl 50?"
    );
    assert_eq!(first["answers"][0]["text"], "Denver Broncos");
    assert_eq!(first["answers"][0]["answer_start"], 177);
    let last = questions[questions.len() - 1];
    assert_eq!(last["id"], "5737aafd1c456719005744ff");
    assert_eq!(last["answers"][0]["text"], "sthène");
}
