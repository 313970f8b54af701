//! `compare`'s studies on small settings.

use ch21_advanced::compare::{self, Study};
use ch21_advanced::minigpt::{self, MiniGptOptions};
use shared::cli::RunContext;

fn small() -> MiniGptOptions {
    MiniGptOptions {
        n_layers: 1,
        emb_dim: 32,
        block_size: 16,
        batch_size: 4,
        iters: 4,
        eval_interval: 2,
        eval_iters: 2,
        final_eval_batches: 2,
        warmup_steps: 0,
        samples: false,
        verbose: false,
        ..MiniGptOptions::default()
    }
}

#[test]
fn gqa_shrinks_the_cache_and_the_key_value_weights() {
    let dir = tempfile::tempdir().unwrap();
    let context = RunContext { out_dir: dir.path().to_path_buf(), ..RunContext::for_tests() };
    let text: String = minigpt::corpus(&context).unwrap().chars().take(20_000).collect();
    let result = {
        let _rng = shared::device::global_rng_lock();
        compare::run(&context, &text, Study::Gqa, &small()).unwrap()
    };
    let kv_heads = [8, 4, 2, 1];
    let head_dim = 32 / 8;
    for (row, kv) in result.rows.iter().zip(kv_heads) {
        // 1 layer x (key + value) x KV heads x head size x 4 bytes.
        assert_eq!(row.kv_cache_bytes_per_token, 2 * kv * head_dim * 4, "{row:?}");
        // Each KV head fewer removes a key and a value projection of 32 x 4 weights.
        assert_eq!(result.rows[0].parameters - row.parameters, (8 - kv) * 2 * 32 * head_dim, "{row:?}");
        assert!(row.final_val_loss.is_finite() && row.metric > 0.0 && row.curve.len() == 2, "{row:?}");
    }
    assert!(result.notes[0].contains("75497472 bytes (72 MiB)"), "GPT-2 small's cache: {:?}", result.notes);
    assert!(result.notes[3].contains("6291456"), "{:?}", result.notes);
    assert!(result.chart.is_file());
}
