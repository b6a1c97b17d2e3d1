use clap::Parser;

fn main() {
    let cli = vlmbench::cli::Cli::parse();
    if let Err(e) = vlmbench::cli::run(cli) {
        // One line, the whole cause chain: "what failed: why".
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
