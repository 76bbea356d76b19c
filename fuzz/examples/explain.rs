//! Says what the checks make of each input file: refused or incomplete, agrees, or the
//! first line of the difference. For triaging crash artifacts; run from `fuzz/`:
//!
//!     cargo run -q --example explain -- request artifacts/request/*
//!     cargo run -q --example explain -- response artifacts/response/*

use rgate_fuzz::{Target, Verdict};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_default();
    let Some(target) = Target::ALL.into_iter().find(|t| t.name() == name) else {
        eprintln!("usage: explain request|response FILE...");
        std::process::exit(2);
    };
    std::panic::set_hook(Box::new(|_| {}));
    for file in args {
        let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let verdict = match target.verdict(&data) {
            Verdict::RefusedOrIncomplete => "refused or incomplete".to_string(),
            Verdict::Agrees => "agrees".to_string(),
            Verdict::Differs(why) => format!("DIFFERS {}", why.lines().next().unwrap_or("")),
        };
        println!("{file}\t{verdict}");
    }
}
