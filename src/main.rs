//! The `rgate` binary: parses the command line and hands over to `lifecycle`.

fn main() {
    let args: rgate::cli::Args = argh::from_env();
    std::process::exit(rgate::lifecycle::run(args));
}
