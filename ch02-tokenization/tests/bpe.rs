//! Byte-pair encoding from scratch: GPT-2 parity with tiktoken-rs on real data, and a
//! trained vocabulary that round-trips any UTF-8 text.

use ch02_tokenization::bpe::BytePairEncoder;
use ch02_tokenization::bpe_train;
use shared::data::{DataLocator, SMS_SPAM_COLLECTION, THE_VERDICT, TINY_SHAKESPEARE};
use shared::tokenizer::Gpt2Tokenizer;

fn read(set: &shared::data::DataSet) -> String {
    DataLocator::from_env(None)
        .read_to_string(set)
        .unwrap_or_else(|e| panic!("this test needs {} (set LLMS_DATA_DIR): {e}", set.name))
}

#[test]
fn gpt2_from_scratch_equals_tiktoken_on_the_verdict_and_sms_data() {
    let ours = BytePairEncoder::gpt2().unwrap();
    let reference = Gpt2Tokenizer::new();
    for set in [THE_VERDICT, SMS_SPAM_COLLECTION] {
        let text = read(&set);
        let ids = ours.encode(&text).unwrap();
        assert_eq!(ids, reference.encode(&text), "{} differs", set.name);
        assert_eq!(ours.decode(&ids).unwrap(), text);
    }
    assert_eq!(ours.encode(&read(&THE_VERDICT)).unwrap().len(), 5145);
}

#[test]
fn trained_vocabulary_round_trips_any_utf8() {
    let trained = bpe_train::train(&read(&THE_VERDICT), 600).unwrap();
    let encoder = &trained.encoder;
    assert_eq!(encoder.vocab_size(), 600);
    assert_eq!(trained.merges.len(), 600 - 257);
    // Merge counts never increase: each round takes the most frequent pair left.
    assert!(trained.merges.windows(2).all(|w| w[0].count >= w[1].count));
    for text in [
        "I HAD always thought Jack Gisburn rather a cheap genius",
        "Grüße aus Zürich — 東京タワー 🦀 <|endoftext|> ok",
        "",
        "   tabs\tand\nnewlines\r\n",
    ] {
        let ids = encoder.encode(text).unwrap();
        assert_eq!(encoder.decode(&ids).unwrap(), text);
    }
    // Merges learned on the text make it shorter in tokens than in bytes.
    let sample = &read(&THE_VERDICT)[..2000];
    assert!(encoder.encode(sample).unwrap().len() * 2 < sample.len());
}

#[test]
fn trained_vocabulary_is_deterministic() {
    let text = &read(&TINY_SHAKESPEARE)[..20_000];
    let a = bpe_train::train(text, 400).unwrap();
    let b = bpe_train::train(text, 400).unwrap();
    assert_eq!(a.merges, b.merges);
}
