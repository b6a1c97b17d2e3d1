use clap::Parser;

fn main() {
    let cli = vlmbench::cli::Cli::parse();
    if let Err(e) = vlmbench::cli::run(cli) {
        eprintln!("error: {}", vlmbench::cli::one_line(&e));
        std::process::exit(1);
    }
}
