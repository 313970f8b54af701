//! Exercises A.1-A.4 and the pieces they build on.

use appendix_a::exercises::{self, ex_a1};
use appendix_a::mlp::{parameter_formula, NeuralNetwork};
use appendix_a::timing;
use appendix_a::toy_data::{self, ToyLoader};
use appendix_a::training;
use shared::app::cli::RunContext;
use shared::app::exercise;
use shared::core::device::{global_rng_lock, seed_everything};
use tch::{nn, Device};

#[test]
fn exercise_a1_counts_752_parameters_two_ways() {
    let result = {
        let _rng = global_rng_lock(); // building the model draws from the generator
        ex_a1::run()
    };
    assert_eq!((result.counted, result.by_formula), (752, 752));
    assert_eq!(parameter_formula(50, 3), 2213);
}

#[test]
fn exercise_a2_times_the_cpu_and_reports_the_gpu() {
    let result = {
        let _rng = global_rng_lock(); // the matrices are random
        timing::run(5)
    };
    // Timings are measured by benchmarks, not asserted; the report says what ran.
    assert_eq!((result.shape.as_str(), result.repeats), ("100x200 @ 200x300 (float32)", 5));
    assert!(result.to_string().contains(&format!("CPU ({} threads)", tch::get_num_threads())), "{result}");
    assert_eq!(result.gpu_median_us.is_some(), tch::Cuda::is_available());
    assert_eq!(result.gpu_speedup.is_some(), tch::Cuda::is_available());
    if !tch::Cuda::is_available() {
        assert!(result.to_string().contains("GPU: skipped, no CUDA device is available"));
    }
}

#[test]
fn every_exercise_is_listed_in_the_readme_and_runs_as_json() {
    let _rng = global_rng_lock();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let ids: Vec<&str> = exercises::ALL.iter().map(|e| e.id).collect();
    assert_eq!(ids, ["A.1", "A.2", "A.3", "A.4"]);
    let missing = shared::app::exercise::missing_readme_rows(exercises::ALL, &readme);
    assert!(missing.is_empty(), "README.md lacks the rows {missing:?}");
    let json = exercise::run(exercises::ALL, "A.3", true, &RunContext::for_tests()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["counted"], 752);
}

#[test]
fn loader_batches_cover_the_data_once_per_epoch() {
    let _rng = global_rng_lock();
    seed_everything(5);
    let data = toy_data::train_set();
    let keep = ToyLoader::new(&data, 2, true, false);
    let mut labels: Vec<i64> = keep.iter().flat_map(|(_, y)| Vec::<i64>::try_from(y).unwrap()).collect();
    labels.sort();
    assert_eq!(labels, [0, 0, 0, 1, 1]);
    assert_eq!(keep.len(), 3);
    assert_eq!(ToyLoader::new(&data, 2, true, true).iter().count(), 2);
    let sequential: Vec<i64> =
        ToyLoader::new(&data, 4, false, false).iter().flat_map(|(_, y)| Vec::<i64>::try_from(y).unwrap()).collect();
    assert_eq!(sequential, [0, 0, 0, 1, 1]);
}

#[test]
fn saved_models_reload_and_bad_files_are_errors() {
    let _rng = global_rng_lock();
    let dir = std::env::temp_dir().join(format!("appendix-a-save-{}", std::process::id()));
    let vs = nn::VarStore::new(Device::Cpu);
    let model = NeuralNetwork::new(&vs.root(), 2, 2);
    let path = dir.join("model.safetensors");
    training::save(&vs, &path).unwrap();
    let (_vs, reloaded) = training::load(&path, 2, 2).unwrap();
    let x = toy_data::test_set().features;
    assert!(model.forward(&x).equal(&reloaded.forward(&x)));
    // A file for another architecture, or no file, is an error that names the path.
    let err = training::load(&path, 3, 2).unwrap_err();
    assert!(format!("{err:#}").contains("model.safetensors"), "{err:#}");
    assert!(training::load(&dir.join("absent.safetensors"), 2, 2).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}
