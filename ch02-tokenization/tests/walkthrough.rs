//! The chapter's walk-through reproduces the numbers the book prints (sections 2.2-2.8).

use ch02_tokenization::walkthrough::{self, BatchRows, Walkthrough};
use shared::app::cli::RunContext;
use shared::core::device::global_rng_lock;

fn walkthrough() -> Walkthrough {
    let _rng = global_rng_lock();
    walkthrough::run(&RunContext::for_tests()).expect("the walk-through needs the-verdict.txt (set LLMS_DATA_DIR)")
}

#[test]
fn reproduces_the_book() {
    let w = walkthrough();

    // 2.2
    assert_eq!(w.characters, 20479);
    assert_eq!(
        w.opening,
        "I HAD always thought Jack Gisburn rather a cheap genius--though a good fellow enough--so it was no "
    );
    assert_eq!(w.preprocessed_len, 4690);
    assert_eq!(
        w.preprocessed_head,
        [
            "I", "HAD", "always", "thought", "Jack", "Gisburn", "rather", "a", "cheap", "genius", "--", "though", "a",
            "good", "fellow", "enough", "--", "so", "it", "was", "no", "great", "surprise", "to", "me", "to", "hear",
            "that", ",", "in"
        ]
    );

    // 2.3
    assert_eq!(w.vocab_size, 1130);
    assert_eq!(w.vocab_head.len(), 51);
    assert_eq!(w.vocab_head[0], ("!".to_string(), 0));
    assert_eq!(w.vocab_head[50], ("Hermia".to_string(), 50));
    assert_eq!(w.v1_ids, [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]);
    assert_eq!(w.v1_decoded, "\" It' s the last he painted, you know,\" Mrs. Gisburn said with pardonable pride.");
    let error = w.v1_unknown_error.as_deref().expect("'Hello' is not in The Verdict");
    assert!(error.contains("'Hello'"), "{error}");
    assert_eq!(w.v1_sample, walkthrough::V1_SAMPLE);

    // 2.4
    assert_eq!(w.v2_vocab_size, 1132);
    let tail: Vec<(&str, usize)> = w.v2_vocab_tail.iter().map(|(t, i)| (t.as_str(), *i)).collect();
    assert_eq!(
        tail,
        [("younger", 1127), ("your", 1128), ("yourself", 1129), ("<|endoftext|>", 1130), ("<|unk|>", 1131)]
    );
    assert_eq!(w.v2_ids, [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]);
    assert_eq!(w.v2_decoded, "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>.");

    // 2.5
    assert_eq!(
        w.bpe_ids,
        [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114, 286, 617, 34680, 27271, 13]
    );
    assert_eq!(w.bpe_decoded, walkthrough::BPE_SAMPLE);

    // 2.6
    assert_eq!(w.bpe_tokens, 5145);
    assert_eq!(w.context_x, [290, 4920, 2241, 287]);
    assert_eq!(w.context_y, [4920, 2241, 287, 257]);
    let texts: Vec<(&str, &str)> =
        w.next_token_pairs.iter().map(|p| (p.context_text.as_str(), p.desired_text.as_str())).collect();
    assert_eq!(
        texts,
        [
            (" and", " established"),
            (" and established", " himself"),
            (" and established himself", " in"),
            (" and established himself in", " a")
        ]
    );
    assert_eq!(
        w.stride1_batches,
        [
            BatchRows { inputs: vec![vec![40, 367, 2885, 1464]], targets: vec![vec![367, 2885, 1464, 1807]] },
            BatchRows { inputs: vec![vec![367, 2885, 1464, 1807]], targets: vec![vec![2885, 1464, 1807, 3619]] },
        ]
    );
    assert_eq!(
        w.stride4_batch.inputs,
        [
            [40, 367, 2885, 1464],
            [1807, 3619, 402, 271],
            [10899, 2138, 257, 7026],
            [15632, 438, 2016, 257],
            [922, 5891, 1576, 438],
            [568, 340, 373, 645],
            [1049, 5975, 284, 502],
            [284, 3285, 326, 11]
        ]
    );
    assert_eq!(
        w.stride4_batch.targets,
        [
            [367, 2885, 1464, 1807],
            [3619, 402, 271, 10899],
            [2138, 257, 7026, 15632],
            [438, 2016, 257, 922],
            [5891, 1576, 438, 568],
            [340, 373, 645, 1049],
            [5975, 284, 502, 284],
            [3285, 326, 11, 287]
        ]
    );

    // 2.7: torch.manual_seed(123); torch.nn.Embedding(6, 3) (printed to 4 decimals).
    let book = [
        [0.3374, -0.1778, -0.1690],
        [0.9178, 1.5810, 1.3010],
        [1.2753, -0.2010, -0.1606],
        [-0.4015, 0.9666, -1.1481],
        [-1.1589, 0.3255, -0.6315],
        [-2.8400, -0.7849, -1.4096],
    ];
    for (row, expected) in w.embedding_weight.iter().zip(book) {
        for (x, e) in row.iter().zip(expected) {
            assert!((x - e).abs() < 5e-5, "{row:?} vs {expected:?}");
        }
    }
    assert_eq!(w.embedding_of_3, w.embedding_weight[3]);
    let lookup: Vec<Vec<f32>> = [2, 3, 5, 1].iter().map(|&i| w.embedding_weight[i].clone()).collect();
    assert_eq!(w.embedding_lookup, lookup);

    // 2.8
    assert_eq!(w.token_embeddings_shape, [8, 4, 256]);
    assert_eq!(w.pos_embeddings_shape, [4, 256]);
    assert_eq!(w.input_embeddings_shape, [8, 4, 256]);
}

#[test]
fn text_output_shows_every_section() {
    let text = walkthrough().to_string();
    for section in ["2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8"] {
        assert!(text.contains(&format!("== {section} ")), "section {section} missing");
    }
    assert!(text.contains("Total number of characters: 20479"));
}
