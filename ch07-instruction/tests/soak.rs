//! The reliability soak: a server in this process under valid and hostile requests mixed
//! from concurrent clients (`serve::soak`), then checked: every valid request answered in
//! full, every hostile one refused, `/health` within a second, memory back within 20 % of
//! its level after the warm-up. `SOAK_REQUESTS=N` sends more (the README's numbers come
//! from the `soak` command with 3,000).

mod common;

use ch07_instruction::serve::soak::{self, SoakOptions};
use ch07_instruction::serve::ServeOptions;
use common::model::start;

#[test]
fn the_server_holds_up_under_a_hostile_mix() {
    let server = start(ServeOptions { max_queue: 32, ..ServeOptions::local(0) });
    let requests = std::env::var("SOAK_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(2600);
    let report = soak::run(server.addr, &SoakOptions { requests, concurrency: 12, max_tokens: 4 }).unwrap();
    println!("{report}");
    assert!(report.valid > 400 && report.hostile > 400 && report.cut_streams > 50, "{report}");
    assert!(report.passed(), "{report}");
    server.stop().unwrap();
}
